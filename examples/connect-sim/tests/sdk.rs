//! The official 1Password Connect SDKs directly against connect-sim (no proxy): the Python SDK
//! 2.1.1 (`tests/sdk/python/direct.py`) and the JS SDK 1.4.2 (`tests/sdk/node/direct.js`),
//! over HTTP and over HTTPS with a CA the SDKs are told to trust by environment only.
//!
//! Install the SDKs with `bash tests/sdk/setup.sh`. When they are missing these tests FAIL if
//! the `CI` environment variable is set, and otherwise pass after printing why they skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use connect_sim::Sim;
use connect_sim::demo::{DEMO_VAULT_ID, OTHER_VAULT_ID};
use connect_sim::store::Store;

const TOKEN: &str = "sdk-test-token";
const RESTRICTED: &str = "sdk-restricted-token";

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk")
}

/// The interpreter and script for `language`, or None (after failing in CI) when not installed.
fn installed(language: &str) -> Option<(PathBuf, PathBuf)> {
    let dir = sdk_dir();
    let (program, script, marker) = match language {
        "python" => (
            dir.join(".venv/bin/python"),
            dir.join("python/direct.py"),
            dir.join(".venv/bin/python"),
        ),
        _ => (
            PathBuf::from("node"),
            dir.join("node/direct.js"),
            dir.join("node/node_modules/@1password/connect/package.json"),
        ),
    };
    let node_ok = language == "python"
        || Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if marker.exists() && node_ok {
        return Some((program, script));
    }
    let reason = format!(
        "the {language} SDK is not installed ({} missing); run `bash tests/sdk/setup.sh`",
        marker.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

fn sim() -> Sim {
    Sim::new(TOKEN, Store::demo())
        .unwrap()
        .restricted(RESTRICTED, [OTHER_VAULT_ID])
        .unwrap()
}

/// Runs `script` with the SDK environment for `url`; `ca` is a PEM file to trust, for HTTPS.
async fn run(program: PathBuf, script: PathBuf, url: String, ca: Option<PathBuf>) {
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(&program);
        command.arg(&script);
        // Direct tests: no proxy may sit between the SDK and the server.
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
            command
                .env_remove(name)
                .env_remove(name.to_ascii_lowercase());
        }
        for name in [
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "NODE_EXTRA_CA_CERTS",
            "OP_CONNECT_CLIENT_ASYNC",
        ] {
            command.env_remove(name);
        }
        if let Some(ca) = &ca {
            command
                .env("SSL_CERT_FILE", ca)
                .env("NODE_EXTRA_CA_CERTS", ca);
        }
        command
            .env("OP_CONNECT_HOST", &url)
            .env("OP_CONNECT_TOKEN", TOKEN)
            .env("OP_VAULT", DEMO_VAULT_ID)
            .env("OP_OTHER_VAULT", OTHER_VAULT_ID)
            .env("OP_RESTRICTED_TOKEN", RESTRICTED)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "SDK script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains(" 0 failure(s)"), "{stdout}");
}

async fn over_http(language: &str) {
    let Some((program, script)) = installed(language) else {
        return;
    };
    let server = connect_sim::spawn(sim()).await.unwrap();
    run(program, script, server.url(), None).await;
}

async fn over_https(language: &str) {
    let Some((program, script)) = installed(language) else {
        return;
    };
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let config: Arc<rustls::ServerConfig> = connect_sim::tls_config(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(connect_sim::serve_tls(listener, sim(), config));
    run(program, script, url, Some(cert)).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http() {
    over_http("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_over_http() {
    over_http("node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_https() {
    over_https("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_over_https() {
    over_https("node").await;
}
