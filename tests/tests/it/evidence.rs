//! Evidence end to end: a real job through the proxy, bundled from its data dir and verified
//! offline. Also regenerates the golden bundle the verifier's mutation tests start from:
//!
//!     CLAW_REGEN_GOLDEN=1 cargo test -p claw-tests --test it evidence::regenerate_golden -- --ignored

use std::path::Path;

use claw_policy::keys::Purpose;
use claw_policy::trust::TrustStore;
use claw_verifier::bundle::{self, BuildOptions, TokenState};
use claw_verifier::verify::{self, Status, Tier};
use connect_sim::demo::{DEMO_API_ITEM_ID, DEMO_DB_ITEM_ID, DEMO_LOGIN_ITEM_ID, DEMO_VAULT_ID};

use super::*;

const WRITER: &[u8] = include_bytes!("../../../examples/policies/1password-writer.json");
const JOB: &str = "golden-job";

/// One call through the proxy as `JOB`; returns the status.
async fn call(stack: &Stack, token: &str, method: &str, url: &str, body: &str) -> u16 {
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let request = format!(
        "{method} {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {}\r\nAuthorization: Bearer agent-placeholder\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        basic(JOB, token),
        body.len()
    );
    raw::send(stack.addr(), request.as_bytes()).await.status
}

fn connect_url(path: &str) -> String {
    format!("http://connect.1password.com{path}")
}

/// A job on the writer contract: allowed reads, a withheld read, a filtered list, an allowed
/// create (two receipts), a create and a delete the contract refuses, a host outside the
/// contract; then the job is revoked and closed. Returns the stack and the bundle's bytes.
async fn golden_run() -> (Stack, Vec<u8>) {
    let stack = Stack::start(WRITER, Upstream::Sim).await;
    let token = stack.mint("1password-writer", JOB, Some(600));
    let item = |id: &str| connect_url(&format!("/v1/vaults/{DEMO_VAULT_ID}/items/{id}"));
    let items = connect_url(&format!("/v1/vaults/{DEMO_VAULT_ID}/items"));
    let create = |category: &str| {
        format!(
            r#"{{"vault":{{"id":"{DEMO_VAULT_ID}"}},"title":"golden {category}","category":"{category}","fields":[{{"id":"password","type":"CONCEALED","purpose":"PASSWORD","value":"s3cret-golden"}}]}}"#
        )
    };
    let calls = [
        ("GET", item(DEMO_DB_ITEM_ID), String::new(), 200),
        ("GET", item(DEMO_API_ITEM_ID), String::new(), 200),
        ("GET", item(DEMO_LOGIN_ITEM_ID), String::new(), 403),
        ("GET", items.clone(), String::new(), 200),
        ("POST", items.clone(), create("DATABASE"), 200),
        ("POST", items.clone(), create("LOGIN"), 403),
        ("DELETE", item(DEMO_DB_ITEM_ID), String::new(), 403),
        ("GET", "http://example.org/".to_owned(), String::new(), 403),
    ];
    for (method, url, body, expected) in &calls {
        let status = call(&stack, &token, method, url, body).await;
        assert_eq!(status, *expected, "{method} {url}");
    }
    let bundle = close_and_bundle(&stack, JOB).await;
    (stack, bundle)
}

