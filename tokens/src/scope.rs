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
        // Item lists belong to their vaults.
        out.allowed_items
            .retain(|vault, _| out.allowed_vaults.contains(vault));
    }
    Ok(out)
}

/// `blake3:<hex>` of the canonical JSON (RFC 8785) of a scope: the `scope` claim.
pub fn scope_hash(scope: &ToolScope) -> String {
    hash_bytes(&canonical_bytes(scope))
}

fn canonical_bytes(scope: &ToolScope) -> Vec<u8> {
    // A ToolScope holds only strings and lists of strings, which always canonicalise.
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

    /// Stores a scope (atomically, once per content); returns its hash.
    pub fn put(&self, scope: &ToolScope) -> std::io::Result<String> {
        let bytes = canonical_bytes(scope);
        let hash = hash_bytes(&bytes);
        // `hash_bytes` always yields `blake3:<64 hex>`.
        let path = self.path(&hash).expect("a blake3 hash names a file");
        if self.get(&hash).is_ok() {
            return Ok(hash);
        }
        std::fs::create_dir_all(&self.dir)?;
        match claw_policy::registry::write_atomic(&path, &bytes) {
            Ok(()) => Ok(hash),
            // Another writer of the same content may have won the race for the temporary file.
            Err(_) if self.get(&hash).is_ok() => Ok(hash),
            Err(e) => Err(e),
        }
    }

    /// The scope with this hash, checked to hash to it.
    pub fn get(&self, hash: &str) -> Result<ToolScope, ScopeError> {
        let unknown = || ScopeError::Unknown(hash.to_owned());
        let path = self.path(hash).ok_or_else(unknown)?;
        let bytes = std::fs::read(path).map_err(|_| unknown())?;
        if hash_bytes(&bytes) != hash {
            return Err(unknown());
        }
        canonical::from_slice_strict(&bytes).map_err(|_| unknown())
    }

    /// `<dir>/<hex>.json`, only for a well-formed `blake3:<64 hex>` (never a path from input).
    fn path(&self, hash: &str) -> Option<PathBuf> {
        if !crate::claims::is_blake3(hash) {
            return None;
        }
        let hex = hash.strip_prefix("blake3:")?;
        Some(self.dir.join(format!("{hex}.json")))
    }
}

#[cfg(test)]
mod tests {
    use claw_policy::contract::Contract;

    use super::*;

    fn seed() -> ToolScope {
        let bytes = include_bytes!("../../examples/policies/1password-readonly-agent.json");
        Contract::from_slice(bytes)
            .unwrap()
            .document()
            .tool_scope
            .clone()
    }

    #[test]
    fn narrowing_never_widens_and_names_the_offender() {
        let scope = seed();
        assert_eq!(
            narrow(&scope, Some(&[Operation::DeleteItem]), None),
            Err(ScopeError::WidenOperation("delete_item".into()))
        );
        assert_eq!(
            narrow(
                &scope,
                Some(&[Operation::ReadItem, Operation::ListItems]),
                None
            ),
            Err(ScopeError::WidenOperation("list_items".into()))
        );
        assert_eq!(
            narrow(&scope, None, Some(&["vault_other".into()])),
            Err(ScopeError::WidenVault("vault_other".into()))
        );
        assert_eq!(
            narrow(&scope, Some(&[]), None),
            Err(ScopeError::Empty("operation"))
        );
        assert_eq!(
            narrow(&scope, None, Some(&[])),
            Err(ScopeError::Empty("vault"))
        );
        // Naming exactly what the contract allows changes nothing, hash included.
        let same = narrow(
            &scope,
            Some(&[Operation::ReadItem]),
            Some(&["vault_agent_secrets_prod".into()]),
        )
        .unwrap();
        assert_eq!(same, scope);
        assert_eq!(scope_hash(&same), scope_hash(&scope));
    }

    #[test]
    fn narrowing_vaults_keeps_only_their_item_lists() {
        let mut scope = seed();
        scope.allowed_vaults.push("second".into());
        scope
            .allowed_items
            .insert("second".into(), vec!["only-this".into()]);
        scope
            .allowed_items
            .insert(scope.allowed_vaults[0].clone(), vec!["kept".into()]);
        let first = scope.allowed_vaults[0].clone();
        let narrowed = narrow(&scope, None, Some(std::slice::from_ref(&first))).unwrap();
        assert_eq!(narrowed.allowed_items.len(), 1);
        assert_eq!(narrowed.allowed_items[&first], ["kept"]);
        // Unnarrowed, the lists stay as the contract wrote them.
        assert_eq!(narrow(&scope, None, None).unwrap(), scope);
    }

    #[test]
    fn an_operation_the_contract_both_allows_and_denies_cannot_be_picked() {
        let mut scope = seed();
        scope.allowed_operations.push(Operation::DeleteItem);
        assert_eq!(
            narrow(&scope, Some(&[Operation::DeleteItem]), None),
            Err(ScopeError::WidenOperation("delete_item".into()))
        );
    }

    #[test]
    fn the_store_returns_only_documents_that_hash_to_their_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ScopeStore::new(tmp.path());
        let mut narrowed = seed();
        narrowed.allowed_categories.truncate(1);
        let hash = store.put(&narrowed).unwrap();
        assert_eq!(store.get(&hash).unwrap(), narrowed);
        assert_eq!(store.put(&narrowed).unwrap(), hash, "idempotent");

        // Tampered on disk: refused, and a later put repairs it.
        let file = tmp
            .path()
            .join("scopes")
            .join(format!("{}.json", &hash[7..]));
        std::fs::write(&file, canonical_bytes(&seed())).unwrap();
        assert_eq!(store.get(&hash), Err(ScopeError::Unknown(hash.clone())));
        store.put(&narrowed).unwrap();
        assert_eq!(store.get(&hash).unwrap(), narrowed);

        for bad in ["blake3:../../trust", "sha256:00", "", &hash.to_uppercase()] {
            assert_eq!(
                store.get(bad),
                Err(ScopeError::Unknown(bad.into())),
                "{bad}"
            );
        }
    }
}
