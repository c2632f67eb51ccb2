//! The 1Password Connect request classifier: method + target → operation, vault, item, file.
//!
//! The path is normalised once ([`normalize_path`]): percent-decoding, dot segments, duplicate
//! slashes and one trailing slash. The normalised path and the re-encoded query are what the
//! proxy both checks and forwards. Anything that could be read two ways (an encoded `/`, a
//! backslash, `;`, NUL, double encoding, non-ASCII) is an error, which the proxy turns into a
//! denial. Unrecognised method/route pairs classify as [`Op::Unknown`], which is denied.

use std::collections::HashSet;
use std::fmt;

use crate::contract::Operation;

/// The operation a request performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A route of the Connect API.
    Known(Operation),
    /// Anything else; always denied.
    Unknown,
}

impl Op {
    /// The name recorded in receipts (`unknown` for [`Op::Unknown`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Known(op) => op.as_str(),
            Op::Unknown => "unknown",
        }
    }
}

/// A classified request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The operation.
    pub op: Op,
    /// Vault id from the path.
    pub vault: Option<String>,
    /// Item id from the path.
    pub item: Option<String>,
    /// File id from the path.
    pub file: Option<String>,
    /// The normalised path (checked and forwarded).
    pub path: String,
    /// The re-encoded query (checked and forwarded), if any.
    pub query: Option<String>,
    /// The parsed `filter` parameter, if any. An empty `filter=` (the JS SDK sends
    /// `GET /v1/vaults/?filter=`) is no filter.
    pub filter: Option<Filter>,
    /// Query parameter names the route does not document, in request order. They are kept
    /// (and forwarded) but reported, so receipts and `explain` can show them.
    pub unknown_params: Vec<String>,
}

/// Why a target could not be classified unambiguously.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifyError {
    /// The path normalises ambiguously.
    #[error("ambiguous path: {0}")]
    Path(String),
    /// The query cannot be read one way only.
    #[error("ambiguous query: {0}")]
    Query(String),
    /// The `filter` parameter is not one Connect understands.
    #[error("bad filter: {0}")]
    Filter(String),
}

/// One `attr op "value"` term of a SCIM filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// `title`, `tag` or `name`.
    pub attr: String,
    /// `eq` or `co`.
    pub op: String,
    /// The quoted value.
    pub value: String,
}

/// A SCIM-style filter: terms joined by `or`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The terms.
    pub terms: Vec<Term>,
}

impl Filter {
    /// Whether the filter looks an object up by its title or name (how SDKs read by title).
    pub fn is_title_lookup(&self) -> bool {
        self.terms
            .iter()
            .any(|t| t.attr == "title" || t.attr == "name")
    }

    /// Parses `title eq "x" or tag co "y"`.
    pub fn parse(text: &str) -> Result<Self, ClassifyError> {
        let bad = |m: &str| ClassifyError::Filter(format!("{m} in {text:?}"));
        if text.contains('\'') {
            return Err(bad("a single quote"));
        }
        let mut terms = Vec::new();
        let mut rest = text.trim();
        loop {
            let (attr, after) = rest
                .split_once(' ')
                .ok_or_else(|| bad("expected attr op \"value\""))?;
            let (op, after) = after
                .trim_start()
                .split_once(' ')
                .ok_or_else(|| bad("expected an operator"))?;
            if !matches!(attr, "title" | "tag" | "name") {
                return Err(bad(&format!("unknown attribute {attr:?}")));
            }
            if !matches!(op, "eq" | "co") {
                return Err(bad(&format!("unknown operator {op:?}")));
            }
            let after = after.trim_start();
            let quoted = after
                .strip_prefix('"')
                .ok_or_else(|| bad("value must be quoted"))?;
            let (value, after) = quoted
                .split_once('"')
                .ok_or_else(|| bad("unterminated value"))?;
            terms.push(Term {
                attr: attr.to_owned(),
                op: op.to_owned(),
                value: value.to_owned(),
            });
            let after = after.trim_start();
            if after.is_empty() {
                break;
            }
            rest = after
                .strip_prefix("or ")
                .ok_or_else(|| bad("terms must be joined by `or`"))?
                .trim_start();
        }
        Ok(Self { terms })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "{} {} \"{}\"", t.attr, t.op, t.value)?;
        }
        Ok(())
    }
}

/// Normalises a raw request path; see the module docs for what is refused.
pub fn normalize_path(raw: &str) -> Result<String, ClassifyError> {
    let bad = |m: &str| ClassifyError::Path(m.to_owned());
    if !raw.starts_with('/') {
        return Err(bad("the path must start with /"));
    }
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let c = if b == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .ok_or_else(|| bad("truncated percent escape"))?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| bad("invalid percent escape"))?;
            i += 3;
            match v {
                b'/' | b'\\' => return Err(bad("encoded slash or backslash")),
                b'%' => return Err(bad("double percent-encoding")),
                b';' | b'?' | b'#' => return Err(bad("encoded delimiter")),
                0x80.. => return Err(bad("non-ASCII (or overlong UTF-8) in the path")),
                _ => v,
            }
        } else {
            i += 1;
            b
        };
        if !allowed_path_byte(c) {
            return Err(match c {
                b'\\' => bad("backslash in the path"),
                b';' => bad("matrix parameters (;) in the path"),
                0 => bad("NUL in the path"),
                0x80.. => bad("non-ASCII in the path"),
                _ => bad(&format!("character {:?} in the path", c as char)),
            });
        }
        decoded.push(c as char);
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments
                    .pop()
                    .ok_or_else(|| bad("the path climbs above the root"))?;
            }
            s => segments.push(s),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// RFC 3986 unreserved characters, `/`, and the sub-delimiters Connect paths never need
