//! One module per class of ../shared/reference/threats.md. Each case goes over a raw socket to
//! a recording upstream and asserts the status, that nothing reached the upstream, and (where
//! the proxy answered) the receipt.
//!
//! Cases are table rows, so a new case is one line. Requests are templates: [`fill`] replaces
//! `{auth}` (the job's `Proxy-Authorization` line), `{host}` (the Connect `Host` line), `{url}`
//! and `{path}` (the DATABASE item the seed contract lets job-1 read), `{vault}`, `{other}` (a
//! vault outside the contract), `{item}` and `{login}` (an item of a disallowed category).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claw_verifier::receipt::Receipt;
use connect_sim::demo::OTHER_VAULT_ID;
use serde_json::{Value, json};

use super::*;

/// The rule of requests the proxy could not parse or bind to one authority.
const MALFORMED: &str = "malformed_request";

/// A stack whose Connect upstream records what reaches it (and answers a DATABASE item).
async fn recorded() -> (Stack, String, Recorder) {
    recording_stack(Answer::Json(db_item()), "").await
}

/// `template` with its placeholders replaced (see the module docs).
fn fill(template: &str, token: &str) -> String {
    template
        .replace(
            "{auth}",
            &format!("Proxy-Authorization: {}\r\n", basic("job-1", token)),
        )
        .replace("{host}", "Host: connect.1password.com\r\n")
        .replace("{url}", "http://connect.1password.com{path}")
        .replace("{path}", &item_path(DEMO_DB_ITEM_ID))
        .replace("{vault}", DEMO_VAULT_ID)
        .replace("{other}", OTHER_VAULT_ID)
        .replace("{item}", DEMO_DB_ITEM_ID)
        .replace("{login}", DEMO_LOGIN_ITEM_ID)
}

/// Sends `head` (a [`fill`] template) on a fresh connection.
async fn send(stack: &Stack, token: &str, head: &str) -> RawResponse {
    raw::send(stack.addr(), fill(head, token).as_bytes()).await
}

/// Sends `head` (a [`fill`] template) and expects `status` with nothing reaching the upstream.
async fn refused(
    stack: &Stack,
    token: &str,
    recorder: &Recorder,
    head: &str,
    status: u16,
) -> RawResponse {
    let response = send(stack, token, head).await;
    assert_eq!(response.status, status, "{head:?}: {}", response.text());
    assert_eq!(
        recorder.count(),
        0,
        "{head:?} reached the upstream: {:?}",
        recorder.heads()
    );
    response
}

/// The denial receipt the response cites.
fn receipted(stack: &Stack, response: &RawResponse) -> Receipt {
    let id = response
        .header("x-clawproxy-receipt")
        .expect("a receipt id");
    let receipt = stack.receipt(id);
    assert!(!receipt.decision.as_ref().unwrap().allow);
    receipt
}

/// [`refused`], and the denial is receipted by `rule`: the receipt the answer cites or, for a
/// request hyper refused before any handler saw it (no receipt header), a new receipt in the
/// log.
async fn denied(
    stack: &Stack,
    token: &str,
    recorder: &Recorder,
    head: &str,
    status: u16,
    rule: &str,
) -> RawResponse {
    let before = stack.receipts().len();
    let response = refused(stack, token, recorder, head, status).await;
    denial_receipted(stack, before, &response, rule, head).await;
    response
}

/// `response` is a denial by `rule`, receipted: the receipt it cites or, when it cites none
/// (hyper refused the request before any handler saw it), a receipt written after the first
/// `before`. A 403 names its rule.
async fn denial_receipted(
    stack: &Stack,
    before: usize,
    response: &RawResponse,
    rule: &str,
    what: &str,
) {
    if response.header("x-clawproxy-receipt").is_some() {
        let receipt = receipted(stack, response);
        assert_eq!(receipt.decision.unwrap().rule, rule, "{what:?}");
        if response.status == 403 && !response.body.is_empty() {
            assert!(
                response.text().contains(rule),
                "{what:?}: {}",
                response.text()
            );
        }
    } else {
        logged(stack, before, rule, what).await;
    }
}

/// Waits for a denial by `rule` among the receipts after the first `before`.
async fn logged(stack: &Stack, before: usize, rule: &str, what: &str) {
    claw_tests::eventually(&format!("a {rule} receipt for {what:?}"), || {
        stack.receipts()[before..].iter().any(|r| {
            r.decision
                .as_ref()
                .is_some_and(|d| !d.allow && d.rule == rule)
        })
    })
    .await;
}

/// `header.claims.signature`, signed with `key` over exactly these header and claims.
fn forge(header: &Value, claims: &Value, key: &ed25519_dalek::SigningKey) -> String {
    use ed25519_dalek::Signer;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
    format!("{input}.{sig}")
}

/// Sends a CONNECT for `authority` and reads the proxy's answer head; returns the status and
/// the stream, positioned at the first tunnelled byte.
async fn tunnel(stack: &Stack, token: &str, authority: &str) -> (u16, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nProxy-Authorization: {}\r\n\r\n",
        basic("job-1", token)
    );
    let mut stream = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // Byte by byte: nothing after the head may be consumed.
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        answer.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, stream)
}

/// Everything the proxy sends until it closes (10 s safety net for a stuck test).
async fn until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut bytes),
    )
    .await;
    assert!(read.is_ok(), "the proxy kept the connection open");
    bytes
}

/// A TLS 1.3 ClientHello naming `sni` (none when `None`) and offering `alpn`.
fn client_hello(sni: Option<&str>, alpn: &[&str]) -> Vec<u8> {
    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }
    let mut extensions = Vec::new();
    let mut extension = |kind: u16, body: &[u8]| {
        extensions.extend_from_slice(&kind.to_be_bytes());
        extensions.extend_from_slice(&with_len16(body));
    };
    if let Some(name) = sni {
        let mut entry = vec![0u8]; // host_name
        entry.extend_from_slice(&with_len16(name.as_bytes()));
        extension(0x0000, &with_len16(&entry));
    }
    extension(0x000a, &with_len16(&[0x00, 0x1d])); // supported_groups: x25519
    extension(0x000d, &with_len16(&[0x04, 0x03, 0x08, 0x04, 0x08, 0x07])); // ECDSA, PSS, Ed25519
    extension(0x002b, &[2, 0x03, 0x04]); // supported_versions: TLS 1.3
    let mut share = vec![0x00, 0x1d];
    let mut key = [0u8; 32];
    key[0] = 9; // the X25519 base point: a valid public key
    share.extend_from_slice(&with_len16(&key));
    extension(0x0033, &with_len16(&share)); // key_share
    if !alpn.is_empty() {
        let mut names = Vec::new();
        for name in alpn {
            names.push(name.len() as u8);
            names.extend_from_slice(name.as_bytes());
        }
        extension(0x0010, &with_len16(&names));
    }
    let mut hello = vec![0x03, 0x03];
    hello.extend_from_slice(&[7u8; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&with_len16(&[0x13, 0x01])); // TLS_AES_128_GCM_SHA256
    hello.extend_from_slice(&[1, 0]); // null compression
    hello.extend_from_slice(&with_len16(&extensions));
    let mut handshake = vec![1u8]; // client_hello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&with_len16(&handshake));
    record
}

/// TLS record types the proxy may answer a ClientHello with.
const TLS_HANDSHAKE: u8 = 0x16;
const TLS_ALERT: u8 = 0x15;

mod framing {
    use super::*;

    /// Requests hyper or the proxy must refuse with 400 and close, forwarding nothing.
    const BROKEN: &[(&str, &str, u16, &str)] = &[
        (
            "obs-fold",
            "GET {url} HTTP/1.1\r\n{host}{auth}X-A: 1\r\n folded\r\n\r\n",
            400,
            MALFORMED,
        ),
        (
            "NUL in a value",
            "GET {url} HTTP/1.1\r\n{host}{auth}X-A: a\0b\r\n\r\n",
            400,
            MALFORMED,
        ),
        (
            "bare CR in a value",
            "GET {url} HTTP/1.1\r\n{host}{auth}X-A: a\rb\r\n\r\n",
            400,
            MALFORMED,
        ),
        (
            "bare LF splitting a value",
            "GET {url} HTTP/1.1\r\n{host}{auth}X-A: a\nb\r\n\r\n",
            400,
            MALFORMED,
        ),
        (
            "space before the colon",
            "POST {url} HTTP/1.1\r\n{host}{auth}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            400,
            MALFORMED,
        ),
        (
            "empty header name",
            "GET {url} HTTP/1.1\r\n{host}{auth}: v\r\n\r\n",
            400,
            MALFORMED,
        ),
        (
            "non-token header name",
            "GET {url} HTTP/1.1\r\n{host}{auth}X@A: 1\r\n\r\n",
            400,
            MALFORMED,
        ),
        (
            "signed Content-Length",
            "POST {url} HTTP/1.1\r\n{host}{auth}Content-Length: +5\r\n\r\nhello",
            400,
            MALFORMED,
        ),
        (
            "Content-Length list",
            "POST {url} HTTP/1.1\r\n{host}{auth}Content-Length: 5, 6\r\n\r\nhello",
            400,
            MALFORMED,
        ),
        (
            "two different Content-Lengths",
            "POST {url} HTTP/1.1\r\n{host}{auth}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            400,
            MALFORMED,
        ),
        (
            "hex Content-Length",
            "POST {url} HTTP/1.1\r\n{host}{auth}Content-Length: 0x5\r\n\r\nhello",
            400,
            MALFORMED,
        ),
        (
            "Transfer-Encoding not ending in chunked",
            "POST {url} HTTP/1.1\r\n{host}{auth}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            400,
            MALFORMED,
        ),
        (
            "Transfer-Encoding gzip alone",
            "POST {url} HTTP/1.1\r\n{host}{auth}Transfer-Encoding: gzip\r\n\r\nhello",
            400,
            MALFORMED,
        ),
        (
            "unknown Transfer-Encoding",
            "POST {url} HTTP/1.1\r\n{host}{auth}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            400,
            MALFORMED,
        ),
        (
            "two spaces in the request line",
            "GET  {url} HTTP/1.1\r\n{host}{auth}\r\n",
            400,
            MALFORMED,
        ),
        (
            "tabs in the request line",
            "GET\t{url}\tHTTP/1.1\r\n{host}{auth}\r\n",
            400,
            MALFORMED,
        ),
        (
            "unknown HTTP version",
            "GET {url} HTTP/1.2\r\n{host}{auth}\r\n",
            400,
            MALFORMED,
        ),
    ];

