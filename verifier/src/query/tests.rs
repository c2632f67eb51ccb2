//! Query tests: filters, catching the index up, rebuilding it when the log changed under it.

use std::path::Path;

use claw_policy::keys;

use super::*;
use crate::log::tests::{PROXY_ID, call, config};
use crate::log::{Draft, LogWriter};
use crate::receipt::Decision;

/// Appends `drafts` to the log in `receipts/<PROXY_ID>`, rolling small segments.
async fn append(receipts: &Path, key: &ed25519_dalek::SigningKey, drafts: Vec<Draft>) {
    let mut cfg = config(receipts, key);
    cfg.segment_bytes = 2000;
    let (log, task) = LogWriter::open(cfg).await.unwrap();
    for d in drafts {
        log.append(d).await.unwrap();
    }
    log.shutdown().await.unwrap();
    task.await.unwrap();
}

fn draft(job: &str, op: &str, item: &str, allow: bool) -> Draft {
    let mut d = call(job);
    let o = d.op.as_mut().unwrap();
    o.name = op.into();
    o.item = Some(item.into());
    o.vault_name = Some("prod".into());
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
    d
}

fn seqs(answer: &Answer) -> Vec<u64> {
    answer.matches.iter().map(|h| h.seq).collect()
}

#[tokio::test]
async fn filters_combine_and_the_index_catches_up_with_new_receipts() {
    let tmp = tempfile::tempdir().unwrap();
    let (receipts, index) = (tmp.path().join("receipts"), tmp.path().join("index"));
    let key = keys::generate();
    let first: Vec<Draft> = (0..30)
        .map(|i| {
            let job = if i % 2 == 0 { "a" } else { "b" };
            let op = if i % 3 == 0 {
                "delete_item"
            } else {
                "read_item"
            };
            draft(job, op, &format!("item{}", i % 5), op == "read_item")
        })
        .collect();
    append(&receipts, &key, first).await;

    let all = query(&receipts, &index, &Filter::default()).unwrap();
    assert_eq!(all.matches.len(), 30);
    assert_eq!(all.scanned, 30);
    let a = Filter {
        job: Some("a".into()),
        ..Filter::default()
    };
    assert_eq!(
        seqs(&query(&receipts, &index, &a).unwrap()),
        (0..30).step_by(2).collect::<Vec<_>>()
    );
    let denied_b = Filter {
        job: Some("b".into()),
        allow: Some(false),
        ..Filter::default()
    };
    assert_eq!(
        seqs(&query(&receipts, &index, &denied_b).unwrap()),
        [3, 9, 15, 21, 27]
    );
    let item = Filter {
        item: Some("item2".into()),
        op: Some("read_item".into()),
        vault: Some("prod".into()),
        ..Filter::default()
    };
    let hits = query(&receipts, &index, &item).unwrap();
    assert_eq!(seqs(&hits), [2, 7, 17, 22]);
    let hit = &hits.matches[0];
    assert_eq!(
        (
            hit.job.as_str(),
            hit.decision.as_deref(),
            hit.rule.as_deref()
        ),
        ("a", Some("allow"), Some("allowed_operations"))
    );
    assert_eq!(hit.log, crate::receipt::origin(PROXY_ID));
    assert_eq!(hit.id.len(), 26);
    let unknown = Filter {
        job: Some("nobody".into()),
        ..Filter::default()
    };
    assert!(
        query(&receipts, &index, &unknown)
            .unwrap()
            .matches
            .is_empty()
    );
    let future = Filter {
        since_ms: Some(i64::MAX / 2),
        ..Filter::default()
    };
    assert!(
        query(&receipts, &index, &future)
            .unwrap()
            .matches
            .is_empty()
    );

    // New receipts are indexed on the next query, from where the index stopped.
    let before = std::fs::metadata(index.join(PROXY_ID).join("records.bin"))
        .unwrap()
        .len();
    append(
        &receipts,
        &key,
        vec![draft("a", "read_item", "item9", true)],
    )
    .await;
    let hits = query(
        &receipts,
        &index,
        &Filter {
            item: Some("item9".into()),
            ..Filter::default()
        },
    )
    .unwrap();
    assert_eq!(seqs(&hits), [30]);
    let after = std::fs::metadata(index.join(PROXY_ID).join("records.bin"))
        .unwrap()
        .len();
    assert_eq!(after, before + RECORD as u64);
}

#[tokio::test]
async fn a_log_replaced_under_the_index_is_reindexed_not_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let (receipts, index) = (tmp.path().join("receipts"), tmp.path().join("index"));
    append(
        &receipts,
        &keys::generate(),
        (0..12)
            .map(|_| draft("old", "read_item", "x", true))
            .collect(),
    )
    .await;
    assert_eq!(
        query(&receipts, &index, &Filter::default())
            .unwrap()
            .matches
            .len(),
        12
    );

    std::fs::remove_dir_all(&receipts).unwrap();
    append(
        &receipts,
        &keys::generate(),
        (0..15)
            .map(|_| draft("new", "read_item", "y", true))
            .collect(),
    )
    .await;
    let answer = query(&receipts, &index, &Filter::default()).unwrap();
    assert_eq!(answer.matches.len(), 15);
    assert!(answer.matches.iter().all(|h| h.job == "new"));
}

#[test]
fn records_round_trip() {
    let record = Record {
        seq: 7,
        ts: 1_700_000_000_123,
        job: 1,
        op: 2,
        item: NONE,
        vault: 3,
        vault_name: 4,
        rule: 5,
        kind: kind_code(Kind::Request),
        decision: 1,
        status: 201,
        id: *b"01JD0000000000000000000001",
    };
    let again = Record::decode(&record.encode());
    assert_eq!(again.encode(), record.encode());
    assert_eq!(
        (again.seq, again.ts, again.status, again.item),
        (7, 1_700_000_000_123, 201, NONE)
    );
}
