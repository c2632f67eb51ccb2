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

/// The data file: `{"vaults":[{<Vault>, "items":[<FullItem>…], "files":{"<id>":"<base64>"}}]}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// Vaults with their items and file contents.
    pub vaults: Vec<DataVault>,
}

/// One vault in a data file.
#[derive(Clone, Debug, Deserialize)]
pub struct DataVault {
    /// The vault's fields.
    #[serde(flatten)]
    pub vault: VaultFields,
    /// Full items.
    #[serde(default)]
    pub items: Vec<Item>,
    /// File contents by file id, base64.
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, String>,
}

/// The vault part of a data-file entry (`items` there is the list, not the count).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultFields {
    /// 26-char id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Vault type.
    #[serde(rename = "type", default = "user_created")]
    pub kind: String,
}
