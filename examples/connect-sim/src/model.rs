//! The Connect JSON shapes (camelCase, except File's `content_path`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A vault.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Vault {
    /// 26-char id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Bumped on vault changes.
    #[serde(default = "one")]
    pub attribute_version: u64,
    /// Bumped on item changes.
    #[serde(default = "one")]
    pub content_version: u64,
    /// Active item count (kept by the store).
    #[serde(default)]
    pub items: u64,
    /// USER_CREATED, PERSONAL, EVERYONE or TRANSFER.
    #[serde(rename = "type", default = "user_created")]
    pub kind: String,
    /// RFC 3339.
    #[serde(default = "epoch")]
    pub created_at: String,
    /// RFC 3339.
    #[serde(default = "epoch")]
    pub updated_at: String,
}

fn one() -> u64 {
    1
}

fn user_created() -> String {
    "USER_CREATED".into()
}

fn epoch() -> String {
    "2026-01-01T00:00:00Z".into()
}

/// A full item as stored; summaries drop `fields`, `sections` and `files`.
pub type Item = serde_json::Map<String, Value>;

/// The keys a summary keeps (list_items returns no secrets).
pub const SUMMARY_KEYS: &[&str] = &[
    "id",
    "title",
    "vault",
    "category",
    "urls",
    "favorite",
    "tags",
    "version",
    "state",
    "createdAt",
    "updatedAt",
    "lastEditedBy",
];

/// The summary of an item.
pub fn summary(item: &Item) -> Value {
    let map: serde_json::Map<String, Value> = item
        .iter()
        .filter(|(k, _)| SUMMARY_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(map)
}

/// The 22 item categories Connect knows.
pub const CATEGORIES: &[&str] = &[
    "LOGIN",
    "PASSWORD",
    "API_CREDENTIAL",
    "SERVER",
    "DATABASE",
    "CREDIT_CARD",
    "MEMBERSHIP",
    "PASSPORT",
    "SOFTWARE_LICENSE",
    "OUTDOOR_LICENSE",
    "SECURE_NOTE",
    "WIRELESS_ROUTER",
    "BANK_ACCOUNT",
    "DRIVER_LICENSE",
    "IDENTITY",
    "REWARD_PROGRAM",
    "DOCUMENT",
    "EMAIL_ACCOUNT",
    "SOCIAL_SECURITY_NUMBER",
    "MEDICAL_RECORD",
    "SSH_KEY",
    "CUSTOM",
];

/// The data file: `{"vaults":[{<Vault fields>, "items":[<FullItem>…], "files":{"<id>":"<base64>"}}]}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// Vaults with their items and file contents.
    pub vaults: Vec<DataVault>,
}

/// One vault in a data file. `items` is the list of full items here, not the count; counts,
/// versions and timestamps the server keeps itself may be given and are then kept (the count
/// is always recomputed).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataVault {
    /// 26-char `[a-z0-9]` id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// USER_CREATED (default), PERSONAL, EVERYONE or TRANSFER.
    #[serde(rename = "type", default = "user_created")]
    pub kind: String,
    /// Defaults to 1.
    #[serde(default = "one")]
    pub attribute_version: u64,
    /// Defaults to 1.
    #[serde(default = "one")]
    pub content_version: u64,
    /// RFC 3339; defaults to 2026-01-01T00:00:00Z.
    #[serde(default = "epoch")]
    pub created_at: String,
    /// RFC 3339; defaults to 2026-01-01T00:00:00Z.
    #[serde(default = "epoch")]
    pub updated_at: String,
    /// Full items (see [`Item`]).
    #[serde(default)]
    pub items: Vec<Item>,
    /// File contents by file id, standard base64.
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, String>,
}

/// The vault types Connect (and the Python SDK, which refuses others) knows.
pub const VAULT_TYPES: &[&str] = &["USER_CREATED", "PERSONAL", "EVERYONE", "TRANSFER"];

/// The field purposes the Python SDK accepts.
pub const FIELD_PURPOSES: &[&str] = &["", "USERNAME", "PASSWORD", "NOTES"];

/// Field types: the Go SDK's list plus the spec's `TOTP` (the real server emits `OTP`).
pub const FIELD_TYPES: &[&str] = &[
    "ADDRESS",
    "CONCEALED",
    "CREDIT_CARD_NUMBER",
    "CREDIT_CARD_TYPE",
    "DATE",
    "EMAIL",
    "GENDER",
    "MENU",
    "MONTH_YEAR",
    "OTP",
    "PHONE",
    "REFERENCE",
    "STRING",
    "URL",
    "FILE",
    "SSHKEY",
    "UNKNOWN",
    "TOTP",
];
