//! The fleet's receipt index: a proxy's log copied into PostgreSQL once each, only when
//! durable, resumed after restarts and outages without gaps or duplicates, and copied afresh
//! when the log under its origin was replaced.

use std::time::{Duration, Instant};

use claw_fleet::Fleet;
use claw_fleet::receipts::Filter;
use claw_tests::postgres::Postgres;
use claw_verifier::log::{Draft, LogConfig, LogHandle, LogWriter};
use claw_verifier::query::fleet::{follow, query};
use claw_verifier::receipt::{AuditKey, Cst, Decision, Kind, Op, Req};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Safety net for what must happen "soon" (never an assertion on speed).
const PATIENCE: Duration = Duration::from_secs(20);

/// A call receipt of `job`: an allowed read of item `I1` in vault `V1` ("Prod"), or a denied
/// delete.
fn call(job: &str, allow: bool) -> Draft {
    let mut d = Draft::new(Kind::Call, job);
    d.client = Some("127.0.0.1".into());
    d.cst = Some(Cst {
        jti: format!("jti-{job}"),
        scope: "blake3:00".into(),
    });
    d.wpc = Some(format!("blake3:{}", "cd".repeat(32)));
    d.req = Some(Req {
        method: if allow { "GET" } else { "DELETE" }.into(),
        scheme: "https".into(),
        host: "connect.1password.com".into(),
        port: 443,
        path: "/v1/vaults/V1/items/I1".into(),
        ..Req::default()
    });
    d.op = Some(Op {
        integration: "onepassword".into(),
        name: if allow { "read_item" } else { "delete_item" }.into(),
        vault: Some("V1".into()),
        vault_name: Some("Prod".into()),
        item: Some("I1".into()),
        ..Op::default()
    });
    d.decision = Some(Decision {
        allow,
        rule: if allow {
            "allowed_operations"
        } else {
            "deny_operations"
        }
        .into(),
        reason: "test".into(),
        ..Decision::default()
    });
    d.duration_ms = Some(1);
    d
}

