//! `semantics.*`: every call obeyed the contract, judged again here with the `policy` crate.

use std::collections::HashMap;
use std::str::FromStr;

use claw_policy::contract::{CONTRACT_RULES, Category, Operation, ToolScope, WpcDocument};
use claw_policy::egress::check_egress;
use claw_policy::evaluate::{self, Decision, VaultRef};
use claw_policy::host_rules;

use super::{Outcome, Problems, skip};
use crate::receipt::{ApprovalOutcome, Kind, Receipt};
use crate::verify::context::Ctx;

/// Refusals the proxy makes before or beside the contract, from bytes a bundle does not hold
/// (headers, bodies, the resolved address): a receipt can only show them as denials.
const REFUSALS: [&str; 13] = [
    "malformed_request",
    "proxy_auth",
    "method_override",
    "protocol_upgrade",
    "ambiguous_path",
    "unknown_operation",
    "body_too_large",
    "uninspectable_body",
    "body_vault_mismatch",
    "uninspectable_response",
    "address_class",
    // Decided on the job's earlier calls within a window; the budget itself is in the contract.
    "rate_limit",
    // A fleet's shared budget could not be reached, so the request was not let through.
    "state_unavailable",
];

/// Denials decided on the upstream's answer: the request was forwarded, the answer withheld.
const WITHHELD: [&str; 3] = [
    "allowed_categories",
    "uninspectable_response",
    "unknown_operation",
];

/// The integration of Connect operations.
const CONNECT: &str = "onepassword";

fn policy<'c>(ctx: &'c Ctx<'_>) -> Result<(&'c WpcDocument, &'c ToolScope), Outcome> {
    match (&ctx.contract, &ctx.scope) {
        (Some(contract), Some(scope)) => Ok((contract.document(), scope)),
        _ => Err(skip(
            "no valid contract pinned by the token (policy.hash, token.binding)",
        )),
    }
}

/// The receipts that record a decision.
fn decided<'a>(ctx: &'a Ctx<'_>) -> impl Iterator<Item = (usize, &'a Receipt)> {
    ctx.receipts().filter(|(_, r)| {
        matches!(
            r.kind,
            Kind::Request | Kind::Call | Kind::TunnelOpen | Kind::TunnelClose
        ) && r.decision.is_some()
    })
}

/// `semantics.reevaluate`: the contract, applied here to each receipt's host (and, under
/// `host_rules`, its method and normalised path), operation,
/// vault, item and category, gives the recorded decision and rule; a request an `approvals`
/// rule holds passes only with an approval by one of its approvers. Under an audit-only contract
/// every decision is marked so, and a contract rule's denial may be recorded as a pass that
/// "would deny" by that rule; under an enforcing one nothing is marked.
pub(crate) fn reevaluate(ctx: &Ctx<'_>) -> Outcome {
    let (document, scope) = match policy(ctx) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let audit = document.audit_only();
    let mut problems = Problems::default();
    let mut judged = 0usize;
    let mut shadowed = 0usize;
    for (i, r) in decided(ctx) {
        let (Some(req), Some(op), Some(recorded)) = (&r.req, &r.op, &r.decision) else {
            continue;
        };
        judged += 1;
        let mut bad = |message: String| {
            problems.receipt(
                Some(r.seq),
                format!("receipt #{i} (seq {}): {message}", r.seq),
            )
        };
        if recorded.enforcement.is_some() != audit {
            bad(if audit {
                "the contract is audit-only, yet the decision is not marked so".into()
            } else {
                "marked audit-only, yet the contract enforces".into()
            });
        }
        if recorded.would_deny {
            if !(audit && recorded.allow && CONTRACT_RULES.contains(&recorded.rule.as_str())) {
                bad(format!(
                    "a \"would deny\" pass by {} is only possible for a contract rule under an \
                     audit-only contract",
                    recorded.rule
                ));
            }
            shadowed += 1;
        }
        if REFUSALS.contains(&recorded.rule.as_str()) {
            if recorded.allow && !recorded.shadowed() {
                bad(format!(
                    "rule {} only ever refuses, yet it allowed",
                    recorded.rule
                ));
            }
            continue;
        }
        let ruled = host_rule(document, r.kind, req);
        let expected = match check_egress(&document.sandbox, &req.host, req.port) {
            deny @ Decision::Deny { .. } => deny,
            // A host's rules are judged before anything else about the request.
            Decision::Allow { .. } if ruled.as_ref().is_some_and(|d| !d.is_allow()) => {
                ruled.expect("a denial")
            }
            Decision::Allow { .. } if op.integration == CONNECT => match connect_request(op) {
                Ok(request) => {
                    let decision = evaluate::evaluate(document, scope, &request);
                    match held(document, &request, recorded, audit, decision) {
                        Ok(expected) => expected,
                        Err(message) => {
                            bad(message);
                            continue;
                        }
                    }
                }
                Err(message) => {
                    bad(message);
                    continue;
                }
            },
            allow => ruled.unwrap_or(allow),
        };
        if recorded.approval.is_some() && op.integration != CONNECT {
            bad("an approval is recorded, yet no approvals rule holds this request".into());
        }
        // An audit-only pass counts as the denial it records.
        let recorded_allow = recorded.allow && !recorded.would_deny;
        if expected.is_allow() != recorded_allow || expected.rule() != recorded.rule {
            bad(format!(
                "recorded {} by {}, the contract gives {} by {}",
                verdict(recorded_allow),
                recorded.rule,
                verdict(expected.is_allow()),
                expected.rule()
            ));
        }
    }
    problems.outcome(if audit {
        format!(
            "AUDIT-ONLY contract: nothing was refused by its rules; {judged} decisions \
             re-evaluated, each matches its receipt; {shadowed} calls the contract would deny \
             were let through"
        )
    } else {
        format!("{judged} decisions re-evaluated against the contract; each matches its receipt")
    })
}

