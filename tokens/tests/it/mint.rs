use super::*;
use claw_policy::contract::Operation;
use claw_tokens::mint::MintError;
use claw_tokens::scope::{ScopeError, ScopeStore};

fn request(f: &Fixture) -> MintRequest {
    let _ = f;
    MintRequest {
        policy: "1password-readonly-agent".into(),
        job: "job-1".into(),
        agent: "agent".into(),
        ..MintRequest::default()
    }
}

#[test]
fn superseded_contracts_are_refused_for_new_tokens() {
    let f = Fixture::new();
    let v2 = std::str::from_utf8(SEED).unwrap().replace("900", "300");
    publish(&f.dir, v2.as_bytes());
    let mut r = request(&f);
    r.policy = f.hash.clone();
    assert!(matches!(
        mint(&f.dir, &r, NOW),
        Err(MintError::Superseded { .. })
    ));
    r.policy = "1password-readonly-agent".into();
    assert_eq!(mint(&f.dir, &r, NOW).unwrap().claims.exp - NOW, 300);
}

#[test]
fn ttl_is_bounded_by_the_contract() {
    let f = Fixture::new();
    let mut r = request(&f);
    r.ttl = Some(901);
    assert!(matches!(
        mint(&f.dir, &r, NOW),
        Err(MintError::Ttl { ttl: 901, max: 900 })
    ));
    r.ttl = Some(0);
    assert!(matches!(mint(&f.dir, &r, NOW), Err(MintError::Ttl { .. })));
    r.ttl = Some(60);
    assert_eq!(mint(&f.dir, &r, NOW).unwrap().claims.exp, NOW + 60);
}

#[test]
fn scope_only_narrows_and_is_recoverable_by_hash() {
    let f = Fixture::new();
    let mut r = request(&f);
    r.ops = Some(vec![Operation::DeleteItem]);
    assert!(matches!(
        mint(&f.dir, &r, NOW),
        Err(MintError::Scope(ScopeError::WidenOperation(_)))
    ));
    r.ops = Some(vec![Operation::ListItems]);
    assert!(matches!(
        mint(&f.dir, &r, NOW),
        Err(MintError::Scope(ScopeError::WidenOperation(_)))
    ));
    r.ops = None;
    r.vaults = Some(vec!["another-vault".into()]);
    assert!(matches!(
        mint(&f.dir, &r, NOW),
        Err(MintError::Scope(ScopeError::WidenVault(_)))
    ));

    let plain = mint(&f.dir, &request(&f), NOW).unwrap();
    let stored = ScopeStore::new(f.dir.state())
        .get(&plain.claims.scope)
        .unwrap();
    assert_eq!(&stored, &plain.scope);
    assert_eq!(claw_tokens::scope::scope_hash(&stored), plain.claims.scope);
}

#[test]
fn bad_job_names_and_revoked_jobs_are_refused() {
    let f = Fixture::new();
    for job in ["", "a:b", "job with space", &"x".repeat(129)] {
        let mut r = request(&f);
        r.job = job.to_owned();
        assert!(
            matches!(mint(&f.dir, &r, NOW), Err(MintError::Name(_))),
            "{job:?}"
        );
    }
    claw_tokens::revocation::RevocationStore::new(f.dir.state())
        .revoke_job("job-1", "done", NOW)
        .unwrap();
    assert!(matches!(
        mint(&f.dir, &request(&f), NOW),
        Err(MintError::JobRevoked(_))
    ));
}

#[test]
fn widening_errors_name_the_offending_value() {
    let f = Fixture::new();
    let mut r = request(&f);
    r.ops = Some(vec![Operation::ReadItem, Operation::DeleteItem]);
    let err = mint(&f.dir, &r, NOW).unwrap_err();
    assert!(
        matches!(&err, MintError::Scope(ScopeError::WidenOperation(op)) if op == "delete_item")
    );
    assert!(err.to_string().contains("delete_item"), "{err}");
    r.ops = None;
    r.vaults = Some(vec![
        "vault_agent_secrets_prod".into(),
        "vault_finance".into(),
    ]);
    let err = mint(&f.dir, &r, NOW).unwrap_err();
    assert!(err.to_string().contains("vault_finance"), "{err}");
    // Narrowing to what the contract already allows keeps the contract's own scope hash.
    r.vaults = Some(vec!["vault_agent_secrets_prod".into()]);
    r.ops = Some(vec![Operation::ReadItem]);
    let narrowed = mint(&f.dir, &r, NOW).unwrap();
    let plain = mint(&f.dir, &request(&f), NOW).unwrap();
    assert_eq!(narrowed.claims.scope, plain.claims.scope);
    let contract = Contract::from_slice(SEED).unwrap();
    assert_eq!(
        plain.claims.scope,
        claw_tokens::scope::scope_hash(&contract.document().tool_scope)
    );
}

