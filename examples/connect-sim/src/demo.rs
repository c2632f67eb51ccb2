//! Built-in demo data with fixed ids, so tests and the quickstart can name them.

use serde_json::json;

use crate::model::{DataFile, DataVault, Item, VaultFields};

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
/// A second vault, `vault_other`.
pub const OTHER_VAULT_ID: &str = "o7h3rv4u1tv4u1tv4u1tv4u1tv";
/// A DATABASE item in the second vault.
pub const OTHER_ITEM_ID: &str = "o7h3r1t3mo7h3r1t3mo7h3r1t3";

fn item(id: &str, vault: &str, title: &str, category: &str, fields: serde_json::Value) -> Item {
    let value = json!({
        "id": id, "title": title, "vault": {"id": vault}, "category": category,
        "urls": [], "favorite": false, "tags": ["demo"], "version": 1,
        "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
        "lastEditedBy": "DEMOUSERDEMOUSERDEMOUSER01",
        "sections": [{"id": "add more"}], "fields": fields, "files": []
    });
    value.as_object().cloned().unwrap_or_default()
}

fn field(id: &str, kind: &str, purpose: &str, label: &str, value: &str) -> serde_json::Value {
    json!({"id": id, "type": kind, "purpose": purpose, "label": label, "value": value})
}

/// The demo data.
pub fn data() -> DataFile {
    let v = DEMO_VAULT_ID;
    let mut note = item(
        DEMO_NOTE_ITEM_ID,
        v,
        "runbook",
        "SECURE_NOTE",
        json!([field(
            "notesPlain",
            "STRING",
            "NOTES",
            "notesPlain",
            "Rotate the database password monthly."
        ),]),
    );
    note.insert("files".into(), json!([{
        "id": DEMO_FILE_ID, "name": "runbook.txt", "size": 23,
        "content_path": format!("/v1/vaults/{v}/items/{DEMO_NOTE_ITEM_ID}/files/{DEMO_FILE_ID}/content"),
        "section": {"id": "add more"}
    }]));
    let demo = DataVault {
        vault: VaultFields {
            id: v.into(),
            name: DEMO_VAULT_NAME.into(),
            description: "Secrets agents may read".into(),
            kind: "USER_CREATED".into(),
        },
        items: vec![
            item(
                DEMO_DB_ITEM_ID,
                v,
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
                    field("hostname", "STRING", "", "server", "db.internal.example"),
                    field("port", "STRING", "", "port", "5432"),
                ]),
            ),
            item(
                DEMO_API_ITEM_ID,
                v,
                "stripe-api",
                "API_CREDENTIAL",
                json!([field(
                    "credential",
                    "CONCEALED",
                    "",
                    "credential",
                    "sk_demo_4eC39HqLyjWDarjtT1zdp7dc"
                ),]),
            ),
            item(
                DEMO_LOGIN_ITEM_ID,
                v,
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
            ),
            note,
        ],
        files: [(
            DEMO_FILE_ID.to_owned(),
            "UnVuIHRoZSBydW5ib29rLgo=".to_owned(),
        )]
        .into(),
    };
    let other = DataVault {
        vault: VaultFields {
            id: OTHER_VAULT_ID.into(),
            name: "vault_other".into(),
            description: "Not for agents".into(),
            kind: "USER_CREATED".into(),
        },
        items: vec![item(
            OTHER_ITEM_ID,
            OTHER_VAULT_ID,
            "billing-db",
            "DATABASE",
            json!([field(
                "password",
                "CONCEALED",
                "PASSWORD",
                "password",
                "demo-other-password"
            ),]),
        )],
        files: Default::default(),
    };
    DataFile {
        vaults: vec![demo, other],
    }
}
