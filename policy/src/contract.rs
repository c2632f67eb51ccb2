//! The Work Policy Contract: raw document, checked [`Contract`], and its hash.
//!
//! Parsing runs in four stages, each refusing with a JSON pointer: strict JSON (duplicate keys,
//! unsafe numbers), the JSON Schema in `schemas/wpc.schema.json` (unknown fields, types,
//! vocabularies, empty allow-lists), the typed model (`deny_unknown_fields`), then semantic
//! checks the schema cannot express. Only a value that passed all four is a [`Contract`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{self, JsonError};

/// The JSON Schema every contract must satisfy (2020-12).
pub const SCHEMA: &str = include_str!("../../schemas/wpc.schema.json");

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "`")]
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in vocabulary order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " {:?}; expected one of: {}"),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

vocabulary!(
    /// An operation on the 1Password Connect API, as named by the classifier.
    Operation, "operation", {
        ListVaults => "list_vaults",
        GetVault => "get_vault",
        ListItems => "list_items",
        ReadItem => "read_item",
        CreateItem => "create_item",
        UpdateItem => "update_item",
        PatchItem => "patch_item",
        DeleteItem => "delete_item",
        ListFiles => "list_files",
        ReadFile => "read_file",
        ReadFileContent => "read_file_content",
        Health => "health",
        Activity => "activity",
    }
);

impl Operation {
    /// Whether the operation changes data upstream (gets a pre-forward receipt).
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Operation::CreateItem
                | Operation::UpdateItem
                | Operation::PatchItem
                | Operation::DeleteItem
        )
    }
}

vocabulary!(
    /// A 1Password item category (the 22 Connect categories).
    Category, "category", {
        Login => "LOGIN",
        Password => "PASSWORD",
        ApiCredential => "API_CREDENTIAL",
        Server => "SERVER",
        Database => "DATABASE",
        CreditCard => "CREDIT_CARD",
        Membership => "MEMBERSHIP",
        Passport => "PASSPORT",
        SoftwareLicense => "SOFTWARE_LICENSE",
        OutdoorLicense => "OUTDOOR_LICENSE",
        SecureNote => "SECURE_NOTE",
        WirelessRouter => "WIRELESS_ROUTER",
        BankAccount => "BANK_ACCOUNT",
        DriverLicense => "DRIVER_LICENSE",
        Identity => "IDENTITY",
        RewardProgram => "REWARD_PROGRAM",
        Document => "DOCUMENT",
        EmailAccount => "EMAIL_ACCOUNT",
        SocialSecurityNumber => "SOCIAL_SECURITY_NUMBER",
        MedicalRecord => "MEDICAL_RECORD",
        SshKey => "SSH_KEY",
        Custom => "CUSTOM",
    }
);

/// The raw contract document, exactly the fields of `schemas/wpc.schema.json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WpcDocument {
    /// Always `"1.0"`.
    pub wpc_version: String,
    /// Registry name.
    pub name: String,
    /// What the agent may do with the integration.
    pub tool_scope: ToolScope,
    /// Limits on the job tokens bound to this contract.
    pub cst_constraints: CstConstraints,
    /// Where the agent may connect.
    pub sandbox: Sandbox,
    /// Per-job request budgets. Defaults to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// Whether the contract's rules refuse or only record. Absent means [`Enforcement::Enforce`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    /// Requests a person must approve before they are forwarded. Defaults to none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRule>,
    /// Method and path rules per host (lowercase name, as in `network_egress`): requests to a
    /// listed host are intercepted and pass only when a rule allows them. Defaults to none:
    /// every host is judged by `network_egress` alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_rules: BTreeMap<String, Vec<HostRule>>,
}

impl WpcDocument {
    /// Whether this is an audit-only (shadow) contract: its rules are receipted as "would deny"
    /// and nothing is refused by them.
    pub fn audit_only(&self) -> bool {
        self.enforcement == Some(Enforcement::Audit)
    }
}

/// How a contract's decisions apply.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Refuse what the contract does not allow (the default).
    Enforce,
    /// Shadow mode: evaluate and receipt "would deny", refuse nothing by the contract's rules.
    Audit,
}

/// The rules that come from a contract's own fields; an audit-only contract records their
/// denials and lets the request pass. Every other refusal (authentication, framing, address
/// classes, ambiguous paths, uninspectable bodies) protects the proxy itself and always applies.
pub const CONTRACT_RULES: [&str; 9] = [
    "network_egress",
    "host_rules",
    "deny_operations",
    "allowed_operations",
    "allowed_vaults",
    "allowed_items",
    "allowed_categories",
    "rate_limit",
    "approvals",
];

