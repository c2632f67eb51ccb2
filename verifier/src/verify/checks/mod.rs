//! The named checks (evidence.md §8), one function each, grouped by what they look at.

mod keys;
mod log;
mod receipts;
mod semantics;
mod token;

use super::context::Ctx;
use super::{CheckResult, Status};

/// What one check found.
pub(crate) struct Outcome {
    pub(crate) status: Status,
    pub(crate) reason: String,
    pub(crate) receipts: Vec<u64>,
}

pub(crate) fn pass(reason: impl Into<String>) -> Outcome {
    Outcome {
        status: Status::Pass,
        reason: reason.into(),
        receipts: Vec::new(),
    }
}

pub(crate) fn skip(reason: impl Into<String>) -> Outcome {
    Outcome {
        status: Status::Skip,
        reason: reason.into(),
        receipts: Vec::new(),
    }
}

pub(crate) fn fail(reason: impl Into<String>) -> Outcome {
    Outcome {
        status: Status::Fail,
        reason: reason.into(),
        receipts: Vec::new(),
    }
}

/// Collects problems; fails with the first few and every receipt concerned, or passes.
#[derive(Default)]
pub(crate) struct Problems {
    messages: Vec<String>,
    receipts: Vec<u64>,
    count: usize,
}

impl Problems {
    pub(crate) fn add(&mut self, message: impl Into<String>) {
        self.count += 1;
        if self.messages.len() < 5 {
            self.messages.push(message.into());
        }
    }

    pub(crate) fn receipt(&mut self, seq: Option<u64>, message: impl Into<String>) {
        if let Some(seq) = seq
            && !self.receipts.contains(&seq)
        {
            self.receipts.push(seq);
        }
        self.add(message);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Fails with the problems, or passes with `ok`.
    pub(crate) fn outcome(self, ok: impl Into<String>) -> Outcome {
        if self.count == 0 {
            return pass(ok);
        }
        let mut reason = self.messages.join("; ");
        if self.count > self.messages.len() {
            reason.push_str(&format!("; and {} more", self.count - self.messages.len()));
        }
        Outcome {
            status: Status::Fail,
            reason,
            receipts: self.receipts,
        }
    }
}

type Check = fn(&Ctx<'_>) -> Outcome;

/// Every check after `bundle.parse` and before `report.verdict`, in report order.
const ALL: [(&str, Check); 28] = [
    ("keys.trusted", keys::trusted),
    ("keys.not_weak", keys::not_weak),
    ("policy.hash", keys::policy_hash),
    ("policy.signature", keys::policy_signature),
    ("token.shape", token::shape),
    ("token.signature", token::signature),
    ("token.claims", token::claims),
    ("token.lifetime", token::lifetime),
    ("token.binding", token::binding),
    ("token.revocation", token::revocation),
    ("receipt.canonical", receipts::canonical),
    ("receipt.signature", receipts::signature),
    ("receipt.binding", receipts::binding),
    ("receipt.time", receipts::time),
    ("receipt.unique", receipts::unique),
    ("job.sequence", receipts::job_sequence),
    ("job.closed", receipts::job_closed),
    ("log.leaf", log::leaf),
    ("log.inclusion", log::inclusion),
    ("log.checkpoint", log::checkpoint),
    ("log.consistency", log::consistency),
    ("log.coverage", log::coverage),
    ("log.witness", log::witness),
    ("semantics.reevaluate", semantics::reevaluate),
    (
        "semantics.denied_not_forwarded",
        semantics::denied_not_forwarded,
    ),
    ("semantics.unknown_denied", semantics::unknown_denied),
    ("semantics.no_release", semantics::no_release),
    ("semantics.two_phase", semantics::two_phase),
];

pub(crate) fn run_all(ctx: &Ctx<'_>) -> Vec<CheckResult> {
    ALL.iter()
        .map(|(name, check)| {
            let Outcome {
                status,
                reason,
                mut receipts,
            } = check(ctx);
            receipts.sort_unstable();
            CheckResult {
                name,
                status,
                reason,
                receipts,
            }
        })
        .collect()
}