    #[tokio::test]
    async fn broken_framing_gets_400_a_receipt_and_nothing_forwarded() {
        let (stack, token, recorder) = recorded().await;
        for (name, head, status, rule) in BROKEN {
            let response = denied(&stack, &token, &recorder, head, *status, rule).await;
            assert!(
                response.body.is_empty() || response.json()["status"] == 400,
                "{name}"
            );
        }
        // An oversized head gets 431 (the limit is the config's max_header_bytes, 16 KiB).
        let big = format!(
            "GET {{url}} HTTP/1.1\r\n{{host}}{{auth}}X-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        denied(&stack, &token, &recorder, &big, 431, MALFORMED).await;
    }

    #[tokio::test]
    async fn a_broken_request_after_authentication_is_receipted_under_the_job() {
        use tokio::io::AsyncWriteExt;
        let (stack, token, recorder) = recorded().await;
        let mut stream = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
        let read = fill("GET {url} HTTP/1.1\r\n{host}{auth}\r\n", &token);
        stream.write_all(read.as_bytes()).await.unwrap();
        assert_eq!(raw::read_response(&mut stream).await.status, 200);
        let before = stack.receipts().len();
        // The same connection, now without credentials: hyper refuses the head itself.
        let broken = fill(
            "GET {url} HTTP/1.1\r\n{host}X-A: 1\r\n folded\r\n\r\n",
            &token,
        );
        stream.write_all(broken.as_bytes()).await.unwrap();
        assert_eq!(raw::read_response(&mut stream).await.status, 400);
        claw_tests::eventually("the malformed-request receipt", || {
            stack.receipts().len() > before
        })
        .await;
        let receipt = &stack.receipts()[before];
        let rule = receipt.decision.as_ref().map(|d| d.rule.as_str());
        assert_eq!(
            (receipt.job.as_str(), rule),
            ("job-1", Some(MALFORMED)),
            "the connection's identity names the job"
        );
        assert_eq!(recorder.count(), 1, "only the good read was forwarded");
    }

    /// Chunked bodies hyper cannot decode. Refused (400, or hyper's own 400 before a handler
    /// runs), receipted and never forwarded.
    const BAD_CHUNKS: &[&str] = &[
        "GET {url} HTTP/1.1\r\n{host}{auth}Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET {url} HTTP/1.1\r\n{host}{auth}Transfer-Encoding: chunked\r\n\r\n1\nx\n0\n\n",
        "GET {url} HTTP/1.1\r\n{host}{auth}Transfer-Encoding: chunked\r\n\r\n1\r\nxyz\r\n0\r\n\r\n",
        "GET {url} HTTP/1.1\r\n{host}{auth}Transfer-Encoding: chunked\r\n\r\n0;a=\"\r\n\"\r\n\r\n",
        "GET {url} HTTP/1.1\r\n{host}{auth}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n0\r\n\r\n",
    ];

    #[tokio::test]
    async fn chunked_bodies_that_do_not_decode_are_refused_and_receipted() {
        let (stack, token, recorder) = recorded().await;
        for head in BAD_CHUNKS {
            let before = stack.receipts().len();
            let response = send(&stack, &token, head).await;
            assert!(
                response.status == 400,
                "{head:?}: {} {}",
                response.status,
                response.text()
            );
            assert_eq!(recorder.count(), 0, "{head:?} reached the upstream");
            match response.header("x-clawproxy-receipt") {
                Some(_) => drop(receipted(&stack, &response)),
                None => logged(&stack, before, MALFORMED, head).await,
            }
        }
    }

    #[tokio::test]
    async fn a_smuggled_second_request_is_checked_on_its_own() {
        let (stack, token, recorder) = recorded().await;
        // hyper resolves Content-Length + Transfer-Encoding by the chunked framing (RFC 9112
        // §6.3) and hides the conflict from us; what must hold is that nothing is smuggled: the
        // bytes after the chunked body are a second request, checked on its own (no token: 407),
        // and the proxy re-frames what it forwards.
        let smuggle = fill(
            "GET {url} HTTP/1.1\r\n{host}{auth}Content-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nDELETE {url} HTTP/1.1\r\n{host}\r\n",
            &token,
        );
        let mut stream = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, smuggle.as_bytes())
            .await
            .unwrap();
        let first = raw::read_response(&mut stream).await;
        let second = raw::read_response(&mut stream).await;
        assert_eq!(first.status, 200);
        assert!(matches!(second.status, 407 | 0), "{}", second.status);
        assert!(
            recorder.heads().iter().all(|h| !h.starts_with("DELETE")),
            "{:?}",
            recorder.heads()
        );
        assert_eq!(recorder.count(), 1);
    }

    /// Two requests written at once on one connection: (first, second, their statuses, how
    /// many item requests reach the upstream). Each is checked on its own, and nothing after a
    /// request that ends the connection is read.
    const PIPELINED: &[(&str, &str, [u16; 2], usize)] = &[
        (
            "GET {url} HTTP/1.1\r\n{host}{auth}\r\n",
            "DELETE {url} HTTP/1.1\r\n{host}{auth}\r\n",
            [200, 403],
            1,
        ),
        (
            "DELETE {url} HTTP/1.1\r\n{host}{auth}\r\n",
            "GET {url} HTTP/1.1\r\n{host}{auth}\r\n",
            [403, 200],
            1,
        ),
        (
            "GET {url} HTTP/1.1\r\n{host}{auth}\r\n",
            "GET http://connect.1password.com/v1/vaults/{vault}/items/{item}%2f..%2f{login} HTTP/1.1\r\n{host}{auth}\r\n",
            [200, 403],
            1,
        ),
        (
            "GET {url} HTTP/1.1\r\n{host}{auth}\r\n",
            "DELETE {url} HTTP/1.1\r\n{host}\r\n",
            [200, 407],
            1,
        ),
        (
            "GET {url} HTTP/1.1\r\n{host}{auth}\r\n",
            "GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n{auth}\r\n",
            [200, 403],
            1,
        ),
        // A broken request ends the connection: what follows it is never read.
        (
            "GET {url} HTTP/1.1\r\n{host}{auth}X-A: 1\r\n folded\r\n\r\n",
            "GET {url} HTTP/1.1\r\n{host}{auth}\r\n",
            [400, 0],
            0,
        ),
        // So does a request that asks for it.
        (
            "GET {url} HTTP/1.1\r\n{host}{auth}Connection: close\r\n\r\n",
            "GET {url} HTTP/1.1\r\n{host}{auth}\r\n",
            [200, 0],
            1,
        ),
        (
            "GET {url} HTTP/1.0\r\n{host}{auth}\r\n",
            "GET {url} HTTP/1.1\r\n{host}{auth}\r\n",
            [200, 0],
            1,
        ),
    ];

    #[tokio::test]
    async fn pipelined_requests_are_each_checked_on_their_own() {
        use tokio::io::AsyncWriteExt;
        for (first, second, statuses, forwarded) in PIPELINED {
            let (stack, token, recorder) = recorded().await;
            let both = fill(&format!("{first}{second}"), &token);
            let mut stream = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
            stream.write_all(both.as_bytes()).await.unwrap();
            let got = [
                raw::read_response(&mut stream).await.status,
                raw::read_response(&mut stream).await.status,
            ];
            assert_eq!(got, *statuses, "{first:?} then {second:?}");
            let items = recorder
                .heads()
                .iter()
                .filter(|h| h.contains("/items/"))
                .count();
            assert_eq!(items, *forwarded, "{first:?} then {second:?}");
            assert!(
                recorder.heads().iter().all(|h| h.starts_with("GET ")),
                "{:?}",
                recorder.heads()
            );
        }
    }
}

mod authority {
    use super::*;

    /// One authority per request: the absolute URI names it and `Host` must agree.
    const MISBOUND: &[(&str, u16)] = &[
        (
            "GET {url} HTTP/1.1\r\nHost: evil.example\r\n{auth}\r\n",
            400,
        ),
        ("GET {url} HTTP/1.1\r\n{auth}\r\n", 400),
        (
            "GET {url} HTTP/1.1\r\n{host}Host: evil.example\r\n{auth}\r\n",
            400,
        ),
        (
            "GET http://x@connect.1password.com{path} HTTP/1.1\r\n{host}{auth}\r\n",
            400,
        ),
        ("GET {path} HTTP/1.1\r\n{host}{auth}\r\n", 400),
        (
            "GET {url} HTTP/1.1\r\nHost: connect.1password.com:8080\r\n{auth}\r\n",
            400,
        ),
        (
            "GET {url} HTTP/1.1\r\nHost: x@connect.1password.com\r\n{auth}\r\n",
            400,
        ),
        ("GET {url} HTTP/1.1\r\nHost:\r\n{auth}\r\n", 400),
        (
            "GET {url} HTTP/1.1\r\nHost: connect.1password.com, evil.example\r\n{auth}\r\n",
            400,
        ),
        (
            "GET {url} HTTP/1.1\r\nHost: connect.1password.com.evil.example\r\n{auth}\r\n",
            400,
        ),
        (
            "GET https://connect.1password.com{path} HTTP/1.1\r\n{host}{auth}\r\n",
            400,
        ),
        (
            "GET http://connect.1password.com\\@evil.example{path} HTTP/1.1\r\n{host}{auth}\r\n",
            400,
        ),
        (
            "GET http://evil.example#@connect.1password.com{path} HTTP/1.1\r\n{host}{auth}\r\n",
            400,
        ),
        (
            "CONNECT connect.1password.com HTTP/1.1\r\n{host}{auth}\r\n",
            400,
        ),
        (
            "CONNECT u@connect.1password.com:443 HTTP/1.1\r\n{host}{auth}\r\n",
            400,
        ),
    ];

