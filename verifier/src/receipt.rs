//! Receipt v1: one signed JSON object per event.
//!
//! `sig` is Ed25519 over `PAE("application/vnd.clawproxy.receipt.v1+json", JCS(receipt − sig))`,
//! so a receipt signature can never pass for a contract's. The Merkle leaf is the JCS of the
//! signed receipt; `prev` and `job_prev` are `sha256:<hex>` of the previous leaf hashes (in the
//! log, and in the job within the log), the genesis value being 64 zeros. Optional fields are
//! omitted, never null. Bodies appear only as keyed BLAKE3 hashes (`blake3k:<kid>:<hex>`), so a
//! bundle cannot confirm a guessed secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use claw_policy::canonical;
use claw_policy::dsse::pae;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::{self, Hash};

/// The DSSE payload type of receipts.
pub const RECEIPT_PAYLOAD_TYPE: &str = "application/vnd.clawproxy.receipt.v1+json";

/// `prev`/`job_prev` of the first receipt.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Durable before a mutating request is forwarded (pairs with its `call` by `rid`).
    Request,
    /// One per call (allowed, denied or failed), durable before the answer is released.
    Call,
    /// Durable before an opaque tunnel opens.
    TunnelOpen,
    /// When an opaque tunnel closes, with bytes each way.
    TunnelClose,
    /// The job's token expired or was revoked: `count` receipts precede this one in this log.
    JobClose,
    /// A torn, never-acknowledged last line was cut at start.
    Recovery,
}

/// The token a call was made with.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cst {
    /// Token id.
    pub jti: String,
    /// Effective scope hash.
    pub scope: String,
}

/// The request as checked and forwarded.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Req {
    /// Method.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host the agent named.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Normalised path.
    pub path: String,
    /// Re-encoded query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Keyed hash of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hash: Option<String>,
}

/// The classified operation.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// `onepassword`, or `none` for hosts without request rules.
    pub integration: String,
    /// Operation name.
    pub name: String,
    /// Vault id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// Vault name, when it was resolved for the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_name: Option<String>,
    /// Item id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// Item category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Entries withheld from a list answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<u64>,
}

/// The decision.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Allowed?
    pub allow: bool,
    /// The deciding rule.
    pub rule: String,
    /// Why.
    pub reason: String,
}

/// The upstream answer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resp {
    /// Upstream status.
    pub status: u16,
    /// Upstream body length.
    pub bytes: u64,
    /// Keyed hash of the upstream body.
    pub body_hash: String,
    /// Whether the agent got it.
    pub released: bool,
}

/// Bytes through an opaque tunnel.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// Agent → upstream.
    pub sent: u64,
    /// Upstream → agent.
    pub received: u64,
}

/// What a `recovery` receipt records.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// The segment file.
    pub segment: String,
    /// Bytes cut.
    pub bytes: u64,
    /// `sha256:` of the bytes cut.
    pub hash: String,
}

/// A receipt.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Format version: 1.
    pub v: u32,
    /// Kind.
    pub kind: Kind,
    /// Sortable unique id.
    pub id: String,
    /// Log origin, `clawproxy/<proxy id>`.
    pub log: String,
    /// Leaf index in the log.
    pub seq: u64,
    /// Previous leaf hash in the log.
    pub prev: String,
    /// UTC time with millisecond precision.
    pub ts: String,
    /// Key id of the proxy key that signed.
    pub proxy: String,
    /// The job.
    pub job: String,
    /// Index among the job's receipts in this log.
    pub job_seq: u64,
    /// Leaf hash of the job's previous receipt in this log.
    pub job_prev: String,
    /// Pairs a `request` with its `call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// The agent's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cst: Option<Cst>,
    /// The pinned contract hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wpc: Option<String>,
    /// The request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<Req>,
    /// The operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// The decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The upstream answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<Resp>,
    /// Milliseconds from request head to this receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Tunnel bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// `job_close`: receipts of the job before this one in this log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `recovery`: what was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// Signature (standard base64); empty while unsigned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sig: String,
}

/// Why a receipt was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not a receipt.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The bytes are not the canonical form of the receipt.
    #[error("receipt is not in canonical form")]
    NotCanonical,
    /// The signature does not verify.
    #[error("receipt signature does not verify")]
    Signature,
}

impl Receipt {
    /// The bytes that are signed: JCS of the receipt without `sig`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.sig.clear();
        canonical::to_jcs_of(&unsigned).expect("receipts canonicalise")
    }

    /// Signs in place.
    pub fn sign(&mut self, key: &SigningKey) {
        self.sig.clear();
        let message = pae(RECEIPT_PAYLOAD_TYPE, &self.signing_bytes());
        self.sig = STANDARD.encode(key.sign(&message).to_bytes());
    }

    /// Checks the signature (strict).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ReceiptError> {
        let raw = STANDARD
            .decode(&self.sig)
            .map_err(|_| ReceiptError::Signature)?;
        let sig = Signature::from_slice(&raw).map_err(|_| ReceiptError::Signature)?;
        key.verify_strict(&pae(RECEIPT_PAYLOAD_TYPE, &self.signing_bytes()), &sig)
            .map_err(|_| ReceiptError::Signature)
    }

    /// The leaf: JCS of the signed receipt.
    pub fn leaf(&self) -> Vec<u8> {
        canonical::to_jcs_of(self).expect("receipts canonicalise")
    }

    /// The Merkle leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.leaf())
    }

    /// Parses a leaf strictly and checks it is canonical (the bytes are exactly its JCS).
    pub fn from_leaf(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let receipt: Receipt = canonical::from_slice_strict(bytes)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        if receipt.leaf() != bytes {
            return Err(ReceiptError::NotCanonical);
        }
        Ok(receipt)
    }
}

