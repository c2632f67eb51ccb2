//! `receipt.*` and `job.*`: each receipt on its own, then the job's chain through them.

use std::collections::{BTreeMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use claw_policy::canonical;
use claw_policy::dsse::pae;
use claw_policy::keys::Purpose;
use claw_tokens::token::MAX_LEEWAY_SECS;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;

use super::{Outcome, Problems, pass, skip};
use crate::receipt::{GENESIS, Kind, RECEIPT_PAYLOAD_TYPE, link, ts_millis};
use crate::verify::context::Ctx;

/// `receipt.canonical`: each receipt is exactly the canonical (JCS) form of a well-formed
/// receipt: no unknown field, no null, the rules of its kind (`schemas/receipt.schema.json`).
pub(crate) fn canonical(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    for (i, entry) in ctx.entries.iter().enumerate() {
        if let Some(error) = &entry.error {
            problems.receipt(entry.seq(), format!("receipt #{i}: {error}"));
        }
    }
    problems.outcome(format!(
        "{} receipts are canonical and well formed",
        ctx.entries.len()
    ))
}

/// A signature to check: which receipt, the PAE message, the signature, the key.
struct Signed {
    index: usize,
    message: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
}

/// `receipt.signature`: every `sig` verifies under the trusted proxy key its `proxy` names,
/// over `PAE(receipt type, JCS(receipt − sig))`.
///
/// All signatures are first checked as one batch (about twice as fast); only when the batch
/// fails is each checked on its own with `verify_strict`, to name the bad ones. The batch
/// equation accepts a few signature encodings strict verification refuses, but only ones the
/// key's holder could make: no forger gets through either way.
pub(crate) fn signature(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    let mut signed = Vec::with_capacity(ctx.entries.len());
    for (index, entry) in ctx.entries.iter().enumerate() {
        let seq = entry.seq();
        let Some(object) = entry.value.as_object() else {
            continue;
        };
        let sig = object.get("sig").and_then(Value::as_str).unwrap_or("");
        let Some(signature) = STANDARD
            .decode(sig)
            .ok()
            .and_then(|raw| Signature::from_slice(&raw).ok())
        else {
            problems.receipt(seq, format!("receipt #{index}: sig is not a signature"));
            continue;
        };
        let kid = object.get("proxy").and_then(Value::as_str).unwrap_or("");
        let Some(trusted) = ctx.trust.key(kid, Purpose::Proxy) else {
            problems.receipt(
                seq,
                format!("receipt #{index}: proxy key {kid:?} is not trusted"),
            );
            continue;
        };
        let body = match &entry.receipt {
            Some(receipt) => receipt.signing_bytes(),
            None => {
                let mut unsigned = object.clone();
                unsigned.remove("sig");
                let Ok(body) = canonical::to_jcs(&Value::Object(unsigned)) else {
                    problems.receipt(seq, format!("receipt #{index}: cannot canonicalise"));
                    continue;
                };
                body
            }
        };
        signed.push(Signed {
            index,
            message: pae(RECEIPT_PAYLOAD_TYPE, &body),
            signature,
            key: trusted.key,
        });
    }
    if !batch_verifies(&signed) {
        for s in &signed {
            if s.key.verify_strict(&s.message, &s.signature).is_err() {
                problems.receipt(
                    ctx.entries[s.index].seq(),
                    format!("receipt #{}: signature does not verify", s.index),
                );
            }
        }
    }
    problems.outcome(format!(
        "{} signatures verify under trusted proxy keys",
        signed.len()
    ))
}

fn batch_verifies(signed: &[Signed]) -> bool {
    if signed.is_empty() {
        return true;
    }
    let messages: Vec<&[u8]> = signed.iter().map(|s| s.message.as_slice()).collect();
    let signatures: Vec<Signature> = signed.iter().map(|s| s.signature).collect();
    let keys: Vec<VerifyingKey> = signed.iter().map(|s| s.key).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// `receipt.binding`: every receipt is the token's: same job, `cst.jti`, `cst.scope` and `wpc`.
pub(crate) fn binding(ctx: &Ctx<'_>) -> Outcome {
    let Some(claims) = &ctx.claims else {
        return skip("the claims did not parse (token.claims)");
    };
    let mut problems = Problems::default();
    for (i, r) in ctx.receipts() {
        let seq = Some(r.seq);
        if r.job != claims.job || r.job != ctx.bundle.job {
            problems.receipt(seq, format!("receipt #{i} is of job {:?}", r.job));
            continue;
        }
        match &r.cst {
            Some(cst) if cst.jti != claims.jti || cst.scope != claims.scope => problems.receipt(
                seq,
                format!(
                    "receipt #{i} names token {} with another scope or id",
                    cst.jti
                ),
            ),
            None if r.kind != Kind::JobClose => {
                problems.receipt(seq, format!("receipt #{i} names no token"));
            }
            _ => {}
        }
        match &r.wpc {
            Some(wpc) if *wpc != claims.wpc => {
                problems.receipt(seq, format!("receipt #{i} pins contract {wpc}"));
            }
            None if r.kind != Kind::JobClose => {
                problems.receipt(seq, format!("receipt #{i} pins no contract"));
            }
            _ => {}
        }
    }
    problems.outcome(format!(
        "every receipt is of job {:?}, token {} and contract {}",
        claims.job, claims.jti, claims.wpc
    ))
}

/// `receipt.time`: each receipt's time is inside the token's life (± the 30 s leeway;
/// `job_close` is written after it ends) and times never go back along a log.
pub(crate) fn time(ctx: &Ctx<'_>) -> Outcome {
    let Some(claims) = &ctx.claims else {
        return skip("the claims did not parse (token.claims)");
    };
    let leeway = MAX_LEEWAY_SECS as i64 * 1000;
    let from = claims.nbf as i64 * 1000 - leeway;
    let until = claims.exp as i64 * 1000 + leeway;
    let mut problems = Problems::default();
    let mut last: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    for (i, r) in ctx.receipts() {
        let seq = Some(r.seq);
        let Some(at) = ts_millis(&r.ts) else {
            problems.receipt(seq, format!("receipt #{i}: ts {:?} is not a time", r.ts));
            continue;
        };
        if r.kind != Kind::JobClose && !(from..=until).contains(&at) {
            problems.receipt(
                seq,
                format!("receipt #{i} at {} is outside the token's lifetime", r.ts),
            );
        }
        if let Some((prev_seq, prev_ts)) = last.get(r.log.as_str())
            && *prev_seq < r.seq
            && *prev_ts > r.ts.as_str()
        {
            problems.receipt(
                seq,
                format!("receipt #{i} at {} is earlier than seq {prev_seq}", r.ts),
            );
        }
        last.insert(&r.log, (r.seq, &r.ts));
    }
    problems.outcome("every receipt falls inside the token's lifetime, in time order")
}

/// `receipt.unique`: no two receipts share an id, a `(log, seq)` or a `(log, job_seq)`.
pub(crate) fn unique(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    let mut ids = HashSet::new();
    let mut seqs = HashSet::new();
    let mut job_seqs = HashSet::new();
    for (i, r) in ctx.receipts() {
        let seq = Some(r.seq);
        if !ids.insert(r.id.as_str()) {
            problems.receipt(seq, format!("receipt #{i}: id {} twice", r.id));
        }
        if !seqs.insert((r.log.as_str(), r.seq)) {
            problems.receipt(
                seq,
                format!("receipt #{i}: seq {} of {} twice", r.seq, r.log),
            );
        }
        if !job_seqs.insert((r.log.as_str(), r.job_seq)) {
            problems.receipt(
                seq,
                format!("receipt #{i}: job_seq {} of {} twice", r.job_seq, r.log),
            );
        }
    }
    problems.outcome("ids, seqs and job_seqs are unique")
}

/// `job.sequence`: per log, in bundle order, `job_seq` runs 0, 1, 2… and each `job_prev` is
/// the leaf hash of the job's previous receipt (the first links to genesis): nothing missing,
/// nothing reordered, nothing inserted.
pub(crate) fn job_sequence(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    let mut chains: BTreeMap<&str, (u64, String)> = BTreeMap::new();
    for (i, entry) in ctx.entries.iter().enumerate() {
        let (Some(r), Some(hash)) = (&entry.receipt, entry.leaf_hash) else {
            problems.receipt(
                entry.seq(),
                format!("receipt #{i} is unreadable: the chain breaks"),
            );
            continue;
        };
        let (next, prev) = chains
            .entry(r.log.as_str())
            .or_insert_with(|| (0, GENESIS.to_owned()));
        if r.job_seq != *next {
            problems.receipt(
                Some(r.seq),
                format!(
                    "receipt #{i} (seq {}) has job_seq {} where {next} was expected",
                    r.seq, r.job_seq
                ),
            );
        } else if r.job_prev != *prev {
            problems.receipt(
                Some(r.seq),
                format!(
                    "receipt #{i} (seq {}): job_prev is not the leaf hash of the job's previous \
                     receipt",
                    r.seq
                ),
            );
        }
        *next = r.job_seq + 1;
        *prev = link(&hash);
    }
    problems.outcome(format!(
        "the job's chain is whole in {} log(s)",
        chains.len().max(1)
    ))
}

/// `job.closed`: each log's part of the job ends with a signed `job_close` whose count is the
/// number of receipts before it; without one the job was open when bundled (tier
/// `verified-open`). In a fleet, a `job_close` lists every log that served the job: each
/// must be in the bundle (with its own close), or receipts were left out.
pub(crate) fn job_closed(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    let mut last: BTreeMap<&str, (usize, &crate::receipt::Receipt)> = BTreeMap::new();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, r) in ctx.receipts() {
        if r.kind == Kind::JobClose
            && last
                .get(r.log.as_str())
                .is_some_and(|(_, p)| p.kind == Kind::JobClose)
        {
            problems.receipt(Some(r.seq), format!("receipt #{i}: a second job_close"));
        }
        if let Some((_, prev)) = last.get(r.log.as_str())
            && prev.kind == Kind::JobClose
            && r.kind != Kind::JobClose
        {
            problems.receipt(
                Some(r.seq),
                format!("receipt #{i} comes after the job_close"),
            );
        }
        last.insert(&r.log, (i, r));
        *counts.entry(&r.log).or_default() += 1;
    }
    if !problems.is_empty() {
        return problems.outcome("");
    }
    if last.is_empty() {
        return skip("no readable receipts");
    }
    for (log, (i, r)) in &last {
        for listed in r.logs.iter().flatten() {
            if !last.contains_key(listed.as_str()) {
                problems.receipt(
                    Some(r.seq),
                    format!(
                        "receipt #{i}: the job_close of {log} says {listed} served the job too, \
                         and the bundle has nothing of that log"
                    ),
                );
            }
        }
    }
    let mut open = Vec::new();
    for (log, (i, r)) in &last {
        if r.kind != Kind::JobClose {
            open.push(*log);
            continue;
        }
        let before = counts[log] - 1;
        if r.count != Some(before) {
            problems.receipt(
                Some(r.seq),
                format!(
                    "receipt #{i}: job_close counts {} receipts, the bundle has {before} in {log}",
                    r.count.unwrap_or_default()
                ),
            );
        }
    }
    if !problems.is_empty() {
        return problems.outcome("");
    }
    if !open.is_empty() {
        return skip(format!(
            "no job_close in {}: the job was open when bundled, later calls may exist \
             (tier verified-open)",
            open.join(", ")
        ));
    }
    let closed: Vec<String> = last
        .values()
        .filter_map(|(_, r)| r.closed.map(|c| format!("{c:?}").to_lowercase()))
        .collect();
    pass(format!(
        "closed ({}) with every receipt accounted for",
        closed.join(", ")
    ))
}