/// decoding for. Everything else is refused rather than re-encoded.
pub(crate) fn allowed_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~/:@!$&'()*+,=".contains(&b)
}

/// Classifies a Connect request. `target` is origin-form (`/v1/vaults?x`) or absolute-form
/// (`http://host/v1/vaults`; the authority is the proxy's business, only path and query count).
pub fn classify(method: &str, target: &str) -> Result<Classified, ClassifyError> {
    let origin = match target.find("://") {
        Some(i) if !target[..i].contains('/') => {
            let rest = &target[i + 3..];
            match rest.find(['/', '?']) {
                Some(j) if rest.as_bytes()[j] == b'/' => &rest[j..],
                Some(_) => return Ok(Classified::unknown("/".into())),
                None => "/",
            }
        }
        _ => target,
    };
    if origin.contains('#') {
        return Err(ClassifyError::Path("fragment in the request target".into()));
    }
    let (raw_path, raw_query) = match origin.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (origin, None),
    };
    let path = normalize_path(raw_path)?;
    let params = match raw_query {
        Some(q) => parse_query(q)?,
        None => Vec::new(),
    };
    let segments: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    let (op, vault, item, file) = route(method, &segments);
    let documented = documented_params(op);
    let mut classified = Classified {
        op,
        vault: vault.map(str::to_owned),
        item: item.map(str::to_owned),
        file: file.map(str::to_owned),
        query: encode_query(&params),
        filter: None,
        unknown_params: params
            .iter()
            .filter(|(k, _)| !documented.contains(&k.as_str()))
            .map(|(k, _)| k.clone())
            .collect(),
        path,
    };
    // The filter is parsed whatever the route, so a malformed one is refused even where
    // Connect would ignore it: the proxy must never forward a query it cannot read one way.
    if let Some((_, value)) = params.iter().find(|(k, _)| k == "filter")
        && !value.trim().is_empty()
    {
        classified.filter = Some(Filter::parse(value)?);
    }
    Ok(classified)
}

impl Classified {
    fn unknown(path: String) -> Self {
        Self {
            op: Op::Unknown,
            vault: None,
            item: None,
            file: None,
            path,
            query: None,
            filter: None,
            unknown_params: Vec::new(),
        }
    }
}

/// The query parameters connect-api.md §2 documents for each operation.
fn documented_params(op: Op) -> &'static [&'static str] {
    use Operation::*;
    match op {
        Op::Known(ListVaults | ListItems) => &["filter"],
        Op::Known(ListFiles | ReadFile) => &["inline_files"],
        Op::Known(Activity) => &["limit", "offset"],
        _ => &[],
    }
}

type Route<'a> = (Op, Option<&'a str>, Option<&'a str>, Option<&'a str>);

fn route<'a>(method: &str, s: &[&'a str]) -> Route<'a> {
    use Operation::*;
    let id = |x: &str| {
        !x.is_empty()
            && x.len() <= 128
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let known = |op| Op::Known(op);
    let unknown: Route<'a> = (Op::Unknown, None, None, None);
    match (method, s) {
        ("GET", ["heartbeat"] | ["health"] | ["metrics"]) => (known(Health), None, None, None),
        ("GET", ["v1", "activity"]) => (known(Activity), None, None, None),
        ("GET", ["v1", "vaults"]) => (known(ListVaults), None, None, None),
        (_, ["v1", "vaults", v, rest @ ..]) if id(v) => match (method, rest) {
            ("GET", []) => (known(GetVault), Some(v), None, None),
            ("GET", ["items"]) => (known(ListItems), Some(v), None, None),
            ("POST", ["items"]) => (known(CreateItem), Some(v), None, None),
            (_, ["items", i, rest @ ..]) if id(i) => match (method, rest) {
                ("GET", []) => (known(ReadItem), Some(v), Some(i), None),
                ("PUT", []) => (known(UpdateItem), Some(v), Some(i), None),
                ("PATCH", []) => (known(PatchItem), Some(v), Some(i), None),
                ("DELETE", []) => (known(DeleteItem), Some(v), Some(i), None),
                ("GET", ["files"]) => (known(ListFiles), Some(v), Some(i), None),
                ("GET", ["files", f]) if id(f) => (known(ReadFile), Some(v), Some(i), Some(f)),
                ("GET", ["files", f, "content"]) if id(f) => {
                    (known(ReadFileContent), Some(v), Some(i), Some(f))
                }
                _ => unknown,
            },
            _ => unknown,
        },
        _ => unknown,
    }
}

/// Splits a query into decoded pairs (`+` and `%20` are both a space). Duplicate names are
/// ambiguous (which one would the server read?) and refused.
///
/// Names are checked against a set: a target may be some 64 KiB of `a&b&c…`, and comparing
/// each name with every earlier one cost over half a second of CPU per request.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, ClassifyError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode_component(k)?, decode_component(v)?);
        if !seen.insert(k.clone()) {
            return Err(ClassifyError::Query(format!(
                "parameter {k:?} appears twice"
            )));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn decode_component(text: &str) -> Result<String, ClassifyError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .ok_or_else(|| ClassifyError::Query("truncated percent escape".into()))?;
                let v = u8::from_str_radix(hex, 16)
                    .map_err(|_| ClassifyError::Query("invalid percent escape".into()))?;
                out.push(v);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| ClassifyError::Query("not UTF-8".into()))?;
    if text.chars().any(char::is_control) {
        return Err(ClassifyError::Query(
            "control character in the query".into(),
        ));
    }
    Ok(text)
}

/// Re-encodes decoded pairs: unreserved characters stay, everything else is `%XX`.
fn encode_query(params: &[(String, String)]) -> Option<String> {
    if params.is_empty() {
        return None;
    }
    let encode = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    Some(
        params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&"),
    )
}

#[cfg(test)]
mod tests;
