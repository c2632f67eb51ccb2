//! The evaluator: `(contract, effective scope, classified request) → Decision`.
//!
//! Pure and deterministic, so the verifier can re-run it on every receipt offline and must get
//! the recorded rule. Rules, checked in this order (the first that applies decides):
//!
//! | rule | denies when |
//! |---|---|
//! | `deny_operations` | the operation is in the contract's (or the scope's) `deny_operations` |
//! | `allowed_operations` | the operation is not in the effective scope's `allowed_operations`, or it is `patch_item` and `read_item` is not also allowed (PATCH answers with the whole item) |
//! | `allowed_vaults` | the operation names a vault that is neither listed by id nor by its resolved name |
//! | `allowed_categories` | the item's category (from a write body or the upstream answer) is not allowed |
//!
//! Otherwise the decision is `Allow { rule: "allowed_operations" }`. Operations without a vault
//! (`list_vaults`, `health`, `activity`) need only the operation.

use crate::contract::{Category, Operation, ToolScope, WpcDocument};

/// A vault as the request names it: its id, and its name when the proxy resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultRef {
    /// The vault id from the path.
    pub id: String,
    /// The vault's name, when known.
    pub name: Option<String>,
}

/// What the evaluator needs to know about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub op: Operation,
    /// The vault, if the operation names one.
    pub vault: Option<VaultRef>,
    /// The item id, if any (recorded; item allow-lists are a later extension).
    pub item: Option<String>,
    /// The item's category, when a body or answer says it.
    pub category: Option<Category>,
}

/// The outcome, with the rule that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward.
    Allow {
        /// The rule that allowed it.
        rule: String,
    },
    /// Refuse.
    Deny {
        /// The rule that refused it.
        rule: String,
        /// A plain sentence naming the value.
        reason: String,
    },
}

impl Decision {
    /// Whether this allows.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The deciding rule.
    pub fn rule(&self) -> &str {
        match self {
            Decision::Allow { rule } | Decision::Deny { rule, .. } => rule,
        }
    }

    fn deny(rule: &str, reason: String) -> Self {
        Decision::Deny {
            rule: rule.to_owned(),
            reason,
        }
    }
}

/// The rule name of every allow decision.
pub const ALLOW_RULE: &str = "allowed_operations";

/// Decides a request under a contract and the token's effective scope.
pub fn evaluate(contract: &WpcDocument, scope: &ToolScope, request: &Request) -> Decision {
    let op = request.op;
    if contract.tool_scope.deny_operations.contains(&op) || scope.deny_operations.contains(&op) {
        return Decision::deny(
            "deny_operations",
            format!("operation {op} is in deny_operations"),
        );
    }
    if !scope.allowed_operations.contains(&op) {
        return Decision::deny(
            "allowed_operations",
            format!("operation {op} is not in allowed_operations"),
        );
    }
    if op == Operation::PatchItem
        && (!scope.allowed_operations.contains(&Operation::ReadItem)
            || contract
                .tool_scope
                .deny_operations
                .contains(&Operation::ReadItem))
    {
        return Decision::deny(
            "allowed_operations",
            "patch_item answers with the whole item, so read_item must be allowed too".into(),
        );
    }
    if needs_vault(op) {
        match &request.vault {
            Some(vault) => {
                if let d @ Decision::Deny { .. } = vault_allowed(scope, vault) {
                    return d;
                }
            }
            None => {
                return Decision::deny("allowed_vaults", format!("operation {op} names no vault"));
            }
        }
    }
    if let Some(category) = request.category
        && let d @ Decision::Deny { .. } = category_allowed(scope, category)
    {
        return d;
    }
    Decision::Allow {
        rule: ALLOW_RULE.to_owned(),
    }
}

/// Whether items of `category` may be read or written.
pub fn category_allowed(scope: &ToolScope, category: Category) -> Decision {
    if scope.allowed_categories.contains(&category) {
        Decision::Allow {
            rule: ALLOW_RULE.to_owned(),
        }
    } else {
        Decision::deny(
            "allowed_categories",
            format!("category {category} is not in allowed_categories"),
        )
    }
}

