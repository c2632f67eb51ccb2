//! Every answer the proxy itself gives, in one place.
//!
//! Bodies use the Connect error shape `{"status": N, "message": "…"}` so the official SDKs raise
//! their typed errors (the Python SDK calls `response.json()` on every error). Messages name
//! the rule or the fix and never carry internal detail or secret material.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// The body type of every response the proxy sends downstream.
pub type Body = Full<Bytes>;

/// A response in the Connect error shape.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "status": status.as_u16(), "message": message });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 407: missing or bad job token.
pub fn proxy_auth_required(reason: &str) -> Response<Body> {
    let mut response = error(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        &format!("proxy authentication required: {reason}"),
    );
    response.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"clawproxy\""),
    );
    response
}

/// 407 for refused credentials; 503 when they could not be checked (fail closed).
pub fn auth_refused(refused: &crate::auth::Refused) -> Response<Body> {
    if refused.unavailable {
        state_unavailable(&refused.reason)
    } else {
        proxy_auth_required(&refused.reason)
    }
}

/// 503 with `Retry-After: 1`: state the decision needs (revocations, a fleet's budgets) cannot
/// be confirmed now, so nothing passes until it can.
pub fn state_unavailable(reason: &str) -> Response<Body> {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("clawproxy cannot decide now; retry shortly: {reason}"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    response
}

/// 403: a contract rule refused the request.
pub fn denied(rule: &str, reason: &str) -> Response<Body> {
    error(
        StatusCode::FORBIDDEN,
        &format!("denied by clawproxy (rule {rule}): {reason}"),
    )
}

/// 429: over the contract's rate limit, with `Retry-After` in seconds.
pub fn rate_limited(reason: &str, retry_after: u64) -> Response<Body> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("denied by clawproxy (rule rate_limit): {reason}"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// 400: the request cannot be handled safely as sent.
pub fn bad_request(reason: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, &format!("bad request: {reason}"))
}

/// 503: the receipt could not be made durable, so nothing is released.
pub fn receipt_failed() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "clawproxy could not record a durable receipt for this call; nothing was released",
    )
}

/// 502 or 504: the upstream failed.
pub fn upstream_failed(timeout: bool) -> Response<Body> {
    if timeout {
        error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream did not answer in time",
        )
    } else {
        error(StatusCode::BAD_GATEWAY, "upstream connection failed")
    }
}

/// 413: a body larger than the proxy inspects.
pub fn too_large(limit: usize) -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("body larger than the {limit} bytes clawproxy inspects"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn bodies_use_the_connect_error_shape() {
        let response = denied("deny_operations", "operation delete_item is denied");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["status"], 403);
        assert!(
            value["message"]
                .as_str()
                .unwrap()
                .contains("deny_operations")
        );
    }

    #[test]
    fn proxy_auth_required_asks_for_basic() {
        let response = proxy_auth_required("no token");
        assert_eq!(response.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert_eq!(
            response.headers()[header::PROXY_AUTHENTICATE],
            "Basic realm=\"clawproxy\""
        );
    }
}