struct Following {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Following {
    fn start(fleet: &Fleet, log: &LogHandle) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(follow(fleet.clone(), log.clone(), async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

async fn append(log: &LogHandle, n: usize) {
    for i in 0..n {
        log.append(call(if i % 3 == 2 { "job-b" } else { "job-a" }, i % 3 != 2))
            .await
            .unwrap();
    }
}

/// `(seq, id)` of every line of the log's segments, read as plain JSON.
fn logged(config: &LogConfig) -> Vec<(u64, String)> {
    let mut segments: Vec<_> = std::fs::read_dir(&config.dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines()
                .map(|line| {
                    let r: serde_json::Value = serde_json::from_str(line).unwrap();
                    (
                        r["seq"].as_u64().unwrap(),
                        r["id"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits until the index holds exactly the receipts of the log in `config.dir`, by seq and
/// id, and returns how many.
async fn indexed_as_logged(fleet: &Fleet, config: &LogConfig) -> usize {
    let logged = logged(config);
    let started = Instant::now();
    loop {
        let (rows, total) = fleet.query_receipts(&Filter::default()).await.unwrap();
        let indexed: Vec<(u64, String)> = rows.into_iter().map(|r| (r.seq, r.id)).collect();
        if indexed == logged {
            assert_eq!(total, logged.len() as u64);
            return logged.len();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the index never matched the log: {} rows for {} receipts",
            indexed.len(),
            logged.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_is_copied_once_resumed_after_restarts_and_outages_and_replaced_afresh() {
    let Some(pg) = Postgres::start() else { return };
    let fleet = Fleet::connect(&pg.url()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = claw_policy::keys::generate();
    let config = LogConfig::new(
        &tmp.path().join("receipts"),
        "p1",
        key.clone(),
        AuditKey::new([7; 32]),
    )
    .for_instance("a");

    let (log, task) = LogWriter::open(config.clone()).await.unwrap();
    let following = Following::start(&fleet, &log);
    append(&log, 9).await;
    assert_eq!(indexed_as_logged(&fleet, &config).await, 9);

    // The server goes away: the proxy's receipts stay durable, the copy waits and catches up.
    pg.kill();
    append(&log, 6).await;
    // Long enough for a pass to fail against the stopped server (gather 0.25 s, retry 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.resume().unwrap();
    assert_eq!(indexed_as_logged(&fleet, &config).await, 15);

    // A restart, with receipts written while nothing copied: resumed after the last row.
    following.stop().await;
    log.shutdown().await.unwrap();
    task.await.unwrap();
    let (log, task) = LogWriter::open(config.clone()).await.unwrap();
    append(&log, 5).await;
    let following = Following::start(&fleet, &log);
    assert_eq!(indexed_as_logged(&fleet, &config).await, 20);

    // Queries: every filter narrows, by log and seq.
    let ask = |filter: Filter| {
        let fleet = fleet.clone();
        async move { query(&fleet, &filter).await.unwrap() }
    };
    let all = ask(Filter::default()).await;
    assert_eq!((all.matches.len(), all.scanned), (20, 20));
    assert!(all.matches.iter().all(|h| h.log == "clawproxy/p1/a"));
    let denied = ask(Filter {
        allow: Some(false),
        ..Filter::default()
    })
    .await;
    assert!(!denied.matches.is_empty());
    assert!(denied.matches.iter().all(|h| h.job == "job-b"
        && h.op.as_deref() == Some("delete_item")
        && h.decision.as_deref() == Some("deny")
        && h.rule.as_deref() == Some("deny_operations")));
    let by_job = ask(Filter {
        job: Some("job-b".into()),
        ..Filter::default()
    })
    .await;
    assert_eq!(by_job.matches, denied.matches);
    let by_vault_name = ask(Filter {
        vault: Some("Prod".into()),
        item: Some("I1".into()),
        op: Some("read_item".into()),
        ..Filter::default()
    })
    .await;
    assert_eq!(by_vault_name.matches.len() + denied.matches.len(), 20);
    let nothing = ask(Filter {
        job: Some("job-c".into()),
        ..Filter::default()
    })
    .await;
    assert!(nothing.matches.is_empty());
    // A time window, checked against the times of all (receipts may share a millisecond).
    let ms = |h: &claw_verifier::query::Hit| claw_verifier::receipt::ts_millis(&h.ts).unwrap();
    let since = ms(&all.matches[10]);
    let later = ask(Filter {
        since_ms: Some(since),
        ..Filter::default()
    })
    .await;
    let expected: Vec<_> = all
        .matches
        .iter()
        .filter(|h| ms(h) >= since)
        .cloned()
        .collect();
    assert_eq!(later.matches, expected);
    let earlier = ask(Filter {
        until_ms: Some(since - 1),
        ..Filter::default()
    })
    .await;
    assert_eq!(earlier.matches.len() + later.matches.len(), 20);
    assert!(earlier.matches.iter().all(|h| ms(h) < since));

    // Another log under the same origin (a data dir recreated): its rows replace the old ones.
    following.stop().await;
    log.shutdown().await.unwrap();
    task.await.unwrap();
    std::fs::remove_dir_all(&config.dir).unwrap();
    let (log, task) = LogWriter::open(config.clone()).await.unwrap();
    append(&log, 3).await;
    let following = Following::start(&fleet, &log);
    assert_eq!(indexed_as_logged(&fleet, &config).await, 3);
    following.stop().await;
    log.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_twice_is_kept_once_and_another_log_under_the_origin_is_refused() {
    use claw_fleet::FleetError;
    use claw_fleet::receipts::Indexed;
    let Some(pg) = Postgres::start() else { return };
    let fleet = Fleet::connect(&pg.url()).await.unwrap();
    let origin = "clawproxy/p1/a";
    let rows = |ids: &[&str]| -> Vec<Indexed> {
        ids.iter()
            .enumerate()
            .map(|(seq, id)| Indexed {
                log: origin.into(),
                seq: seq as u64,
                id: (*id).into(),
                kind: "call".into(),
                job: "job-a".into(),
                ..Indexed::default()
            })
            .collect()
    };
    fleet
        .index_receipts(origin, &rows(&["r0", "r1"]))
        .await
        .unwrap();
    // A retry after a lost answer.
    fleet
        .index_receipts(origin, &rows(&["r0", "r1"]))
        .await
        .unwrap();
    // Another log writing the same seqs under the same origin.
    let clash = fleet.index_receipts(origin, &rows(&["r0", "other"])).await;
    assert!(
        matches!(&clash, Err(FleetError::Conflict(m)) if m.contains("seq 1") && m.contains("instance")),
        "{clash:?}"
    );
    let (kept, total) = fleet.query_receipts(&Filter::default()).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        kept.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r0", "r1"]
    );
    assert_eq!(
        fleet.indexed_tail(origin).await.unwrap(),
        Some((1, "r1".into()))
    );
    assert_eq!(fleet.forget_log(origin).await.unwrap(), 2);
    assert_eq!(fleet.indexed_tail(origin).await.unwrap(), None);
}
