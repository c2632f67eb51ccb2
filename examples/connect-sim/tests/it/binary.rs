//! The `connect-sim` command line over real sockets: startup refusals, HTTP and HTTPS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use connect_sim::demo::DEMO_VAULT_ID;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_connect-sim");

/// A child process killed when dropped (only ever the one this test started).
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on a free port and waits for its `listening on` line.
fn start(args: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("CONNECT_SIM_TOKEN")
        .env("CLAW_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("connect-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Server(child, url)
}

fn refused(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("CONNECT_SIM_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One raw HTTP/1.1 exchange (no client library: this is what goes on the wire).
fn exchange(mut stream: impl Read + Write, path: &str, token: &str) -> String {
    // Write errors show up as an empty answer (a TLS port may hang up early).
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: connect\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    // A TLS port answers plain text with an alert or a reset; either is "no HTTP answer".
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn refuses_empty_tokens_and_bad_input_with_exit_2() {
    assert!(refused(&["--token", ""]).contains("must not be empty"));
    assert!(refused(&["--token", "   "]).contains("must not be empty"));
    let error = refused(&[
        "--token",
        "t",
        "--restricted-token",
        "",
        "--restricted-vaults",
        DEMO_VAULT_ID,
    ]);
    assert!(error.contains("must not be empty"), "{error}");
    let error = refused(&[
        "--token",
        "t",
        "--restricted-token",
        "r",
        "--restricted-vaults",
        "x",
    ]);
    assert!(error.contains("\"x\""), "{error}");
    let error = refused(&["--token", "t", "--restricted-token", "r"]);
    assert!(error.contains("--restricted-vaults"), "{error}");
    let error = refused(&["--token", "t", "--tls-cert", "c.pem"]);
    assert!(error.contains("--tls-key"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.json");
    std::fs::write(&data, r#"{"vaults": [{"id": "nope", "name": "x"}]}"#).unwrap();
    let error = refused(&["--token", "t", "--data", data.to_str().unwrap()]);
    assert!(
        error.contains("/vaults/0/id") && error.contains("data.json"),
        "{error}"
    );
    let error = refused(&[
        "--token",
        "t",
        "--tls-cert",
        "/nonexistent.pem",
        "--tls-key",
        "/nonexistent.key",
    ]);
    assert!(error.contains("/nonexistent.pem"), "{error}");
}

#[test]
fn serves_http_and_never_logs_the_token() {
    let secret = "tok-9f8e7d6c5b4a";
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--token", secret])
        .env("CLAW_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let server = Server(child, line.trim().replace("connect-sim listening on ", ""));
    let addr = server.1.strip_prefix("http://").unwrap().to_owned();
    let ok = exchange(
        TcpStream::connect(&addr).unwrap(),
        &format!("/v1/vaults/{DEMO_VAULT_ID}/"),
        secret,
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.to_ascii_lowercase()
            .contains("1password-connect-version: 1.8.1"),
        "{ok}"
    );
    let denied = exchange(TcpStream::connect(&addr).unwrap(), "/v1/vaults", "wrong");
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let mut server = server;
    let _ = server.0.kill();
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("request"),
        "the requests were logged: {stderr}"
    );
    assert!(
        !stderr.contains(secret),
        "the token is never logged: {stderr}"
    );
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = start(&[
        "--token",
        "t",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let addr = server
        .1
        .strip_prefix("https://")
        .expect("an https URL")
        .to_owned();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /v1/vaults?filter=name+eq+%22vault_other%22 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("1password-connect-version: 1.8.1")
    );
    assert!(answer.contains("\"name\":\"vault_other\""), "{answer}");

    // Plain HTTP to the TLS port gets no answer.
    let plain = exchange(TcpStream::connect(&addr).unwrap(), "/heartbeat", "t");
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
}
