//! Files: lists, inline content, the inline limit (413) and the content endpoint.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use connect_sim::demo::*;
use connect_sim::store::Store;

use crate::{app, get, items};

fn files() -> String {
    format!("{}/{DEMO_NOTE_ITEM_ID}/files", items())
}

#[tokio::test]
async fn lists_and_gets_files_with_and_without_inline_content() {
    let app = app();
    let list = get(&app, &files()).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let file = &list[0];
    assert_eq!(file["id"], DEMO_FILE_ID);
    assert_eq!(file["name"], DEMO_FILE_NAME);
    assert_eq!(file["size"], DEMO_FILE_CONTENT.len());
    let content_path = file["content_path"].as_str().unwrap();
    assert_eq!(
        content_path,
        format!(
            "/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_NOTE_ITEM_ID}/files/{DEMO_FILE_ID}/content"
        )
    );
    assert!(file.get("content").is_none(), "content only when asked");
    let inline = get(&app, &format!("{}/?inline_files=true", files()))
        .await
        .json();
    assert_eq!(inline[0]["content"], STANDARD.encode(DEMO_FILE_CONTENT));
    let one = get(&app, &format!("{}/{DEMO_FILE_ID}", files()))
        .await
        .json();
    assert_eq!(&one, file);
    let one = get(
        &app,
        &format!("{}/{DEMO_FILE_ID}?inline_files=true", files()),
    )
    .await
    .json();
    assert_eq!(one["content"], STANDARD.encode(DEMO_FILE_CONTENT));
    // The full item lists its files too, without content.
    let item = get(&app, &format!("{}/{DEMO_NOTE_ITEM_ID}", items()))
        .await
        .json();
    assert_eq!(&item["files"][0], file);
    // Items without files have an empty list.
    let none = get(&app, &format!("{}/{DEMO_DB_ITEM_ID}/files", items()))
        .await
        .json();
    assert_eq!(none, serde_json::json!([]));
}

#[tokio::test]
async fn content_is_octet_stream_with_an_attachment_name() {
    let app = app();
    let answer = get(&app, &format!("{}/{DEMO_FILE_ID}/content", files())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/octet-stream");
    assert_eq!(
        answer.headers["content-disposition"],
        format!("attachment; filename=\"{DEMO_FILE_NAME}\"")
    );
    assert_eq!(answer.body, DEMO_FILE_CONTENT);
    get(
        &app,
        &format!("{}/zzzzzzzzzzzzzzzzzzzzzzzzzz/content", files()),
    )
    .await
    .error(StatusCode::NOT_FOUND);
    // A file id that exists, but under another item, is not found here.
    get(
        &app,
        &format!("{}/{DEMO_DB_ITEM_ID}/files/{DEMO_FILE_ID}/content", items()),
    )
    .await
    .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn inline_content_above_the_limit_is_413() {
    let app =
        connect_sim::app(crate::sim(Store::demo()).max_inline_bytes(DEMO_FILE_CONTENT.len() - 1));
    for uri in [
        format!("{}?inline_files=true", files()),
        format!("{}/{DEMO_FILE_ID}?inline_files=true", files()),
    ] {
        let message = get(&app, &uri).await.error(StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            message.starts_with("File is too large to inline"),
            "{message}"
        );
    }
    // Without inlining, and from the content endpoint, the file is still served.
    assert_eq!(get(&app, &files()).await.status, StatusCode::OK);
    let content = get(&app, &format!("{}/{DEMO_FILE_ID}/content", files())).await;
    assert_eq!(content.body, DEMO_FILE_CONTENT);
    // Exactly at the limit is allowed.
    let app = connect_sim::app(crate::sim(Store::demo()).max_inline_bytes(DEMO_FILE_CONTENT.len()));
    assert_eq!(
        get(&app, &format!("{}?inline_files=true", files()))
            .await
            .status,
        StatusCode::OK
    );
}
