//! One module per class of ../shared/reference/threats.md. Each case goes over a raw socket to
//! a recording upstream and asserts the status, that nothing reached the upstream, and (where
//! the proxy answered) the receipt.

use claw_tests::recorder::Recorder;

use super::*;

/// A stack whose Connect upstream records what reaches it (and answers a DATABASE item).
async fn recorded() -> (Stack, String, Recorder) {
    let item = serde_json::json!({"id": DEMO_DB_ITEM_ID, "title": "t", "category": "DATABASE", "vault": {"id": DEMO_VAULT_ID}});
    let (recorder, addr) = Recorder::start(item).await;
    // The vault by id: the proxy then never asks the upstream for its name, so every request
    // the recorder sees is one the agent made.
    let seed = std::str::from_utf8(claw_tests::SEED).unwrap().replace(
        "\"vault_agent_secrets_prod\"",
        &format!("\"{DEMO_VAULT_ID}\""),
    );
    let stack = Stack::start(seed.as_bytes(), Upstream::At(addr)).await;
    let token = stack.mint(POLICY, "job-1", None);
    (stack, token, recorder)
}

/// Sends `head` (with `{auth}` replaced by the Proxy-Authorization line) and expects `status`
/// with nothing reaching the upstream.
async fn refused(
    stack: &Stack,
    token: &str,
    recorder: &Recorder,
    head: &str,
    status: u16,
) -> RawResponse {
    let bytes = head.replace(
        "{auth}",
        &format!("Proxy-Authorization: {}\r\n", basic("job-1", token)),
    );
    let response = raw::send(stack.addr(), bytes.as_bytes()).await;
    assert_eq!(response.status, status, "{head:?}: {}", response.text());
    assert_eq!(
        recorder.count(),
        0,
        "{head:?} reached the upstream: {:?}",
        recorder.heads()
    );
    response
}

fn receipted(stack: &Stack, response: &RawResponse) {
    let id = response
        .header("x-clawproxy-receipt")
        .expect("a receipt id");
    let receipt = stack.receipt(id);
    assert!(!receipt.decision.unwrap().allow);
}

mod framing {
    use super::*;

    #[tokio::test]
    async fn conflicting_or_broken_framing_is_refused() {
        let (stack, token, recorder) = recorded().await;
        let path = item_path(DEMO_DB_ITEM_ID);
        // hyper resolves Content-Length + Transfer-Encoding by the chunked framing (RFC 9112
        // §6.3) and hides the conflict from us; what must hold is that nothing is smuggled: the
        // bytes after the chunked body are a second request, checked on its own (no token: 407),
        // and the proxy re-frames what it forwards.
        let smuggle = format!(
            "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n{{auth}}Content-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nDELETE http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n\r\n"
        );
        let bytes = smuggle.replace(
            "{auth}",
            &format!("Proxy-Authorization: {}\r\n", basic("job-1", &token)),
        );
        let mut stream = tokio::net::TcpStream::connect(stack.addr()).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, bytes.as_bytes())
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
        let base = recorder.count();
        for head in [
            format!(
                "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n{{auth}}X-A: 1\r\n folded\r\n\r\n"
            ),
            format!(
                "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n{{auth}}X-A: a\0b\r\n\r\n"
            ),
            format!(
                "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n{{auth}}Transfer-Encoding: chunked\r\n\r\nzz\r\n"
            ),
            format!(
                "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n{{auth}}X-Big: {}\r\n\r\n",
                "a".repeat(20_000)
            ),
        ] {
            let bytes = head.replace(
                "{auth}",
                &format!("Proxy-Authorization: {}\r\n", basic("job-1", &token)),
            );
            let response = raw::send(stack.addr(), bytes.as_bytes()).await;
            assert!(
                matches!(response.status, 400 | 413 | 431 | 0),
                "{:?}: {}",
                &head[..60],
                response.status
            );
            assert_eq!(recorder.count(), base, "nothing more reached the upstream");
        }
    }
}

mod authority {
    use super::*;

    #[tokio::test]
    async fn host_must_match_the_request_authority() {
        let (stack, token, recorder) = recorded().await;
        let path = item_path(DEMO_DB_ITEM_ID);
        for head in [
            format!(
                "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: evil.example\r\n{{auth}}\r\n"
            ),
            format!("GET http://connect.1password.com{path} HTTP/1.1\r\n{{auth}}\r\n"),
            format!(
                "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\nHost: evil.example\r\n{{auth}}\r\n"
            ),
            format!(
                "GET http://x@connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n{{auth}}\r\n"
            ),
            format!("GET {path} HTTP/1.1\r\nHost: connect.1password.com\r\n{{auth}}\r\n"),
        ] {
            let response = refused(&stack, &token, &recorder, &head, 400).await;
            assert!(response.json()["message"].is_string());
        }
    }
}

mod hosts {
    use super::*;

    #[tokio::test]
    async fn hosts_outside_the_contract_are_denied_however_spelt() {
        let (stack, token, recorder) = recorded().await;
        for host in [
            "evil.example",
            "connect.1password.com.evil.example",
            "evilconnect.1password.com",
            "127.0.0.1",
            "2130706433",
            "0x7f.1",
            "169.254.169.254",
            "[::1]",
            "localhost",
        ] {
            let head = format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\n{{auth}}\r\n");
            let response = refused(&stack, &token, &recorder, &head, 403).await;
            assert!(
                response.text().contains("network_egress"),
                "{host}: {}",
                response.text()
            );
            receipted(&stack, &response);
        }
        // Case and a trailing dot still name the allowed host.
        let head = format!(
            "GET http://CONNECT.1password.com.{} HTTP/1.1\r\nHost: connect.1password.com.\r\n{{auth}}\r\n",
            item_path(DEMO_DB_ITEM_ID)
        );
        let bytes = head.replace(
            "{auth}",
            &format!("Proxy-Authorization: {}\r\n", basic("job-1", &token)),
        );
        assert_eq!(raw::send(stack.addr(), bytes.as_bytes()).await.status, 200);
    }

