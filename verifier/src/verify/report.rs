//! The verification report ("Trust Pulse", `schemas/report.schema.json`): what the reviewer's
//! page shows and what `verify --report` writes.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Status, Verification};
use crate::receipt::{Kind, Receipt, ts_millis};

/// Report type.
pub const REPORT_TYPE: &str = "clawproxy/verification-report/v1";

/// Denials this close together (ms) count as a burst. The proxy's
/// `clawproxy_denial_bursts_total` uses the same window, so the two cannot disagree.
pub const BURST_WINDOW_MS: i64 = 60_000;
/// How many denials in one window make a burst (also the proxy metric's threshold).
pub const BURST_DENIALS: usize = 3;

/// The report of a verification.
pub fn report(v: &Verification) -> Value {
    let bundle = v.bundle.as_ref();
    let receipts: Vec<Receipt> = bundle
        .map(|b| {
            b.receipts
                .iter()
                .filter_map(|value| serde_json::from_value(value.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut out = Map::new();
    out.insert("type".into(), json!(REPORT_TYPE));
    out.insert(
        "verdict".into(),
        json!(if v.passed() { "pass" } else { "fail" }),
    );
    out.insert("tier".into(), json!(v.tier.as_str()));
    out.insert("bundle_sha256".into(), json!(v.bundle_sha256));
    out.insert("job".into(), json!(bundle.map_or("", |b| b.job.as_str())));
    if let Some(b) = bundle
        && let Ok((_, claims)) = claw_tokens::token::dangerous_decode_unverified(&b.token)
    {
        if let Some(sub) = claims.get("sub").and_then(Value::as_str) {
            out.insert("agent".into(), json!(sub));
        }
        let mut token = Map::new();
        for name in ["jti", "iss", "aud", "iat", "nbf", "exp", "wpc", "scope"] {
            if let Some(value) = claims.get(name).filter(|v| v.is_string() || v.is_u64()) {
                token.insert(name.into(), value.clone());
            }
        }
        out.insert("token".into(), Value::Object(token));
    }
    if let Some(envelope) = bundle.and_then(|b| b.policies.first()) {
        let name = envelope
            .wpc
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)");
        let enforcement = match envelope.wpc.get("enforcement").and_then(Value::as_str) {
            Some("audit") => "audit",
            _ => "enforce",
        };
        out.insert(
            "contract".into(),
            json!({"name": name, "hash": envelope.hash, "document": envelope.wpc,
                   "enforcement": enforcement}),
        );
    }
    let checks: Vec<Value> = v
        .checks
        .iter()
        .map(|c| {
            let mut check =
                json!({"name": c.name, "status": c.status.as_str(), "reason": c.reason});
            if !c.receipts.is_empty() {
                check["receipts"] = json!(c.receipts);
            }
            check
        })
        .collect();
    out.insert("checks".into(), Value::Array(checks));
    out.insert("counts".into(), counts(&receipts));
    if let (Some(first), Some(last)) = (receipts.first(), receipts.last()) {
        out.insert("span".into(), json!({"first": first.ts, "last": last.ts}));
    }
    out.insert("calls".into(), Value::Array(calls(v, &receipts)));
    out.insert("anomalies".into(), Value::Array(anomalies(&receipts)));
    Value::Object(out)
}

fn counts(receipts: &[Receipt]) -> Value {
    let mut by_operation: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_decision: BTreeMap<&str, u64> = BTreeMap::new();
    for r in receipts {
        if let (Some(op), Some(d)) = (&r.op, &r.decision)
            && r.kind != Kind::Request
        {
            *by_operation.entry(&op.name).or_default() += 1;
            *by_decision.entry(decision_label(d)).or_default() += 1;
        }
    }
    json!({"receipts": receipts.len(), "by_operation": by_operation, "by_decision": by_decision})
}

/// `allow`, `deny`, or `would_deny` for an audit-only pass of a call the contract would deny.
fn decision_label(d: &crate::receipt::Decision) -> &'static str {
    match (d.allow, d.shadowed()) {
        (true, true) => "would_deny",
        (true, false) => "allow",
        (false, _) => "deny",
    }
}

fn calls(v: &Verification, receipts: &[Receipt]) -> Vec<Value> {
    let mut failed: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for check in v.checks.iter().filter(|c| c.status == Status::Fail) {
        for seq in &check.receipts {
            failed.entry(*seq).or_default().push(check.name);
        }
    }
    receipts
        .iter()
        .map(|r| {
            let mut call = Map::new();
            call.insert("seq".into(), json!(r.seq));
            call.insert("log".into(), json!(r.log));
            call.insert("id".into(), json!(r.id));
            call.insert("kind".into(), json!(r.kind.as_str()));
            call.insert("ts".into(), json!(r.ts));
            let op = r.op.as_ref();
            call.insert(
                "op".into(),
                json!(op.map_or(r.kind.as_str(), |o| o.name.as_str())),
            );
            if let Some(req) = &r.req {
                call.insert("method".into(), json!(req.method));
                call.insert("host".into(), json!(req.host));
                call.insert("path".into(), json!(req.path));
            }
            if let Some(op) = op {
                for (name, value) in [
                    ("vault", op.vault_name.as_ref().or(op.vault.as_ref())),
                    ("item", op.item.as_ref()),
                    ("category", op.category.as_ref()),
                ] {
                    if let Some(value) = value {
                        call.insert(name.into(), json!(value));
                    }
                }
                if let Some(withheld) = op.withheld {
                    call.insert("withheld".into(), json!(withheld));
                }
            }
            let (decision, rule) = match &r.decision {
                Some(d) => {
                    call.insert("reason".into(), json!(d.reason));
                    if d.shadowed() {
                        call.insert("would_deny".into(), json!(true));
                    }
                    if let Some(approval) = &d.approval {
                        call.insert("approval".into(), json!(approval));
                    }
                    (if d.allow { "allow" } else { "deny" }, d.rule.as_str())
                }
                // job_close and recovery decide nothing; shown as the log's own record.
                None => ("allow", r.kind.as_str()),
            };
            call.insert("decision".into(), json!(decision));
            call.insert("rule".into(), json!(rule));
            if let Some(resp) = &r.resp {
                call.insert("status".into(), json!(resp.status));
                call.insert("bytes".into(), json!(resp.bytes));
                call.insert("released".into(), json!(resp.released));
            }
            if let Some(names) = failed.get(&r.seq) {
                call.insert("failed_checks".into(), json!(names));
            }
            Value::Object(call)
        })
        .collect()
}

fn anomalies(receipts: &[Receipt]) -> Vec<Value> {
    let mut out = Vec::new();
    let denials: Vec<(i64, u64)> = receipts
        .iter()
        .filter(|r| r.decision.as_ref().is_some_and(|d| !d.allow))
        .filter_map(|r| ts_millis(&r.ts).map(|t| (t, r.seq)))
        .collect();
    let mut start = 0;
    let mut reported_until = 0;
    for end in 0..denials.len() {
        while denials[end].0 - denials[start].0 > BURST_WINDOW_MS {
            start += 1;
        }
        if end + 1 - start >= BURST_DENIALS && end >= reported_until {
            let mut stop = end;
            while stop + 1 < denials.len()
                && denials[stop + 1].0 - denials[start].0 <= BURST_WINDOW_MS
            {
                stop += 1;
            }
            let seqs: Vec<u64> = denials[start..=stop].iter().map(|d| d.1).collect();
            out.push(json!({
                "kind": "denial_burst",
                "message": format!("{} denials within a minute: the agent kept trying what its contract refuses", seqs.len()),
                "receipts": seqs,
            }));
            reported_until = stop + 1;
        }
    }
    let withheld: Vec<u64> = receipts
        .iter()
        .filter(|r| r.resp.as_ref().is_some_and(|p| !p.released))
        .map(|r| r.seq)
        .collect();
    if !withheld.is_empty() {
        out.push(json!({
            "kind": "withheld",
            "message": format!("{} upstream answer(s) withheld from the agent (fetched, then refused by the contract)", withheld.len()),
            "receipts": withheld,
        }));
    }
    let mut denied_items: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for r in receipts {
        if let (Some(op), Some(d)) = (&r.op, &r.decision)
            && !d.allow
            && let Some(item) = &op.item
        {
            denied_items.entry(item).or_default().push(r.seq);
        }
    }
    for (item, seqs) in denied_items {
        out.push(json!({
            "kind": "denied_item",
            "message": format!("item {item} was asked for and refused {} time(s)", seqs.len()),
            "receipts": seqs,
        }));
    }
    out.extend(first_item_access(receipts));
    out
}

/// Operations that read an item (or one of its files) when they name it.
const ITEM_READS: [&str; 3] = ["read_item", "read_file", "read_file_content"];

/// One `first_item_access` per distinct item the job read (allowed, answer released), naming
/// the receipt of its first read; the proxy counts the same as
/// `clawproxy_first_item_access_total`.
fn first_item_access(receipts: &[Receipt]) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in receipts {
        if let (Some(op), Some(d), Some(resp)) = (&r.op, &r.decision, &r.resp)
            && r.kind == Kind::Call
            && ITEM_READS.contains(&op.name.as_str())
            && d.allow
            && resp.released
            && (200..300).contains(&resp.status)
            && let Some(item) = &op.item
            && seen.insert((r.job.as_str(), item.as_str()))
        {
            out.push(json!({
                "kind": "first_item_access",
                "message": format!("first read of item {item} by this job"),
                "receipts": [r.seq],
            }));
        }
    }
    out
}

/// Adds to a report what changed from the previous version of its contract, when `registry`
/// (a data dir's contract registry) holds that version: `contract.previous_hash` and
/// `contract.changes` (what the bundle's version allows or denies more).
pub fn add_contract_history(report: &mut Value, registry: &claw_policy::registry::Registry) {
    let Some(hash) = report["contract"]["hash"].as_str().map(str::to_owned) else {
        return;
    };
    let Ok(index) = registry.index() else { return };
    let Some(previous) = index.previous(&hash).map(str::to_owned) else {
        return;
    };
    let (Ok(old), Ok(new)) = (registry.envelope(&previous), registry.envelope(&hash)) else {
        return;
    };
    let (Ok(old), Ok(new)) = (old.check_hash(), new.check_hash()) else {
        return;
    };
    let changes: Vec<String> = claw_policy::diff::diff(old.document(), new.document())
        .iter()
        .map(ToString::to_string)
        .collect();
    report["contract"]["previous_hash"] = json!(previous);
    report["contract"]["changes"] = json!(changes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call receipt: `op` on `item`, allowed or not, with an answer of `status` released or
    /// withheld (`None`: no answer).
    fn call(
        seq: u64,
        second: u64,
        op: &str,
        item: Option<&str>,
        allow: bool,
        answer: Option<(u16, bool)>,
    ) -> Receipt {
        let mut r = json!({
            "id": format!("r{seq}"), "job": "job-1", "job_prev": "", "job_seq": seq,
            "kind": "call", "log": "clawproxy/test", "prev": "", "proxy": "p", "seq": seq,
            "ts": format!("2026-11-23T10:{:02}:{:02}.000Z", second / 60, second % 60), "v": 1,
            "op": {"integration": "onepassword", "name": op},
            "decision": {"allow": allow, "reason": "r", "rule": "r"},
        });
        if let Some(item) = item {
            r["op"]["item"] = json!(item);
        }
        if let Some((status, released)) = answer {
            r["resp"] =
                json!({"body_hash": "", "bytes": 1, "released": released, "status": status});
        }
        serde_json::from_value(r).unwrap()
    }

    fn of_kind<'a>(anomalies: &'a [Value], kind: &str) -> Vec<&'a Value> {
        anomalies.iter().filter(|a| a["kind"] == kind).collect()
    }

    #[test]
    fn first_item_access_names_each_items_first_released_read() {
        let receipts = [
            // Refused and withheld reads are not reads of the item.
            call(0, 0, "read_item", Some("A"), false, None),
            call(1, 1, "read_item", Some("A"), false, Some((200, false))),
            call(2, 2, "read_item", Some("A"), true, Some((404, true))),
            call(3, 3, "read_item", Some("A"), true, Some((200, true))),
            call(4, 4, "read_item", Some("A"), true, Some((200, true))),
            call(
                5,
                5,
                "read_file_content",
                Some("B"),
                true,
                Some((200, true)),
            ),
            call(6, 6, "update_item", Some("C"), true, Some((200, true))),
            call(7, 7, "read_item", Some("B"), true, Some((200, true))),
        ];
        let anomalies = anomalies(&receipts);
        let first = of_kind(&anomalies, "first_item_access");
        assert_eq!(first.len(), 2, "{anomalies:#?}");
        assert_eq!(first[0]["receipts"], json!([3]));
        assert_eq!(first[0]["message"], "first read of item A by this job");
        assert_eq!(first[1]["receipts"], json!([5]));
        assert_eq!(first[1]["message"], "first read of item B by this job");
    }

    #[test]
    fn a_denial_burst_needs_the_threshold_within_the_window() {
        let window = u64::try_from(BURST_WINDOW_MS / 1000).unwrap();
        let deny = |seq, second| call(seq, second, "delete_item", Some("A"), false, None);
        // One short of the threshold inside the window, the last one just outside it.
        let mut receipts: Vec<Receipt> =
            (0..BURST_DENIALS as u64 - 1).map(|s| deny(s, 0)).collect();
        receipts.push(deny(BURST_DENIALS as u64, window + 1));
        assert!(of_kind(&anomalies(&receipts), "denial_burst").is_empty());
        receipts.pop();
        receipts.push(deny(BURST_DENIALS as u64, window));
        let anomalies = anomalies(&receipts);
        let bursts = of_kind(&anomalies, "denial_burst");
        assert_eq!(bursts.len(), 1, "{anomalies:#?}");
        assert_eq!(
            bursts[0]["receipts"].as_array().unwrap().len(),
            BURST_DENIALS
        );
    }
}
