//! Held requests and decisions in the fleet's PostgreSQL ([`claw_fleet`]): the same rules as
//! the data dir's files (first decision stands, single use, only listed approvers, only
//! before the deadline), for proxies and approvers on different machines.

use claw_fleet::{Fleet, FleetError};

use super::{ApprovalError, HeldRequest, Verdict, check_id};

/// The fleet's held requests.
#[derive(Clone, Debug)]
pub struct SharedApprovals {
    fleet: Fleet,
}

impl SharedApprovals {
    /// Held requests in `fleet`'s state.
    pub fn new(fleet: Fleet) -> Self {
        Self { fleet }
    }

    /// Records a held request so approvers anywhere can see it.
    pub async fn hold(&self, held: &HeldRequest) -> Result<(), ApprovalError> {
        check_id(&held.id)?;
        let json = serde_json::to_string(held).expect("a held request serialises");
        self.fleet
            .hold_approval(&held.id, &json, held.expires_ms)
            .await
            .map_err(state)
    }

    /// The held requests nobody has decided yet whose deadline is after `now_ms`, oldest first.
    pub async fn pending(&self, now_ms: u64) -> Result<Vec<HeldRequest>, ApprovalError> {
        let rows = self.fleet.pending_approvals(now_ms).await.map_err(state)?;
        let mut out = rows
            .iter()
            .map(|json| parse::<HeldRequest>(json))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (a.requested_ms, &a.id).cmp(&(b.requested_ms, &b.id)));
        Ok(out)
    }

    /// The held request `id`, while its proxy holds it.
    pub async fn get(&self, id: &str) -> Result<HeldRequest, ApprovalError> {
        check_id(id)?;
        let json = self.fleet.held_approval(id).await.map_err(state)?;
        let held: HeldRequest = parse(&json.ok_or_else(|| ApprovalError::Unknown(id.into()))?)?;
        if held.id != id {
            return Err(ApprovalError::State(format!(
                "the row of {id} holds request {}",
                held.id
            )));
        }
        Ok(held)
    }

    /// An approver's decision. Refused unless `id` is held, undecided and not expired, and
    /// `by` is one of its approvers; of two racing decisions, the first stands.
    pub async fn decide(
        &self,
        id: &str,
        by: &str,
        approve: bool,
        reason: Option<String>,
        now_ms: u64,
    ) -> Result<Verdict, ApprovalError> {
        let held = match self.get(id).await {
            Ok(held) => held,
            Err(ApprovalError::Unknown(id)) => {
                return Err(match self.verdict(&id).await? {
                    Some(verdict) => ApprovalError::Decided(Box::new(verdict)),
                    None => ApprovalError::Unknown(id),
                });
            }
            Err(e) => return Err(e),
        };
        self.settle(held.decision(by, approve, reason, now_ms)?)
            .await
    }

    /// Ends `held` at its deadline: a `timeout` decision, unless an approver decided first;
    /// returns the decision that stands.
    pub async fn expire(&self, held: &HeldRequest, now_ms: u64) -> Result<Verdict, ApprovalError> {
        match self.settle(held.timeout(now_ms)).await {
            Ok(verdict) => Ok(verdict),
            Err(ApprovalError::Decided(first)) => Ok(*first),
            Err(e) => Err(e),
        }
    }

    /// The decision about `id`, if one was made.
    pub async fn verdict(&self, id: &str) -> Result<Option<Verdict>, ApprovalError> {
        check_id(id)?;
        let json = self.fleet.approval_decision(id).await.map_err(state)?;
        let verdict = json.as_deref().map(parse::<Verdict>).transpose()?;
        if verdict.as_ref().is_some_and(|v| v.id != id) {
            return Err(ApprovalError::State(format!(
                "the decision on {id} is about another request"
            )));
        }
        Ok(verdict)
    }

    /// Forgets the held request (its decision stays, so it cannot be decided again). Best
    /// effort, like removing the data dir's file: a request left held lingers in `pending`
    /// until its deadline, and a decision on it is never acted on.
    pub async fn release(&self, id: &str) {
        if check_id(id).is_ok() {
            let _ = self.fleet.release_approval(id).await;
        }
    }

    /// Writes `verdict` unless a decision stands; returns it, or `Decided` with the first one.
    async fn settle(&self, verdict: Verdict) -> Result<Verdict, ApprovalError> {
        let json = serde_json::to_string(&verdict).expect("a verdict serialises");
        let standing = self
            .fleet
            .settle_approval(&verdict.id, &json)
            .await
            .map_err(state)?
            .ok_or_else(|| ApprovalError::Unknown(verdict.id.clone()))?;
        if standing == json {
            return Ok(verdict);
        }
        Err(ApprovalError::Decided(Box::new(parse(&standing)?)))
    }
}

fn state(e: FleetError) -> ApprovalError {
    ApprovalError::State(e.to_string())
}

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, ApprovalError> {
    serde_json::from_str(json).map_err(|e| ApprovalError::State(format!("a stored approval: {e}")))
}
