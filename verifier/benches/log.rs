//! Receipt costs on the writer's critical path (sign + canonical leaf, with and without
//! precomputed nonces) and the verifier's
//! (strict verification of a leaf), plus the keyed body hash. Durable throughput with real
//! fdatasyncs is measured by `examples/log_load.rs`.

use std::hint::black_box;

use claw_policy::keys::Purpose;
use claw_policy::trust::TrustStore;
use claw_verifier::receipt::{
    AuditKey, Cst, Decision, GENESIS, Kind, Op, Presigner, Receipt, Req, Resp, origin, verify_leaf,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn receipt(kid: String) -> Receipt {
    let audit = AuditKey::new([7; 32]);
    Receipt {
        v: 1,
        kind: Kind::Call,
        id: "01JD0000000000000000000000".into(),
        log: origin("pbench001"),
        seq: 1042,
        prev: GENESIS.into(),
        ts: "2026-11-22T19:38:20.123Z".into(),
        proxy: kid,
        job: "j42".into(),
        job_seq: 7,
        job_prev: GENESIS.into(),
        rid: None,
        client: Some("10.0.0.5:51234".into()),
        cst: Some(Cst {
            jti: "3f0c1a2b4d5e6f708192a3b4c5d6e7f8".into(),
            scope: format!("blake3:{}", "5a".repeat(32)),
        }),
        wpc: Some(format!("blake3:{}", "c3".repeat(32))),
        req: Some(Req {
            method: "GET".into(),
            scheme: "https".into(),
            host: "connect.1password.com".into(),
            port: 443,
            path: "/v1/vaults/vault_agent_secrets_prod/items/q2x7fx4ldhcpkyr3yzv4cbmb7q".into(),
            ..Req::default()
        }),
        op: Some(Op {
            integration: "onepassword".into(),
            name: "read_item".into(),
            vault: Some("vault_agent_secrets_prod".into()),
            item: Some("q2x7fx4ldhcpkyr3yzv4cbmb7q".into()),
            category: Some("API_CREDENTIAL".into()),
            ..Op::default()
        }),
        decision: Some(Decision {
            allow: true,
            rule: "tool_scope.allowed_operations".into(),
            reason: "read_item is allowed".into(),
            ..Decision::default()
        }),
        resp: Some(Resp {
            status: 200,
            bytes: 1432,
            body_hash: audit.hash(b"body"),
            released: true,
        }),
        duration_ms: Some(14),
        tunnel: None,
        count: None,
        closed: None,
        recovery: None,
        rotation: None,
        logs: None,
        sig: String::new(),
    }
}

fn benches(c: &mut Criterion) {
    let key = claw_policy::keys::generate();
    let mut trust = TrustStore::default();
    trust.add(Purpose::Proxy, "pbench001", key.verifying_key());
    let template = receipt(claw_policy::keys::kid(&key.verifying_key()));
    let mut group = c.benchmark_group("receipt");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign_and_leaf", |b| {
        b.iter(|| {
            let mut r = template.clone();
            r.sign(&key);
            black_box(r.leaf_hash())
        })
    });
    // The log writer's way: the nonce thread runs on another core. Were signing to outpace
    // it, the remaining signatures would be RFC 8032 ones, so this is the writer's cost
    // given one spare core.
    let presigner = Presigner::new(key.clone());
    group.bench_function("sign_and_leaf_presigned", |b| {
        b.iter(|| {
            let mut r = template.clone();
            r.sign(&presigner);
            black_box(r.leaf_hash())
        })
    });
    group.bench_function("jcs_only", |b| b.iter(|| black_box(template.leaf())));
    group.bench_function("serde_json_only", |b| {
        b.iter(|| black_box(serde_json::to_vec(&template).map(|v| v.len())))
    });
    let message = claw_policy::dsse::pae("t", &template.leaf());
    group.bench_function("ed25519_sign_only", |b| {
        b.iter(|| black_box(ed25519_dalek::Signer::sign(&key, black_box(&message))))
    });
    let mut signed = template.clone();
    signed.sign(&key);
    let leaf = signed.leaf();
    group.bench_function("verify_leaf", |b| {
        b.iter(|| black_box(verify_leaf(black_box(&leaf), &trust).is_ok()))
    });
    group.finish();
    let audit = AuditKey::new([7; 32]);
    let body = vec![b'x'; 1432];
    let mut group = c.benchmark_group("audit_hash");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("1432_bytes", |b| {
        b.iter(|| black_box(audit.hash(black_box(&body))))
    });
    group.finish();
}

criterion_group!(receipts, benches);
criterion_main!(receipts);
