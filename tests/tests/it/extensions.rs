//! Contract extensions through the proxy (issue 13): item allow-lists, rate limits,
//! audit-only mode and the anomaly signals.

use connect_sim::demo::{DEMO_API_ITEM_ID, DEMO_DB_ITEM_ID, DEMO_VAULT_ID};

use super::evidence::{close_and_bundle, verified_complete};
use super::*;

const BY_TITLE: &[u8] = include_bytes!("../../../examples/policies/1password-read-by-title.json");

/// The read-by-title contract with `allowed_items` for its vault.
fn with_items(items: &str) -> Vec<u8> {
    let text = std::str::from_utf8(BY_TITLE).unwrap().replacen(
        "\"allowed_vaults\"",
        &format!(
            "\"allowed_items\": {{\"vault_agent_secrets_prod\": {items}}}, \"allowed_vaults\""
        ),
        1,
    );
    text.into_bytes()
}

#[tokio::test]
async fn item_lists_allow_listed_items_by_id_or_title_and_filter_lists() {
    for (items, job) in [
        (r#"["prod-db"]"#.to_owned(), "by-title"),
        (format!(r#"["{DEMO_DB_ITEM_ID}"]"#), "by-id"),
    ] {
        let stack = Stack::start(&with_items(&items), Upstream::Sim).await;
        let token = stack.mint("1password-read-by-title", job, None);
        let get = |path: String| {
            let token = token.clone();
            let stack = &stack;
            async move {
                let request = format!(
                    "GET http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\nProxy-Authorization: {}\r\n\r\n",
                    basic(job, &token)
                );
                raw::send(stack.addr(), request.as_bytes()).await
            }
        };

        // The listed item is read; its receipt names the title only when a title decided.
        let listed = get(item_path(DEMO_DB_ITEM_ID)).await;
        assert_eq!(listed.status, 200, "{job}: {}", listed.text());
        let receipt = stack.receipt(listed.header("x-clawproxy-receipt").unwrap());
        let title = receipt.op.as_ref().unwrap().item_title.as_deref();
        assert_eq!(title, (job == "by-title").then_some("prod-db"), "{job}");

        // Another item of an allowed category in the same vault is refused by the list.
        let other = get(item_path(DEMO_API_ITEM_ID)).await;
        assert_eq!(other.status, 403, "{job}: {}", other.text());
        assert!(other.text().contains("allowed_items"), "{}", other.text());
        assert!(!other.text().contains("sk_demo"), "the item leaked");

        // A list answers only the listed item, and counts what it withheld.
        let list = get(format!("/v1/vaults/{DEMO_VAULT_ID}/items")).await;
        assert_eq!(list.status, 200, "{job}: {}", list.text());
        let entries = list.json();
        let ids: Vec<&str> = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [DEMO_DB_ITEM_ID], "{job}");
        let receipt = stack.receipt(list.header("x-clawproxy-receipt").unwrap());
        assert!(receipt.op.unwrap().withheld.unwrap() >= 1);

        // Offline, the verifier re-evaluates every decision under the item list.
        let bundle = close_and_bundle(&stack, job).await;
        let v = verified_complete(&stack, &bundle);
        let reevaluated = v.check("semantics.reevaluate").unwrap();
        assert_eq!(reevaluated.status, claw_verifier::verify::Status::Pass);
    }
}

#[tokio::test]
async fn over_the_rate_limit_the_job_gets_429_with_retry_after_and_a_receipt() {
    let contract = seed_by_vault_id().replacen(
        "\"sandbox\"",
        r#""rate_limits": {"reads": {"per_second": 1, "burst": 2, "per_hour": 100}}, "sandbox""#,
        1,
    );
    let (stack, token, recorder) = recording_stack_on(&contract, Answer::Json(db_item()), "").await;
    let other = stack.mint(POLICY, "job-2", None);
    let read = |token: &str, job: &str| {
        format!(
            "GET http://connect.1password.com{} HTTP/1.1\r\nHost: connect.1password.com\r\nProxy-Authorization: {}\r\n\r\n",
            item_path(DEMO_DB_ITEM_ID),
            basic(job, token)
        )
    };
    for _ in 0..2 {
        let ok = raw::send(stack.addr(), read(&token, "job-1").as_bytes()).await;
        assert_eq!(ok.status, 200, "{}", ok.text());
    }
    let limited = raw::send(stack.addr(), read(&token, "job-1").as_bytes()).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(limited.json()["status"], 429);
    assert!(limited.text().contains("rate_limit"), "{}", limited.text());
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(recorder.count(), 2, "the limited read reached the upstream");
    let receipt = stack.receipt(limited.header("x-clawproxy-receipt").unwrap());
    let decision = receipt.decision.unwrap();
    assert_eq!(
        (decision.allow, decision.rule.as_str()),
        (false, "rate_limit")
    );

    // Another job has its own budget.
    let ok = raw::send(stack.addr(), read(&other, "job-2").as_bytes()).await;
    assert_eq!(ok.status, 200, "{}", ok.text());

    // The evidence still verifies: a rate-limit denial is one the verifier accepts as such.
    let bundle = close_and_bundle(&stack, "job-1").await;
    verified_complete(&stack, &bundle);
}

#[tokio::test]
async fn audit_only_lets_contract_denials_through_marked_and_keeps_safety_refusals() {
    let contract = std::str::from_utf8(claw_tests::SEED).unwrap().replacen(
        "\"sandbox\"",
        r#""enforcement": "audit", "sandbox""#,
        1,
    );
    let stack = Stack::start(contract.as_bytes(), Upstream::Sim).await;
    let token = stack.mint(POLICY, "job-1", None);
    let decision = |response: &RawResponse| {
        let id = response.header("x-clawproxy-receipt").expect("a receipt");
        stack.receipt(id).decision.unwrap()
    };
    let audit = Some(claw_verifier::receipt::Enforcement::Audit);

    // An allowed read is marked audit-only, nothing more.
    let read = connect(&stack, &token, "GET", &item_path(DEMO_DB_ITEM_ID)).await;
    assert_eq!(read.status, 200, "{}", read.text());
    let d = decision(&read);
    assert_eq!((d.allow, d.would_deny, d.enforcement), (true, false, audit));

    // A category the contract withholds is released, receipted as "would deny".
    let login = connect(&stack, &token, "GET", &item_path(DEMO_LOGIN_ITEM_ID)).await;
    assert_eq!(login.status, 200, "{}", login.text());
    assert_eq!(login.json()["category"], "LOGIN");
    let d = decision(&login);
    assert_eq!(
        (d.allow, d.would_deny, d.rule.as_str(), d.enforcement),
        (true, true, "allowed_categories", audit)
    );
    assert!(
        d.reason.starts_with("audit only, would deny:"),
        "{}",
        d.reason
    );

    // An operation outside the contract passes too (list_items; unfiltered).
    let list = connect(
        &stack,
        &token,
        "GET",
        &format!("/v1/vaults/{DEMO_VAULT_ID}/items"),
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(
        list.text().contains(DEMO_LOGIN_ITEM_ID),
        "the list was filtered"
    );
    let d = decision(&list);
    assert_eq!(
        (d.would_deny, d.rule.as_str()),
        (true, "allowed_operations")
    );

    // The proxy's own safety refusals are never shadowed.
    let override_ = format!(
        "GET http://connect.1password.com{} HTTP/1.1\r\nHost: connect.1password.com\r\nProxy-Authorization: {}\r\nX-HTTP-Method-Override: DELETE\r\n\r\n",
        item_path(DEMO_DB_ITEM_ID),
        basic("job-1", &token)
    );
    let refused = raw::send(stack.addr(), override_.as_bytes()).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let d = decision(&refused);
    assert_eq!(
        (d.allow, d.rule.as_str(), d.enforcement),
        (false, "method_override", audit)
    );
    // A host outside network_egress passes the contract, but a local address is still refused.
    let local = format!(
        "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nProxy-Authorization: {}\r\n\r\n",
        basic("job-1", &token)
    );
    let refused = raw::send(stack.addr(), local.as_bytes()).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(decision(&refused).rule, "address_class");

    // Metrics count the shadowed passes apart.
    let metrics = raw::send(
        stack.proxy.admin,
        b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        metrics.text().contains("decision=\"would_deny\""),
        "{}",
        metrics.text()
    );

    // Offline, the verifier accepts the audit-only passes and says loudly what they were.
    let bundle = close_and_bundle(&stack, "job-1").await;
    let v = verified_complete(&stack, &bundle);
    let reevaluated = v.check("semantics.reevaluate").unwrap();
    assert!(
        reevaluated.reason.starts_with("AUDIT-ONLY contract")
            && reevaluated
                .reason
                .contains("2 calls the contract would deny"),
        "{}",
        reevaluated.reason
    );
}

/// One series of the admin `/metrics` text.
async fn metric(stack: &Stack, name: &str) -> u64 {
    let metrics = raw::send(
        stack.proxy.admin,
        b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = metrics.text();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line[name.len() + 1..].parse().unwrap()
}

#[tokio::test]
async fn anomaly_signals_count_a_first_item_read_and_a_denial_burst() {
    use claw_verifier::verify::BURST_DENIALS;

    let (stack, token) = seed_stack().await;
    let first = "clawproxy_first_item_access_total";
    let bursts = "clawproxy_denial_bursts_total";
    assert_eq!(
        (metric(&stack, first).await, metric(&stack, bursts).await),
        (0, 0)
    );

    // The DATABASE item read twice: one first access.
    let read = connect(&stack, &token, "GET", &item_path(DEMO_DB_ITEM_ID)).await;
    assert_eq!(read.status, 200, "{}", read.text());
    let first_seq = stack
        .receipt(read.header("x-clawproxy-receipt").unwrap())
        .seq;
    let again = connect(&stack, &token, "GET", &item_path(DEMO_DB_ITEM_ID)).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(metric(&stack, first).await, 1);

    // Denials up to the verifier's threshold: one burst; one more inside the window: still one.
    for n in 1..=BURST_DENIALS + 1 {
        let delete = connect(&stack, &token, "DELETE", &item_path(DEMO_DB_ITEM_ID)).await;
        assert_eq!(delete.status, 403, "{}", delete.text());
        let expected = u64::from(n >= BURST_DENIALS);
        assert_eq!(metric(&stack, bursts).await, expected, "after {n} denials");
    }
    assert_eq!(metric(&stack, first).await, 1);

    // The verifier's report names the same first read and the burst.
    let bundle = close_and_bundle(&stack, "job-1").await;
    let report = claw_verifier::verify::report(&verified_complete(&stack, &bundle));
    let anomalies = report["anomalies"].as_array().unwrap();
    let of_kind = |kind: &str| -> Vec<&serde_json::Value> {
        anomalies.iter().filter(|a| a["kind"] == kind).collect()
    };
    let firsts = of_kind("first_item_access");
    assert_eq!(firsts.len(), 1, "{anomalies:#?}");
    assert_eq!(firsts[0]["receipts"], serde_json::json!([first_seq]));
    assert_eq!(of_kind("denial_burst").len(), 1, "{anomalies:#?}");
}

/// The seed contract with `host_rules` for Connect and for `api.1password.com` (both in its
/// `network_egress`), and `extra` top-level fields.
fn with_host_rules(extra: &str) -> String {
    std::str::from_utf8(claw_tests::SEED).unwrap().replacen(
        "\"sandbox\"",
        &format!(
            r#"{extra} "host_rules": {{
                "connect.1password.com": [{{"methods": ["GET"], "paths": ["/v1/vaults/*/items/*"]}}],
                "api.1password.com": [{{"methods": ["GET"], "paths": ["/api/v1/**"]}}]
            }}, "sandbox""#
        ),
        1,
    )
}

/// `curl` through the proxy as `job`, trusting the proxy CA: (status, body).
async fn curl_via(stack: &Stack, job: &str, token: &str, args: &[&str]) -> (String, String) {
    let proxy = format!("http://{job}:{token}@{}", stack.addr());
    let ca = stack.ca();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--max-time", "10"])
            .args(["--noproxy", "", "-x", &proxy])
            .args(["--cacert", ca.to_str().unwrap()])
            .args(&args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.to_owned(), body.to_owned())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn host_rules_judge_method_and_path_first_over_http_and_intercepted_https() {
    let stack = Stack::start(with_host_rules("").as_bytes(), Upstream::Sim).await;
    let token = stack.mint(POLICY, "job-1", None);
    let rule_of = |response: &RawResponse| {
        let id = response.header("x-clawproxy-receipt").expect("a receipt");
        stack.receipt(id).decision.unwrap().rule
    };

    // The rule allows the item read; Connect's own rules then decide it, on the normalised path.
    let read = connect(&stack, &token, "GET", &item_path(DEMO_DB_ITEM_ID)).await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(rule_of(&read), "allowed_operations");
    let messy = format!("/v1//vaults/{DEMO_VAULT_ID}/./items/{DEMO_DB_ITEM_ID}/");
    let read = connect(&stack, &token, "GET", &messy).await;
    assert_eq!(read.status, 200, "{}", read.text());

    // What no rule lists is refused by host_rules before any Connect rule is read, in
    // Connect's error shape, and nothing reaches Connect.
    for (method, path) in [
        ("GET", "/v1/vaults".to_owned()),
        ("DELETE", item_path(DEMO_DB_ITEM_ID)),
        ("GET", format!("/v1/vaults/{DEMO_VAULT_ID}/items")),
    ] {
        let refused = connect(&stack, &token, method, &path).await;
        assert_eq!(refused.status, 403, "{method} {path}: {}", refused.text());
        assert_eq!(refused.json()["status"], 403);
        assert!(refused.text().contains("host_rules"), "{}", refused.text());
        assert_eq!(rule_of(&refused), "host_rules");
    }

    // A host that is not Connect: refused without a connection being made anywhere. Plain
    // HTTP, a path that only matches once decoded two ways, and a method override.
    let api = |method: &str, path: &str, extra: &str| {
        let request = format!(
            "{method} http://api.1password.com{path} HTTP/1.1\r\nHost: api.1password.com\r\nProxy-Authorization: {}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n",
            basic("job-1", &token)
        );
        let addr = stack.addr();
        async move { raw::send(addr, request.as_bytes()).await }
    };
    for (method, path, extra, rule) in [
        ("POST", "/api/v1/items", "", "host_rules"),
        ("GET", "/api/v2/items", "", "host_rules"),
        ("GET", "/api/v1/..%2fv2", "", "ambiguous_path"),
        (
            "GET",
            "/api/v1/items",
            "X-HTTP-Method-Override: DELETE\r\n",
            "method_override",
        ),
    ] {
        let refused = api(method, path, extra).await;
        assert_eq!(refused.status, 403, "{method} {path}: {}", refused.text());
        assert_eq!(rule_of(&refused), rule, "{method} {path}");
        let receipt = stack.receipt(refused.header("x-clawproxy-receipt").unwrap());
        assert!(receipt.resp.is_none(), "{method} {path} was forwarded");
    }

    // Over HTTPS the host is intercepted, not tunnelled: curl, trusting the proxy CA, gets the
    // refusal from inside TLS; Connect's item still reads through its own interception.
    let (status, body) = curl_via(
        &stack,
        "job-1",
        &token,
        &["-X", "POST", "https://api.1password.com/api/v1/items"],
    )
    .await;
    assert_eq!(status, "403", "{body}");
    assert!(body.contains("host_rules"), "{body}");
    let url = format!(
        "https://connect.1password.com{}",
        item_path(DEMO_DB_ITEM_ID)
    );
    let (status, body) = curl_via(&stack, "job-1", &token, &[&url]).await;
    assert_eq!(status, "200", "{body}");
    // A port network_egress does not allow is refused at CONNECT, interception or not.
    let (status, _) = curl_via(
        &stack,
        "job-1",
        &token,
        &["https://api.1password.com:8443/api/v1/items"],
    )
    .await;
    assert_eq!(status, "000", "curl got past a refused CONNECT");
    let receipts = stack.receipts();
    let refused = receipts
        .iter()
        .find(|r| r.req.as_ref().is_some_and(|q| q.port == 8443))
        .expect("the refused CONNECT's receipt");
    let decision = refused.decision.as_ref().unwrap();
    assert_eq!(
        (decision.allow, decision.rule.as_str()),
        (false, "network_egress")
    );
    let tunnels = receipts
        .iter()
        .filter(|r| r.kind == claw_verifier::receipt::Kind::TunnelOpen)
        .count();
    assert_eq!(tunnels, 0, "a host with rules was tunnelled blind");

    // Offline, the verifier applies the same rules to every receipt.
    let bundle = close_and_bundle(&stack, "job-1").await;
    let v = verified_complete(&stack, &bundle);
    let reevaluated = v.check("semantics.reevaluate").unwrap();
    assert_eq!(
        reevaluated.status,
        claw_verifier::verify::Status::Pass,
        "{}",
        reevaluated.reason
    );
}

#[tokio::test]
async fn under_audit_only_a_host_rule_denial_passes_marked() {
    let contract = with_host_rules(r#""enforcement": "audit","#);
    let stack = Stack::start(contract.as_bytes(), Upstream::Sim).await;
    let token = stack.mint(POLICY, "job-1", None);
    let list = connect(&stack, &token, "GET", "/v1/vaults").await;
    assert_eq!(list.status, 200, "{}", list.text());
    let decision = stack
        .receipt(list.header("x-clawproxy-receipt").unwrap())
        .decision
        .unwrap();
    // The first rule that would refuse is the one recorded: host_rules, before Connect's.
    assert_eq!(
        (decision.allow, decision.would_deny, decision.rule.as_str()),
        (true, true, "host_rules")
    );
    let bundle = close_and_bundle(&stack, "job-1").await;
    let v = verified_complete(&stack, &bundle);
    let reevaluated = v.check("semantics.reevaluate").unwrap();
    assert!(
        reevaluated
            .reason
            .contains("1 calls the contract would deny"),
        "{}",
        reevaluated.reason
    );
}
