//! "Sandbox mode all" without docker: the example agent runs in a network namespace of its own
//! whose only link is a veth pair on a private /30 made by the test, with the proxy listening on
//! the root side's address. connect-sim and the proxy run in the root namespace with the compose
//! file's command lines (init script, proxy command, agent command, environments).
//!
//! Asserted: the namespace has no route off its /30 and cannot reach connect-sim or the proxy's
//! admin listener directly; through the proxy the allowed read succeeds and the denied calls get
//! 403, from curl and from examples/agents/agent.sh; the proxy's receipts name the namespace's
//! address as the client. Needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN; where a namespace
//! cannot be made it is skipped loudly (like the full-disk test without tmpfs).

use std::io::Write;
use std::process::{Command, Output};
use std::time::Instant;

use claw_verifier::receipt::Kind;
use connect_sim::demo::{DEMO_DB_ITEM_ID, DEMO_LOGIN_ITEM_ID, DEMO_VAULT_ID};

use super::files::{self, Compose, DATA, Paths};
use super::support;

/// A network namespace and a veth pair, deleted when dropped (also when the test panics).
struct Netns {
    name: String,
    /// The root side of the veth pair, once made.
    veth: Option<String>,
    /// `10.200.<n>.0/30`: .1 is the root side, .2 the namespace's.
    subnet: u8,
}

impl Netns {
    fn host_addr(&self) -> String {
        format!("10.200.{}.1", self.subnet)
    }

    fn ns_addr(&self) -> String {
        format!("10.200.{}.2", self.subnet)
    }

    /// `ip netns exec <ns> argv…` with only `envs` (and PATH) in the environment.
    fn exec(&self, argv: &[&str], envs: &[(String, String)]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("running ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(veth) = &self.veth {
            let _ = Command::new("ip").args(["link", "del", veth]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub(super) fn ip(args: &[&str]) -> Result<String, String> {
    match Command::new("ip").args(args).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("ip {}: {e}", args.join(" "))),
    }
}

pub(super) fn must(args: &[&str]) -> String {
    ip(args).unwrap_or_else(|e| panic!("{e}"))
}

fn skip(why: &str) {
    // Straight to stderr: libtest does not capture this, so the skip shows without --nocapture.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!! SKIPPED: network namespace sandbox test: {why} !!!!!\n"
    );
}

/// The namespace with its veth pair up, or `None` (after a loud skip) where namespaces cannot
/// be made.
fn sandbox() -> Option<Netns> {
    if !claw_tests::is_root() {
        skip("not root: making network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN");
        return None;
    }
    let pid = std::process::id();
    let name = format!("clawproxy-test-{pid}");
    if let Err(why) = ip(&["netns", "add", &name]) {
        let _ = ip(&["netns", "del", &name]);
        // Root in a container without CAP_SYS_ADMIN cannot either: skipped as loudly.
        skip(&why);
        return None;
    }
    // Guarded from here: a panic below deletes what was made.
    let mut netns = Netns {
        name,
        veth: None,
        subnet: 0,
    };
    // A /30 no interface on this machine uses yet.
    let addresses = must(&["-4", "-o", "addr", "show"]);
    let routes = must(&["-4", "route", "show"]);
    netns.subnet = (0..=255u8)
        .map(|i| ((pid % 256) as u8).wrapping_add(i))
        .find(|n| {
            let prefix = format!("10.200.{n}.");
            !addresses.contains(&prefix) && !routes.contains(&prefix)
        })
        .expect("a free 10.200.n.0/30");
    // Interface names: at most 15 bytes.
    let host_veth = format!("cwh{pid}");
    let ns_veth = format!("cwn{pid}");
    must(&[
        "link", "add", &host_veth, "type", "veth", "peer", "name", &ns_veth,
    ]);
    netns.veth = Some(host_veth.clone());
    must(&["link", "set", &ns_veth, "netns", &netns.name]);
    must(&[
        "addr",
        "add",
        &format!("{}/30", netns.host_addr()),
        "dev",
        &host_veth,
    ]);
    must(&["link", "set", &host_veth, "up"]);
    let ns = netns.name.clone();
    must(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{}/30", netns.ns_addr()),
        "dev",
        &ns_veth,
    ]);
    must(&["-n", &ns, "link", "set", &ns_veth, "up"]);
    must(&["-n", &ns, "link", "set", "lo", "up"]);
    Some(netns)
}

/// `curl -s -o <body> -w '%{http_code}' …` in the namespace: (exit code, status, body).
fn curl(netns: &Netns, args: &[&str], envs: &[(String, String)]) -> (i32, String, String) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let body_path = body.path().to_str().unwrap().to_owned();
    let mut argv = vec![
        "curl",
        "-s",
        "--max-time",
        "20",
        "-o",
        &body_path,
        "-w",
        "%{http_code}",
    ];
    argv.extend_from_slice(args);
    let out = netns.exec(&argv, envs);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(body.path()).unwrap_or_default(),
    )
}

