//! In-memory vaults, items, files and the activity log, and the rules items must follow.
//!
//! Items are kept as JSON objects (the FullItem shape) so that every field a client sends and
//! the server keeps round-trips untouched. `normalize` is the one place that checks an item
//! and fills what the server owns; data files, create, PUT and PATCH all go through it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::error::{DataError, Violation};
use crate::model::{
    CATEGORIES, DataFile, DataVault, FIELD_PURPOSES, FIELD_TYPES, Item, VAULT_TYPES, Vault,
};

/// The most activity entries kept; older ones are dropped first.
const MAX_ACTIVITY: usize = 10_000;

/// The actor id activity entries name (uppercase 26 chars, like real actor ids).
pub(crate) const ACTOR_ID: &str = "SIMACT0RSIMACT0RSIMACT0R01";

/// One vault with its items and file contents.
pub(crate) struct VaultData {
    pub(crate) vault: Vault,
    pub(crate) items: Vec<Item>,
    pub(crate) files: BTreeMap<String, Vec<u8>>,
}

impl VaultData {
    /// Bumps the vault's content version and time after an item changed, and recounts items.
    pub(crate) fn touch(&mut self) {
        self.vault.items = self.items.len() as u64;
        self.vault.content_version += 1;
        self.vault.updated_at = now();
    }

    pub(crate) fn item_mut(&mut self, id: &str) -> Option<&mut Item> {
        self.items
            .iter_mut()
            .find(|it| it.get("id").and_then(Value::as_str) == Some(id))
    }
}

/// Everything the server holds, behind locks (the server is a test double, not a database).
pub struct Store {
    vaults: Mutex<Vec<VaultData>>,
    activity: Mutex<VecDeque<Value>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// A new 26-character `[a-z0-9]` id.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..26)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Whether `s` looks like a Connect id (`^[a-z0-9]{26}$`, the SDKs' own test).
pub fn is_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Now, RFC 3339 in UTC.
pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl Store {
    /// A store holding `data`, checked: ids, types, categories, fields, files and contents.
    pub fn new(data: DataFile) -> Result<Self, DataError> {
        let mut vaults: Vec<VaultData> = Vec::new();
        for (vi, entry) in data.vaults.into_iter().enumerate() {
            let data = load_vault(entry, &format!("/vaults/{vi}"))?;
            if let Some(other) = vaults.iter().position(|d| d.vault.id == data.vault.id) {
                return Err(invalid(
                    format!("/vaults/{vi}/id"),
                    format!("duplicate vault id (also /vaults/{other}/id)"),
                ));
            }
            vaults.push(data);
        }
        Ok(Self {
            vaults: Mutex::new(vaults),
            activity: Mutex::new(VecDeque::new()),
        })
    }

    /// The built-in demo data ([`crate::demo`]).
    pub fn demo() -> Self {
        // The demo data is a constant checked by the `demo_data_is_valid` test; failing here
        // would be a bug in this crate, not an input error.
        Self::new(crate::demo::data()).expect("demo data is valid")
    }

    /// Loads a `--data` file; errors name the file and the JSON pointer of the field.
    pub fn from_file(path: &std::path::Path) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|source| DataError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let data: DataFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let pointer = pointer_of(e.path());
            DataError::Parse {
                path: path.display().to_string(),
                pointer,
                message: e.into_inner().to_string(),
            }
        })?;
        Self::new(data).map_err(|e| e.in_file(path))
    }

    /// The ids and names of the vaults held, in order.
    pub fn vaults(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|d| (d.vault.id.clone(), d.vault.name.clone()))
            .collect()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<VaultData>> {
        // A panic while holding the lock cannot leave a half-written item: every write
        // prepares a new value first and swaps it in last.
        self.vaults.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn activity(&self) -> MutexGuard<'_, VecDeque<Value>> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an APIRequest entry to the activity log.
    pub(crate) fn record(&self, entry: Activity<'_>) {
        let mut resource = json!({ "type": if entry.item.is_some() { "ITEM" } else { "VAULT" } });
        resource["vault"] = json!({ "id": entry.vault });
        if let Some((id, version)) = entry.item {
            resource["item"] = json!({ "id": id });
            resource["itemVersion"] = json!(version);
        }
        let mut rng = rand::thread_rng();
        let request_id = format!(
            "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
            rng.r#gen::<u32>(),
            rng.r#gen::<u16>(),
            rng.gen_range(0..0x1000),
            rng.gen_range(8..12),
            rng.gen_range(0..0x1000),
            rng.gen_range(0..(1u64 << 48))
        );
        let value = json!({
            "requestId": request_id, "timestamp": now(), "action": entry.action,
            "result": if entry.allowed { "SUCCESS" } else { "DENY" },
            "actor": { "id": ACTOR_ID, "account": "SIMACC0UNTSIMACC0UNTSIMACC",
                       "jti": entry.actor, "userAgent": entry.user_agent,
                       "requestIp": entry.ip },
            "resource": resource,
        });
        let mut log = self.activity();
        if log.len() == MAX_ACTIVITY {
            log.pop_front();
        }
        log.push_back(value);
    }
}

