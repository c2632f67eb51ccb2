//! SCIM filters as the SDKs send them (connect-api.md §3).

use axum::http::StatusCode;
use connect_sim::demo::*;
use serde_json::Value;

use crate::{app, get, items};

fn titles(list: &Value) -> Vec<String> {
    let mut titles: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["title"]
                .as_str()
                .or(i["name"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    titles.sort();
    titles
}

#[tokio::test]
async fn vault_filters_take_name_and_title_with_plus_or_percent_20() {
    let app = app();
    for query in [
        "filter=name%20eq%20%22vault_agent_secrets_prod%22", // Python
        "filter=title%20eq%20%22vault_agent_secrets_prod%22", // JS
        "filter=title+eq+%22vault_agent_secrets_prod%22",    // Go
    ] {
        for path in ["/v1/vaults", "/v1/vaults/"] {
            let list = get(&app, &format!("{path}?{query}")).await.json();
            assert_eq!(titles(&list), [DEMO_VAULT_NAME], "{path}?{query}");
            assert_eq!(list[0]["id"], DEMO_VAULT_ID);
        }
    }
    let list = get(&app, "/v1/vaults?filter=name%20co%20%22vault_%22")
        .await
        .json();
    assert_eq!(titles(&list), [DEMO_VAULT_NAME, OTHER_VAULT_NAME]);
    let list = get(&app, "/v1/vaults?filter=name%20eq%20%22vault_%22")
        .await
        .json();
    assert!(list.as_array().unwrap().is_empty(), "eq is exact");
    let list = get(&app, "/v1/vaults?filter=name%20eq%20%22VAULT_OTHER%22")
        .await
        .json();
    assert!(list.as_array().unwrap().is_empty(), "eq is case-sensitive");
    // An empty filter (the JS SDK can send `?filter=`) lists everything.
    let list = get(&app, "/v1/vaults/?filter=").await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn item_filters_take_title_and_tag_with_eq_co_and_or() {
    let app = app();
    let base = items();
    for (query, want) in [
        ("filter=title%20eq%20%22prod-db%22", vec!["prod-db"]),
        ("filter=title+eq+%22prod-db%22", vec!["prod-db"]),
        (
            "filter=title%20co%20%22-%22",
            vec!["admin-login", "prod-db", "stripe-api"],
        ),
        (
            "filter=title%20eq%20%22prod-db%22%20or%20title%20eq%20%22runbook%22",
            vec!["prod-db", "runbook"],
        ),
        ("filter=tag%20eq%20%22database%22", vec!["prod-db"]),
        (
            "filter=tag%20co%20%22data%22+or+title+eq+%22runbook%22",
            vec!["prod-db", "runbook"],
        ),
        (
            "filter=tag%20eq%20%22demo%22",
            vec!["admin-login", "prod-db", "runbook", "stripe-api"],
        ),
        ("filter=title%20eq%20%22nothing%22", vec![]),
        ("filter=title%20eq%20%22prod%22", vec![]),
    ] {
        for path in [base.clone(), format!("{base}/")] {
            let list = get(&app, &format!("{path}?{query}")).await.json();
            assert_eq!(titles(&list), want, "{path}?{query}");
        }
    }
}

#[tokio::test]
async fn bad_filters_are_400_in_the_connect_shape() {
    let app = app();
    let base = items();
    for query in [
        "filter=title%20eq%20'prod-db'",
        "filter=title%20eq%20%22it's%22",
        "filter=title%20sw%20%22p%22",
        "filter=title%20eq%20%22a%22%20and%20tag%20eq%20%22b%22",
        "filter=name%20eq%20%22prod-db%22",
        "filter=title%20eq%20prod-db",
        "filter=title%20eq%20%22prod-db",
        "filter=title",
    ] {
        let message = get(&app, &format!("{base}?{query}"))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.starts_with("Invalid filter"), "{query}: {message}");
    }
    let message = get(&app, "/v1/vaults?filter=tag%20eq%20%22x%22")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(message.contains("unknown attribute"), "{message}");
}
