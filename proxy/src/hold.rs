//! Holding a request until a person approves it (a contract's `approvals` rules).
//!
//! The held request is written to `state/approvals/` (in fleet mode, to the shared state) for
//! `clawcontrols approvals` to show, and the agent's connection waits while this task polls
//! for the decision. It ends in one of
//! three ways: an approver approves (the request is forwarded, once), an approver denies, or
//! the deadline passes and the proxy records a timeout itself. Whatever the end, the request
//! file is removed; the decision file stays, so the approval cannot be used again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use claw_policy::approval::{ApprovalStore, HeldRequest, Outcome, Verdict};
use claw_policy::contract::ApprovalRule;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// How often the decision file is looked for. A person takes seconds; this adds at most 50 ms.
const POLL: Duration = Duration::from_millis(50);

/// Why a held request was not approved.
#[derive(Debug)]
pub enum NotApproved {
    /// An approver denied it, or nobody decided in time: the decision is receipted.
    Refused(Verdict),
    /// The request could not be held or its decision is not valid; refused without a decision.
    Failed(String),
}

impl NotApproved {
    /// A plain sentence for the agent and the receipt.
    pub fn reason(&self, rule: &ApprovalRule) -> String {
        match self {
            NotApproved::Refused(v) if v.outcome == Outcome::Timeout => format!(
                "held for approval by {}; nobody decided within {} s",
                rule.approvers.join(", "),
                rule.timeout_seconds
            ),
            NotApproved::Refused(v) => {
                let by = v.by.as_deref().unwrap_or("an approver");
                match &v.reason {
                    Some(why) => format!("approval denied by {by}: {why}"),
                    None => format!("approval denied by {by}"),
                }
            }
            NotApproved::Failed(why) => why.clone(),
        }
    }
}

/// Removes the request file however the hold ends (also when the agent goes away and the
/// request's future is dropped).
struct Release<'a> {
    store: &'a ApprovalStore,
    id: &'a str,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        match self.store {
            ApprovalStore::Dir(store) => store.release(self.id),
            // Drop cannot wait: the shared state is told by a task of its own.
            ApprovalStore::Fleet(store) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let (store, id) = (store.clone(), self.id.to_owned());
                    runtime.spawn(async move { store.release(&id).await });
                }
            }
        }
    }
}

