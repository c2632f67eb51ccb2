//! `log.*`: the receipts are leaves of signed, append-only logs.

use std::collections::{BTreeMap, HashMap};

use super::{Outcome, Problems, fail, skip};
use crate::bundle::decode_hash;
use crate::checkpoint::{self, NoteError, parse_note};
use crate::merkle::{self, Hash};
use crate::verify::context::{Ctx, open_checkpoint};

/// `log.leaf`: every receipt has exactly one inclusion proof, at its own `seq`, in the log it
/// names, and every proof belongs to a receipt (leaf hashes are recomputed from the JCS bytes).
pub(crate) fn leaf(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    let mut proofs: HashMap<(&str, u64), usize> = HashMap::new();
    for log in &ctx.bundle.logs {
        for p in &log.inclusion {
            *proofs.entry((log.origin.as_str(), p.seq)).or_default() += 1;
        }
    }
    let mut covered: HashMap<(&str, u64), usize> = HashMap::new();
    for (i, r) in ctx.receipts() {
        let key = (r.log.as_str(), r.seq);
        *covered.entry(key).or_default() += 1;
        match proofs.get(&key) {
            Some(1) => {}
            Some(n) => problems.receipt(
                Some(r.seq),
                format!("receipt #{i} has {n} inclusion proofs"),
            ),
            None => problems.receipt(
                Some(r.seq),
                format!(
                    "receipt #{i} (seq {} of {}) has no inclusion proof",
                    r.seq, r.log
                ),
            ),
        }
    }
    for (origin, seq) in proofs.keys() {
        if !covered.contains_key(&(*origin, *seq)) {
            problems.add(format!(
                "an inclusion proof for seq {seq} of {origin} has no receipt"
            ));
        }
    }
    problems.outcome(format!(
        "{} leaves, each with its proof at its seq",
        covered.len()
    ))
}

/// `log.inclusion`: each proof (of the exact length RFC 9162 gives) leads from the receipt's
/// leaf hash to its checkpoint's root at the checkpoint's size.
pub(crate) fn inclusion(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    let mut roots: BTreeMap<&str, (u64, Hash)> = BTreeMap::new();
    for (log, cp) in ctx.bundle.logs.iter().zip(&ctx.checkpoints) {
        match &cp.checkpoint {
            Ok(c) => {
                roots.insert(&log.origin, (c.size, c.root));
            }
            Err(_) => {
                return skip(format!(
                    "the checkpoint of {} did not open (log.checkpoint)",
                    log.origin
                ));
            }
        }
    }
    let mut proofs: HashMap<(&str, u64), &Vec<String>> = HashMap::new();
    for log in &ctx.bundle.logs {
        for p in &log.inclusion {
            proofs.insert((log.origin.as_str(), p.seq), &p.hashes);
        }
    }
    let mut proven = 0usize;
    for (i, entry) in ctx.entries.iter().enumerate() {
        let (Some(r), Some(leaf_hash)) = (&entry.receipt, entry.leaf_hash) else {
            continue;
        };
        let (Some((size, root)), Some(hashes)) = (
            roots.get(r.log.as_str()),
            proofs.get(&(r.log.as_str(), r.seq)),
        ) else {
            continue;
        };
        let Some(path) = hashes
            .iter()
            .map(|h| decode_hash(h))
            .collect::<Option<Vec<Hash>>>()
        else {
            problems.receipt(
                Some(r.seq),
                format!("receipt #{i}: a proof hash is not 32 bytes of base64"),
            );
            continue;
        };
        match merkle::verify_inclusion(r.seq, *size, &leaf_hash, &path, root) {
            Ok(()) => proven += 1,
            Err(e) => problems.receipt(Some(r.seq), format!("receipt #{i} (seq {}): {e}", r.seq)),
        }
    }
    problems.outcome(format!(
        "{proven} inclusion proofs reach their checkpoint roots"
    ))
}

/// `log.checkpoint`: each log's note parses strictly, its origin is a trusted proxy's, and a
/// trusted signature under the origin's name verifies (other signatures are ignored).
pub(crate) fn checkpoint(ctx: &Ctx<'_>) -> Outcome {
    if ctx.bundle.logs.is_empty() {
        return fail("the bundle carries no log checkpoint");
    }
    let mut problems = Problems::default();
    for (log, cp) in ctx.bundle.logs.iter().zip(&ctx.checkpoints) {
        if let Err(e) = &cp.checkpoint {
            problems.add(format!("{}: {e}", log.origin));
        }
    }
    let named: Vec<&str> = ctx.receipts().map(|(_, r)| r.log.as_str()).collect();
    for origin in named {
        if !ctx.bundle.logs.iter().any(|l| l.origin == origin) {
            problems.add(format!("receipts of log {origin} but no checkpoint for it"));
            break;
        }
    }
    problems.outcome(format!(
        "{} checkpoint(s) signed by their logs' trusted keys",
        ctx.bundle.logs.len()
    ))
}

