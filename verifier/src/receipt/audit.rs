//! Keyed body hashes: `blake3k:<audit kid>:<hex>`.
//!
//! Bodies may carry secrets, so receipts hold only BLAKE3 keyed with the proxy's 32-byte audit
//! key (`keys/audit.key`): whoever holds a bundle but not the key cannot confirm a guessed
//! secret (Vault's HMAC'd audit entries, for the same reason). An operator holding the key
//! recomputes a hash with [`audit_hash`] (the `audit-hash` helper) to search receipts.
//!
//! The audit kid names the key without revealing it: the first 8 bytes, as 16 lowercase hex
//! digits, of `BLAKE3::derive_key("clawproxy audit key id v1", key)`. Derive-key mode with its
//! own context string is a one-way function domain-separated from the keyed hashes, so the kid
//! says which key made a hash (after a rotation) and nothing else.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

/// The context string of the audit kid derivation.
const KID_CONTEXT: &str = "clawproxy audit key id v1";

/// The audit key that keys body hashes (wiped on drop; `Debug` shows only the kid).
#[derive(Clone)]
pub struct AuditKey {
    key: Zeroizing<[u8; 32]>,
    kid: String,
}

impl AuditKey {
    /// From the 32 key bytes.
    pub fn new(key: [u8; 32]) -> Self {
        let key = Zeroizing::new(key);
        let kid = kid_of(&key);
        Self { key, kid }
    }

    /// Reads `keys/audit.key` (exactly 32 bytes; refused when readable by others).
    pub fn load(path: &Path) -> Result<Self, claw_policy::keys::KeyError> {
        let key = claw_policy::keys::read_secret_32(path)?;
        Ok(Self::new(*key))
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

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// `blake3k:<kid>:<hex>` of `bytes` under the 32-byte audit `key` (for `audit-hash`).
pub fn audit_hash(key: &[u8; 32], bytes: &[u8]) -> String {
    format!(
        "blake3k:{}:{}",
        kid_of(key),
        blake3::keyed_hash(key, bytes).to_hex()
    )
}

fn kid_of(key: &[u8; 32]) -> String {
    let derived = Zeroizing::new(blake3::derive_key(KID_CONTEXT, key));
    super::hex(&derived[..8])
}
