//! Fault injection: a broken or hostile upstream, and a proxy shut down mid-request. In each the
//! proxy stays up, answers in the Connect error shape citing a receipt, and releases nothing the
//! upstream did not properly send.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// The agent's answer to one read of the DATABASE item, with the upstream answering as `answer`.
async fn read_through(answer: Answer, limits: &str) -> (Stack, String, Recorder, RawResponse) {
    let (stack, token, recorder) = recording_stack(answer, limits).await;
    let response = raw::send(stack.addr(), read_db_item(&token, "").as_bytes()).await;
    (stack, token, recorder, response)
}

/// `status` in the Connect error shape, citing a receipt for a call that released nothing.
fn failed_closed(stack: &Stack, response: &RawResponse, status: u16) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["status"], status, "{body}");
    assert!(body["message"].is_string(), "{body}");
    let id = response
        .header("x-clawproxy-receipt")
        .expect("a receipt id");
    let receipt = stack.receipt(id);
    assert_eq!(receipt.kind.as_str(), "call");
    assert_eq!(receipt.decision.as_ref().unwrap().reason, "upstream failed");
    assert!(receipt.resp.is_none(), "no upstream answer was released");
}

/// The proxy still answers: a denied operation gets its 403 without touching the upstream.
async fn still_serving(stack: &Stack, token: &str, recorder: &Recorder) {
    let before = recorder.count();
    let response = connect(stack, token, "DELETE", &item_path(DEMO_DB_ITEM_ID)).await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(recorder.count(), before);
}

#[tokio::test]
async fn an_upstream_that_hangs_gets_504() {
    let (stack, token, recorder, response) =
        read_through(Answer::Hang, "upstream_timeout_ms = 300").await;
    failed_closed(&stack, &response, 504);
    still_serving(&stack, &token, &recorder).await;
}

#[tokio::test]
async fn an_upstream_that_answers_too_slowly_gets_504() {
    let slow = Answer::Slow(Duration::from_millis(1500), db_item());
    let (stack, _, _, response) = read_through(slow, "upstream_timeout_ms = 300").await;
    failed_closed(&stack, &response, 504);
}

#[tokio::test]
async fn an_upstream_that_resets_gets_502() {
    let (stack, token, recorder, response) = read_through(Answer::Reset, "").await;
    failed_closed(&stack, &response, 502);
    still_serving(&stack, &token, &recorder).await;
}

#[tokio::test]
async fn garbage_and_broken_framing_from_upstream_get_502() {
    for bytes in [
        &b"this is not HTTP\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        // A body cut short: the length promised is never delivered.
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"category\":\"DATABASE\"",
        b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\n{}",
    ] {
        let (stack, token, recorder, response) = read_through(Answer::Raw(bytes.to_vec()), "").await;
        failed_closed(&stack, &response, 502);
        assert!(
            !response.text().contains("DATABASE"),
            "a partial upstream body was released: {}",
            response.text()
        );
        still_serving(&stack, &token, &recorder).await;
    }
}

#[tokio::test]
async fn an_unreadable_item_is_withheld_not_passed_through() {
    // A read whose answer cannot be checked against the category rule is not released.
    for bytes in [
        &b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\nnot json!"[..],
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00",
    ] {
        let (stack, _, _, response) = read_through(Answer::Raw(bytes.to_vec()), "").await;
        assert!(
            matches!(response.status, 403 | 502),
            "{}: {}",
            response.status,
            response.text()
        );
        assert!(response.json()["message"].is_string());
        let id = response.header("x-clawproxy-receipt").expect("a receipt id");
        assert!(!stack.receipt(id).decision.unwrap().allow);
    }
}

#[tokio::test]
async fn an_upstream_answer_over_the_inspection_limit_is_withheld() {
    let mut item = db_item();
    item["notes"] = serde_json::Value::String("x".repeat(4096));
    let (stack, _, _, response) = read_through(Answer::Json(item), "max_body_bytes = 1024").await;
    failed_closed(&stack, &response, 502);
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight_and_refuses_new_connections() {
    let slow = Answer::Slow(Duration::from_millis(600), db_item());
    let (stack, token, recorder) = recording_stack(slow, "drain_timeout_ms = 5000").await;
    let addr = stack.addr();
    // One request in flight, one idle keep-alive connection.
    let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
    busy.write_all(read_db_item(&token, "").as_bytes())
        .await
        .unwrap();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    claw_tests::eventually("the request reaches the upstream", || recorder.count() == 1).await;

    let Stack { proxy, dir, .. } = stack;
    let shutdown = tokio::spawn(proxy.shutdown());
    // The request in flight is answered in full, with a receipt.
    let response = raw::read_response(&mut busy).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["category"], "DATABASE");
    let id = response
        .header("x-clawproxy-receipt")
        .expect("a receipt id")
        .to_owned();
    // The idle connection is closed, and nothing new is accepted.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown finishes once drained")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    // The receipt is in the log, and a final checkpoint covers the whole log.
    let receipts = claw_tests::log_receipts(&dir);
    assert!(receipts.iter().any(|r| r.id == id));
    let log = claw_tests::log_dir(&dir);
    let latest = std::fs::read_to_string(log.join("checkpoint")).unwrap();
    assert!(
        latest.contains(&format!("\n{}\n", receipts.len())),
        "{latest}"
    );
}
