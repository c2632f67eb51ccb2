//! `--data` files: loaded and served, or refused with the field named.

use axum::http::StatusCode;
use connect_sim::error::DataError;
use connect_sim::store::Store;
use serde_json::{Value, json};

use crate::{app_with, get};

const V: &str = "vvvvvvvvvvvvvvvvvvvvvvvvvv";
const I: &str = "iiiiiiiiiiiiiiiiiiiiiiiiii";
const F: &str = "ffffffffffffffffffffffffff";

fn load(data: &Value) -> Result<Store, DataError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.json");
    std::fs::write(&path, data.to_string()).unwrap();
    Store::from_file(&path)
}

fn valid() -> Value {
    json!({"vaults": [{
        "id": V, "name": "Team", "type": "EVERYONE",
        "items": [{"id": I, "title": "svc", "category": "SERVER",
                   "fields": [{"id": "password", "type": "CONCEALED", "purpose": "PASSWORD", "value": "pw"}],
                   "files": [{"id": F, "name": "key.pem"}]}],
        "files": {F: "aGVsbG8="}
    }]})
}

#[tokio::test]
async fn a_valid_file_is_served_with_server_fields_filled() {
    let app = app_with(load(&valid()).unwrap());
    let vault = get(&app, &format!("/v1/vaults/{V}")).await.json();
    assert_eq!(
        (vault["name"].as_str(), vault["items"].as_u64()),
        (Some("Team"), Some(1))
    );
    assert_eq!(vault["type"], "EVERYONE");
    let item = get(&app, &format!("/v1/vaults/{V}/items/{I}")).await.json();
    assert_eq!(item["vault"]["id"], V);
    assert_eq!(item["version"], 1);
    assert_eq!(item["files"][0]["size"], 5);
    assert_eq!(
        item["files"][0]["content_path"],
        format!("/v1/vaults/{V}/items/{I}/files/{F}/content")
    );
    let content = get(&app, &format!("/v1/vaults/{V}/items/{I}/files/{F}/content")).await;
    assert_eq!(
        (content.status, content.body.as_slice()),
        (StatusCode::OK, &b"hello"[..])
    );
}

#[test]
fn invalid_files_are_refused_naming_the_field() {
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut with = |pointer: &'static str, edit: &dyn Fn(&mut Value)| {
        let mut data = valid();
        edit(&mut data);
        cases.push((data, pointer));
    };
    with("/vaults/0/id", &|d| d["vaults"][0]["id"] = json!("short"));
    with("/vaults/0/type", &|d| {
        d["vaults"][0]["type"] = json!("WEIRD")
    });
    with("/vaults/0/name", &|d| d["vaults"][0]["name"] = json!(7));
    with("/vaults/0/colour", &|d| {
        d["vaults"][0]["colour"] = json!("red")
    });
    with("/extra", &|d| d["extra"] = json!(1));
    with("/vaults/0/createdAt", &|d| {
        d["vaults"][0]["createdAt"] = json!("last week")
    });
    with("/vaults/0/items/0/id", &|d| {
        d["vaults"][0]["items"][0]["id"] = json!("X")
    });
    with("/vaults/0/items/0/category", &|d| {
        d["vaults"][0]["items"][0]["category"] = json!("NOPE")
    });
    with("/vaults/0/items/0/title", &|d| {
        d["vaults"][0]["items"][0]
            .as_object_mut()
            .unwrap()
            .remove("title");
    });
    with("/vaults/0/items/0/fields/0/purpose", &|d| {
        d["vaults"][0]["items"][0]["fields"][0]["purpose"] = json!("SECRET")
    });
    with("/vaults/0/items/0/fields/0/type", &|d| {
        d["vaults"][0]["items"][0]["fields"][0]["type"] = json!("MAGIC")
    });
    with("/vaults/0/items/0/feilds", &|d| {
        d["vaults"][0]["items"][0]["feilds"] = json!([])
    });
    with("/vaults/0/items/0/vault/id", &|d| {
        d["vaults"][0]["items"][0]["vault"] = json!({"id": "wwwwwwwwwwwwwwwwwwwwwwwwww"})
    });
    with("/vaults/0/items/0/files/0/id", &|d| {
        d["vaults"][0]["files"] = json!({})
    });
    with("/vaults/0/files/ffffffffffffffffffffffffff", &|d| {
        d["vaults"][0]["files"][F] = json!("not base64!")
    });
    with("/vaults/0/items/1/id", &|d| {
        let copy = d["vaults"][0]["items"][0].clone();
        d["vaults"][0]["items"].as_array_mut().unwrap().push(copy);
    });
    with("/vaults/1/id", &|d| {
        let copy = d["vaults"][0].clone();
        d["vaults"].as_array_mut().unwrap().push(copy);
    });
    for (data, pointer) in cases {
        let error = load(&data)
            .err()
            .unwrap_or_else(|| panic!("{pointer}: accepted"));
        assert_eq!(error.pointer(), Some(pointer), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("data.json") && text.contains(pointer),
            "{text}"
        );
    }
    let error = Store::from_file(std::path::Path::new("/nonexistent/data.json"))
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("/nonexistent/data.json"),
        "{error}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\"vaults\": [").unwrap();
    assert!(Store::from_file(&path).is_err());
}