#[test]
fn a_narrowed_scope_has_its_own_hash_and_is_stored() {
    // A contract allowing two operations and two vaults, narrowed to one of each.
    let f = Fixture::new();
    let wide = std::str::from_utf8(SEED)
        .unwrap()
        .replace("\"1password-readonly-agent\"", "\"wide\"")
        .replace(
            "\"allowed_vaults\": [\"vault_agent_secrets_prod\"]",
            "\"allowed_vaults\": [\"vault_agent_secrets_prod\", \"vault_b\"]",
        )
        .replace(
            "\"allowed_operations\": [\"read_item\"]",
            "\"allowed_operations\": [\"read_item\", \"list_items\"]",
        );
    assert!(
        wide.contains("vault_b") && wide.contains("list_items"),
        "fixture edit applied"
    );
    publish(&f.dir, wide.as_bytes());
    let mut r = request(&f);
    r.policy = "wide".into();
    let full = mint(&f.dir, &r, NOW).unwrap();
    r.ops = Some(vec![Operation::ListItems]);
    r.vaults = Some(vec!["vault_b".into()]);
    let narrow = mint(&f.dir, &r, NOW).unwrap();
    assert_ne!(narrow.claims.scope, full.claims.scope);
    let stored = ScopeStore::new(f.dir.state())
        .get(&narrow.claims.scope)
        .unwrap();
    assert_eq!(stored.allowed_operations, vec![Operation::ListItems]);
    assert_eq!(stored.allowed_vaults, vec!["vault_b".to_owned()]);
    assert_eq!(stored.deny_operations, full.scope.deny_operations);
}

#[test]
fn a_token_minted_before_a_new_version_still_verifies() {
    let f = Fixture::new();
    let minted = mint(&f.dir, &request(&f), NOW).unwrap();
    let v2 = std::str::from_utf8(SEED).unwrap().replace("900", "300");
    publish(&f.dir, v2.as_bytes());
    let verifier = claw_tokens::Verifier::from_data_dir(&f.dir).unwrap();
    let verified = verifier.check(&minted.token, NOW + 1).unwrap();
    assert_eq!(verified.claims.wpc, f.hash);
}

#[test]
fn audience_comes_from_trust_json_or_the_override() {
    let f = Fixture::new();
    let minted = mint(&f.dir, &request(&f), NOW).unwrap();
    assert_eq!(minted.claims.aud, f.audience());
    assert_eq!(minted.claims.iss, claw_policy::datadir::ISSUER_NAME);
    let mut r = request(&f);
    r.audience = Some("proxy-b".into());
    assert_eq!(mint(&f.dir, &r, NOW).unwrap().claims.aud, "proxy-b");
    r.audience = Some(String::new());
    assert!(matches!(mint(&f.dir, &r, NOW), Err(MintError::Audience(_))));

    // Two proxy keys: ambiguous without --aud.
    let mut trust = f.trust();
    trust.add(Purpose::Proxy, "proxy-b", keys::generate().verifying_key());
    std::fs::write(f.dir.trust(), trust.to_json_pretty()).unwrap();
    assert!(matches!(
        mint(&f.dir, &request(&f), NOW),
        Err(MintError::Audience(m)) if m.contains("several")
    ));
}

#[test]
fn agents_and_jtis() {
    let f = Fixture::new();
    let mut r = request(&f);
    for agent in ["", "  ", "a\nb", &"x".repeat(257)] {
        r.agent = agent.to_owned();
        assert!(
            matches!(mint(&f.dir, &r, NOW), Err(MintError::Name(_))),
            "{agent:?}"
        );
    }
    let a = mint(&f.dir, &request(&f), NOW).unwrap();
    let b = mint(&f.dir, &request(&f), NOW).unwrap();
    assert_ne!(a.claims.jti, b.claims.jti);
    assert!(URL_SAFE_NO_PAD.decode(&a.claims.jti).unwrap().len() >= 16);
    assert_eq!(a.claims.nbf, NOW);
    assert_eq!(a.claims.iat, NOW);
}

#[test]
fn minted_claims_match_the_published_schema() {
    let schema: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../schemas/cst-claims.schema.json")).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let f = Fixture::new();
    let claims = serde_json::to_value(mint(&f.dir, &request(&f), NOW).unwrap().claims).unwrap();
    assert!(validator.is_valid(&claims), "{claims}");
    for (k, v) in [
        ("aud", serde_json::json!(["a", "b"])),
        ("jti", serde_json::json!("short")),
        ("job", serde_json::json!("a:b")),
        ("extra", serde_json::json!(1)),
    ] {
        let mut bad = claims.clone();
        bad[k] = v;
        assert!(!validator.is_valid(&bad), "{k}");
    }
    let mut missing = claims.clone();
    missing.as_object_mut().unwrap().remove("exp");
    assert!(!validator.is_valid(&missing));
}
