//! Reading contracts from files (bare or signed envelopes) and from the registry, with errors
//! that name the file, the JSON pointer and the fix.

use std::path::Path;

use anyhow::Context;
use claw_policy::canonical;
use claw_policy::contract::{self, Category, Contract, ContractError, Operation, Violation};
use claw_policy::datadir::DataDir;
use claw_policy::envelope::{Envelope, EnvelopeError};
use claw_policy::registry::{Registry, RegistryError};
use claw_policy::trust::TrustStore;
use serde_json::Value;

/// One problem in an input: where, what, and how to fix it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Problem {
    /// The file (or registry entry) the problem is in.
    pub(crate) file: String,
    /// RFC 6901 pointer ("/" for the whole document).
    pub(crate) pointer: String,
    /// What is wrong.
    pub(crate) message: String,
    /// How to fix it, when there is an obvious way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fix: Option<String>,
}

impl Problem {
    fn new(file: &str, pointer: &str, message: impl Into<String>, fix: Option<String>) -> Self {
        Self {
            file: file.to_owned(),
            pointer: if pointer.is_empty() { "/" } else { pointer }.to_owned(),
            message: message.into(),
            fix,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.pointer, self.message)?;
        match &self.fix {
            Some(fix) => write!(f, " (fix: {fix})"),
            None => Ok(()),
        }
    }
}

/// An input problem: printed once, exit code 2.
#[derive(Debug)]
pub(crate) enum InputError {
    /// Problems located in a document.
    Located(Vec<Problem>),
    /// Anything else (bad flag value, missing file).
    Plain(String),
}

impl InputError {
    fn one(problem: Problem) -> Self {
        Self::Located(vec![problem])
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::Located(problems) => {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
            InputError::Plain(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for InputError {}

/// A checked contract and, when the file was a signed envelope, that envelope.
pub(crate) struct Loaded {
    pub(crate) contract: Contract,
    pub(crate) envelope: Option<Envelope>,
}

/// How much of an envelope to check.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// The document and its hash only (for `hash`, which needs no keys).
    Hash,
    /// Also the signatures against the data dir's trusted policy keys.
    Signatures,
}

/// Reads a contract file. A file with `wpc`/`signatures` at the top is a signed envelope and
/// is verified (hash, and with [`Check::Signatures`] the signatures against `dir`'s trust.json).
pub(crate) fn load_file(path: &Path, dir: &DataDir, check: Check) -> anyhow::Result<Loaded> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("{file}: cannot read"))?;
    let value = canonical::parse_strict(&bytes).map_err(|error| {
        InputError::one(Problem::new(
            &file,
            "",
            error.to_string(),
            Some("correct the JSON syntax; each key may appear only once".into()),
        ))
    })?;
    if !is_envelope(&value) {
        let contract = Contract::from_value(value)
            .map_err(|error| InputError::Located(contract_problems(&file, "", &error)))?;
        return Ok(Loaded {
            contract,
            envelope: None,
        });
    }
    let envelope: Envelope = canonical::from_value_at(value).map_err(|error| {
        InputError::one(Problem::new(
            &file,
            &error.pointer,
            error.message,
            Some(
                "an envelope has exactly \"wpc\", \"hash\" and \"signatures\": \
                 [{\"kid\", \"sig\"}]"
                    .into(),
            ),
        ))
    })?;
    let verified = match check {
        Check::Hash => envelope.check_hash(),
        Check::Signatures => {
            let trust = TrustStore::load(&dir.trust()).with_context(|| {
                format!(
                    "{file}: a signed envelope is checked against {}; run `clawproxy init` or \
                     pass --data-dir",
                    dir.trust().display()
                )
            })?;
            envelope.verify(&trust)
        }
    };
    let contract = verified
        .map_err(|error| InputError::Located(envelope_problems(&file, &envelope, dir, &error)))?;
    Ok(Loaded {
        contract,
        envelope: Some(envelope),
    })
}

/// A file, a registry name or a hash, verified against the data dir's trusted keys.
pub(crate) fn load_any(what: &str, dir: &DataDir) -> anyhow::Result<Contract> {
    let path = Path::new(what);
    if path.is_file() {
        return Ok(load_file(path, dir, Check::Signatures)?.contract);
    }
    if looks_like_path(what) {
        return Err(InputError::Plain(format!(
            "{what}: no such file (a registry name has no '/' and no \".json\")"
        ))
        .into());
    }
    let registry = Registry::new(dir.policies());
    let trust = TrustStore::load(&dir.trust()).with_context(|| {
        format!(
            "{what:?} is not a file; looking it up in the registry needs {}",
            dir.trust().display()
        )
    })?;
    match registry.load(what, &trust) {
        Ok((contract, _)) => Ok(contract),
        Err(RegistryError::Envelope(error)) => {
            // A stored envelope that no longer verifies: say which entry and where.
            let label = format!("registry entry {what}");
            Err(match registry.resolve(what) {
                Ok((envelope, _)) => {
                    InputError::Located(envelope_problems(&label, &envelope, dir, &error))
                }
                Err(_) => InputError::Plain(format!("{label}: {error}")),
            }
            .into())
        }
        Err(error) => Err(error.into()),
    }
}

fn is_envelope(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.contains_key("signatures") || o.contains_key("wpc"))
}