/// Revokes `job`, lets the proxy write its `job_close`, and bundles it once a checkpoint covers
/// it.
pub(super) async fn close_and_bundle(stack: &Stack, job: &str) -> Vec<u8> {
    claw_tokens::revocation::RevocationStore::new(stack.dir.state())
        .revoke_job(job, "run finished", claw_tokens::now())
        .unwrap();
    stack.proxy.proxy.close_ended_jobs().await;
    // The next checkpoint covers the job_close (the stack checkpoints every 100 ms).
    let options = BuildOptions {
        job: job.into(),
        include_live_token: false,
        now: claw_tokens::now(),
    };
    for _ in 0..600 {
        let mut out = Vec::new();
        match bundle::build(&stack.dir, &options, &mut out) {
            Ok(built) => {
                assert_eq!(built.token, TokenState::Revoked);
                assert!(built.closed);
                return out;
            }
            Err(bundle::BuildError::Checkpoint { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("bundle: {e}"),
        }
    }
    panic!("no checkpoint covered the job within 30 s");
}

/// Verifies `bundle` against the stack's trust.json and asserts nothing failed.
pub(super) fn verified_complete(stack: &Stack, bundle: &[u8]) -> verify::Verification {
    let trust = TrustStore::load(&stack.dir.trust()).unwrap();
    let v = verify::verify(bundle, &trust);
    let failed: Vec<_> = v
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| format!("{}: {}", c.name, c.reason))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(v.tier, Tier::VerifiedComplete);
    v
}

#[tokio::test]
async fn a_real_job_bundles_and_verifies_complete_against_trust_json_alone() {
    let (stack, bytes) = golden_run().await;
    let v = verified_complete(&stack, &bytes);
    assert_eq!(v.checks.len(), verify::CHECKS.len());
    let two_phase = v.check("semantics.two_phase").unwrap();
    assert!(
        two_phase.reason.starts_with("1 exchanges"),
        "{}",
        two_phase.reason
    );

    // The job was revoked: the issuer's snapshot says when, and nothing was allowed later.
    let revocation = v.check("token.revocation").unwrap();
    assert_eq!(revocation.status, Status::Pass, "{}", revocation.reason);
    assert!(
        revocation.reason.starts_with("revoked at "),
        "{}",
        revocation.reason
    );

    // The bundle (receipts and envelopes included) and the report are what the schemas say,
    // and the report counts what happened.
    let bundle: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let errors = claw_tests::schemas::errors("bundle.schema.json", &bundle);
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(bundle["revocations"]["snapshot"]["revoked"][0]["by"] == "job");
    let report = verify::report(&v);
    let errors = claw_tests::schemas::errors("report.schema.json", &report);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["counts"]["by_decision"]["deny"], 4);
    assert_eq!(report["counts"]["by_operation"]["read_item"], 3);

    // Nothing secret in the bundle: no body, no upstream token, no live credential.
    let text = String::from_utf8(bytes).unwrap();
    for secret in ["s3cret-golden", "demo-db-password", claw_tests::SIM_TOKEN] {
        assert!(!text.contains(secret), "bundle holds {secret}");
    }
}