/// The decision `host_rules` gives a receipt's request, if its host has rules: the method and
/// recorded (normalised) path judged; a tunnel to such a host should never have been opened.
fn host_rule(document: &WpcDocument, kind: Kind, req: &crate::receipt::Req) -> Option<Decision> {
    host_rules::rules_for(document, &req.host)?;
    if matches!(kind, Kind::TunnelOpen | Kind::TunnelClose) {
        return Some(Decision::Deny {
            rule: host_rules::RULE.into(),
            reason: "a host with host_rules is intercepted, never tunnelled blind".into(),
        });
    }
    host_rules::check(document, &req.host, &req.method, &req.path)
}

/// The decision a Connect request should have got once the contract's `approvals` rules are
/// applied to the evaluator's `decision`: an allowed request a rule holds passes only with an
/// approval by one of that rule's approvers; without one it is refused by rule `approvals`
/// (an audit-only contract records that as "would deny" and holds nothing). `Err` when the
/// recorded approval itself is wrong.
fn held(
    document: &WpcDocument,
    request: &evaluate::Request,
    recorded: &crate::receipt::Decision,
    audit: bool,
    decision: Decision,
) -> Result<Decision, String> {
    let Some((index, rule)) = evaluate::approval_rule(document, request) else {
        return match recorded.approval {
            Some(_) => {
                Err("an approval is recorded, yet no approvals rule holds this request".into())
            }
            None => Ok(decision),
        };
    };
    if !decision.is_allow() {
        return Ok(decision);
    }
    let refused = |reason: &str| Decision::Deny {
        rule: evaluate::APPROVAL_RULE.into(),
        reason: reason.into(),
    };
    match &recorded.approval {
        None => Ok(refused("held for approval and never approved")),
        Some(_) if audit => {
            Err("an audit-only contract holds nothing, yet an approval is recorded".into())
        }
        Some(approval) => {
            if let Some(by) = &approval.by
                && !rule.approvers.contains(by)
            {
                return Err(format!(
                    "decided by {by:?}, who is not an approver of approvals rule {index} ({})",
                    rule.approvers.join(", ")
                ));
            }
            Ok(match approval.outcome {
                ApprovalOutcome::Approved => decision,
                ApprovalOutcome::Denied | ApprovalOutcome::Timeout => refused("not approved"),
            })
        }
    }
}

fn verdict(allow: bool) -> &'static str {
    if allow { "allow" } else { "deny" }
}

/// The evaluator's view of a Connect receipt.
fn connect_request(op: &crate::receipt::Op) -> Result<evaluate::Request, String> {
    let operation = Operation::from_str(&op.name)
        .map_err(|_| format!("operation {:?} is not a Connect operation", op.name))?;
    let category = match &op.category {
        Some(c) => {
            Some(Category::from_str(c).map_err(|_| format!("category {c:?} is not a category"))?)
        }
        None => None,
    };
    Ok(evaluate::Request {
        op: operation,
        vault: op.vault.as_ref().map(|id| VaultRef {
            id: id.clone(),
            name: op.vault_name.clone(),
        }),
        item: op.item.clone(),
        item_title: op.item_title.clone(),
        category,
    })
}

