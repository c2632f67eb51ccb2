//! Auth, error shapes, the version header, trailing slashes, unknown routes and methods.

use axum::http::StatusCode;
use connect_sim::CONNECT_VERSION;
use connect_sim::demo::*;
use serde_json::json;

use crate::{NARROW, TOKEN, app, get, send};

#[tokio::test]
async fn v1_needs_a_known_bearer_token() {
    let app = app();
    for (token, header) in [
        (None, None),
        (Some("wrong"), None),
        (Some(""), None),
        (Some("sim-token-and-more"), None),
        (Some("sim-toke"), None),
        (None, Some("Basic c2ltLXRva2Vu")),
        (None, Some("sim-token")),
    ] {
        let mut answer = send(&app, "GET", "/v1/vaults", token, None).await;
        if let Some(raw) = header {
            let request = axum::http::Request::builder()
                .uri("/v1/vaults")
                .header("authorization", raw)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = tower::ServiceExt::oneshot(app.clone(), request)
                .await
                .unwrap();
            answer = crate::Answer {
                status: response.status(),
                headers: response.headers().clone(),
                body: axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap()
                    .to_vec(),
            };
        }
        let message = answer.error(StatusCode::UNAUTHORIZED);
        assert!(!message.contains(TOKEN), "errors never echo tokens");
    }
    // Every /v1 route is protected, including activity and file content.
    for uri in [
        "/v1/activity".to_owned(),
        format!(
            "/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_NOTE_ITEM_ID}/files/{DEMO_FILE_ID}/content"
        ),
        format!("/v1/vaults/{DEMO_VAULT_ID}/items/"),
    ] {
        send(&app, "GET", &uri, None, None)
            .await
            .error(StatusCode::UNAUTHORIZED);
    }
    let delete = format!("/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_DB_ITEM_ID}");
    send(&app, "DELETE", &delete, Some("wrong"), None)
        .await
        .error(StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&app, &delete).await.status,
        StatusCode::OK,
        "nothing was deleted"
    );
    // The scheme is case-insensitive, as HTTP says.
    let request = axum::http::Request::builder()
        .uri("/v1/vaults")
        .header("authorization", format!("bearer {TOKEN}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_restricted_token_sees_only_its_vaults() {
    let app = app();
    let list = send(&app, "GET", "/v1/vaults", Some(NARROW), None)
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], OTHER_VAULT_ID);
    for (method, uri) in [
        ("GET", format!("/v1/vaults/{DEMO_VAULT_ID}")),
        ("GET", format!("/v1/vaults/{DEMO_VAULT_ID}/items")),
        (
            "GET",
            format!("/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_DB_ITEM_ID}"),
        ),
        (
            "DELETE",
            format!("/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_DB_ITEM_ID}"),
        ),
        (
            "GET",
            format!("/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_NOTE_ITEM_ID}/files"),
        ),
    ] {
        let message = send(&app, method, &uri, Some(NARROW), None)
            .await
            .error(StatusCode::FORBIDDEN);
        assert_eq!(
            message,
            "Authorization: token does not have access to vault"
        );
    }
    // 403 also before 404: an unknown vault outside the scope is not revealed as unknown.
    send(
        &app,
        "GET",
        "/v1/vaults/zzzzzzzzzzzzzzzzzzzzzzzzzz",
        Some(NARROW),
        None,
    )
    .await
    .error(StatusCode::FORBIDDEN);
    let other = format!("/v1/vaults/{OTHER_VAULT_ID}/items/{OTHER_ITEM_ID}");
    let item = send(&app, "GET", &other, Some(NARROW), None).await.json();
    assert_eq!(item["title"], "billing-db");
    assert_eq!(
        get(
            &app,
            &format!("/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_DB_ITEM_ID}")
        )
        .await
        .status,
        StatusCode::OK,
        "the restricted token's refusals did not touch anything"
    );
}

/// Method, URI, token, body, expected status.
type Case = (
    &'static str,
    String,
    Option<&'static str>,
    Option<serde_json::Value>,
    StatusCode,
);

#[tokio::test]
async fn errors_are_connect_json_and_every_answer_has_the_version_header() {
    let app = app();
    let item = format!("/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_DB_ITEM_ID}");
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/v1/vaults".into(),
            None,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            format!("/v1/vaults/{DEMO_VAULT_ID}"),
            Some(NARROW),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            "GET",
            "/v1/vaults/zzzzzzzzzzzzzzzzzzzzzzzzzz".into(),
            Some(TOKEN),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v1/vaults/not-an-id".into(),
            Some(TOKEN),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            format!("/v1/vaults/{DEMO_VAULT_ID}/items/zzzzzzzzzzzzzzzzzzzzzzzzzz"),
            Some(TOKEN),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            format!("{item}/files/zzzzzzzzzzzzzzzzzzzzzzzzzz"),
            Some(TOKEN),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v1/nothing".into(),
            Some(TOKEN),
            None,
            StatusCode::NOT_FOUND,
        ),
        ("GET", "/nothing".into(), None, None, StatusCode::NOT_FOUND),
        (
            "GET",
            "/v1/vaults//items".into(),
            Some(TOKEN),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v1/vaults?filter=title%20eq%20'x'".into(),
            Some(TOKEN),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/vaults".into(),
            Some(TOKEN),
            Some(json!({})),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "DELETE",
            format!("/v1/vaults/{DEMO_VAULT_ID}"),
            Some(TOKEN),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST",
            "/heartbeat".into(),
            None,
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "PUT",
            item.clone(),
            Some(TOKEN),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "PATCH",
            item.clone(),
            Some(TOKEN),
            Some(json!({"op": "replace"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/v1/activity?limit=-1".into(),
            Some(TOKEN),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/v1/vaults/%FF%FE".into(),
            Some(TOKEN),
            None,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, uri, token, body, want) in cases {
        let answer = send(&app, method, &uri, token, body).await;
        assert_eq!(answer.status, want, "{method} {uri}");
        assert_eq!(
            answer.headers["1password-connect-version"], CONNECT_VERSION,
            "{method} {uri}"
        );
        answer.error(want);
    }
    for uri in ["/heartbeat", "/health", "/metrics", "/v1/vaults"] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert_eq!(
            answer.headers["1password-connect-version"], CONNECT_VERSION,
            "{uri}"
        );
    }
    let delete = send(&app, "DELETE", &item, Some(TOKEN), None).await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT);
    assert_eq!(delete.headers["1password-connect-version"], CONNECT_VERSION);
}

