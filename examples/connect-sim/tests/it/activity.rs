//! The activity log: APIRequest entries, limit/offset and Content-Range.

use axum::http::StatusCode;
use connect_sim::demo::*;

use crate::{NARROW, app, get, items, send};

#[tokio::test]
async fn records_reads_writes_and_denials_newest_first() {
    let app = app();
    get(&app, &format!("/v1/vaults/{DEMO_VAULT_ID}")).await;
    get(&app, &format!("{}/{DEMO_DB_ITEM_ID}", items())).await;
    send(
        &app,
        "GET",
        &format!("/v1/vaults/{DEMO_VAULT_ID}"),
        Some(NARROW),
        None,
    )
    .await;
    send(
        &app,
        "DELETE",
        &format!("{}/{DEMO_API_ITEM_ID}", items()),
        Some(crate::TOKEN),
        None,
    )
    .await;

    let answer = get(&app, "/v1/activity").await;
    assert_eq!(answer.headers["content-range"], "1-4/4");
    let log = answer.json();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 4);
    let (delete, denied, read, vault) = (&log[0], &log[1], &log[2], &log[3]);
    assert_eq!(
        (delete["action"].as_str(), delete["result"].as_str()),
        (Some("DELETE"), Some("SUCCESS"))
    );
    assert_eq!(delete["resource"]["item"]["id"], DEMO_API_ITEM_ID);
    assert_eq!(denied["result"], "DENY");
    assert_eq!(read["resource"]["type"], "ITEM");
    assert_eq!(read["resource"]["itemVersion"], 1);
    assert_eq!(vault["resource"]["type"], "VAULT");
    assert_eq!(vault["resource"]["vault"]["id"], DEMO_VAULT_ID);
    for entry in log {
        let id = entry["requestId"].as_str().unwrap();
        assert_eq!(id.len(), 36, "uuid: {id}");
        assert!(entry["timestamp"].is_string());
        for key in ["id", "account", "jti", "userAgent", "requestIp"] {
            assert!(entry["actor"][key].is_string(), "actor.{key}");
        }
    }
}

#[tokio::test]
async fn pages_with_limit_offset_and_content_range() {
    let app = app();
    for _ in 0..5 {
        get(&app, &format!("/v1/vaults/{DEMO_VAULT_ID}")).await;
    }
    for (query, range, len) in [
        ("?limit=2", "1-2/5", 2),
        ("?limit=2&offset=2", "3-4/5", 2),
        ("?limit=2&offset=4", "5-5/5", 1),
        ("?offset=5", "*/5", 0),
        ("", "1-5/5", 5),
    ] {
        let answer = get(&app, &format!("/v1/activity{query}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers["content-range"], range, "{query}");
        assert_eq!(answer.json().as_array().unwrap().len(), len, "{query}");
    }
    for query in ["?limit=x", "?offset=-1", "?limit=1.5"] {
        get(&app, &format!("/v1/activity{query}"))
            .await
            .error(StatusCode::BAD_REQUEST);
    }
}