/// `log.consistency`: every older checkpoint carried is consistent with the log's checkpoint
/// (the log was only appended to): a fork or a rewritten history fails here. Sizes of 0 and
/// shrinking trees are refused.
pub(crate) fn consistency(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    let mut proofs = 0usize;
    for (log, cp) in ctx.bundle.logs.iter().zip(&ctx.checkpoints) {
        if log.consistency.is_empty() {
            continue;
        }
        let Ok(newer) = &cp.checkpoint else {
            return skip(format!(
                "the checkpoint of {} did not open (log.checkpoint)",
                log.origin
            ));
        };
        for c in &log.consistency {
            proofs += 1;
            let older = match open_checkpoint(&c.checkpoint, &log.origin, ctx.trust) {
                Ok(older) => older,
                Err(e) => {
                    problems.add(format!("{}: older checkpoint: {e}", log.origin));
                    continue;
                }
            };
            if c.from != older.size || c.to != newer.size {
                problems.add(format!(
                    "{}: proof from {} to {} does not join checkpoints of sizes {} and {}",
                    log.origin, c.from, c.to, older.size, newer.size
                ));
                continue;
            }
            let Some(path) = c
                .hashes
                .iter()
                .map(|h| decode_hash(h))
                .collect::<Option<Vec<Hash>>>()
            else {
                problems.add(format!(
                    "{}: a proof hash is not 32 bytes of base64",
                    log.origin
                ));
                continue;
            };
            if let Err(e) =
                merkle::verify_consistency(older.size, newer.size, &older.root, &newer.root, &path)
            {
                problems.add(format!(
                    "{}: sizes {} → {}: {e} (a fork or rewritten history)",
                    log.origin, older.size, newer.size
                ));
            }
        }
    }
    if proofs == 0 && problems.is_empty() {
        return skip("the bundle carries one checkpoint per log: nothing to compare");
    }
    problems.outcome(format!("{proofs} consistency proof(s) hold: no fork"))
}

/// `log.coverage`: each checkpoint covers every receipt of its log (size > the largest seq),
/// and a cosignature's time, if any, is not before the last receipt.
pub(crate) fn coverage(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    for (log, cp) in ctx.bundle.logs.iter().zip(&ctx.checkpoints) {
        let Ok(c) = &cp.checkpoint else {
            return skip(format!(
                "the checkpoint of {} did not open (log.checkpoint)",
                log.origin
            ));
        };
        let mine: Vec<&crate::receipt::Receipt> = ctx
            .receipts()
            .map(|(_, r)| r)
            .filter(|r| r.log == log.origin)
            .collect();
        if let Some(max) = mine.iter().map(|r| r.seq).max()
            && c.size <= max
        {
            problems.receipt(
                Some(max),
                format!(
                    "{}: checkpoint size {} does not cover seq {max}",
                    log.origin, c.size
                ),
            );
        }
        let last_ms = mine
            .iter()
            .filter_map(|r| crate::receipt::ts_millis(&r.ts))
            .max();
        if let (Ok(note), Some(last_ms)) = (parse_note(&log.checkpoint), last_ms) {
            for sig in &note.signatures {
                if let Some(time) = sig.cosignature_time()
                    && (time as i64) * 1000 < last_ms - 999
                {
                    problems.add(format!(
                        "{}: cosignature by {} at {time} is older than the last receipt",
                        log.origin, sig.name
                    ));
                }
            }
        }
    }
    problems.outcome("every checkpoint covers all of its log's receipts")
}

/// `log.witness`: when trust.json names witnesses, at least `witness_threshold` of them
/// cosigned every log's checkpoint. A cosignature line by a named witness that does not verify
/// fails the check even when others suffice (as a bad signature by a known key refuses a note).
pub(crate) fn witness(ctx: &Ctx<'_>) -> Outcome {
    let named = ctx.trust.witnesses();
    if named.is_empty() {
        return skip("trust.json names no witnesses; the tier does not depend on them");
    }
    let mut witnesses = Vec::with_capacity(named.len());
    for (i, vkey) in named.iter().enumerate() {
        match checkpoint::parse_cosignature_vkey(vkey) {
            Ok(w) => witnesses.push(w),
            Err(e) => return fail(format!("trust.json witness #{i}: {e}")),
        }
    }
    let needed = ctx.trust.witness_threshold();
    let mut problems = Problems::default();
    for log in &ctx.bundle.logs {
        let mut cosigned = Vec::new();
        for w in &witnesses {
            match checkpoint::verify_cosignature(&log.checkpoint, w) {
                Ok(_) => cosigned.push(w.name.as_str()),
                Err(NoteError::NoCosignature(_)) => {}
                Err(e) => problems.add(format!("{}: witness {}: {e}", log.origin, w.name)),
            }
        }
        if cosigned.len() < needed {
            problems.add(format!(
                "{}: {} of the {} trusted witnesses cosigned its checkpoint ({}), {needed} needed",
                log.origin,
                cosigned.len(),
                witnesses.len(),
                if cosigned.is_empty() {
                    "none".to_owned()
                } else {
                    cosigned.join(", ")
                }
            ));
        }
    }
    problems.outcome(format!(
        "every log's checkpoint is cosigned by at least {needed} of {} trusted witnesses",
        witnesses.len()
    ))
}
