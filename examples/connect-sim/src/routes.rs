//! The Connect routes (connect-api.md §2) and the layers around them.
//!
//! Layers, outermost first: the `1Password-Connect-Version` header (so every answer carries it,
//! errors and fallbacks too), the JSON error shape, then logging and metrics; `/v1/*` routes
//! add bearer authentication. Each route is registered with and without one trailing slash,
//! because the JS SDK sends `GET /v1/vaults/` and the like, and the real server answers those
//! directly.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::error::{ApiError, json_errors};
use crate::filter::Filter;
use crate::model::{Item, summary};
use crate::store::{self, Activity, Mode, VaultData, item_id, new_id, normalize, now};
use crate::{CONNECT_VERSION, Sim};

type Shared = Arc<Served>;
type Answer = Result<Response, ApiError>;

/// The server and its counters.
struct Served {
    sim: Sim,
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

/// The server's router, ready for `axum::serve` or `oneshot` in tests.
pub fn app(sim: Sim) -> Router {
    let state: Shared = Arc::new(Served {
        sim,
        requests: Mutex::new(BTreeMap::new()),
    });
    let v1 = [
        ("/v1/activity", get(activity)),
        ("/v1/vaults", get(list_vaults)),
        ("/v1/vaults/{v}", get(get_vault)),
        ("/v1/vaults/{v}/items", get(list_items).post(create_item)),
        (
            "/v1/vaults/{v}/items/{i}",
            get(read_item)
                .put(update_item)
                .patch(patch_item)
                .delete(delete_item),
        ),
        ("/v1/vaults/{v}/items/{i}/files", get(list_files)),
        ("/v1/vaults/{v}/items/{i}/files/{f}", get(get_file)),
        (
            "/v1/vaults/{v}/items/{i}/files/{f}/content",
            get(file_content),
        ),
    ]
    .into_iter()
    .fold(Router::new(), with_trailing_slash)
    .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let open = [
        ("/heartbeat", get(heartbeat)),
        ("/health", get(health)),
        ("/metrics", get(metrics)),
    ]
    .into_iter()
    .fold(Router::new(), with_trailing_slash);
    open.merge(v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "Invalid request path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::map_response(version_header))
        .with_state(state)
}

fn with_trailing_slash(
    router: Router<Shared>,
    (path, route): (&str, MethodRouter<Shared>),
) -> Router<Shared> {
    router
        .route(path, route.clone())
        .route(&format!("{path}/"), route)
}

async fn version_header(mut response: Response) -> Response {
    response.headers_mut().insert(
        "1password-connect-version",
        HeaderValue::from_static(CONNECT_VERSION),
    );
    response
}

/// Logs one line per request (never headers: they hold the token) and counts it.
async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    *state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((method.as_str().to_owned(), status))
        .or_default() += 1;
    tracing::info!(
        %method,
        path,
        status,
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

// === Authentication ===

/// Who is calling: the full token, or the restricted one with its vaults.
#[derive(Clone, Debug)]
struct Caller {
    vaults: Option<Vec<String>>,
    actor: &'static str,
    user_agent: String,
    ip: String,
}

impl Caller {
    fn may_use(&self, vault: &str) -> bool {
        self.vaults
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|a| a == vault))
    }
}

async fn authenticate(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty());
    let Some(presented) = presented else {
        return ApiError::unauthorized("Invalid bearer token").into_response();
    };
    let sim = &state.sim;
    // Compare against both tokens every time, so timing does not tell which one was close.
    let full = sim.token.matches(presented.as_bytes());
    let restricted = sim
        .restricted
        .as_ref()
        .filter(|(token, _)| token.matches(presented.as_bytes()));
    let (vaults, actor) = match (full, restricted) {
        (true, _) => (None, "full"),
        (false, Some((_, vaults))) => (Some(vaults.clone()), "restricted"),
        (false, None) => {
            return ApiError::unauthorized("Invalid token signature").into_response();
        }
    };
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "127.0.0.1".to_owned(), |c| c.0.ip().to_string());
    request.extensions_mut().insert(Caller {
        vaults,
        actor,
        user_agent,
        ip,
    });
    next.run(request).await
}