/// One activity entry to record.
pub(crate) struct Activity<'a> {
    pub(crate) action: &'a str,
    pub(crate) allowed: bool,
    pub(crate) vault: &'a str,
    pub(crate) item: Option<(&'a str, u64)>,
    /// Which token: `full` or `restricted` (stands in for the token's `jti`).
    pub(crate) actor: &'a str,
    pub(crate) user_agent: &'a str,
    pub(crate) ip: &'a str,
}

fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> DataError {
    DataError::Invalid {
        pointer: pointer.into(),
        message: message.into(),
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => out.push_str(&format!("/{}", escape(key))),
            Segment::Enum { variant } => out.push_str(&format!("/{}", escape(variant))),
            Segment::Unknown => out.push_str("/?"),
        }
    }
    if out.is_empty() { "/".into() } else { out }
}

/// Escapes one JSON-pointer segment (RFC 6901).
pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn load_vault(entry: DataVault, at: &str) -> Result<VaultData, DataError> {
    if !is_id(&entry.id) {
        return Err(invalid(
            format!("{at}/id"),
            format!("{:?} is not a Connect id (26 chars of [a-z0-9])", entry.id),
        ));
    }
    if !VAULT_TYPES.contains(&entry.kind.as_str()) {
        return Err(invalid(
            format!("{at}/type"),
            format!(
                "unknown vault type {:?} (use one of {})",
                entry.kind,
                VAULT_TYPES.join(", ")
            ),
        ));
    }
    for (field, value) in [
        ("createdAt", &entry.created_at),
        ("updatedAt", &entry.updated_at),
    ] {
        check_time(value).map_err(|m| invalid(format!("{at}/{field}"), m))?;
    }
    let mut files = BTreeMap::new();
    for (id, b64) in entry.files {
        let bytes = STANDARD.decode(b64.as_bytes()).map_err(|e| {
            invalid(
                format!("{at}/files/{}", escape(&id)),
                format!("not standard base64: {e}"),
            )
        })?;
        files.insert(id, bytes);
    }
    let mut items: Vec<Item> = Vec::new();
    for (ii, mut item) in entry.items.into_iter().enumerate() {
        let item_at = format!("{at}/items/{ii}");
        normalize(&mut item, &entry.id, Mode::Load)
            .map_err(|v| invalid(format!("{item_at}{}", v.pointer), v.message))?;
        let id = item_id(&item).to_owned();
        if let Some(other) = items.iter().position(|it| item_id(it) == id) {
            return Err(invalid(
                format!("{item_at}/id"),
                format!("duplicate item id (also {at}/items/{other}/id)"),
            ));
        }
        if let Some(list) = item.get_mut("files").and_then(Value::as_array_mut) {
            for (fi, file) in list.iter_mut().enumerate() {
                let fid = file
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let content = files.get(&fid).ok_or_else(|| {
                    invalid(
                        format!("{item_at}/files/{fi}/id"),
                        format!("file {fid:?} has no content in {at}/files"),
                    )
                })?;
                file["size"] = json!(content.len());
                file["content_path"] = json!(format!(
                    "/v1/vaults/{}/items/{id}/files/{fid}/content",
                    entry.id
                ));
            }
        }
        items.push(item);
    }
    let vault = Vault {
        id: entry.id,
        name: entry.name,
        description: entry.description,
        attribute_version: entry.attribute_version,
        content_version: entry.content_version,
        items: items.len() as u64,
        kind: entry.kind,
        created_at: entry.created_at,
        updated_at: entry.updated_at,
    };
    Ok(VaultData {
        vault,
        items,
        files,
    })
}

