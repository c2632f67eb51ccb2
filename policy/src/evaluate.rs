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
//! | `allowed_items` | the vault has an item list (`allowed_items`, keyed by vault id or name) and the operation names an item that is on it neither by id nor by title |
//! | `allowed_categories` | the item's category (from a write body or the upstream answer) is not allowed |
//!
//! Otherwise the decision is `Allow { rule: "allowed_operations" }`. Operations without a vault
//! (`list_vaults`, `health`, `activity`) need only the operation.
//!
//! An allowed request may still need a person: [`approval_rule`] names the contract's first
//! `approvals` rule that holds it. Without that person's approval the request is refused by
//! rule `approvals` (denied, or nobody decided in time).

use crate::contract::{ApprovalRule, Category, Operation, ToolScope, WpcDocument};

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
    /// The item id, if the operation names one.
    pub item: Option<String>,
    /// The item's title, when the proxy learnt it (needed only for item lists by title).
    pub item_title: Option<String>,
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
    // An item the operation names, or the one create_item makes (known only by its title).
    let names_item = request.item.is_some() || op == Operation::CreateItem;
    if let Some(vault) = &request.vault
        && names_item
        && let d @ Decision::Deny { .. } = item_allowed(
            scope,
            vault,
            request.item.as_deref(),
            request.item_title.as_deref(),
        )
    {
        return d;
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

/// The rule name of a request refused for want of an approval.
pub const APPROVAL_RULE: &str = "approvals";

/// The first of the contract's `approvals` rules that holds `request`, with its index: one
/// listing the operation, and, where it lists vaults or items, the request's vault (by id or
/// resolved name) and item (by id or title). A rule listing vaults holds nothing that names no
/// vault; one listing items, nothing that names no item.
pub fn approval_rule<'c>(
    contract: &'c WpcDocument,
    request: &Request,
) -> Option<(usize, &'c ApprovalRule)> {
    let names = |list: &[String], a: Option<&str>, b: Option<&str>| {
        list.is_empty()
            || list
                .iter()
                .any(|e| Some(e.as_str()) == a || Some(e.as_str()) == b)
    };
    contract.approvals.iter().enumerate().find(|(_, rule)| {
        rule.operations.contains(&request.op)
            && names(
                &rule.vaults,
                request.vault.as_ref().map(|v| v.id.as_str()),
                request.vault.as_ref().and_then(|v| v.name.as_deref()),
            )
            && names(
                &rule.items,
                request.item.as_deref(),
                request.item_title.as_deref(),
            )
    })
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

/// The item list that applies to `vault` (by id, else by resolved name), if it has one.
pub fn item_list<'s>(scope: &'s ToolScope, vault: &VaultRef) -> Option<&'s [String]> {
    scope
        .allowed_items
        .get(&vault.id)
        .or_else(|| vault.name.as_ref().and_then(|n| scope.allowed_items.get(n)))
        .map(Vec::as_slice)
}

/// Whether an item may be touched: always when its vault has no item list, else when the list
/// names it by `id` or by `title` (an item without an id is one being created; an unknown title
/// matches nothing).
pub fn item_allowed(
    scope: &ToolScope,
    vault: &VaultRef,
    id: Option<&str>,
    title: Option<&str>,
) -> Decision {
    let Some(list) = item_list(scope, vault) else {
        return Decision::Allow {
            rule: ALLOW_RULE.to_owned(),
        };
    };
    let listed = |name: Option<&str>| name.is_some_and(|n| list.iter().any(|e| e == n));
    if listed(id) || listed(title) {
        return Decision::Allow {
            rule: ALLOW_RULE.to_owned(),
        };
    }
    let item = match (id, title) {
        (Some(id), Some(title)) => format!("item {id} ({title:?})"),
        (Some(id), None) => format!("item {id}"),
        (None, Some(title)) => format!("a new item titled {title:?}"),
        (None, None) => "a new item without a title".to_owned(),
    };
    Decision::deny(
        "allowed_items",
        format!("{item} is not in allowed_items for vault {}", vault.id),
    )
}

/// Whether the item list of `vault` names anything that is not one of `ids`: then a title is
/// needed to decide about an unlisted id.
pub fn lists_titles(scope: &ToolScope, vault: &VaultRef) -> bool {
    item_list(scope, vault).is_some_and(|list| list.iter().any(|e| !looks_like_id(e)))
}

/// Connect ids (vaults, items) are 26 lower-case letters and digits; anything else in an
/// allow-list is a name or title.
pub fn looks_like_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
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
    /// `title` a create/update body sets.
    pub title: Option<String>,
}

/// Why a write body cannot be inspected (the proxy denies it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot inspect the request body: {0}")]
pub struct BodyError(pub String);

