//! The repository's JSON Schemas, compiled with their cross-references resolved from the
//! `schemas/` folder (each `$id` is `https://clawproxy.dev/schemas/<file>`; nothing is
//! fetched).

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

const BASE: &str = "https://clawproxy.dev/schemas/";

/// Every schema file, by name.
const SCHEMAS: &[(&str, &str)] = &[
    (
        "bundle.schema.json",
        include_str!("../../schemas/bundle.schema.json"),
    ),
    (
        "clawproxy.schema.json",
        include_str!("../../schemas/clawproxy.schema.json"),
    ),
    (
        "cst-claims.schema.json",
        include_str!("../../schemas/cst-claims.schema.json"),
    ),
    (
        "receipt.schema.json",
        include_str!("../../schemas/receipt.schema.json"),
    ),
    (
        "report.schema.json",
        include_str!("../../schemas/report.schema.json"),
    ),
    (
        "wpc-envelope.schema.json",
        include_str!("../../schemas/wpc-envelope.schema.json"),
    ),
    (
        "wpc.schema.json",
        include_str!("../../schemas/wpc.schema.json"),
    ),
];

fn schema(name: &str) -> Option<Value> {
    SCHEMAS
        .iter()
        .find(|(file, _)| *file == name)
        .map(|(_, text)| serde_json::from_str(text).expect("a schema is JSON"))
}

/// Serves `https://clawproxy.dev/schemas/<file>` from [`SCHEMAS`]; refuses anything else.
struct Local;

impl Retrieve for Local {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        uri.as_str()
            .strip_prefix(BASE)
            .and_then(schema)
            .ok_or_else(|| format!("no local schema for {}", uri.as_str()).into())
    }
}

/// The validator of `schemas/<file>`.
pub fn validator(file: &str) -> Validator {
    let schema = schema(file).unwrap_or_else(|| panic!("no schema {file}"));
    jsonschema::options()
        .with_retriever(Local)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// What `schemas/<file>` finds wrong with `instance` (empty: valid).
pub fn errors(file: &str, instance: &Value) -> Vec<String> {
    validator(file)
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}