impl Served {
    fn record(
        &self,
        caller: &Caller,
        action: &str,
        allowed: bool,
        vault: &str,
        item: Option<(&str, u64)>,
    ) {
        self.sim.store.record(Activity {
            action,
            allowed,
            vault,
            item,
            actor: caller.actor,
            user_agent: &caller.user_agent,
            ip: &caller.ip,
        });
    }

    /// Runs `f` on vault `v` after the access check (403, recorded as a denial) and the
    /// existence check (404).
    fn with_vault<T>(
        &self,
        caller: &Caller,
        action: &str,
        v: &str,
        f: impl FnOnce(&mut VaultData) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if !caller.may_use(v) {
            self.record(caller, action, false, v, None);
            return Err(ApiError::forbidden_vault());
        }
        let mut vaults = self.sim.store.lock();
        let vault = vaults
            .iter_mut()
            .find(|d| d.vault.id == v)
            .ok_or_else(|| ApiError::not_found("vault", v))?;
        f(vault)
    }
}

fn find_item<'a>(vault: &'a mut VaultData, i: &str) -> Result<&'a mut Item, ApiError> {
    vault
        .item_mut(i)
        .ok_or_else(|| ApiError::not_found("item", i))
}

fn version_of(item: &Item) -> u64 {
    item.get("version").and_then(Value::as_u64).unwrap_or(1)
}

/// The `filter` parameter, if given and not blank.
fn filter_of(query: &HashMap<String, String>, attrs: &[&str]) -> Result<Option<Filter>, ApiError> {
    match query.get("filter") {
        Some(text) if !text.trim().is_empty() => Ok(Some(Filter::parse(text, attrs)?)),
        _ => Ok(None),
    }
}

// === Vaults ===

async fn list_vaults(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    // The docs name `name`; the JS and Go SDKs send `title` (connect-api.md §3).
    let filter = filter_of(&query, &["name", "title"])?;
    let vaults = state.sim.store.lock();
    let list: Vec<&crate::model::Vault> = vaults
        .iter()
        .map(|d| &d.vault)
        .filter(|v| caller.may_use(&v.id))
        .filter(|v| {
            filter
                .as_ref()
                .is_none_or(|f| f.matches(|_| [v.name.as_str()]))
        })
        .collect();
    Ok(Json(list).into_response())
}

async fn get_vault(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(v): Path<String>,
) -> Answer {
    let vault = state.with_vault(&caller, "READ", &v, |d| Ok(d.vault.clone()))?;
    state.record(&caller, "READ", true, &v, None);
    Ok(Json(vault).into_response())
}

// === Items ===

async fn list_items(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(v): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let filter = filter_of(&query, &["title", "tag"])?;
    let list = state.with_vault(&caller, "READ", &v, |d| {
        Ok(d.items
            .iter()
            .filter(|it| {
                filter.as_ref().is_none_or(|f| {
                    f.matches(|attr| -> Vec<&str> {
                        match attr {
                            "title" => it
                                .get("title")
                                .and_then(Value::as_str)
                                .into_iter()
                                .collect(),
                            _ => it
                                .get("tags")
                                .and_then(Value::as_array)
                                .map(|tags| tags.iter().filter_map(Value::as_str).collect())
                                .unwrap_or_default(),
                        }
                    })
                })
            })
            .map(summary)
            .collect::<Vec<_>>())
    })?;
    Ok(Json(list).into_response())
}

async fn read_item(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
) -> Answer {
    let item = state.with_vault(&caller, "READ", &v, |d| {
        find_item(d, &i).map(|it| it.clone())
    })?;
    state.record(&caller, "READ", true, &v, Some((&i, version_of(&item))));
    Ok(Json(item).into_response())
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

fn parse_item(body: &Bytes) -> Result<Item, ApiError> {
    match parse_json(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request(
            "Invalid request body: an item must be a JSON object",
        )),
    }
}

