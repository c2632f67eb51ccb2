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