/// Holds `held` until the decision, and returns it if it approves. The decision must be for
/// exactly this request (its binding) and, unless it is a timeout, by one of `rule`'s approvers.
pub async fn hold(
    store: &ApprovalStore,
    metrics: &Metrics,
    held: &HeldRequest,
    rule: &ApprovalRule,
) -> Result<Verdict, NotApproved> {
    if let Err(error) = store.hold(held).await {
        warn!(%error, "cannot hold the request for approval; refusing it");
        return Err(NotApproved::Failed(format!(
            "the request could not be held for approval: {error}"
        )));
    }
    let _release = Release {
        store,
        id: &held.id,
    };
    let _pending = metrics.approval_pending();
    info!(job = %held.job, op = %held.operation, approval = %held.id, approvers = %rule.approvers.join(","), timeout_s = rule.timeout_seconds, "held for approval (clawcontrols approve {} --as NAME)", held.id);
    let verdict = loop {
        tokio::time::sleep(POLL).await;
        match store.verdict(&held.id).await {
            Ok(Some(verdict)) => break verdict,
            Ok(None) if now_ms() >= held.expires_ms => match store.expire(held, now_ms()).await {
                Ok(verdict) => break verdict,
                Err(error) => {
                    return Err(NotApproved::Failed(format!(
                        "the approval timed out and could not be recorded: {error}"
                    )));
                }
            },
            Ok(None) => {}
            Err(error) => {
                return Err(NotApproved::Failed(format!(
                    "the approval decision could not be read: {error}"
                )));
            }
        }
    };
    metrics.approval(verdict.outcome.as_str());
    if verdict.binding != held.binding() {
        return Err(NotApproved::Failed(format!(
            "the decision about {} is not for the request held; refused",
            held.id
        )));
    }
    match (&verdict.by, verdict.outcome) {
        (None, Outcome::Timeout) => {}
        (Some(by), Outcome::Approved | Outcome::Denied) if rule.approvers.contains(by) => {}
        _ => {
            return Err(NotApproved::Failed(format!(
                "the decision about {} is not by one of its approvers; refused",
                held.id
            )));
        }
    }
    info!(job = %held.job, approval = %held.id, outcome = verdict.outcome.as_str(), by = verdict.by.as_deref().unwrap_or("-"), "approval decided");
    match verdict.outcome {
        Outcome::Approved => Ok(verdict),
        Outcome::Denied | Outcome::Timeout => Err(NotApproved::Refused(verdict)),
    }
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use claw_policy::approval::Approvals;
    use claw_policy::contract::{OnTimeout, Operation};
    use claw_policy::datadir::DataDir;

    fn rule(timeout_seconds: u64) -> ApprovalRule {
        ApprovalRule {
            operations: vec![Operation::ReadItem],
            vaults: vec![],
            items: vec![],
            approvers: vec!["alice".into()],
            timeout_seconds,
            on_timeout: OnTimeout::Deny,
        }
    }

    fn held(rule: &ApprovalRule) -> HeldRequest {
        let now = now_ms();
        HeldRequest {
            id: Approvals::new_id(),
            job: "job-1".into(),
            wpc: "blake3:00".into(),
            rule: 0,
            approvers: rule.approvers.clone(),
            operation: "read_item".into(),
            method: "GET".into(),
            host: "connect.example".into(),
            path: "/v1/vaults/v/items/i".into(),
            query: None,
            body_hash: None,
            vault: Some("v".into()),
            vault_name: None,
            item: Some("i".into()),
            item_title: None,
            category: None,
            requested_ms: now,
            expires_ms: now + rule.timeout_seconds * 1000,
        }
    }

    /// Holds a request while `act` plays the person (once the request is listed); the outcome.
    async fn decided_by(
        rule: ApprovalRule,
        act: impl FnOnce(&Approvals, &HeldRequest) + Send + 'static,
    ) -> Result<Verdict, NotApproved> {
        let tmp = tempfile::tempdir().unwrap();
        let store = Approvals::new(&DataDir::new(tmp.path()));
        let held = held(&rule);
        let person = {
            let (store, held) = (store.clone(), held.clone());
            tokio::spawn(async move {
                while store.get(&held.id).is_err() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                act(&store, &held);
            })
        };
        let outcome = hold(
            &ApprovalStore::Dir(store.clone()),
            &Metrics::default(),
            &held,
            &rule,
        )
        .await;
        person.await.unwrap();
        assert!(store.get(&held.id).is_err(), "the request file is removed");
        outcome
    }

    #[tokio::test]
    async fn an_approvers_approval_releases_the_request() {
        let verdict = decided_by(rule(60), |store, held| {
            store
                .decide(&held.id, "alice", true, None, now_ms())
                .unwrap();
        })
        .await
        .unwrap();
        assert_eq!(
            (verdict.outcome, verdict.by.as_deref()),
            (Outcome::Approved, Some("alice"))
        );
    }

    #[tokio::test]
    async fn a_denial_or_silence_refuses_it() {
        let denied = decided_by(rule(60), |store, held| {
            store
                .decide(&held.id, "alice", false, Some("no".into()), now_ms())
                .unwrap();
        })
        .await
        .unwrap_err();
        assert_eq!(denied.reason(&rule(60)), "approval denied by alice: no");
        let silence = decided_by(rule(1), |_, _| {}).await.unwrap_err();
        assert!(matches!(&silence, NotApproved::Refused(v) if v.outcome == Outcome::Timeout));
        assert!(
            silence
                .reason(&rule(1))
                .contains("nobody decided within 1 s")
        );
    }

    #[tokio::test]
    async fn a_decision_about_an_edited_request_file_is_refused() {
        // Someone rewrites the held request on disk (another path), then approves that.
        let refused = decided_by(rule(60), |store, held| {
            let mut edited = held.clone();
            edited.path = "/v1/vaults/v/items/other".into();
            store.hold(&edited).unwrap();
            store
                .decide(&held.id, "alice", true, None, now_ms())
                .unwrap();
        })
        .await
        .unwrap_err();
        assert!(
            refused
                .reason(&rule(60))
                .contains("is not for the request held")
        );
    }

    #[tokio::test]
    async fn a_decision_by_someone_the_contract_does_not_name_is_refused() {
        // The file on disk names mallory as an approver; the contract in memory does not.
        let refused = decided_by(rule(60), |store, held| {
            let mut edited = held.clone();
            edited.approvers.push("mallory".into());
            store.hold(&edited).unwrap();
            store
                .decide(&held.id, "mallory", true, None, now_ms())
                .unwrap();
        })
        .await
        .unwrap_err();
        assert!(
            refused
                .reason(&rule(60))
                .contains("not by one of its approvers")
        );
    }
}
