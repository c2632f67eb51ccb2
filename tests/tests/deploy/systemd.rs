//! `deploy/clawproxy.service`: its hardening, and its command lines run here (no systemd
//! needed) on a data dir made as its install notes say; `systemd-analyze verify` where it is
//! installed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::files;
use super::support;

const UNIT: &str = "deploy/clawproxy.service";

/// The unit's assignments in order: (section, key, value); comments dropped, continuations
/// joined, as systemd reads a unit file.
fn parse(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let line = std::mem::take(&mut pending);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{UNIT}: {line:?} is not Key=Value"));
        assert!(!section.is_empty(), "{UNIT}: {line:?} outside a section");
        out.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    out
}

struct Unit(Vec<(String, String, String)>);

impl Unit {
    fn load() -> Self {
        Self(parse(&files::read(UNIT)))
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The value in force: the last assignment.
    fn get(&self, key: &str) -> Option<&str> {
        self.all("Service", key).last().copied()
    }

    fn argv(&self, key: &str) -> Vec<String> {
        self.get(key)
            .unwrap_or_else(|| panic!("{UNIT} has no {key}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn the_unit_is_hardened_and_keeps_its_data_in_a_state_directory() {
    let unit = Unit::load();
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "clawproxy"),
        ("SystemCallFilter", "@system-service"),
    ] {
        assert_eq!(unit.get(key), Some(value), "{UNIT}: {key}");
    }
    // Every assignment empty: no capability at all (a later non-empty one would add some).
    let caps = unit.all("Service", "CapabilityBoundingSet");
    assert!(
        !caps.is_empty() && caps.iter().all(|v| v.is_empty()),
        "CapabilityBoundingSet= must be empty: {caps:?}"
    );
    let families: BTreeSet<&str> = unit
        .get("RestrictAddressFamilies")
        .expect("RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]));
    let user = unit.get("User").expect("a User=");
    assert!(user != "root" && user != "0", "runs as {user}");

    // The data dir is the state directory, for the proxy and for the tools run by hand.
    let data = format!("/var/lib/{}", unit.get("StateDirectory").unwrap());
    let start = unit.argv("ExecStart");
    assert_eq!(start[..2], ["/usr/local/bin/clawproxy", "run"]);
    files::assert_known_flags(&start);
    assert_eq!(
        start[start.iter().position(|a| a == "--data-dir").unwrap() + 1],
        data
    );
    assert!(
        unit.all("Service", "Environment")
            .contains(&format!("CLAW_HOME={data}").as_str())
    );
    let pre = unit.argv("ExecStartPre");
    assert_eq!(pre[..2], ["/usr/local/bin/clawproxy", "check-config"]);
    files::assert_known_flags(&pre);
    // Reload is SIGHUP, which the proxy handles (the next test sends it to a running proxy).
    if let Some(reload) = unit.get("ExecReload") {
        assert_eq!(reload, "/bin/kill -HUP $MAINPID");
    }
    assert_eq!(unit.all("Install", "WantedBy"), ["multi-user.target"]);

    analyze_verify();
}

/// `systemd-analyze verify` where it is installed, on a copy whose binary paths are the
/// workspace's (it checks that each command exists).
fn analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: {UNIT} checked by the parse above only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("clawproxy.service");
    let bins = support::bins().display().to_string();
    std::fs::write(
        &copy,
        files::read(UNIT).replace("/usr/local/bin", bins.trim_end_matches('/')),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("clawproxy.service"),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

/// The unit's commands as systemd would run them, on a data dir made by its install notes
/// (`clawproxy init`, `clawcontrols publish`, the config edited): ExecStartPre passes,
/// ExecStart serves, ExecReload's signal leaves it serving, and KillSignal stops it cleanly
/// within TimeoutStopSec.
#[test]
fn the_units_commands_run_the_proxy_and_reload_keeps_it_serving() {
    let unit = Unit::load();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let dir = state.to_str().unwrap();
    let data = format!("/var/lib/{}", unit.get("StateDirectory").unwrap());
    let map = |argv: Vec<String>| -> Vec<String> {
        argv.into_iter()
            .map(|a| {
                a.replace(&data, dir).replace(
                    "/usr/local/bin/",
                    &format!("{}/", support::bins().display()),
                )
            })
            .collect()
    };

    support::run_ok("clawproxy", &["init", "--data-dir", dir]);
    let seed = files::root().join("examples/policies/1password-readonly-agent.json");
    support::run_ok(
        "clawcontrols",
        &["publish", seed.to_str().unwrap(), "--data-dir", dir],
    );
    let token = support::run_ok(
        "clawscope",
        &[
            "mint",
            "--policy",
            support::POLICY,
            "--job",
            "unit-job",
            "--agent",
            "unit-agent",
            "--data-dir",
            dir,
        ],
    )
    .trim()
    .to_owned();
    let (_sim, sim) = {
        let argv: Vec<String> = [
            "connect-sim",
            "--listen",
            "127.0.0.1:0",
            "--token",
            support::SIM_TOKEN,
        ]
        .map(String::from)
        .to_vec();
        let (daemon, rest) = files::start(
            &argv,
            &[("CLAW_LOG".into(), "warn".into())],
            &work.path().join("connect-sim.stderr"),
            "connect-sim listening on http://",
        );
        (daemon, rest.trim().to_owned())
    };
    // The edit the install notes ask for: addresses and the Connect server.
    let config = state.join("clawproxy.toml");
    let mut table: toml::Table =
        toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    table.insert("listen".into(), "127.0.0.1:0".into());
    table.insert("admin".into(), "127.0.0.1:0".into());
    table["upstream"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
        .insert("url".into(), format!("http://{sim}").into());
    std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();

    let pre = map(unit.argv("ExecStartPre"));
    let out = Command::new(&pre[0]).args(&pre[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "ExecStartPre {pre:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Environment= lines, and the token EnvironmentFile= would hold.
    let mut envs: Vec<(String, String)> = unit
        .all("Service", "Environment")
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap();
            (k.to_owned(), v.replace(&data, dir))
        })
        .collect();
    envs.push(("OP_CONNECT_TOKEN".into(), support::SIM_TOKEN.into()));
    envs.push(("CLAW_LOG".into(), "warn".into()));
    let start = map(unit.argv("ExecStart"));
    let (mut proxy, rest) = files::start(
        &start,
        &envs,
        &work.path().join("clawproxy.stderr"),
        "clawproxy listening on ",
    );
    let listen: std::net::SocketAddr = rest.split(' ').next().unwrap().parse().unwrap();
    let read = || {
        support::send(listen, &support::read_db_item("unit-job", &token, true))
            .expect("an answer from the proxy")
            .status
    };
    assert_eq!(read(), 200);

    if let Some(reload) = unit.get("ExecReload") {
        let reload = reload.replace("$MAINPID", &proxy.pid().to_string());
        let argv: Vec<&str> = reload.split_whitespace().collect();
        let status = Command::new(argv[0]).args(&argv[1..]).status().unwrap();
        assert!(status.success(), "{reload}");
        // A signal without a handler ends the process at once; it must still answer.
        for _ in 0..3 {
            assert_eq!(read(), 200, "after {reload}:\n{}", proxy.stderr_text());
        }
        assert!(proxy.alive(), "{reload} ended the proxy");
    }

    assert_eq!(unit.get("KillSignal").unwrap_or("SIGTERM"), "SIGTERM");
    let limit = unit
        .get("TimeoutStopSec")
        .map_or(90, |s| s.parse::<u64>().expect("TimeoutStopSec in seconds"));
    let stopping = Instant::now();
    let status = proxy.terminate();
    assert!(status.success(), "{status}\n{}", proxy.stderr_text());
    assert!(stopping.elapsed() < Duration::from_secs(limit));
    assert!(Path::new(&state).join("receipts").is_dir());
}
