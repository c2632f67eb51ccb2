//! The Connect routes.

// Errors are finished `Response`s built where they arise, which is what a handler returns
// anyway; boxing them would only add noise to this test server.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use serde_json::{Value, json};

use crate::CONNECT_VERSION;
use crate::model::{CATEGORIES, Item, summary};
use crate::store::{Store, VaultData, new_id, now};

/// Files larger than this are not inlined (413).
const MAX_INLINE_BYTES: usize = 100 * 1024;

/// Server state: the bearer token, an optional restricted token, and the data.
pub(crate) struct State {
    token: String,
    restricted: Option<(String, Vec<String>)>,
    store: Store,
}

impl State {
    pub(crate) fn new(token: String, store: Store) -> Self {
        Self {
            token,
            restricted: None,
            store,
        }
    }
}

type Shared = Arc<State>;

/// The server's router (tests can drive it with `oneshot`).
pub fn app_with(token: String, restricted: Option<(String, Vec<String>)>, store: Store) -> Router {
    app(Arc::new(State {
        token,
        restricted,
        store,
    }))
}

pub(crate) fn app(state: Shared) -> Router {
    let item = get(read_item)
        .put(update_item)
        .patch(patch_item)
        .delete(delete_item);
    let v1 = Router::new()
        .route("/v1/activity", get(activity))
        .route("/v1/vaults", get(list_vaults))
        .route("/v1/vaults/", get(list_vaults))
        .route("/v1/vaults/{v}", get(get_vault))
        .route("/v1/vaults/{v}/", get(get_vault))
        .route("/v1/vaults/{v}/items", get(list_items).post(create_item))
        .route("/v1/vaults/{v}/items/", get(list_items).post(create_item))
        .route("/v1/vaults/{v}/items/{i}", item.clone())
        .route("/v1/vaults/{v}/items/{i}/", item)
        .route("/v1/vaults/{v}/items/{i}/files", get(list_files))
        .route("/v1/vaults/{v}/items/{i}/files/", get(list_files))
        .route("/v1/vaults/{v}/items/{i}/files/{f}", get(get_file))
        .route("/v1/vaults/{v}/items/{i}/files/{f}/", get(get_file))
        .route(
            "/v1/vaults/{v}/items/{i}/files/{f}/content",
            get(file_content),
        )
        .route(
            "/v1/vaults/{v}/items/{i}/files/{f}/content/",
            get(file_content),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route(
            "/heartbeat",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], ".") }),
        )
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(v1)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Invalid request path") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        .layer(middleware::map_response(version_header))
        .with_state(state)
}

async fn version_header(mut response: Response) -> Response {
    response.headers_mut().insert(
        "1password-connect-version",
        HeaderValue::from_static(CONNECT_VERSION),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}

/// Who is calling: the full token, or the restricted one with its vaults.
#[derive(Clone)]
struct Caller {
    vaults: Option<Vec<String>>,
    agent: String,
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authenticate(
    AxumState(state): AxumState<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return error(StatusCode::UNAUTHORIZED, "Invalid bearer token");
    };
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    let caller = if equal(presented.as_bytes(), state.token.as_bytes()) {
        Caller {
            vaults: None,
            agent,
        }
    } else if let Some((token, vaults)) = &state.restricted {
        if !equal(presented.as_bytes(), token.as_bytes()) {
            return error(StatusCode::UNAUTHORIZED, "Invalid token signature");
        }
        Caller {
            vaults: Some(vaults.clone()),
            agent,
        }
    } else {
        return error(StatusCode::UNAUTHORIZED, "Invalid token signature");
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Runs `f` on the vault `v` after the access check.
fn with_vault<T>(
    state: &State,
    caller: &Caller,
    v: &str,
    f: impl FnOnce(&mut VaultData) -> Result<T, Response>,
) -> Result<T, Response> {
    if let Some(allowed) = &caller.vaults
        && !allowed.iter().any(|a| a == v)
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Authorization: token does not have access to vault",
        ));
    }
    let mut vaults = state.store.vaults.lock().unwrap_or_else(|e| e.into_inner());
    let vault = vaults
        .iter_mut()
        .find(|d| d.vault.id == v)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("vault {v} not found")))?;
    f(vault)
}

fn find_item<'a>(vault: &'a mut VaultData, i: &str) -> Result<&'a mut Item, Response> {
    vault
        .items
        .iter_mut()
        .find(|it| it.get("id").and_then(Value::as_str) == Some(i))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("item {i} not found")))
}

/// A parsed SCIM filter: terms joined by `or`.
struct Filter(Vec<(String, String, String)>);

