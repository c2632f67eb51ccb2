//! The effective scope: the contract's `tool_scope`, optionally narrowed at mint.
//!
//! The `scope` claim holds only its hash, so mint stores the document content-addressed in
//! `<data dir>/state/scopes/<hex>.json`; the proxy and the bundler read it back by hash.

use std::path::PathBuf;

use claw_policy::canonical;
use claw_policy::contract::{Operation, ToolScope, hash_bytes};

/// Why a narrowing was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// An operation the contract does not allow.
    #[error("operation {0} is not allowed by the contract; --ops may only narrow")]
    WidenOperation(String),
    /// A vault the contract does not allow.
    #[error("vault {0:?} is not allowed by the contract; --vaults may only narrow")]
    WidenVault(String),
    /// Nothing left.
    #[error("the narrowed scope allows no {0}")]
    Empty(&'static str),
    /// The stored document is missing or does not hash to its name.
    #[error("scope {0} is unknown or corrupt here")]
    Unknown(String),
}

/// Narrows `scope` to `ops` and `vaults` (each `None` = keep the contract's).
pub fn narrow(
    scope: &ToolScope,
    ops: Option<&[Operation]>,
    vaults: Option<&[String]>,
) -> Result<ToolScope, ScopeError> {
    let mut out = scope.clone();
    if let Some(ops) = ops {
        for op in ops {
            if !scope.allowed_operations.contains(op) || scope.deny_operations.contains(op) {
                return Err(ScopeError::WidenOperation(op.as_str().into()));
            }
        }
        out.allowed_operations.retain(|op| ops.contains(op));
        if out.allowed_operations.is_empty() {
            return Err(ScopeError::Empty("operation"));
        }
    }
    if let Some(vaults) = vaults {
        for vault in vaults {
            if !scope.allowed_vaults.contains(vault) {
                return Err(ScopeError::WidenVault(vault.clone()));
            }
        }
        out.allowed_vaults.retain(|v| vaults.contains(v));
        if out.allowed_vaults.is_empty() {
            return Err(ScopeError::Empty("vault"));
        }
    }
    Ok(out)
}

/// `blake3:<hex>` of the canonical JSON of a scope.
pub fn scope_hash(scope: &ToolScope) -> String {
    hash_bytes(&canonical_bytes(scope))
}

fn canonical_bytes(scope: &ToolScope) -> Vec<u8> {
    canonical::to_jcs_of(scope).expect("a tool scope canonicalises")
}

/// Content-addressed effective scopes.
#[derive(Clone, Debug)]
pub struct ScopeStore {
    dir: PathBuf,
}

impl ScopeStore {
    /// The store in `<state dir>/scopes`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: state_dir.into().join("scopes"),
        }
    }

    /// Stores a scope; returns its hash.
    pub fn put(&self, scope: &ToolScope) -> std::io::Result<String> {
        let bytes = canonical_bytes(scope);
        let hash = hash_bytes(&bytes);
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(&hash);
        if !path.exists() {
            claw_policy::registry::write_atomic(&path, &bytes)?;
        }
        Ok(hash)
    }

    /// The scope with this hash, checked to hash to it.
    pub fn get(&self, hash: &str) -> Result<ToolScope, ScopeError> {
        let unknown = || ScopeError::Unknown(hash.to_owned());
        let bytes = std::fs::read(self.path(hash)).map_err(|_| unknown())?;
        if hash_bytes(&bytes) != hash {
            return Err(unknown());
        }
        canonical::from_slice_strict(&bytes).map_err(|_| unknown())
    }

    fn path(&self, hash: &str) -> PathBuf {
        let hex: String = hash
            .strip_prefix("blake3:")
            .unwrap_or(hash)
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        self.dir.join(format!("{hex}.json"))
    }
}
