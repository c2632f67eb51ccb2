//! `clawverify` as a reviewer runs it: exit codes, the summary, `--json`, `--report`, `view
//! --out`, on the golden bundle and a damaged copy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(name)
}

fn clawverify(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawverify"))
        .args(args)
        .env("CLAW_HOME", dir.join("no-data-dir"))
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_good_bundle_exits_0_and_a_damaged_one_exits_1_with_failures_first() {
    let tmp = tempfile::tempdir().unwrap();
    let trust = fixture("trust.json");
    let trust = trust.to_str().unwrap();
    let golden = fixture("bundle.json");
    let out = clawverify(
        &["verify", golden.to_str().unwrap(), "--trust", trust],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.contains("verdict: PASS, tier verified-complete"),
        "{summary}"
    );
    assert_eq!(
        summary.lines().filter(|l| l.starts_with("  PASS")).count(),
        28
    );
    assert!(
        summary.contains("  PASS  token.revocation"),
        "the golden bundle carries the issuer's revocation snapshot: {summary}"
    );

    let mut damaged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&golden).unwrap()).unwrap();
    damaged["receipts"].as_array_mut().unwrap().swap(1, 2);
    let path = tmp.path().join("damaged.json");
    std::fs::write(&path, serde_json::to_vec(&damaged).unwrap()).unwrap();
    let report = tmp.path().join("report.json");
    let out = clawverify(
        &[
            "verify",
            "damaged.json",
            "--trust",
            trust,
            "--report",
            report.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let summary = text(&out.stdout);
    let first = summary.lines().nth(1).unwrap();
    assert!(first.starts_with("  FAIL  job.sequence"), "{summary}");
    assert!(summary.contains("verdict: FAIL, tier failed"), "{summary}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["tier"], "failed");
}

#[test]
fn json_output_view_and_input_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let trust = fixture("trust.json");
    let trust = trust.to_str().unwrap();
    let golden = fixture("bundle.json");
    let golden = golden.to_str().unwrap();

    let out = clawverify(&["verify", golden, "--trust", trust, "--json"], tmp.path());
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["type"], "clawproxy/verification-report/v1");
    assert_eq!(report["tier"], "verified-complete");

    let out = clawverify(
        &["view", golden, "--trust", trust, "--out", "page.html"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(tmp.path().join("page.html")).unwrap();
    assert!(page.contains("verified-complete") && page.contains("golden-job"));

    // A missing file, a missing trust.json and something that is not a bundle: exit 2 or 1,
    // each with a message naming what to fix.
    let out = clawverify(&["verify", "missing.json", "--trust", trust], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.json"));
    let out = clawverify(&["verify", golden], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--trust"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(tmp.path().join("notes.txt"), "hello").unwrap();
    let out = clawverify(&["verify", "notes.txt", "--trust", trust], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("FAIL  bundle.parse"));
}

#[test]
fn bundle_refuses_a_data_dir_without_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let out = clawverify(&["bundle", "--job", "nobody", "-o", "b.json"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(!tmp.path().join("b.json").exists(), "nothing half-written");
}
