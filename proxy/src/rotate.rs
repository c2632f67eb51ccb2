//! `clawproxy rotate KEY`: replace one key of the data dir, with the proxy running or not.
//!
//! The files change first. A new signing key's public half joins trust.json beside the old
//! one, under the same name, so evidence signed before stays verifiable and the proxy id does
//! not change; then the new private key replaces the old (0600, atomically). Then the
//! rotation is recorded as a `key_rotation` receipt: each proxy running on the data dir puts
//! the new key in use and records it in its own log (through its [control
//! socket](crate::control)); when none runs, this command records it in the proxy's log
//! itself.
//!
//! | key | what uses the new key | what is kept |
//! |---|---|---|
//! | `issuer` | tokens minted from now on | old public key: earlier tokens stay valid until they expire (revoke them to cut them off) |
//! | `proxy` | every receipt and checkpoint after the rotation receipt, which the old key signs | old public key |
//! | `policy` | contracts signed from now on | old public key: earlier contracts still verify |
//! | `audit` | body hashes after the rotation receipt | old key as `keys/audit-<kid>.key`, for `clawverify audit-hash --kid` |
//! | `ca` | leaf certificates of connections made from now on; agents must trust the new `ca.pem` | nothing: open connections keep their leaves |

use std::fs::{File, OpenOptions};

use anyhow::{Context, bail, ensure};
use claw_policy::datadir::DataDir;
use claw_policy::keys::{self, Purpose};
use claw_policy::trust::TrustStore;
use claw_verifier::log::{LogConfig, LogWriter, Rekey};
use claw_verifier::receipt::{AuditKey, RotatedKey, Rotation};
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::control::{self, Recorded};
use crate::stack::Proxy;

/// What `rotate` did.
#[derive(Debug)]
pub struct Rotated {
    /// Which key, old and new kid.
    pub rotation: Rotation,
    /// Where it was recorded: by each running proxy, or by this command.
    pub recorded: Vec<Recorded>,
    /// Whether running proxies put the new key in use (else it is used from their next start).
    pub live: bool,
}

/// Rotates `key` in `dir` and records the rotation (see the module docs).
pub async fn rotate(dir: &DataDir, key: RotatedKey) -> anyhow::Result<Rotated> {
    let _lock = lock(dir)?;
    let trust = TrustStore::load(&dir.trust()).context("reading trust.json")?;
    let proxy_id = match trust.proxy_ids().as_slice() {
        [one] => (*one).to_owned(),
        _ => bail!("trust.json must name exactly one proxy"),
    };
    let replaced = replace(dir, key, trust)?;
    let rotation = replaced.rotation.clone();
    let mut recorded = Vec::new();
    for socket in control::sockets(dir, &proxy_id) {
        let answer = control::ask(&socket, &rotation).await.with_context(|| {
            let then = match key {
                RotatedKey::Proxy | RotatedKey::Audit => " (its log records the change then)",
                RotatedKey::Issuer | RotatedKey::Policy | RotatedKey::Ca => "",
            };
            format!(
                "the {} key is replaced on disk, but the proxy behind {} did not take it and \
                 keeps the old one until it restarts{then}",
                key.as_str(),
                socket.display()
            )
        })?;
        recorded.extend(answer);
    }
    if !recorded.is_empty() {
        return Ok(Rotated {
            rotation,
            recorded,
            live: true,
        });
    }
    let recorded = record_offline(dir, replaced).await?;
    Ok(Rotated {
        rotation,
        recorded: vec![recorded],
        live: false,
    })
}

