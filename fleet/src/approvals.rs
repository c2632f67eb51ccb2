//! Requests held for approval, shared by the fleet: the proxy holding a request and the
//! approver deciding it need not be on the same machine. Rows carry the request and the
//! decision as opaque JSON (their types and rules belong to `claw-policy`); what this module
//! guarantees is that the first decision stands, for every proxy and approver at once.

use crate::{Fleet, FleetError, within};

impl Fleet {
    /// Records a held request (`request` is its JSON) until `expires_ms`.
    pub async fn hold_approval(
        &self,
        id: &str,
        request: &str,
        expires_ms: u64,
    ) -> Result<(), FleetError> {
        let conn = self.pool.get().await?;
        within(conn.client.execute(
            "INSERT INTO claw_approvals (id, request, expires_ms) VALUES ($1, $2, $3)",
            &[&id, &request, &millis(expires_ms)],
        ))
        .await?;
        Ok(())
    }

    /// The held requests nobody decided whose deadline is after `now_ms`.
    pub async fn pending_approvals(&self, now_ms: u64) -> Result<Vec<String>, FleetError> {
        let conn = self.pool.get().await?;
        let rows = within(conn.client.query(
            "SELECT request FROM claw_approvals \
             WHERE held AND decision IS NULL AND expires_ms > $1 ORDER BY since, id",
            &[&millis(now_ms)],
        ))
        .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The request `id` while its proxy still holds it.
    pub async fn held_approval(&self, id: &str) -> Result<Option<String>, FleetError> {
        let conn = self.pool.get().await?;
        let row = within(conn.client.query_opt(
            "SELECT request FROM claw_approvals WHERE id = $1 AND held",
            &[&id],
        ))
        .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Records `decision` for `id` unless one stands; returns the one that stands (`None`:
    /// no such request).
    pub async fn settle_approval(
        &self,
        id: &str,
        decision: &str,
    ) -> Result<Option<String>, FleetError> {
        let conn = self.pool.get().await?;
        // The row lock orders racing deciders; the loser's UPDATE matches nothing, and its
        // next statement (a new snapshot) reads the winner's decision.
        let won = within(conn.client.query_opt(
            "UPDATE claw_approvals SET decision = $2 \
             WHERE id = $1 AND decision IS NULL RETURNING decision",
            &[&id, &decision],
        ))
        .await?;
        match won {
            Some(row) => Ok(row.get(0)),
            None => self.approval_decision(id).await,
        }
    }

    /// The decision on `id`, if one stands.
    pub async fn approval_decision(&self, id: &str) -> Result<Option<String>, FleetError> {
        let conn = self.pool.get().await?;
        let row = within(
            conn.client
                .query_opt("SELECT decision FROM claw_approvals WHERE id = $1", &[&id]),
        )
        .await?;
        Ok(row.and_then(|row| row.get(0)))
    }

    /// The holding proxy let go of `id` (its decision, if any, stays and still blocks a late one).
    pub async fn release_approval(&self, id: &str) -> Result<(), FleetError> {
        let conn = self.pool.get().await?;
        within(conn.client.execute(
            "UPDATE claw_approvals SET held = false WHERE id = $1",
            &[&id],
        ))
        .await?;
        Ok(())
    }
}

fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
