//! connect-sim against the Connect API's documented behaviour: auth and error shapes, the
//! version header, trailing slashes, filters, writes (create, PUT, PATCH, DELETE), files and
//! activity, and data-file validation.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use connect_sim::demo::*;
use connect_sim::store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "sim-token";

fn app() -> Router {
    connect_sim::app_with(
        TOKEN.into(),
        Some(("restricted".into(), vec![OTHER_VAULT_ID.into()])),
        Store::demo(),
    )
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

async fn json_of(
    app: &Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, bytes) = call(app, method, path, Some(TOKEN), body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn errors_have_the_connect_shape_and_every_response_the_version_header() {
    let app = app();
    let cases = [
        (
            "GET",
            "/v1/vaults".to_owned(),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            "/v1/vaults".to_owned(),
            Some("wrong"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            format!("/v1/vaults/{DEMO_VAULT_ID}"),
            Some("restricted"),
            StatusCode::FORBIDDEN,
        ),
        (
            "GET",
            "/v1/vaults/zzzzzzzzzzzzzzzzzzzzzzzzzz".to_owned(),
            Some(TOKEN),
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            format!("/v1/vaults/{DEMO_VAULT_ID}/items/zzzzzzzzzzzzzzzzzzzzzzzzzz"),
            Some(TOKEN),
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v1/nothing".to_owned(),
            Some(TOKEN),
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v1/vaults?filter=title%20eq%20'x'".to_owned(),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, token, want) in cases {
        let (status, headers, body) = call(&app, method, &path, token, None).await;
        assert_eq!(status, want, "{path}");
        assert_eq!(
            headers["1password-connect-version"],
            connect_sim::CONNECT_VERSION
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["status"], want.as_u16());
        assert!(body["message"].is_string());
    }
    let (status, headers, body) = call(&app, "GET", "/heartbeat", None, None).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"."[..]));
    assert!(headers.contains_key("1password-connect-version"));
}

#[tokio::test]
async fn filters_accept_plus_and_percent_20_and_both_vault_attributes() {
    let app = app();
    for path in [
        "/v1/vaults?filter=name%20eq%20%22vault_agent_secrets_prod%22",
        "/v1/vaults/?filter=title+eq+%22vault_agent_secrets_prod%22",
    ] {
        let (status, list) = json_of(&app, "GET", path, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list.as_array().unwrap().len(), 1, "{path}");
        assert_eq!(list[0]["id"], DEMO_VAULT_ID);
    }
    let items = format!("/v1/vaults/{DEMO_VAULT_ID}/items/");
    let (_, list) = json_of(
        &app,
        "GET",
        &format!("{items}?filter=title%20co%20%22-%22"),
        None,
    )
    .await;
    assert_eq!(
        list.as_array().unwrap().len(),
        3,
        "prod-db, stripe-api, admin-login"
    );
    let (_, list) = json_of(
        &app,
        "GET",
        &format!("{items}?filter=title%20eq%20%22prod-db%22%20or%20title%20eq%20%22runbook%22"),
        None,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(
        list[0].get("fields").is_none(),
        "summaries carry no secrets"
    );
    let (_, list) = json_of(
        &app,
        "GET",
        &format!("{items}?filter=tag%20eq%20%22demo%22"),
        None,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn create_update_patch_delete() {
    let app = app();
    let items = format!("/v1/vaults/{DEMO_VAULT_ID}/items/");
    let body = json!({"title": "t", "vault": {"id": DEMO_VAULT_ID}, "category": "LOGIN",
        "fields": [{"type": "CONCEALED", "purpose": "PASSWORD", "generate": true, "recipe": {"length": 20, "characterSets": ["DIGITS"]}}]});
    let (status, item) = json_of(&app, "POST", &items, Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    let id = item["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 26);
    let password = item["fields"][0]["value"].as_str().unwrap();
    assert!(password.len() == 20 && password.bytes().all(|b| b.is_ascii_digit()));
    assert!(item["fields"][0]["id"].is_string());

    let (status, _) = json_of(
        &app,
        "POST",
        &items,
        Some(json!({"title": "x", "category": "CUSTOM"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let path = format!("{items}{id}");
    let mut put = item.clone();
    put["title"] = json!("renamed");
    put["version"] = json!(99);
    let (status, updated) = json_of(&app, "PUT", &path, Some(put)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (updated["title"].as_str(), updated["version"].as_u64()),
        (Some("renamed"), Some(2))
    );

    let field = updated["fields"][0]["id"].as_str().unwrap().to_owned();
    let patch = json!([{"op": "replace", "path": "/title", "value": "patched"},
        {"op": "replace", "path": format!("/fields/{field}/value"), "value": "new"},
        {"op": "add", "path": "/tags/0", "value": "x"}]);
    let (status, patched) = json_of(&app, "PATCH", &path, Some(patch)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["title"], "patched");
    assert_eq!(patched["fields"][0]["value"], "new");
    assert_eq!(patched["tags"], json!(["x"]));
    assert_eq!(patched["version"], 3);
    let (status, same) = json_of(&app, "PATCH", &path, Some(json!([]))).await;
    assert_eq!(
        (status, same["version"].as_u64()),
        (StatusCode::OK, Some(3))
    );
    let (status, e) = json_of(
        &app,
        "PATCH",
        &path,
        Some(json!([{"op": "replace", "path": "/fields/nope/value", "value": "v"}])),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("doesn't have a nope field")
    );

    let (status, _, body) = call(&app, "DELETE", &path, Some(TOKEN), None).await;
    assert_eq!((status, body.len()), (StatusCode::NO_CONTENT, 0));
    let (status, _) = json_of(&app, "GET", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, vault) = json_of(&app, "GET", &format!("/v1/vaults/{DEMO_VAULT_ID}"), None).await;
    assert_eq!(vault["items"], 4);
}

#[tokio::test]
async fn files_inline_and_content() {
    let app = app();
    let base = format!("/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_NOTE_ITEM_ID}/files");
    let (_, files) = json_of(&app, "GET", &format!("{base}/"), None).await;
    assert!(
        files[0]["content_path"]
            .as_str()
            .unwrap()
            .starts_with("/v1/vaults/")
    );
    assert!(files[0].get("content").is_none());
    let (_, files) = json_of(&app, "GET", &format!("{base}?inline_files=true"), None).await;
    assert_eq!(files[0]["content"], "UnVuIHRoZSBydW5ib29rLgo=");
    let (status, headers, body) = call(
        &app,
        "GET",
        &format!("{base}/{DEMO_FILE_ID}/content"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"runbook.txt\""
    );
    assert_eq!(body, b"Run the runbook.\n");
    let (status, headers, _) = call(&app, "GET", "/v1/activity?limit=1", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("content-range"));
}

#[test]
fn data_files_are_validated_with_the_field_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            json!({"vaults": [{"id": "short", "name": "v"}]}),
            "vaults[0].id",
        ),
        (
            json!({"vaults": [{"id": DEMO_VAULT_ID, "name": "v", "items": [{"id": DEMO_DB_ITEM_ID, "title": "t", "category": "NOPE"}]}]}),
            "vaults[0].items[0].category",
        ),
        (
            json!({"vaults": [{"id": DEMO_VAULT_ID, "name": "v", "type": "WEIRD"}]}),
            "vaults[0].type",
        ),
        (json!({"vaults": [], "extra": 1}), "unknown field"),
    ];
    for (data, needle) in cases {
        let path = tmp.path().join("data.json");
        std::fs::write(&path, data.to_string()).unwrap();
        let error = Store::from_file(&path)
            .err()
            .expect("invalid data must be refused");
        assert!(error.to_string().contains(needle), "{error}");
    }
}
