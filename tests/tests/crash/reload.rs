//! Replacing the Connect token without dropping connections: the proxy reads it from a 0600
//! `token_file`, and SIGHUP swaps in the file's new content for every request from then on,
//! on connections already open too; a file that went bad leaves the current token in place.
//! The admin token (`admin_token_file`) is rotated the same way.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::support::{self, Proc, SIM_TOKEN};

const JOB: &str = "reload-job";

fn write_token(path: &Path, token: &str) {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(token.as_bytes()).unwrap();
}

/// Waits (bounded by a safety net) until the proxy's stderr has `count` lines with `line`.
fn logged(proxy: &Proc, line: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.stderr_text().matches(line).count() < count {
        assert!(
            Instant::now() < deadline,
            "never logged {line:?}:\n{}",
            proxy.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_the_connect_token_file_without_dropping_connections() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("claw");
    let (_sim, sim) = support::start_sim(work.path());
    let token = support::prepare(&data, sim, JOB);
    let token_file = work.path().join("connect.token");
    write_token(&token_file, "stale-connect-token");
    let config = data.join("clawproxy.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "token_env = \"OP_CONNECT_TOKEN\"",
        &format!("token_file = \"{}\"", token_file.display()),
    );
    std::fs::write(&config, text).unwrap();
    let (mut proxy, rest) = Proc::start(
        "clawproxy",
        &["run", "--data-dir", data.to_str().unwrap()],
        &[("CLAW_LOG", "info")],
        &work.path().join("clawproxy.stderr"),
        "clawproxy listening on ",
    );
    let listen: std::net::SocketAddr = rest.split_once(" (admin ").unwrap().0.parse().unwrap();

    // The stale token: connect-sim refuses the proxy's vault lookup, so the vault the contract
    // names cannot be confirmed and the read is refused (fail closed).
    let mut open = support::connect(listen).unwrap();
    open.write_all(&support::read_db_item(JOB, &token, false))
        .unwrap();
    let refused = support::read_response(&mut open).expect("an answer");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("allowed_vaults"),
        "{}",
        refused.text()
    );

    write_token(&token_file, SIM_TOKEN);
    proxy.signal("HUP");
    logged(&proxy, "Connect token reloaded from token_file", 1);
    assert!(proxy.alive(), "SIGHUP ended the proxy");
    // The same keep-alive connection now reads with the new token, and so does a new one.
    open.write_all(&support::read_db_item(JOB, &token, false))
        .unwrap();
    let read = support::read_response(&mut open).expect("the open connection survived");
    assert_eq!(read.status, 200, "{}", read.text());
    let fresh = support::send(listen, &support::read_db_item(JOB, &token, true)).unwrap();
    assert_eq!(fresh.status, 200, "{}", fresh.text());

    // A file that went bad (empty) is refused; the current token stays in use.
    write_token(&token_file, "");
    proxy.signal("HUP");
    logged(&proxy, "token reload failed; keeping the current token", 1);
    open.write_all(&support::read_db_item(JOB, &token, false))
        .unwrap();
    let read = support::read_response(&mut open).expect("still open");
    assert_eq!(read.status, 200, "{}", read.text());
    let log = proxy.stderr_text();
    assert!(
        !log.contains(SIM_TOKEN) && !log.contains("stale-connect-token"),
        "{log}"
    );
}

/// `GET /approvals` on the admin address with `Authorization: Bearer <token>`: the status.
fn approvals_status(admin: std::net::SocketAddr, token: &str) -> u16 {
    let request = format!(
        "GET /approvals HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    support::send(admin, request.as_bytes())
        .expect("an answer from the admin address")
        .status
}

#[test]
fn sighup_rotates_the_admin_token() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("claw");
    let (_sim, sim) = support::start_sim(work.path());
    support::prepare(&data, sim, JOB);
    let token_file = work.path().join("admin.token");
    let old = "old-admin-token-0123456789abcdefghij";
    let new = "new-admin-token-0123456789abcdefghij";
    write_token(&token_file, old);
    // A top-level key: before the first table.
    let config = data.join("clawproxy.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("admin_token_file = \"{}\"\n{text}", token_file.display()),
    )
    .unwrap();
    let proxy = support::start_proxy_env(
        &data,
        &work.path().join("clawproxy.stderr"),
        &[],
        &[("CLAW_LOG", "info")],
    );
    assert_eq!(approvals_status(proxy.admin, old), 200);
    assert_eq!(approvals_status(proxy.admin, new), 401);

    write_token(&token_file, new);
    proxy.proc.signal("HUP");
    logged(&proxy.proc, "admin token reloaded from admin_token_file", 1);
    assert_eq!(
        approvals_status(proxy.admin, old),
        401,
        "the old token is out"
    );
    assert_eq!(approvals_status(proxy.admin, new), 200);

    // A file that went bad (too short) is refused; the current token stays.
    write_token(&token_file, "short");
    proxy.proc.signal("HUP");
    logged(
        &proxy.proc,
        "admin token reload failed; keeping the current token",
        1,
    );
    assert_eq!(approvals_status(proxy.admin, new), 200);
    assert_eq!(approvals_status(proxy.admin, "short"), 401);
    let log = proxy.proc.stderr_text();
    assert!(!log.contains(old) && !log.contains(new), "{log}");
}