async fn create_item(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(v): Path<String>,
    body: Bytes,
) -> Answer {
    let mut item = parse_item(&body)?;
    let item = state.with_vault(&caller, "CREATE", &v, |d| {
        normalize(&mut item, &v, Mode::Create)?;
        let stamp = now();
        // Ids are the server's; files cannot be uploaded through Connect.
        item.insert("id".into(), json!(new_id()));
        item.insert("version".into(), json!(1));
        item.insert("createdAt".into(), json!(stamp));
        item.insert("updatedAt".into(), json!(stamp));
        item.insert("lastEditedBy".into(), json!(store::ACTOR_ID));
        item.insert("files".into(), json!([]));
        d.items.push(item.clone());
        d.touch();
        Ok(item)
    })?;
    state.record(&caller, "CREATE", true, &v, Some((item_id(&item), 1)));
    Ok(Json(item).into_response())
}

/// Replaces `stored` by `new`, keeping what clients may not change, and bumps the version.
fn replace(stored: &mut Item, mut new: Item, v: &str) -> Result<(), ApiError> {
    for key in ["id", "createdAt", "lastEditedBy", "files"] {
        match stored.get(key) {
            Some(value) => new.insert(key.into(), value.clone()),
            None => new.remove(key),
        };
    }
    normalize(&mut new, v, Mode::Update)?;
    new.insert("version".into(), json!(version_of(stored) + 1));
    new.insert("updatedAt".into(), json!(now()));
    *stored = new;
    Ok(())
}

async fn update_item(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let new = parse_item(&body)?;
    let item = state.with_vault(&caller, "UPDATE", &v, |d| {
        let stored = find_item(d, &i)?;
        replace(stored, new, &v)?;
        let item = stored.clone();
        d.touch();
        Ok(item)
    })?;
    state.record(&caller, "UPDATE", true, &v, Some((&i, version_of(&item))));
    Ok(Json(item).into_response())
}

async fn patch_item(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let Value::Array(ops) = parse_json(&body)? else {
        return Err(ApiError::bad_request(
            "Invalid request body: a patch must be a JSON array",
        ));
    };
    let item = state.with_vault(&caller, "UPDATE", &v, |d| {
        let stored = find_item(d, &i)?;
        if ops.is_empty() {
            return Ok(stored.clone());
        }
        let mut work = stored.clone();
        for op in &ops {
            apply_patch(&mut work, op)?;
        }
        replace(stored, work, &v)?;
        let item = stored.clone();
        d.touch();
        Ok(item)
    })?;
    state.record(&caller, "UPDATE", true, &v, Some((&i, version_of(&item))));
    Ok(Json(item).into_response())
}

