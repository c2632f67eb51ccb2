//! A signed revocation snapshot: the issuer's word, at one moment, on whether a job or the
//! tokens issued for it were revoked, and when.
//!
//! `clawverify bundle` signs one into a bundle with the data dir's issuer key, and
//! `clawverify verify` holds the job's receipts against it (`token.revocation`): no call may be
//! allowed after its job or its token was revoked. The revocation list itself prunes entries a
//! day after they stop mattering to the proxy; the snapshot keeps the answer with the evidence.
//!
//! ```json
//! { "snapshot": { "job": "job-42", "jti": ["…"], "as_of": 1732300000,
//!                 "revoked": [ { "by": "job", "id": "job-42", "at": 1732299000 } ] },
//!   "kid": "<issuer key id>", "sig": "<base64>" }
//! ```
//!
//! `sig` is Ed25519 over `PAE("application/vnd.clawproxy.revocations.v1+json",
//! JCS(snapshot))` by the issuer key `kid`. Reasons given to `clawscope revoke` stay out: they
//! are free text, and the verdict needs only the time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use claw_policy::canonical;
use claw_policy::dsse::pae;
use claw_policy::keys::{self, Purpose};
use claw_policy::trust::TrustStore;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::revocation::RevocationList;

/// DSSE payload type of a revocation snapshot.
pub const PAYLOAD_TYPE: &str = "application/vnd.clawproxy.revocations.v1+json";

/// What the issuer's revocation list said about one job and its tokens.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The job asked about.
    pub job: String,
    /// The token ids asked about (every token issued for the job), sorted.
    pub jti: Vec<String>,
    /// When the list was read (seconds since the epoch).
    pub as_of: u64,
    /// The revocations of the job or of those tokens; empty when there are none.
    pub revoked: Vec<Revoked>,
}

/// One revocation.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    /// What was revoked.
    pub by: RevokedBy,
    /// The job or token id.
    pub id: String,
    /// When (seconds since the epoch; the revocation took effect within that second).
    pub at: u64,
}

/// What a revocation names.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevokedBy {
    /// One token, by `jti`.
    Jti,
    /// Every token of a job.
    Job,
}

/// A snapshot with the issuer's signature.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSnapshot {
    /// The statement.
    pub snapshot: Snapshot,
    /// Key id of the issuer key that signed.
    pub kid: String,
    /// Ed25519 signature, standard base64.
    pub sig: String,
}

/// Why a snapshot was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// `kid` is not a trusted issuer key.
    #[error("signed by {0}, which is not a trusted issuer key")]
    Untrusted(String),
    /// The signature does not verify (the snapshot was altered, or signed by another key).
    #[error("the issuer's signature does not verify (tampered?)")]
    BadSignature,
}

impl Snapshot {
    /// What `list` says about `job` and the tokens `jti`, as of `now`.
    pub fn of(list: &RevocationList, job: &str, jti: &[String], now: u64) -> Self {
        let mut jti = jti.to_vec();
        jti.sort();
        jti.dedup();
        let mut revoked: Vec<Revoked> = jti
            .iter()
            .filter_map(|id| {
                list.jti.get(id).map(|e| Revoked {
                    by: RevokedBy::Jti,
                    id: id.clone(),
                    at: e.at,
                })
            })
            .collect();
        if let Some(e) = list.job.get(job) {
            revoked.push(Revoked {
                by: RevokedBy::Job,
                id: job.to_owned(),
                at: e.at,
            });
        }
        Self {
            job: job.to_owned(),
            jti,
            as_of: now,
            revoked,
        }
    }

    /// The earliest revocation that ends a token `jti` of this job, if any.
    pub fn revoked_at(&self, jti: Option<&str>) -> Option<u64> {
        self.revoked
            .iter()
            .filter(|r| match r.by {
                RevokedBy::Job => r.id == self.job,
                RevokedBy::Jti => Some(r.id.as_str()) == jti,
            })
            .map(|r| r.at)
            .min()
    }

    /// Signs it with the issuer key.
    pub fn sign(self, key: &SigningKey) -> SignedSnapshot {
        let sig = key.sign(&message(&self));
        SignedSnapshot {
            kid: keys::kid(&key.verifying_key()),
            sig: STANDARD.encode(sig.to_bytes()),
            snapshot: self,
        }
    }
}

