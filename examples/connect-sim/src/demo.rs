//! Built-in demo data with fixed ids, so tests and the quickstart can name them.
//!
//! The demo vault is *named* `vault_agent_secrets_prod`, the vault the seed contract lists, and
//! has the fixed id [`DEMO_VAULT_ID`], so a contract can list it by either. Secret values are
//! obviously fake.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::model::{DataFile, DataVault, Item};

/// The demo vault, *named* `vault_agent_secrets_prod`.
pub const DEMO_VAULT_ID: &str = "ytrfte14kw1uex5txaore1emkz";
/// Its name, as the seed contract lists it.
pub const DEMO_VAULT_NAME: &str = "vault_agent_secrets_prod";
/// A DATABASE item (`prod-db`).
pub const DEMO_DB_ITEM_ID: &str = "x4tpzrqojj2ahmv3w7nb6vu2pe";
/// An API_CREDENTIAL item (`stripe-api`).
pub const DEMO_API_ITEM_ID: &str = "k2m5n8p3q6r9s2t5u8v1w4x7y0";
/// A LOGIN item (`admin-login`).
pub const DEMO_LOGIN_ITEM_ID: &str = "a1b2c3d4e5f6g7h8i9j0k1l2m3";
/// A SECURE_NOTE item (`runbook`) with one file.
pub const DEMO_NOTE_ITEM_ID: &str = "n0t3n0t3n0t3n0t3n0t3n0t3n0";
/// The runbook's file.
pub const DEMO_FILE_ID: &str = "6r65pjq33banznomn7q22sj44e";
/// The runbook file's name.
pub const DEMO_FILE_NAME: &str = "runbook.txt";
/// The runbook file's content.
pub const DEMO_FILE_CONTENT: &[u8] = b"Run the runbook.\n";
/// A second vault, named [`OTHER_VAULT_NAME`].
pub const OTHER_VAULT_ID: &str = "o7h3rv4u1tv4u1tv4u1tv4u1tv";
/// The second vault's name.
pub const OTHER_VAULT_NAME: &str = "vault_other";
/// A DATABASE item in the second vault (`billing-db`).
pub const OTHER_ITEM_ID: &str = "o7h3r1t3mo7h3r1t3mo7h3r1t3";

/// The second vault's API_CREDENTIAL item (`billing-api`).
pub const OTHER_API_ITEM_ID: &str = "b1111ngap1b1111ngap1b1111n";
/// The DATABASE item's section holding the connection details (label `connection`).
pub const DEMO_DB_SECTION_ID: &str = "Section_connection";

fn item(id: &str, title: &str, category: &str, fields: Value) -> Item {
    let value = json!({
        "id": id, "title": title, "category": category,
        "urls": [], "favorite": false, "tags": ["demo"], "version": 1,
        "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
        "lastEditedBy": "DEM0USERDEM0USERDEM0USER01",
        "sections": [{"id": "add more"}], "fields": fields, "files": []
    });
    match value {
        Value::Object(map) => map,
        _ => Item::new(),
    }
}

fn field(id: &str, kind: &str, purpose: &str, label: &str, value: &str) -> Value {
    let mut f = json!({"id": id, "type": kind, "label": label, "value": value});
    if !purpose.is_empty() {
        f["purpose"] = json!(purpose);
    }
    f
}

fn in_section(mut field: Value, section: &str) -> Value {
    field["section"] = json!({ "id": section });
    field
}

fn vault(id: &str, name: &str, description: &str, items: Vec<Item>) -> DataVault {
    DataVault {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        kind: "USER_CREATED".into(),
        attribute_version: 1,
        content_version: 1,
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        items,
        files: Default::default(),
    }
}

/// The demo data: [`DEMO_VAULT_NAME`] with a DATABASE (`prod-db`), an API_CREDENTIAL
/// (`stripe-api`), a LOGIN (`admin-login`) and a SECURE_NOTE (`runbook`, one file), and
/// `vault_other` with a DATABASE (`billing-db`) and an API_CREDENTIAL (`billing-api`).
pub fn data() -> DataFile {
    let mut db = item(
        DEMO_DB_ITEM_ID,
        "prod-db",
        "DATABASE",
        json!([
            field("username", "STRING", "USERNAME", "username", "svc_orders"),
            field(
                "password",
                "CONCEALED",
                "PASSWORD",
                "password",
                "demo-db-password-Zq8vN2pL6w"
            ),
            in_section(
                field("hostname", "STRING", "", "host", "db.internal.example"),
                DEMO_DB_SECTION_ID
            ),
            in_section(
                field("port", "STRING", "", "port", "5432"),
                DEMO_DB_SECTION_ID
            ),
            in_section(
                field("database", "STRING", "", "database", "orders"),
                DEMO_DB_SECTION_ID
            ),
        ]),
    );
    db.insert(
        "sections".into(),
        json!([{"id": "add more"}, {"id": DEMO_DB_SECTION_ID, "label": "connection"}]),
    );
    db.insert("tags".into(), json!(["demo", "database"]));
    let api = item(
        DEMO_API_ITEM_ID,
        "stripe-api",
        "API_CREDENTIAL",
        json!([
            field("username", "STRING", "", "username", "orders-service"),
            field(
                "credential",
                "CONCEALED",
                "",
                "credential",
                "sk_demo_4eC39HqLyjWDarjtT1zdp7dc"
            ),
        ]),
    );
    let mut login = item(
        DEMO_LOGIN_ITEM_ID,
        "admin-login",
        "LOGIN",
        json!([
            field("username", "STRING", "USERNAME", "username", "admin"),
            field(
                "password",
                "CONCEALED",
                "PASSWORD",
                "password",
                "demo-admin-password-not-for-agents"
            ),
        ]),
    );
    login.insert(
        "urls".into(),
        json!([{"href": "https://admin.internal.example", "primary": true}]),
    );
    let v = DEMO_VAULT_ID;
    let mut note = item(
        DEMO_NOTE_ITEM_ID,
        "runbook",
        "SECURE_NOTE",
        json!([field(
            "notesPlain",
            "STRING",
            "NOTES",
            "notesPlain",
            "Rotate the database password monthly."
        )]),
    );
    note.insert("files".into(), json!([{
        "id": DEMO_FILE_ID, "name": DEMO_FILE_NAME, "size": DEMO_FILE_CONTENT.len(),
        "content_path": format!("/v1/vaults/{v}/items/{DEMO_NOTE_ITEM_ID}/files/{DEMO_FILE_ID}/content"),
        "section": {"id": "add more"}
    }]));
    let mut demo = vault(
        v,
        DEMO_VAULT_NAME,
        "Secrets agents may read",
        vec![db, api, login, note],
    );
    demo.files
        .insert(DEMO_FILE_ID.into(), STANDARD.encode(DEMO_FILE_CONTENT));
    let other = vault(
        OTHER_VAULT_ID,
        OTHER_VAULT_NAME,
        "Not for agents",
        vec![
            item(
                OTHER_ITEM_ID,
                "billing-db",
                "DATABASE",
                json!([field(
                    "password",
                    "CONCEALED",
                    "PASSWORD",
                    "password",
                    "demo-other-password"
                )]),
            ),
            item(
                OTHER_API_ITEM_ID,
                "billing-api",
                "API_CREDENTIAL",
                json!([field(
                    "credential",
                    "CONCEALED",
                    "",
                    "credential",
                    "demo-other-api-key"
                )]),
            ),
        ],
    );
    DataFile {
        vaults: vec![demo, other],
    }
}