/// One JSON Patch operation on the paths Connect supports (connect-api.md §4): `/`, `/title`,
/// `/favorite`, `/tags`, `/tags/{n}`, `/fields`, `/fields/{id}`, `/fields/{id}/label|value`.
fn apply_patch(item: &mut Item, op: &Value) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("Invalid patch: {m}"));
    let kind = op
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("each operation needs an \"op\"".into()))?;
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("each operation needs a \"path\"".into()))?;
    if !matches!(kind, "add" | "remove" | "replace") {
        return Err(bad(format!(
            "unsupported op {kind:?} (add, remove or replace)"
        )));
    }
    let value = op.get("value").cloned();
    if kind != "remove" && value.is_none() {
        return Err(bad(format!("{kind} {path} needs a \"value\"")));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad(format!("path {path:?} must start with /")));
    };
    let parts: Vec<String> = rest.split('/').map(unescape).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (kind, parts.as_slice(), value) {
        ("add" | "replace", [""], Some(Value::Object(whole))) => *item = whole,
        ("add" | "replace", ["title"], Some(v @ Value::String(_))) => {
            item.insert("title".into(), v);
        }
        ("add" | "replace", ["favorite"], Some(v @ Value::Bool(_))) => {
            item.insert("favorite".into(), v);
        }
        ("add" | "replace", ["tags"], Some(v @ Value::Array(_))) => {
            item.insert("tags".into(), v);
        }
        ("remove", ["tags"], _) => {
            item.insert("tags".into(), json!([]));
        }
        (k, ["tags", n], v) => {
            let tags = item
                .entry("tags")
                .or_insert(json!([]))
                .as_array_mut()
                .ok_or_else(|| bad("the item's tags are not a list".into()))?;
            let index = if *n == "-" && k == "add" {
                tags.len()
            } else {
                n.parse::<usize>()
                    .map_err(|_| bad(format!("{n:?} is not a tag index")))?
            };
            match (k, v) {
                ("add", Some(v @ Value::String(_))) if index <= tags.len() => tags.insert(index, v),
                ("replace", Some(v @ Value::String(_))) if index < tags.len() => tags[index] = v,
                ("remove", _) if index < tags.len() => {
                    tags.remove(index);
                }
                _ => return Err(bad(format!("{k} {path}: no such tag or not a string"))),
            }
        }
        ("add", ["fields"], Some(Value::Object(field))) => {
            item.entry("fields")
                .or_insert(json!([]))
                .as_array_mut()
                .ok_or_else(|| bad("the item's fields are not a list".into()))?
                .push(Value::Object(field));
        }
        (k, ["fields", id, attr @ ..], v) if !id.is_empty() => {
            let fields = item
                .entry("fields")
                .or_insert(json!([]))
                .as_array_mut()
                .ok_or_else(|| bad("the item's fields are not a list".into()))?;
            let at = fields
                .iter()
                .position(|f| f.get("id").and_then(Value::as_str) == Some(*id));
            match (k, at, attr, v) {
                ("add", None, [], Some(Value::Object(mut f))) => {
                    f.insert("id".into(), json!(id));
                    fields.push(Value::Object(f));
                }
                (_, None, _, _) => {
                    return Err(ApiError::bad_request(format!(
                        "The item doesn't have a {id} field."
                    )));
                }
                ("remove", Some(at), [], _) => {
                    fields.remove(at);
                }
                ("add" | "replace", Some(at), [], Some(Value::Object(mut f))) => {
                    f.insert("id".into(), json!(id));
                    fields[at] = Value::Object(f);
                }
                (
                    "add" | "replace",
                    Some(at),
                    [a @ ("label" | "value")],
                    Some(v @ Value::String(_)),
                ) => {
                    fields[at][*a] = v;
                }
                ("remove", Some(at), [a @ ("label" | "value")], _) => {
                    if let Some(f) = fields[at].as_object_mut() {
                        f.remove(*a);
                    }
                }
                _ => return Err(bad(format!("{k} {path}: unsupported path or value"))),
            }
        }
        _ => return Err(bad(format!("{kind} {path}: unsupported path or value"))),
    }
    Ok(())
}

/// Decodes one JSON-pointer segment (RFC 6901).
fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

async fn delete_item(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
) -> Answer {
    let version = state.with_vault(&caller, "DELETE", &v, |d| {
        let item = find_item(d, &i)?;
        let version = version_of(item);
        let files: Vec<String> = item
            .get("files")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|f| f.get("id")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        d.items.retain(|it| item_id(it) != i);
        for f in files {
            d.files.remove(&f);
        }
        d.touch();
        Ok(version)
    })?;
    state.record(&caller, "DELETE", true, &v, Some((&i, version)));
    Ok(StatusCode::NO_CONTENT.into_response())
}

// === Files ===

fn wants_inline(query: &HashMap<String, String>) -> bool {
    query.get("inline_files").map(String::as_str) == Some("true")
}

/// The item's file objects, with base64 `content` when `inline` (413 if one is too large).
fn files_of(
    d: &mut VaultData,
    i: &str,
    inline_content: bool,
    limit: usize,
) -> Result<Vec<Value>, ApiError> {
    let mut files: Vec<Value> = find_item(d, i)?
        .get("files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if inline_content {
        for file in &mut files {
            let id = file
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            file["content"] = json!(inline(d, &id, limit)?);
        }
    }
    Ok(files)
}

async fn list_files(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let limit = state.sim.max_inline_bytes;
    let files = state.with_vault(&caller, "READ", &v, |d| {
        files_of(d, &i, wants_inline(&query), limit)
    })?;
    Ok(Json(files).into_response())
}

