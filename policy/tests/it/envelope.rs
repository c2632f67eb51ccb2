//! Signed envelopes as input: verified against the data dir's trust.json; tampered, unsigned
//! and untrusted envelopes exit 2 naming the file and the pointer, and publish writes nothing.

use super::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A data dir with the seed published, and the seed's signed envelope.
fn published() -> (tempfile::TempDir, PathBuf, serde_json::Value) {
    let (tmp, root) = data_dir();
    let out = clawcontrols(&["publish", s(&seed()), "--data-dir", s(&root)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let show = clawcontrols(&[
        "show",
        "1password-readonly-agent",
        "--data-dir",
        s(&root),
        "--json",
    ]);
    let envelope = serde_json::from_str(&show.stdout).unwrap();
    (tmp, root, envelope)
}

fn write(dir: &Path, name: &str, value: &serde_json::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

#[test]
fn a_signed_envelope_validates_and_hashes_like_its_contract() {
    let (tmp, root, envelope) = published();
    let file = write(tmp.path(), "signed.json", &envelope);
    let out = clawcontrols(&["validate", s(&file), "--data-dir", s(&root)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("valid signed envelope"),
        "{}",
        out.stdout
    );
    let a = clawcontrols(&["hash", s(&file)]);
    let b = clawcontrols(&["hash", s(&seed())]);
    assert_eq!((a.code, &a.stdout), (0, &b.stdout));
    // Publishing the same signed envelope again changes nothing.
    let out = clawcontrols(&["publish", s(&file), "--data-dir", s(&root), "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let published: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(published["changed"], false);
}

#[test]
fn tampered_unsigned_and_untrusted_envelopes_exit_2_with_pointer() {
    let (tmp, root, envelope) = published();
    let index = std::fs::read(root.join("policies/index.json")).unwrap();

    let mut tampered = envelope.clone();
    tampered["wpc"]["cst_constraints"]["max_ttl_seconds"] = 86400.into();
    let mut rehashed = tampered.clone();
    let contract = claw_policy::contract::Contract::from_value(rehashed["wpc"].clone()).unwrap();
    rehashed["hash"] = contract.hash().into();
    let mut unsigned = envelope.clone();
    unsigned["signatures"] = serde_json::json!([]);
    let mut extra = envelope.clone();
    extra["note"] = "hi".into();
    let mut bad_doc = envelope.clone();
    bad_doc["wpc"]["tool_scope"]["allowed_operations"] = serde_json::json!(["read_all"]);

    // Signed by another data dir's policy key: valid signature, but not trusted here.
    let (_other_tmp, other_root) = data_dir();
    let out = clawcontrols(&["publish", s(&seed()), "--data-dir", s(&other_root)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let foreign: serde_json::Value = serde_json::from_str(
        &clawcontrols(&[
            "show",
            "1password-readonly-agent",
            "--data-dir",
            s(&other_root),
            "--json",
        ])
        .stdout,
    )
    .unwrap();

    let cases = [
        ("tampered", tampered, "/hash", "hash mismatch"),
        ("rehashed", rehashed, "/signatures/0/sig", "does not verify"),
        ("unsigned", unsigned, "/signatures", "unsigned"),
        (
            "untrusted",
            foreign,
            "/signatures",
            "no signature by a trusted",
        ),
        ("extra", extra, "/note", "unknown field"),
        (
            "bad-doc",
            bad_doc,
            "/wpc/tool_scope/allowed_operations/0",
            "fix: use one of",
        ),
    ];
    for (name, value, pointer, needle) in cases {
        let file = write(tmp.path(), &format!("{name}.json"), &value);
        for command in ["validate", "publish"] {
            let out = clawcontrols(&[command, s(&file), "--data-dir", s(&root)]);
            assert_eq!(out.code, 2, "{command} {name}: {}", out.stderr);
            let expected = format!("{name}.json: {pointer}: ");
            assert!(
                out.stderr.contains(&expected),
                "{command} {name}: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains(needle),
                "{command} {name}: {}",
                out.stderr
            );
        }
    }
    // Nothing reached the registry.
    assert_eq!(
        std::fs::read(root.join("policies/index.json")).unwrap(),
        index
    );
    let stored = std::fs::read_dir(root.join("policies"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count();
    assert_eq!(stored, 2, "index.json and one envelope");
}

#[test]
fn a_tampered_registry_entry_is_refused_by_diff_and_explain() {
    let (_tmp, root, envelope) = published();
    let hash = envelope["hash"].as_str().unwrap();
    let stored = root
        .join("policies")
        .join(format!("{}.json", hash.trim_start_matches("blake3:")));
    let mut tampered = envelope.clone();
    tampered["wpc"]["tool_scope"]["allowed_operations"] = serde_json::json!(["delete_item"]);
    tampered["wpc"]["tool_scope"]["deny_operations"] = serde_json::json!([]);
    std::fs::write(&stored, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let out = clawcontrols(&[
        "diff",
        s(&seed()),
        "1password-readonly-agent",
        "--data-dir",
        s(&root),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("registry entry 1password-readonly-agent: /hash"),
        "{}",
        out.stderr
    );
    let out = clawcontrols(&[
        "explain",
        "--policy",
        hash,
        "--method",
        "DELETE",
        "--url",
        "https://connect.1password.com/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/x4tpzrqojj2ahmv3w7nb6vu2pe",
        "--data-dir",
        s(&root),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}
