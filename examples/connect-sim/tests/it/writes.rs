//! Create, PUT, PATCH and DELETE: ids, generated values, read-only fields, versions, counts.

use axum::http::StatusCode;
use connect_sim::demo::*;
use connect_sim::store::is_id;
use serde_json::{Value, json};

use crate::{TOKEN, app, get, items, ok, send};

async fn vault(app: &axum::Router) -> Value {
    get(app, &format!("/v1/vaults/{DEMO_VAULT_ID}"))
        .await
        .json()
}

#[tokio::test]
async fn create_generates_ids_and_values_and_counts_the_item() {
    let app = app();
    let before = vault(&app).await;
    // The Python SDK's body: no field ids, `trashed`, no sections.
    let body = json!({"title": "new-login", "vault": {"id": DEMO_VAULT_ID}, "category": "LOGIN",
        "favorite": false, "trashed": false,
        "fields": [{"type": "STRING", "purpose": "USERNAME", "value": "u", "generate": false},
                   {"type": "CONCEALED", "purpose": "PASSWORD", "generate": true,
                    "recipe": {"length": 20, "characterSets": ["DIGITS"]}},
                   {"type": "CONCEALED", "label": "default", "generate": true}]});
    let item = ok(&app, "POST", &items(), Some(body)).await;
    let id = item["id"].as_str().unwrap();
    assert!(is_id(id), "{id}");
    assert_eq!(item["version"], 1);
    assert_eq!(item["vault"]["id"], DEMO_VAULT_ID);
    assert!(item.get("trashed").is_none());
    assert_eq!(item["files"], json!([]));
    for key in ["createdAt", "updatedAt", "lastEditedBy"] {
        assert!(item[key].is_string(), "{key}");
    }
    let fields = item["fields"].as_array().unwrap();
    assert!(fields.iter().all(|f| f["id"].is_string()));
    assert_eq!(fields[0]["value"], "u");
    let digits = fields[1]["value"].as_str().unwrap();
    assert!(
        digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()),
        "{digits}"
    );
    assert_eq!(
        fields[2]["value"].as_str().unwrap().chars().count(),
        32,
        "default length"
    );
    assert_ne!(fields[1]["value"], fields[2]["value"]);
    assert_eq!(fields[1]["generate"], false);
    let stored = get(&app, &format!("{}/{id}", items())).await.json();
    assert_eq!(stored, item, "what was answered was stored");
    let after = vault(&app).await;
    assert_eq!(after["items"], before["items"].as_u64().unwrap() + 1);
    assert!(after["contentVersion"].as_u64() > before["contentVersion"].as_u64());
}