/// `semantics.denied_not_forwarded`: a denial carries no upstream answer, except an answer the
/// proxy withheld after checking it (`released: false`, a response rule).
pub(crate) fn denied_not_forwarded(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    let mut denials = 0usize;
    for (i, r) in decided(ctx) {
        let Some(decision) = &r.decision else {
            continue;
        };
        if decision.allow {
            continue;
        }
        denials += 1;
        if let Some(resp) = &r.resp {
            if resp.released {
                problems.receipt(
                    Some(r.seq),
                    format!(
                        "receipt #{i}: denied by {}, yet the answer was released",
                        decision.rule
                    ),
                );
            } else if !WITHHELD.contains(&decision.rule.as_str()) {
                problems.receipt(
                    Some(r.seq),
                    format!(
                        "receipt #{i}: denied by {} before forwarding, yet it has an upstream \
                         answer (status {})",
                        decision.rule, resp.status
                    ),
                );
            }
        }
        if r.kind == Kind::Request || r.kind == Kind::TunnelOpen {
            problems.receipt(
                Some(r.seq),
                format!(
                    "receipt #{i}: a {} receipt is only written for allowed exchanges",
                    r.kind.as_str()
                ),
            );
        }
    }
    problems.outcome(format!(
        "{denials} denials: none forwarded, withheld answers never released"
    ))
}

/// `semantics.unknown_denied`: nothing was allowed for an operation the proxy could not name,
/// or for a host outside `sandbox.network_egress`.
pub(crate) fn unknown_denied(ctx: &Ctx<'_>) -> Outcome {
    let (document, _) = match policy(ctx) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let mut problems = Problems::default();
    for (i, r) in decided(ctx) {
        let (Some(req), Some(op), Some(decision)) = (&r.req, &r.op, &r.decision) else {
            continue;
        };
        if !decision.allow {
            continue;
        }
        if op.integration == CONNECT && Operation::from_str(&op.name).is_err() {
            problems.receipt(
                Some(r.seq),
                format!("receipt #{i}: allowed an unknown operation {:?}", op.name),
            );
        }
        let let_through = document.audit_only() && decision.shadowed();
        if !let_through && !check_egress(&document.sandbox, &req.host, req.port).is_allow() {
            problems.receipt(
                Some(r.seq),
                format!(
                    "receipt #{i}: allowed {}:{}, which is not in network_egress",
                    req.host, req.port
                ),
            );
        }
    }
    problems.outcome("no unknown operation or host outside network_egress was allowed")
}

/// `semantics.no_release`: nothing the contract withholds reached the agent: every released
/// answer belongs to an allowed decision and a category the scope allows.
pub(crate) fn no_release(ctx: &Ctx<'_>) -> Outcome {
    let (_, scope) = match policy(ctx) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let mut problems = Problems::default();
    let mut released = 0usize;
    for (i, r) in ctx.receipts() {
        let Some(resp) = &r.resp else { continue };
        if !resp.released {
            continue;
        }
        released += 1;
        if !r.decision.as_ref().is_some_and(|d| d.allow) {
            problems.receipt(
                Some(r.seq),
                format!("receipt #{i}: released a denied answer"),
            );
        }
        let category = r.op.as_ref().and_then(|op| op.category.as_deref());
        let shadowed = r.decision.as_ref().is_some_and(|d| d.shadowed());
        if let Some(category) = category
            && !(shadowed
                && ctx
                    .contract
                    .as_ref()
                    .is_some_and(|c| c.document().audit_only()))
        {
            let allowed = Category::from_str(category)
                .is_ok_and(|c| evaluate::category_allowed(scope, c).is_allow());
            if !allowed {
                problems.receipt(
                    Some(r.seq),
                    format!("receipt #{i}: released a {category} item the contract withholds"),
                );
            }
        }
    }
    problems.outcome(format!(
        "{released} released answers, all of allowed categories"
    ))
}