/// One request rule for a host: any of `methods` on a path matching any of `paths`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostRule {
    /// Request methods, upper case (`HEAD` is not implied by `GET`).
    pub methods: Vec<String>,
    /// Path patterns over the normalised path: `*` within a segment, `**` as a whole segment
    /// for any number of segments. See [`crate::host_rules`].
    pub paths: Vec<String>,
}

/// Requests that wait for a person: an allowed request matching `operations` (and, when given,
/// `vaults` and `items`) is held until one of `approvers` approves or denies it, or
/// `timeout_seconds` pass.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// The operations held.
    pub operations: Vec<Operation>,
    /// Only in these vaults (ids or names, as in `allowed_vaults`); absent means every vault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vaults: Vec<String>,
    /// Only these items (ids or titles); absent means every item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// Who may decide (the names given to `clawcontrols approve --as`).
    pub approvers: Vec<String>,
    /// How long the request waits for a decision.
    pub timeout_seconds: u64,
    /// What happens when nobody decides in time.
    pub on_timeout: OnTimeout,
}

/// What a held request becomes when its approval times out.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// Refused (403, rule `approvals`). The only choice: silence never grants.
    Deny,
}

/// Per-job request budgets, reads and writes counted apart.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Non-mutating operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Rate>,
    /// `create_item`, `update_item`, `patch_item`, `delete_item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<Rate>,
}

/// One budget: a token bucket per second (with a burst) and one per hour.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
    /// Requests at once before `per_second` applies; defaults to `per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u32>,
}

/// Operations, vaults and categories the agent may use.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolScope {
    /// Always `onepassword` in v1.0.
    pub integration: String,
    /// `service_account` or `connect`.
    pub auth_mode: String,
    /// Vault ids or names.
    pub allowed_vaults: Vec<String>,
    /// Operations allowed.
    pub allowed_operations: Vec<Operation>,
    /// Item categories allowed (on request bodies and responses).
    pub allowed_categories: Vec<Category>,
    /// Operations always refused; beats `allowed_operations`. Defaults to none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_operations: Vec<Operation>,
    /// Item allow-lists per vault (keyed as in `allowed_vaults`): ids or titles. A vault
    /// without a list keeps all its items. Defaults to none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allowed_items: BTreeMap<String, Vec<String>>,
}

/// Limits on job tokens.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CstConstraints {
    /// Longest token lifetime (`exp − iat`), 1..=86400 seconds.
    pub max_ttl_seconds: u64,
    /// Tokens pin this contract's hash (always true).
    pub policy_hash_pin: bool,
    /// Tokens are bound to one job (always true).
    pub job_scoped: bool,
}

/// Network and workspace confinement.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// `all`: every connection goes through the proxy.
    pub mode: String,
    /// Hosts the agent may reach (`host` → ports 443 and 80; `host:port` → that port).
    pub network_egress: Vec<String>,
    /// `none`, `read_only` or `read_write`.
    pub workspace_access: String,
}

/// One reason a contract was refused, at a JSON pointer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Violation {
    /// RFC 6901 pointer into the document ("" = the whole document).
    pub pointer: String,
    /// What is wrong and, where possible, the fix.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{pointer}: {}", self.message)
    }
}

/// Why a contract document was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// Not strict JSON.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Valid JSON that is not a valid contract.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Violation>),
}

impl ContractError {
    /// The violations, if the document was JSON but not a valid contract.
    pub fn violations(&self) -> &[Violation] {
        match self {
            ContractError::Invalid(v) => v,
            ContractError::Json(_) => &[],
        }
    }
}

/// A contract that passed every check, with its hash.
#[derive(Clone, Debug)]
pub struct Contract {
    document: WpcDocument,
    value: Value,
    hash: String,
}

