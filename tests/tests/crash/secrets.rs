//! No secret in any log, receipt or bundle: the proxy runs at the most verbose log level while an
//! agent reads secrets through it (allowed, withheld, denied, unauthenticated), then every byte
//! the proxy, connect-sim and the evidence tools wrote is searched for the demo's concealed
//! values, the Connect token and the job token.

use std::path::{Path, PathBuf};

use base64::Engine;
use connect_sim::demo::{DEMO_API_ITEM_ID, DEMO_DB_ITEM_ID, DEMO_LOGIN_ITEM_ID, DEMO_VAULT_ID};

use super::support::{self, Proc, SIM_TOKEN};

const JOB: &str = "secrets-job";

/// Every concealed field value of connect-sim's demo data.
fn demo_secrets() -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("CONCEALED")
                    && let Some(secret) = map.get("value").and_then(|v| v.as_str())
                {
                    out.push(secret.to_owned());
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for vault in connect_sim::demo::data().vaults {
        for item in vault.items {
            walk(&serde_json::Value::Object(item), &mut out);
        }
    }
    out
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn request(method: &str, item: &str, auth: &str) -> Vec<u8> {
    format!(
        "{method} http://connect.1password.com/v1/vaults/{DEMO_VAULT_ID}/items/{item} HTTP/1.1\r\n\
         Host: connect.1password.com\r\nProxy-Authorization: Basic {auth}\r\n\
         Authorization: Bearer agent-placeholder\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn no_secret_or_token_reaches_a_log_a_receipt_or_a_bundle() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("claw");
    let (_sim, sim) = support::start_sim(work.path());
    let token = support::prepare(&data, sim, JOB);
    let stderr = work.path().join("clawproxy.stderr");
    let data_arg = data.to_str().unwrap();
    let (mut proxy, rest) = Proc::start(
        "clawproxy",
        &["run", "--data-dir", data_arg],
        &[("OP_CONNECT_TOKEN", SIM_TOKEN), ("CLAW_LOG", "trace")],
        &stderr,
        "clawproxy listening on ",
    );
    let listen: std::net::SocketAddr = rest.split_once(" (admin ").unwrap().0.parse().unwrap();

    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{JOB}:{token}"));
    let forged = base64::engine::general_purpose::STANDARD.encode(format!("{JOB}:{token}x"));
    let mut statuses = Vec::new();
    for (method, item, auth) in [
        ("GET", DEMO_DB_ITEM_ID, &auth), // allowed: the secret reaches the agent
        ("GET", DEMO_API_ITEM_ID, &auth), // allowed category
        ("GET", DEMO_LOGIN_ITEM_ID, &auth), // fetched, then withheld
        ("DELETE", DEMO_DB_ITEM_ID, &auth), // denied before forwarding
        ("GET", DEMO_DB_ITEM_ID, &forged), // a tampered token: 407
    ] {
        let response = support::send(listen, &request(method, item, auth)).expect("an answer");
        statuses.push(response.status);
    }
    assert_eq!(statuses, [200, 200, 403, 403, 407]);
    support::run_ok(
        "clawscope",
        &["revoke", "--job", JOB, "--data-dir", data_arg],
    );
    assert!(proxy.terminate().success(), "{}", proxy.stderr_text());

    // The evidence a reviewer gets: bundle, report and page.
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let bundle = out.join("job.bundle.json");
    support::run_ok(
        "clawverify",
        &[
            "bundle",
            "--job",
            JOB,
            "-o",
            bundle.to_str().unwrap(),
            "--data-dir",
            data_arg,
        ],
    );
    let trust = data.join("trust.json");
    let report = out.join("job.report.json");
    support::run_ok(
        "clawverify",
        &[
            "verify",
            bundle.to_str().unwrap(),
            "--trust",
            trust.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let page = out.join("job.html");
    support::run_ok(
        "clawverify",
        &[
            "view",
            bundle.to_str().unwrap(),
            "--trust",
            trust.to_str().unwrap(),
            "--out",
            page.to_str().unwrap(),
        ],
    );

    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        log.contains("TRACE"),
        "the proxy logged at trace level:\n{log}"
    );
    let lines = log
        .lines()
        .filter(|l| l.contains(" request ") && l.contains("decision="));
    assert_eq!(lines.count(), 5, "one request line per request:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "a log file gets no terminal colours"
    );
    let secrets = demo_secrets();
    assert!(secrets.len() >= 4, "demo secrets: {secrets:?}");
    // The job token legitimately sits in the issued-token store and (once revoked) in the
    // bundle; the Connect token and the concealed values belong nowhere.
    let everywhere: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .chain([SIM_TOKEN])
        .collect();
    let mut searched = vec![stderr.clone(), work.path().join("connect-sim.stderr")];
    searched.extend(
        files(&data)
            .into_iter()
            .filter(|p| p.extension().is_none_or(|e| e != "key")),
    );
    searched.extend([bundle.clone(), report, page]);
    for path in &searched {
        let bytes = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in &everywhere {
            assert!(
                !text.contains(secret),
                "{} holds {secret:?}",
                path.display()
            );
        }
        let holds_token = path.starts_with(data.join("state")) || path == &bundle;
        if !holds_token {
            assert!(
                !text.contains(&token) && !text.contains(&auth),
                "{} holds the job token",
                path.display()
            );
        }
    }
}
