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