    #[tokio::test]
    async fn every_request_is_bound_to_the_authority_it_names() {
        let (stack, token, recorder) = recorded().await;
        for (head, status) in MISBOUND {
            let response = denied(&stack, &token, &recorder, head, *status, MALFORMED).await;
            if response.header("x-clawproxy-receipt").is_some() {
                assert!(response.json()["message"].is_string(), "{head:?}");
            }
        }
    }

    /// The one receipt a refused TLS handshake inside a CONNECT to Connect leaves, among the
    /// receipts after the first `before`: a `malformed_request` denial of job-1 naming the
    /// CONNECT target, as the receipt schema has it. Returns its reason.
    async fn handshake_refused(stack: &Stack, before: usize, what: &str) -> String {
        use claw_verifier::receipt::Kind;
        claw_tests::eventually(
            &format!("a receipt for the refused handshake of {what}"),
            || stack.receipts().len() > before,
        )
        .await;
        let written = stack.receipts().split_off(before);
        assert_eq!(written.len(), 1, "{what}: {written:#?}");
        let receipt = &written[0];
        assert_eq!(
            (receipt.kind, receipt.job.as_str()),
            (Kind::Call, "job-1"),
            "{what}"
        );
        let decision = receipt.decision.as_ref().expect("a decision");
        assert_eq!(
            (decision.allow, decision.rule.as_str()),
            (false, MALFORMED),
            "{what}"
        );
        let req = receipt.req.as_ref().expect("the CONNECT");
        assert_eq!(
            (
                req.method.as_str(),
                req.scheme.as_str(),
                req.host.as_str(),
                req.port
            ),
            ("CONNECT", "https", "connect.1password.com", 443),
            "{what}"
        );
        let schema: Value =
            serde_json::from_str(include_str!("../../../schemas/receipt.schema.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&serde_json::to_value(receipt).unwrap())
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:#?}");
        decision.reason.clone()
    }

    /// The TLS name inside a CONNECT to an intercepted host: (SNI, whether the handshake goes
    /// on). Only the CONNECT authority gets a certificate; the handshake of any other name (or
    /// none) ends in an alert before a byte of HTTP is read, and is receipted under the job.
    const SNI: &[(Option<&str>, bool)] = &[
        (Some("evil.example"), false),
        (Some("api.1password.com"), false),
        (Some("connect.1password.com.evil.example"), false),
        (Some("evilconnect.1password.com"), false),
        (Some("127.0.0.1"), false),
        (None, false),
        // The control: the authority itself is served.
        (Some("connect.1password.com"), true),
    ];

    #[tokio::test]
    async fn the_tls_name_must_be_the_connect_authority() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (stack, token, recorder) = recorded().await;
        for (sni, served) in SNI {
            let before = stack.receipts().len();
            let (status, mut stream) = tunnel(&stack, &token, "connect.1password.com:443").await;
            assert_eq!(status, 200, "{sni:?}");
            stream
                .write_all(&client_hello(*sni, &["http/1.1"]))
                .await
                .unwrap();
            let mut first = [0u8; 1];
            let n = stream.read(&mut first).await.unwrap_or(0);
            if *served {
                assert_eq!((n, first[0]), (1, TLS_HANDSHAKE), "{sni:?}");
                // A client that hangs up mid-handshake is a refused handshake too.
                drop(stream);
            } else {
                assert!(n == 0 || first[0] == TLS_ALERT, "{sni:?}: {:#x}", first[0]);
                until_closed(&mut stream).await;
            }
            let reason = handshake_refused(&stack, before, &format!("SNI {sni:?}")).await;
            assert!(
                reason.starts_with("TLS handshake refused: "),
                "{sni:?}: {reason}"
            );
            assert_eq!(recorder.count(), 0, "{sni:?}");
        }
    }

    /// Bytes that are not a TLS ClientHello, sent into a CONNECT to an intercepted host.
    const NOT_TLS: &[(&str, &[u8])] = &[
        (
            "plain HTTP",
            b"GET /v1/vaults HTTP/1.1\r\nHost: connect.1password.com\r\nAuthorization: Bearer agent-secret-in-clear\r\n\r\n",
        ),
        ("an SSH banner", b"SSH-2.0-OpenSSH_9.6\r\n"),
        (
            "a handshake record that is not a ClientHello",
            &[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00],
        ),
        ("an alert", &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]),
        ("a bare close", b""),
    ];

    #[tokio::test]
    async fn bytes_that_are_not_a_tls_handshake_are_refused_and_receipted() {
        use tokio::io::AsyncWriteExt;
        let (stack, token, recorder) = recorded().await;
        let hello = client_hello(Some("connect.1password.com"), &["http/1.1"]);
        let cut = ("a ClientHello cut short", &hello[..hello.len() / 2]);
        for (what, bytes) in NOT_TLS.iter().copied().chain([cut]) {
            let before = stack.receipts().len();
            let (status, mut stream) = tunnel(&stack, &token, "connect.1password.com:443").await;
            assert_eq!(status, 200, "{what}");
            stream.write_all(bytes).await.unwrap();
            // Half-close: a client that stops short is refused at once, not at the deadline.
            let _ = stream.shutdown().await;
            let answer = until_closed(&mut stream).await;
            assert!(
                answer.is_empty() || answer[0] == TLS_ALERT,
                "{what}: {answer:?}"
            );
            let reason = handshake_refused(&stack, before, what).await;
            assert!(
                reason.starts_with("TLS handshake refused: "),
                "{what}: {reason}"
            );
            // The reason says what was wrong, never what was sent.
            for sent in ["GET", "Bearer", "agent-secret", "SSH-2.0", token.as_str()] {
                assert!(!reason.contains(sent), "{what}: {reason}");
            }
            assert_eq!(recorder.count(), 0, "{what}");
        }
    }

    #[tokio::test]
    async fn a_tunnel_with_no_handshake_in_time_is_receipted() {
        use tokio::io::AsyncWriteExt;
        let limits = "header_timeout_ms = 300";
        let (stack, token, recorder) = recording_stack(Answer::Json(db_item()), limits).await;
        let hello = client_hello(Some("connect.1password.com"), &["http/1.1"]);
        for (what, bytes) in [
            ("silence", &[][..]),
            (
                "half a ClientHello, then silence",
                &hello[..hello.len() / 2],
            ),
        ] {
            let before = stack.receipts().len();
            let (status, mut stream) = tunnel(&stack, &token, "connect.1password.com:443").await;
            assert_eq!(status, 200, "{what}");
            stream.write_all(bytes).await.unwrap();
            // Closed at the deadline, having sent nothing.
            assert!(until_closed(&mut stream).await.is_empty(), "{what}");
            let reason = handshake_refused(&stack, before, what).await;
            assert_eq!(reason, "no TLS handshake within 300 ms", "{what}");
            assert_eq!(recorder.count(), 0, "{what}");
        }
    }
}

mod hosts {
    use super::*;

    /// Hosts outside the contract however spelt: (host, status, rule). A spelling no URI
    /// parser accepts is refused before any handler sees it.
    const OUTSIDE: &[(&str, u16, &str)] = &[
        ("evil.example", 403, "network_egress"),
        ("connect.1password.com.evil.example", 403, "network_egress"),
        ("CONNECT.1PASSWORD.COM.EVIL.EXAMPLE", 403, "network_egress"),
        ("evilconnect.1password.com", 403, "network_egress"),
        ("x.connect.1password.com", 403, "network_egress"),
        ("1password.com", 403, "network_egress"),
        ("connect.1password.com:8080", 403, "network_egress"),
        ("xn--connct-2fg.1password.com", 403, "network_egress"),
        ("127.0.0.1", 403, "network_egress"),
        ("2130706433", 403, "network_egress"),
        ("0x7f.1", 403, "network_egress"),
        ("169.254.169.254", 403, "network_egress"),
        ("[::1]", 403, "network_egress"),
        ("[::ffff:127.0.0.1]", 403, "network_egress"),
        ("[fe80::1%25eth0]", 403, "network_egress"),
        ("localhost", 403, "network_egress"),
        ("connect.1password.com..", 400, MALFORMED),
        ("conn\u{435}ct.1password.com", 400, MALFORMED),
        ("connect%2e1password.com", 400, MALFORMED),
    ];

    #[tokio::test]
    async fn hosts_outside_the_contract_are_denied_however_spelt() {
        let (stack, token, recorder) = recorded().await;
        for (host, status, rule) in OUTSIDE {
            let head = format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\n{{auth}}\r\n");
            denied(&stack, &token, &recorder, &head, *status, rule).await;
        }
        // Case and a trailing dot still name the allowed host.
        let head = "GET http://CONNECT.1password.com.{path} HTTP/1.1\r\nHost: connect.1password.com.\r\n{auth}\r\n";
        assert_eq!(send(&stack, &token, head).await.status, 200);
    }

    /// CONNECT targets the contract does not allow (or allows only on another port).
    const TUNNELS: &[&str] = &[
        "evil.example:443",
        "EVIL.example:443",
        "connect.1password.com.evil.example:443",
        "127.0.0.1:443",
        "2130706433:443",
        "[::1]:443",
        "connect.1password.com:22",
        "connect.1password.com:80",
        "api.1password.com:8443",
    ];

    #[tokio::test]
    async fn connect_tunnels_to_unlisted_or_private_targets_are_denied() {
        let (stack, token, recorder) = recorded().await;
        for target in TUNNELS {
            let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{{auth}}\r\n");
            denied(&stack, &token, &recorder, &head, 403, "network_egress").await;
        }
    }
}

mod paths {
    use super::*;