/// `sha256:<hex>` of a leaf hash.
pub fn link(hash: &Hash) -> String {
    format!("sha256:{}", hex(hash))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The audit key that keys body hashes (wiped on drop).
pub struct AuditKey {
    key: zeroize::Zeroizing<[u8; 32]>,
    kid: String,
}

impl AuditKey {
    /// From the 32 key bytes.
    pub fn new(key: [u8; 32]) -> Self {
        let id = blake3::derive_key("clawproxy audit key id v1", &key);
        Self {
            kid: hex(&id[..8]),
            key: zeroize::Zeroizing::new(key),
        }
    }

    /// The key id in `blake3k:<kid>:…`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `blake3k:<kid>:<hex>` of `bytes`.
    pub fn hash(&self, bytes: &[u8]) -> String {
        format!(
            "blake3k:{}:{}",
            self.kid,
            blake3::keyed_hash(&self.key, bytes).to_hex()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Receipt {
        Receipt {
            v: 1,
            kind: Kind::Call,
            id: "01JD0000000000000000000000".into(),
            log: "clawproxy/p01020304".into(),
            seq: 0,
            prev: GENESIS.into(),
            ts: "2026-11-22T19:38:20.123Z".into(),
            proxy: "kid".into(),
            job: "job-1".into(),
            job_seq: 0,
            job_prev: GENESIS.into(),
            rid: None,
            client: Some("127.0.0.1".into()),
            cst: Some(Cst {
                jti: "j".into(),
                scope: "blake3:00".into(),
            }),
            wpc: Some("blake3:11".into()),
            req: Some(Req {
                method: "GET".into(),
                scheme: "https".into(),
                host: "connect.1password.com".into(),
                port: 443,
                path: "/v1/vaults".into(),
                ..Req::default()
            }),
            op: Some(Op {
                integration: "onepassword".into(),
                name: "list_vaults".into(),
                ..Op::default()
            }),
            decision: Some(Decision {
                allow: false,
                rule: "allowed_operations".into(),
                reason: "no".into(),
            }),
            resp: None,
            duration_ms: Some(3),
            tunnel: None,
            count: None,
            recovery: None,
            sig: String::new(),
        }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let key = claw_policy::keys::generate();
        let mut r = sample();
        r.sign(&key);
        r.verify(&key.verifying_key()).unwrap();
        let leaf = r.leaf();
        assert_eq!(Receipt::from_leaf(&leaf).unwrap(), r);
        assert!(
            !String::from_utf8(leaf.clone()).unwrap().contains("null"),
            "optional fields are omitted"
        );
        let mut tampered = r.clone();
        tampered.decision.as_mut().unwrap().allow = true;
        assert_eq!(
            tampered.verify(&key.verifying_key()),
            Err(ReceiptError::Signature)
        );
        // Whitespace or reordering makes the bytes non-canonical.
        let pretty = serde_json::to_vec_pretty(&r).unwrap();
        assert_eq!(Receipt::from_leaf(&pretty), Err(ReceiptError::NotCanonical));
        // The signature does not verify as a contract signature (another PAE type).
        let raw = STANDARD.decode(&r.sig).unwrap();
        let sig = Signature::from_slice(&raw).unwrap();
        let as_wpc = pae(claw_policy::dsse::WPC_PAYLOAD_TYPE, &r.signing_bytes());
        assert!(key.verifying_key().verify_strict(&as_wpc, &sig).is_err());
    }

    #[test]
    fn keyed_body_hash_golden_vector() {
        let key = AuditKey::new([7u8; 32]);
        let a = key.hash(b"secret value");
        assert!(a.starts_with(&format!("blake3k:{}:", key.kid())));
        assert_eq!(a, key.hash(b"secret value"));
        assert_ne!(a, AuditKey::new([8u8; 32]).hash(b"secret value"));
        assert_ne!(
            a.rsplit(':').next().unwrap(),
            blake3::hash(b"secret value").to_hex().as_str()
        );
        assert_eq!(key.kid().len(), 16);
    }

    #[test]
    fn receipts_match_the_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/receipt.schema.json")).unwrap();
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        let key = claw_policy::keys::generate();
        let mut r = sample();
        r.sign(&key);
        let value = serde_json::to_value(&r).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        let mut bad = value.clone();
        bad["extra"] = serde_json::json!(1);
        assert!(!validator.is_valid(&bad));
    }
}