fn check_time(value: &str) -> Result<(), String> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|_| ())
        .map_err(|_| format!("{value:?} is not an RFC 3339 time"))
}

/// An item's id (empty if it has none yet).
pub(crate) fn item_id(item: &Item) -> &str {
    item.get("id").and_then(Value::as_str).unwrap_or_default()
}

/// Where an item comes from, which decides what it may carry.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Mode {
    /// A data file: ids and server-owned fields are given and checked; unknown keys refused.
    Load,
    /// A POST body: CUSTOM and DOCUMENT are refused; unknown keys dropped.
    Create,
    /// A PUT or PATCH result; unknown keys dropped.
    Update,
}

/// The item keys Connect defines (FullItem plus the SDKs' `trashed`).
const ITEM_KEYS: &[&str] = &[
    "id",
    "title",
    "vault",
    "category",
    "urls",
    "favorite",
    "tags",
    "version",
    "state",
    "trashed",
    "createdAt",
    "updatedAt",
    "lastEditedBy",
    "sections",
    "fields",
    "files",
];

/// Checks `item` against the Connect data model and fills defaults, field ids and generated
/// values. Violations carry a JSON pointer relative to the item.
pub(crate) fn normalize(item: &mut Item, vault: &str, mode: Mode) -> Result<(), Violation> {
    let keys: Vec<String> = item.keys().cloned().collect();
    for key in keys {
        if !ITEM_KEYS.contains(&key.as_str()) {
            if mode == Mode::Load {
                return Err(Violation::new(
                    format!("/{}", escape(&key)),
                    "unknown item field",
                ));
            }
            item.remove(&key);
        }
    }
    // `trashed` is the SDKs' model of `state`; both are server-owned.
    item.remove("trashed");
    if mode != Mode::Load {
        item.remove("state");
    }
    if mode == Mode::Load {
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        if !is_id(id) {
            return Err(Violation::new(
                "/id",
                format!("{id:?} is not a Connect id (26 chars of [a-z0-9])"),
            ));
        }
        for key in ["createdAt", "updatedAt"] {
            match item.get(key) {
                None => {
                    item.insert(key.into(), json!("2026-01-01T00:00:00Z"));
                }
                Some(Value::String(t)) => {
                    check_time(t).map_err(|m| Violation::new(format!("/{key}"), m))?
                }
                Some(_) => return Err(Violation::new(format!("/{key}"), "must be a string")),
            }
        }
        match item.get("version") {
            None => {
                item.insert("version".into(), json!(1));
            }
            Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
            Some(_) => return Err(Violation::new("/version", "must be an integer >= 1")),
        }
        if let Some(state) = item.get("state")
            && !matches!(state.as_str(), Some("ARCHIVED" | "DELETED"))
        {
            return Err(Violation::new("/state", "must be ARCHIVED or DELETED"));
        }
        item.entry("lastEditedBy").or_insert(json!(ACTOR_ID));
    }
    match item.get("title") {
        Some(Value::String(_)) => {}
        None if mode != Mode::Load => {
            item.insert("title".into(), json!(""));
        }
        None => return Err(Violation::new("/title", "missing")),
        Some(_) => return Err(Violation::new("/title", "must be a string")),
    }
    let category = match item.get("category") {
        Some(Value::String(c)) => c.clone(),
        None => {
            return Err(Violation::new(
                "/category",
                "Invalid item category: missing",
            ));
        }
        Some(_) => return Err(Violation::new("/category", "must be a string")),
    };
    if !CATEGORIES.contains(&category.as_str()) {
        return Err(Violation::new(
            "/category",
            format!("Invalid item category {category:?}"),
        ));
    }
    if mode == Mode::Create && matches!(category.as_str(), "CUSTOM" | "DOCUMENT") {
        return Err(Violation::new(
            "/category",
            format!("Invalid item category: {category} items cannot be created through Connect"),
        ));
    }
    if let Some(given) = item.get("vault") {
        let given = given.get("id").and_then(Value::as_str);
        if given.is_some_and(|g| g != vault) {
            return Err(Violation::new(
                "/vault/id",
                "the item's vault id does not match the vault in the path",
            ));
        }
    }
    item.insert("vault".into(), json!({ "id": vault }));
    default_list(item, "urls")?;
    default_list(item, "tags")?;
    default_list(item, "sections")?;
    default_list(item, "fields")?;
    default_list(item, "files")?;
    match item.entry("favorite").or_insert(json!(false)) {
        Value::Bool(_) => {}
        _ => return Err(Violation::new("/favorite", "must be true or false")),
    }
    check_urls(item)?;
    check_tags(item)?;
    check_sections(item)?;
    check_files(item)?;
    let mut fields = match item.remove("fields") {
        Some(Value::Array(fields)) => fields,
        _ => Vec::new(),
    };
    let result = fields
        .iter_mut()
        .enumerate()
        .try_for_each(|(i, field)| normalize_field(field, &format!("/fields/{i}")));
    item.insert("fields".into(), Value::Array(fields));
    result
}

