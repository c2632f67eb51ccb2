//! `proxy`: the pure request-head handling of clawproxy, without a server.
//!
//! Input: an HTTP/1 request head as text (`METHOD URI`, then `Name: value` lines, a blank line,
//! a body). It is built into an `http::Request` the way hyper would hand it over (a head hyper
//! would refuse is skipped), then goes through what the proxy does before anything leaves:
//! the target's authority (`Target::from_absolute`, `from_connect`, `inner` of an intercepted
//! tunnel), proxy credentials, the egress check, the refusal of overrides and upgrades, the
//! classifier on the path and query, the write-body inspection, the evaluator, and header
//! hygiene on both legs with secret redaction.
//!
//! Invariants: a target's host is non-empty, lowercase, without a trailing dot or userinfo,
//! its port non-zero; an allowed egress names a host of the contract; cleaned requests carry
//! no hop-by-hop, nominated, forwarded or `x-clawproxy-*` header, cleaned responses no
//! hop-by-hop or `x-clawproxy-*` header; after redaction the secret appears nowhere; after
//! injection there is exactly one `Authorization`; the evaluator allows only operations the
//! contract allows, in a vault it lists.

use std::sync::OnceLock;

use claw_policy::classify::{self, Op};
use claw_policy::contract::{Contract, Operation};
use claw_policy::egress;
use claw_policy::evaluate::{self, Decision, VaultRef};
use claw_proxy::hygiene;
use claw_proxy::stack::Target as ProxyTarget;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};

use crate::engine::{Target, Trace};

/// The target.
pub const TARGET: Target = Target {
    name: "proxy",
    about: "request head: target authority + Host, credentials, egress, classify, body, hygiene",
    // http::Uri takes up to 64 KiB, and hyper's head buffer more.
    max_len: 64 * 1024,
    dictionary: &[
        b"GET ",
        b"CONNECT ",
        b"POST ",
        b"PATCH ",
        b"http://",
        b"https://",
        b"connect.1password.com",
        b"Connect.1Password.com.",
        b"[::1]",
        b"[::ffff:127.0.0.1]",
        b"[fe80::1%25eth0]",
        b"0x7f.1",
        b"2130706433",
        b"127.1",
        b":0",
        b":80",
        b":443",
        b":65536",
        b"user:pw@",
        b"\r\nHost: ",
        b"\r\nProxy-Authorization: Basic ",
        b"\r\nProxy-Authorization: Bearer ",
        b"\r\nConnection: ",
        b"\r\nUpgrade: h2c",
        b"\r\nHTTP2-Settings: AAA",
        b"\r\nX-HTTP-Method-Override: DELETE",
        b"\r\nX-Forwarded-For: 1.2.3.4",
        b"\r\nForwarded: for=x",
        b"\r\nX-Clawproxy-Receipt: forged",
        b"\r\nTransfer-Encoding: chunked",
        b"\r\nContent-Length: 5",
        b"\r\nAuthorization: Bearer agent",
        b"\r\nTE: trailers",
        b"\r\n\r\n",
        b"s3cr3t-connect-token",
        b"{\"vault\":{\"id\":\"ytrfte14kw1uex5txaore1emkz\"},\"category\":\"LOGIN\"}",
        b"[{\"op\":\"replace\",\"path\":\"/category\",\"value\":\"LOGIN\"}]",
        b"\"/vault/id\"",
        b"/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/x4tpzrqojj2ahmv3w7nb6vu2pe",
    ],
    run,
};

/// The secret the proxy injects upstream and must never echo downstream.
const SECRET: &[u8] = b"s3cr3t-connect-token";

/// The contract the egress check and the evaluator run under.
fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        Contract::from_slice(include_bytes!(
            "../../../examples/policies/1password-writer.json"
        ))
        .expect("the writer example is a valid contract")
    })
}

/// The intercepted tunnel inner requests arrive on.
fn tunnel() -> ProxyTarget {
    ProxyTarget {
        scheme: "https",
        host: "connect.1password.com".into(),
        port: 443,
        path: String::new(),
        query: None,
    }
}

fn run(input: &[u8], trace: &mut Trace) {
    let Some((request, body)) = build(input, trace) else {
        return;
    };
    let method = request.method().clone();

    if method == Method::CONNECT {
        let t = ProxyTarget::from_connect(&request);
        authority(trace, "connect", &t);
        if let Ok(t) = t {
            check_target(&t, trace);
        }
    } else {
        let t = ProxyTarget::from_absolute(&request);
        authority(trace, "absolute", &t);
        if let Ok(t) = t {
            check_target(&t, trace);
        }
    }
    let inner = tunnel().inner(&request);
    authority(trace, "inner", &inner);
    if let Ok(t) = inner {
        assert_eq!((t.host.as_str(), t.port), ("connect.1password.com", 443));
        check_target(&t, trace);
    }

    let credentials = claw_proxy::auth::credentials(request.headers());
    trace.outcome("credentials", &credentials);
    let refusal = hygiene::refuse_unsafe(request.headers());
    trace.step(if refusal.is_ok() { "safe" } else { "unsafe" });

    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let classified = classify::classify(method.as_str(), &path_and_query);
    trace.outcome("classify", &classified);
    if let Ok(c) = &classified
        && let Op::Known(op) = c.op
    {
        trace.step(op.as_str());
        decide(op, c, body, trace);
    }

    headers(request.headers(), body, trace);
}

/// Records an authority check's result by its first two plain words: its messages name hosts
/// and quote headers.
fn authority(trace: &mut Trace, step: &str, result: &Result<ProxyTarget, String>) {
    let label = match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e
            .split_whitespace()
            .take_while(|w| w.bytes().all(|b| b.is_ascii_alphabetic()))
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    };
    trace.step(&format!("{step}:{label}"));
}