/// `semantics.two_phase`: every forwarded mutation has a durable `request` receipt before its
/// `call` (same `rid`), every `request` its `call`, every `tunnel_close` its `tunnel_open`.
pub(crate) fn two_phase(ctx: &Ctx<'_>) -> Outcome {
    let mut problems = Problems::default();
    let mut opened: HashMap<(&str, &str), (Kind, u64)> = HashMap::new();
    let mut pairs = 0usize;
    for (i, r) in ctx.receipts() {
        let mutating =
            r.op.as_ref()
                .and_then(|op| Operation::from_str(&op.name).ok())
                .is_some_and(Operation::is_mutating);
        let forwarded = r.decision.as_ref().is_some_and(|d| d.allow) || r.resp.is_some();
        match r.kind {
            Kind::Request | Kind::TunnelOpen => {
                if let Some(rid) = &r.rid
                    && opened
                        .insert((r.log.as_str(), rid.as_str()), (r.kind, r.seq))
                        .is_some()
                {
                    problems.receipt(Some(r.seq), format!("receipt #{i}: rid {rid} opened twice"));
                }
            }
            Kind::Call | Kind::TunnelClose => {
                let want = if r.kind == Kind::Call {
                    Kind::Request
                } else {
                    Kind::TunnelOpen
                };
                match &r.rid {
                    Some(rid) => match opened.remove(&(r.log.as_str(), rid.as_str())) {
                        Some((kind, _)) if kind == want => pairs += 1,
                        _ => problems.receipt(
                            Some(r.seq),
                            format!("receipt #{i}: no earlier {} with rid {rid}", want.as_str()),
                        ),
                    },
                    None if r.kind == Kind::Call && mutating && forwarded => problems.receipt(
                        Some(r.seq),
                        format!("receipt #{i}: a forwarded mutation without a request receipt"),
                    ),
                    None => {}
                }
            }
            Kind::JobClose | Kind::Recovery | Kind::KeyRotation => {}
        }
    }
    for ((_, rid), (kind, seq)) in opened {
        if kind == Kind::Request {
            problems.receipt(Some(seq), format!("request rid {rid} has no call receipt"));
        }
    }
    problems.outcome(format!("{pairs} exchanges paired by rid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::Approval;
    use claw_policy::contract::{ApprovalRule, Contract, OnTimeout};

    const SEED: &[u8] =
        include_bytes!("../../../../examples/policies/1password-readonly-agent.json");

    fn held_read() -> (WpcDocument, evaluate::Request) {
        let mut doc = Contract::from_slice(SEED).unwrap().document().clone();
        doc.approvals = vec![ApprovalRule {
            operations: vec![Operation::ReadItem],
            vaults: vec![],
            items: vec![],
            approvers: vec!["alice".into()],
            timeout_seconds: 60,
            on_timeout: OnTimeout::Deny,
        }];
        let request = evaluate::Request {
            op: Operation::ReadItem,
            vault: Some(VaultRef {
                id: "ytrfte14kw1uex5txaore1emkz".into(),
                name: Some("vault_agent_secrets_prod".into()),
            }),
            item: Some("x4tpzrqojj2ahmv3w7nb6vu2pe".into()),
            item_title: None,
            category: None,
        };
        (doc, request)
    }

    fn recorded(outcome: Option<(ApprovalOutcome, Option<&str>)>) -> crate::receipt::Decision {
        crate::receipt::Decision {
            approval: outcome.map(|(outcome, by)| Approval {
                at: "2026-11-23T10:00:00.000Z".into(),
                by: by.map(Into::into),
                id: format!("apr_{}", "ab".repeat(16)),
                outcome,
            }),
            ..Default::default()
        }
    }

    /// What `held` expects: `Ok((allow, rule))` or the error.
    fn expect(
        doc: &WpcDocument,
        request: &evaluate::Request,
        approval: Option<(ApprovalOutcome, Option<&str>)>,
        audit: bool,
    ) -> Result<(bool, String), String> {
        let decision = evaluate::evaluate(doc, &doc.tool_scope, request);
        held(doc, request, &recorded(approval), audit, decision)
            .map(|d| (d.is_allow(), d.rule().to_owned()))
    }

    #[test]
    fn a_held_request_passes_only_with_an_approvers_approval() {
        let (doc, read) = held_read();
        let allow = Ok((true, "allowed_operations".to_owned()));
        let refused = Ok((false, "approvals".to_owned()));
        use ApprovalOutcome::*;
        assert_eq!(
            expect(&doc, &read, Some((Approved, Some("alice"))), false),
            allow
        );
        assert_eq!(expect(&doc, &read, None, false), refused, "never approved");
        assert_eq!(
            expect(&doc, &read, Some((Denied, Some("alice"))), false),
            refused
        );
        assert_eq!(expect(&doc, &read, Some((Timeout, None)), false), refused);
        let err = expect(&doc, &read, Some((Approved, Some("mallory"))), false).unwrap_err();
        assert!(err.contains("not an approver"), "{err}");
        // Audit-only: nothing is held, so the pass records a would-deny and no approval.
        assert_eq!(expect(&doc, &read, None, true), refused);
        assert!(expect(&doc, &read, Some((Approved, Some("alice"))), true).is_err());
    }

    #[test]
    fn an_approval_where_no_rule_holds_fails() {
        let (mut doc, read) = held_read();
        let approved = Some((ApprovalOutcome::Approved, Some("alice")));
        // A request another rule already denies keeps that denial.
        let mut other_vault = read.clone();
        other_vault.vault = Some(VaultRef {
            id: "o7h3rv4u1tv4u1tv4u1tv4u1tv".into(),
            name: None,
        });
        assert_eq!(
            expect(&doc, &other_vault, approved, false),
            Ok((false, "allowed_vaults".to_owned()))
        );
        doc.approvals.clear();
        assert_eq!(
            expect(&doc, &read, None, false),
            Ok((true, "allowed_operations".to_owned()))
        );
        let err = expect(&doc, &read, approved, false).unwrap_err();
        assert!(err.contains("no approvals rule holds"), "{err}");
    }
}