/// Puts the key `rotation` names in use in a running proxy and records the rotation in its
/// log (a control request). The files must already hold the new key.
pub async fn apply(proxy: &Proxy, rotation: Rotation) -> anyhow::Result<Recorded> {
    let dir = proxy.auth.data_dir().clone();
    let trust = TrustStore::load(&dir.trust()).context("reading trust.json")?;
    let rekey = match rotation.key {
        RotatedKey::Proxy => {
            let key = keys::read_signing_key(&dir.signing_key(Purpose::Proxy))?;
            let kid = keys::kid(&key.verifying_key());
            ensure!(
                kid == rotation.new,
                "keys/proxy.pem holds key {kid}, not {}",
                rotation.new
            );
            ensure!(
                trust
                    .key(&kid, Purpose::Proxy)
                    .is_some_and(|k| k.name == proxy.auth.audience()),
                "trust.json does not list the new proxy key {kid} for proxy {}",
                proxy.auth.audience()
            );
            Rekey::Proxy(key)
        }
        RotatedKey::Audit => {
            let key = AuditKey::load(&dir.audit_key())?;
            ensure!(
                key.kid() == rotation.new,
                "keys/audit.key has kid {}, not {}",
                key.kid(),
                rotation.new
            );
            Rekey::Audit(key)
        }
        RotatedKey::Ca => {
            let on_disk = crate::intercept::ca_kid(&crate::intercept::read_ca_key(&dir)?);
            ensure!(
                on_disk == rotation.new,
                "keys/ca.key has kid {on_disk}, not {}",
                rotation.new
            );
            let old = proxy.interceptor.ca_kid();
            proxy.interceptor.reload(&dir)?;
            Rekey::Recorded(Rotation { old, ..rotation })
        }
        RotatedKey::Issuer | RotatedKey::Policy => {
            if let Some(purpose) = rotation.key.purpose() {
                for kid in [&rotation.old, &rotation.new] {
                    ensure!(
                        trust.key(kid, purpose).is_some(),
                        "trust.json does not list the {} key {kid}",
                        purpose.as_str()
                    );
                }
            }
            Rekey::Recorded(rotation)
        }
    };
    // Every rotation may change trust.json; the verifier of tokens and contracts reads it anew.
    proxy.auth.reload().context("reloading trust.json")?;
    let log = proxy.evidence.log();
    let appended = log.rotate(rekey).await?;
    Ok(Recorded {
        log: log.origin().to_owned(),
        seq: appended.seq,
        id: appended.id,
    })
}

/// The rotated files, and what recording the rotation without a running proxy needs.
struct Replaced {
    rotation: Rotation,
    offline: Offline,
}

/// The log starts with the old key and rotates to the new, as a running proxy would.
enum Offline {
    Proxy {
        old: Box<SigningKey>,
        new: Box<SigningKey>,
    },
    Audit {
        old: AuditKey,
        new: AuditKey,
    },
    Recorded,
}

/// Writes the new key (and its public half into `trust`), keeping what verifies the old.
fn replace(dir: &DataDir, key: RotatedKey, mut trust: TrustStore) -> anyhow::Result<Replaced> {
    let Some(purpose) = key.purpose() else {
        return match key {
            RotatedKey::Audit => replace_audit(dir),
            _ => replace_ca(dir),
        };
    };
    let path = dir.signing_key(purpose);
    let old = keys::read_signing_key(&path)?;
    let old_kid = keys::kid(&old.verifying_key());
    let name = trust
        .key(&old_kid, purpose)
        .map(|k| k.name.clone())
        .with_context(|| {
            format!(
                "trust.json does not list the current {} key {old_kid}; nothing was changed",
                purpose.as_str()
            )
        })?;
    let new = keys::generate();
    let new_kid = keys::kid(&new.verifying_key());
    // Trust first: whatever the new key signs must verify the moment it exists.
    trust.add(purpose, &name, new.verifying_key());
    claw_policy::registry::write_atomic(&dir.trust(), trust.to_json_pretty().as_bytes())
        .with_context(|| format!("writing {}", dir.trust().display()))?;
    keys::write_signing_key(&path, &new, true)?;
    Ok(Replaced {
        rotation: Rotation {
            key,
            old: old_kid,
            new: new_kid,
        },
        offline: match key {
            RotatedKey::Proxy => Offline::Proxy {
                old: Box::new(old),
                new: Box::new(new),
            },
            _ => Offline::Recorded,
        },
    })
}

fn replace_ca(dir: &DataDir) -> anyhow::Result<Replaced> {
    let old = crate::intercept::ca_kid(&crate::intercept::read_ca_key(dir)?);
    let new = crate::intercept::ca_kid(&crate::init::write_new_ca(dir)?);
    Ok(Replaced {
        rotation: Rotation {
            key: RotatedKey::Ca,
            old,
            new,
        },
        offline: Offline::Recorded,
    })
}

fn replace_audit(dir: &DataDir) -> anyhow::Result<Replaced> {
    let old = keys::read_secret_32(&dir.audit_key())?;
    let old_key = AuditKey::new(*old);
    // Kept first: a crash after this leaves both keys on disk, never neither.
    keys::write_secret(&dir.retired_audit_key(old_key.kid()), old.as_ref(), false)?;
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, bytes.as_mut());
    keys::write_secret(&dir.audit_key(), bytes.as_ref(), true)?;
    let new_key = AuditKey::new(*bytes);
    Ok(Replaced {
        rotation: Rotation {
            key: RotatedKey::Audit,
            old: old_key.kid().to_owned(),
            new: new_key.kid().to_owned(),
        },
        offline: Offline::Audit {
            old: old_key,
            new: new_key,
        },
    })
}