    /// Paths that normalise ambiguously, or name no operation once normalised.
    const AMBIGUOUS: &[(&str, &str)] = &[
        ("/v1/vaults/{vault}/items/a%2f..%2f{item}", "ambiguous_path"),
        ("/v1/vaults/{vault}%2Fitems/{item}", "ambiguous_path"),
        ("/v1/vaults/{vault}/items/{item}%00", "ambiguous_path"),
        (
            "/v1/vaults/{vault}/items/%252e%252e/{item}",
            "ambiguous_path",
        ),
        (
            "/v1/vaults/{vault}/items/a%252f..%252f{item}",
            "ambiguous_path",
        ),
        (
            "/v1/vaults/{vault}/items/%c0%ae%c0%ae/{item}",
            "ambiguous_path",
        ),
        (
            "/v1/vaults/{vault}/items/%e0%80%ae%e0%80%ae/{item}",
            "ambiguous_path",
        ),
        ("/v1/vaults/{vault}/items/{item}\u{e9}", "ambiguous_path"),
        ("/v1/vaults/{vault};x=1/items/{item}", "ambiguous_path"),
        (
            "/v1/vaults/{vault}/items/{item};jsessionid=1",
            "ambiguous_path",
        ),
        ("/v1/vaults/x/..;/{vault}/items/{item}", "ambiguous_path"),
        ("/v1/vaults/{vault}/items/{item}%3bx", "ambiguous_path"),
        ("/v1/vaults/{vault}\\items\\{item}", "ambiguous_path"),
        ("/v1/vaults/{vault}%5citems%5c{item}", "ambiguous_path"),
        (
            "/v1/%2e%2e/%2e%2e/v1/vaults/{vault}/items/{item}",
            "ambiguous_path",
        ),
        (
            "/v1/vaults/{vault}/items/{item}/../../../../../../etc/passwd",
            "ambiguous_path",
        ),
        // Stays under the root: normalised to /v1/etc/passwd, which is no operation.
        (
            "/v1/vaults/{vault}/items/{item}/../../../../etc/passwd",
            "unknown_operation",
        ),
        ("/v1/vaults/{vault}/items/{item}?a=%00", "ambiguous_path"),
        ("/V1/VAULTS/{vault}/ITEMS/{item}", "unknown_operation"),
    ];

    #[tokio::test]
    async fn ambiguous_paths_are_denied() {
        let (stack, token, recorder) = recorded().await;
        for (path, rule) in AMBIGUOUS {
            let head =
                format!("GET http://connect.1password.com{path} HTTP/1.1\r\n{{host}}{{auth}}\r\n");
            denied(&stack, &token, &recorder, &head, 403, rule).await;
        }
    }

    /// Spellings of the DATABASE item's path that normalise to it: what is checked is what is
    /// forwarded.
    const NORMALISED: &[&str] = &[
        "/v1//vaults/{vault}/./items/x/../{item}/",
        "//v1//vaults//{vault}//items//{item}",
        "/v1/vaults/{other}/%2e%2e/{vault}/items/{item}",
        "/v1/vaults/{vault}/%69tems/{item}",
        "/v1/vaults/{vault}/items/{item}/.",
        "/v1/vaults/{vault}/items/{item}/%2e",
        "/v1/vaults/{vault}/items/{item}#fragment",
    ];

    #[tokio::test]
    async fn the_normalised_path_is_what_is_forwarded() {
        let (stack, token, recorder) = recorded().await;
        let item = format!("GET {} HTTP/1.1", item_path(DEMO_DB_ITEM_ID));
        for (i, path) in NORMALISED.iter().enumerate() {
            let head =
                format!("GET http://connect.1password.com{path} HTTP/1.1\r\n{{host}}{{auth}}\r\n");
            let response = send(&stack, &token, &head).await;
            assert_eq!(response.status, 200, "{path}: {}", response.text());
            let forwarded = &recorder.heads()[i];
            assert!(forwarded.starts_with(&item), "{path}: {forwarded}");
            // The receipt records the path that was checked and forwarded.
            let id = response.header("x-clawproxy-receipt").expect("a receipt");
            let receipt = stack.receipt(id);
            assert_eq!(
                receipt.req.map(|r| r.path),
                Some(item_path(DEMO_DB_ITEM_ID)),
                "{path}"
            );
        }
    }
}

mod methods {
    use super::*;

    /// Headers asking the server to treat the request as another method.
    const OVERRIDES: &[&str] = &[
        "X-HTTP-Method-Override: DELETE",
        "X-HTTP-Method: DELETE",
        "X-Method-Override: PUT",
        "x-http-method-override: delete",
        "X-HTTP-Method-Override: GET",
        "X-HTTP-Method-Override:",
    ];

    #[tokio::test]
    async fn method_overrides_are_refused() {
        let (stack, token, recorder) = recorded().await;
        for header in OVERRIDES {
            let head = format!("GET {{url}} HTTP/1.1\r\n{{host}}{header}\r\n{{auth}}\r\n");
            denied(&stack, &token, &recorder, &head, 403, "method_override").await;
        }
    }

    /// Methods on the item the readonly contract lets job-1 read: (method, body, rule). A
    /// write's body is inspected before the contract is asked, so one that cannot be read is
    /// refused for that.
    const METHODS: &[(&str, &str, &str)] = &[
        ("DELETE", "", "deny_operations"),
        (
            "PUT",
            r#"{"title":"x","category":"DATABASE"}"#,
            "deny_operations",
        ),
        ("PUT", "", "uninspectable_body"),
        ("PATCH", "[]", "allowed_operations"),
        ("PATCH", "", "uninspectable_body"),
        ("POST", "{}", "unknown_operation"),
        ("TRACE", "", "unknown_operation"),
        ("OPTIONS", "", "unknown_operation"),
        ("HEAD", "", "unknown_operation"),
        ("PROPFIND", "", "unknown_operation"),
        ("FOO", "", "unknown_operation"),
        ("get", "", "unknown_operation"),
        ("delete", "", "unknown_operation"),
    ];

    #[tokio::test]
    async fn odd_and_denied_methods_are_refused() {
        let (stack, token, recorder) = recorded().await;
        for (method, body, rule) in METHODS {
            // (Connection: close, so a HEAD answer, which has no body, ends with the connection.)
            let head = format!(
                "{method} {{url}} HTTP/1.1\r\n{{host}}{{auth}}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            denied(&stack, &token, &recorder, &head, 403, rule).await;
        }
    }

    const WRITER: &str = include_str!("../../../examples/policies/1password-writer.json");

    /// Write bodies under the writer contract (DATABASE and API_CREDENTIAL only, its one
    /// vault, no delete): (method, path, extra header lines, body, status, rule). Bodies are
    /// framed by Content-Length, or chunked when the extra lines say so.
    const BODIES: &[(&str, &str, &str, &str, u16, &str)] = &[
        (
            "POST",
            "items",
            "",
            r#"{"vault":{"id":"{vault}"},"title":"x","category":"LOGIN"}"#,
            403,
            "allowed_categories",
        ),
        (
            "PUT",
            "item",
            "",
            r#"{"vault":{"id":"{vault}"},"title":"x","category":"LOGIN"}"#,
            403,
            "allowed_categories",
        ),
        (
            "POST",
            "items",
            "Transfer-Encoding: chunked\r\n",
            r#"{"vault":{"id":"{vault}"},"title":"x","category":"LOGIN"}"#,
            403,
            "allowed_categories",
        ),
        (
            "PUT",
            "item",
            "",
            r#"{"vault":{"id":"{other}"},"title":"x","category":"DATABASE"}"#,
            403,
            "body_vault_mismatch",
        ),
        (
            "PATCH",
            "item",
            "",
            r#"[{"op":"replace","path":"/category","value":"LOGIN"}]"#,
            403,
            "allowed_categories",
        ),
        (
            "PATCH",
            "item",
            "",
            r#"[{"op":"replace","path":"","value":{"title":"x","category":"LOGIN"}}]"#,
            403,
            "allowed_categories",
        ),
        (
            "PATCH",
            "item",
            "",
            r#"[{"op":"replace","path":"/vault/id","value":"{other}"}]"#,
            403,
            "body_vault_mismatch",
        ),
        (
            "PATCH",
            "item",
            "",
            r#"[{"op":"add","path":"/vault","value":{"id":"{other}"}}]"#,
            403,
            "body_vault_mismatch",
        ),
        (
            "PATCH",
            "item",
            "",
            r#"[{"op":"replace","path":"/Category","value":"LOGIN"}]"#,
            403,
            "uninspectable_body",
        ),
        (
            "PATCH",
            "item",
            "",
            r#"[{"op":"move","from":"/title","path":"/category"}]"#,
            403,
            "uninspectable_body",
        ),
        (
            "PATCH",
            "item",
            "",
            r#"[{"op":"remove","path":"/category"}]"#,
            403,
            "uninspectable_body",
        ),
        (
            "PATCH",
            "item",
            "",
            r#"[{"op":"replace","path":"/category","value":"DATABASE"},{"op":"replace","path":"/category","value":"LOGIN"}]"#,
            403,
            "uninspectable_body",
        ),
        (
            "POST",
            "items",
            "",
            r#"{"title":"x","category":"DATABASE","category":"LOGIN"}"#,
            403,
            "uninspectable_body",
        ),
        (
            "POST",
            "items",
            "",
            r#"{"title":"x","category":"DATABASE","CATEGORY":"LOGIN"}"#,
            403,
            "uninspectable_body",
        ),
        (
            "POST",
            "items",
            "Content-Encoding: gzip\r\n",
            "\u{1f}\u{8b}\u{8}\0\0\0\0\0\0\u{3}",
            403,
            "uninspectable_body",
        ),
        (
            "POST",
            "items",
            "",
            "category=LOGIN",
            403,
            "uninspectable_body",
        ),
        (
            "POST",
            "items",
            "",
            r#"[{"category":"LOGIN"}]"#,
            403,
            "uninspectable_body",
        ),
        ("DELETE", "item", "", "", 403, "deny_operations"),
    ];

    #[tokio::test]
    async fn write_bodies_are_inspected_against_vault_and_category() {
        let contract = WRITER.replace(
            "\"vault_agent_secrets_prod\"",
            &format!("\"{DEMO_VAULT_ID}\""),
        );
        let (recorder, addr) = Recorder::answering(Answer::Json(db_item())).await;
        let stack = Stack::start(contract.as_bytes(), Upstream::At(addr)).await;
        let token = stack.mint("1password-writer", "job-1", None);
        for (method, target, extra, body, status, rule) in BODIES {
            let path = match *target {
                "items" => "/v1/vaults/{vault}/items",
                _ => "/v1/vaults/{vault}/items/{item}",
            };
            let body = fill(body, &token);
            let framed = if extra.contains("chunked") {
                format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
            } else {
                format!("Content-Length: {}\r\n\r\n{body}", body.len())
            };
            let head = format!(
                "{method} http://connect.1password.com{path} HTTP/1.1\r\n{{host}}{{auth}}Content-Type: application/json\r\n{extra}"
            );
            let head = if extra.contains("chunked") {
                format!("{head}\r\n{framed}")
            } else {
                format!("{head}{framed}")
            };
            denied(&stack, &token, &recorder, &head, *status, rule).await;
        }
    }
}

mod protocol_switches {
    use super::*;

