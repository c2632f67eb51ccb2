use super::*;

#[tokio::test]
async fn an_allowed_read_returns_the_item_with_the_injected_token_and_a_receipt() {
    let (stack, token) = seed_stack().await;
    let response = connect(&stack, &token, "GET", &item_path(DEMO_DB_ITEM_ID)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let item = response.json();
    assert_eq!(item["category"], "DATABASE");
    assert_eq!(response.header("1password-connect-version"), Some("1.8.1"));
    let id = response
        .header("x-clawproxy-receipt")
        .expect("receipt header");
    let receipt = stack.receipt(id);
    assert_eq!(receipt.job, "job-1");
    let op = receipt.op.as_ref().unwrap();
    assert_eq!(
        (op.name.as_str(), op.category.as_deref()),
        ("read_item", Some("DATABASE"))
    );
    assert!(receipt.decision.as_ref().unwrap().allow);
    let resp = receipt.resp.as_ref().unwrap();
    assert!(resp.released && resp.status == 200);
    assert!(resp.body_hash.starts_with("blake3k:"));
    // No secret value or token in the log.
    let log = serde_json::to_string(&stack.receipts()).unwrap();
    assert!(
        !log.contains("demo-db-password")
            && !log.contains(&token)
            && !log.contains(claw_tests::SIM_TOKEN)
    );
}

#[tokio::test]
async fn a_disallowed_category_is_withheld() {
    let (stack, token) = seed_stack().await;
    let response = connect(&stack, &token, "GET", &item_path(DEMO_LOGIN_ITEM_ID)).await;
    assert_eq!(response.status, 403);
    let body = response.json();
    assert_eq!(body["status"], 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("allowed_categories")
    );
    assert!(!response.text().contains("demo-admin-password"));
    let receipt = stack.receipt(response.header("x-clawproxy-receipt").unwrap());
    let resp = receipt.resp.unwrap();
    assert!(
        !resp.released,
        "the upstream answered but nothing was released"
    );
    assert_eq!(receipt.decision.unwrap().rule, "allowed_categories");
}

#[tokio::test]
async fn denied_operations_name_their_rule_and_are_receipted() {
    let (stack, token) = seed_stack().await;
    let cases = [
        ("DELETE", item_path(DEMO_DB_ITEM_ID), "deny_operations"),
        (
            "GET",
            format!("/v1/vaults/{DEMO_VAULT_ID}/items"),
            "allowed_operations",
        ),
        ("GET", "/v1/vaults".to_owned(), "allowed_operations"),
        ("GET", "/v2/anything".to_owned(), "unknown_operation"),
        (
            "GET",
            format!(
                "/v1/vaults/{}/items/{DEMO_DB_ITEM_ID}",
                connect_sim::demo::OTHER_VAULT_ID
            ),
            "allowed_vaults",
        ),
    ];
    for (method, path, rule) in cases {
        let response = connect(&stack, &token, method, &path).await;
        assert_eq!(response.status, 403, "{method} {path}");
        assert!(
            response.json()["message"].as_str().unwrap().contains(rule),
            "{method} {path}: {}",
            response.text()
        );
        let receipt = stack.receipt(response.header("x-clawproxy-receipt").unwrap());
        assert!(!receipt.decision.as_ref().unwrap().allow);
        assert!(
            receipt.resp.is_none(),
            "denied calls carry no upstream answer"
        );
    }
    // The delete never reached Connect: the item is still there.
    assert_eq!(
        connect(&stack, &token, "GET", &item_path(DEMO_DB_ITEM_ID))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_log_is_a_verifiable_chain_with_checkpoints() {
    let (stack, token) = seed_stack().await;
    for _ in 0..3 {
        connect(&stack, &token, "GET", &item_path(DEMO_DB_ITEM_ID)).await;
    }
    let receipts = stack.receipts();
    let job: Vec<u64> = receipts
        .iter()
        .filter(|r| r.job == "job-1")
        .map(|r| r.job_seq)
        .collect();
    assert_eq!(job, (0..job.len() as u64).collect::<Vec<_>>());
    let trust = claw_policy::trust::TrustStore::load(&stack.dir.trust()).unwrap();
    let proxy = trust
        .by_purpose(claw_policy::keys::Purpose::Proxy)
        .next()
        .unwrap();
    let verifier = claw_verifier::checkpoint::NoteVerifier {
        name: format!("clawproxy/{}", proxy.name),
        key: proxy.key,
    };
    let path = stack.dir.receipts().join(&proxy.name).join("checkpoint");
    let covered = |size: u64| {
        let Ok(note) = std::fs::read_to_string(&path) else {
            return false;
        };
        let checkpoint =
            claw_verifier::checkpoint::open_checkpoint(&note, std::slice::from_ref(&verifier))
                .expect("every checkpoint on disk verifies");
        checkpoint.size == size
    };
    let size = receipts.len() as u64;
    claw_tests::eventually("a checkpoint covers the log", || covered(size)).await;
}

#[tokio::test]
async fn lists_are_filtered_and_the_withheld_count_receipted() {
    let contract = include_bytes!("../../../examples/policies/1password-read-by-title.json");
    let stack = Stack::start(contract, Upstream::Sim).await;
    let token = stack.mint("1password-read-by-title", "job-1", None);

    let response = connect(
        &stack,
        &token,
        "GET",
        &format!("/v1/vaults/{DEMO_VAULT_ID}/items"),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let mut categories: Vec<String> = response
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["category"].as_str().unwrap().to_owned())
        .collect();
    categories.sort();
    assert_eq!(
        categories,
        ["API_CREDENTIAL", "DATABASE"],
        "LOGIN and SECURE_NOTE withheld"
    );
    let receipt = stack.receipt(response.header("x-clawproxy-receipt").unwrap());
    assert_eq!(receipt.op.unwrap().withheld, Some(2));

    let response = connect(&stack, &token, "GET", "/v1/vaults").await;
    assert_eq!(response.status, 200);
    let vaults = response.json();
    assert_eq!(vaults.as_array().unwrap().len(), 1, "{vaults}");
    assert_eq!(vaults[0]["id"], DEMO_VAULT_ID);
    let receipt = stack.receipt(response.header("x-clawproxy-receipt").unwrap());
    assert_eq!(receipt.op.unwrap().withheld, Some(1));
}