impl Contract {
    /// Parses and checks contract bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ContractError> {
        Self::from_value(canonical::parse_strict(bytes)?)
    }

    /// Checks an already strictly parsed document.
    pub fn from_value(value: Value) -> Result<Self, ContractError> {
        let violations = schema_violations(&value);
        if !violations.is_empty() {
            return Err(ContractError::Invalid(violations));
        }
        let document: WpcDocument = canonical::from_value_at(value.clone()).map_err(|e| {
            ContractError::Invalid(vec![Violation {
                pointer: e.pointer,
                message: e.message,
            }])
        })?;
        let violations = semantic_violations(&document);
        if !violations.is_empty() {
            return Err(ContractError::Invalid(violations));
        }
        let hash = hash_value(&value)?;
        Ok(Self {
            document,
            value,
            hash,
        })
    }

    /// `blake3:<hex>` of the canonical (RFC 8785) form.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The typed document.
    pub fn document(&self) -> &WpcDocument {
        &self.document
    }

    /// The contract's registry name.
    pub fn name(&self) -> &str {
        &self.document.name
    }

    /// The document as parsed (what was hashed and signed).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The RFC 8785 canonical bytes that are hashed and signed.
    pub fn canonical(&self) -> Vec<u8> {
        canonical::to_jcs(&self.value).expect("a checked contract canonicalises")
    }
}

/// `blake3:<hex>` of the RFC 8785 canonical form of `value`.
pub fn hash_value(value: &Value) -> Result<String, JsonError> {
    Ok(hash_bytes(&canonical::to_jcs(value)?))
}

/// `blake3:<hex>` of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

fn schema() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA).expect("wpc schema is JSON");
        jsonschema::draft202012::new(&schema).expect("wpc schema compiles")
    })
}

