//! Header hygiene on both legs (DESIGN.md "The proxy", step 5).
//!
//! Downstream → upstream: `Proxy-Authorization`, hop-by-hop headers, headers nominated in
//! `Connection` and client-sent `Forwarded`/`X-Forwarded-*` are removed; on a configured
//! upstream the agent's `Authorization` is dropped and the proxy's own token injected.
//! Upstream → downstream: hop-by-hop headers and any `X-Clawproxy-*` header are removed, and
//! the injected token is redacted wherever the upstream echoes it.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy `Proxy-Connection`.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that ask a server to treat the request as another method.
const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The prefix of headers only the proxy may set.
pub const OWN_PREFIX: &str = "x-clawproxy-";

/// Why a request cannot be forwarded to an inspected host.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A method-override header names another method.
    MethodOverride(String),
    /// A protocol switch (`Upgrade`, h2c) was asked for.
    Upgrade,
}

impl Refusal {
    /// The rule its receipt names.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::MethodOverride(_) => "method_override",
            Refusal::Upgrade => "protocol_upgrade",
        }
    }

    /// A plain sentence for the agent.
    pub fn reason(&self) -> String {
        match self {
            Refusal::MethodOverride(name) => {
                format!("method-override header {name} is not allowed through clawproxy")
            }
            Refusal::Upgrade => "protocol upgrades are not allowed on inspected hosts".into(),
        }
    }
}

/// Refuses method overrides and protocol switches on an inspected host.
pub fn refuse_unsafe(headers: &HeaderMap) -> Result<(), Refusal> {
    for name in METHOD_OVERRIDES {
        if headers.contains_key(*name) {
            return Err(Refusal::MethodOverride((*name).to_owned()));
        }
    }
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if headers.contains_key(header::UPGRADE)
        || connection_upgrade
        || headers.contains_key("http2-settings")
    {
        return Err(Refusal::Upgrade);
    }
    Ok(())
}

/// Cleans a request's headers before they go upstream.
pub fn clean_request(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    let forwarded: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k == "forwarded" || k.starts_with("x-forwarded-") || k.starts_with(OWN_PREFIX)
        })
        .cloned()
        .collect();
    for name in forwarded {
        headers.remove(name);
    }
}

/// Replaces the agent's `Authorization` with the proxy's Connect token.
pub fn inject_bearer(
    headers: &mut HeaderMap,
    token: &str,
) -> Result<(), http::header::InvalidHeaderValue> {
    headers.remove(header::AUTHORIZATION);
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
    value.set_sensitive(true);
    headers.insert(header::AUTHORIZATION, value);
    Ok(())
}

/// Cleans a response's headers before they go downstream.
pub fn clean_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    let own: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(OWN_PREFIX))
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
}

/// Replaces every occurrence of `secret` in `body` and in header values with `[redacted]`.
/// Returns whether anything was replaced.
pub fn redact(headers: &mut HeaderMap, body: &mut Vec<u8>, secret: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    let mut hit = false;
    if let Some(replaced) = replace_all(body, secret) {
        *body = replaced;
        hit = true;
    }
    for value in headers.values_mut() {
        if let Some(replaced) = replace_all(value.as_bytes(), secret) {
            if let Ok(v) = HeaderValue::from_bytes(&replaced) {
                *value = v;
            }
            hit = true;
        }
    }
    hit
}

fn replace_all(haystack: &[u8], needle: &[u8]) -> Option<Vec<u8>> {
    let first = haystack.windows(needle.len()).position(|w| w == needle)?;
    let mut out = Vec::with_capacity(haystack.len());
    out.extend_from_slice(&haystack[..first]);
    let mut rest = &haystack[first..];
    while !rest.is_empty() {
        if rest.starts_with(needle) {
            out.extend_from_slice(b"[redacted]");
            rest = &rest[needle.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    Some(out)
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let nominated: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in nominated {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn request_loses_proxy_hop_and_forwarded_headers() {
        let mut headers = map(&[
            ("proxy-authorization", "Basic x"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-clawproxy-receipt", "forged"),
            ("accept", "application/json"),
        ]);
        clean_request(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn injection_replaces_the_agents_authorization() {
        let mut headers = map(&[("authorization", "Bearer agent-placeholder")]);
        inject_bearer(&mut headers, "real").unwrap();
        assert_eq!(headers.get_all(header::AUTHORIZATION).iter().count(), 1);
        assert_eq!(headers[header::AUTHORIZATION], "Bearer real");
        assert!(headers[header::AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn overrides_and_upgrades_are_refused() {
        for (k, v) in [
            ("x-http-method-override", "DELETE"),
            ("X-HTTP-Method", "DELETE"),
            ("x-method-override", "PUT"),
        ] {
            assert!(matches!(
                refuse_unsafe(&map(&[(k, v)])),
                Err(Refusal::MethodOverride(_))
            ));
        }
        assert_eq!(
            refuse_unsafe(&map(&[("upgrade", "h2c")])),
            Err(Refusal::Upgrade)
        );
        assert_eq!(
            refuse_unsafe(&map(&[("connection", "Upgrade")])),
            Err(Refusal::Upgrade)
        );
        assert_eq!(
            refuse_unsafe(&map(&[("http2-settings", "AAA")])),
            Err(Refusal::Upgrade)
        );
        assert!(refuse_unsafe(&map(&[("accept", "*/*")])).is_ok());
    }

    #[test]
    fn responses_lose_forged_own_headers_and_echoed_tokens() {
        let mut headers = map(&[
            ("x-clawproxy-receipt", "forged"),
            ("x-echo", "token=s3cr3t"),
            ("content-type", "application/json"),
        ]);
        clean_response(&mut headers);
        assert!(!headers.contains_key("x-clawproxy-receipt"));
        let mut body = b"{\"auth\":\"Bearer s3cr3t\",\"again\":\"s3cr3ts3cr3t\"}".to_vec();
        assert!(redact(&mut headers, &mut body, b"s3cr3t"));
        assert_eq!(
            body,
            b"{\"auth\":\"Bearer [redacted]\",\"again\":\"[redacted][redacted]\"}"
        );
        assert_eq!(headers["x-echo"], "token=[redacted]");
        assert!(!redact(&mut headers, &mut body, b"absent"));
    }
}
