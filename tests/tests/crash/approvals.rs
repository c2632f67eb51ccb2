//! Approvals across processes: curl (the agent) waits on the proxy while a person, in another
//! process, runs `clawcontrols approvals` and `approve`/`deny`; a request nobody decides is
//! refused at its timeout. The job's bundle then verifies with every decision re-evaluated,
//! approvals included.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connect_sim::demo::{DEMO_API_ITEM_ID, DEMO_DB_ITEM_ID, DEMO_VAULT_ID};
use serde_json::Value;

use super::support::{self, run_ok};

const JOB: &str = "approval-job";
const NAME: &str = "approval-agent";

/// The seed contract renamed, with two approvals rules: the DATABASE item waits for alice (a
/// minute), any other read waits for bob for one second.
fn contract() -> String {
    let seed = include_str!("../../../examples/policies/1password-readonly-agent.json");
    let rules = format!(
        r#""approvals": [
            {{"operations": ["read_item"], "items": ["{DEMO_DB_ITEM_ID}"], "approvers": ["alice"],
              "timeout_seconds": 60, "on_timeout": "deny"}},
            {{"operations": ["read_item"], "approvers": ["bob"], "timeout_seconds": 1,
              "on_timeout": "deny"}}
        ], "sandbox""#
    );
    seed.replacen("1password-readonly-agent", NAME, 1)
        .replacen("\"sandbox\"", &rules, 1)
}

