//! `clawcontrols serve`: the registry as a read-only HTTP API.
//!
//! `GET /v1/contracts` lists names, versions and the active hash; `GET /v1/contracts/{hash}`
//! returns a stored envelope; `GET /v1/contracts/by-name/{name}` the active envelope of a name.
//! Unknown names or hashes answer 404 with `{"status":404,"message":…}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::registry::{Registry, RegistryError};

/// The read-only registry API.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/v1/contracts", get(list))
        .route("/v1/contracts/{hash}", get(by_hash))
        .route("/v1/contracts/by-name/{name}", get(by_name))
        .with_state(registry)
}

async fn list(State(registry): State<Registry>) -> Response {
    match registry.index() {
        Ok(index) => Json(index.contracts).into_response(),
        Err(error) => failure(&error),
    }
}

async fn by_hash(State(registry): State<Registry>, Path(hash): Path<String>) -> Response {
    match registry.envelope(&hash) {
        Ok(envelope) => Json(envelope).into_response(),
        Err(error) => failure(&error),
    }
}

async fn by_name(State(registry): State<Registry>, Path(name): Path<String>) -> Response {
    let active = match registry.index() {
        Ok(index) => index.contracts.get(&name).map(|e| e.active.clone()),
        Err(error) => return failure(&error),
    };
    match active {
        Some(hash) => by_hash(State(registry), Path(hash)).await,
        None => failure(&RegistryError::NotFound(name)),
    }
}

fn failure(error: &RegistryError) -> Response {
    let status = match error {
        RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match error {
        RegistryError::NotFound(_) => error.to_string(),
        // Internal detail (paths) stays in the server's own output.
        _ => "registry unavailable".to_owned(),
    };
    let body = serde_json::json!({ "status": status.as_u16(), "message": message });
    (status, Json(body)).into_response()
}