/// Whether a vault is in scope, by id or by resolved name.
pub fn vault_allowed(scope: &ToolScope, vault: &VaultRef) -> Decision {
    let listed = scope
        .allowed_vaults
        .iter()
        .any(|v| *v == vault.id || vault.name.as_deref() == Some(v.as_str()));
    if listed {
        Decision::Allow {
            rule: ALLOW_RULE.to_owned(),
        }
    } else {
        let named = vault
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        Decision::deny(
            "allowed_vaults",
            format!("vault {}{named} is not in allowed_vaults", vault.id),
        )
    }
}

fn needs_vault(op: Operation) -> bool {
    !matches!(
        op,
        Operation::ListVaults | Operation::Health | Operation::Activity
    )
}

/// What a write body would set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// `vault.id` the body names.
    pub vault: Option<String>,
    /// `category` the body sets.
    pub category: Option<Category>,
}

/// Why a write body cannot be inspected (the proxy denies it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot inspect the request body: {0}")]
pub struct BodyError(pub String);

/// Reads the vault and category a create/update body (FullItem) or a PATCH body (JSON Patch
/// array) would set, so they are checked like the path's. Bodies of other operations are
/// ignored.
pub fn inspect_body(op: Operation, body: &[u8]) -> Result<BodyFacts, BodyError> {
    let bad = |m: &str| BodyError(m.to_owned());
    match op {
        Operation::CreateItem | Operation::UpdateItem => {
            let value =
                crate::canonical::parse_strict(body).map_err(|e| BodyError(e.to_string()))?;
            item_facts(&value)
        }
        Operation::PatchItem => {
            let value =
                crate::canonical::parse_strict(body).map_err(|e| BodyError(e.to_string()))?;
            let ops = value
                .as_array()
                .ok_or_else(|| bad("a PATCH body must be a JSON array"))?;
            let mut facts = BodyFacts::default();
            for patch in ops {
                let kind = patch
                    .get("op")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| bad("a patch needs an op"))?;
                if !matches!(kind, "add" | "remove" | "replace") {
                    return Err(BodyError(format!(
                        "patch op {kind:?} is not add, remove or replace"
                    )));
                }
                let path = patch
                    .get("path")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| bad("a patch needs a path"))?;
                let value = patch.get("value");
                match (path, value) {
                    ("/" | "", Some(whole)) => {
                        let whole = item_facts(whole)?;
                        facts.vault = whole.vault.or(facts.vault);
                        facts.category = whole.category.or(facts.category);
                    }
                    ("/category", Some(v)) => facts.category = Some(category_of(v)?),
                    ("/vault", Some(v)) => facts.vault = vault_of(v)?,
                    ("/vault/id", Some(v)) => {
                        facts.vault = Some(
                            v.as_str()
                                .ok_or_else(|| bad("vault id must be a string"))?
                                .to_owned(),
                        );
                    }
                    ("/category" | "/vault" | "/vault/id", None) => {
                        return Err(bad("removing the category or vault is not allowed"));
                    }
                    _ => {}
                }
            }
            Ok(facts)
        }
        _ => Ok(BodyFacts::default()),
    }
}

fn item_facts(value: &serde_json::Value) -> Result<BodyFacts, BodyError> {
    let object = value
        .as_object()
        .ok_or_else(|| BodyError("an item body must be a JSON object".into()))?;
    Ok(BodyFacts {
        vault: match object.get("vault") {
            Some(v) => vault_of(v)?,
            None => None,
        },
        category: object.get("category").map(category_of).transpose()?,
    })
}

fn category_of(value: &serde_json::Value) -> Result<Category, BodyError> {
    let text = value
        .as_str()
        .ok_or_else(|| BodyError("category must be a string".into()))?;
    text.parse().map_err(BodyError)
}

fn vault_of(value: &serde_json::Value) -> Result<Option<String>, BodyError> {
    match value.get("id") {
        Some(id) => Ok(Some(
            id.as_str()
                .ok_or_else(|| BodyError("vault id must be a string".into()))?
                .to_owned(),
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
