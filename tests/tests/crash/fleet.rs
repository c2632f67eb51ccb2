//! Fleet mode as deployed: two `clawproxy run --state postgres://… --instance …` processes with
//! their own data dirs and logs (cloned from one `init`, as a fleet's proxies share keys and
//! contracts; their `receipts` directory is shared storage, each writing its own log in it)
//! and one real PostgreSQL. A revocation made through `clawscope revoke --state` on one data
//! dir is refused by the other proxy; a budget of N across both admits exactly N; with the
//! server down both fail closed with 503, and both serve again once it is back; a job served
//! by both bundles and verifies as complete, and not when either log is left out.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use claw_tests::postgres::Postgres;

use super::support::{self, Proxy, Response, run_ok};

const JOB: &str = "fleet-job";
const BUDGET_JOB: &str = "fleet-budget-job";
const BUDGET_POLICY: &str = "fleet-budgeted-agent";
const APPROVAL_JOB: &str = "fleet-approval-job";
const APPROVAL_POLICY: &str = "fleet-approved-agent";
/// Reads per hour the budgeted contract allows, across the fleet.
const BUDGET: usize = 6;
/// Safety net for what must happen "soon" (never an assertion on speed).
const PATIENCE: Duration = Duration::from_secs(20);

/// The seed contract renamed, with an hourly read budget.
fn budgeted_contract() -> String {
    let seed = include_str!("../../../examples/policies/1password-readonly-agent.json");
    seed.replacen("1password-readonly-agent", BUDGET_POLICY, 1)
        .replacen(
            "\"sandbox\"",
            &format!("\"rate_limits\": {{\"reads\": {{\"per_hour\": {BUDGET}}}}}, \"sandbox\""),
            1,
        )
}

/// The seed contract renamed, its reads held for alice's approval.
fn approval_contract() -> String {
    let seed = include_str!("../../../examples/policies/1password-readonly-agent.json");
    seed.replacen("1password-readonly-agent", APPROVAL_POLICY, 1)
        .replacen(
            "\"sandbox\"",
            r#""approvals": [{"operations": ["read_item"], "approvers": ["alice"],
                "timeout_seconds": 60, "on_timeout": "deny"}], "sandbox""#,
            1,
        )
}

fn read(proxy: &Proxy, job: &str, token: &str) -> Response {
    support::send(proxy.listen, &support::read_db_item(job, token, true))
        .expect("the proxy answers")
}

