//! `keys.*` and `policy.*`: which keys may speak, and the contract they signed.

use claw_policy::keys::Purpose;
use serde_json::Value;

use super::{Outcome, Problems, fail};
use crate::verify::context::Ctx;

/// `keys.trusted`: every signing key is in trust.json by kid *and* purpose. Keys the bundle
/// names are hints; a bundle has no field that could carry a key (`bundle.parse` refuses one).
pub(crate) fn trusted(ctx: &Ctx<'_>) -> Outcome {
    let trust = ctx.trust;
    let mut problems = Problems::default();
    let mut used = 0usize;
    for envelope in &ctx.bundle.policies {
        used += 1;
        if !envelope
            .signatures
            .iter()
            .any(|s| trust.key(&s.kid, Purpose::Policy).is_some())
        {
            let kids: Vec<&str> = envelope.signatures.iter().map(|s| s.kid.as_str()).collect();
            problems.add(format!(
                "contract {} is signed by no trusted policy key (signers: {})",
                envelope.hash,
                kids.join(", ")
            ));
        }
    }
    if let Ok(decoded) = &ctx.decoded {
        used += 1;
        if trust.key(&decoded.kid, Purpose::Issuer).is_none() {
            problems.add(purpose_problem(ctx, "token issuer", &decoded.kid));
        }
    }
    let mut proxy_kids: Vec<&str> = Vec::new();
    for entry in &ctx.entries {
        let kid = entry
            .value
            .get("proxy")
            .and_then(Value::as_str)
            .unwrap_or("");
        if proxy_kids.contains(&kid) {
            continue;
        }
        proxy_kids.push(kid);
        used += 1;
        if trust.key(kid, Purpose::Proxy).is_none() {
            problems.receipt(entry.seq(), purpose_problem(ctx, "receipt", kid));
        }
    }
    for log in &ctx.bundle.logs {
        used += 1;
        let origin = log.origin.as_str();
        if !trust
            .by_purpose(Purpose::Proxy)
            .any(|k| crate::receipt::is_origin_of(origin, &k.name))
        {
            problems.add(format!("log {:?} is not a proxy in trust.json", log.origin));
        }
    }
    problems.outcome(format!(
        "all {used} signers come from trust.json with the right purpose"
    ))
}

fn purpose_problem(ctx: &Ctx<'_>, what: &str, kid: &str) -> String {
    match ctx.trust.keys().iter().find(|k| k.kid == kid) {
        Some(k) => format!(
            "{what} key {kid} is trusted only as {} ({:?}), not for this purpose",
            k.purpose.as_str(),
            k.name
        ),
        None => format!("{what} key {kid:?} is not in trust.json"),
    }
}

/// `keys.not_weak`: no trusted key is a small-order point (which would verify forgeries).
pub(crate) fn not_weak(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    for key in ctx.trust.keys() {
        if key.key.is_weak() {
            problems.add(format!("trusted key {} ({}) is weak", key.kid, key.name));
        }
    }
    problems.outcome(format!(
        "none of the {} trusted keys is a small-order point",
        ctx.trust.keys().len()
    ))
}

/// `policy.hash`: each envelope's document hashes (BLAKE3 of JCS) to its stated hash and is a
/// valid contract.
pub(crate) fn policy_hash(ctx: &Ctx<'_>) -> Outcome {
    if ctx.bundle.policies.is_empty() {
        return fail("the bundle carries no contract");
    }
    let mut problems = Problems::default();
    for envelope in &ctx.bundle.policies {
        if let Err(e) = envelope.check_hash() {
            problems.add(format!("contract {}: {e}", envelope.hash));
        }
    }
    problems.outcome(format!(
        "{} contract document(s) hash to their stated hash",
        ctx.bundle.policies.len()
    ))
}

/// `policy.signature`: each envelope verifies (strict) under a trusted policy key, and no
/// trusted key's signature fails.
pub(crate) fn policy_signature(ctx: &Ctx<'_>) -> Outcome {
    if ctx.bundle.policies.is_empty() {
        return fail("the bundle carries no contract");
    }
    let mut problems = Problems::default();
    for envelope in &ctx.bundle.policies {
        if let Err(e) = envelope.verify(ctx.trust) {
            problems.add(format!("contract {}: {e}", envelope.hash));
        }
    }
    problems.outcome("every contract is signed by a trusted policy key (threshold 1)")
}
