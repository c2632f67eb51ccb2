use std::process::Command;

use super::*;

fn clawscope(root: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clawscope"))
        .args(args)
        .arg("--data-dir")
        .arg(root)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mint_inspect_revoke_jwks() {
    let f = Fixture::new();
    let root = f.root();
    let (code, token, summary) = clawscope(
        &root,
        &[
            "mint",
            "--policy",
            "1password-readonly-agent",
            "--job",
            "job-9",
            "--agent",
            "a",
            "--ttl",
            "120",
        ],
    );
    assert_eq!(code, 0, "{summary}");
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "stdout is only the token");
    assert!(summary.contains("job-9"));

    let (code, out, _) = clawscope(&root, &["inspect", token]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("verifies here: yes") && out.contains("1password-readonly-agent v1 (active)"),
        "{out}"
    );

    let (code, _, err) = clawscope(&root, &["revoke", "--job", "job-9", "--reason", "finished"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = clawscope(&root, &["inspect", token, "--json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["verifies_here"], false);
    assert!(report["reason"].as_str().unwrap().contains("revoked"));

    let (code, out, _) = clawscope(&root, &["jwks"]);
    assert_eq!(code, 0);
    let jwks: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(
        jwks["keys"][0]["kid"],
        keys::kid(&f.key(Purpose::Issuer).verifying_key())
    );

    let (code, _, err) = clawscope(
        &root,
        &["mint", "--policy", "nope", "--job", "j", "--agent", "a"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("no published contract"), "{err}");
    let (code, _, err) = clawscope(&root, &["inspect", "not-a-token"]);
    assert_eq!(code, 2, "{err}");
}

fn clawscope_stdin(root: &std::path::Path, args: &[&str], input: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawscope"))
        .args(args)
        .arg("--data-dir")
        .arg(root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn widening_and_superseded_mints_fail_with_exit_2() {
    let f = Fixture::new();
    let root = f.root();
    let base = [
        "mint",
        "--policy",
        "1password-readonly-agent",
        "--job",
        "j1",
        "--agent",
        "a",
    ];
    let (code, out, err) = clawscope(&root, &[&base[..], &["--ops", "delete_item"]].concat());
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "no token on stdout: {out}");
    assert!(err.contains("delete_item"), "{err}");
    let (code, _, err) = clawscope(&root, &[&base[..], &["--ops", "read_item,fly"]].concat());
    assert_eq!(code, 2);
    assert!(err.contains("fly"), "{err}");
    let (code, _, err) = clawscope(&root, &[&base[..], &["--vaults", "vault_x"]].concat());
    assert_eq!(code, 2);
    assert!(err.contains("vault_x"), "{err}");
    let (code, _, err) = clawscope(&root, &[&base[..], &["--ttl", "901"]].concat());
    assert_eq!(code, 2);
    assert!(err.contains("901") && err.contains("900"), "{err}");
    let (code, _, err) = clawscope(
        &root,
        &["mint", "--policy", "p", "--job", "a:b", "--agent", "a"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("job id"), "{err}");

    let v2 = std::str::from_utf8(SEED).unwrap().replace("900", "300");
    publish(&f.dir, v2.as_bytes());
    let (code, _, err) = clawscope(
        &root,
        &["mint", "--policy", &f.hash, "--job", "j1", "--agent", "a"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("superseded"), "{err}");
    // Narrowed, on the active version: works, and stdout is one line holding the token.
    let (code, out, err) = clawscope(&root, &[&base[..], &["--ops", "read_item"]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn inspect_from_stdin_revoke_by_jti_and_without_a_data_dir() {
    let f = Fixture::new();
    let root = f.root();
    let (code, token, err) = clawscope(
        &root,
        &[
            "mint",
            "--policy",
            "1password-readonly-agent",
            "--job",
            "j2",
            "--agent",
            "a",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out) = clawscope_stdin(&root, &["inspect", "-", "--json"], &token);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["verifies_here"], true);
    assert_eq!(report["header"]["typ"], "cst+jwt");
    assert_eq!(report["contract"]["name"], "1password-readonly-agent");
    assert_eq!(report["contract"]["active"], true);
    assert_eq!(report["validity"]["state"], "within its lifetime");
    assert_eq!(report["validity"]["lifetime_seconds"], 900);
    assert!(
        report["validity"]["expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let jti = report["claims"]["jti"].as_str().unwrap().to_owned();

    // Elsewhere (no data dir) it still decodes, and says it cannot judge the key.
    let empty = tempfile::tempdir().unwrap();
    let (code, out, _) = clawscope(empty.path(), &["inspect", token.trim()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verifies here: unknown"), "{out}");

    let (code, _, err) = clawscope(&root, &["revoke", "--jti", "nope"]);
    assert_eq!(code, 2, "{err}");
    // A jti is base64url and may start with '-': it is the value, not an unknown flag.
    let (code, _, hyphen) = clawscope(&root, &["revoke", "--jti", "-nope"]);
    assert_eq!(code, 2, "{hyphen}");
    assert_eq!(
        hyphen.replace("-nope", "nope"),
        err,
        "a leading '-' changed how the jti was read"
    );
    let (code, _, err) = clawscope(&root, &["revoke"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = clawscope(&root, &["revoke", "--jti", &jti, "--reason", "leaked"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = clawscope(&root, &["inspect", token.trim()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("verifies here: no (token") && out.contains("revoked"),
        "{out}"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.dir.state().join("revocations.json")).unwrap())
            .unwrap();
    assert_eq!(list["jti"][&jti]["reason"], "leaked");

    // A forged header decodes for display but never verifies.
    let forged = {
        let (_, rest) = token.trim().split_once('.').unwrap();
        format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"cst+jwt","kid":"x"}"#)
        )
    };
    let (code, out, _) = clawscope(empty.path(), &["inspect", &forged]);
    assert_eq!(code, 1);
    assert!(out.contains("algorithm \"none\""), "{out}");
}

#[test]
fn help_shows_the_whole_flow() {
    let out = Command::new(env!("CARGO_BIN_EXE_clawscope"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for step in [
        "clawcontrols publish",
        "clawscope mint --policy",
        "export HTTPS_PROXY=http://$JOB:$TOKEN@127.0.0.1:3128",
        "clawscope revoke",
        "Exit codes",
    ] {
        assert!(help.contains(step), "{step} missing from:\n{help}");
    }
}

#[test]
fn an_audit_only_contract_is_called_out_at_mint_and_inspect() {
    let f = Fixture::new();
    let root = f.root();
    let mint = |job: &str| {
        clawscope(
            &root,
            &[
                "mint",
                "--policy",
                "1password-readonly-agent",
                "--job",
                job,
                "--agent",
                "a",
            ],
        )
    };
    // Enforcing (the seed): no warning.
    let (code, _, summary) = mint("job-enforced");
    assert_eq!(code, 0, "{summary}");
    assert!(!summary.contains("AUDIT-ONLY"), "{summary}");

    let audit = std::str::from_utf8(SEED).unwrap().replacen(
        "\"sandbox\"",
        r#""enforcement": "audit", "sandbox""#,
        1,
    );
    publish(&f.dir, audit.as_bytes());
    let (code, token, summary) = mint("job-audit");
    assert_eq!(code, 0, "{summary}");
    assert!(
        summary.contains("warning") && summary.contains("AUDIT-ONLY"),
        "{summary}"
    );
    let (_, out, _) = clawscope(&root, &["inspect", token.trim()]);
    assert!(out.contains("AUDIT-ONLY"), "{out}");
    let (_, out, _) = clawscope(&root, &["inspect", token.trim(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["contract"]["enforcement"], "audit");
}
