//! One module per class of ../shared/reference/threats.md. Each case goes over a raw socket to
//! a recording upstream and asserts the status, that nothing reached the upstream, and (where
//! the proxy answered) the receipt.

use super::*;

/// A stack whose Connect upstream records what reaches it (and answers a DATABASE item).
async fn recorded() -> (Stack, String, Recorder) {
    recording_stack(Answer::Json(db_item()), "").await
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

mod ssrf {
    use super::*;

    /// Hosts the contract allows by name whose addresses are local, private or link-local.
    const LOCAL_BY_NAME: &[&str] = &[
        "localhost",
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
    ];

    /// A stack whose contract's egress list names every host in [`LOCAL_BY_NAME`].
    async fn permissive() -> (Stack, String, Recorder) {
        let hosts: Vec<String> = LOCAL_BY_NAME.iter().map(|h| format!("\"{h}\"")).collect();
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
            let response = refused(&stack, &token, &recorder, &head, 403).await;
            assert!(
                response.text().contains("address_class"),
                "{host}: {}",
                response.text()
            );
            receipted(&stack, &response);
            let head = format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n{{auth}}\r\n");
            let response = refused(&stack, &token, &recorder, &head, 403).await;
            assert!(
                response.text().contains("address_class"),
                "CONNECT {host}: {}",
                response.text()
            );
            receipted(&stack, &response);
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

    #[tokio::test]
    async fn redirects_are_never_followed_and_the_follow_up_is_checked_again() {
        let other_vault = format!(
            "http://connect.1password.com/v1/vaults/zzzzzzzzzzzzzzzzzzzzzzzzzz/items/{DEMO_DB_ITEM_ID}"
        );
        for (status, location, follow_up, rule) in [
            (
                "302 Found",
                "http://169.254.169.254/latest/meta-data/",
                None,
                "network_egress",
            ),
            (
                "301 Moved Permanently",
                "http://evil.example/steal",
                None,
                "network_egress",
            ),
            (
                "307 Temporary Redirect",
                "http://127.0.0.1:8080/v1/vaults",
                None,
                "network_egress",
            ),
            (
                "308 Permanent Redirect",
                other_vault.as_str(),
                None,
                "vault",
            ),
            (
                "303 See Other",
                "https://evil.example/",
                Some("CONNECT evil.example:443"),
                "network_egress",
            ),
        ] {
            let (stack, token, recorder) = redirecting(status, location).await;
            let response = raw::send(stack.addr(), read_db_item(&token, "").as_bytes()).await;
            assert_eq!(
                response.status,
                status[..3].parse::<u16>().unwrap(),
                "{location}: {}",
                response.text()
            );
            assert_eq!(response.header("location"), Some(location));
            assert_eq!(recorder.count(), 1, "the proxy followed {location}");
            assert!(response.header("x-clawproxy-receipt").is_some());

            // The agent follows: a new request, checked on its own.
            let head = match follow_up {
                Some(line) => format!("{line} HTTP/1.1\r\nHost: evil.example:443\r\n{{auth}}\r\n"),
                None => {
                    let host = location.split('/').nth(2).unwrap();
                    format!("GET {location} HTTP/1.1\r\nHost: {host}\r\n{{auth}}\r\n")
                }
            };
            let bytes = head.replace(
                "{auth}",
                &format!("Proxy-Authorization: {}\r\n", basic("job-1", &token)),
            );
            let response = raw::send(stack.addr(), bytes.as_bytes()).await;
            assert_eq!(response.status, 403, "{location}: {}", response.text());
            assert!(
                response.text().contains(rule),
                "{location}: {}",
                response.text()
            );
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
}

mod tokens {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use claw_policy::keys::{self, Purpose};
    use serde_json::{Value, json};

    use super::*;

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
}