    /// Protocol switches asked of an inspected host, in every spelling.
    const UPGRADES: &[&str] = &[
        "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        "Upgrade: h2c\r\n",
        "Connection: Upgrade\r\n",
        "Connection: keep-alive, UPGRADE\r\n",
        "Connection: keep-alive\r\nConnection: upgrade\r\nUpgrade: websocket\r\n",
        "HTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        "Upgrade: TLS/1.0\r\nConnection: Upgrade\r\n",
        "Proxy-Connection: Upgrade\r\nUpgrade: h2c\r\n",
    ];

    #[tokio::test]
    async fn upgrades_on_inspected_hosts_are_refused() {
        let (stack, token, recorder) = recorded().await;
        for extra in UPGRADES {
            for version in ["HTTP/1.1", "HTTP/1.0"] {
                let head = format!("GET {{url}} {version}\r\n{{host}}{extra}{{auth}}\r\n");
                denied(&stack, &token, &recorder, &head, 403, "protocol_upgrade").await;
            }
        }
    }

    /// Other protocols and versions on the proxy port: (request, status). HTTP/2 with prior
    /// knowledge gets no answer at all (hyper closes on the preface); every one is receipted.
    const VERSIONS: &[(&str, u16)] = &[
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0", 0),
        ("GET {url} HTTP/2.0\r\n{host}{auth}\r\n", 400),
        ("GET {url} HTTP/3\r\n{host}{auth}\r\n", 400),
        ("GET {path}\r\n", 400),
        (
            "POST {url} HTTP/1.0\r\n{host}{auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        ("GET {url} HTTP/1.0\r\n{auth}\r\n", 400),
    ];

    #[tokio::test]
    async fn other_protocols_and_versions_are_refused() {
        let (stack, token, recorder) = recorded().await;
        for (request, status) in VERSIONS {
            denied(&stack, &token, &recorder, request, *status, MALFORMED).await;
        }
    }

    /// Bytes that are not a usable TLS handshake, sent inside a CONNECT to the intercepted
    /// host (which is never tunnelled blind). The tunnel ends without a byte of HTTP; the
    /// proxy writes no receipt for a failed handshake today (only a debug log line).
    fn not_tls() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                "plaintext HTTP/1.1",
                fill("GET {path} HTTP/1.1\r\n{host}\r\n", "").into_bytes(),
            ),
            (
                "HTTP/2 prior knowledge",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            ),
            (
                "a nested CONNECT",
                b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".to_vec(),
            ),
            (
                "an SSLv2 hello",
                b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10\x01\x00\x80".to_vec(),
            ),
            (
                "an oversized TLS record",
                [&b"\x16\x03\x01\xff\xff"[..], &[0u8; 64]].concat(),
            ),
        ]
    }

    #[tokio::test]
    async fn an_intercepted_tunnel_carries_tls_for_http_1_1_or_nothing() {
        use tokio::io::AsyncWriteExt;
        let (stack, token, recorder) = recorded().await;
        for (name, bytes) in not_tls() {
            let (status, mut stream) = tunnel(&stack, &token, "connect.1password.com:443").await;
            assert_eq!(status, 200, "{name}");
            stream.write_all(&bytes).await.unwrap();
            let answer = until_closed(&mut stream).await;
            assert!(
                answer.is_empty() || answer[0] == TLS_ALERT,
                "{name}: {:?}",
                String::from_utf8_lossy(&answer)
            );
            assert_eq!(recorder.count(), 0, "{name} reached the upstream");
        }
    }
}

mod ssrf {
    use super::*;

    /// Hosts whose addresses are local, private, link-local or otherwise not public, as the
    /// agent spells them; the contract names each (canonicalised).
    const LOCAL_BY_NAME: &[&str] = &[
        "localhost",
        "LOCALHOST",
        "localhost.",
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "0x7f000001",
        "0177.0.0.1",
        "017700000001",
        "127.000.000.001",
        "0.0.0.0",
        "0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "192.0.2.1",
    ];

    /// A stack whose contract's egress list names every host in [`LOCAL_BY_NAME`].
    async fn permissive() -> (Stack, String, Recorder) {
        let mut entries: Vec<String> = LOCAL_BY_NAME
            .iter()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        entries.dedup();
        let hosts: Vec<String> = entries.iter().map(|h| format!("\"{h}\"")).collect();
        let contract = seed_by_vault_id().replace(
            "\"api.1password.com\"",
            &format!("\"api.1password.com\", {}", hosts.join(", ")),
        );
        recording_stack_on(&contract, Answer::Json(db_item()), "").await
    }

    #[tokio::test]
    async fn local_addresses_are_refused_even_when_the_contract_names_them() {
        let (stack, token, recorder) = permissive().await;
        for host in LOCAL_BY_NAME {
            let head = format!(
                "GET http://{host}/latest/meta-data/ HTTP/1.1\r\nHost: {host}\r\n{{auth}}\r\n"
            );
            denied(&stack, &token, &recorder, &head, 403, "address_class").await;
            let head = format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n{{auth}}\r\n");
            denied(&stack, &token, &recorder, &head, 403, "address_class").await;
        }
    }

    #[tokio::test]
    async fn the_proxys_own_ports_are_not_a_destination() {
        let (stack, token, recorder) = recorded().await;
        for addr in [stack.addr(), stack.proxy.admin] {
            for head in [
                format!("GET http://{addr}/metrics HTTP/1.1\r\nHost: {addr}\r\n{{auth}}\r\n"),
                format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n{{auth}}\r\n"),
            ] {
                let response = refused(&stack, &token, &recorder, &head, 403).await;
                receipted(&stack, &response);
            }
        }
    }
}

mod redirects {
    use super::*;

    /// A Connect upstream that answers every read with a redirect to `location`.
    async fn redirecting(status: &str, location: &str) -> (Stack, String, Recorder) {
        let answer = format!(
            "HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        recording_stack(Answer::Raw(answer.into_bytes()), "").await
    }

    /// (upstream status, Location, the agent's follow-up, its status, the rule that refuses
    /// it). The redirect is passed to the agent, never followed; the follow-up is a new
    /// request, checked on its own.
    const REDIRECTS: &[(&str, &str, &str, u16, &str)] = &[
        (
            "302 Found",
            "http://169.254.169.254/latest/meta-data/",
            "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n{auth}\r\n",
            403,
            "network_egress",
        ),
        (
            "301 Moved Permanently",
            "http://evil.example/steal",
            "GET http://evil.example/steal HTTP/1.1\r\nHost: evil.example\r\n{auth}\r\n",
            403,
            "network_egress",
        ),
        (
            "307 Temporary Redirect",
            "http://127.0.0.1:8080/v1/vaults",
            "GET http://127.0.0.1:8080/v1/vaults HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n{auth}\r\n",
            403,
            "network_egress",
        ),
        (
            "308 Permanent Redirect",
            "http://connect.1password.com/v1/vaults/zzzzzzzzzzzzzzzzzzzzzzzzzz/items/x4tpzrqojj2ahmv3w7nb6vu2pe",
            "GET http://connect.1password.com/v1/vaults/zzzzzzzzzzzzzzzzzzzzzzzzzz/items/{item} HTTP/1.1\r\n{host}{auth}\r\n",
            403,
            "allowed_vaults",
        ),
        (
            "303 See Other",
            "https://evil.example/",
            "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n{auth}\r\n",
            403,
            "network_egress",
        ),
        (
            "302 Found",
            "//evil.example/steal",
            "GET http://evil.example/steal HTTP/1.1\r\nHost: evil.example\r\n{auth}\r\n",
            403,
            "network_egress",
        ),
        (
            "302 Found",
            "http://[::ffff:a9fe:a9fe]/latest/",
            "GET http://[::ffff:a9fe:a9fe]/latest/ HTTP/1.1\r\nHost: [::ffff:a9fe:a9fe]\r\n{auth}\r\n",
            403,
            "network_egress",
        ),
        (
            "301 Moved Permanently",
            "http://connect.1password.com@evil.example/",
            "GET http://connect.1password.com@evil.example/ HTTP/1.1\r\nHost: evil.example\r\n{auth}\r\n",
            400,
            MALFORMED,
        ),
        (
            "307 Temporary Redirect",
            "http://connect.1password.com:8080/v1/vaults",
            "GET http://connect.1password.com:8080/v1/vaults HTTP/1.1\r\nHost: connect.1password.com:8080\r\n{auth}\r\n",
            403,
            "network_egress",
        ),
        (
            "302 Found",
            "http://connect.1password.com/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/a%2f..%2fx",
            "GET http://connect.1password.com/v1/vaults/{vault}/items/a%2f..%2fx HTTP/1.1\r\n{host}{auth}\r\n",
            403,
            "ambiguous_path",
        ),
        (
            "307 Temporary Redirect",
            "http://connect.1password.com/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/x4tpzrqojj2ahmv3w7nb6vu2pe",
            "DELETE {url} HTTP/1.1\r\n{host}{auth}\r\n",
            403,
            "deny_operations",
        ),
    ];

    #[tokio::test]
    async fn redirects_are_never_followed_and_the_follow_up_is_checked_again() {
        for (status, location, follow_up, follow_status, rule) in REDIRECTS {
            let (stack, token, recorder) = redirecting(status, location).await;
            let response = send(&stack, &token, "GET {url} HTTP/1.1\r\n{host}{auth}\r\n").await;
            assert_eq!(
                response.status,
                status[..3].parse::<u16>().unwrap(),
                "{location}: {}",
                response.text()
            );
            assert_eq!(response.header("location"), Some(*location));
            assert_eq!(recorder.count(), 1, "the proxy followed {location}");
            let id = response
                .header("x-clawproxy-receipt")
                .expect("a receipt id");
            let receipt = stack.receipt(id);
            assert_eq!(receipt.resp.as_ref().map(|r| r.released), Some(true));

            // The agent follows: a new request, checked on its own.
            let before = stack.receipts().len();
            let response = send(&stack, &token, follow_up).await;
            assert_eq!(
                response.status,
                *follow_status,
                "{location}: {}",
                response.text()
            );
            denial_receipted(&stack, before, &response, rule, follow_up).await;
            // (The proxy may ask Connect for the other vault's name; it never fetches the item.)
            let items = recorder
                .heads()
                .iter()
                .filter(|h| h.contains("/items/"))
                .count();
            assert_eq!(items, 1, "the follow-up to {location} was forwarded");
        }
    }
}

mod credentials {
    use super::*;