impl SignedSnapshot {
    /// The snapshot, once its signature verifies under a trusted issuer key.
    pub fn verify(&self, trust: &TrustStore) -> Result<&Snapshot, SnapshotError> {
        let trusted = trust
            .key(&self.kid, Purpose::Issuer)
            .ok_or_else(|| SnapshotError::Untrusted(self.kid.clone()))?;
        let verifies = STANDARD
            .decode(&self.sig)
            .ok()
            .and_then(|raw| Signature::from_slice(&raw).ok())
            .is_some_and(|sig| {
                trusted
                    .key
                    .verify_strict(&message(&self.snapshot), &sig)
                    .is_ok()
            });
        if verifies {
            Ok(&self.snapshot)
        } else {
            Err(SnapshotError::BadSignature)
        }
    }
}

/// The signed bytes: the PAE of the snapshot's canonical JSON.
fn message(snapshot: &Snapshot) -> Vec<u8> {
    let body = canonical::to_jcs_of(snapshot).expect("a snapshot is plain JSON");
    pae(PAYLOAD_TYPE, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Entry;

    fn list() -> RevocationList {
        let entry = |at| Entry {
            at,
            reason: "secret reason".into(),
            prune_after: at + 100,
        };
        let mut list = RevocationList::default();
        list.jti.insert("t1".into(), entry(200));
        list.jti.insert("other".into(), entry(50));
        list.job.insert("job-1".into(), entry(300));
        list.job.insert("job-2".into(), entry(10));
        list
    }

    fn trust(key: &SigningKey, purpose: Purpose) -> TrustStore {
        let json = serde_json::json!({
            "version": 1,
            "keys": [{
                "kid": keys::kid(&key.verifying_key()),
                "purpose": purpose.as_str(),
                "alg": "Ed25519",
                "public_key": STANDARD.encode(key.verifying_key().as_bytes()),
                "name": "issuer",
            }],
        });
        TrustStore::from_json(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_snapshot_holds_only_the_job_and_its_tokens() {
        let s = Snapshot::of(&list(), "job-1", &["t2".into(), "t1".into()], 400);
        assert_eq!(s.jti, ["t1", "t2"]);
        assert_eq!(
            s.revoked,
            [
                Revoked {
                    by: RevokedBy::Jti,
                    id: "t1".into(),
                    at: 200
                },
                Revoked {
                    by: RevokedBy::Job,
                    id: "job-1".into(),
                    at: 300
                }
            ]
        );
        assert!(!serde_json::to_string(&s).unwrap().contains("secret"));
        assert_eq!(s.revoked_at(Some("t1")), Some(200));
        assert_eq!(s.revoked_at(Some("t2")), Some(300), "the job's revocation");
        assert_eq!(s.revoked_at(None), Some(300));
        let clean = Snapshot::of(&list(), "job-3", &["t3".into()], 400);
        assert!(clean.revoked.is_empty());
        assert_eq!(clean.revoked_at(Some("t3")), None);
    }

    #[test]
    fn only_a_trusted_issuer_signature_on_the_same_snapshot_verifies() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = Snapshot::of(&list(), "job-1", &["t1".into()], 400).sign(&key);
        let trusted = trust(&key, Purpose::Issuer);
        assert_eq!(signed.verify(&trusted).unwrap().job, "job-1");

        // Round trip through JSON: the same bytes are signed.
        let again: SignedSnapshot =
            serde_json::from_str(&serde_json::to_string(&signed).unwrap()).unwrap();
        assert!(again.verify(&trusted).is_ok());

        let mut later = signed.clone();
        later.snapshot.revoked[0].at += 1;
        assert_eq!(later.verify(&trusted), Err(SnapshotError::BadSignature));
        let mut forgotten = signed.clone();
        forgotten.snapshot.revoked.clear();
        assert_eq!(forgotten.verify(&trusted), Err(SnapshotError::BadSignature));
        let mut garbled = signed.clone();
        garbled.sig = "not base64".into();
        assert_eq!(garbled.verify(&trusted), Err(SnapshotError::BadSignature));

        let as_proxy = trust(&key, Purpose::Proxy);
        assert!(matches!(
            signed.verify(&as_proxy),
            Err(SnapshotError::Untrusted(_))
        ));
        let stranger = SigningKey::from_bytes(&[8; 32]);
        let forged = Snapshot::of(&list(), "job-1", &["t1".into()], 400).sign(&stranger);
        assert!(matches!(
            forged.verify(&trusted),
            Err(SnapshotError::Untrusted(_))
        ));
        let mut relabelled = forged;
        relabelled.kid = signed.kid.clone();
        assert_eq!(
            relabelled.verify(&trusted),
            Err(SnapshotError::BadSignature)
        );
    }
}