    #[tokio::test]
    async fn connect_tunnels_to_unlisted_or_private_targets_are_denied() {
        let (stack, token, recorder) = recorded().await;
        for target in [
            "evil.example:443",
            "127.0.0.1:443",
            "connect.1password.com:22",
            "api.1password.com:8443",
        ] {
            let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{{auth}}\r\n");
            refused(&stack, &token, &recorder, &head, 403).await;
        }
    }
}

mod paths {
    use super::*;

    #[tokio::test]
    async fn ambiguous_paths_are_denied() {
        let (stack, token, recorder) = recorded().await;
        let v = DEMO_VAULT_ID;
        for path in [
            format!("/v1/vaults/{v}/items/a%2f..%2f{DEMO_DB_ITEM_ID}"),
            format!("/v1/vaults/{v}/items/{DEMO_DB_ITEM_ID}%00"),
            format!("/v1/vaults/{v}/items/%252e%252e/{DEMO_DB_ITEM_ID}"),
            format!("/v1/vaults/{v}/items/%c0%ae%c0%ae/{DEMO_DB_ITEM_ID}"),
            format!("/v1/vaults/{v};x=1/items/{DEMO_DB_ITEM_ID}"),
            format!("/v1/vaults/{v}/items/{DEMO_DB_ITEM_ID}/../../../../etc/passwd"),
        ] {
            let head = format!(
                "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n{{auth}}\r\n"
            );
            let response = refused(&stack, &token, &recorder, &head, 403).await;
            receipted(&stack, &response);
        }
    }

    #[tokio::test]
    async fn the_normalised_path_is_what_is_forwarded() {
        let (stack, token, recorder) = recorded().await;
        let path = format!("/v1//vaults/{DEMO_VAULT_ID}/./items/x/../{DEMO_DB_ITEM_ID}/");
        let head = format!(
            "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\nProxy-Authorization: {}\r\n\r\n",
            basic("job-1", &token)
        );
        assert_eq!(raw::send(stack.addr(), head.as_bytes()).await.status, 200);
        let forwarded = &recorder.heads()[0];
        assert!(
            forwarded.starts_with(&format!("GET {} HTTP/1.1", item_path(DEMO_DB_ITEM_ID))),
            "{forwarded}"
        );
    }
}

mod methods {
    use super::*;

    #[tokio::test]
    async fn overrides_upgrades_and_odd_methods_are_refused() {
        let (stack, token, recorder) = recorded().await;
        let path = item_path(DEMO_DB_ITEM_ID);
        for extra in [
            "X-HTTP-Method-Override: DELETE\r\n",
            "X-HTTP-Method: DELETE\r\n",
            "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
            "Upgrade: websocket\r\nConnection: Upgrade\r\n",
        ] {
            let head = format!(
                "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n{extra}{{auth}}\r\n"
            );
            let response = refused(&stack, &token, &recorder, &head, 403).await;
            receipted(&stack, &response);
        }
        for method in ["TRACE", "OPTIONS", "HEAD", "get"] {
            let head = format!(
                "{method} http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\n{{auth}}\r\n"
            );
            let bytes = head.replace(
                "{auth}",
                &format!("Proxy-Authorization: {}\r\n", basic("job-1", &token)),
            );
            let response = raw::send(stack.addr(), bytes.as_bytes()).await;
            assert!(
                matches!(response.status, 403 | 400),
                "{method}: {}",
                response.status
            );
            assert_eq!(recorder.count(), 0, "{method}");
        }
    }
}

mod credentials {
    use super::*;

    #[tokio::test]
    async fn the_agents_credentials_never_reach_upstream_and_the_real_one_does() {
        let (stack, token, recorder) = recorded().await;
        let head = format!(
            "GET http://connect.1password.com{} HTTP/1.1\r\nHost: connect.1password.com\r\nProxy-Authorization: {}\r\nAuthorization: Bearer agent-placeholder\r\nConnection: keep-alive, X-Secret\r\nX-Secret: hop\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-For: 1.2.3.4\r\nX-Clawproxy-Receipt: forged\r\n\r\n",
            item_path(DEMO_DB_ITEM_ID),
            basic("job-1", &token)
        );
        let response = raw::send(stack.addr(), head.as_bytes()).await;
        assert_eq!(response.status, 200);
        let forwarded = recorder.heads()[0].to_ascii_lowercase();
        assert!(
            forwarded.contains(&format!("authorization: bearer {}", claw_tests::SIM_TOKEN)),
            "{forwarded}"
        );
        for leaked in [
            "agent-placeholder",
            "proxy-authorization",
            "x-secret",
            "forwarded",
            "x-forwarded-for",
            "x-clawproxy",
            &token.to_ascii_lowercase(),
        ] {
            assert!(
                !forwarded.contains(leaked),
                "{leaked} reached upstream: {forwarded}"
            );
        }
        assert_ne!(response.header("x-clawproxy-receipt"), Some("forged"));
    }
}
