//! Proof bundle v1: one JSON file holding everything a reviewer needs to check a job offline.
//!
//! ```text
//! {"type":"clawproxy/proof-bundle/v1", "job":"j42",
//!  "receipts":[…the job's receipts, ordered by log then seq, each exactly its leaf bytes…],
//!  "token":"<compact JWS>", "revocations":{<signed revocation snapshot>}?,
//!  "policies":[<signed WPC envelope>], "scope":{…}?,
//!  "logs":[{"origin":"clawproxy/<id>", "checkpoint":"<note>",
//!           "inclusion":[{"seq":…, "hashes":[b64…]}],
//!           "consistency":[{"from":…, "to":…, "checkpoint":"<older note>", "hashes":[b64…]}]}],
//!  "key_hints":[kid…]}
//! ```
//!
//! The container is not signed: every object in it carries its own signature (receipts,
//! contract envelopes, the token, checkpoints), and `clawverify verify` checks each against
//! keys from the reviewer's `trust.json` only. `key_hints` lists key ids, never keys, so a
//! bundle cannot bring its own trust. `scope` is present only when the token narrowed the
//! contract's `tool_scope` at mint; its hash is the token's `scope` claim. `revocations` is the
//! issuer's signed word on whether the job or its tokens were revoked, and when
//! ([`claw_tokens::snapshot`]); it is there when the bundle was built where the issuer key is.
//!
//! Each `consistency` entry carries the older checkpoint it starts from (the first checkpoint
//! that covered the job's first receipt), so a reviewer who saw that checkpoint earlier can
//! tell the log was only appended to since.
//!
//! [`build`] writes a bundle from a data dir, streaming; [`parse`] reads one for verification.

mod build;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use claw_policy::canonical;
use claw_policy::contract::ToolScope;
use claw_policy::envelope::Envelope;
use claw_tokens::snapshot::SignedSnapshot;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use build::{BuildError, BuildOptions, Built, TokenState, build};

use crate::merkle::Hash;

/// The bundle's `type`.
pub const BUNDLE_TYPE: &str = "clawproxy/proof-bundle/v1";

/// The largest bundle `verify` reads (a job of 100k receipts is about 200 MiB).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

/// The largest single receipt in a bundle (the proxy writes well under 4 KiB).
pub const MAX_RECEIPT_BYTES: usize = 64 * 1024;

/// The longest proof: a tree of 2^64 leaves has 64 levels.
pub const MAX_PROOF_HASHES: usize = 64;

/// A parsed proof bundle.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The job.
    pub job: String,
    /// The job's receipts as carried (checked one by one: canonical form, signature, shape).
    pub receipts: Vec<Value>,
    /// The job's token.
    pub token: String,
    /// The issuer's signed revocation snapshot for the job and its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocations: Option<SignedSnapshot>,
    /// The signed contract envelopes the token and receipts cite.
    pub policies: Vec<Envelope>,
    /// The effective scope, when narrower than the contract's `tool_scope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ToolScope>,
    /// One entry per log the receipts come from.
    pub logs: Vec<LogProof>,
    /// Ids of the keys that signed (hints only: never trusted).
    pub key_hints: Vec<String>,
}

/// What proves a log's receipts: a checkpoint, inclusion proofs, consistency proofs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogProof {
    /// `clawproxy/<proxy id>`.
    pub origin: String,
    /// A signed checkpoint note covering every receipt of the job in this log.
    pub checkpoint: String,
    /// One inclusion proof per receipt, against `checkpoint`.
    pub inclusion: Vec<Inclusion>,
    /// Consistency proofs from older checkpoints to `checkpoint`.
    #[serde(default)]
    pub consistency: Vec<Consistency>,
}

/// The inclusion proof of the receipt with this `seq`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Inclusion {
    /// The leaf index.
    pub seq: u64,
    /// The audit path, leaf upward, standard base64.
    pub hashes: Vec<String>,
}

/// The consistency proof from an older checkpoint of the same log.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Consistency {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size (the log's `checkpoint`).
    pub to: u64,
    /// The older checkpoint note.
    pub checkpoint: String,
    /// The proof, standard base64.
    pub hashes: Vec<String>,
}

/// Why bytes are not a bundle (check `bundle.parse`).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What is wrong, naming the field.
    pub message: String,
}

/// Parses a bundle strictly: JSON without duplicate keys or integers beyond ±(2^53 − 1), the
/// known type, no unknown field anywhere, every part within its size limit.
pub fn parse(bytes: &[u8]) -> Result<Bundle, ParseError> {
    let fail = |message: String| ParseError { message };
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(fail(format!(
            "{} bytes is over the {MAX_BUNDLE_BYTES} a bundle may have",
            bytes.len()
        )));
    }
    let value = canonical::parse_strict(bytes).map_err(|e| fail(e.to_string()))?;
    match value.get("type").and_then(Value::as_str) {
        Some(BUNDLE_TYPE) => {}
        Some(other) => {
            return Err(fail(format!(
                "/type: {other:?} is not a bundle type this verifier knows ({BUNDLE_TYPE})"
            )));
        }
        None => return Err(fail("/type: missing; not a proof bundle".into())),
    }
    // The fast typed parse; only on failure again with the path tracked, to name the field.
    let bundle = match Bundle::deserialize(&value) {
        Ok(bundle) => bundle,
        Err(_) => {
            let e = canonical::from_value_at::<Bundle>(value).err();
            let (pointer, message) = e.map_or_else(Default::default, |e| (e.pointer, e.message));
            return Err(fail(format!("{pointer}: {message}")));
        }
    };
    for (i, receipt) in bundle.receipts.iter().enumerate() {
        if !receipt.is_object() {
            return Err(fail(format!("/receipts/{i}: a receipt is a JSON object")));
        }
        let len = serialized_len(receipt);
        if len > MAX_RECEIPT_BYTES {
            return Err(fail(format!(
                "/receipts/{i}: {len} bytes, over the {MAX_RECEIPT_BYTES} a receipt may have"
            )));
        }
    }
    for (l, log) in bundle.logs.iter().enumerate() {
        if log.checkpoint.len() > crate::checkpoint::MAX_NOTE_BYTES {
            return Err(fail(format!("/logs/{l}/checkpoint: note too large")));
        }
        let proofs = log
            .inclusion
            .iter()
            .map(|p| &p.hashes)
            .chain(log.consistency.iter().map(|c| &c.hashes));
        for hashes in proofs {
            if hashes.len() > MAX_PROOF_HASHES {
                return Err(fail(format!(
                    "/logs/{l}: a proof of {} hashes is longer than any tree allows",
                    hashes.len()
                )));
            }
        }
    }
    Ok(bundle)
}

/// The length of a value's compact serialisation, without building it.
fn serialized_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a parsed value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Standard base64 of a hash (the encoding of proof hashes in a bundle).
pub fn encode_hash(hash: &Hash) -> String {
    STANDARD.encode(hash)
}

/// A proof hash from standard base64, or `None` if it is not exactly 32 bytes.
pub fn decode_hash(text: &str) -> Option<Hash> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
}

#[cfg(test)]
mod tests;