fn schema_violations(value: &Value) -> Vec<Violation> {
    let mut out: Vec<Violation> = schema()
        .iter_errors(value)
        .map(|e| Violation {
            pointer: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect();
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    out
}

fn semantic_violations(doc: &WpcDocument) -> Vec<Violation> {
    let mut out = Vec::new();
    let scope = &doc.tool_scope;
    if scope
        .allowed_operations
        .iter()
        .all(|op| scope.deny_operations.contains(op))
    {
        out.push(Violation {
            pointer: "/tool_scope/allowed_operations".into(),
            message: "every allowed operation is also in deny_operations, so nothing is allowed"
                .into(),
        });
    }
    if let Some(limits) = &doc.rate_limits {
        for (class, rate) in [("reads", &limits.reads), ("writes", &limits.writes)] {
            if let Some(rate) = rate
                && rate.burst.is_some()
                && rate.per_second.is_none()
            {
                out.push(Violation {
                    pointer: format!("/rate_limits/{class}/burst"),
                    message: "burst sizes the per_second bucket; set per_second too".into(),
                });
            }
        }
    }
    for vault in scope.allowed_items.keys() {
        if !scope.allowed_vaults.contains(vault) {
            out.push(Violation {
                pointer: format!(
                    "/tool_scope/allowed_items/{}",
                    canonical::escape_pointer_token(vault)
                ),
                message: format!(
                    "vault {vault:?} has an item list but is not in allowed_vaults; list it there \
                     under the same spelling"
                ),
            });
        }
    }
    for (i, rule) in doc.approvals.iter().enumerate() {
        for (j, op) in rule.operations.iter().enumerate() {
            if !scope.allowed_operations.contains(op) || scope.deny_operations.contains(op) {
                out.push(Violation {
                    pointer: format!("/approvals/{i}/operations/{j}"),
                    message: format!(
                        "{op} is not allowed by tool_scope, so it is refused before any approval; \
                         allow it there or drop it here"
                    ),
                });
            }
        }
        for (j, vault) in rule.vaults.iter().enumerate() {
            if !scope.allowed_vaults.contains(vault) {
                out.push(Violation {
                    pointer: format!("/approvals/{i}/vaults/{j}"),
                    message: format!(
                        "vault {vault:?} is not in allowed_vaults; list it there under the same \
                         spelling"
                    ),
                });
            }
        }
    }
    out.extend(crate::host_rules::violations(doc));
    for (i, host) in doc.sandbox.network_egress.iter().enumerate() {
        if let Some((_, port)) = host.rsplit_once(':')
            && !matches!(port.parse::<u32>(), Ok(1..=65535))
        {
            out.push(Violation {
                pointer: format!("/sandbox/network_egress/{i}"),
                message: format!("port {port:?} is not in 1..=65535"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = include_bytes!("../../examples/policies/1password-readonly-agent.json");

    #[test]
    fn seed_validates_unchanged() {
        let contract = Contract::from_slice(SEED).unwrap();
        assert_eq!(contract.name(), "1password-readonly-agent");
        assert_eq!(
            contract.document().tool_scope.allowed_operations,
            vec![Operation::ReadItem]
        );
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_hash() {
        let a = Contract::from_slice(SEED).unwrap();
        let mut value: Value = serde_json::from_slice(SEED).unwrap();
        // Rebuild every object with its keys reversed, then print compactly.
        fn reverse(v: &mut Value) {
            match v {
                Value::Object(map) => {
                    let mut entries: Vec<_> = std::mem::take(map).into_iter().collect();
                    entries.reverse();
                    for (k, mut v) in entries {
                        reverse(&mut v);
                        map.insert(k, v);
                    }
                }
                Value::Array(items) => items.iter_mut().for_each(reverse),
                _ => {}
            }
        }
        reverse(&mut value);
        let b = Contract::from_slice(serde_json::to_string(&value).unwrap().as_bytes()).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert!(a.hash().starts_with("blake3:") && a.hash().len() == 7 + 64);
        // A change of meaning changes the hash.
        let c = std::str::from_utf8(SEED).unwrap().replace("900", "600");
        assert_ne!(Contract::from_slice(c.as_bytes()).unwrap().hash(), a.hash());
    }

    fn invalid(text: &str) -> Vec<Violation> {
        match Contract::from_slice(text.as_bytes()) {
            Err(ContractError::Invalid(v)) => v,
            other => panic!("expected violations, got {other:?}"),
        }
    }

    /// The seed with an optional top-level `field` added (before `sandbox`).
    fn seed_plus(field: &str, value: &str) -> String {
        seed_with(r#""sandbox""#, &format!(r#""{field}": {value}, "sandbox""#))
    }

    fn seed_with(from: &str, to: &str) -> String {
        let seed = std::str::from_utf8(SEED).unwrap();
        assert!(seed.contains(from), "{from}");
        seed.replacen(from, to, 1)
    }

    #[test]
    fn item_lists_are_optional_and_keyed_by_allowed_vaults() {
        let seed_hash = Contract::from_slice(SEED).unwrap().hash().to_owned();
        let with_items = |items: &str| {
            seed_with(
                r#""allowed_vaults""#,
                &format!(r#""allowed_items": {items}, "allowed_vaults""#),
            )
        };
        let ok = Contract::from_slice(
            with_items(
                r#"{"vault_agent_secrets_prod": ["prod-db", "x4tpzrqojj2ahmv3w7nb6vu2pe"]}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            ok.document().tool_scope.allowed_items["vault_agent_secrets_prod"],
            ["prod-db", "x4tpzrqojj2ahmv3w7nb6vu2pe"]
        );
        assert_ne!(ok.hash(), seed_hash);
        for (items, pointer) in [
            (
                r#"{"some/other~vault": ["a"]}"#,
                "/tool_scope/allowed_items/some~1other~0vault",
            ),
            (
                r#"{"vault_agent_secrets_prod": []}"#,
                "/tool_scope/allowed_items/vault_agent_secrets_prod",
            ),
            (
                r#"{"vault_agent_secrets_prod": ["a", "a"]}"#,
                "/tool_scope/allowed_items/vault_agent_secrets_prod",
            ),
            ("{}", "/tool_scope/allowed_items"),
            (r#"["a"]"#, "/tool_scope/allowed_items"),
        ] {
            let v = invalid(&with_items(items));
            assert!(v.iter().any(|v| v.pointer == pointer), "{items}: {v:?}");
        }
    }

    #[test]
    fn rate_limits_are_optional_and_checked() {
        let with_rates = |rates: &str| seed_plus("rate_limits", rates);
        let ok = Contract::from_slice(
            with_rates(r#"{"reads": {"per_second": 5, "burst": 10}, "writes": {"per_hour": 60}}"#)
                .as_bytes(),
        )
        .unwrap();
        let limits = ok.document().rate_limits.clone().unwrap();
        assert_eq!(limits.reads.unwrap().burst, Some(10));
        assert_eq!(limits.writes.unwrap().per_hour, Some(60));
        for (rates, pointer) in [
            (r#"{"reads": {"burst": 3}}"#, "/rate_limits/reads/burst"),
            (
                r#"{"reads": {"per_second": 0}}"#,
                "/rate_limits/reads/per_second",
            ),
            (r#"{"reads": {"per_minute": 5}}"#, "/rate_limits/reads"),
            (r#"{"reads": {}}"#, "/rate_limits/reads"),
            ("{}", "/rate_limits"),
        ] {
            let v = invalid(&with_rates(rates));
            assert!(v.iter().any(|v| v.pointer == pointer), "{rates}: {v:?}");
        }
    }

    #[test]
    fn enforcement_is_optional_and_audit_is_the_only_other_mode() {
        let seed = Contract::from_slice(SEED).unwrap();
        assert!(!seed.document().audit_only());
        let with = |mode: &str| seed_plus("enforcement", mode);
        let audit = Contract::from_slice(with(r#""audit""#).as_bytes()).unwrap();
        assert!(audit.document().audit_only());
        assert_ne!(audit.hash(), seed.hash());
        let enforce = Contract::from_slice(with(r#""enforce""#).as_bytes()).unwrap();
        assert!(!enforce.document().audit_only());
        for mode in [r#""AUDIT""#, r#""shadow""#, "true", "null"] {
            let v = invalid(&with(mode));
            assert!(
                v.iter().any(|v| v.pointer == "/enforcement"),
                "{mode}: {v:?}"
            );
        }
    }

    #[test]
    fn approvals_are_optional_and_checked() {
        let with = |rules: &str| seed_plus("approvals", rules);
        let ok = Contract::from_slice(
            with(
                r#"[{"operations": ["read_item"], "vaults": ["vault_agent_secrets_prod"],
                     "items": ["prod-db"], "approvers": ["alice", "bob@example.com"],
                     "timeout_seconds": 60, "on_timeout": "deny"}]"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let rule = &ok.document().approvals[0];
        assert_eq!(rule.approvers, ["alice", "bob@example.com"]);
        assert_eq!(rule.on_timeout, OnTimeout::Deny);
        assert_ne!(ok.hash(), Contract::from_slice(SEED).unwrap().hash());
        let rule = |fields: &str| {
            format!(
                r#"[{{"operations": ["read_item"], "approvers": ["alice"], "timeout_seconds": 60,
                     "on_timeout": "deny"{fields}}}]"#
            )
        };
        for (rules, pointer) in [
            ("[]".to_owned(), "/approvals"),
            (
                rule(r#", "vaults": ["elsewhere"]"#),
                "/approvals/0/vaults/0",
            ),
            (rule(r#", "items": []"#), "/approvals/0/items"),
            (
                r#"[{"operations": ["delete_item"], "approvers": ["alice"],
                     "timeout_seconds": 60, "on_timeout": "deny"}]"#
                    .to_owned(),
                "/approvals/0/operations/0",
            ),
            (
                r#"[{"operations": ["read_item"], "approvers": [],
                     "timeout_seconds": 60, "on_timeout": "deny"}]"#
                    .to_owned(),
                "/approvals/0/approvers",
            ),
            (
                r#"[{"operations": ["read_item"], "approvers": ["al ice"],
                     "timeout_seconds": 60, "on_timeout": "deny"}]"#
                    .to_owned(),
                "/approvals/0/approvers/0",
            ),
            (
                r#"[{"operations": ["read_item"], "approvers": ["alice"],
                     "timeout_seconds": 0, "on_timeout": "deny"}]"#
                    .to_owned(),
                "/approvals/0/timeout_seconds",
            ),
            (
                r#"[{"operations": ["read_item"], "approvers": ["alice"],
                     "timeout_seconds": 60}]"#
                    .to_owned(),
                "/approvals/0",
            ),
        ] {
            let v = invalid(&with(&rules));
            assert!(v.iter().any(|v| v.pointer == pointer), "{rules}: {v:?}");
        }
        let v = invalid(&with(
            r#"[{"operations": ["read_item"], "approvers": ["alice"],
                 "timeout_seconds": 60, "on_timeout": "allow"}]"#,
        ));
        assert!(
            v.iter().any(|v| v.pointer == "/approvals/0/on_timeout"),
            "{v:?}"
        );
    }

    #[test]
    fn host_rules_are_optional_and_checked() {
        let seed = Contract::from_slice(SEED).unwrap();
        let with = |rules: &str| seed_plus("host_rules", rules);
        let ok = Contract::from_slice(
            with(r#"{"api.1password.com": [{"methods": ["GET", "HEAD"], "paths": ["/v1/**"]}]}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            ok.document().host_rules["api.1password.com"][0].paths,
            ["/v1/**"]
        );
        assert_ne!(ok.hash(), seed.hash());
        for (rules, pointer) in [
            // Not reachable at all: the rules would never apply.
            (
                r#"{"api.github.com": [{"methods": ["GET"], "paths": ["/"]}]}"#,
                "/host_rules/api.github.com",
            ),
            // Spelt otherwise than network_egress canonicalises hosts.
            (
                r#"{"API.1password.com": [{"methods": ["GET"], "paths": ["/"]}]}"#,
                "/host_rules",
            ),
            (
                r#"{"api.1password.com:443": [{"methods": ["GET"], "paths": ["/"]}]}"#,
                "/host_rules",
            ),
            (
                r#"{"api.1password.com": [{"methods": ["get"], "paths": ["/"]}]}"#,
                "/host_rules/api.1password.com/0/methods/0",
            ),
            (
                r#"{"api.1password.com": [{"methods": ["GET", "CONNECT"], "paths": ["/"]}]}"#,
                "/host_rules/api.1password.com/0/methods/1",
            ),
            (
                r#"{"api.1password.com": [{"methods": ["GET"], "paths": ["/v1", "v1/x"]}]}"#,
                "/host_rules/api.1password.com/0/paths/1",
            ),
            (
                r#"{"api.1password.com": [{"methods": ["GET"], "paths": ["/v1/"]}]}"#,
                "/host_rules/api.1password.com/0/paths/0",
            ),
            (
                r#"{"api.1password.com": [{"methods": ["GET"], "paths": ["/a%2fb"]}]}"#,
                "/host_rules/api.1password.com/0/paths/0",
            ),
            (
                r#"{"api.1password.com": [{"methods": [], "paths": ["/"]}]}"#,
                "/host_rules/api.1password.com/0/methods",
            ),
            (
                r#"{"api.1password.com": [{"methods": ["GET"]}]}"#,
                "/host_rules/api.1password.com/0",
            ),
            (
                r#"{"api.1password.com": []}"#,
                "/host_rules/api.1password.com",
            ),
            ("{}", "/host_rules"),
        ] {
            let v = invalid(&with(rules));
            assert!(v.iter().any(|v| v.pointer == pointer), "{rules}: {v:?}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let text = seed_with(
            r#""name": "1password-readonly-agent","#,
            r#""name": "a", "name": "b","#,
        );
        let err = Contract::from_slice(text.as_bytes()).unwrap_err();
        assert!(matches!(err, ContractError::Json(_)));
        assert!(err.to_string().contains("duplicate key \"name\""), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused_with_a_pointer() {
        let v = invalid(&seed_with(
            r#""job_scoped": true"#,
            r#""job_scoped": true, "extra": 1"#,
        ));
        assert_eq!(v[0].pointer, "/cst_constraints", "{v:?}");
        assert!(v[0].message.contains("extra"), "{v:?}");
    }

    #[test]
    fn bad_values_name_their_pointer() {
        let cases = [
            (
                r#"["read_item"]"#,
                r#"["read_everything"]"#,
                "/tool_scope/allowed_operations/0",
            ),
            (
                r#"["API_CREDENTIAL", "DATABASE"]"#,
                r#"["API_KEY"]"#,
                "/tool_scope/allowed_categories/0",
            ),
            (
                r#"["vault_agent_secrets_prod"]"#,
                "[]",
                "/tool_scope/allowed_vaults",
            ),
            ("900", "0", "/cst_constraints/max_ttl_seconds"),
            ("900", "-5", "/cst_constraints/max_ttl_seconds"),
            ("900", "31536000", "/cst_constraints/max_ttl_seconds"),
            ("900", "\"900\"", "/cst_constraints/max_ttl_seconds"),
            (
                r#""wpc_version": "1.0""#,
                r#""wpc_version": "2.0""#,
                "/wpc_version",
            ),
            (
                r#""api.1password.com""#,
                r#""API.1password.com""#,
                "/sandbox/network_egress/1",
            ),
        ];
        for (from, to, pointer) in cases {
            let v = invalid(&seed_with(from, to));
            assert!(v.iter().any(|v| v.pointer == pointer), "{to}: {v:?}");
        }
    }

    #[test]
    fn nothing_allowed_is_refused() {
        let v = invalid(&seed_with(
            r#""deny_operations": ["create_item""#,
            r#""deny_operations": ["read_item", "create_item""#,
        ));
        assert_eq!(v[0].pointer, "/tool_scope/allowed_operations");
    }

    #[test]
    fn bad_port_is_refused() {
        let v = invalid(&seed_with(
            r#""api.1password.com""#,
            r#""api.1password.com:99999""#,
        ));
        assert_eq!(v[0].pointer, "/sandbox/network_egress/1");
    }
}