impl Filter {
    fn parse(text: &str) -> Result<Self, Response> {
        let bad = || error(StatusCode::BAD_REQUEST, &format!("Invalid filter: {text}"));
        if text.contains('\'') {
            return Err(bad());
        }
        let mut terms = Vec::new();
        let mut rest = text.trim();
        loop {
            let (attr, after) = rest.split_once(' ').ok_or_else(bad)?;
            let (op, after) = after.trim_start().split_once(' ').ok_or_else(bad)?;
            let quoted = after.trim_start().strip_prefix('"').ok_or_else(bad)?;
            let (value, after) = quoted.split_once('"').ok_or_else(bad)?;
            if !matches!(op, "eq" | "co") {
                return Err(bad());
            }
            terms.push((attr.to_owned(), op.to_owned(), value.to_owned()));
            let after = after.trim_start();
            if after.is_empty() {
                return Ok(Self(terms));
            }
            rest = after.strip_prefix("or ").ok_or_else(bad)?.trim_start();
        }
    }

    /// Whether any term matches; `get` returns the candidate values of an attribute.
    fn matches(&self, get: impl Fn(&str) -> Vec<String>) -> bool {
        self.0.iter().any(|(attr, op, value)| {
            get(attr).iter().any(|have| match op.as_str() {
                "eq" => have == value,
                _ => have.contains(value.as_str()),
            })
        })
    }

    fn check_attrs(&self, allowed: &[&str]) -> Result<(), Response> {
        match self
            .0
            .iter()
            .find(|(a, _, _)| !allowed.contains(&a.as_str()))
        {
            Some((a, _, _)) => Err(error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid filter attribute: {a}"),
            )),
            None => Ok(()),
        }
    }
}

fn filter_of(query: &HashMap<String, String>) -> Result<Option<Filter>, Response> {
    query.get("filter").map(|f| Filter::parse(f)).transpose()
}

