//! Errors: the Connect error body for HTTP answers, and the reasons a data file is refused.
//!
//! Every error the server sends is `{"status": <int>, "message": "<text>"}` with
//! `Content-Type: application/json` (connect-api.md §6). The official Python SDK calls
//! `response.json()` on every error, so a plain-text body would turn its typed
//! `FailedToRetrieve*Exception` into a `JSONDecodeError`. A layer enforces the shape for
//! answers that axum itself produces (extractor rejections, 405s, oversize bodies).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered in the Connect shape.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `message` field.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: invalid input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: a missing or unknown bearer token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the token may not use this vault.
    pub fn forbidden_vault() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization: token does not have access to vault",
        )
    }

    /// 404: `vault {id} not found` and friends.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{kind} {id} not found"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        body(self.status, &self.message)
    }
}

fn body(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response();
    // Keep what axum put there (e.g. `Allow` on 405) out of the way of the JSON content type.
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The longest rejection text copied into a rebuilt error message.
const MAX_REJECTION_TEXT: usize = 512;

/// Rewrites error answers that are not JSON (axum's own rejections) into the Connect shape,
/// keeping status and headers and using the original text, if any, as the message.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, old) = response.into_parts();
    let text = axum::body::to_bytes(old, MAX_REJECTION_TEXT * 4)
        .await
        .unwrap_or_default();
    let mut message: String = String::from_utf8_lossy(&text).trim().to_owned();
    if message.len() > MAX_REJECTION_TEXT {
        let mut cut = MAX_REJECTION_TEXT;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("Error").to_owned();
    }
    let rebuilt = body(status, &message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, new_body) = rebuilt.into_parts();
    Response::from_parts(parts, Body::new(new_body))
}

/// Why a `--data` file (or built-in data) was refused; `pointer` names the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("{path}: at {pointer}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// JSON pointer of the offending value (`/` for the document).
        pointer: String,
        /// What serde said.
        message: String,
    },
    /// A value breaks a rule of the Connect data model.
    #[error("{pointer}: {message}")]
    Invalid {
        /// JSON pointer of the offending value, e.g. `/vaults/0/items/1/category`.
        pointer: String,
        /// What is wrong and what is accepted.
        message: String,
    },
}

impl DataError {
    /// The JSON pointer of the offending field, when known.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            Self::Read { .. } => None,
            Self::Parse { pointer, .. } | Self::Invalid { pointer, .. } => Some(pointer),
        }
    }

    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            Self::Invalid { pointer, message } => Self::Parse {
                path: path.display().to_string(),
                pointer,
                message,
            },
            other => other,
        }
    }
}

/// A rule broken inside one item, with a pointer relative to the item (`/fields/2/purpose`).
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Violation {
    pub(crate) pointer: String,
    pub(crate) message: String,
}

impl Violation {
    pub(crate) fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl From<Violation> for ApiError {
    fn from(v: Violation) -> Self {
        // Connect words field errors as sentences; the pointer helps a client find the value.
        Self::bad_request(format!("{} (at {})", v.message, v.pointer))
    }
}
