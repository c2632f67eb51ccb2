//! Key rotation in the log: the `key_rotation` receipt, the hand-over between proxy keys,
//! the audit key swap, and the one-writer lock.

use claw_policy::keys;
use claw_policy::trust::TrustStore;

use super::*;
use crate::receipt::{AuditKey, Kind, LOG_JOB, Resp, RotatedKey, Rotation};

fn both(old: &SigningKey, new: &SigningKey) -> TrustStore {
    let mut trust = trust(old);
    trust.add(Purpose::Proxy, PROXY_ID, new.verifying_key());
    trust
}

#[tokio::test]
async fn a_proxy_key_rotation_is_signed_by_the_old_key_and_everything_after_by_the_new() {
    let tmp = tempfile::tempdir().unwrap();
    let old = keys::generate();
    let new = keys::generate();
    let cfg = config(tmp.path(), &old);
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    log.append(call("job-1")).await.unwrap();
    let rotated = log.rotate(Rekey::Proxy(new.clone())).await.unwrap();
    log.append(call("job-1")).await.unwrap();
    log.shutdown().await.unwrap();
    task.await.unwrap();

    let dir = cfg.dir.clone();
    let receipts: Vec<_> = LogReader::new(&dir, both(&old, &new))
        .receipts()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let signers: Vec<String> = receipts.iter().map(|r| r.proxy.clone()).collect();
    let (old_kid, new_kid) = (
        keys::kid(&old.verifying_key()),
        keys::kid(&new.verifying_key()),
    );
    assert_eq!(signers, [old_kid.clone(), old_kid.clone(), new_kid.clone()]);
    let r = &receipts[rotated.seq as usize];
    assert_eq!((r.kind, r.job.as_str()), (Kind::KeyRotation, LOG_JOB));
    assert_eq!(
        r.rotation,
        Some(Rotation {
            key: RotatedKey::Proxy,
            old: old_kid,
            new: new_kid,
        })
    );
    // The checkpoint after the rotation is the new key's: the old one alone refuses it.
    let reader = LogReader::new(&dir, both(&old, &new));
    let (latest, _) = reader.latest_checkpoint().unwrap().unwrap();
    assert_eq!(latest.size, 3);
    assert!(
        LogReader::new(&dir, trust(&old))
            .latest_checkpoint()
            .is_err()
    );

    // Restarting with the new key opens only while the old one is listed as retired.
    let mut restart = config(tmp.path(), &new);
    assert!(matches!(
        LogWriter::open(restart.clone()).await,
        Err(LogError::Damaged { .. })
    ));
    restart.retired_keys = vec![old.verifying_key()];
    let (log, task) = LogWriter::open(restart).await.unwrap();
    assert_eq!(log.append(call("job-1")).await.unwrap().seq, 3);
    log.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn an_audit_key_rotation_keys_body_hashes_from_the_receipt_on() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    let before = log.audit();
    let next = AuditKey::new([9; 32]);
    log.rotate(Rekey::Audit(next.clone())).await.unwrap();
    assert_eq!(log.audit().kid(), next.kid());
    assert_ne!(before.kid(), next.kid());
    // A second rotation names the first one's new key as its old.
    let last = AuditKey::new([10; 32]);
    log.rotate(Rekey::Audit(last.clone())).await.unwrap();
    log.shutdown().await.unwrap();
    task.await.unwrap();
    let rotations: Vec<Rotation> = read_all(&cfg.dir, &key)
        .into_iter()
        .filter_map(|r| r.receipt().rotation.clone())
        .collect();
    let pairs: Vec<(&str, &str)> = rotations
        .iter()
        .map(|r| (r.old.as_str(), r.new.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [(before.kid(), next.kid()), (next.kid(), last.kid())]
    );
}

#[tokio::test]
async fn a_recorded_rotation_is_checked_like_any_receipt() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let (log, task) = LogWriter::open(config(tmp.path(), &key)).await.unwrap();
    let kid = |byte: u8| keys::kid(&SigningKey::from_bytes(&[byte; 32]).verifying_key());
    let good = Rotation {
        key: RotatedKey::Issuer,
        old: kid(1),
        new: kid(2),
    };
    log.rotate(Rekey::Recorded(good.clone())).await.unwrap();
    for bad in [
        Rotation {
            new: good.old.clone(),
            ..good.clone()
        },
        Rotation {
            key: RotatedKey::Audit,
            ..good.clone()
        },
        Rotation {
            key: RotatedKey::Ca,
            old: format!("sha256:{}", "ab".repeat(32)),
            new: "sha256:AB".into(),
        },
    ] {
        assert!(
            matches!(
                log.rotate(Rekey::Recorded(bad.clone())).await,
                Err(LogError::Draft(_))
            ),
            "{bad:?}"
        );
    }
    // Callers cannot make the log's own kinds.
    let draft = Draft::new(Kind::KeyRotation, LOG_JOB);
    assert!(matches!(log.append(draft).await, Err(LogError::Draft(_))));
    log.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_second_writer_of_one_log_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    match LogWriter::open(cfg.clone()).await {
        Err(e @ LogError::Busy(_)) => assert!(e.to_string().contains("another process")),
        other => panic!("a second writer opened: {other:?}"),
    }
    log.shutdown().await.unwrap();
    task.await.unwrap();
    // Released when the writer ends.
    let (log, task) = LogWriter::open(cfg).await.unwrap();
    log.shutdown().await.unwrap();
    task.await.unwrap();
}

