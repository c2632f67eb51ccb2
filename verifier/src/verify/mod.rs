//! `clawverify verify`: every check of a proof bundle, by name, against trusted keys only.
//!
//! [`verify`] parses the bundle (`bundle.parse`), prepares what the checks share once (each
//! receipt's canonical leaf and typed form, the token's decoded parts, the contract and the
//! effective scope: [`context`]), then runs the checks of `reference/evidence.md` §8 in order
//! ([`checks`]). Each reports pass, fail or skip with a reason and the seqs of the receipts it
//! concerns. A check whose inputs another check already refused skips and says which.
//!
//! The tier follows from the results: `failed` when anything failed, `verified-complete`
//! when `job.closed` passed (the bundle holds all of the job), `verified-open` otherwise.

mod checks;
mod context;
mod report;

use claw_policy::trust::TrustStore;
use sha2::{Digest, Sha256};

pub use report::{BURST_DENIALS, BURST_WINDOW_MS, REPORT_TYPE, add_contract_history, report};

use crate::bundle::{self, Bundle};
use context::Ctx;

/// Every check, in the order they run and are reported.
pub const CHECKS: [&str; 30] = [
    "bundle.parse",
    "keys.trusted",
    "keys.not_weak",
    "policy.hash",
    "policy.signature",
    "token.shape",
    "token.signature",
    "token.claims",
    "token.lifetime",
    "token.binding",
    "token.revocation",
    "receipt.canonical",
    "receipt.signature",
    "receipt.binding",
    "receipt.time",
    "receipt.unique",
    "job.sequence",
    "job.closed",
    "log.leaf",
    "log.inclusion",
    "log.checkpoint",
    "log.consistency",
    "log.coverage",
    "log.witness",
    "semantics.reevaluate",
    "semantics.denied_not_forwarded",
    "semantics.unknown_denied",
    "semantics.no_release",
    "semantics.two_phase",
    "report.verdict",
];

/// A check's result.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Status {
    /// It holds.
    Pass,
    /// It does not hold: the bundle is not to be trusted.
    Fail,
    /// It could not be judged (reason says why); not a failure.
    Skip,
}

impl Status {
    /// `pass`, `fail` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One named check's outcome.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct CheckResult {
    /// Its name (one of [`CHECKS`]).
    pub name: &'static str,
    /// Pass, fail or skip.
    pub status: Status,
    /// Why, in a sentence.
    pub reason: String,
    /// The seqs of the receipts it concerns (the failing ones, for a failure).
    pub receipts: Vec<u64>,
}

/// How far the bundle can be trusted.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Tier {
    /// Every check passed and a `job_close` shows the bundle holds all of the job.
    VerifiedComplete,
    /// Every check passed, but the job was still open: later calls may exist.
    VerifiedOpen,
    /// Something failed.
    Failed,
}

impl Tier {
    /// `verified-complete`, `verified-open` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::VerifiedComplete => "verified-complete",
            Tier::VerifiedOpen => "verified-open",
            Tier::Failed => "failed",
        }
    }
}

/// The outcome of verifying one bundle.
#[derive(Debug)]
pub struct Verification {
    /// Every check, in [`CHECKS`] order.
    pub checks: Vec<CheckResult>,
    /// The tier.
    pub tier: Tier,
    /// SHA-256 of the bundle's bytes, hex.
    pub bundle_sha256: String,
    /// The parsed bundle, when it parsed.
    pub bundle: Option<Bundle>,
}

impl Verification {
    /// Whether no check failed (exit 0).
    pub fn passed(&self) -> bool {
        self.tier != Tier::Failed
    }

    /// The result of one named check.
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The names of the failed checks.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect()
    }
}

/// Verifies a bundle's bytes against `trust` (the reviewer's trust.json), at no particular
/// time: a bundle is evidence about the past, so expiry is not a failure.
pub fn verify(bytes: &[u8], trust: &TrustStore) -> Verification {
    let bundle_sha256 = crate::receipt::hex(&Sha256::digest(bytes));
    let bundle = match bundle::parse(bytes) {
        Ok(bundle) => bundle,
        Err(error) => {
            let mut checks = vec![CheckResult {
                name: "bundle.parse",
                status: Status::Fail,
                reason: error.message,
                receipts: Vec::new(),
            }];
            for name in &CHECKS[1..CHECKS.len() - 1] {
                checks.push(CheckResult {
                    name,
                    status: Status::Skip,
                    reason: "the bundle did not parse".into(),
                    receipts: Vec::new(),
                });
            }
            return finish(checks, bundle_sha256, None);
        }
    };
    let ctx = Ctx::new(&bundle, trust);
    let mut checks = vec![CheckResult {
        name: "bundle.parse",
        status: Status::Pass,
        reason: format!(
            "{} with {} receipts from {} log(s)",
            bundle.kind,
            bundle.receipts.len(),
            bundle.logs.len()
        ),
        receipts: Vec::new(),
    }];
    checks.extend(checks::run_all(&ctx));
    drop(ctx);
    finish(checks, bundle_sha256, Some(bundle))
}

/// Adds `report.verdict` and derives the tier.
fn finish(
    mut checks: Vec<CheckResult>,
    bundle_sha256: String,
    bundle: Option<Bundle>,
) -> Verification {
    let listed = CHECKS[..CHECKS.len() - 1]
        .iter()
        .all(|name| checks.iter().any(|c| c.name == *name));
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name)
        .collect();
    let (status, reason) = if !listed {
        (
            Status::Fail,
            "a check is missing from the report".to_owned(),
        )
    } else if failed.is_empty() {
        (
            Status::Pass,
            format!("all {} checks listed; none failed", CHECKS.len()),
        )
    } else {
        (
            Status::Fail,
            format!("{} check(s) failed: {}", failed.len(), failed.join(", ")),
        )
    };
    checks.push(CheckResult {
        name: "report.verdict",
        status,
        reason,
        receipts: Vec::new(),
    });
    let tier = if status == Status::Fail {
        Tier::Failed
    } else if checks
        .iter()
        .any(|c| c.name == "job.closed" && c.status == Status::Pass)
    {
        Tier::VerifiedComplete
    } else {
        Tier::VerifiedOpen
    };
    Verification {
        checks,
        tier,
        bundle_sha256,
        bundle,
    }
}
