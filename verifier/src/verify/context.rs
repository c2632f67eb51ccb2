//! What the checks share, computed once per bundle.

use claw_policy::canonical;
use claw_policy::contract::{Contract, ToolScope};
use claw_policy::trust::TrustStore;
use claw_tokens::token::{self, Decoded};
use claw_tokens::{Claims, TokenError};
use serde::Deserialize;
use serde_json::Value;

use crate::bundle::Bundle;
use crate::checkpoint::{self, Checkpoint};
use crate::merkle::{self, Hash};
use crate::receipt::Receipt;

/// One receipt of the bundle, as far as it could be read.
pub(crate) struct Entry<'a> {
    /// The receipt as carried.
    pub(crate) value: &'a Value,
    /// Its leaf: the JCS bytes of the value.
    pub(crate) leaf: Option<Vec<u8>>,
    /// `SHA-256(0x00 ‖ leaf)`.
    pub(crate) leaf_hash: Option<Hash>,
    /// The typed receipt, when the leaf parses strictly and is canonical.
    pub(crate) receipt: Option<Receipt>,
    /// Why it is not, otherwise.
    pub(crate) error: Option<String>,
}

impl Entry<'_> {
    /// The receipt's seq as carried (for naming it even when it did not parse).
    pub(crate) fn seq(&self) -> Option<u64> {
        self.receipt
            .as_ref()
            .map(|r| r.seq)
            .or_else(|| self.value.get("seq").and_then(Value::as_u64))
    }
}

/// A log's checkpoint, as far as it could be opened.
pub(crate) struct LogCheckpoint {
    /// Parsed and verified under the trusted key of its origin.
    pub(crate) checkpoint: Result<Checkpoint, String>,
}

pub(crate) struct Ctx<'a> {
    pub(crate) bundle: &'a Bundle,
    pub(crate) trust: &'a TrustStore,
    pub(crate) entries: Vec<Entry<'a>>,
    /// The token split and decoded (no key used yet).
    pub(crate) decoded: Result<Decoded, TokenError>,
    /// Its claims, parsed (not verified).
    pub(crate) claims: Option<Claims>,
    /// The contract the token pins, hash-checked (`None`: absent or refused by policy.hash).
    pub(crate) contract: Option<Contract>,
    /// The effective scope: the bundle's narrowed one, or the contract's `tool_scope`.
    pub(crate) scope: Option<ToolScope>,
    /// Per entry of `bundle.logs`.
    pub(crate) checkpoints: Vec<LogCheckpoint>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(bundle: &'a Bundle, trust: &'a TrustStore) -> Self {
        let entries = bundle.receipts.iter().map(entry).collect();
        let decoded = token::decode(&bundle.token);
        let claims = decoded
            .as_ref()
            .ok()
            .and_then(|d| token::parse_claims(d.claims.clone()).ok());
        let contract = pinned(bundle, claims.as_ref());
        let scope = bundle
            .scope
            .clone()
            .or_else(|| contract.as_ref().map(|c| c.document().tool_scope.clone()));
        let checkpoints = bundle
            .logs
            .iter()
            .map(|log| LogCheckpoint {
                checkpoint: open_checkpoint(&log.checkpoint, &log.origin, trust),
            })
            .collect();
        Self {
            bundle,
            trust,
            entries,
            decoded,
            claims,
            contract,
            scope,
            checkpoints,
        }
    }

    /// The typed receipts with their bundle index.
    pub(crate) fn receipts(&self) -> impl Iterator<Item = (usize, &Receipt)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.receipt.as_ref().map(|r| (i, r)))
    }
}

fn entry(value: &Value) -> Entry<'_> {
    let mut out = Entry {
        value,
        leaf: None,
        leaf_hash: None,
        receipt: None,
        error: None,
    };
    // The bundle parser already refused duplicate keys and out-of-range numbers. A receipt is
    // canonical when its typed form serialises back to exactly the value carried (which then
    // has no unknown field, no null, no other number spelling); its leaf is that serialisation
    // (JCS for these types, see `receipt::jcs`).
    let parsed = Receipt::deserialize(value);
    let leaf = parsed.as_ref().ok().map(Receipt::leaf);
    match (parsed, leaf) {
        // serde_json writes a Value's members in byte order of their keys, which is JCS order
        // for the ASCII keys a receipt has, so equal bytes mean the same canonical receipt.
        (Ok(receipt), Some(leaf)) if serde_json::to_vec(value).is_ok_and(|v| v == leaf) => {
            out.leaf_hash = Some(merkle::leaf_hash(&leaf));
            out.leaf = Some(leaf);
            match receipt.check_shape() {
                Ok(()) => out.receipt = Some(receipt),
                Err(e) => out.error = Some(e.to_string()),
            }
        }
        (parsed, _) => {
            out.error = Some(match parsed {
                Ok(_) => "does not re-canonicalise to the same bytes".into(),
                Err(e) => e.to_string(),
            });
            // Still hashed and signature-checked as carried, to name what else is wrong.
            if let Ok(leaf) = canonical::to_jcs(value) {
                out.leaf_hash = Some(merkle::leaf_hash(&leaf));
                out.leaf = Some(leaf);
            }
        }
    }
    out
}

/// The envelope whose hash the token pins (or the only one), if its document hashes to it.
fn pinned(bundle: &Bundle, claims: Option<&Claims>) -> Option<Contract> {
    let envelope = match claims {
        Some(claims) => bundle.policies.iter().find(|p| p.hash == claims.wpc),
        None => bundle.policies.first(),
    }?;
    envelope.check_hash().ok()
}

/// Opens a checkpoint note under the trusted keys of log `origin` and checks it names it.
pub(crate) fn open_checkpoint(
    note: &str,
    origin: &str,
    trust: &TrustStore,
) -> Result<Checkpoint, String> {
    let verifiers = crate::log::note_verifiers(trust, origin);
    let cp = checkpoint::open_checkpoint(note, &verifiers).map_err(|e| e.to_string())?;
    if cp.origin != origin {
        return Err(format!(
            "checkpoint of {:?} where the bundle says {origin:?}",
            cp.origin
        ));
    }
    Ok(cp)
}