fn default_list(item: &mut Item, key: &str) -> Result<(), Violation> {
    match item.entry(key).or_insert(json!([])) {
        Value::Array(_) => Ok(()),
        // `null` is what some clients send for an empty list.
        v @ Value::Null => {
            *v = json!([]);
            Ok(())
        }
        _ => Err(Violation::new(format!("/{key}"), "must be an array")),
    }
}

fn list<'a>(item: &'a Item, key: &str) -> &'a [Value] {
    item.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn check_urls(item: &Item) -> Result<(), Violation> {
    for (i, url) in list(item, "urls").iter().enumerate() {
        if url.get("href").and_then(Value::as_str).is_none() {
            return Err(Violation::new(
                format!("/urls/{i}/href"),
                "must be a string",
            ));
        }
    }
    Ok(())
}

fn check_tags(item: &Item) -> Result<(), Violation> {
    for (i, tag) in list(item, "tags").iter().enumerate() {
        if !tag.is_string() {
            return Err(Violation::new(format!("/tags/{i}"), "must be a string"));
        }
    }
    Ok(())
}

fn check_sections(item: &Item) -> Result<(), Violation> {
    for (i, section) in list(item, "sections").iter().enumerate() {
        if section.get("id").and_then(Value::as_str).is_none() {
            return Err(Violation::new(
                format!("/sections/{i}/id"),
                "must be a string",
            ));
        }
    }
    Ok(())
}

fn check_files(item: &Item) -> Result<(), Violation> {
    for (i, file) in list(item, "files").iter().enumerate() {
        for key in ["id", "name"] {
            if file.get(key).and_then(Value::as_str).is_none() {
                return Err(Violation::new(
                    format!("/files/{i}/{key}"),
                    "must be a string",
                ));
            }
        }
    }
    Ok(())
}

