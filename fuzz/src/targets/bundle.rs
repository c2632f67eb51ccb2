//! `bundle`: proof bundle parse, every check of `clawverify verify` against the golden trust
//! store, and the report.
//!
//! Invariants: what parses re-serialises to something that parses; verification reports every
//! check once, in order; a bundle that did not parse fails and skips the rest; a pass has no
//! failed check and a parsed bundle; the report's verdict is the verification's; the golden
//! bundle passes.

use claw_verifier::bundle;
use claw_verifier::verify::{self, CHECKS, Status, Tier};

use super::{GOLDEN_BUNDLE, golden};
use crate::engine::{Target, Trace};

/// The target.
pub const TARGET: Target = Target {
    name: "bundle",
    about: "proof bundle parse + full verify against the golden trust store + report",
    max_len: 64 * 1024,
    dictionary: &[
        b"\"type\"",
        b"\"clawproxy/proof-bundle/v1\"",
        b"\"receipts\"",
        b"\"token\"",
        b"\"policies\"",
        b"\"scope\"",
        b"\"logs\"",
        b"\"origin\"",
        b"\"checkpoint\"",
        b"\"inclusion\"",
        b"\"consistency\"",
        b"\"from\"",
        b"\"to\"",
        b"\"hashes\"",
        b"\"seq\"",
        b"\"key_hints\"",
        b"\"job_close\"",
        b"\"kind\"",
        b"\"allow\"",
        b"\"released\"",
        b"\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"",
    ],
    run,
};

fn run(input: &[u8], trace: &mut Trace) {
    let parsed = bundle::parse(input);
    trace.outcome("parse", &parsed);
    if let Ok(parsed) = &parsed {
        let again = serde_json::to_vec(parsed).expect("a bundle serialises");
        let again = bundle::parse(&again)
            .unwrap_or_else(|e| panic!("a parsed bundle re-serialised does not parse: {e}"));
        assert_eq!(again.receipts, parsed.receipts);
    }

    let v = verify::verify(input, &golden().trust);
    let names: Vec<&str> = v.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, CHECKS, "every check once, in order");
    for check in &v.checks {
        trace.step(check.name);
        trace.step(check.status.as_str());
    }
    match &parsed {
        Err(_) => {
            assert_eq!(v.checks[0].status, Status::Fail);
            assert_eq!(v.tier, Tier::Failed);
            assert!(v.bundle.is_none());
        }
        Ok(_) => assert_eq!(v.checks[0].status, Status::Pass),
    }
    if v.passed() {
        assert!(v.failed().is_empty() && v.bundle.is_some());
    } else {
        assert!(!v.failed().is_empty(), "failed tier without a failed check");
    }
    let report = verify::report(&v);
    let verdict = if v.passed() { "pass" } else { "fail" };
    assert_eq!(report["verdict"], verdict);
    serde_json::to_vec(&report).expect("a report serialises");
    if input == GOLDEN_BUNDLE.as_bytes() {
        assert!(v.passed(), "the golden bundle fails: {:?}", v.failed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_bundle_passes() {
        let v = verify::verify(GOLDEN_BUNDLE.as_bytes(), &golden().trust);
        assert!(v.passed(), "{:?}", v.failed());
        run(GOLDEN_BUNDLE.as_bytes(), &mut Trace::default());
    }
}