fn looks_like_path(what: &str) -> bool {
    what.contains('/') || what.contains('\\') || what.ends_with(".json")
}

/// One problem per violation, pointers prefixed (e.g. `/wpc` inside an envelope).
fn contract_problems(file: &str, prefix: &str, error: &ContractError) -> Vec<Problem> {
    match error {
        ContractError::Invalid(violations) => violations
            .iter()
            .map(|v| {
                Problem::new(
                    file,
                    &format!("{prefix}{}", v.pointer),
                    v.message.clone(),
                    hint(v),
                )
            })
            .collect(),
        other => vec![Problem::new(
            file,
            prefix,
            other.to_string(),
            Some("correct the JSON; each key may appear only once".into()),
        )],
    }
}

fn envelope_problems(
    file: &str,
    envelope: &Envelope,
    dir: &DataDir,
    error: &EnvelopeError,
) -> Vec<Problem> {
    let trust = dir.trust();
    let trust = trust.display();
    let one = |pointer: &str, fix: String| {
        vec![Problem::new(file, pointer, error.to_string(), Some(fix))]
    };
    match error {
        EnvelopeError::Contract(inner) => contract_problems(file, "/wpc", inner),
        EnvelopeError::HashMismatch { .. } => one(
            "/hash",
            "the document was changed after it was signed; publish the contract from its \
             source file to sign it again"
                .into(),
        ),
        EnvelopeError::Unsigned => one(
            "/signatures",
            "publish the bare contract with `clawcontrols publish FILE` to sign it with the \
             data dir's policy key"
                .into(),
        ),
        EnvelopeError::Untrusted { .. } => one(
            "/signatures",
            format!(
                "add the signer's policy key to {trust}, or publish the bare contract to sign \
                 it with this data dir's key"
            ),
        ),
        EnvelopeError::BadSignature { kid } => {
            let index = envelope
                .signatures
                .iter()
                .position(|s| &s.kid == kid)
                .unwrap_or(0);
            one(
                &format!("/signatures/{index}/sig"),
                "the document or the signature was altered; take the contract from its source \
                 and publish it again"
                    .into(),
            )
        }
        other => vec![Problem::new(file, "", other.to_string(), None)],
    }
}

/// The fix for a violation, when there is an obvious one.
fn hint(v: &Violation) -> Option<String> {
    let m = &v.message;
    let p = &v.pointer;
    let mut tokens = p.rsplit('/');
    let field = tokens.next().unwrap_or_default();
    let parent = tokens.next().unwrap_or_default();
    let in_list = |name: &str| field == name || parent == name && field.parse::<usize>().is_ok();
    let enum_miss = m.contains("is not one of") || m.contains("unknown variant");
    let fix = if m.contains("Additional properties") || m.contains("unknown field") {
        match allowed_fields(p) {
            Some(fields) => format!("remove it; the fields allowed here are {fields}"),
            None => "remove the field; see schemas/wpc.schema.json".into(),
        }
    } else if m.contains("non-unique") {
        "list each value once".into()
    } else if (in_list("allowed_operations") || in_list("deny_operations")) && enum_miss {
        let ops: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        format!("use one of {}", ops.join(", "))
    } else if in_list("allowed_categories") && enum_miss {
        let cats: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        format!("use one of the 22 Connect categories: {}", cats.join(", "))
    } else if field.starts_with("allowed_") || field == "network_egress" {
        if m.contains("less than 1 item") {
            "list at least one value; an empty allow-list would allow nothing".into()
        } else if m.contains("is not of type") {
            "a JSON array of strings".into()
        } else {
            return None;
        }
    } else if parent == "network_egress" {
        "a lower-case host name, optionally with :port, e.g. api.github.com or host:8443".into()
    } else if field == "max_ttl_seconds" {
        "a whole number of seconds from 1 to 86400".into()
    } else if field == "policy_hash_pin" || field == "job_scoped" {
        "set it to true; tokens are always pinned to the contract and bound to one job".into()
    } else if p.is_empty() && m.contains("is not of type") {
        "a contract is a JSON object; see examples/policies/1password-readonly-agent.json".into()
    } else if m.contains("is a required property") {
        "add it; see examples/policies/1password-readonly-agent.json".into()
    } else {
        return None;
    };
    Some(fix)
}

/// The property names the schema allows in the object at `pointer`.
fn allowed_fields(pointer: &str) -> Option<String> {
    let schema: Value = serde_json::from_str(contract::SCHEMA).ok()?;
    let mut node = &schema;
    for token in pointer.split('/').skip(1).filter(|t| !t.is_empty()) {
        node = node.get("properties")?.get(token)?;
    }
    let names: Vec<&str> = node
        .get("properties")?
        .as_object()?
        .keys()
        .map(String::as_str)
        .collect();
    Some(names.join(", "))
}