/// Parses the head into a request as hyper would deliver it; `None` for a head hyper refuses.
fn build<'a>(input: &'a [u8], trace: &mut Trace) -> Option<(Request<()>, &'a [u8])> {
    let (head, body) = match find(input, b"\r\n\r\n") {
        Some(i) => (&input[..i], &input[i + 4..]),
        None => match find(input, b"\n\n") {
            Some(i) => (&input[..i], &input[i + 2..]),
            None => (input, &[][..]),
        },
    };
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut words = first.splitn(3, |b| *b == b' ');
    let method = Method::from_bytes(words.next().unwrap_or_default());
    let uri = Uri::try_from(words.next().unwrap_or_default());
    let (Ok(method), Ok(uri)) = (method, uri) else {
        trace.step("unparsed");
        return None;
    };
    let mut headers = HeaderMap::new();
    let mut skipped = false;
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            skipped = true;
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon]);
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        match (name, value) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => skipped = true,
        }
    }
    // Whether a line was skipped, not how many: counts would make every input look new.
    trace.step(if skipped { "skipped header" } else { "headers" });
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Some((request, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn check_target(t: &ProxyTarget, trace: &mut Trace) {
    assert!(!t.host.is_empty(), "empty host");
    assert!(!t.host.ends_with('.'), "trailing dot in {:?}", t.host);
    assert!(!t.host.contains('@'), "userinfo in {:?}", t.host);
    assert_eq!(t.host, t.host.to_ascii_lowercase(), "host not lowercase");
    assert_ne!(t.port, 0);

    let sandbox = &contract().document().sandbox;
    let decision = egress::check_egress(sandbox, &t.host, t.port);
    trace.step(decision.rule());
    if decision.is_allow() {
        let host = egress::canonical_host(&t.host).expect("an allowed host canonicalises");
        assert!(
            sandbox
                .network_egress
                .iter()
                .any(|e| e.split(':').next() == Some(host.as_str())),
            "egress allowed {host:?}, which the contract does not name"
        );
    }
    if let Some(ip) = egress::parse_ip_literal(&t.host) {
        trace.outcome("ip", &ip);
        if let Ok(ip) = ip {
            trace.step(&format!("{:?}", egress::classify_ip(ip)));
        }
    }
}

/// The body inspection and the evaluator under the writer contract.
fn decide(op: Operation, c: &classify::Classified, body: &[u8], trace: &mut Trace) {
    let facts = evaluate::inspect_body(op, body);
    trace.outcome("body", &facts);
    let category = facts.as_ref().ok().and_then(|f| f.category);
    let doc = contract().document();
    let request = evaluate::Request {
        op,
        vault: c.vault.as_ref().map(|id| VaultRef {
            id: id.clone(),
            name: None,
        }),
        item: c.item.clone(),
        item_title: None,
        category,
    };
    let decision = evaluate::evaluate(doc, &doc.tool_scope, &request);
    trace.step(decision.rule());
    if let Decision::Allow { .. } = decision {
        let scope = &doc.tool_scope;
        assert!(scope.allowed_operations.contains(&op) && !scope.deny_operations.contains(&op));
        if let Some(vault) = &c.vault {
            assert!(
                scope.allowed_vaults.contains(vault),
                "vault {vault:?} allowed"
            );
        }
        if let Some(category) = category {
            assert!(scope.allowed_categories.contains(&category));
        }
    }
}

/// Hygiene on both legs, injection and redaction.
fn headers(original: &HeaderMap, body: &[u8], trace: &mut Trace) {
    let nominated: Vec<String> = original
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let hop = |name: &str| {
        matches!(
            name,
            "connection"
                | "keep-alive"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
        ) || nominated.iter().any(|n| n == name)
    };

    let mut request = original.clone();
    hygiene::clean_request(&mut request);
    for name in request.keys() {
        let name = name.as_str();
        assert!(!hop(name), "{name} survived clean_request");
        assert!(
            name != "forwarded"
                && !name.starts_with("x-forwarded-")
                && !name.starts_with(hygiene::OWN_PREFIX),
            "{name} survived clean_request"
        );
    }
    hygiene::inject_bearer(&mut request, "s3cr3t-connect-token").expect("a plain token injects");
    assert_eq!(request.get_all(header::AUTHORIZATION).iter().count(), 1);

    let mut response = original.clone();
    hygiene::clean_response(&mut response);
    for name in response.keys() {
        let name = name.as_str();
        assert!(!hop(name), "{name} survived clean_response");
        assert!(!name.starts_with(hygiene::OWN_PREFIX));
    }
    let mut echoed = body.to_vec();
    let hit = hygiene::redact(&mut response, &mut echoed, SECRET);
    trace.step(if hit { "redacted" } else { "clean" });
    assert!(
        find(&echoed, SECRET).is_none(),
        "the secret survived in the body"
    );
    for value in response.values() {
        assert!(
            find(value.as_bytes(), SECRET).is_none(),
            "the secret survived in a header"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_reach_targets_and_known_operations() {
        let head = b"GET http://connect.1password.com/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/x4tpzrqojj2ahmv3w7nb6vu2pe HTTP/1.1\r\nHost: connect.1password.com\r\n\r\n";
        let (request, _) = build(head, &mut Trace::default()).unwrap();
        let t = ProxyTarget::from_absolute(&request).unwrap();
        assert!(egress::check_egress(&contract().document().sandbox, &t.host, t.port).is_allow());
        for seed in crate::load_corpus(&crate::corpus_dir("proxy")).unwrap() {
            run(&seed, &mut Trace::default());
        }
    }
}
