//! `host_rules` against a real HTTPS server at a public address, with nothing leaving the
//! machine: the proxy, the server and curl all run in a network namespace of their own, whose
//! only interface is its loopback, holding a public address (93.184.216.34) besides 127.0.0.1. Names resolve through the namespace's own `/etc/hosts` (`ip netns exec`
//! mounts `/etc/netns/<ns>/hosts` over it), so the proxy resolves, judges and dials exactly as
//! it would on the internet.
//!
//! Asserted: requests a rule allows reach the server over TLS the proxy verified (against
//! `egress_ca_file`), with the normalised path and without proxy credentials, and plain HTTP
//! too; what no rule allows is refused with a receipt and never reaches the server; a server
//! whose certificate does not name the host is not spoken to; a host without rules is an opaque
//! tunnel (curl verifies the server's own certificate through it); and the job's bundle
//! verifies, `semantics.reevaluate` included. Root only, skipped loudly elsewhere.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use claw_verifier::receipt::Kind;

use super::sandbox::{ip, must};
use super::support::{self, Proc};

/// The namespace's public address: example.com's, which no test traffic can reach from here.
const PUBLIC: &str = "93.184.216.34";

const CONTRACT: &str = r#"{
  "wpc_version": "1.0",
  "name": "github-issues-agent",
  "tool_scope": {
    "integration": "onepassword", "auth_mode": "connect",
    "allowed_vaults": ["vault_agent_secrets_prod"], "allowed_operations": ["read_item"],
    "allowed_categories": ["DATABASE"]
  },
  "cst_constraints": { "max_ttl_seconds": 900, "policy_hash_pin": true, "job_scoped": true },
  "host_rules": {
    "api.example.com": [
      { "methods": ["GET"], "paths": ["/repos/acme/**"] },
      { "methods": ["POST"], "paths": ["/repos/acme/*/issues"] }
    ],
    "badcert.example.com": [ { "methods": ["GET"], "paths": ["/**"] } ]
  },
  "sandbox": {
    "mode": "all", "workspace_access": "none",
    "network_egress": ["api.example.com", "badcert.example.com", "tunnel.example.com"]
  }
}"#;