#[tokio::test]
async fn a_live_token_is_not_bundled_unless_asked() {
    let stack = Stack::start(WRITER, Upstream::Sim).await;
    let token = stack.mint("1password-writer", JOB, Some(600));
    let url = connect_url(&format!(
        "/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_DB_ITEM_ID}"
    ));
    assert_eq!(call(&stack, &token, "GET", &url, "").await, 200);
    let mut options = BuildOptions {
        job: JOB.into(),
        include_live_token: false,
        now: claw_tokens::now(),
    };
    let mut out = Vec::new();
    let error = bundle::build(&stack.dir, &options, &mut out).unwrap_err();
    assert!(
        matches!(error, bundle::BuildError::LiveToken { .. }),
        "{error}"
    );
    assert!(out.is_empty(), "nothing written before the refusal");

    options.include_live_token = true;
    let bytes = loop {
        let mut out = Vec::new();
        match bundle::build(&stack.dir, &options, &mut out) {
            Ok(built) => {
                assert_eq!(built.token, TokenState::Live);
                break out;
            }
            Err(bundle::BuildError::Checkpoint { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let v = verify::verify(&bytes, &TrustStore::load(&stack.dir.trust()).unwrap());
    assert_eq!(v.tier, Tier::VerifiedOpen, "{:?}", v.failed());
    assert_eq!(v.check("job.closed").unwrap().status, Status::Skip);
}

/// Writes the golden fixture: the bundle, the trust.json that verifies it, and the private
/// keys the mutation tests re-sign with (test keys, never used elsewhere).
#[tokio::test]
#[ignore = "regenerates committed fixtures; run with CLAW_REGEN_GOLDEN=1"]
async fn regenerate_golden() {
    if std::env::var_os("CLAW_REGEN_GOLDEN").is_none() {
        return;
    }
    let (stack, bytes) = golden_run().await;
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../verifier/tests/fixtures/golden");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("bundle.json"), &bytes).unwrap();
    std::fs::copy(stack.dir.trust(), out.join("trust.json")).unwrap();
    for purpose in Purpose::ALL {
        let key = std::fs::read(stack.dir.signing_key(purpose)).unwrap();
        std::fs::write(out.join(format!("{}.pem", purpose.as_str())), key).unwrap();
    }
}

/// Whether `program --version` runs (from `PATH`).
fn runs(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs the demo with `path` as `PATH` for its agent; checks what both ways share and
/// returns the story.
fn demo(path: Option<std::ffi::OsString>) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("claw");
    let mut out = Vec::new();
    claw_proxy::demo::run_with_path(Some(root.clone()), path, &mut out).unwrap();
    let story = String::from_utf8(out).unwrap();
    for line in ["1. init", "6. agent", "7. revoke", "8. bundle", "9. verify"] {
        assert!(story.contains(line), "{story}");
    }
    assert!(story.contains("PASS (verified-complete)"), "{story}");
    assert!(!story.contains("BAD"), "{story}");
    // The tallies come from the receipts and from the report; both say what the contract does.
    assert!(
        story.contains("4 calls receipted for demo-job: 1 allowed, 3 refused"),
        "{story}"
    );
    assert!(
        story.contains("the report counts 1 allowed and 3 refused calls, as the log says"),
        "{story}"
    );
    // What the story points at is there, and checks out again from the files alone.
    let bytes = std::fs::read(root.join("demo-job.bundle.json")).unwrap();
    let trust = TrustStore::load(&root.join("trust.json")).unwrap();
    assert_eq!(verify::verify(&bytes, &trust).tier, Tier::VerifiedComplete);
    let page = std::fs::read_to_string(root.join("demo-job.html")).unwrap();
    assert!(page.contains("verified-complete"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("demo-job.report.json")).unwrap()).unwrap();
    assert_eq!(
        report["counts"]["by_decision"],
        serde_json::json!({"allow": 1, "deny": 3})
    );
    // The host outside the contract was refused by network_egress and nothing was forwarded.
    let outside: Vec<&serde_json::Value> = report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["host"] == "example.org")
        .collect();
    assert_eq!(outside.len(), 1, "{report:#}");
    assert_eq!(
        (&outside[0]["decision"], &outside[0]["rule"]),
        (
            &serde_json::json!("deny"),
            &serde_json::json!("network_egress")
        )
    );
    assert!(outside[0].get("status").is_none(), "forwarded: {report:#}");
    story
}

#[test]
fn the_demo_tells_the_whole_story_and_its_bundle_verifies() {
    let story = demo(std::env::var_os("PATH"));
    if runs("curl") && runs("bash") {
        // The example agent ran as a process of its own and said so.
        assert!(story.contains("as a separate process"), "{story}");
        assert_eq!(story.matches("   curl agent: ok  ").count(), 4, "{story}");
        assert!(story.contains("exited 0 after"), "{story}");
        assert!(story.contains("4 of 4 checks as expected"), "{story}");
    } else {
        assert!(
            story.contains("not found: the agent's calls are made in-process"),
            "{story}"
        );
    }
}

#[test]
fn without_curl_the_demo_makes_the_agents_calls_in_process() {
    let story = demo(Some(std::ffi::OsString::new()));
    assert!(
        story.contains("curl not found: the agent's calls are made in-process"),
        "{story}"
    );
    assert_eq!(
        story.matches("   in-process agent: ok  ").count(),
        4,
        "{story}"
    );
    assert!(!story.contains("curl agent"), "{story}");
}

#[tokio::test]
async fn the_report_says_what_changed_from_the_previous_contract_version() {
    let (stack, bytes) = golden_run().await;
    // A narrower version published later does not matter; an earlier one does.
    let trust = TrustStore::load(&stack.dir.trust()).unwrap();
    let mut report = verify::report(&verify::verify(&bytes, &trust));
    let registry = claw_policy::registry::Registry::new(stack.dir.policies());
    verify::add_contract_history(&mut report, &registry);
    assert!(
        report["contract"].get("previous_hash").is_none(),
        "v1 has no predecessor"
    );

    let mut v2: serde_json::Value = serde_json::from_slice(WRITER).unwrap();
    v2["tool_scope"]["allowed_operations"] = serde_json::json!(["read_item"]);
    let v2_hash = claw_tests::publish(&stack.dir, v2.to_string().as_bytes());
    report["contract"]["hash"] = serde_json::json!(v2_hash);
    verify::add_contract_history(&mut report, &registry);
    let changes: Vec<&str> = report["contract"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        changes.contains(&"no longer allows operation create_item"),
        "{changes:?}"
    );
}

#[tokio::test]
async fn a_body_naming_another_vault_than_its_path_is_refused_by_its_own_rule() {
    let stack = Stack::start(WRITER, Upstream::Sim).await;
    let token = stack.mint("1password-writer", JOB, Some(600));
    let other = connect_sim::demo::OTHER_VAULT_ID;
    let body =
        format!(r#"{{"vault":{{"id":"{other}"}},"title":"x","category":"DATABASE","fields":[]}}"#);
    let url = connect_url(&format!("/v1/vaults/{DEMO_VAULT_ID}/items"));
    assert_eq!(call(&stack, &token, "POST", &url, &body).await, 403);
    let receipt = stack.receipts().pop().unwrap();
    let decision = receipt.decision.unwrap();
    assert_eq!(
        (decision.allow, decision.rule.as_str()),
        (false, "body_vault_mismatch")
    );
    assert!(receipt.resp.is_none(), "nothing was forwarded");
}