/// curl reading `item` through the proxy; prints the status on its last line.
fn agent(listen: std::net::SocketAddr, token: &str, item: &str) -> Child {
    Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--max-time", "120"])
        .args(["-x", &format!("http://{JOB}:{token}@{listen}")])
        .args(["-H", "Authorization: Bearer agent-placeholder"])
        .arg(format!(
            "http://connect.1password.com/v1/vaults/{DEMO_VAULT_ID}/items/{item}"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl runs")
}

/// The agent's (status, body) once it is answered.
fn answer(child: Child) -> (u16, String) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl printed a status");
    (status.trim().parse().expect("a status"), body.to_owned())
}

/// `clawcontrols approvals --json` until one request is pending (bounded by a safety net).
fn pending(data: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Value = serde_json::from_str(&run_ok(
            "clawcontrols",
            &["approvals", "--json", "--data-dir", data],
        ))
        .unwrap();
        if let Some(first) = listed.as_array().and_then(|a| a.first()) {
            assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
            return first.clone();
        }
        assert!(Instant::now() < deadline, "nothing was held for approval");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `clawcontrols <args>` that must fail with exit 2; returns its stderr.
fn refused(args: &[&str]) -> String {
    let out = support::run("clawcontrols", args);
    assert_eq!(out.status.code(), Some(2), "{args:?} did not fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A data dir at `data` with the approval contract published, and connect-sim running (keep
/// the returned process alive); returns the job's token.
fn setup(work: &Path, data: &Path) -> (support::Proc, String) {
    let dir = data.to_str().unwrap();
    let (sim_proc, sim) = support::start_sim(work);
    support::prepare(data, sim, "unused-job");
    let file = work.join("approval-agent.json");
    std::fs::write(&file, contract()).unwrap();
    run_ok(
        "clawcontrols",
        &["publish", file.to_str().unwrap(), "--data-dir", dir],
    );
    let token = run_ok(
        "clawscope",
        &[
            "mint",
            "--policy",
            NAME,
            "--job",
            JOB,
            "--agent",
            "curl",
            "--ttl",
            "900",
            "--data-dir",
            dir,
        ],
    );
    (sim_proc, token.trim().to_owned())
}

#[test]
fn a_held_request_waits_for_an_approver_in_another_process_and_times_out_without_one() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is required (installed by .ci/run)");
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("claw");
    let dir = data.to_str().unwrap();
    let (_sim, token) = setup(work.path(), &data);
    let mut proxy = support::start_proxy(&data, &work.path().join("clawproxy.stderr"));
    assert_eq!(
        run_ok("clawcontrols", &["approvals", "--data-dir", dir]).trim(),
        "no requests are waiting for approval"
    );

    // Approved: the agent waits until alice (and only alice) says yes.
    let waiting = agent(proxy.listen, &token, DEMO_DB_ITEM_ID);
    let held = pending(dir);
    let id = held["id"].as_str().unwrap().to_owned();
    assert_eq!(held["job"], JOB);
    assert_eq!(held["operation"], "read_item");
    assert_eq!(held["item"], DEMO_DB_ITEM_ID);
    assert_eq!(held["approvers"], serde_json::json!(["alice"]));
    assert!(held["expires_in_seconds"].as_u64().unwrap() <= 60);
    let human = run_ok("clawcontrols", &["approvals", "--data-dir", dir]);
    assert!(
        human.contains(&format!("clawcontrols approve {id} --as NAME")),
        "{human}"
    );
    let not_theirs = refused(&["approve", &id, "--as", "bob", "--data-dir", dir]);
    assert!(
        not_theirs.contains("its approvers are: alice"),
        "{not_theirs}"
    );
    let said = run_ok(
        "clawcontrols",
        &["approve", &id, "--as", "alice", "--data-dir", dir],
    );
    assert!(said.starts_with(&format!("approved {id}")), "{said}");
    let (status, body) = answer(waiting);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(DEMO_DB_ITEM_ID), "{body}");
    // Single use: the decision cannot be made again, and the same request is held anew.
    let again = refused(&["approve", &id, "--as", "alice", "--data-dir", dir]);
    assert!(
        again.contains("already decided: approved by alice"),
        "{again}"
    );

    // Denied: the agent gets 403 naming who refused and why.
    let waiting = agent(proxy.listen, &token, DEMO_DB_ITEM_ID);
    let second = pending(dir)["id"].as_str().unwrap().to_owned();
    assert_ne!(second, id, "a new request needs a new approval");
    run_ok(
        "clawcontrols",
        &[
            "deny",
            &second,
            "--as",
            "alice",
            "--reason",
            "not during the freeze",
            "--data-dir",
            dir,
        ],
    );
    let (status, body) = answer(waiting);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("approval denied by alice: not during the freeze"),
        "{body}"
    );

    // Nobody decides: refused at the rule's one-second timeout.
    let (status, body) = answer(agent(proxy.listen, &token, DEMO_API_ITEM_ID));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("nobody decided within 1 s"), "{body}");
    assert!(!body.contains("sk_demo"), "the item leaked: {body}");
    let late = refused(&["deny", &second, "--as", "alice", "--data-dir", dir]);
    assert!(late.contains("already decided"), "{late}");

    let metrics = support::admin_get(proxy.admin, "/metrics").text();
    for line in [
        "clawproxy_approvals_pending 0",
        "clawproxy_approvals_total{outcome=\"approved\"} 1",
        "clawproxy_approvals_total{outcome=\"denied\"} 1",
        "clawproxy_approvals_total{outcome=\"timeout\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}:\n{metrics}");
    }

    // The evidence: each decision receipted with who and when, and re-evaluated offline.
    run_ok("clawscope", &["revoke", "--job", JOB, "--data-dir", dir]);
    // Stopping signs the final checkpoint, so the bundle covers every receipt.
    assert!(proxy.proc.terminate().success());
    // Verified offline (exit 0: every check, semantics.reevaluate included, passed).
    let bundle = support::bundle_and_verify(&data, JOB, work.path());
    let receipts: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let approvals: Vec<(bool, String, Option<String>)> = receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let d = &r["decision"];
            d["approval"].as_object().map(|a| {
                (
                    d["allow"].as_bool().unwrap(),
                    a["outcome"].as_str().unwrap().to_owned(),
                    a.get("by").and_then(Value::as_str).map(str::to_owned),
                )
            })
        })
        .collect();
    let alice = Some("alice".to_owned());
    assert_eq!(
        approvals,
        [
            (true, "approved".into(), alice.clone()),
            (false, "denied".into(), alice),
            (false, "timeout".into(), None),
        ]
    );
    assert!(
        !Path::new(&data.join("state/approvals"))
            .read_dir()
            .unwrap()
            .any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".request.json")
            }),
        "held requests are forgotten once decided"
    );
}

