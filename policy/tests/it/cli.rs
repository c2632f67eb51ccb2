use super::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn seed_and_variants_validate() {
    let out = clawcontrols(&["validate", s(&seed())]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for name in [
        "1password-read-by-title.json",
        "1password-writer.json",
        "multi-host.json",
    ] {
        let out = clawcontrols(&["validate", s(&policies().join(name))]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
    }
}

#[test]
fn bad_contracts_exit_2_naming_file_pointer_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(seed()).unwrap();
    let cases = [
        ("malformed", seed.replace("\"name\":", "\"name\"")),
        (
            "duplicate",
            seed.replace(
                "\"name\": \"1password-readonly-agent\",",
                "\"name\": \"a\", \"name\": \"b\",",
            ),
        ),
        (
            "unknown-field",
            seed.replace(
                "\"job_scoped\": true",
                "\"job_scoped\": true, \"colour\": 1",
            ),
        ),
        ("wrong-type", seed.replace("900", "\"900\"")),
        ("empty-list", seed.replace("[\"read_item\"]", "[]")),
        (
            "unknown-op",
            seed.replace("[\"read_item\"]", "[\"read_everything\"]"),
        ),
        (
            "unknown-category",
            seed.replace("\"DATABASE\"", "\"DATABASES\""),
        ),
        ("ttl-zero", seed.replace("900", "0")),
        ("ttl-absurd", seed.replace("900", "99999999")),
    ];
    let expect = [
        ("malformed", "line"),
        ("duplicate", "duplicate key"),
        ("unknown-field", "/cst_constraints"),
        ("wrong-type", "/cst_constraints/max_ttl_seconds"),
        ("empty-list", "/tool_scope/allowed_operations"),
        ("unknown-op", "/tool_scope/allowed_operations/0"),
        ("unknown-category", "/tool_scope/allowed_categories/1"),
        ("ttl-zero", "/cst_constraints/max_ttl_seconds"),
        ("ttl-absurd", "/cst_constraints/max_ttl_seconds"),
    ];
    for ((name, text), (_, needle)) in cases.iter().zip(expect) {
        let path = tmp.path().join(format!("{name}.json"));
        std::fs::write(&path, text).unwrap();
        let out = clawcontrols(&["validate", s(&path)]);
        assert_eq!(out.code, 2, "{name}");
        assert!(
            out.stderr.contains(&format!("{name}.json")),
            "{name}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(needle), "{name}: {}", out.stderr);
    }
    let out = clawcontrols(&["validate", s(&tmp.path().join("unknown-op.json"))]);
    assert!(
        out.stderr.contains("fix: use one of list_vaults"),
        "{}",
        out.stderr
    );
}

#[test]
fn hash_ignores_key_order_and_whitespace() {
    let tmp = tempfile::tempdir().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(seed()).unwrap()).unwrap();
    let compact = tmp.path().join("compact.json");
    std::fs::write(&compact, serde_json::to_string(&value).unwrap()).unwrap();
    let a = clawcontrols(&["hash", s(&seed())]);
    let b = clawcontrols(&["hash", s(&compact)]);
    assert_eq!(a.code, 0);
    assert_eq!(a.stdout, b.stdout);
    assert!(a.stdout.trim().starts_with("blake3:"));
}

#[test]
fn publish_list_show_and_supersede() {
    let (_tmp, root) = data_dir();
    let root = s(&root);
    let out = clawcontrols(&["publish", s(&seed()), "--data-dir", root]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v1 = out.stdout.trim().to_owned();
    assert!(v1.starts_with("blake3:"));

    let tmp = tempfile::tempdir().unwrap();
    let v2_file = tmp.path().join("v2.json");
    std::fs::write(
        &v2_file,
        std::fs::read_to_string(seed())
            .unwrap()
            .replace("900", "300"),
    )
    .unwrap();
    let out = clawcontrols(&["publish", s(&v2_file), "--data-dir", root]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v2 = out.stdout.trim().to_owned();

    let list = clawcontrols(&["list", "--data-dir", root, "--json"]);
    let index: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(index["1password-readonly-agent"]["active"], v2.as_str());
    assert_eq!(
        index["1password-readonly-agent"]["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let show = clawcontrols(&["show", &v1, "--data-dir", root]);
    assert_eq!(show.code, 0);
    assert!(show.stdout.contains("superseded"), "{}", show.stdout);
    let show = clawcontrols(&[
        "show",
        "1password-readonly-agent",
        "--data-dir",
        root,
        "--json",
    ]);
    let envelope: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(envelope["hash"], v2.as_str());
}

#[test]
fn publish_without_a_trusted_key_writes_nothing() {
    let (_tmp, root) = data_dir();
    // Replace trust.json with one that trusts no policy key.
    std::fs::write(root.join("trust.json"), r#"{"version":1,"keys":[]}"#).unwrap();
    let out = clawcontrols(&["publish", s(&seed()), "--data-dir", s(&root)]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("trusted policy key"), "{}", out.stderr);
    assert!(!root.join("policies/index.json").exists());
    // And with no data dir at all.
    let tmp = tempfile::tempdir().unwrap();
    let out = clawcontrols(&[
        "publish",
        s(&seed()),
        "--data-dir",
        s(&tmp.path().join("none")),
    ]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("clawproxy init"), "{}", out.stderr);
}

#[test]
fn diff_reports_what_widens_and_narrows() {
    let title = policies().join("1password-read-by-title.json");
    let out = clawcontrols(&["diff", s(&seed()), s(&title)]);
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout,
        "+ allows operation list_items\n+ allows operation list_vaults\n"
    );
    let out = clawcontrols(&["diff", s(&title), s(&seed()), "--json"]);
    let changes: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["direction"] == "narrows")
    );
}

#[test]
fn explain_gives_decision_rule_and_why() {
    let v = "ytrfte14kw1uex5txaore1emkz";
    let i = "x4tpzrqojj2ahmv3w7nb6vu2pe";
    let base = format!("https://connect.1password.com/v1/vaults/{v}");
    let ask = |method: &str, url: &str| {
        clawcontrols(&[
            "explain",
            "--policy",
            s(&seed()),
            "--method",
            method,
            "--url",
            url,
            "--vault-name",
            "vault_agent_secrets_prod",
            "--json",
        ])
    };
    let out = ask("GET", &format!("{base}/items/{i}"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let e: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (e["decision"].as_str(), e["operation"].as_str()),
        (Some("allow"), Some("read_item"))
    );

    let out = ask("GET", &format!("{base}/items?filter=title%20eq%20%22db%22"));
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("read by title is a list_items call"),
        "{}",
        out.stdout
    );

    let out = ask("DELETE", &format!("{base}/items/{i}"));
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("deny_operations"));

    let out = ask("GET", "https://evil.example/v1/vaults");
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("network_egress"));

    let out = ask("GET", "not a url");
    assert_eq!(out.code, 2);
}
