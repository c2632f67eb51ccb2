//! connect-sim against the Connect API's documented behaviour (connect-api.md). One binary,
//! one module per topic:
//! - `api`: auth, error shapes, the version header, trailing slashes, 404/405, health;
//! - `filters`: SCIM filters on vaults and items, `+` and `%20`, refusals;
//! - `writes`: create, PUT, PATCH, DELETE, versions and counts, the restricted token;
//! - `files`: file lists, inline content and 413, content with Content-Disposition;
//! - `activity`: the APIRequest log with limit, offset and Content-Range;
//! - `data`: `--data` files, valid and invalid;
//! - `binary`: the `connect-sim` command line over real sockets, HTTP and HTTPS.

mod activity;
mod api;
mod binary;
mod data;
mod files;
mod filters;
mod writes;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use connect_sim::Sim;
use connect_sim::demo::*;
use connect_sim::store::Store;
use serde_json::Value;
use tower::ServiceExt;

/// The full-access token.
pub const TOKEN: &str = "sim-token";
/// The restricted token: only [`OTHER_VAULT_ID`].
pub const NARROW: &str = "narrow-token";

/// The demo app with a restricted token.
pub fn app() -> Router {
    app_with(Store::demo())
}

/// An app over `store` with the same tokens.
pub fn app_with(store: Store) -> Router {
    connect_sim::app(sim(store))
}

/// The tokens over `store`.
pub fn sim(store: Store) -> Sim {
    Sim::new(TOKEN, store)
        .unwrap()
        .restricted(NARROW, [OTHER_VAULT_ID])
        .unwrap()
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the Connect error shape with `status`, and returns the message.
    pub fn error(&self, status: StatusCode) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.headers["content-type"], "application/json");
        let body = self.json();
        assert_eq!(body["status"], status.as_u16(), "{body}");
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "only status and message: {body}"
        );
        body["message"]
            .as_str()
            .expect("message is a string")
            .to_owned()
    }
}

/// Sends one request; `token` None sends no Authorization header.
pub async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// GET with the full token.
pub async fn get(app: &Router, uri: &str) -> Answer {
    send(app, "GET", uri, Some(TOKEN), None).await
}

/// A request with the full token and a JSON body, expecting 200; returns the JSON.
pub async fn ok(app: &Router, method: &str, uri: &str, body: Option<Value>) -> Value {
    let answer = send(app, method, uri, Some(TOKEN), body).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{method} {uri}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()
}

/// The items path of the demo vault.
pub fn items() -> String {
    format!("/v1/vaults/{DEMO_VAULT_ID}/items")
}
