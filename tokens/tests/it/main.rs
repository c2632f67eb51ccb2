//! Token tests: every forged or misbound token ends in its own typed error (`attacks`), mint
//! rules (`mint`), and the `clawscope` binary (`cli`).

mod attacks;
mod cli;
mod mint;

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claw_policy::contract::Contract;
use claw_policy::datadir::{DataDir, init_keys};
use claw_policy::envelope::Envelope;
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;
use claw_tokens::mint::{MintRequest, Minted, mint};
use ed25519_dalek::{Signer, SigningKey};

const SEED: &[u8] = include_bytes!("../../../examples/policies/1password-readonly-agent.json");
const NOW: u64 = 1_800_000_000;

/// A data dir with keys and the seed contract published.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: DataDir,
    hash: String,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("claw"));
        init_keys(&dir, false).unwrap();
        let hash = publish(&dir, SEED);
        Self {
            _tmp: tmp,
            dir,
            hash,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.root().to_owned()
    }

    fn trust(&self) -> TrustStore {
        TrustStore::load(&self.dir.trust()).unwrap()
    }

    fn key(&self, purpose: Purpose) -> SigningKey {
        keys::read_signing_key(&self.dir.signing_key(purpose)).unwrap()
    }

    fn mint(&self, job: &str) -> Minted {
        let request = MintRequest {
            policy: "1password-readonly-agent".into(),
            job: job.into(),
            agent: "agent-1".into(),
            ..MintRequest::default()
        };
        mint(&self.dir, &request, NOW).unwrap()
    }

    fn audience(&self) -> String {
        self.trust()
            .by_purpose(Purpose::Proxy)
            .next()
            .unwrap()
            .name
            .clone()
    }
}

fn publish(dir: &DataDir, bytes: &[u8]) -> String {
    let contract = Contract::from_slice(bytes).unwrap();
    let key = keys::read_signing_key(&dir.signing_key(Purpose::Policy)).unwrap();
    let trust = TrustStore::load(&dir.trust()).unwrap();
    Registry::new(dir.policies())
        .publish(&Envelope::sign(&contract, &key), &trust)
        .unwrap()
        .hash
}

/// A token with any header and claims, signed by `key` (or with `signature` verbatim).
fn forge(header: &serde_json::Value, claims: &serde_json::Value, key: &SigningKey) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}