    /// Headers the agent adds to an allowed read, and what of them must not reach Connect
    /// (lowercase).
    const SENT: &[(&str, &str)] = &[
        (
            "Authorization: Bearer agent-placeholder\r\n",
            "agent-placeholder",
        ),
        (
            "Authorization: Bearer one\r\nAuthorization: Basic two\r\n",
            "basic two",
        ),
        (
            "Connection: keep-alive, X-Secret\r\nX-Secret: hop\r\n",
            "x-secret",
        ),
        ("Connection: X-A, X-B\r\nX-A: 1\r\nX-B: 2\r\n", "x-b"),
        ("Forwarded: for=1.2.3.4\r\n", "forwarded"),
        (
            "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Host: evil.example\r\n",
            "x-forwarded",
        ),
        (
            "X-Clawproxy-Receipt: forged\r\nX-Clawproxy-Job: job-2\r\n",
            "x-clawproxy",
        ),
        ("Proxy-Connection: keep-alive\r\n", "proxy-connection"),
        ("Keep-Alive: timeout=5\r\n", "keep-alive: timeout"),
        ("TE: trailers\r\n", "\nte:"),
    ];

    #[tokio::test]
    async fn the_agents_credentials_never_reach_upstream_and_the_real_one_does() {
        let (stack, token, recorder) = recorded().await;
        for (i, (extra, leaked)) in SENT.iter().enumerate() {
            let head = format!("GET {{url}} HTTP/1.1\r\n{{host}}{{auth}}{extra}\r\n");
            let response = send(&stack, &token, &head).await;
            assert_eq!(response.status, 200, "{extra:?}: {}", response.text());
            let forwarded = recorder.heads()[i].to_ascii_lowercase();
            let authorizations: Vec<&str> = forwarded
                .lines()
                .filter(|l| l.starts_with("authorization:"))
                .collect();
            assert_eq!(
                authorizations,
                [format!("authorization: bearer {}", claw_tests::SIM_TOKEN)],
                "{extra:?}"
            );
            for leak in [*leaked, "proxy-authorization", &token.to_ascii_lowercase()] {
                assert!(
                    !forwarded.contains(leak),
                    "{leak} reached upstream: {forwarded}"
                );
            }
            let id = response.header("x-clawproxy-receipt").expect("a receipt");
            assert!(stack.receipt(id).decision.unwrap().allow, "{extra:?}");
        }
    }

    /// What an upstream answers, and what of it the agent must not see: the injected token,
    /// headers only the proxy sets, hop-by-hop headers.
    const ANSWERED: &[(&str, &str)] = &[
        ("X-Echo: Bearer {token}\r\n", "{token}"),
        ("", "{token}"),
        ("X-Clawproxy-Receipt: forged\r\n", "forged"),
        ("X-Clawproxy-Decision: allow\r\n", "x-clawproxy-decision"),
        ("Connection: X-Leak\r\nX-Leak: 1\r\n", "x-leak"),
        (
            "Proxy-Authenticate: Basic realm=\"upstream\"\r\n",
            "proxy-authenticate",
        ),
        ("Keep-Alive: timeout=1\r\n", "keep-alive:"),
    ];

    #[tokio::test]
    async fn answers_lose_the_injected_token_and_forged_proxy_headers() {
        for (headers, hidden) in ANSWERED {
            let body = json!({"id": DEMO_DB_ITEM_ID, "category": "DATABASE", "vault": {"id": DEMO_VAULT_ID}, "notes": claw_tests::SIM_TOKEN}).to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{body}",
                headers.replace("{token}", claw_tests::SIM_TOKEN),
                body.len()
            );
            let (stack, token, _) = recording_stack(Answer::Raw(answer.into_bytes()), "").await;
            let response = send(&stack, &token, "GET {url} HTTP/1.1\r\n{host}{auth}\r\n").await;
            assert_eq!(response.status, 200, "{headers:?}: {}", response.text());
            let hidden = hidden.replace("{token}", claw_tests::SIM_TOKEN);
            let seen: String = response
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .chain([response.text()])
                .collect();
            assert!(
                !seen.contains(&hidden),
                "{hidden} reached the agent: {seen}"
            );
            assert!(
                response.text().contains("[redacted]"),
                "{}",
                response.text()
            );
            // The receipt the answer cites is the proxy's own.
            let id = response.header("x-clawproxy-receipt").expect("a receipt");
            assert!(stack.receipt(id).decision.unwrap().allow);
        }
    }
}

mod exhaustion {
    use super::*;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: &str = "max_body_bytes = 1024\nheader_timeout_ms = 300\nmax_header_bytes = 8192";

    async fn limited() -> (Stack, String, Recorder) {
        recording_stack(Answer::Json(db_item()), LIMITS).await
    }

    #[tokio::test]
    async fn oversized_heads_get_431_and_nothing_is_forwarded() {
        let (stack, token, recorder) = limited().await;
        let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
        for extra in [
            format!("X-Big: {}\r\n", "a".repeat(9000)),
            many,
            format!("Cookie: {}\r\n", "c=1; ".repeat(3000)),
        ] {
            let response = raw::send(stack.addr(), read_db_item(&token, &extra).as_bytes()).await;
            assert_eq!(response.status, 431, "{}", &extra[..20]);
            assert_eq!(recorder.count(), 0);
        }
        // A request line longer than the head limit.
        let long = format!(
            "GET http://connect.1password.com/v1/vaults/{}/items HTTP/1.1\r\nHost: connect.1password.com\r\n\r\n",
            "v".repeat(9000)
        );
        let response = raw::send(stack.addr(), long.as_bytes()).await;
        assert!(
            matches!(response.status, 414 | 431 | 400),
            "{}",
            response.status
        );
        assert_eq!(recorder.count(), 0);
    }

    #[tokio::test]
    async fn bodies_over_the_inspection_limit_get_413_and_a_receipt() {
        let (stack, token, recorder) = limited().await;
        let big = "x".repeat(4096);
        for extra in [
            format!("Content-Length: {}\r\n\r\n{big}", big.len()),
            format!("Transfer-Encoding: chunked\r\n\r\n1000\r\n{big}\r\n0\r\n\r\n"),
        ] {
            let request = read_db_item(&token, &extra);
            // read_db_item ends the head; the body follows this request's own blank line.
            let request = request.replacen("\r\n\r\n\r\n", "\r\n\r\n", 1);
            let response = raw::send(stack.addr(), request.as_bytes()).await;
            assert_eq!(response.status, 413, "{}", response.text());
            assert!(response.text().contains("body_too_large"));
            receipted(&stack, &response);
            assert_eq!(recorder.count(), 0);
        }
    }