/// Records the rotation in the proxy's log when no proxy runs.
async fn record_offline(dir: &DataDir, replaced: Replaced) -> anyhow::Result<Recorded> {
    let mut config = LogConfig::from_data_dir(dir).context("opening the receipt log")?;
    let rekey = match replaced.offline {
        Offline::Proxy { old, new } => {
            config.signing_key = *old;
            Rekey::Proxy(*new)
        }
        Offline::Audit { old, new } => {
            config.audit_key = old;
            Rekey::Audit(new)
        }
        Offline::Recorded => Rekey::Recorded(replaced.rotation),
    };
    let (log, task) = LogWriter::open(config).await.with_context(|| {
        "the key is replaced on disk, but its rotation could not be recorded (is a proxy \
         without a control socket running? restart it to use the new key)"
    })?;
    let appended = log.rotate(rekey).await?;
    log.shutdown().await?;
    let _ = task.await;
    Ok(Recorded {
        log: log.origin().to_owned(),
        seq: appended.seq,
        id: appended.id,
    })
}

/// One rotation at a time per data dir (`keys/rotate.lock`, flock'd).
fn lock(dir: &DataDir) -> anyhow::Result<File> {
    let path = dir.keys().join("rotate.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!(
                "another `clawproxy rotate` is running on {}",
                dir.root().display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).context(path.display().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn fresh() -> (tempfile::TempDir, DataDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("claw"));
        crate::init::init(&dir, false).unwrap();
        (tmp, dir)
    }

    #[test]
    fn a_signing_key_is_replaced_and_trust_keeps_both_under_one_name() {
        for (key, purpose) in [
            (RotatedKey::Issuer, Purpose::Issuer),
            (RotatedKey::Proxy, Purpose::Proxy),
            (RotatedKey::Policy, Purpose::Policy),
        ] {
            let (_tmp, dir) = fresh();
            let before = TrustStore::load(&dir.trust()).unwrap();
            let replaced = replace(&dir, key, before.clone()).unwrap();
            let r = &replaced.rotation;
            let on_disk = keys::read_signing_key(&dir.signing_key(purpose)).unwrap();
            assert_eq!(keys::kid(&on_disk.verifying_key()), r.new);
            assert_eq!(mode(&dir.signing_key(purpose)), 0o600);
            let trust = TrustStore::load(&dir.trust()).unwrap();
            let old = trust
                .key(&r.old, purpose)
                .expect("the old key stays trusted");
            let new = trust.key(&r.new, purpose).expect("the new key is trusted");
            assert_eq!(old.name, new.name);
            assert_eq!(trust.keys().len(), before.keys().len() + 1);
            assert_eq!(trust.proxy_ids(), before.proxy_ids());
        }
    }

    #[test]
    fn a_key_trust_json_does_not_list_is_left_alone() {
        let (_tmp, dir) = fresh();
        let path = dir.signing_key(Purpose::Issuer);
        let before = std::fs::read(&path).unwrap();
        let err = replace(&dir, RotatedKey::Issuer, TrustStore::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn the_audit_key_is_replaced_and_the_old_one_kept_private() {
        let (_tmp, dir) = fresh();
        let old = std::fs::read(dir.audit_key()).unwrap();
        let trust = TrustStore::load(&dir.trust()).unwrap();
        let replaced = replace(&dir, RotatedKey::Audit, trust).unwrap();
        let r = &replaced.rotation;
        let kept = dir.retired_audit_key(&r.old);
        assert_eq!(std::fs::read(&kept).unwrap(), old);
        assert_eq!(mode(&kept), 0o600);
        assert_eq!(AuditKey::load(&dir.audit_key()).unwrap().kid(), r.new);
        assert_ne!(r.old, r.new);
    }

    #[test]
    fn the_ca_is_replaced_with_a_public_certificate_and_a_private_key() {
        let (_tmp, dir) = fresh();
        let cert = std::fs::read(dir.ca_cert()).unwrap();
        let trust = TrustStore::load(&dir.trust()).unwrap();
        let replaced = replace(&dir, RotatedKey::Ca, trust).unwrap();
        let r = &replaced.rotation;
        assert!(r.key.is_kid(&r.old) && r.key.is_kid(&r.new) && r.old != r.new);
        let key = crate::intercept::read_ca_key(&dir).unwrap();
        assert_eq!(crate::intercept::ca_kid(&key), r.new);
        assert_ne!(std::fs::read(dir.ca_cert()).unwrap(), cert);
        assert_eq!((mode(&dir.ca_cert()), mode(&dir.ca_key())), (0o644, 0o600));
    }
}