#[test]
fn the_agent_in_a_network_namespace_reaches_connect_only_through_the_proxy() {
    let started = Instant::now();
    let Some(netns) = sandbox() else { return };

    let compose = Compose::load();
    let work = tempfile::tempdir().unwrap();
    let paths = Paths::new(work.path());
    // As in the compose file, but with the namespace's view of the proxy: the root side of the
    // veth pair, on the compose file's port.
    let (_, config) = files::compose_config(&compose);
    let port = config["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let proxy_addr = format!("{}:{port}", netns.host_addr());

    let (_sim, sim) = files::start_connect(&compose, work.path());
    files::run_init(&compose, &paths, &proxy_addr);
    files::write_config(&compose, &paths, &proxy_addr, "127.0.0.1:0", sim);
    let (mut proxy, listen, admin) = files::start_proxy(&compose, &paths, work.path());
    assert_eq!(listen.to_string(), proxy_addr);
    let sim_token = compose
        .environment("connect")
        .into_iter()
        .find(|(k, _)| k == "CONNECT_SIM_TOKEN")
        .expect("connect-sim's token")
        .1;
    let bearer = format!("Authorization: Bearer {sim_token}");

    // Direct egress fails. The namespace has one route, its own /30: anything else is
    // unreachable (checked on the routing table, so no packet is sent anywhere).
    let routes = netns.exec(&["ip", "-4", "route", "show"], &[]);
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert_eq!(
        routes.lines().count(),
        1,
        "the namespace's only route is its /30:\n{routes}"
    );
    assert!(
        routes.starts_with(&format!("10.200.{}.0/30 ", netns.subnet)),
        "{routes}"
    );
    let unreachable = netns.exec(&["ip", "route", "get", "192.0.2.1"], &[]);
    assert!(
        !unreachable.status.success()
            && String::from_utf8_lossy(&unreachable.stderr).contains("unreachable"),
        "a route out of the namespace: {}",
        String::from_utf8_lossy(&unreachable.stdout)
    );
    // connect-sim answers in the root namespace, but not from the sandbox: not at its own
    // address (the namespace's loopback is its own), nor through the veth's root side; the
    // proxy's admin listener is out of reach too; a Connect URL without the proxy goes nowhere.
    let vaults = format!("http://{sim}/v1/vaults");
    let direct = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "20",
            "--noproxy",
            "*",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code}", "-H", &bearer, &vaults])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout),
        "200",
        "control: connect-sim answers in the root namespace"
    );
    let via_veth = format!("http://{}:{}/v1/vaults", netns.host_addr(), sim.port());
    let admin_via_veth = format!("http://{}:{}/healthz", netns.host_addr(), admin.port());
    for url in [
        vaults.as_str(),
        via_veth.as_str(),
        admin_via_veth.as_str(),
        "http://connect.1password.com/v1/vaults",
    ] {
        let (code, status, _) = curl(&netns, &["--noproxy", "*", "-H", &bearer, url], &[]);
        assert!(
            code != 0 && status == "000",
            "{url} answered the sandbox directly (curl exit {code}, status {status})"
        );
    }

    // Through the proxy, configured as the agent is: the allowed read succeeds, the LOGIN item
    // and a delete are refused in Connect's error shape.
    let agent_env = files::agent_env(&paths);
    let item =
        |id: &str| format!("http://connect.1password.com/v1/vaults/{DEMO_VAULT_ID}/items/{id}");
    let placeholder = "Authorization: Bearer agent-placeholder";
    let (code, status, body) = curl(
        &netns,
        &["-H", placeholder, &item(DEMO_DB_ITEM_ID)],
        &agent_env,
    );
    assert_eq!((code, status.as_str()), (0, "200"), "allowed read: {body}");
    let item_json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(item_json["id"], DEMO_DB_ITEM_ID);
    assert_eq!(item_json["category"], "DATABASE");
    for (what, args) in [
        ("read the LOGIN item", vec!["-H", placeholder]),
        ("delete", vec!["-X", "DELETE", "-H", placeholder]),
    ] {
        let url = if what == "delete" {
            item(DEMO_DB_ITEM_ID)
        } else {
            item(DEMO_LOGIN_ITEM_ID)
        };
        let mut args = args;
        args.push(&url);
        let (code, status, body) = curl(&netns, &args, &agent_env);
        assert_eq!((code, status.as_str()), (0, "403"), "{what}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["status"], 403, "{what}: {body}");
    }

    // The example agent, by the compose file's agent command and environment.
    let argv: Vec<String> = compose
        .command("agent")
        .iter()
        .map(|a| paths.map(a))
        .collect();
    let envs: Vec<(String, String)> = compose
        .environment("agent")
        .into_iter()
        .map(|(k, v)| (k, paths.map(&v)))
        .collect();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = netns.exec(&argv, &envs);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !said.contains("BAD"),
        "the agent ({}):\n{said}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said.matches("curl agent: ok").count(), 4, "{said}");

    let status = proxy.terminate();
    assert!(status.success(), "{status}\n{}", proxy.stderr_text());

    // Every call is receipted, from the namespace's address, as the contract decided.
    let log = support::read_log(paths.host(DATA));
    let calls: Vec<_> = log
        .receipts
        .iter()
        .filter(|r| r.kind == Kind::Call)
        .collect();
    let client = netns.ns_addr();
    for receipt in &calls {
        let from = receipt.client.as_deref().unwrap_or_default();
        assert!(
            from == client,
            "receipt {} is from {from}, not the namespace",
            receipt.id
        );
    }
    let decided = |op: &str, item: Option<&str>, allow: bool| {
        calls
            .iter()
            .filter(|r| {
                r.op.as_ref()
                    .is_some_and(|o| o.name == op && (item.is_none() || o.item.as_deref() == item))
                    && r.decision.as_ref().is_some_and(|d| d.allow == allow)
            })
            .count()
    };
    // curl above once, the agent once.
    assert_eq!(decided("read_item", Some(DEMO_DB_ITEM_ID), true), 2);
    assert_eq!(decided("read_item", Some(DEMO_LOGIN_ITEM_ID), false), 2);
    assert_eq!(decided("delete_item", None, false), 2);
    assert!(
        calls
            .iter()
            .filter(|r| r.decision.as_ref().is_some_and(|d| d.allow))
            .count()
            == 2,
        "only the two reads of the DATABASE item were allowed"
    );
    eprintln!(
        "network namespace sandbox test ran in {:.1?} ({} receipts)",
        started.elapsed(),
        log.receipts.len()
    );
}