async fn list_vaults(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let filter = match filter_of(&query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(f) = &filter
        && let Err(r) = f.check_attrs(&["name", "title"])
    {
        return r;
    }
    let vaults = state.store.vaults.lock().unwrap_or_else(|e| e.into_inner());
    let list: Vec<Value> = vaults
        .iter()
        .filter(|d| {
            caller
                .vaults
                .as_ref()
                .is_none_or(|a| a.contains(&d.vault.id))
        })
        .filter(|d| {
            filter
                .as_ref()
                .is_none_or(|f| f.matches(|_| vec![d.vault.name.clone()]))
        })
        .map(|d| serde_json::to_value(&d.vault).unwrap_or_default())
        .collect();
    axum::Json(list).into_response()
}

async fn get_vault(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(v): Path<String>,
) -> Response {
    match with_vault(&state, &caller, &v, |d| {
        Ok(serde_json::to_value(&d.vault).unwrap_or_default())
    }) {
        Ok(vault) => {
            state
                .store
                .record("READ", "SUCCESS", Some(&v), None, &caller.agent);
            axum::Json(vault).into_response()
        }
        Err(r) => r,
    }
}

async fn list_items(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(v): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let filter = match filter_of(&query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(f) = &filter
        && let Err(r) = f.check_attrs(&["title", "tag"])
    {
        return r;
    }
    let result = with_vault(&state, &caller, &v, |d| {
        Ok(d.items
            .iter()
            .filter(|it| {
                filter.as_ref().is_none_or(|f| {
                    f.matches(|attr| match attr {
                        "title" => vec![
                            it.get("title")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                        ],
                        _ => it
                            .get("tags")
                            .and_then(Value::as_array)
                            .map(|t| {
                                t.iter()
                                    .filter_map(|x| x.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                })
            })
            .map(summary)
            .collect::<Vec<_>>())
    });
    match result {
        Ok(list) => axum::Json(list).into_response(),
        Err(r) => r,
    }
}

async fn read_item(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
) -> Response {
    match with_vault(&state, &caller, &v, |d| {
        find_item(d, &i).map(|it| it.clone())
    }) {
        Ok(item) => {
            let version = item.get("version").and_then(Value::as_u64).unwrap_or(1);
            state.store.record(
                "READ",
                "SUCCESS",
                Some(&v),
                Some((&i, version)),
                &caller.agent,
            );
            axum::Json(item).into_response()
        }
        Err(r) => r,
    }
}

/// Fills ids and generated values; refuses categories Connect refuses.
fn prepare(item: &mut Item, v: &str) -> Result<(), Response> {
    let category = item
        .get("category")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if !CATEGORIES.contains(&category.as_str()) || category == "CUSTOM" || category == "DOCUMENT" {
        return Err(error(StatusCode::BAD_REQUEST, "Invalid item category"));
    }
    if let Some(vault) = item
        .get("vault")
        .and_then(|x| x.get("id"))
        .and_then(Value::as_str)
        && vault != v
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "The item's vault does not match the path",
        ));
    }
    item.insert("vault".into(), json!({ "id": v }));
    let fields = item.entry("fields").or_insert_with(|| json!([]));
    let Some(fields) = fields.as_array_mut() else {
        return Err(error(StatusCode::BAD_REQUEST, "fields must be an array"));
    };
    for field in fields {
        let Some(field) = field.as_object_mut() else {
            return Err(error(StatusCode::BAD_REQUEST, "a field must be an object"));
        };
        if field
            .get("id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            field.insert("id".into(), json!(new_id()));
        }
        let purpose = field.get("purpose").and_then(Value::as_str).unwrap_or("");
        if !["", "USERNAME", "PASSWORD", "NOTES"].contains(&purpose) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid field purpose {purpose}"),
            ));
        }
        if field.get("generate").and_then(Value::as_bool) == Some(true) {
            let recipe = field.get("recipe").cloned().unwrap_or(json!({}));
            let length = recipe
                .get("length")
                .and_then(Value::as_u64)
                .unwrap_or(32)
                .clamp(1, 64);
            let sets: Vec<String> = recipe
                .get("characterSets")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_else(|| vec!["LETTERS".into(), "DIGITS".into()]);
            let mut alphabet = String::new();
            for set in &sets {
                alphabet.push_str(match set.as_str() {
                    "LETTERS" => "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                    "DIGITS" => "0123456789",
                    "SYMBOLS" => "!@#$%^&*()-_=+[]{}",
                    _ => "",
                });
            }
            let exclude = recipe
                .get("excludeCharacters")
                .and_then(Value::as_str)
                .unwrap_or("");
            let chars: Vec<char> = alphabet.chars().filter(|c| !exclude.contains(*c)).collect();
            if chars.is_empty() {
                return Err(error(StatusCode::BAD_REQUEST, "Invalid recipe"));
            }
            let mut rng = rand::thread_rng();
            let value: String = (0..length)
                .map(|_| chars[rng.gen_range(0..chars.len())])
                .collect();
            field.insert("value".into(), json!(value));
            field.insert("generate".into(), json!(false));
        }
    }
    Ok(())
}

fn parse_item(body: &Bytes) -> Result<Item, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "Invalid item: the body must be a JSON object",
        )),
    }
}

async fn create_item(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(v): Path<String>,
    body: Bytes,
) -> Response {
    let mut item = match parse_item(&body) {
        Ok(item) => item,
        Err(r) => return r,
    };
    let result = with_vault(&state, &caller, &v, |d| {
        prepare(&mut item, &v)?;
        let id = new_id();
        let stamp = now();
        item.insert("id".into(), json!(id));
        item.insert("version".into(), json!(1));
        item.insert("createdAt".into(), json!(stamp));
        item.insert("updatedAt".into(), json!(stamp));
        item.insert("lastEditedBy".into(), json!("SIMACTORSIMACTORSIMACTOR01"));
        for (key, default) in [
            ("tags", json!([])),
            ("urls", json!([])),
            ("favorite", json!(false)),
            ("sections", json!([])),
            ("files", json!([])),
        ] {
            item.entry(key).or_insert(default);
        }
        item.remove("trashed");
        d.items.push(item.clone());
        d.vault.items = d.items.len() as u64;
        d.vault.content_version += 1;
        Ok((id, item.clone()))
    });
    match result {
        Ok((id, item)) => {
            state
                .store
                .record("CREATE", "SUCCESS", Some(&v), Some((&id, 1)), &caller.agent);
            axum::Json(item).into_response()
        }
        Err(r) => r,
    }
}

/// Replaces `stored` by `new`, keeping what clients may not change.
fn replace(stored: &mut Item, mut new: Item, v: &str) -> Result<(), Response> {
    for key in ["id", "createdAt", "lastEditedBy", "version"] {
        match stored.get(key) {
            Some(value) => new.insert(key.into(), value.clone()),
            None => new.remove(key),
        };
    }
    new.remove("updatedAt");
    new.remove("trashed");
    prepare(&mut new, v)?;
    let version = stored.get("version").and_then(Value::as_u64).unwrap_or(1) + 1;
    new.insert("version".into(), json!(version));
    new.insert("updatedAt".into(), json!(now()));
    *stored = new;
    Ok(())
}