    #[tokio::test]
    async fn an_endless_chunked_body_is_cut_off() {
        let (stack, token, recorder) = limited().await;
        let mut stream = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
        let head = read_db_item(&token, "Transfer-Encoding: chunked\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("100\r\n{}\r\n", "y".repeat(256));
        // Far more than the limit; the proxy answers (or closes) before it is all sent.
        for _ in 0..64 {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let response = raw::read_response(&mut stream).await;
        assert_eq!(response.status, 413, "{}", response.text());
        assert_eq!(recorder.count(), 0);
    }

    #[tokio::test]
    async fn slowloris_heads_are_cut_off_at_the_deadline() {
        let (stack, token, recorder) = limited().await;
        let head = read_db_item(&token, "");
        let mut stream = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
        // Half a head, then silence: the connection is closed soon after the 300 ms deadline.
        stream.write_all(&head.as_bytes()[..40]).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the proxy held a slowloris connection open");
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
        assert_eq!(recorder.count(), 0);
    }

    #[tokio::test]
    async fn a_body_that_never_arrives_is_cut_off_with_408_and_a_receipt() {
        let (stack, token, recorder) = limited().await;
        let mut stream = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
        // A complete head announcing 100 bytes, 10 of them, then silence.
        let head = read_db_item(&token, "Content-Length: 100\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(b"0123456789").await.unwrap();
        // Safety net only: the 300 ms header deadline applies to the body too.
        let response =
            tokio::time::timeout(Duration::from_secs(30), raw::read_response(&mut stream))
                .await
                .expect("the proxy held a connection whose body never came");
        assert_eq!(response.status, 408, "{}", response.text());
        let id = response.header("x-clawproxy-receipt").expect("a receipt");
        let decision = stack.receipt(id).decision.unwrap();
        assert_eq!(
            (decision.allow, decision.rule.as_str()),
            (false, "malformed_request")
        );
        assert_eq!(recorder.count(), 0);
    }

    #[tokio::test]
    async fn many_idle_connections_do_not_stop_the_proxy_serving() {
        let (stack, token, recorder) = limited().await;
        let mut idle = Vec::new();
        for _ in 0..300 {
            idle.push(tokio::net::TcpStream::connect(stack.addr()).await.unwrap());
        }
        let response = raw::send(stack.addr(), read_db_item(&token, "").as_bytes()).await;
        assert_eq!(response.status, 200);
        assert_eq!(recorder.count(), 1);
        drop(idle);
    }

    #[tokio::test]
    async fn idle_intercepted_tunnels_end_at_the_handshake_deadline() {
        let (stack, token, recorder) = limited().await;
        let mut tunnels = Vec::new();
        for _ in 0..100 {
            let (status, stream) = tunnel(&stack, &token, "connect.1password.com:443").await;
            assert_eq!(status, 200);
            tunnels.push(stream);
        }
        // Meanwhile the proxy serves.
        let response = raw::send(stack.addr(), read_db_item(&token, "").as_bytes()).await;
        assert_eq!(response.status, 200);
        // No ClientHello within header_timeout_ms: each tunnel is closed, having sent nothing.
        for mut stream in tunnels {
            assert!(until_closed(&mut stream).await.is_empty());
        }
        assert_eq!(recorder.count(), 1);
    }

    /// Whether the proxy has closed `stream`, found without reading (which would unblock the
    /// proxy): a write to a closed connection draws a reset, and the next write fails.
    fn closed_by_proxy(stream: &mut std::net::TcpStream) -> bool {
        use std::io::Write;
        match stream.write_all(b"\r\n") {
            Ok(_) => false,
            Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
        }
    }

    /// Clients that never read their answers: (what they do, how many requests they write at
    /// once). Each answer is far larger than the socket buffers between proxy and client.
    const NEVER_READ: &[(&str, usize)] = &[
        ("one request, never read", 1),
        ("pipelined requests, never read", 8),
    ];

    #[tokio::test]
    async fn a_client_that_never_reads_is_cut_off_while_others_are_served() {
        let mut item = db_item();
        item["notes"] = Value::String("x".repeat(8 << 20));
        let limits = "max_body_bytes = 16777216\nidle_timeout_ms = 500";
        let (stack, token, recorder) = recording_stack(Answer::Json(item), limits).await;
        for (what, requests) in NEVER_READ {
            let before = recorder.count();
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let mut stuck = socket.connect(stack.addr()).await.unwrap();
            stuck
                .write_all(read_db_item(&token, "").repeat(*requests).as_bytes())
                .await
                .unwrap();
            claw_tests::eventually("the stuck client's read reaches the upstream", || {
                recorder.count() > before
            })
            .await;

            // Other clients are served meanwhile, a large answer included.
            let response = raw::send(stack.addr(), read_db_item(&token, "").as_bytes()).await;
            assert_eq!(response.status, 200, "{what}");
            assert_eq!(
                response.body.len(),
                response
                    .header("content-length")
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            );
            let denied = connect(&stack, &token, "DELETE", &item_path(DEMO_DB_ITEM_ID)).await;
            assert_eq!(denied.status, 403, "{what}");

            // The stuck connection is closed once its writes stall for idle_timeout_ms.
            let mut stuck = stuck.into_std().unwrap();
            stuck.set_nonblocking(true).unwrap();
            claw_tests::eventually(&format!("the proxy closes: {what}"), || {
                closed_by_proxy(&mut stuck)
            })
            .await;
            // And it stopped there: the requests queued behind the stuck answer never ran.
            let served = recorder.count() - before - 1;
            assert!(served < (*requests).max(2), "{what}: {served} served");
        }
    }
}

mod tokens {
    use claw_policy::keys::{self, Purpose};

    use super::*;

    #[tokio::test]
    async fn forged_and_tampered_tokens_get_407_and_reach_nothing() {
        let (stack, token, recorder) = recorded().await;
        let issuer = keys::read_signing_key(&stack.dir.signing_key(Purpose::Issuer)).unwrap();
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let (header, claims) = claw_tokens::token::dangerous_decode_unverified(&token).unwrap();
        let now = claw_tokens::now();
        let with = |key: &str, value: Value| {
            let mut h = header.clone();
            h[key] = value;
            h
        };
        let claim = |key: &str, value: Value| {
            let mut c = claims.clone();
            c[key] = value;
            c
        };
        let without = |key: &str| {
            let mut c = claims.clone();
            c.as_object_mut().unwrap().remove(key);
            c
        };
        let cases: Vec<(&str, String)> = vec![
            ("alg none", {
                let t = forge(&with("alg", json!("none")), &claims, &issuer);
                format!("{}.", t.rsplit_once('.').unwrap().0)
            }),
            (
                "alg HS256",
                forge(&with("alg", json!("HS256")), &claims, &issuer),
            ),
            (
                "alg RS256",
                forge(&with("alg", json!("RS256")), &claims, &issuer),
            ),
            (
                "kid path",
                forge(&with("kid", json!("../../keys/issuer")), &claims, &issuer),
            ),
            (
                "kid unknown",
                forge(&with("kid", json!("nope")), &claims, &issuer),
            ),
            (
                "jku",
                forge(
                    &with("jku", json!("http://evil.example/k")),
                    &claims,
                    &issuer,
                ),
            ),
            (
                "x5u",
                forge(
                    &with("x5u", json!("http://evil.example/c")),
                    &claims,
                    &issuer,
                ),
            ),
            (
                "jwk",
                forge(&with("jwk", json!({"kty": "OKP"})), &claims, &issuer),
            ),
            (
                "typ JWT",
                forge(&with("typ", json!("JWT")), &claims, &issuer),
            ),
            (
                "crit",
                forge(&with("crit", json!(["exp"])), &claims, &issuer),
            ),
            ("no exp", forge(&header, &without("exp"), &issuer)),
            ("no jti", forge(&header, &without("jti"), &issuer)),
            (
                "expired",
                forge(&header, &claim("exp", json!(now - 120)), &issuer),
            ),
            (
                "future nbf",
                forge(&header, &claim("nbf", json!(now + 3600)), &issuer),
            ),
            (
                "exp as string",
                forge(
                    &header,
                    &claim("exp", json!((now + 60).to_string())),
                    &issuer,
                ),
            ),
            (
                "wrong aud",
                forge(&header, &claim("aud", json!("another-proxy")), &issuer),
            ),
            (
                "aud list",
                forge(
                    &header,
                    &claim("aud", json!([claims["aud"].clone()])),
                    &issuer,
                ),
            ),
            (
                "wrong wpc",
                forge(
                    &header,
                    &claim("wpc", json!(format!("blake3:{}", "0".repeat(64)))),
                    &issuer,
                ),
            ),
            (
                "wrong scope",
                forge(
                    &header,
                    &claim("scope", json!(format!("blake3:{}", "1".repeat(64)))),
                    &issuer,
                ),
            ),
            (
                "unknown iss",
                forge(&header, &claim("iss", json!("someone-else")), &issuer),
            ),
            (
                "other job",
                forge(&header, &claim("job", json!("job-2")), &issuer),
            ),
            ("untrusted key", forge(&header, &claims, &stranger)),
            ("truncated signature", token[..token.len() - 4].to_owned()),
            ("four parts", format!("{token}.e30")),
            ("oversized", format!("{token}{}", "A".repeat(8192))),
        ];
        for (name, forged) in cases {
            let response = raw::send(stack.addr(), read_db_item(&forged, "").as_bytes()).await;
            assert_eq!(response.status, 407, "{name}: {}", response.text());
            assert_eq!(response.json()["status"], 407, "{name}");
            assert!(!response.text().contains(&forged), "{name}: token echoed");
            assert_eq!(recorder.count(), 0, "{name} reached the upstream");
        }
        // The control: the same forge of the genuine header and claims is accepted, so each
        // refusal above is down to the one thing that case changed.
        let genuine = forge(&header, &claims, &issuer);
        let response = raw::send(stack.addr(), read_db_item(&genuine, "").as_bytes()).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }

    /// The second request on a connection whose first one fixed job-1's identity:
    /// (`Proxy-Authorization` value, status). Only the same token goes on.
    const SECOND: &[(&str, u16)] = &[
        ("{other job}", 407),
        ("{same job, another token}", 407),
        ("", 407),
        ("Bearer {token}x", 407),
        ("Basic am9iLTE6", 407),
        ("Bearer {token}", 200),
        ("{token of job-1}", 200),
    ];

    #[tokio::test]
    async fn the_first_token_fixes_the_connections_identity() {
        use tokio::io::AsyncWriteExt;
        let (stack, token, recorder) = recorded().await;
        let other_job = stack.mint(POLICY, "job-2", None);
        let same_job = stack.mint(POLICY, "job-1", None);
        for (auth, status) in SECOND {
            let auth = auth
                .replace("{other job}", &basic("job-2", &other_job))
                .replace("{same job, another token}", &basic("job-1", &same_job))
                .replace("{token of job-1}", &basic("job-1", &token))
                .replace("{token}", &token);
            let line = if auth.is_empty() {
                String::new()
            } else {
                format!("Proxy-Authorization: {auth}\r\n")
            };
            let mut stream = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
            let first = fill("GET {url} HTTP/1.1\r\n{host}{auth}\r\n", &token);
            stream.write_all(first.as_bytes()).await.unwrap();
            assert_eq!(raw::read_response(&mut stream).await.status, 200);
            let before = recorder.count();
            let second = fill(
                &format!("DELETE {{url}} HTTP/1.1\r\n{{host}}{line}\r\n"),
                "",
            );
            let second = if *status == 200 {
                // The same token goes on: an allowed read.
                second.replacen("DELETE", "GET", 1)
            } else {
                second
            };
            stream.write_all(second.as_bytes()).await.unwrap();
            let response = raw::read_response(&mut stream).await;
            assert_eq!(response.status, *status, "{auth:?}: {}", response.text());
            assert_eq!(
                recorder.count() - before,
                usize::from(*status == 200),
                "{auth:?}"
            );
        }
    }
}

mod policy_evidence {
    use claw_policy::contract::Contract;
    use claw_policy::envelope::Envelope;
    use claw_policy::keys::{self, Purpose};
    use claw_policy::registry::{NameEntry, Registry, Version};
    use claw_proxy::stack::UNAUTHENTICATED;

    use super::*;

    /// One request per rule that refuses it: (request, status, rule, the receipt's job).
    /// Malformed and unauthenticated requests are receipted too, under no job.
    const EVERY_RULE: &[(&str, u16, &str, &str)] = &[
        (
            "GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n{auth}\r\n",
            403,
            "network_egress",
            "job-1",
        ),
        (
            "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n{auth}\r\n",
            403,
            "network_egress",
            "job-1",
        ),
        (
            "DELETE {url} HTTP/1.1\r\n{host}{auth}\r\n",
            403,
            "deny_operations",
            "job-1",
        ),
        (
            "GET http://connect.1password.com/v1/vaults/{vault}/items HTTP/1.1\r\n{host}{auth}\r\n",
            403,
            "allowed_operations",
            "job-1",
        ),
        (
            "GET http://connect.1password.com/v1/vaults/{other}/items/{item} HTTP/1.1\r\n{host}{auth}\r\n",
            403,
            "allowed_vaults",
            "job-1",
        ),
        (
            "GET http://connect.1password.com/v1/secrets HTTP/1.1\r\n{host}{auth}\r\n",
            403,
            "unknown_operation",
            "job-1",
        ),
        (
            "GET http://connect.1password.com/v1/vaults/{vault}/items/a%2f..%2f{item} HTTP/1.1\r\n{host}{auth}\r\n",
            403,
            "ambiguous_path",
            "job-1",
        ),
        (
            "GET {url} HTTP/1.1\r\n{host}{auth}X-HTTP-Method-Override: DELETE\r\n\r\n",
            403,
            "method_override",
            "job-1",
        ),
        (
            "GET {url} HTTP/1.1\r\n{host}{auth}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            403,
            "protocol_upgrade",
            "job-1",
        ),
        (
            "GET {url} HTTP/1.1\r\nHost: evil.example\r\n{auth}\r\n",
            400,
            MALFORMED,
            "job-1",
        ),
        (
            "GET {url} HTTP/1.1\r\n{host}{auth}X-A: 1\r\n folded\r\n\r\n",
            400,
            MALFORMED,
            UNAUTHENTICATED,
        ),
        (
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            0,
            MALFORMED,
            UNAUTHENTICATED,
        ),
        (
            "GET {url} HTTP/1.1\r\n{host}\r\n",
            407,
            "proxy_auth",
            UNAUTHENTICATED,
        ),
        (
            "GET {url} HTTP/1.1\r\n{host}Proxy-Authorization: Bearer forged\r\n\r\n",
            407,
            "proxy_auth",
            UNAUTHENTICATED,
        ),
    ];

    #[tokio::test]
    async fn every_denial_leaves_a_receipt_naming_its_rule() {
        let (stack, token, recorder) = recorded().await;
        let wpc = claw_tokens::token::decode(&token).unwrap().claims["wpc"]
            .as_str()
            .unwrap()
            .to_owned();
        for (head, status, rule, job) in EVERY_RULE {
            let before = stack.receipts().len();
            let response = send(&stack, &token, head).await;
            assert_eq!(response.status, *status, "{head:?}: {}", response.text());
            // Nothing of the agent's reached Connect (the proxy may ask for a vault's name).
            assert!(
                recorder
                    .heads()
                    .iter()
                    .all(|h| h.starts_with("GET /v1/vaults/") && !h.contains("/items")),
                "{head:?}: {:?}",
                recorder.heads()
            );
            let receipt = match response.header("x-clawproxy-receipt") {
                Some(id) => stack.receipt(id),
                None => {
                    logged(&stack, before, rule, head).await;
                    let receipts = stack.receipts();
                    let is_rule =
                        |r: &&Receipt| r.decision.as_ref().is_some_and(|d| d.rule == *rule);
                    receipts[before..].iter().find(is_rule).unwrap().clone()
                }
            };
            let decision = receipt.decision.as_ref().unwrap();
            assert_eq!(
                (decision.allow, decision.rule.as_str()),
                (false, *rule),
                "{head:?}"
            );
            assert_eq!(receipt.job, *job, "{head:?}");
            if *job != UNAUTHENTICATED {
                assert_eq!(receipt.wpc.as_deref(), Some(wpc.as_str()), "{head:?}");
            }
            assert!(receipt.resp.is_none(), "{head:?}: nothing was forwarded");
        }
    }

    /// The seed contract (by vault id) with `delete_item` allowed, named `name`.
    fn permissive(name: &str) -> Contract {
        let mut doc: Value = serde_json::from_str(&seed_by_vault_id()).unwrap();
        doc["name"] = json!(name);
        doc["tool_scope"]["allowed_operations"] = json!(["read_item", "delete_item"]);
        doc["tool_scope"]["deny_operations"] = json!(["create_item", "update_item"]);
        Contract::from_slice(doc.to_string().as_bytes()).unwrap()
    }

    /// After a wider version of the contract is published: (who asks, status of a DELETE).
    /// A token stays pinned to the contract hash it was minted for, on an open connection and
    /// on a new one; only a token minted afterwards gets the new version.
    const REPUBLISHED: &[(&str, u16)] = &[
        ("the open connection", 403),
        ("a new connection with the same token", 403),
        ("a token minted after", 200),
    ];

    #[tokio::test]
    async fn a_contract_published_later_does_not_change_a_pinned_token() {
        use tokio::io::AsyncWriteExt;
        let (stack, token, recorder) = recorded().await;
        let pinned = claw_tokens::token::decode(&token).unwrap().claims["wpc"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut open = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
        let read = fill("GET {url} HTTP/1.1\r\n{host}{auth}\r\n", &token);
        open.write_all(read.as_bytes()).await.unwrap();
        assert_eq!(raw::read_response(&mut open).await.status, 200);

        let v2 = claw_tests::publish(&stack.dir, &permissive(POLICY).canonical());
        assert_ne!(v2, pinned);
        let delete = "DELETE {url} HTTP/1.1\r\n{host}{auth}\r\n";
        for (who, status) in REPUBLISHED {
            let response = match *who {
                "the open connection" => {
                    open.write_all(fill(delete, &token).as_bytes())
                        .await
                        .unwrap();
                    raw::read_response(&mut open).await
                }
                "a new connection with the same token" => send(&stack, &token, delete).await,
                _ => send(&stack, &stack.mint(POLICY, "job-1", None), delete).await,
            };
            assert_eq!(response.status, *status, "{who}: {}", response.text());
            let id = response.header("x-clawproxy-receipt").expect("a receipt");
            let receipt = stack.receipt(id);
            let hash = if *status == 200 { &v2 } else { &pinned };
            assert_eq!(receipt.wpc.as_ref(), Some(hash), "{who}");
            let deletes = recorder
                .heads()
                .iter()
                .filter(|h| h.starts_with("DELETE"))
                .count();
            assert_eq!(deletes, usize::from(*status == 200), "{who}");
        }
    }

    /// How a contract reaches the registry without being validly published.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Plant {
        /// No signature at all.
        Unsigned,
        /// Signed by a policy key trust.json does not list.
        UntrustedKey,
        /// The trusted key's signature over another contract.
        BorrowedSignature,
        /// Signed, then edited (the stated hash no longer matches).
        EditedAfterSigning,
        /// Validly signed, stored, but never entered in the index.
        NotIndexed,
        /// In the index, but the envelope is not there.
        FileMissing,
        /// Validly signed, stored and indexed: the control.
        Published,
    }

    /// Contracts planted in the registry, and whether a token pinned to them works.
    const PLANTED: &[(Plant, u16)] = &[
        (Plant::Unsigned, 407),
        (Plant::UntrustedKey, 407),
        (Plant::BorrowedSignature, 407),
        (Plant::EditedAfterSigning, 407),
        (Plant::NotIndexed, 407),
        (Plant::FileMissing, 407),
        (Plant::Published, 200),
    ];

    /// Writes `plant` of a contract into the stack's registry; returns the hash it claims.
    fn plant(stack: &Stack, plant: Plant) -> String {
        let policy = keys::read_signing_key(&stack.dir.signing_key(Purpose::Policy)).unwrap();
        let contract = permissive("planted");
        let mut envelope = Envelope::sign(&contract, &policy);
        match plant {
            Plant::Unsigned => envelope.signatures.clear(),
            Plant::UntrustedKey => {
                let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
                envelope = Envelope::sign(&contract, &stranger);
            }
            Plant::BorrowedSignature => {
                let seed = Contract::from_slice(seed_by_vault_id().as_bytes()).unwrap();
                envelope.signatures = Envelope::sign(&seed, &policy).signatures;
            }
            Plant::EditedAfterSigning => {
                envelope.wpc["tool_scope"]["allowed_categories"] = json!(["DATABASE", "LOGIN"]);
            }
            Plant::NotIndexed | Plant::FileMissing | Plant::Published => {}
        }
        let registry = Registry::new(stack.dir.policies());
        if plant != Plant::FileMissing {
            let hex = envelope.hash.trim_start_matches("blake3:");
            let path = registry.dir().join(format!("{hex}.json"));
            std::fs::write(path, envelope.to_json_pretty()).unwrap();
        }
        if plant != Plant::NotIndexed {
            let mut index = registry.index().unwrap();
            index.contracts.insert(
                "planted".into(),
                NameEntry {
                    active: envelope.hash.clone(),
                    versions: vec![Version {
                        version: 1,
                        hash: envelope.hash.clone(),
                        published_at: claw_policy::registry::now_rfc3339(),
                    }],
                },
            );
            let text = serde_json::to_string_pretty(&index).unwrap();
            std::fs::write(registry.dir().join("index.json"), text).unwrap();
        }
        envelope.hash
    }

    #[tokio::test]
    async fn a_token_pinned_to_a_contract_not_validly_published_is_refused() {
        for (how, status) in PLANTED {
            let (stack, token, recorder) = recorded().await;
            let hash = plant(&stack, *how);
            // An issuer-signed token pinned to the planted hash (the issuer's key is trusted).
            let issuer = keys::read_signing_key(&stack.dir.signing_key(Purpose::Issuer)).unwrap();
            let (header, mut claims) =
                claw_tokens::token::dangerous_decode_unverified(&token).unwrap();
            claims["wpc"] = json!(hash);
            let pinned = forge(&header, &claims, &issuer);
            let response = raw::send(stack.addr(), read_db_item(&pinned, "").as_bytes()).await;
            assert_eq!(response.status, *status, "{how:?}: {}", response.text());
            let id = response.header("x-clawproxy-receipt").expect("a receipt");
            let receipt = stack.receipt(id);
            if *status == 407 {
                assert_eq!(recorder.count(), 0, "{how:?} reached the upstream");
                assert_eq!(receipt.decision.unwrap().rule, "proxy_auth", "{how:?}");
            } else {
                assert_eq!(receipt.wpc, Some(hash), "{how:?}");
            }
        }
    }
}
