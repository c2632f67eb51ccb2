use axum::body::Body;
use axum::http::{Request, StatusCode};
use claw_policy::contract::Contract;
use claw_policy::datadir::DataDir;
use claw_policy::envelope::Envelope;
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::Registry;
use claw_policy::registry_api::router;
use claw_policy::trust::TrustStore;
use tower::ServiceExt;

async fn get(registry: &Registry, path: &str) -> (StatusCode, serde_json::Value) {
    let response = router(registry.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn lists_and_serves_envelopes_read_only() {
    let (_tmp, root) = super::data_dir();
    let dir = DataDir::new(&root);
    let key = keys::read_signing_key(&dir.signing_key(Purpose::Policy)).unwrap();
    let trust = TrustStore::load(&dir.trust()).unwrap();
    let registry = Registry::new(dir.policies());
    let contract = Contract::from_slice(&std::fs::read(super::seed()).unwrap()).unwrap();
    registry
        .publish(&Envelope::sign(&contract, &key), &trust)
        .unwrap();

    let (status, list) = get(&registry, "/v1/contracts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["1password-readonly-agent"]["active"], contract.hash());

    let (status, envelope) = get(&registry, &format!("/v1/contracts/{}", contract.hash())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(envelope["hash"], contract.hash());

    let (status, envelope) = get(&registry, "/v1/contracts/by-name/1password-readonly-agent").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(envelope["wpc"]["name"], "1password-readonly-agent");

    for path in ["/v1/contracts/blake3:00", "/v1/contracts/by-name/nope"] {
        let (status, body) = get(&registry, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["status"], 404);
    }
    let response = router(registry.clone())
        .oneshot(Request::post("/v1/contracts").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Kills the server child when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_serves_on_a_real_loopback_socket() {
    use std::io::{BufRead, BufReader, Read, Write};

    let (_tmp, root) = super::data_dir();
    let out = super::clawcontrols(&[
        "publish",
        super::seed().to_str().unwrap(),
        "--data-dir",
        root.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let hash = out.stdout.trim().to_owned();

    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_clawcontrols"))
            .args(["serve", "--listen", "127.0.0.1:0", "--json", "--data-dir"])
            .arg(&root)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = ready["listen"].as_str().unwrap().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let get = |path: &str| -> String {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let response = get("/v1/contracts/by-name/1password-readonly-agent");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(&hash), "{response}");
    let response = get("/v1/contracts/blake3:ffff");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(response.contains("\"status\":404"), "{response}");
}

#[test]
fn serve_refuses_non_loopback_addresses() {
    let out = super::clawcontrols(&["serve", "--listen", "0.0.0.0:8181"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("loopback"), "{}", out.stderr);
}
