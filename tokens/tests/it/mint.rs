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