/// Reads through `proxy` until `done` says the answer is the one awaited; returns it and how
/// long it took.
fn until(
    proxy: &Proxy,
    job: &str,
    token: &str,
    done: impl Fn(u16) -> bool,
) -> (Response, Duration) {
    let started = Instant::now();
    loop {
        let response = read(proxy, job, token);
        if done(response.status) {
            return (response, started.elapsed());
        }
        assert!(
            started.elapsed() < PATIENCE,
            "still {} after {PATIENCE:?}: {}",
            response.status,
            response.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mint(data: &str, policy: &str, job: &str) -> String {
    support::mint(Path::new(data), policy, job, "fleet-agent")
}

#[test]
fn two_proxies_share_revocations_and_budgets_and_fail_closed_without_the_server() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let work = tempfile::tempdir().unwrap();
    let (_sim, sim) = support::start_sim(work.path());
    let a_dir = work.path().join("a");
    let token = support::prepare(&a_dir, sim, JOB);
    let a = a_dir.to_str().unwrap();
    for (file, contract) in [
        ("budgeted.json", budgeted_contract()),
        ("approved.json", approval_contract()),
    ] {
        let path = work.path().join(file);
        std::fs::write(&path, contract).unwrap();
        run_ok(
            "clawcontrols",
            &["publish", path.to_str().unwrap(), "--data-dir", a],
        );
    }
    let budget_token = mint(a, BUDGET_POLICY, BUDGET_JOB);
    let approval_token = mint(a, APPROVAL_POLICY, APPROVAL_JOB);
    // The second proxy: the same keys, contracts and config, its own log in shared storage.
    let b_dir = work.path().join("b");
    let copied = std::process::Command::new("cp")
        .args(["-a", a, b_dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::remove_dir(b_dir.join("receipts")).unwrap();
    std::os::unix::fs::symlink(a_dir.join("receipts"), b_dir.join("receipts")).unwrap();
    let with = |instance| ["--state", url.as_str(), "--instance", instance];
    let proxy_a = support::start_proxy_with(&a_dir, &work.path().join("a.stderr"), &with("a"));
    let proxy_b = support::start_proxy_with(&b_dir, &work.path().join("b.stderr"), &with("b"));

    // A budget of N across both proxies admits exactly N, the rest get 429 with Retry-After.
    let proxies = [&proxy_a, &proxy_b];
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..BUDGET * 3)
            .map(|i| {
                let proxy = proxies[i % 2];
                let token = &budget_token;
                scope.spawn(move || read(proxy, BUDGET_JOB, token))
            })
            .collect();
        calls
            .into_iter()
            .map(|c| {
                let response = c.join().unwrap();
                if response.status == 429 {
                    assert!(response.header("retry-after").is_some());
                }
                response.status
            })
            .collect()
    });
    let admitted = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((admitted, limited), (BUDGET, BUDGET * 2), "{statuses:?}");

    // A request held by B is listed and approved through the shared state from A's data dir.
    approve_across_the_fleet(&proxy_b, a, &url, &approval_token);

    // Revoked through A's data dir and the fleet's state: B, which never saw A's data dir,
    // refuses the token.
    for proxy in [&proxy_a, &proxy_b, &proxy_b] {
        assert_eq!(read(proxy, JOB, &token).status, 200);
    }
    run_ok(
        "clawscope",
        &[
            "revoke",
            "--job",
            JOB,
            "--reason",
            "fleet test",
            "--state",
            &url,
            "--data-dir",
            a,
        ],
    );
    // B's data dir never heard of the revocation; minting against the fleet's state refuses.
    let remint = support::run(
        "clawscope",
        &[
            "mint",
            "--policy",
            "1password-readonly-agent",
            "--job",
            JOB,
            "--agent",
            "fleet-agent",
            "--state",
            &url,
            "--data-dir",
            b_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(remint.status.code(), Some(2));
    assert!(remint.stdout.is_empty(), "no token was printed");
    assert!(String::from_utf8_lossy(&remint.stderr).contains("revoked in the fleet"));
    // A fleet that cannot be reached: the data dir has it, the fleet does not, and it says so.
    let nowhere = format!(
        "postgres://claw@127.0.0.1:{}/postgres",
        claw_tests::free_port()
    );
    let out = support::run(
        "clawscope",
        &[
            "revoke",
            "--job",
            "other-job",
            "--state",
            &nowhere,
            "--data-dir",
            a,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT in the fleet"));
    let (refused, took) = until(&proxy_b, JOB, &token, |s| s == 407);
    assert!(refused.text().contains("revoked"), "{}", refused.text());
    eprintln!("fleet: the other proxy refused the revoked job after {took:?}");
    assert_eq!(read(&proxy_a, JOB, &token).status, 407);

    // Without the server: the budgeted job is refused at once (its budget cannot be reached),
    // every job once the revocation list is stale; 503 in the Connect error shape, receipted.
    let fresh = mint(
        b_dir.to_str().unwrap(),
        "1password-readonly-agent",
        "fleet-job-2",
    );
    assert_eq!(read(&proxy_a, "fleet-job-2", &fresh).status, 200);
    pg.kill();
    // A job B never served cannot start in B's log while the fleet cannot record it (sent at
    // once, while the revocation list is still fresh): 503, receipted outside the job's chain.
    let unrecorded = read(&proxy_b, "fleet-job-2", &fresh);
    assert_eq!(unrecorded.status, 503, "{}", unrecorded.text());
    assert!(
        unrecorded.text().contains("fleet's state is unavailable"),
        "{}",
        unrecorded.text()
    );
    let down = read(&proxy_b, BUDGET_JOB, &budget_token);
    assert_eq!(down.status, 503, "{}", down.text());
    assert_eq!(down.json()["status"], 503);
    let (stale, _) = until(&proxy_a, "fleet-job-2", &fresh, |s| s == 503);
    assert!(stale.text().contains("revocation"), "{}", stale.text());
    assert!(stale.header("retry-after").is_some());
    // Not ready: a balancer stops sending agents to a proxy that cannot decide.
    let readyz = support::admin_get(proxy_a.admin, "/readyz");
    assert_eq!(readyz.status, 503, "{}", readyz.text());
    assert!(
        readyz.text().contains("revocation list"),
        "{}",
        readyz.text()
    );

    // The server returns: both proxies reconnect by themselves.
    pg.resume().unwrap();
    for proxy in proxies {
        let (_, took) = until(proxy, "fleet-job-2", &fresh, |s| s == 200);
        eprintln!("fleet: a proxy served again {took:?} after the server returned");
    }
    assert_eq!(support::admin_get(proxy_a.admin, "/readyz").status, 200);
    // The budget outlived the outage: still spent.
    assert_eq!(read(&proxy_a, BUDGET_JOB, &budget_token).status, 429);

    // The revoked job was served by both: each proxy closes its part, listing both logs.
    let logs = [
        support::log_dir(&a_dir).join("a"),
        support::log_dir(&a_dir).join("b"),
    ];
    let started = Instant::now();
    while !logs.iter().all(|log| closes(log, JOB)) {
        assert!(
            started.elapsed() < PATIENCE,
            "the revoked job was never closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Each proxy's own log verifies (after a clean stop, which signs a final checkpoint over
    // every receipt), and a job spread over both bundles and verifies from either data dir.
    let (mut proxy_a, mut proxy_b) = (proxy_a, proxy_b);
    for proxy in [&mut proxy_a, &mut proxy_b] {
        assert!(proxy.proc.terminate().success());
    }
    let out = work.path();
    for data in [&a_dir, &b_dir] {
        support::bundle_and_verify(data, BUDGET_JOB, out);
    }
    check_state_unavailable_receipt(&a_dir, &logs[1]);
    check_fleet_query(&a_dir, &url);
    check_complete_across_logs(&a_dir, &logs, out);
}

/// `clawverify query --state` answers from the fleet's receipt index what the shared logs
/// hold, for both proxies (receipts written while the server was down included).
fn check_fleet_query(data: &Path, url: &str) {
    let ask = |filters: &[&str], state: Option<&str>| -> serde_json::Value {
        let mut args = vec!["query", "--json", "--data-dir", data.to_str().unwrap()];
        args.extend_from_slice(filters);
        if let Some(url) = state {
            args.extend_from_slice(&["--state", url]);
        }
        let out = run_ok("clawverify", &args);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["matches"].clone()
    };
    for filters in [
        &["--job", JOB][..],
        &["--decision", "deny"],
        &["--op", "read_item", "--job", "fleet-job-2"],
    ] {
        let local = ask(filters, None);
        let started = Instant::now();
        loop {
            let fleet = ask(filters, Some(url));
            if fleet == local {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{filters:?}: the fleet's index answered {fleet}, the logs {local}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let logs: std::collections::BTreeSet<&str> = local
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["log"].as_str().unwrap())
            .collect();
        if filters[1] == JOB {
            assert_eq!(logs.len(), 2, "{filters:?}: {logs:?}");
        }
    }
}

/// The agent's read waits at `holder` until alice approves it with `clawcontrols --state` run
/// against another data dir; the approval is single-use.
fn approve_across_the_fleet(holder: &Proxy, data: &str, url: &str, token: &str) {
    std::thread::scope(|scope| {
        let agent = scope.spawn(|| read(holder, APPROVAL_JOB, token));
        let started = Instant::now();
        let held = loop {
            let listed: serde_json::Value = serde_json::from_str(&run_ok(
                "clawcontrols",
                &["approvals", "--json", "--state", url, "--data-dir", data],
            ))
            .unwrap();
            if let Some(first) = listed.as_array().and_then(|a| a.first()) {
                break first.clone();
            }
            // The data dir alone knows nothing of it: the request is B's, in the fleet's state.
            assert!(
                started.elapsed() < PATIENCE,
                "nothing was held for approval"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(held["job"], APPROVAL_JOB);
        let local = run_ok("clawcontrols", &["approvals", "--json", "--data-dir", data]);
        assert_eq!(local.trim(), "[]", "{local}");
        let id = held["id"].as_str().unwrap();
        let decide = |verb: &str, name: &str| {
            support::run(
                "clawcontrols",
                &[verb, id, "--as", name, "--state", url, "--data-dir", data],
            )
        };
        let mallory = decide("approve", "mallory");
        assert_eq!(mallory.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&mallory.stderr).contains("alice"));
        assert!(decide("approve", "alice").status.success());
        let answered = agent.join().unwrap();
        assert_eq!(answered.status, 200, "{}", answered.text());
        let late = decide("deny", "alice");
        assert_eq!(late.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&late.stderr).contains("already decided"),
            "{}",
            String::from_utf8_lossy(&late.stderr)
        );
    });
}

/// Whether the log in `dir` holds the `job_close` of `job`, naming both instances' logs
/// (read while the proxy runs, so unverified: the bundle and its verification come later).
fn closes(dir: &Path, job: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            text.lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .collect::<Vec<_>>()
        })
        .any(|r| {
            r["kind"] == "job_close"
                && r["job"] == job
                && r["logs"].as_array().is_some_and(|logs| logs.len() == 2)
        })
}

/// The job served by both proxies: one bundle carries both logs and is `verified-complete`;
/// without B's log, bundling refuses and names it; a bundle with B's part cut out fails.
fn check_complete_across_logs(data: &Path, logs: &[PathBuf; 2], out: &Path) {
    let bundle = support::bundle_and_verify(data, JOB, out);
    let trust = data.join("trust.json");
    let verify = |bundle: &Path| {
        support::run(
            "clawverify",
            &[
                "verify",
                bundle.to_str().unwrap(),
                "--trust",
                trust.to_str().unwrap(),
                "--json",
            ],
        )
    };
    let report = verify(&bundle);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["tier"], "verified-complete", "{report}");
    let parsed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let origins: Vec<&str> = parsed["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins.len(), 2, "{origins:?}");
    assert!(origins[0].ends_with("/a") && origins[1].ends_with("/b"));

    // B's part cut out of the bundle: A's close says B served the job too.
    let mut cut = parsed.clone();
    let b = origins[1].to_owned();
    cut["receipts"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["log"] != b.as_str());
    cut["logs"]
        .as_array_mut()
        .unwrap()
        .retain(|l| l["origin"] != b.as_str());
    let cut_path = out.join("cut.bundle.json");
    std::fs::write(&cut_path, serde_json::to_vec(&cut).unwrap()).unwrap();
    let verdict = verify(&cut_path);
    assert_eq!(verdict.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&verdict.stdout).unwrap();
    let closed = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "job.closed")
        .unwrap();
    assert_eq!(closed["status"], "fail", "{closed}");
    assert!(closed["reason"].as_str().unwrap().contains(&b), "{closed}");

    // B's log renamed: its checkpoint names another log, and the bundler refuses it.
    let renamed = logs[1].with_file_name("c");
    std::fs::rename(&logs[1], &renamed).unwrap();
    let refused = bundle_job(data, out);
    std::fs::rename(&renamed, &logs[1]).unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("moved or renamed"), "{stderr}");

    // B's log not where the bundler looks: it refuses and says which log is missing.
    let away = out.join("b-log-elsewhere");
    std::fs::rename(&logs[1], &away).unwrap();
    let refused = bundle_job(data, out);
    std::fs::rename(&away, &logs[1]).unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&b) && stderr.contains("also served"),
        "{stderr}"
    );
}

/// `clawverify bundle --job JOB` from `data`, expected to fail.
fn bundle_job(data: &Path, out: &Path) -> std::process::Output {
    support::run(
        "clawverify",
        &[
            "bundle",
            "--job",
            JOB,
            "-o",
            out.join("partial.json").to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
}

/// The 503s B gave while the state was down are receipted denials by `state_unavailable`: the
/// budget's in its job's chain, the unrecorded job's under the anonymous job, not in its own.
fn check_state_unavailable_receipt(data: &Path, log: &Path) {
    let log = support::read_log_at(data, log);
    let refused_as = |job: &str| {
        log.receipts.iter().any(|r| {
            r.job == job
                && r.decision
                    .as_ref()
                    .is_some_and(|d| d.rule == "state_unavailable")
        })
    };
    assert!(
        refused_as(BUDGET_JOB),
        "no state_unavailable receipt of the budget"
    );
    assert!(
        refused_as(claw_verifier::receipt::ANONYMOUS_JOB),
        "no anonymous state_unavailable receipt"
    );
    assert!(
        !refused_as("fleet-job-2"),
        "the job the fleet could not record has a refusal in its chain in B's log"
    );
}
