//! The reviewer's page in a real headless browser: both fixture reports are rendered with
//! `claw_verifier::view::render`, written under `target/viewer/`, and driven by
//! `tests/browser/viewer.mjs` (playwright-core over Debian's `/usr/bin/chromium`), which checks
//! the verdict, filtering, failure marking and that the page makes no request; screenshots land
//! next to the pages.
//!
//! Without chromium or `tests/browser/node_modules` (installed by `tests/sdk/setup.sh`) the
//! browser test is skipped loudly, and fails when `CI` is set.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the verifier crate sits in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace().join(dir)
            }
        }
        None => workspace().join("target"),
    }
}

fn fixture(name: &str) -> serde_json::Value {
    let path = workspace().join("verifier/tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Reports of the golden bundle as it is and with one receipt dropped, by `clawverify verify`.
fn golden_reports() -> (serde_json::Value, serde_json::Value) {
    let dir = workspace().join("verifier/tests/fixtures/golden");
    let trust = claw_policy::trust::TrustStore::load(&dir.join("trust.json")).unwrap();
    let bytes = std::fs::read(dir.join("bundle.json")).unwrap();
    let mut broken: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    broken["receipts"].as_array_mut().unwrap().remove(3);
    let broken = serde_json::to_vec(&broken).unwrap();
    let report =
        |bytes: &[u8]| claw_verifier::verify::report(&claw_verifier::verify::verify(bytes, &trust));
    (report(&bytes), report(&broken))
}

/// `report` as if its contract were audit-only and its first denial (one refused before
/// forwarding) had been let through.
fn audit_only(report: &serde_json::Value) -> serde_json::Value {
    let mut report = report.clone();
    report["contract"]["enforcement"] = "audit".into();
    let calls = report["calls"].as_array_mut().unwrap();
    let denied = calls
        .iter_mut()
        .find(|c| c["decision"] == "deny" && c.get("released").is_none())
        .expect("the golden bundle has a denial");
    denied["decision"] = "allow".into();
    denied["would_deny"] = true.into();
    report
}

/// `report` as if a contract approvals rule had held its first allowed call (approved by
/// alice) and its first denial (nobody decided).
fn with_approvals(report: &serde_json::Value) -> serde_json::Value {
    let mut report = report.clone();
    let calls = report["calls"].as_array_mut().unwrap();
    let at = "2026-11-23T10:02:11.000Z";
    let allowed = calls.iter_mut().find(|c| c["decision"] == "allow").unwrap();
    allowed["approval"] =
        serde_json::json!({"id": "apr_1", "outcome": "approved", "by": "alice", "at": at});
    let denied = calls.iter_mut().find(|c| c["decision"] == "deny").unwrap();
    denied["approval"] = serde_json::json!({"id": "apr_2", "outcome": "timeout", "at": at});
    denied["rule"] = "approvals".into();
    report
}

/// `report` as if its contract had `host_rules` for two hosts and its first denial had been
/// refused by them.
fn with_host_rules(report: &serde_json::Value) -> serde_json::Value {
    let mut report = report.clone();
    report["contract"]["document"]["host_rules"] = serde_json::json!({
        "api.github.com": [{"methods": ["GET", "HEAD"], "paths": ["/repos/acme/**"]},
                           {"methods": ["POST"], "paths": ["/repos/acme/*/issues"]}],
        "connect.1password.com": [{"methods": ["GET"], "paths": ["/v1/vaults/*/items/*"]}]
    });
    let calls = report["calls"].as_array_mut().unwrap();
    let denied = calls.iter_mut().find(|c| c["decision"] == "deny").unwrap();
    denied["rule"] = "host_rules".into();
    report
}

const FIXTURES: [(&str, &str); 2] = [("pass", "report-pass.json"), ("fail", "report-fail.json")];

#[test]
fn fixture_reports_match_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("schemas/report.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    for (expect, name) in FIXTURES {
        let report = fixture(name);
        let errors: Vec<String> = validator
            .iter_errors(&report)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        assert_eq!(report["verdict"], expect, "{name}");
        let checks = report["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 30, "{name}: every check is listed");
        let failing: Vec<&str> = checks
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(failing.is_empty(), expect == "pass", "{name}: {failing:?}");
    }
}

#[test]
fn the_page_works_in_headless_chromium() {
    let root = workspace();
    let browser_dir = root.join("tests/browser");
    let missing: Vec<String> = [
        PathBuf::from(CHROMIUM),
        browser_dir.join("node_modules/playwright-core/package.json"),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .map(|p| p.display().to_string())
    .collect();
    if !missing.is_empty() {
        let why = format!(
            "{} missing (apt-get install chromium; bash tests/sdk/setup.sh)",
            missing.join(" and ")
        );
        if std::env::var_os("CI").is_some() {
            panic!("viewer browser test cannot run in CI: {why}");
        }
        // Straight to stderr: libtest does not capture this, so the skip shows without --nocapture.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!! SKIPPED: viewer browser test: {why} !!!!!\n"
        );
        return;
    }

    let out = target_dir().join("viewer");
    std::fs::create_dir_all(&out).unwrap();
    let mut pages: Vec<(&str, String, serde_json::Value)> = FIXTURES
        .iter()
        .map(|(expect, name)| (*expect, format!("report-{expect}"), fixture(name)))
        .collect();
    // And the pages of real bundles: the golden one from a proxy run, and the same bundle with
    // one receipt dropped.
    let (golden, broken) = golden_reports();
    pages.push(("pass", "audit-only".into(), audit_only(&golden)));
    pages.push(("pass", "approvals".into(), with_approvals(&golden)));
    pages.push(("pass", "host-rules".into(), with_host_rules(&golden)));
    pages.push(("pass", "golden-pass".into(), golden));
    pages.push(("fail", "golden-fail".into(), broken));
    for (expect, name, report) in pages {
        let html = out.join(format!("{name}.html"));
        let png = out.join(format!("{name}.png"));
        std::fs::write(&html, claw_verifier::view::render(&report)).unwrap();
        let _ = std::fs::remove_file(&png);
        let result = Command::new("node")
            .current_dir(&browser_dir)
            .arg("viewer.mjs")
            .arg(&html)
            .arg(expect)
            .arg(&png)
            .output()
            .expect("node runs (apt-get install nodejs)");
        let stdout = String::from_utf8_lossy(&result.stdout);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            result.status.success(),
            "viewer.mjs {expect} failed ({}):\n{stdout}\n{stderr}",
            result.status
        );
        eprint!("{stdout}");
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is missing or empty", png.display());
    }
}