/// The largest write body [`inspect_body`] reads. The proxy's own `max_body_bytes` (4 MiB by
/// default) normally refuses earlier; this ceiling keeps the evaluator bounded on its own,
/// e.g. when the verifier or `explain` is handed a file.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Reads the vault and category a create/update body (FullItem) or a PATCH body (JSON Patch
/// array) would set, so they are checked like the path's. Bodies of other operations are
/// ignored. Unparseable, duplicate-keyed or oversized bodies are errors (the proxy denies).
pub fn inspect_body(op: Operation, body: &[u8]) -> Result<BodyFacts, BodyError> {
    let bad = |m: &str| BodyError(m.to_owned());
    if body.len() > MAX_BODY_BYTES
        && matches!(
            op,
            Operation::CreateItem | Operation::UpdateItem | Operation::PatchItem
        )
    {
        return Err(BodyError(format!(
            "the body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
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
                let target = sensitive_path(path)?;
                match (target, kind, value) {
                    (None, ..) => {}
                    (Some(_), "remove", _) | (Some(_), _, None) => {
                        return Err(bad(
                            "removing the item, its category or its vault is not allowed",
                        ));
                    }
                    (Some(Sensitive::Whole), _, Some(whole)) => {
                        let whole = item_facts(whole)?;
                        if let Some(v) = whole.vault {
                            set_once(&mut facts.vault, v, "vault")?;
                        }
                        if let Some(c) = whole.category {
                            set_once(&mut facts.category, c, "category")?;
                        }
                    }
                    (Some(Sensitive::Category), _, Some(v)) => {
                        set_once(&mut facts.category, category_of(v)?, "category")?;
                    }
                    (Some(Sensitive::Vault), _, Some(v)) => {
                        if let Some(id) = vault_of(v)? {
                            set_once(&mut facts.vault, id, "vault")?;
                        }
                    }
                    (Some(Sensitive::VaultId), _, Some(v)) => {
                        let id = v
                            .as_str()
                            .ok_or_else(|| bad("vault id must be a string"))?
                            .to_owned();
                        set_once(&mut facts.vault, id, "vault")?;
                    }
                }
            }
            Ok(facts)
        }
        _ => Ok(BodyFacts::default()),
    }
}

/// The PATCH paths that change what the evaluator checks.
#[derive(Clone, Copy)]
enum Sensitive {
    Whole,
    Category,
    Vault,
    VaultId,
}

/// Which sensitive member a PATCH path names. Connect is written in Go, whose JSON decoding
/// matches member names without regard to ASCII case, so `/Category` is refused rather than
/// read two ways.
fn sensitive_path(path: &str) -> Result<Option<Sensitive>, BodyError> {
    let exact = match path {
        "" | "/" => Some(Sensitive::Whole),
        "/category" => Some(Sensitive::Category),
        "/vault" => Some(Sensitive::Vault),
        "/vault/id" => Some(Sensitive::VaultId),
        _ => None,
    };
    if exact.is_none()
        && ["/category", "/vault", "/vault/id"]
            .iter()
            .any(|s| path.eq_ignore_ascii_case(s))
    {
        return Err(BodyError(format!(
            "patch path {path:?} differs from a checked member only in case"
        )));
    }
    Ok(exact)
}

/// Records a value a body sets; setting the same member twice to different values is refused,
/// since which one wins would depend on how the server applies the body.
fn set_once<T: PartialEq>(slot: &mut Option<T>, value: T, what: &str) -> Result<(), BodyError> {
    match slot {
        Some(seen) if *seen != value => Err(BodyError(format!(
            "the body sets the {what} twice to different values"
        ))),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// The one member of `object` named `name`, refusing spellings that differ only in ASCII
/// case (Go's `encoding/json` would read `"CATEGORY"` as `category`, and the last one wins).
fn member<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<&'a serde_json::Value>, BodyError> {
    let mut found = None;
    for (key, value) in object {
        if key.eq_ignore_ascii_case(name) {
            if key != name {
                return Err(BodyError(format!(
                    "member {key:?} differs from {name:?} only in case"
                )));
            }
            found = Some(value);
        }
    }
    Ok(found)
}

fn item_facts(value: &serde_json::Value) -> Result<BodyFacts, BodyError> {
    let object = value
        .as_object()
        .ok_or_else(|| BodyError("an item body must be a JSON object".into()))?;
    Ok(BodyFacts {
        vault: match member(object, "vault")? {
            Some(v) => vault_of(v)?,
            None => None,
        },
        category: member(object, "category")?.map(category_of).transpose()?,
        title: match member(object, "title")? {
            Some(title) => Some(
                title
                    .as_str()
                    .ok_or_else(|| BodyError("title must be a string".into()))?
                    .to_owned(),
            ),
            None => None,
        },
    })
}

fn category_of(value: &serde_json::Value) -> Result<Category, BodyError> {
    let text = value
        .as_str()
        .ok_or_else(|| BodyError("category must be a string".into()))?;
    text.parse().map_err(BodyError)
}

fn vault_of(value: &serde_json::Value) -> Result<Option<String>, BodyError> {
    let object = value
        .as_object()
        .ok_or_else(|| BodyError("vault must be an object".into()))?;
    match member(object, "id")? {
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