/// A call whose answer's body hash is keyed by `audit`.
fn hashed_call(audit: &AuditKey) -> Draft {
    let mut d = call("job-1");
    d.resp = Some(Resp {
        status: 200,
        bytes: 2,
        body_hash: audit.hash(b"{}"),
        released: true,
    });
    d
}

/// Opens the log, appends `drafts`, shuts it down.
async fn run(cfg: LogConfig, drafts: Vec<Draft>) {
    let (log, task) = LogWriter::open(cfg).await.unwrap();
    for draft in drafts {
        log.append(draft).await.unwrap();
    }
    log.shutdown().await.unwrap();
    task.await.unwrap();
}

fn kinds(receipts: &[crate::receipt::CheckedReceipt]) -> Vec<Kind> {
    receipts.iter().map(|r| r.kind).collect()
}

#[tokio::test]
async fn a_proxy_key_replaced_without_a_receipt_is_recorded_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (keys::generate(), keys::generate());
    let cfg = config(tmp.path(), &old);
    run(cfg.clone(), vec![call("job-1")]).await;
    // A torn tail too: the recovery comes first, then the rotation.
    let segment = crate::log::segment::segment_path(&cfg.dir, 0);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut file, b"{\"v\":1,").unwrap();
    drop(file);

    let mut restart = config(tmp.path(), &new);
    restart.retired_keys = vec![old.verifying_key()];
    run(restart.clone(), vec![call("job-1")]).await;
    // Recorded once: the next start finds the log already on the new key.
    run(restart, vec![call("job-1")]).await;

    let receipts: Vec<_> = LogReader::new(&cfg.dir, both(&old, &new))
        .receipts()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        kinds(&receipts),
        [
            Kind::Call,
            Kind::Recovery,
            Kind::KeyRotation,
            Kind::Call,
            Kind::Call
        ]
    );
    let new_kid = keys::kid(&new.verifying_key());
    assert_eq!(
        receipts[2].rotation,
        Some(Rotation {
            key: RotatedKey::Proxy,
            old: keys::kid(&old.verifying_key()),
            new: new_kid.clone(),
        })
    );
    // The old key is gone: the new one signs the record of its own arrival.
    assert_eq!(receipts[2].proxy, new_kid);
    assert_eq!(receipts[2].job, LOG_JOB);
}

#[tokio::test]
async fn an_audit_key_replaced_without_a_receipt_is_recorded_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let before = cfg.audit_key.clone();
    run(
        cfg.clone(),
        vec![hashed_call(&before), hashed_call(&before)],
    )
    .await;
    let after = AuditKey::new([6; 32]);
    let mut restart = cfg.clone();
    restart.audit_key = after.clone();
    run(restart.clone(), vec![hashed_call(&after)]).await;
    run(restart, vec![hashed_call(&after)]).await;

    let receipts = read_all(&cfg.dir, &key);
    assert_eq!(
        kinds(&receipts),
        [
            Kind::Call,
            Kind::Call,
            Kind::KeyRotation,
            Kind::Call,
            Kind::Call
        ]
    );
    assert_eq!(
        receipts[2].rotation,
        Some(Rotation {
            key: RotatedKey::Audit,
            old: before.kid().to_owned(),
            new: after.kid().to_owned(),
        })
    );
}

#[tokio::test]
async fn a_recorded_or_unused_key_needs_no_record_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let first = cfg.audit_key.clone();
    let second = AuditKey::new([6; 32]);
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    log.append(hashed_call(&first)).await.unwrap();
    log.rotate(Rekey::Audit(second.clone())).await.unwrap();
    // A draft hashed just before the rotation and appended after it is no sign of a change.
    log.append(hashed_call(&first)).await.unwrap();
    log.shutdown().await.unwrap();
    task.await.unwrap();
    let mut restart = cfg.clone();
    restart.audit_key = second;
    run(restart, vec![call("job-1")]).await;
    assert_eq!(
        kinds(&read_all(&cfg.dir, &key)),
        [Kind::Call, Kind::KeyRotation, Kind::Call, Kind::Call]
    );

    // No body hash was ever made: a new audit key contradicts nothing.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &key);
    run(cfg.clone(), vec![call("job-1")]).await;
    let mut restart = cfg.clone();
    restart.audit_key = AuditKey::new([7; 32]);
    run(restart, vec![call("job-1")]).await;
    assert_eq!(kinds(&read_all(&cfg.dir, &key)), [Kind::Call, Kind::Call]);
}