fn normalize_field(field: &mut Value, at: &str) -> Result<(), Violation> {
    let Some(field) = field.as_object_mut() else {
        return Err(Violation::new(at, "a field must be an object"));
    };
    match field.get("id") {
        Some(Value::String(id)) if !id.is_empty() => {}
        None | Some(Value::Null) | Some(Value::String(_)) => {
            field.insert("id".into(), json!(new_id()));
        }
        Some(_) => return Err(Violation::new(format!("{at}/id"), "must be a string")),
    }
    match field.get("type") {
        None | Some(Value::Null) => {
            field.insert("type".into(), json!("STRING"));
        }
        Some(Value::String(t)) if FIELD_TYPES.contains(&t.as_str()) => {}
        Some(t) => {
            return Err(Violation::new(
                format!("{at}/type"),
                format!("Invalid field type {t}"),
            ));
        }
    }
    match field.get("purpose") {
        None | Some(Value::Null) => {
            field.remove("purpose");
        }
        Some(Value::String(p)) if FIELD_PURPOSES.contains(&p.as_str()) => {}
        Some(p) => {
            return Err(Violation::new(
                format!("{at}/purpose"),
                format!("Invalid field purpose {p} (use \"\", USERNAME, PASSWORD or NOTES)"),
            ));
        }
    }
    for key in ["label", "value"] {
        match field.get(key) {
            None | Some(Value::String(_)) => {}
            Some(Value::Null) => {
                field.remove(key);
            }
            Some(_) => return Err(Violation::new(format!("{at}/{key}"), "must be a string")),
        }
    }
    if let Some(section) = field.get("section")
        && !section.is_null()
        && section.get("id").and_then(Value::as_str).is_none()
    {
        return Err(Violation::new(
            format!("{at}/section/id"),
            "must be a string",
        ));
    }
    let generate = match field.get("generate") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Violation::new(
                format!("{at}/generate"),
                "must be true or false",
            ));
        }
    };
    if generate {
        let recipe = match field.get("recipe") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(r)) => r.clone(),
            Some(_) => return Err(Violation::new(format!("{at}/recipe"), "must be an object")),
        };
        let (value, entropy) = generate_value(&recipe, &format!("{at}/recipe"))?;
        field.insert("value".into(), json!(value));
        field.insert("entropy".into(), json!(entropy));
        field.insert("generate".into(), json!(false));
    }
    Ok(())
}