async fn get_file(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((v, i, f)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let limit = state.sim.max_inline_bytes;
    let (file, version) = state.with_vault(&caller, "READ", &v, |d| {
        let item = find_item(d, &i)?;
        let version = version_of(item);
        let mut file = file_entry(item, &f)?.clone();
        if wants_inline(&query) {
            file["content"] = json!(inline(d, &f, limit)?);
        }
        Ok((file, version))
    })?;
    state.record(&caller, "READ", true, &v, Some((&i, version)));
    Ok(Json(file).into_response())
}

fn file_entry<'a>(item: &'a Item, f: &str) -> Result<&'a Value, ApiError> {
    item.get("files")
        .and_then(Value::as_array)
        .and_then(|l| {
            l.iter()
                .find(|x| x.get("id").and_then(Value::as_str) == Some(f))
        })
        .ok_or_else(|| ApiError::not_found("file", f))
}

/// A file's content as base64, or 413 when it is larger than `limit`.
fn inline(d: &VaultData, f: &str, limit: usize) -> Result<String, ApiError> {
    let bytes = d.files.get(f).map(Vec::as_slice).unwrap_or_default();
    if bytes.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "File is too large to inline in request. Use the /v1/vaults/{vaultUUID}/items/{itemUUID}/files/{fileUUID}/content endpoint instead.",
        ));
    }
    Ok(STANDARD.encode(bytes))
}

async fn file_content(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((v, i, f)): Path<(String, String, String)>,
) -> Answer {
    let (name, bytes, version) = state.with_vault(&caller, "READ", &v, |d| {
        let item = find_item(d, &i)?;
        let version = version_of(item);
        let name = file_entry(item, &f)?
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("file")
            .to_owned();
        let bytes = d.files.get(&f).cloned().unwrap_or_default();
        Ok((name, bytes, version))
    })?;
    state.record(&caller, "READ", true, &v, Some((&i, version)));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // A name is not trusted to be a valid header value: drop quotes, backslashes and controls.
    let safe: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok((headers, bytes).into_response())
}

// === Activity, health, metrics ===

async fn activity(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let number = |key: &str, default: usize| match query.get(key) {
        None => Ok(default),
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid {key}: {text:?} is not a non-negative integer"
            ))
        }),
    };
    let limit = number("limit", 50)?;
    let offset = number("offset", 0)?;
    let log = state.sim.store.activity();
    let total = log.len();
    let page: Vec<Value> = log.iter().rev().skip(offset).take(limit).cloned().collect();
    let range = if page.is_empty() {
        format!("*/{total}")
    } else {
        format!("{}-{}/{total}", offset + 1, offset + page.len())
    };
    let mut response = Json(page).into_response();
    if let Ok(value) = HeaderValue::from_str(&range) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

async fn heartbeat() -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], ".").into_response()
}

async fn health() -> Response {
    Json(json!({
        "name": "1Password Connect API",
        "version": CONNECT_VERSION,
        "dependencies": [
            { "service": "sync", "status": "ACTIVE" },
            { "service": "sqlite", "status": "ACTIVE", "message": "Connected to ~/1password.sqlite" }
        ]
    }))
    .into_response()
}