/// An HTTP and HTTPS server on the public address that answers every request with what it
/// received, and appends `METHOD PATH` to a log file.
const SERVER: &str = r#"
import http.server, json, ssl, sys, threading
cert, key, host, log = sys.argv[1:5]
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace")
        with open(log, "a") as f:
            f.write(f"{self.command} {self.path}\n")
        out = json.dumps({"method": self.command, "path": self.path, "body": body,
                          "tls": isinstance(self.connection, ssl.SSLSocket),
                          "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_DELETE = do_PUT = answer
    def log_message(self, *args):
        pass
plain = http.server.ThreadingHTTPServer((host, 80), Echo)
tls = http.server.ThreadingHTTPServer((host, 443), Echo)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
tls.socket = context.wrap_socket(tls.socket, server_side=True)
for server in (plain, tls):
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// A network namespace whose loopback also holds [`PUBLIC`], with its own hosts file, deleted
/// when dropped (also when the test panics).
struct PublicNetns {
    name: String,
    etc: std::path::PathBuf,
}

impl PublicNetns {
    fn make() -> Option<Self> {
        if !claw_tests::is_root() {
            skip("not root: making network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN");
            return None;
        }
        let name = format!("clawhr-{}", std::process::id());
        if let Err(why) = ip(&["netns", "add", &name]) {
            let _ = ip(&["netns", "del", &name]);
            skip(&why);
            return None;
        }
        let etc = Path::new("/etc/netns").join(&name);
        let netns = Self { name, etc };
        let ns = netns.name.as_str();
        let public = format!("{PUBLIC}/32");
        must(&["-n", ns, "addr", "add", &public, "dev", "lo"]);
        must(&["-n", ns, "link", "set", "lo", "up"]);
        std::fs::create_dir_all(&netns.etc).unwrap();
        std::fs::write(
            netns.etc.join("hosts"),
            format!(
                "127.0.0.1 localhost\n{PUBLIC} api.example.com badcert.example.com tunnel.example.com\n"
            ),
        )
        .unwrap();
        Some(netns)
    }

    /// `ip netns exec <ns>`, to put in front of a command.
    fn prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .expect("running ip netns exec")
    }
}

impl Drop for PublicNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.etc);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn skip(why: &str) {
    // Straight to stderr: libtest does not capture this, so the skip shows without --nocapture.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!! SKIPPED: host_rules test at a public address: {why} !!!!!\n"
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate for api.example.com and tunnel.example.com (not
/// badcert.example.com), in `dir`: ca.pem, server.pem, server.key.
fn certificates(dir: &Path) {
    // A fresh P-256 key, unencrypted, with the request's subject.
    let new_key = |subject| {
        let args = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        [&args[..], &["-subj", subject]].concat()
    };
    let ca = [&["req", "-x509"][..], &new_key("/CN=test CA")].concat();
    let ca_files = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"];
    openssl(dir, &[&ca[..], &ca_files].concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:api.example.com,DNS:tunnel.example.com\n\
         basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let csr = [&["req"][..], &new_key("/CN=server")].concat();
    openssl(
        dir,
        &[&csr[..], &["-keyout", "server.key", "-out", "server.csr"]].concat(),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// curl in the namespace through the proxy as `job`: (status, body).
fn curl(netns: &PublicNetns, proxy: &str, ca: &Path, args: &[&str]) -> (String, String) {
    let ca = ca.to_str().unwrap();
    let mut argv = vec!["curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}"];
    argv.extend(["--noproxy", "", "-x", proxy, "--cacert", ca]);
    argv.extend(args);
    let out = netns.exec(&argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut body = body.to_owned();
    if status == "000" {
        // curl's own complaint, for the assertion message.
        body.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    (status.to_owned(), body)
}

#[test]
fn a_ruled_host_gets_only_its_rules_over_verified_tls_and_others_stay_tunnels() {
    let Some(netns) = PublicNetns::make() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    certificates(work);
    let data = work.join("data");
    let dir = data.to_str().unwrap();
    support::run_ok("clawproxy", &["init", "--data-dir", dir]);
    let contract = work.join("github-issues-agent.json");
    std::fs::write(&contract, CONTRACT).unwrap();
    support::run_ok(
        "clawcontrols",
        &["publish", contract.to_str().unwrap(), "--data-dir", dir],
    );
    std::fs::write(
        data.join("clawproxy.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\negress_ca_file = \"{}\"\n\
             [log]\ncheckpoint_interval_ms = 100\n",
            work.join("ca.pem").display()
        ),
    )
    .unwrap();
    let job = "issues-1";
    let token = support::run_ok(
        "clawscope",
        &[
            "mint",
            "--policy",
            "github-issues-agent",
            "--job",
            job,
            "--agent",
            "agent",
            "--ttl",
            "900",
            "--data-dir",
            dir,
        ],
    );
    let token = token.trim();

    let seen = work.join("seen.log");
    std::fs::write(work.join("server.py"), SERVER).unwrap();
    let mut server = Command::new("ip");
    server
        .args(["netns", "exec", &netns.name, "python3"])
        .arg(work.join("server.py"))
        .arg(work.join("server.pem"))
        .arg(work.join("server.key"))
        .arg(PUBLIC)
        .arg(&seen);
    let (_server, _) = Proc::spawn("server.py", server, &[], &work.join("server.err"), "ready");
    let mut proxy =
        support::start_proxy_in(&netns.prefix(), &data, &work.join("proxy.err"), &[], &[]);
    let via = format!("http://{job}:{token}@{}", proxy.listen);
    let proxy_ca = data.join("keys/ca.pem");
    let through = |ca: &Path, args: &[&str]| curl(&netns, &via, ca, args);
    let echo = |body: &str| -> serde_json::Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };

    // Allowed by a rule: through interception and the proxy's own verified TLS, on the
    // normalised path, the query kept, and no proxy credential passed on.
    let (status, body) = through(
        &proxy_ca,
        &[
            "--path-as-is",
            "https://api.example.com/repos/acme//widgets/../gadgets?page=2",
        ],
    );
    assert_eq!(status, "200", "{body}\n{}", proxy.proc.stderr_text());
    let got = echo(&body);
    assert_eq!(got["path"], "/repos/acme/gadgets?page=2");
    assert_eq!(got["tls"], true);
    assert_eq!(got["headers"]["host"], "api.example.com");
    assert!(
        got["headers"].get("proxy-authorization").is_none(),
        "{body}"
    );
    let (status, body) = through(
        &proxy_ca,
        &[
            "-X",
            "POST",
            "-d",
            "{\"title\":\"t\"}",
            "https://api.example.com/repos/acme/widgets/issues",
        ],
    );
    assert_eq!(status, "200", "{body}");
    assert_eq!(
        (echo(&body)["method"].as_str(), echo(&body)["body"].as_str()),
        (Some("POST"), Some("{\"title\":\"t\"}"))
    );
    // Plain HTTP is judged the same way.
    let (status, body) = through(&proxy_ca, &["http://api.example.com/repos/acme/widgets"]);
    assert_eq!(status, "200", "{body}");
    assert_eq!(echo(&body)["tls"], false);

    // What no rule allows is refused, and the server never hears of it.
    for args in [
        &["-X", "DELETE", "https://api.example.com/repos/acme/widgets"][..],
        &["https://api.example.com/orgs/acme/members"],
        &[
            "-X",
            "POST",
            "https://api.example.com/repos/acme/widgets/pulls",
        ],
        &["http://api.example.com/user"],
    ] {
        let (status, body) = through(&proxy_ca, args);
        assert_eq!(status, "403", "{args:?}: {body}");
        assert!(body.contains("host_rules"), "{args:?}: {body}");
    }
    // A server whose certificate does not name the host is not spoken to.
    let (status, body) = through(&proxy_ca, &["https://badcert.example.com/"]);
    assert_eq!(status, "502", "{body}");

    // A host without rules is a blind tunnel: curl checks the server's own certificate.
    let test_ca = work.join("ca.pem");
    let (status, body) = through(&test_ca, &["https://tunnel.example.com/anything"]);
    assert_eq!(status, "200", "{body}");
    assert_eq!(echo(&body)["path"], "/anything");

    let seen = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [
            "GET /repos/acme/gadgets?page=2",
            "POST /repos/acme/widgets/issues",
            "GET /repos/acme/widgets",
            "GET /anything",
        ],
        "what reached the server"
    );

    let status = proxy.proc.terminate();
    assert!(status.success(), "{status}\n{}", proxy.proc.stderr_text());
    let log = support::read_log(&data);
    let decided = |kind: Kind, host: &str| -> Vec<(bool, String)> {
        log.receipts
            .iter()
            .filter(|r| r.kind == kind && r.req.as_ref().is_some_and(|q| q.host == host))
            .map(|r| {
                let d = r.decision.as_ref().unwrap();
                (d.allow, d.rule.clone())
            })
            .collect()
    };
    let api = decided(Kind::Call, "api.example.com");
    assert_eq!(api.len(), 7, "{api:?}");
    assert_eq!(api.iter().filter(|(allow, _)| *allow).count(), 3, "{api:?}");
    assert!(api.iter().all(|(_, rule)| rule == "host_rules"), "{api:?}");
    assert_eq!(decided(Kind::TunnelOpen, "api.example.com"), []);
    assert_eq!(
        decided(Kind::TunnelOpen, "tunnel.example.com"),
        [(true, "network_egress".to_owned())]
    );
    // Offline, every decision is judged again under the same rules.
    support::bundle_and_verify(&data, job, work);
}