#[tokio::test]
async fn one_trailing_slash_is_answered_directly() {
    let app = app();
    let v = DEMO_VAULT_ID;
    let pairs = [
        "/v1/vaults".to_owned(),
        format!("/v1/vaults/{v}"),
        format!("/v1/vaults/{v}/items"),
        format!("/v1/vaults/{v}/items/{DEMO_DB_ITEM_ID}"),
        format!("/v1/vaults/{v}/items/{DEMO_NOTE_ITEM_ID}/files"),
        format!("/v1/vaults/{v}/items/{DEMO_NOTE_ITEM_ID}/files/{DEMO_FILE_ID}"),
        format!("/v1/vaults/{v}/items/{DEMO_NOTE_ITEM_ID}/files/{DEMO_FILE_ID}/content"),
        "/heartbeat".to_owned(),
        "/health".to_owned(),
    ];
    for path in pairs {
        let plain = get(&app, &path).await;
        let slashed = get(&app, &format!("{path}/")).await;
        assert_eq!(plain.status, StatusCode::OK, "{path}");
        assert_eq!(slashed.status, StatusCode::OK, "{path}/ is not redirected");
        assert!(slashed.headers.get("location").is_none());
        if path != "/health" {
            assert_eq!(plain.body, slashed.body, "{path}");
        }
    }
    // The JS SDK creates with POST .../items/.
    let created = send(
        &app,
        "POST",
        &format!("/v1/vaults/{v}/items/"),
        Some(TOKEN),
        Some(json!({"title": "slash", "category": "LOGIN"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK);
    // Two slashes are not one.
    get(&app, "/v1/vaults//").await.error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn heartbeat_health_and_metrics_need_no_token() {
    let app = app();
    let beat = send(&app, "GET", "/heartbeat", None, None).await;
    assert_eq!(
        (beat.status, beat.body.as_slice()),
        (StatusCode::OK, &b"."[..])
    );
    assert!(
        beat.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let health = send(&app, "GET", "/health", None, None).await.json();
    assert_eq!(health["name"], "1Password Connect API");
    assert_eq!(health["version"], CONNECT_VERSION);
    assert!(
        health["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "ACTIVE")
    );
    send(&app, "GET", "/v1/vaults", Some(TOKEN), None).await;
    send(&app, "GET", "/v1/vaults", None, None).await;
    let metrics = send(&app, "GET", "/metrics", None, None).await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("# TYPE connect_sim_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("connect_sim_http_requests_total{method=\"GET\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("connect_sim_http_requests_total{method=\"GET\",status=\"401\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "connect_sim_vault_items{{vault=\"{DEMO_VAULT_ID}\"}} 4"
        )),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
}

#[tokio::test]
async fn vaults_have_the_connect_shape() {
    let app = app();
    let list = get(&app, "/v1/vaults").await.json();
    let vaults = list.as_array().unwrap();
    assert_eq!(vaults.len(), 2);
    let demo = vaults.iter().find(|v| v["id"] == DEMO_VAULT_ID).unwrap();
    assert_eq!(demo["name"], DEMO_VAULT_NAME);
    assert_eq!(demo["items"], 4);
    assert_eq!(demo["type"], "USER_CREATED");
    for key in [
        "description",
        "attributeVersion",
        "contentVersion",
        "createdAt",
        "updatedAt",
    ] {
        assert!(demo.get(key).is_some(), "{key}");
    }
    let one = get(&app, &format!("/v1/vaults/{DEMO_VAULT_ID}"))
        .await
        .json();
    assert_eq!(&one, demo);
}

#[tokio::test]
async fn item_summaries_carry_no_secrets_and_full_items_do() {
    let app = app();
    let list = get(&app, &crate::items()).await.json();
    for summary in list.as_array().unwrap() {
        for key in ["fields", "sections", "files"] {
            assert!(summary.get(key).is_none(), "{key} in {summary}");
        }
        assert_eq!(summary["vault"]["id"], DEMO_VAULT_ID);
        assert!(summary["version"].is_u64());
    }
    let item = get(&app, &format!("{}/{DEMO_DB_ITEM_ID}", crate::items()))
        .await
        .json();
    assert_eq!(item["category"], "DATABASE");
    let password = item["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["purpose"] == "PASSWORD")
        .unwrap();
    assert!(
        password["value"]
            .as_str()
            .unwrap()
            .starts_with("demo-db-password")
    );
}
