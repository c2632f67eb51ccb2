//! Proof-bundle costs: `verify` throughput (receipts per second, one core), `bundle` of a
//! 100k-receipt job from a data dir, and `query` over a log of 1M receipts (index warm).
//!
//!     cargo bench -p claw-verifier --bench evidence
//!
//! Setup writes real logs: the bundle bench through the log writer (signed, fsynced), the
//! query bench straight to a segment (chained and canonical; the index does not check
//! signatures, so they are placeholders there).

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use claw_policy::contract::Contract;
use claw_policy::datadir::{DataDir, init_keys};
use claw_policy::envelope::Envelope;
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;
use claw_tokens::mint::{MintRequest, mint};
use claw_verifier::bundle::{self, BuildOptions};
use claw_verifier::log::{Draft, JobClose, LogConfig, LogWriter, segment_path};
use claw_verifier::query::{self, Filter};
use claw_verifier::receipt::{
    Closed, Cst, Decision, GENESIS, IdGenerator, Kind, Op, Receipt, Req, link, origin,
};
use claw_verifier::verify;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SEED: &[u8] = include_bytes!("../../examples/policies/1password-readonly-agent.json");
const JOB: &str = "bench-job";

/// A data dir holding one job of `n` allowed reads, revoked and closed.
fn data_dir_with_job(n: usize) -> (tempfile::TempDir, DataDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    init_keys(&dir, false).unwrap();
    let key = keys::read_signing_key(&dir.signing_key(Purpose::Policy)).unwrap();
    let trust = TrustStore::load(&dir.trust()).unwrap();
    let contract = Contract::from_slice(SEED).unwrap();
    Registry::new(dir.policies())
        .publish(&Envelope::sign(&contract, &key), &trust)
        .unwrap();
    let request = MintRequest {
        policy: contract.name().into(),
        job: JOB.into(),
        agent: "bench".into(),
        ..MintRequest::default()
    };
    let claims = mint(&dir, &request, claw_tokens::now()).unwrap().claims;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (log, task) = LogWriter::open(LogConfig::from_data_dir(&dir).unwrap())
            .await
            .unwrap();
        let cst = Cst {
            jti: claims.jti.clone(),
            scope: claims.scope.clone(),
        };
        let mut pending = Vec::new();
        for _ in 0..n {
            let mut d = Draft::new(Kind::Call, JOB);
            d.client = Some("127.0.0.1".into());
            d.cst = Some(cst.clone());
            d.wpc = Some(claims.wpc.clone());
            d.req = Some(read_req());
            d.op = Some(read_op());
            d.decision = Some(allowed());
            d.duration_ms = Some(2);
            let log = log.clone();
            pending.push(tokio::spawn(async move { log.append(d).await.unwrap() }));
            if pending.len() == 512 {
                for p in pending.drain(..) {
                    p.await.unwrap();
                }
            }
        }
        for p in pending {
            p.await.unwrap();
        }
        claw_tokens::revocation::RevocationStore::new(dir.state())
            .revoke_job(JOB, "bench", claw_tokens::now())
            .unwrap();
        let mut close = JobClose::new(JOB, Closed::Revoked);
        close.cst = Some(cst);
        close.wpc = Some(claims.wpc.clone());
        log.close_job(close).await.unwrap();
        log.shutdown().await.unwrap();
        task.await.unwrap();
    });
    (tmp, dir)
}

fn read_req() -> Req {
    Req {
        method: "GET".into(),
        scheme: "http".into(),
        host: "connect.1password.com".into(),
        port: 80,
        path: "/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/x4tpzrqojj2ahmv3w7nb6vu2pe".into(),
        ..Req::default()
    }
}

fn read_op() -> Op {
    Op {
        integration: "onepassword".into(),
        name: "read_item".into(),
        vault: Some("ytrfte14kw1uex5txaore1emkz".into()),
        vault_name: Some("vault_agent_secrets_prod".into()),
        item: Some("x4tpzrqojj2ahmv3w7nb6vu2pe".into()),
        category: Some("DATABASE".into()),
        ..Op::default()
    }
}

fn allowed() -> Decision {
    Decision {
        allow: true,
        rule: "allowed_operations".into(),
        reason: "allowed by the contract".into(),
        ..Decision::default()
    }
}

