//! `clawproxy rotate KEY` while the proxy runs: each of the five keys is replaced, the proxy
//! puts it in use at once, on a keep-alive connection that stays open throughout, and records
//! every rotation in its log; what the old keys signed stays verifiable. With no proxy running
//! the command records the rotation itself, and the proxy starts on the rotated log.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claw_verifier::receipt::{AuditKey, Kind, Receipt, RotatedKey, Rotation};

use super::support::{self, Response, run_ok};

const JOB: &str = "rotate-job";

/// `clawproxy rotate KEY`: the old and new kid from its first line, and all it printed.
fn rotate(data: &Path, key: &str) -> (String, String, String) {
    let out = run_ok(
        "clawproxy",
        &["rotate", key, "--data-dir", data.to_str().unwrap()],
    );
    let first = out.lines().next().unwrap_or_default();
    let kids = first
        .strip_prefix(&format!("rotated the {key} key: "))
        .unwrap_or_else(|| panic!("unexpected output: {out}"));
    let (old, new) = kids.split_once(" -> ").unwrap();
    (old.to_owned(), new.to_owned(), out)
}

fn mint(data: &Path, policy: &str, job: &str) -> String {
    support::mint(data, policy, job, "rotate-agent")
}

/// The `kid` in a token's header.
fn token_kid(token: &str) -> String {
    let header = URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// Reads the DATABASE item on `stream`; the answer must be a released 200.
fn read_ok(stream: &mut std::net::TcpStream, job: &str, token: &str) -> Response {
    stream
        .write_all(&support::read_db_item(job, token, false))
        .unwrap();
    let response = support::read_response(stream).expect("an answer");
    assert_eq!(response.status, 200, "{}", response.text());
    response
}

fn receipt_id(response: &Response) -> String {
    response
        .header("x-clawproxy-receipt")
        .expect("a receipt id")
        .to_owned()
}

/// The same read through `curl` over TLS (CONNECT, intercepted), trusting `ca` only.
fn curl_read(listen: std::net::SocketAddr, token: &str, ca: &Path) -> std::process::Output {
    use connect_sim::demo::{DEMO_DB_ITEM_ID, DEMO_VAULT_ID};
    Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .arg("--proxy")
        .arg(format!("http://{listen}"))
        .arg("--proxy-user")
        .arg(format!("{JOB}:{token}"))
        .arg("--cacert")
        .arg(ca)
        .arg(format!(
            "https://connect.1password.com/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_DB_ITEM_ID}"
        ))
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .expect("running curl")
}

fn by_id<'a>(receipts: &'a [Receipt], id: &str) -> &'a Receipt {
    receipts
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("receipt {id} is not in the log"))
}

