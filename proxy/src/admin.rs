//! The admin listener: `/healthz` (the process is up), `/readyz` (the log can take receipts
//! and, in a fleet, the shared revocation list is current) and Prometheus `/metrics`; and,
//! when `admin_token_file` is set, the approval routes for approvers' tools:
//!
//! ```text
//! GET  /approvals                    the held requests, as `clawcontrols approvals --json`
//! POST /approvals/<id>/approve       {"as": "alice", "reason": "…"?}  → the decision
//! POST /approvals/<id>/deny          {"as": "alice", "reason": "…"?}
//! ```
//!
//! Each needs `Authorization: Bearer <token>`. The routes decide through the same store as
//! `clawcontrols approve|deny` (the data dir, or the fleet's state), so the rules are the same:
//! the name must be one of the rule's approvers, and the first decision stands.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use claw_policy::approval::ApprovalError;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::respond::Body;
use crate::stack::Proxy;

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(answer(&proxy, request).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Shortest admin token accepted: guessing it must be out of reach.
const MIN_TOKEN: usize = 32;
/// Largest decision body read.
const MAX_BODY: usize = 4096;

/// Reads the admin token from `path` (mode 0600, at least [`MIN_TOKEN`] characters).
pub(crate) fn read_token(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let bytes = claw_policy::keys::read_secret(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8", path.display()))?;
    let token = text.trim();
    if token.chars().count() < MIN_TOKEN || token.chars().any(char::is_whitespace) {
        anyhow::bail!(
            "{}: the token must be one word of at least {MIN_TOKEN} characters \
             (e.g. `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`)",
            path.display()
        );
    }
    Ok(Zeroizing::new(token.to_owned()))
}

async fn answer(proxy: &Proxy, request: Request<Incoming>) -> Response<Body> {
    if request.uri().path() == "/approvals" || request.uri().path().starts_with("/approvals/") {
        return approvals(proxy, request).await;
    }
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if proxy.evidence.is_poisoned() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "receipt log poisoned after a write or fsync error; restart the proxy\n",
                )
            } else if proxy.drain.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            } else if let Some(stale) = proxy.auth.fleet_stale() {
                // A balancer should send agents to a proxy that can decide.
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("{stale}; every token is refused until PostgreSQL answers\n"),
                )
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        "/metrics" => {
            let mut response = text(
                StatusCode::OK,
                &proxy.metrics.render(&proxy.evidence.metrics()),
            );
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4".parse().expect("static header"),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /healthz /readyz /metrics /approvals\n",
        ),
    }
}

/// What an approver sends to decide.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    /// The approver's name (one of the rule's `approvers`).
    #[serde(rename = "as")]
    by: String,
    /// A note for the receipt.
    #[serde(default)]
    reason: Option<String>,
}

async fn approvals(proxy: &Proxy, request: Request<Incoming>) -> Response<Body> {
    if !proxy.admin_approvals_on() {
        return json_error(
            StatusCode::NOT_FOUND,
            "the approval routes are off: set admin_token_file in clawproxy.toml",
        );
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if !bearer.is_some_and(|token| proxy.is_admin_token(token)) {
        let mut response = json_error(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <the token in admin_token_file>",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"clawproxy-admin\""
                .parse()
                .expect("static header"),
        );
        return response;
    }
    let path = request.uri().path().to_owned();
    let now = crate::hold::now_ms();
    let parts: Vec<&str> = path.split('/').collect();
    match (request.method().clone(), &parts[..]) {
        (Method::GET, &["", "approvals"]) => match proxy.approvals().pending(now).await {
            Ok(pending) => {
                let rows: Vec<_> = pending.iter().map(|held| held.listing(now)).collect();
                json(StatusCode::OK, &serde_json::Value::from(rows))
            }
            Err(error) => approval_error(&error),
        },
        (Method::POST, &["", "approvals", id, verb @ ("approve" | "deny")]) => {
            let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    return json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("the body must be JSON of at most {MAX_BODY} bytes"),
                    );
                }
            };
            let decision = match serde_json::from_slice::<Decision>(&body) {
                Ok(d) if !d.by.trim().is_empty() => d,
                _ => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "send {\"as\": \"<approver>\", \"reason\": \"…\"} (reason optional)",
                    );
                }
            };
            let approve = verb == "approve";
            match proxy
                .approvals()
                .decide(id, &decision.by, approve, decision.reason, now)
                .await
            {
                Ok(verdict) => {
                    tracing::info!(id, by = %decision.by, outcome = verdict.outcome.as_str(), "approval decided over the admin API");
                    json(
                        StatusCode::OK,
                        &serde_json::to_value(&verdict).expect("a verdict serialises"),
                    )
                }
                Err(error) => approval_error(&error),
            }
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not found: GET /approvals, POST /approvals/<id>/approve, POST /approvals/<id>/deny",
        ),
    }
}

fn approval_error(error: &ApprovalError) -> Response<Body> {
    let status = match error {
        ApprovalError::BadId(_) => StatusCode::BAD_REQUEST,
        ApprovalError::Unknown(_) => StatusCode::NOT_FOUND,
        ApprovalError::Expired(_) | ApprovalError::Decided(_) => StatusCode::CONFLICT,
        ApprovalError::NotApprover { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_error(status, &error.to_string())
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"status": status.as_u16(), "message": message}),
    )
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = text(status, &format!("{value}\n"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
    response
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn token_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join("admin.token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_admin_token_is_private_long_and_one_word() {
        let tmp = tempfile::tempdir().unwrap();
        let good = "A".repeat(MIN_TOKEN);
        let read = read_token(&token_file(tmp.path(), &format!("{good}\n"), 0o600)).unwrap();
        assert_eq!(read.as_str(), good);
        let readable = read_token(&token_file(tmp.path(), &good, 0o644)).unwrap_err();
        assert!(format!("{readable:#}").contains("644"), "{readable:#}");
        for bad in ["short", "", &format!("{good} {good}")] {
            let err = read_token(&token_file(tmp.path(), bad, 0o600)).unwrap_err();
            assert!(err.to_string().contains("at least 32"), "{bad:?}: {err}");
            assert!(
                !err.to_string().contains(&good),
                "the token is never echoed"
            );
        }
    }
}