#[tokio::test]
async fn create_refuses_what_connect_refuses() {
    let app = app();
    for (body, needle) in [
        (
            json!({"title": "x", "category": "CUSTOM"}),
            "Invalid item category",
        ),
        (
            json!({"title": "x", "category": "DOCUMENT"}),
            "Invalid item category",
        ),
        (
            json!({"title": "x", "category": "SPACESHIP"}),
            "Invalid item category",
        ),
        (json!({"title": "x"}), "Invalid item category"),
        (
            json!({"title": "x", "category": "LOGIN", "vault": {"id": OTHER_VAULT_ID}}),
            "vault",
        ),
        (
            json!({"title": "x", "category": "LOGIN", "fields": [{"purpose": "SECRET"}]}),
            "purpose",
        ),
        (
            json!({"title": "x", "category": "LOGIN",
                "fields": [{"generate": true, "recipe": {"length": 100}}]}),
            "length",
        ),
        (json!(["not", "an", "item"]), "JSON object"),
    ] {
        let message = send(&app, "POST", &items(), Some(TOKEN), Some(body.clone()))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert_eq!(vault(&app).await["items"], 4, "nothing was created");
    send(
        &app,
        "POST",
        "/v1/vaults/zzzzzzzzzzzzzzzzzzzzzzzzzz/items",
        Some(TOKEN),
        Some(json!({"title": "x", "category": "LOGIN"})),
    )
    .await
    .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn put_replaces_but_keeps_read_only_fields() {
    let app = app();
    let path = format!("{}/{DEMO_DB_ITEM_ID}", items());
    let stored = get(&app, &path).await.json();
    let mut body = stored.clone();
    body["title"] = json!("prod-db-renamed");
    body["id"] = json!("zzzzzzzzzzzzzzzzzzzzzzzzzz");
    body["version"] = json!(99);
    body["createdAt"] = json!("1999-01-01T00:00:00Z");
    body["lastEditedBy"] = json!("SOMEONEELSE");
    body["files"] = json!([{"id": "zzzzzzzzzzzzzzzzzzzzzzzzzz", "name": "evil"}]);
    body["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"label": "added", "value": "v"}));
    let updated = ok(&app, "PUT", &path, Some(body)).await;
    assert_eq!(updated["title"], "prod-db-renamed");
    assert_eq!(updated["id"], DEMO_DB_ITEM_ID);
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["createdAt"], stored["createdAt"]);
    assert_eq!(updated["lastEditedBy"], stored["lastEditedBy"]);
    assert_eq!(updated["files"], stored["files"]);
    assert_ne!(updated["updatedAt"], stored["updatedAt"]);
    let added = updated["fields"].as_array().unwrap().last().unwrap();
    assert!(added["id"].is_string() && added["value"] == "v");
    assert_eq!(get(&app, &path).await.json(), updated);
    // A PUT that breaks the model changes nothing.
    let mut bad = updated.clone();
    bad["category"] = json!("SPACESHIP");
    send(&app, "PUT", &path, Some(TOKEN), Some(bad))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, &path).await.json(), updated);
    send(
        &app,
        "PUT",
        &format!("{}/zzzzzzzzzzzzzzzzzzzzzzzzzz", items()),
        Some(TOKEN),
        Some(updated),
    )
    .await
    .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn patch_applies_the_documented_paths() {
    let app = app();
    let path = format!("{}/{DEMO_DB_ITEM_ID}", items());
    let patched = ok(&app, "PATCH", &path, Some(json!([
        {"op": "replace", "path": "/title", "value": "patched"},
        {"op": "replace", "path": "/favorite", "value": true},
        {"op": "add", "path": "/tags/1", "value": "x"},
        {"op": "replace", "path": "/fields/password/value", "value": "new-password"},
        {"op": "replace", "path": "/fields/username/label", "value": "user"},
        {"op": "add", "path": "/fields", "value": {"label": "extra", "value": "e", "type": "STRING"}},
        {"op": "remove", "path": "/fields/database"},
    ]))).await;
    assert_eq!(patched["title"], "patched");
    assert_eq!(patched["favorite"], true);
    assert_eq!(patched["tags"], json!(["demo", "x", "database"]));
    assert_eq!(patched["version"], 2, "one version per PATCH, not per op");
    let fields = patched["fields"].as_array().unwrap();
    let by = |id: &str| fields.iter().find(|f| f["id"] == id).cloned();
    assert_eq!(by("password").unwrap()["value"], "new-password");
    assert_eq!(by("username").unwrap()["label"], "user");
    assert!(by("database").is_none());
    let extra = fields.iter().find(|f| f["label"] == "extra").unwrap();
    assert!(extra["id"].is_string(), "added fields get ids");

    // An empty patch answers 200 with the item unchanged.
    let same = ok(&app, "PATCH", &path, Some(json!([]))).await;
    assert_eq!(same, patched);

    // `/` replaces the whole item, like PUT.
    let mut whole = patched.clone();
    whole["title"] = json!("whole");
    let replaced = ok(
        &app,
        "PATCH",
        &path,
        Some(json!([{"op": "replace", "path": "/", "value": whole}])),
    )
    .await;
    assert_eq!(
        (replaced["title"].as_str(), replaced["version"].as_u64()),
        (Some("whole"), Some(3))
    );

    // A bad op anywhere in the list changes nothing.
    let message = send(
        &app,
        "PATCH",
        &path,
        Some(TOKEN),
        Some(json!([
            {"op": "replace", "path": "/title", "value": "half"},
            {"op": "replace", "path": "/fields/nope/value", "value": "v"},
        ])),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert_eq!(message, "The item doesn't have a nope field.");
    assert_eq!(get(&app, &path).await.json(), replaced);
    for body in [
        json!({"op": "replace", "path": "/title", "value": "x"}),
        json!([{"op": "copy", "from": "/title", "path": "/tags/0"}]),
        json!([{"op": "replace", "path": "/category", "value": "LOGIN"}]),
    ] {
        send(&app, "PATCH", &path, Some(TOKEN), Some(body.clone()))
            .await
            .error(StatusCode::BAD_REQUEST);
    }
    assert_eq!(get(&app, &path).await.json(), replaced);
}

#[tokio::test]
async fn delete_is_204_permanent_and_counted() {
    let app = app();
    let path = format!("{}/{DEMO_NOTE_ITEM_ID}", items());
    let answer = send(&app, "DELETE", &path, Some(TOKEN), None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert!(answer.body.is_empty());
    get(&app, &path).await.error(StatusCode::NOT_FOUND);
    get(&app, &format!("{path}/files/{DEMO_FILE_ID}/content"))
        .await
        .error(StatusCode::NOT_FOUND);
    send(&app, "DELETE", &path, Some(TOKEN), None)
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(vault(&app).await["items"], 3);
    let list = get(&app, &items()).await.json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != DEMO_NOTE_ITEM_ID)
    );
}