async fn update_item(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let new = match parse_item(&body) {
        Ok(item) => item,
        Err(r) => return r,
    };
    let result = with_vault(&state, &caller, &v, |d| {
        let stored = find_item(d, &i)?;
        replace(stored, new, &v)?;
        let out = stored.clone();
        d.vault.content_version += 1;
        Ok(out)
    });
    respond_write(&state, &caller, "UPDATE", &v, &i, result)
}

async fn patch_item(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(Value::Array(ops)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid patch: the body must be a JSON array",
        );
    };
    let result = with_vault(&state, &caller, &v, |d| {
        let stored = find_item(d, &i)?;
        if ops.is_empty() {
            return Ok(stored.clone());
        }
        let mut work = stored.clone();
        for op in &ops {
            apply_patch(&mut work, op)?;
        }
        replace(stored, work, &v)?;
        let out = stored.clone();
        d.vault.content_version += 1;
        Ok(out)
    });
    respond_write(&state, &caller, "UPDATE", &v, &i, result)
}

/// One JSON Patch operation on the paths Connect supports.
fn apply_patch(item: &mut Item, op: &Value) -> Result<(), Response> {
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, m);
    let kind = op
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid patch: missing op"))?;
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid patch: missing path"))?;
    let value = op.get("value").cloned();
    if !matches!(kind, "add" | "remove" | "replace") {
        return Err(bad(&format!("Invalid patch op: {kind}")));
    }
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    match (kind, parts.as_slice(), value) {
        (_, [""], Some(Value::Object(whole))) => {
            *item = whole;
        }
        ("remove", ["title" | "favorite"], _) => {
            return Err(bad("Invalid patch: cannot remove that"));
        }
        (_, ["title"], Some(v @ Value::String(_)))
        | (_, ["favorite"], Some(v @ Value::Bool(_))) => {
            item.insert(parts[0].into(), v);
        }
        (_, ["tags"], Some(v @ Value::Array(_))) => {
            item.insert("tags".into(), v);
        }
        (k, ["tags", n], v) => {
            let tags = item.entry("tags").or_insert(json!([]));
            let list = tags
                .as_array_mut()
                .ok_or_else(|| bad("tags is not a list"))?;
            let index: usize = if *n == "-" {
                list.len()
            } else {
                n.parse().map_err(|_| bad("Invalid tag index"))?
            };
            match (k, v) {
                ("add", Some(v)) if index <= list.len() => list.insert(index, v),
                ("replace", Some(v)) if index < list.len() => list[index] = v,
                ("remove", _) if index < list.len() => {
                    list.remove(index);
                }
                _ => return Err(bad("Invalid tag patch")),
            }
        }
        ("add", ["fields"], Some(Value::Object(mut field))) => {
            if field.get("id").and_then(Value::as_str).is_none() {
                field.insert("id".into(), json!(new_id()));
            }
            item.entry("fields")
                .or_insert(json!([]))
                .as_array_mut()
                .ok_or_else(|| bad("fields is not a list"))?
                .push(Value::Object(field));
        }
        (k, ["fields", id, rest @ ..], v) => {
            let fields = item
                .get_mut("fields")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| bad("The item has no fields"))?;
            let at = fields
                .iter()
                .position(|f| f.get("id").and_then(Value::as_str) == Some(*id))
                .ok_or_else(|| bad(&format!("The item doesn't have a {id} field.")))?;
            match (k, rest, v) {
                ("remove", [], _) => {
                    fields.remove(at);
                }
                ("replace", [], Some(Value::Object(f))) => fields[at] = Value::Object(f),
                (_, [attr @ ("label" | "value")], Some(v @ Value::String(_))) => {
                    fields[at][*attr] = v;
                }
                _ => return Err(bad("Invalid field patch")),
            }
        }
        _ => return Err(bad(&format!("Invalid patch path: {path}"))),
    }
    Ok(())
}

fn respond_write(
    state: &State,
    caller: &Caller,
    action: &str,
    v: &str,
    i: &str,
    result: Result<Item, Response>,
) -> Response {
    match result {
        Ok(item) => {
            let version = item.get("version").and_then(Value::as_u64).unwrap_or(1);
            state.store.record(
                action,
                "SUCCESS",
                Some(v),
                Some((i, version)),
                &caller.agent,
            );
            axum::Json(item).into_response()
        }
        Err(r) => r,
    }
}