/// A value made from a generator recipe (length 1..=64, default 32; character sets default
/// to all three), and its entropy in bits.
fn generate_value(recipe: &Map<String, Value>, at: &str) -> Result<(String, f64), Violation> {
    let length = match recipe.get("length") {
        None | Some(Value::Null) => 32,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=64) => n,
            _ => {
                return Err(Violation::new(
                    format!("{at}/length"),
                    "Invalid recipe: length must be between 1 and 64",
                ));
            }
        },
    };
    let sets: Vec<&str> = match recipe.get("characterSets") {
        None | Some(Value::Null) => vec!["LETTERS", "DIGITS", "SYMBOLS"],
        Some(Value::Array(a)) => a.iter().map(|s| s.as_str().unwrap_or("")).collect(),
        Some(_) => {
            return Err(Violation::new(
                format!("{at}/characterSets"),
                "must be an array",
            ));
        }
    };
    let mut alphabet = String::new();
    for (i, set) in sets.iter().enumerate() {
        alphabet.push_str(match *set {
            "LETTERS" => "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "DIGITS" => "0123456789",
            "SYMBOLS" => "!@#$%^&*()-_=+[]{};:,.?",
            other => {
                return Err(Violation::new(
                    format!("{at}/characterSets/{i}"),
                    format!("Invalid recipe: unknown character set {other:?}"),
                ));
            }
        });
    }
    let exclude = match recipe.get("excludeCharacters") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(Violation::new(
                format!("{at}/excludeCharacters"),
                "must be a string",
            ));
        }
    };
    let mut chars: Vec<char> = alphabet.chars().filter(|c| !exclude.contains(*c)).collect();
    chars.dedup();
    if chars.is_empty() {
        return Err(Violation::new(
            at,
            "Invalid recipe: no characters left to generate from",
        ));
    }
    let mut rng = rand::thread_rng();
    let value: String = (0..length)
        .map(|_| chars[rng.gen_range(0..chars.len())])
        .collect();
    let bits = length as f64 * (chars.len() as f64).log2();
    Ok((value, (bits * 100.0).round() / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: Value) -> Item {
        value.as_object().cloned().unwrap()
    }

    const V: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn demo_data_is_valid() {
        let store = Store::new(crate::demo::data()).unwrap();
        assert_eq!(store.vaults().len(), 2);
    }

    #[test]
    fn create_fills_ids_defaults_and_generated_values() {
        let mut it = item(json!({"title": "t", "category": "LOGIN", "trashed": false,
            "fields": [{"purpose": "PASSWORD", "generate": true,
                        "recipe": {"length": 12, "characterSets": ["DIGITS"]}},
                       {"id": "", "label": "u", "value": "x"}]}));
        normalize(&mut it, V, Mode::Create).unwrap();
        assert_eq!(it["vault"], json!({"id": V}));
        assert_eq!(it["tags"], json!([]));
        assert_eq!(it["favorite"], json!(false));
        assert!(it.get("trashed").is_none());
        let f = it["fields"].as_array().unwrap();
        let pw = f[0]["value"].as_str().unwrap();
        assert!(
            pw.len() == 12 && pw.bytes().all(|b| b.is_ascii_digit()),
            "{pw}"
        );
        assert_eq!(f[0]["type"], "STRING");
        assert!(f[0]["entropy"].as_f64().unwrap() > 39.0);
        assert!(is_id(f[0]["id"].as_str().unwrap()));
        assert!(
            is_id(f[1]["id"].as_str().unwrap()),
            "empty ids are replaced"
        );
    }

    #[test]
    fn create_refuses_bad_items_naming_the_field() {
        for (body, pointer) in [
            (json!({"title": "t", "category": "CUSTOM"}), "/category"),
            (json!({"title": "t", "category": "DOCUMENT"}), "/category"),
            (json!({"title": "t", "category": "NOPE"}), "/category"),
            (json!({"title": "t"}), "/category"),
            (json!({"title": 1, "category": "LOGIN"}), "/title"),
            (
                json!({"category": "LOGIN", "vault": {"id": "bbbbbbbbbbbbbbbbbbbbbbbbbb"}}),
                "/vault/id",
            ),
            (
                json!({"category": "LOGIN", "fields": [{}, {"purpose": "OTP"}]}),
                "/fields/1/purpose",
            ),
            (
                json!({"category": "LOGIN", "fields": [{"type": "NOPE"}]}),
                "/fields/0/type",
            ),
            (
                json!({"category": "LOGIN", "fields": [{"generate": true, "recipe": {"length": 65}}]}),
                "/fields/0/recipe/length",
            ),
            (
                json!({"category": "LOGIN", "fields": [{"generate": true, "recipe": {"characterSets": ["EMOJI"]}}]}),
                "/fields/0/recipe/characterSets/0",
            ),
            (
                json!({"category": "LOGIN", "fields": [{"generate": true, "recipe": {"characterSets": ["DIGITS"], "excludeCharacters": "0123456789"}}]}),
                "/fields/0/recipe",
            ),
            (json!({"category": "LOGIN", "tags": [1]}), "/tags/0"),
            (json!({"category": "LOGIN", "urls": [{}]}), "/urls/0/href"),
            (json!({"category": "LOGIN", "fields": {}}), "/fields"),
            (json!({"category": "LOGIN", "fields": [1]}), "/fields/0"),
        ] {
            let mut it = item(body.clone());
            let v = normalize(&mut it, V, Mode::Create).expect_err(&body.to_string());
            assert_eq!(v.pointer, pointer, "{body}: {v:?}");
        }
    }

    #[test]
    fn load_is_strict_about_what_the_server_owns() {
        let ok = json!({"id": V, "title": "t", "category": "LOGIN"});
        normalize(&mut item(ok), V, Mode::Load).unwrap();
        for (body, pointer) in [
            (json!({"title": "t", "category": "LOGIN"}), "/id"),
            (json!({"id": "X", "title": "t", "category": "LOGIN"}), "/id"),
            (json!({"id": V, "category": "LOGIN"}), "/title"),
            (
                json!({"id": V, "title": "t", "category": "LOGIN", "feilds": []}),
                "/feilds",
            ),
            (
                json!({"id": V, "title": "t", "category": "LOGIN", "version": 0}),
                "/version",
            ),
            (
                json!({"id": V, "title": "t", "category": "LOGIN", "createdAt": "yesterday"}),
                "/createdAt",
            ),
        ] {
            let v = normalize(&mut item(body.clone()), V, Mode::Load).expect_err(&body.to_string());
            assert_eq!(v.pointer, pointer, "{body}");
        }
    }

    #[test]
    fn ids_are_26_lowercase_alphanumerics() {
        for _ in 0..100 {
            assert!(is_id(&new_id()));
        }
        assert!(!is_id("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
        assert!(!is_id("abc"));
    }
}
