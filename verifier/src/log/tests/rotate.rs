//! Key rotation in the log: the `key_rotation` receipt, the hand-over between proxy keys,
//! the audit key swap, and the one-writer lock.

use claw_policy::keys;
use claw_policy::trust::TrustStore;

use super::*;
use crate::receipt::{AuditKey, Kind, LOG_JOB, RotatedKey, Rotation};

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