async fn delete_item(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
) -> Response {
    let result = with_vault(&state, &caller, &v, |d| {
        find_item(d, &i)?;
        d.items
            .retain(|it| it.get("id").and_then(Value::as_str) != Some(&i));
        d.vault.items = d.items.len() as u64;
        d.vault.content_version += 1;
        Ok(())
    });
    match result {
        Ok(()) => {
            state
                .store
                .record("DELETE", "SUCCESS", Some(&v), Some((&i, 0)), &caller.agent);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

fn files_of(d: &mut VaultData, i: &str, inline: bool) -> Result<Vec<Value>, Response> {
    let contents = d.files.clone();
    let item = find_item(d, i)?;
    let mut files: Vec<Value> = item
        .get("files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if inline {
        for file in &mut files {
            let id = file.get("id").and_then(Value::as_str).unwrap_or_default();
            let bytes = contents.get(id).cloned().unwrap_or_default();
            if bytes.len() > MAX_INLINE_BYTES {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "File is too large to inline in request. Use the /v1/vaults/{vaultUUID}/items/{itemUUID}/files/{fileUUID}/content endpoint instead.",
                ));
            }
            file["content"] = json!(STANDARD.encode(bytes));
        }
    }
    Ok(files)
}

async fn list_files(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((v, i)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let inline = query.get("inline_files").map(String::as_str) == Some("true");
    match with_vault(&state, &caller, &v, |d| files_of(d, &i, inline)) {
        Ok(files) => axum::Json(files).into_response(),
        Err(r) => r,
    }
}

async fn get_file(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((v, i, f)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let inline = query.get("inline_files").map(String::as_str) == Some("true");
    let result = with_vault(&state, &caller, &v, |d| {
        files_of(d, &i, inline)?
            .into_iter()
            .find(|x| x.get("id").and_then(Value::as_str) == Some(&f))
            .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("file {f} not found")))
    });
    match result {
        Ok(file) => axum::Json(file).into_response(),
        Err(r) => r,
    }
}

async fn file_content(
    AxumState(state): AxumState<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((v, i, f)): Path<(String, String, String)>,
) -> Response {
    let result = with_vault(&state, &caller, &v, |d| {
        let file = files_of(d, &i, false)?
            .into_iter()
            .find(|x| x.get("id").and_then(Value::as_str) == Some(&f))
            .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("file {f} not found")))?;
        let name = file
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("file")
            .replace('"', "");
        Ok((name, d.files.get(&f).cloned().unwrap_or_default()))
    });
    match result {
        Ok((name, bytes)) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            (headers, bytes).into_response()
        }
        Err(r) => r,
    }
}

async fn activity(
    AxumState(state): AxumState<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let parse = |k: &str, d: usize| query.get(k).map_or(Ok(d), |v| v.parse::<usize>());
    let (Ok(limit), Ok(offset)) = (parse("limit", 50), parse("offset", 0)) else {
        return error(StatusCode::BAD_REQUEST, "Invalid limit or offset");
    };
    let log = state
        .store
        .activity
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let total = log.len();
    let page: Vec<Value> = log.iter().rev().skip(offset).take(limit).cloned().collect();
    let range = if page.is_empty() {
        format!("*/{total}")
    } else {
        format!("{}-{}/{total}", offset + 1, offset + page.len())
    };
    let mut response = axum::Json(page).into_response();
    if let Ok(v) = HeaderValue::from_str(&range) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    response
}

async fn health() -> Response {
    axum::Json(json!({
        "name": "1Password Connect API",
        "version": CONNECT_VERSION,
        "dependencies": [
            { "service": "sync", "status": "ACTIVE" },
            { "service": "sqlite", "status": "ACTIVE", "message": "Connected to ~/1password.sqlite" }
        ]
    }))
    .into_response()
}

async fn metrics(AxumState(state): AxumState<Shared>) -> Response {
    let requests = state
        .store
        .activity
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    let text = format!(
        "# HELP connect_api_requests_total API requests served.\n# TYPE connect_api_requests_total counter\nconnect_api_requests_total {requests}\n"
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {

    #[test]
    fn demo_ids_are_connect_ids() {
        use crate::demo::*;
        use crate::store::is_id;
        for id in [
            DEMO_VAULT_ID,
            DEMO_DB_ITEM_ID,
            DEMO_API_ITEM_ID,
            DEMO_LOGIN_ITEM_ID,
            DEMO_NOTE_ITEM_ID,
            DEMO_FILE_ID,
            OTHER_VAULT_ID,
            OTHER_ITEM_ID,
        ] {
            assert!(is_id(id), "{id}");
        }
    }
}