#[test]
fn every_key_rotates_while_the_proxy_runs_and_old_evidence_stays_verifiable() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("claw");
    let (_sim, sim) = support::start_sim(work.path());
    let first_token = support::prepare(&data, sim, JOB);
    let mut proxy = support::start_proxy(&data, &work.path().join("clawproxy.stderr"));
    // One keep-alive connection, open from the first rotation to the last.
    let mut open = support::connect(proxy.listen).unwrap();
    let before = read_ok(&mut open, JOB, &first_token);
    let mut rotations = Vec::new();

    // Issuer: new tokens carry the new kid and pass at once; the old token still passes.
    let (old_issuer, new_issuer, out) = rotate(&data, "issuer");
    assert!(out.contains("by the running proxy"), "{out}");
    rotations.push((RotatedKey::Issuer, old_issuer.clone(), new_issuer.clone()));
    let second_token = mint(&data, support::POLICY, "rotate-job-2");
    assert_eq!(token_kid(&first_token), old_issuer);
    assert_eq!(token_kid(&second_token), new_issuer);
    read_ok(&mut open, JOB, &first_token);
    read_ok(
        &mut support::connect(proxy.listen).unwrap(),
        "rotate-job-2",
        &second_token,
    );

    // Policy: a contract signed by the new key is honoured at once.
    let (old_policy, new_policy, _) = rotate(&data, "policy");
    rotations.push((RotatedKey::Policy, old_policy, new_policy));
    let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/policies/1password-readonly-agent.json");
    let renamed = std::fs::read_to_string(seed)
        .unwrap()
        .replace("\"1password-readonly-agent\"", "\"rotated-readonly-agent\"");
    let contract = work.path().join("rotated.json");
    std::fs::write(&contract, renamed).unwrap();
    run_ok(
        "clawcontrols",
        &[
            "publish",
            contract.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let third_token = mint(&data, "rotated-readonly-agent", "rotate-job-3");
    read_ok(
        &mut support::connect(proxy.listen).unwrap(),
        "rotate-job-3",
        &third_token,
    );

    // Proxy: receipts from here on are signed by the new key.
    let (old_proxy, new_proxy, _) = rotate(&data, "proxy");
    rotations.push((RotatedKey::Proxy, old_proxy.clone(), new_proxy.clone()));
    let after_proxy = read_ok(&mut open, JOB, &first_token);

    // Audit: body hashes from here on are keyed by the new key; the old one is kept.
    let (old_audit, new_audit, _) = rotate(&data, "audit");
    rotations.push((RotatedKey::Audit, old_audit.clone(), new_audit.clone()));
    let after_audit = read_ok(&mut open, JOB, &first_token);

    // CA: new TLS connections get leaves of the new CA, which agents must now trust.
    let old_ca = work.path().join("old-ca.pem");
    std::fs::copy(data.join("keys/ca.pem"), &old_ca).unwrap();
    let out = curl_read(proxy.listen, &first_token, &old_ca);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    let (old_ca_kid, new_ca_kid, _) = rotate(&data, "ca");
    rotations.push((RotatedKey::Ca, old_ca_kid, new_ca_kid));
    let out = curl_read(proxy.listen, &first_token, &data.join("keys/ca.pem"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    let out = curl_read(proxy.listen, &first_token, &old_ca);
    assert!(!out.status.success(), "the old CA still verifies: {out:?}");

    // The connection opened before the first rotation is still served.
    read_ok(&mut open, JOB, &first_token);
    assert!(proxy.proc.alive());
    proxy.proc.terminate();

    // The log verifies under trust.json, which keeps every old key, and records each rotation
    // in order; a proxy key's rotation is the old key's last signature.
    let log = support::read_log(&data).receipts;
    let recorded: Vec<(RotatedKey, String, String)> = log
        .iter()
        .filter(|r| r.kind == Kind::KeyRotation)
        .map(|r| {
            let rotation = r.rotation.clone().unwrap();
            (rotation.key, rotation.old, rotation.new)
        })
        .collect();
    assert_eq!(recorded, rotations);
    let handover = log
        .iter()
        .find(|r| {
            r.rotation
                .as_ref()
                .is_some_and(|x| x.key == RotatedKey::Proxy)
        })
        .unwrap();
    assert_eq!(handover.proxy, old_proxy);
    assert_eq!(by_id(&log, &receipt_id(&before)).proxy, old_proxy);
    assert_eq!(by_id(&log, &receipt_id(&after_proxy)).proxy, new_proxy);
    let hash = |r: &Receipt| r.resp.as_ref().unwrap().body_hash.clone();
    let old_hash = hash(by_id(&log, &receipt_id(&before)));
    assert!(
        old_hash.starts_with(&format!("blake3k:{old_audit}:")),
        "{old_hash}"
    );
    let new_hash = hash(by_id(&log, &receipt_id(&after_audit)));
    assert!(
        new_hash.starts_with(&format!("blake3k:{new_audit}:")),
        "{new_hash}"
    );
    // The retired audit key still answers for receipts made before its rotation.
    let body = work.path().join("body");
    std::fs::write(&body, before.body.as_slice()).unwrap();
    let dir = data.to_str().unwrap();
    let body_path = body.to_str().unwrap();
    let rehash = |kid: &[&str]| {
        run_ok(
            "clawverify",
            &[&["audit-hash", "--file", body_path, "--data-dir", dir], kid].concat(),
        )
    };
    assert_eq!(rehash(&["--kid", &old_audit]).trim(), old_hash);
    assert!(
        rehash(&[])
            .trim()
            .starts_with(&format!("blake3k:{new_audit}:"))
    );
    support::bundle_and_verify(&data, JOB, work.path());

    // No proxy running: the command records the rotation itself, signed by the old key, and
    // the proxy starts on the rotated log and signs with the newest key.
    let (old, newest, out) = rotate(&data, "proxy");
    assert_eq!(old, new_proxy);
    assert!(out.contains("no proxy running"), "{out}");
    let mut proxy = support::start_proxy(&data, &work.path().join("clawproxy-2.stderr"));
    let last = read_ok(
        &mut support::connect(proxy.listen).unwrap(),
        JOB,
        &first_token,
    );
    proxy.proc.terminate();
    let log = support::read_log(&data).receipts;
    let offline = log.iter().rfind(|r| r.kind == Kind::KeyRotation).unwrap();
    assert_eq!(offline.proxy, new_proxy);
    assert_eq!(offline.rotation.as_ref().unwrap().new, newest);
    assert_eq!(by_id(&log, &receipt_id(&last)).proxy, newest);
    support::bundle_and_verify(&data, JOB, work.path());
}

#[test]
fn a_rotation_the_running_proxy_cannot_use_is_refused_and_the_old_key_stays() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("claw");
    let (_sim, sim) = support::start_sim(work.path());
    let token = support::prepare(&data, sim, JOB);
    let mut proxy = support::start_proxy(&data, &work.path().join("clawproxy.stderr"));
    let mut open = support::connect(proxy.listen).unwrap();
    read_ok(&mut open, JOB, &token);
    // A second rotation at the same time waits for nobody: it is refused outright.
    let lock = std::fs::File::create(data.join("keys/rotate.lock")).unwrap();
    lock.try_lock().unwrap();
    let out = support::run(
        "clawproxy",
        &["rotate", "proxy", "--data-dir", data.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another `clawproxy rotate`"),
        "{out:?}"
    );
    drop(lock);
    // A control request that does not match the files is refused by the proxy, which keeps
    // signing with its key; garbage gets an error, not a crash.
    let socket = support::log_dir(&data).join("control.sock");
    let (a, b) = ("A".repeat(43), "B".repeat(43));
    let (h0, h1) = ("0".repeat(64), "1".repeat(64));
    // A proxy key in the file that trust.json does not list (put back afterwards).
    let proxy_pem = data.join("keys/proxy.pem");
    let original = std::fs::read(&proxy_pem).unwrap();
    let stranger = claw_policy::keys::generate();
    claw_policy::keys::write_signing_key(&proxy_pem, &stranger, true).unwrap();
    let stranger = claw_policy::keys::kid(&stranger.verifying_key());
    for (request, why) in [
        (
            format!(
                "{{\"rotated\":{{\"key\":\"proxy\",\"old\":\"{a}\",\"new\":\"{stranger}\"}}}}\n"
            ),
            "trust.json does not list the new proxy key",
        ),
        (
            format!(
                "{{\"rotated\":{{\"key\":\"audit\",\"old\":\"{}\",\"new\":\"{}\"}}}}\n",
                &h0[..16],
                &h1[..16]
            ),
            "keys/audit.key has kid",
        ),
        (
            format!(
                "{{\"rotated\":{{\"key\":\"ca\",\"old\":\"sha256:{h0}\",\"new\":\"sha256:{h1}\"}}}}\n"
            ),
            "keys/ca.key has kid",
        ),
        (
            format!("{{\"rotated\":{{\"key\":\"proxy\",\"old\":\"x\",\"new\":\"{a}\"}}}}\n"),
            "keys/proxy.pem holds key",
        ),
        (
            format!("{{\"rotated\":{{\"key\":\"issuer\",\"old\":\"{a}\",\"new\":\"{b}\"}}}}\n"),
            "trust.json does not list the issuer key",
        ),
        ("not json\n".to_owned(), "not a control request"),
    ] {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
        assert!(
            answer.starts_with("{\"error\":") && answer.contains(why),
            "{answer}"
        );
    }
    std::fs::write(&proxy_pem, original).unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    read_ok(&mut open, JOB, &token);
    proxy.proc.terminate();
    assert!(!socket.exists(), "the socket is removed at shutdown");
    let log = support::read_log(&data).receipts;
    assert!(log.iter().all(|r| r.kind != Kind::KeyRotation));

    // An audit key replaced by hand is recorded when the proxy next starts.
    let audit = data.join("keys/audit.key");
    let old_kid = AuditKey::load(&audit).unwrap().kid().to_owned();
    std::fs::write(&audit, [42u8; 32]).unwrap();
    let new_kid = AuditKey::new([42; 32]).kid().to_owned();
    let mut proxy = support::start_proxy(&data, &work.path().join("clawproxy.stderr"));
    let mut open = support::connect(proxy.listen).unwrap();
    read_ok(&mut open, JOB, &token);
    proxy.proc.terminate();
    let log = support::read_log(&data).receipts;
    let rotations: Vec<_> = log.iter().filter_map(|r| r.rotation.clone()).collect();
    assert_eq!(
        rotations,
        [Rotation {
            key: RotatedKey::Audit,
            old: old_kid,
            new: new_kid,
        }]
    );

    // `audit-hash --kid` takes only an audit kid whose retired key file holds that key.
    let dir = data.to_str().unwrap();
    let current = std::fs::read(data.join("keys/audit.key")).unwrap();
    let misnamed = data.join("keys/audit-0123456789abcdef.key");
    std::fs::write(&misnamed, current).unwrap();
    std::fs::set_permissions(
        &misnamed,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    for (kid, why) in [
        ("not-a-kid", "is not an audit kid"),
        ("fedcba9876543210", "audit-fedcba9876543210.key"),
        ("0123456789abcdef", "holds the audit key"),
    ] {
        let out = support::run(
            "clawverify",
            &[
                "audit-hash",
                "--file",
                "/dev/null",
                "--kid",
                kid,
                "--data-dir",
                dir,
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{kid}: {stderr}"
        );
    }
}