async fn metrics(State(state): State<Shared>) -> Response {
    use std::fmt::Write;
    let mut text = String::from(
        "# HELP connect_sim_http_requests_total HTTP requests answered, by method and status.\n\
         # TYPE connect_sim_http_requests_total counter\n",
    );
    for ((method, status), count) in state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        let _ = writeln!(
            text,
            "connect_sim_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {count}"
        );
    }
    text.push_str("# HELP connect_sim_vault_items Active items per vault.\n# TYPE connect_sim_vault_items gauge\n");
    for d in state.sim.store.lock().iter() {
        let _ = writeln!(
            text,
            "connect_sim_vault_items{{vault=\"{}\"}} {}",
            d.vault.id, d.vault.items
        );
    }
    let activity = state.sim.store.activity().len();
    let _ = writeln!(
        text,
        "# HELP connect_sim_activity_entries API requests in the activity log.\n\
         # TYPE connect_sim_activity_entries gauge\nconnect_sim_activity_entries {activity}"
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        json!({"title": "t", "tags": ["a", "b"], "favorite": false,
               "fields": [{"id": "f1", "label": "l", "value": "v"}, {"id": "a/b~c", "value": "x"}]})
        .as_object()
        .cloned()
        .unwrap()
    }

    fn patch(item: &mut Item, op: Value) -> Result<(), ApiError> {
        apply_patch(item, &op)
    }

    #[test]
    fn patch_paths() {
        let mut it = item();
        patch(
            &mut it,
            json!({"op": "replace", "path": "/title", "value": "new"}),
        )
        .unwrap();
        patch(
            &mut it,
            json!({"op": "replace", "path": "/favorite", "value": true}),
        )
        .unwrap();
        patch(
            &mut it,
            json!({"op": "add", "path": "/tags/1", "value": "x"}),
        )
        .unwrap();
        patch(
            &mut it,
            json!({"op": "add", "path": "/tags/-", "value": "z"}),
        )
        .unwrap();
        patch(&mut it, json!({"op": "remove", "path": "/tags/0"})).unwrap();
        patch(
            &mut it,
            json!({"op": "replace", "path": "/fields/f1/value", "value": "v2"}),
        )
        .unwrap();
        patch(
            &mut it,
            json!({"op": "replace", "path": "/fields/f1/label", "value": "l2"}),
        )
        .unwrap();
        patch(
            &mut it,
            json!({"op": "replace", "path": "/fields/a~1b~0c/value", "value": "y"}),
        )
        .unwrap();
        patch(
            &mut it,
            json!({"op": "add", "path": "/fields", "value": {"label": "n"}}),
        )
        .unwrap();
        assert_eq!(it["title"], "new");
        assert_eq!(it["favorite"], true);
        assert_eq!(it["tags"], json!(["x", "b", "z"]));
        assert_eq!(
            it["fields"][0],
            json!({"id": "f1", "label": "l2", "value": "v2"})
        );
        assert_eq!(it["fields"][1]["value"], "y");
        assert_eq!(it["fields"][2], json!({"label": "n"}));
        patch(&mut it, json!({"op": "remove", "path": "/fields/f1"})).unwrap();
        assert_eq!(it["fields"].as_array().unwrap().len(), 2);
        patch(
            &mut it,
            json!({"op": "replace", "path": "/", "value": {"title": "whole"}}),
        )
        .unwrap();
        assert_eq!(Value::Object(it), json!({"title": "whole"}));
    }

    #[test]
    fn patch_refusals() {
        for op in [
            json!({"op": "move", "path": "/title", "from": "/x"}),
            json!({"op": "test", "path": "/title", "value": "t"}),
            json!({"op": "replace", "path": "/title"}),
            json!({"op": "replace", "path": "/title", "value": 1}),
            json!({"op": "remove", "path": "/title"}),
            json!({"op": "replace", "path": "/category", "value": "LOGIN"}),
            json!({"op": "replace", "path": "title", "value": "x"}),
            json!({"path": "/title", "value": "x"}),
            json!({"op": "replace", "value": "x"}),
            json!({"op": "replace", "path": "/tags/9", "value": "x"}),
            json!({"op": "replace", "path": "/tags/x", "value": "x"}),
            json!({"op": "replace", "path": "/fields/f1/type", "value": "OTP"}),
            json!({"op": "replace", "path": "/fields/f1/value", "value": 5}),
            json!({"op": "replace", "path": "/fields/nope/value", "value": "x"}),
            json!({"op": "remove", "path": "/fields/nope"}),
        ] {
            let mut it = item();
            let before = it.clone();
            let error = patch(&mut it, op.clone()).expect_err(&op.to_string());
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{op}");
            assert_eq!(it, before, "a refused op changes nothing: {op}");
        }
        let error =
            patch(&mut item(), json!({"op": "remove", "path": "/fields/nope"})).unwrap_err();
        assert_eq!(error.message, "The item doesn't have a nope field.");
    }

    #[test]
    fn demo_ids_are_connect_ids() {
        use crate::demo::*;
        for id in [
            DEMO_VAULT_ID,
            DEMO_DB_ITEM_ID,
            DEMO_API_ITEM_ID,
            DEMO_LOGIN_ITEM_ID,
            DEMO_NOTE_ITEM_ID,
            DEMO_FILE_ID,
            OTHER_VAULT_ID,
            OTHER_ITEM_ID,
            OTHER_API_ITEM_ID,
        ] {
            assert!(store::is_id(id), "{id}");
        }
    }
}