fn bundle_of(dir: &DataDir) -> Vec<u8> {
    let options = BuildOptions {
        job: JOB.into(),
        include_live_token: false,
        now: claw_tokens::now(),
    };
    let mut out = Vec::new();
    bundle::build(dir, &options, &mut out).unwrap();
    out
}

fn verify_and_bundle(c: &mut Criterion) {
    let (_tmp, dir) = data_dir_with_job(10_000);
    let bytes = bundle_of(&dir);
    let trust = TrustStore::load(&dir.trust()).unwrap();
    let v = verify::verify(&bytes, &trust);
    assert!(v.passed(), "{:?}", v.failed());
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.throughput(Throughput::Elements(10_001));
    group.bench_function("bundle_of_10k_receipts", |b| {
        b.iter(|| black_box(verify::verify(black_box(&bytes), &trust)))
    });
    group.finish();

    let (_tmp, dir) = data_dir_with_job(100_000);
    let mut group = c.benchmark_group("bundle");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(100_001));
    group.bench_function("job_of_100k_receipts", |b| {
        b.iter(|| black_box(bundle_of(&dir)))
    });
    group.finish();
}

/// A log of `n` receipts over 1000 jobs, written straight to one segment.
fn big_log(receipts: &std::path::Path, n: u64) {
    let proxy_id = "pbench001";
    let dir = receipts.join(proxy_id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(segment_path(&dir, 0)).unwrap());
    let mut ids = IdGenerator::new();
    let mut prev = GENESIS.to_owned();
    let mut jobs: Vec<(u64, String)> = vec![(0, GENESIS.to_owned()); 1000];
    let start_ms = 1_795_000_000_000u64;
    for seq in 0..n {
        let j = (seq % 1000) as usize;
        let ms = start_ms + seq * 10;
        let at =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
        let mut op = read_op();
        op.item = Some(format!("item{:05}", seq % 50_000));
        let r = Receipt {
            v: 1,
            kind: Kind::Call,
            id: ids.next(ms),
            log: origin(proxy_id),
            seq,
            prev: prev.clone(),
            ts: claw_verifier::receipt::format_ts(at),
            proxy: "bench-kid".into(),
            job: format!("job-{j}"),
            job_seq: jobs[j].0,
            job_prev: jobs[j].1.clone(),
            rid: None,
            client: Some("127.0.0.1".into()),
            cst: Some(Cst {
                jti: "bench-jti".into(),
                scope: format!("blake3:{}", "5a".repeat(32)),
            }),
            wpc: Some(format!("blake3:{}", "c3".repeat(32))),
            req: Some(read_req()),
            op: Some(op),
            decision: Some(allowed()),
            resp: None,
            duration_ms: Some(1),
            tunnel: None,
            count: None,
            closed: None,
            recovery: None,
            rotation: None,
            logs: None,
            // Not checked by the index; a placeholder of the right shape.
            sig: "A".repeat(86) + "==",
        };
        let leaf = r.leaf();
        out.write_all(&leaf).unwrap();
        out.write_all(b"\n").unwrap();
        let hash = link(&claw_verifier::merkle::leaf_hash(&leaf));
        jobs[j] = (jobs[j].0 + 1, hash.clone());
        prev = hash;
    }
    out.flush().unwrap();
}

fn query_1m(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let receipts = tmp.path().join("receipts");
    let index = tmp.path().join("index");
    big_log(&receipts, 1_000_000);
    let filter = Filter {
        job: Some("job-42".into()),
        item: Some("item00042".into()),
        op: Some("read_item".into()),
        since_ms: Some(1_795_000_000_000),
        until_ms: Some(1_795_010_000_000),
        ..Filter::default()
    };
    // The first query builds the index (not measured); later ones catch up and scan.
    let first = query::query(&receipts, &index, &filter).unwrap();
    assert_eq!(first.scanned, 1_000_000);
    assert!(!first.matches.is_empty());
    let mut group = c.benchmark_group("query");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("log_of_1m_receipts", |b| {
        b.iter(|| black_box(query::query(&receipts, &index, &filter).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, verify_and_bundle, query_1m);
criterion_main!(benches);
