//! Token verification cost: a cold verify (signature, claims, contract lookup) against a
//! cached one (clock and revocation only), as the proxy does per request.

use claw_policy::contract::Contract;
use claw_policy::datadir::{DataDir, init_keys};
use claw_policy::envelope::Envelope;
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;
use claw_tokens::mint::{MintRequest, mint};
use claw_tokens::revocation::RevocationStore;
use claw_tokens::token::{self, Expect};
use claw_tokens::verifier::RegistryContracts;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("claw"));
    init_keys(&dir, false).unwrap();
    let seed = include_bytes!("../../examples/policies/1password-readonly-agent.json");
    let contract = Contract::from_slice(seed).unwrap();
    let key = keys::read_signing_key(&dir.signing_key(Purpose::Policy)).unwrap();
    let trust = TrustStore::load(&dir.trust()).unwrap();
    Registry::new(dir.policies())
        .publish(&Envelope::sign(&contract, &key), &trust)
        .unwrap();
    let now = claw_tokens::now();
    let request = MintRequest {
        policy: "1password-readonly-agent".into(),
        job: "bench".into(),
        agent: "bench".into(),
        ..MintRequest::default()
    };
    let minted = mint(&dir, &request, now).unwrap();
    let contracts = RegistryContracts::new(&dir, trust.clone());
    let audience = minted.claims.aud.clone();
    let expect = Expect {
        audience: &audience,
        leeway: 30,
    };
    let revocations = RevocationStore::new(dir.state());
    // Some revocations on file, so the per-call lookup is not against an empty list.
    for i in 0..100 {
        revocations
            .revoke_job(&format!("old-{i}"), "bench", now)
            .unwrap();
    }
    c.bench_function("token verify cold (all checks)", |b| {
        b.iter(|| {
            token::verify(
                &minted.token,
                &trust,
                &contracts,
                &revocations,
                &expect,
                now,
            )
            .unwrap()
        })
    });
    let verifier = claw_tokens::Verifier::from_data_dir(&dir).unwrap();
    verifier.check(&minted.token, now).unwrap();
    c.bench_function("token verify cached (clock + revocation)", |b| {
        b.iter(|| {
            let verified = verifier.check(&minted.token, now).unwrap();
            assert!(verified.cached);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
