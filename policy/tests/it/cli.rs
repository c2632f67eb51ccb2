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
    assert!(
        out.stderr.contains("does not trust as a policy key"),
        "{}",
        out.stderr
    );
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

#[test]
fn validate_reports_every_file_and_json_errors_are_structured() {
    let tmp = tempfile::tempdir().unwrap();
    let seed_text = std::fs::read_to_string(seed()).unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        seed_text.replace(
            "\"job_scoped\": true",
            "\"job_scoped\": true, \"colour\": 1",
        ),
    )
    .unwrap();
    let worse = tmp.path().join("worse.json");
    std::fs::write(
        &worse,
        seed_text
            .replace("900", "0")
            .replace("\"DATABASE\"", "\"DB\""),
    )
    .unwrap();
    let out = clawcontrols(&["validate", s(&bad), s(&seed()), s(&worse)]);
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("1password-readonly-agent.json: valid"));
    assert!(
        out.stderr.contains(
            "bad.json: /cst_constraints: Additional properties are not allowed ('colour' was \
             unexpected) (fix: remove it; the fields allowed here are job_scoped, \
             max_ttl_seconds, policy_hash_pin)"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("worse.json: /cst_constraints/max_ttl_seconds")
    );
    assert!(
        out.stderr
            .contains("worse.json: /tool_scope/allowed_categories/1")
    );

    let out = clawcontrols(&["validate", "--json", s(&bad), s(&seed()), s(&worse)]);
    assert_eq!(out.code, 2);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let report = report.as_array().unwrap();
    assert_eq!(report.len(), 3);
    assert_eq!(report[0]["valid"], false);
    assert_eq!(report[0]["errors"][0]["pointer"], "/cst_constraints");
    assert!(
        report[0]["errors"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("max_ttl_seconds")
    );
    assert_eq!(report[1]["valid"], true);
    assert_eq!(report[2]["errors"].as_array().unwrap().len(), 2);
}

#[test]
fn every_subcommand_has_help_with_an_example_and_exit_codes() {
    for command in [
        "validate", "hash", "publish", "list", "show", "diff", "explain", "serve",
    ] {
        let out = clawcontrols(&[command, "--help"]);
        assert_eq!(out.code, 0, "{command}");
        assert!(out.stdout.contains("Example"), "{command}: {}", out.stdout);
        assert!(
            out.stdout.contains("Exit codes"),
            "{command}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("--json"), "{command}: {}", out.stdout);
    }
    let out = clawcontrols(&["frobnicate"]);
    assert_eq!(out.code, 2);
}

#[test]
fn json_outputs_parse() {
    let (_tmp, root) = data_dir();
    let root = s(&root);
    let title = policies().join("1password-read-by-title.json");
    let outs = [
        clawcontrols(&["hash", s(&seed()), "--json"]),
        clawcontrols(&["validate", s(&seed()), "--json"]),
        clawcontrols(&["list", "--data-dir", root, "--json"]),
        clawcontrols(&["publish", s(&title), "--data-dir", root, "--json"]),
        clawcontrols(&["list", "--data-dir", root, "--json"]),
        clawcontrols(&[
            "show",
            "1password-read-by-title",
            "--data-dir",
            root,
            "--json",
        ]),
        clawcontrols(&[
            "diff",
            s(&seed()),
            "1password-read-by-title",
            "--data-dir",
            root,
            "--json",
        ]),
    ];
    for out in outs {
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    }
}

#[test]
fn missing_files_and_names_are_input_errors() {
    let (_tmp, root) = data_dir();
    let out = clawcontrols(&["validate", "/nonexistent/contract.json"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("/nonexistent/contract.json: cannot read"),
        "{}",
        out.stderr
    );
    let out = clawcontrols(&["diff", "no-such-name", s(&seed()), "--data-dir", s(&root)]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no-such-name"), "{}", out.stderr);
    let out = clawcontrols(&["diff", "missing.json", s(&seed()), "--data-dir", s(&root)]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("missing.json: no such file"),
        "{}",
        out.stderr
    );
}

#[test]
fn explain_says_why_in_words() {
    let v = "ytrfte14kw1uex5txaore1emkz";
    let title = policies().join("1password-read-by-title.json");
    let url =
        format!("https://connect.1password.com/v1/vaults/{v}/items?filter=title%20eq%20%22db%22");
    // Human output: decision, rule, and the read-by-title sentence.
    let out = clawcontrols(&[
        "explain",
        "--policy",
        s(&seed()),
        "--method",
        "GET",
        "--url",
        &url,
        "--vault-name",
        "vault_agent_secrets_prod",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("deny (rule allowed_operations)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("operation: list_items"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("which this contract does not allow"),
        "{}",
        out.stdout
    );
    // The read-by-title variant allows the same request.
    let out = clawcontrols(&[
        "explain",
        "--policy",
        s(&title),
        "--method",
        "GET",
        "--url",
        &url,
        "--vault-name",
        "vault_agent_secrets_prod",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    // A host outside network_egress is named as such.
    let out = clawcontrols(&[
        "explain",
        "--policy",
        s(&seed()),
        "--method",
        "GET",
        "--url",
        "https://api.github.com/repos/x/y",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("network_egress"), "{}", out.stdout);
    assert!(out.stdout.contains("api.github.com"), "{}", out.stdout);
    let multi = policies().join("multi-host.json");
    let out = clawcontrols(&[
        "explain",
        "--policy",
        s(&multi),
        "--method",
        "GET",
        "--url",
        "https://api.github.com/repos/x/y",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[test]
fn explain_by_registry_name_without_a_vault_name_states_its_assumption() {
    let (_tmp, root) = data_dir();
    let out = clawcontrols(&["publish", s(&seed()), "--data-dir", s(&root)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let url = "https://connect.1password.com/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/x4tpzrqojj2ahmv3w7nb6vu2pe";
    let out = clawcontrols(&[
        "explain",
        "--policy",
        "1password-readonly-agent",
        "--method",
        "GET",
        "--url",
        url,
        "--data-dir",
        s(&root),
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("allow (rule allowed_operations)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("assumes: vault ytrfte14kw1uex5txaore1emkz"),
        "{}",
        out.stdout
    );
    let out = clawcontrols(&[
        "explain",
        "--policy",
        "1password-readonly-agent",
        "--method",
        "DELETE",
        "--url",
        url,
        "--data-dir",
        s(&root),
        "--json",
    ]);
    assert_eq!(out.code, 1);
    let e: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(e["rule"], "deny_operations");
    assert_eq!(e["operation"], "delete_item");
}
