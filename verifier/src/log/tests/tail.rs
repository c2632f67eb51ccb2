//! Following a log: resume, segment roll-over, lines in progress, a log replaced under it.

use std::io::Write;

use claw_policy::keys;

use super::super::tail::{self, Cursor, TailError};
use super::*;

/// Reads everything below `until` in batches of `batch`, returning the seqs.
fn follow_all(dir: &Path, cursor: &mut Cursor, until: u64, batch: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let read = tail::read(dir, cursor, until, batch).unwrap();
        if read.is_empty() {
            return seqs;
        }
        assert!(read.len() <= batch);
        seqs.extend(read.iter().map(|r| r.seq));
    }
}

#[tokio::test]
async fn a_follower_reads_each_receipt_once_across_segments_and_durable_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let mut cfg = config(tmp.path(), &key);
    cfg.segment_bytes = 2000;
    let mut cursor = Cursor::default();
    // No log yet, then an empty one: nothing to follow.
    assert!(
        tail::read(&cfg.dir, &mut cursor, u64::MAX, 10)
            .unwrap()
            .is_empty()
    );
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    let mut durable = log.durable();
    assert_eq!(*durable.borrow_and_update(), 0);
    assert!(
        tail::read(&cfg.dir, &mut cursor, u64::MAX, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(cursor, Cursor::default());
    for i in 0..7 {
        log.append(call(&format!("j{i}"))).await.unwrap();
    }
    assert!(durable.has_changed().unwrap());
    assert_eq!(*durable.borrow_and_update(), 7);
    // Bounded by what is durable, then by the batch size.
    assert_eq!(follow_all(&cfg.dir, &mut cursor, 5, 2), vec![0, 1, 2, 3, 4]);
    for i in 0..13 {
        log.append(call(&format!("k{i}"))).await.unwrap();
    }
    assert_eq!(*log.durable().borrow(), 20);
    log.shutdown().await.unwrap();
    task.await.unwrap();
    assert!(
        super::super::segment::list_segments(&cfg.dir)
            .unwrap()
            .len()
            >= 5
    );
    assert_eq!(
        follow_all(&cfg.dir, &mut cursor, 20, 3),
        (5..20).collect::<Vec<_>>()
    );
    assert_eq!(cursor.next, 20);
    // The same position found from a seq and an id, as a restarted follower finds it.
    let last = read_all(&cfg.dir, &key).pop().unwrap();
    let resumed = tail::after(&cfg.dir, 19, &last.id).unwrap();
    assert_eq!(resumed, cursor);
    let mid = &read_all(&cfg.dir, &key)[11];
    let mut from_mid = tail::after(&cfg.dir, 11, &mid.id).unwrap();
    assert_eq!(
        follow_all(&cfg.dir, &mut from_mid, 20, 100),
        (12..20).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_line_in_progress_is_left_for_the_next_read() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let lines = written(&cfg, 3).await;
    let path = segment_path(&cfg.dir, 0);
    // Put the last line back half written, as a reader racing the writer may find it.
    let whole: String = lines[..2].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &whole).unwrap();
    let half = lines[2].len() / 2;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&lines[2].as_bytes()[..half]).unwrap();
    let mut cursor = Cursor::default();
    assert_eq!(follow_all(&cfg.dir, &mut cursor, u64::MAX, 10), vec![0, 1]);
    file.write_all(&lines[2].as_bytes()[half..]).unwrap();
    file.write_all(b"\n").unwrap();
    assert_eq!(follow_all(&cfg.dir, &mut cursor, u64::MAX, 10), vec![2]);
}

#[tokio::test]
async fn a_log_replaced_under_a_follower_is_noticed() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let first = written(&cfg, 4).await;
    let mut cursor = Cursor::default();
    assert_eq!(follow_all(&cfg.dir, &mut cursor, u64::MAX, 10).len(), 4);
    let old_last_id = read_all(&cfg.dir, &key)[3].id.clone();
    // A new log under the same directory: same seqs, other receipts.
    std::fs::remove_dir_all(&cfg.dir).unwrap();
    let second = written(&cfg, 6).await;
    assert_ne!(first[0], second[0]);
    assert!(matches!(
        tail::read(&cfg.dir, &mut cursor, u64::MAX, 10),
        Err(TailError::Diverged { seq: 4, .. })
    ));
    assert!(matches!(
        tail::after(&cfg.dir, 3, &old_last_id),
        Err(TailError::Diverged { seq: 3, .. })
    ));
    // Beyond the end, or a log cut shorter than what was read.
    assert!(matches!(
        tail::after(&cfg.dir, 6, "01HZZZZZZZZZZZZZZZZZZZZZZZ"),
        Err(TailError::Diverged { seq: 6, .. })
    ));
    // A value edited in place (still a well-formed receipt) breaks the chain at the next line.
    let mut lines = second.clone();
    assert!(lines[2].contains("/v1/vaults/V/items/I"));
    lines[2] = lines[2].replacen("/v1/vaults/V/items/I", "/v1/vaults/V/items/X", 1);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(segment_path(&cfg.dir, 0), text).unwrap();
    let mut fresh = Cursor::default();
    assert!(matches!(
        tail::read(&cfg.dir, &mut fresh, u64::MAX, 10),
        Err(TailError::Diverged { seq: 3, .. })
    ));
    assert_eq!(fresh.next, 3, "the receipts before the damage were read");
}
