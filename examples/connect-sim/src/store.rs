//! In-memory vaults, items, files and the activity log.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use serde_json::{Value, json};

use crate::model::{CATEGORIES, DataFile, Item, Vault};

/// Why a data file or a write was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

pub(crate) struct VaultData {
    pub(crate) vault: Vault,
    pub(crate) items: Vec<Item>,
    pub(crate) files: BTreeMap<String, Vec<u8>>,
}

/// Everything the server holds.
pub struct Store {
    pub(crate) vaults: Mutex<Vec<VaultData>>,
    pub(crate) activity: Mutex<Vec<Value>>,
}

/// A new 26-character `[a-z0-9]` id.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..26)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether `s` looks like a Connect id.
pub fn is_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl Store {
    /// A store holding `data`, checked: ids, categories, vault references, file contents.
    pub fn new(data: DataFile) -> Result<Self, Invalid> {
        let mut vaults = Vec::new();
        for (vi, entry) in data.vaults.into_iter().enumerate() {
            let at = |what: &str| format!("vaults[{vi}]{what}");
            if !is_id(&entry.vault.id) {
                return Err(Invalid(format!(
                    "{}: id {:?} is not 26 chars of [a-z0-9]",
                    at(".id"),
                    entry.vault.id
                )));
            }
            if !["USER_CREATED", "PERSONAL", "EVERYONE", "TRANSFER"]
                .contains(&entry.vault.kind.as_str())
            {
                return Err(Invalid(format!(
                    "{}: unknown vault type {:?}",
                    at(".type"),
                    entry.vault.kind
                )));
            }
            let mut files = BTreeMap::new();
            for (id, b64) in entry.files {
                let bytes = STANDARD
                    .decode(&b64)
                    .map_err(|_| Invalid(format!("{}: not base64", at(&format!(".files.{id}")))))?;
                files.insert(id, bytes);
            }
            let mut items = Vec::new();
            for (ii, mut item) in entry.items.into_iter().enumerate() {
                let at = |f: &str| at(&format!(".items[{ii}]{f}"));
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if !is_id(&id) {
                    return Err(Invalid(format!(
                        "{}: id {id:?} is not 26 chars of [a-z0-9]",
                        at(".id")
                    )));
                }
                let category = item
                    .get("category")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !CATEGORIES.contains(&category) {
                    return Err(Invalid(format!(
                        "{}: unknown category {category:?}",
                        at(".category")
                    )));
                }
                if item.get("title").and_then(Value::as_str).is_none() {
                    return Err(Invalid(format!("{}: missing", at(".title"))));
                }
                item.insert("vault".into(), json!({ "id": entry.vault.id }));
                if let Some(list) = item.get_mut("files").and_then(Value::as_array_mut) {
                    for file in list {
                        let fid = file
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        let content = files.get(&fid).ok_or_else(|| {
                            Invalid(format!(
                                "{}: file {fid:?} has no content in files",
                                at(".files")
                            ))
                        })?;
                        file["size"] = json!(content.len());
                        file["content_path"] = json!(format!(
                            "/v1/vaults/{}/items/{id}/files/{fid}/content",
                            entry.vault.id
                        ));
                    }
                }
                items.push(item);
            }
            let vault = Vault {
                id: entry.vault.id,
                name: entry.vault.name,
                description: entry.vault.description,
                attribute_version: 1,
                content_version: 1,
                items: items.len() as u64,
                kind: entry.vault.kind,
                created_at: "2026-01-01T00:00:00Z".into(),
                updated_at: "2026-01-01T00:00:00Z".into(),
            };
            vaults.push(VaultData {
                vault,
                items,
                files,
            });
        }
        Ok(Self {
            vaults: Mutex::new(vaults),
            activity: Mutex::new(Vec::new()),
        })
    }

    /// The built-in demo data.
    pub fn demo() -> Self {
        Self::new(crate::demo::data()).expect("demo data is valid")
    }

    /// Loads a `--data` file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, Invalid> {
        let bytes = std::fs::read(path).map_err(|e| Invalid(format!("{}: {e}", path.display())))?;
        let data: DataFile = serde_json::from_slice(&bytes)
            .map_err(|e| Invalid(format!("{}: {e}", path.display())))?;
        Self::new(data).map_err(|e| Invalid(format!("{}: {e}", path.display())))
    }

    pub(crate) fn record(
        &self,
        action: &str,
        result: &str,
        vault: Option<&str>,
        item: Option<(&str, u64)>,
        agent: &str,
    ) {
        let mut resource = json!({ "type": if item.is_some() { "ITEM" } else { "VAULT" } });
        if let Some(v) = vault {
            resource["vault"] = json!({ "id": v });
        }
        if let Some((i, version)) = item {
            resource["item"] = json!({ "id": i });
            resource["itemVersion"] = json!(version);
        }
        let mut rng = rand::thread_rng();
        let request_id = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rng.r#gen::<u32>(),
            rng.r#gen::<u16>(),
            rng.gen_range(0..0x1000),
            rng.gen_range(0..0x1000),
            rng.gen_range(0..(1u64 << 48))
        );
        self.activity.lock().unwrap_or_else(|e| e.into_inner()).push(json!({
            "requestId": request_id, "timestamp": now(), "action": action, "result": result,
            "actor": { "id": "SIMACTORSIMACTORSIMACTOR01", "account": "SIMACCOUNTSIMACCOUNTSIMACC",
                       "jti": "sim", "userAgent": agent, "requestIp": "127.0.0.1" },
            "resource": resource,
        }));
    }
}