/// The admin address's approval routes: off unless `admin_token_file` is set, then only with
/// its bearer token; an approver decides there with the same rules as `clawcontrols`.
#[test]
fn approvers_decide_over_the_admin_api_with_its_token() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("claw");
    let dir = data.to_str().unwrap();
    let (_sim, token) = setup(work.path(), &data);

    // Without admin_token_file the routes are off.
    let mut proxy = support::start_proxy(&data, &work.path().join("off.stderr"));
    let off = support::admin_get(proxy.admin, "/approvals");
    assert_eq!(off.status, 404, "{}", off.text());
    assert!(off.text().contains("admin_token_file"), "{}", off.text());
    let stopped = proxy.proc.terminate();
    assert!(
        stopped.success(),
        "{stopped}:\n{}",
        proxy.proc.stderr_text()
    );

    let admin_token = "c2VjcmV0LWFkbWluLXRva2VuLWZvci10aGUtdGVzdA";
    let token_file = work.path().join("admin.token");
    std::fs::write(&token_file, format!("{admin_token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = std::fs::read_to_string(data.join("clawproxy.toml")).unwrap();
    std::fs::write(
        data.join("clawproxy.toml"),
        format!(
            "admin_token_file = {:?}\n{config}",
            token_file.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut proxy = support::start_proxy(&data, &work.path().join("on.stderr"));
    let call = |method: &str, path: &str, bearer: Option<&str>, body: &str| {
        let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        support::send(proxy.admin, request.as_bytes()).expect("the admin listener answers")
    };
    let ok = Some(admin_token);
    // Same length, one character off; shorter; another token; none.
    let off_by_one = format!("{}x", &admin_token[..admin_token.len() - 1]);
    for bearer in [
        None,
        Some(off_by_one.as_str()),
        Some("wrong-token"),
        Some(&admin_token[..admin_token.len() - 1]),
    ] {
        let refused = call("GET", "/approvals", bearer, "");
        assert_eq!(refused.status, 401, "{}", refused.text());
        assert!(refused.header("www-authenticate").is_some());
    }
    assert_eq!(
        call("GET", "/approvals", ok, "").json(),
        serde_json::json!([])
    );
    for (scheme, status) in [("Basic", 401), ("bearer", 200)] {
        let request = format!(
            "GET /approvals HTTP/1.1\r\nHost: admin\r\nAuthorization: {scheme} {admin_token}\r\n\
             Connection: close\r\n\r\n"
        );
        let response = support::send(proxy.admin, request.as_bytes()).unwrap();
        assert_eq!(response.status, status, "{scheme}");
    }

    // Approved over the API while the agent waits.
    let waiting = agent(proxy.listen, &token, DEMO_DB_ITEM_ID);
    let started = Instant::now();
    let held = loop {
        let listed = call("GET", "/approvals", ok, "").json();
        if let Some(held) = listed.as_array().and_then(|l| l.first()) {
            break held.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing was held"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(held["item"], DEMO_DB_ITEM_ID);
    let id = held["id"].as_str().unwrap().to_owned();
    let approve = format!("/approvals/{id}/approve");
    let bob = call("POST", &approve, ok, r#"{"as": "bob"}"#);
    assert_eq!(bob.status, 403, "{}", bob.text());
    assert!(
        bob.text().contains("its approvers are: alice"),
        "{}",
        bob.text()
    );
    for bad in [
        "",
        "{}",
        r#"{"as": ""}"#,
        r#"{"as": "alice", "role": "admin"}"#,
    ] {
        let refused = call("POST", &approve, ok, bad);
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text());
    }
    let oversized = format!(r#"{{"as": "alice", "reason": "{}"}}"#, "x".repeat(5000));
    assert_eq!(call("POST", &approve, ok, &oversized).status, 413);
    assert_eq!(
        call("POST", &approve, None, r#"{"as": "alice"}"#).status,
        401
    );
    let decided = call(
        "POST",
        &approve,
        ok,
        r#"{"as": "alice", "reason": "ticket 7"}"#,
    );
    assert_eq!(decided.status, 200, "{}", decided.text());
    let verdict = decided.json();
    assert_eq!(
        (&verdict["outcome"], &verdict["by"], &verdict["reason"]),
        (&"approved".into(), &"alice".into(), &"ticket 7".into())
    );
    let (status, body) = answer(waiting);
    assert_eq!(status, 200, "{body}");
    let again = call("POST", &approve, ok, r#"{"as": "alice"}"#);
    assert_eq!(again.status, 409, "{}", again.text());

    // Denied over the API: the agent's 403 names who and why.
    let waiting = agent(proxy.listen, &token, DEMO_DB_ITEM_ID);
    let second = pending(dir)["id"].as_str().unwrap().to_owned();
    let denied = call(
        "POST",
        &format!("/approvals/{second}/deny"),
        ok,
        r#"{"as": "alice", "reason": "not today"}"#,
    );
    assert_eq!(denied.status, 200, "{}", denied.text());
    let (status, body) = answer(waiting);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("approval denied by alice: not today"),
        "{body}"
    );

    // Ids that name nothing, or are not ids at all.
    let unknown = format!("/approvals/apr_{}/approve", "0".repeat(32));
    assert_eq!(call("POST", &unknown, ok, r#"{"as": "alice"}"#).status, 404);
    for path in ["/approvals/..%2fkeys/approve", "/approvals/apr_zz/deny"] {
        assert_eq!(
            call("POST", path, ok, r#"{"as": "alice"}"#).status,
            400,
            "{path}"
        );
    }
    assert_eq!(call("DELETE", &approve, ok, "").status, 404);
    assert!(proxy.proc.terminate().success());
    let logged = std::fs::read_to_string(work.path().join("on.stderr")).unwrap();
    assert!(!logged.contains(admin_token), "the admin token was logged");
}
