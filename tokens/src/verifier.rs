//! The proxy's per-request token check: verify each distinct token once, cache it until it
//! expires, and check the clock and revocations on every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use claw_policy::contract::Contract;
use claw_policy::datadir::DataDir;
use claw_policy::keys::Purpose;
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;

use crate::claims::Claims;
use crate::revocation::RevocationStore;
use crate::token::{self, Contracts, Expect, MAX_LEEWAY_SECS, Revocations, TokenError};

/// Most cached tokens before expired ones are swept.
const CACHE_SWEEP_AT: usize = 10_000;

/// Contracts from the data dir's registry, verified against trusted policy keys and cached
/// forever (content-addressed: a hash never changes meaning).
pub struct RegistryContracts {
    registry: Registry,
    trust: TrustStore,
    cache: Mutex<HashMap<String, Arc<Contract>>>,
}

impl RegistryContracts {
    /// Contracts of a data dir.
    pub fn new(dir: &DataDir, trust: TrustStore) -> Self {
        Self {
            registry: Registry::new(dir.policies()),
            trust,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The verified contract with this hash.
    pub fn contract(&self, hash: &str) -> Option<Arc<Contract>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(hash) {
            return Some(c.clone());
        }
        let (envelope, _) = self.registry.resolve(hash).ok()?;
        if envelope.hash != hash {
            return None;
        }
        let contract = Arc::new(envelope.verify(&self.trust).ok()?);
        cache.insert(hash.to_owned(), contract.clone());
        Some(contract)
    }
}

impl Contracts for RegistryContracts {
    fn max_ttl(&self, hash: &str) -> Option<u64> {
        self.contract(hash)
            .map(|c| c.document().cst_constraints.max_ttl_seconds)
    }
}

/// Verifies tokens for one proxy.
pub struct Verifier {
    trust: TrustStore,
    audience: String,
    leeway: u64,
    /// The data dir's contracts.
    pub contracts: RegistryContracts,
    revocations: RevocationStore,
    cache: Mutex<HashMap<String, Claims>>,
}

impl Verifier {
    /// A verifier for the proxy of `dir` (audience = its proxy key's name).
    pub fn from_data_dir(dir: &DataDir) -> Result<Self, SetupError> {
        let trust = TrustStore::load(&dir.trust()).map_err(|e| SetupError(e.to_string()))?;
        let audience = match trust
            .by_purpose(Purpose::Proxy)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [one] => one.name.clone(),
            _ => {
                return Err(SetupError(
                    "trust.json must hold exactly one proxy key for this proxy".into(),
                ));
            }
        };
        Ok(Self {
            contracts: RegistryContracts::new(dir, trust.clone()),
            trust,
            audience,
            leeway: MAX_LEEWAY_SECS,
            revocations: RevocationStore::new(dir.state()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The proxy id tokens must name.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies `token` at `now`; the bool says whether the signature check was cached.
    pub fn verify(&self, token: &str, now: u64) -> Result<(Claims, bool), TokenError> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned();
        let (claims, hit) = match cached {
            Some(claims) => (claims, true),
            None => {
                let expect = Expect {
                    audience: &self.audience,
                    leeway: self.leeway,
                };
                let claims = token::verify_signed(token, &self.trust, &self.contracts, &expect)?;
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_SWEEP_AT {
                    cache.retain(|_, c| c.exp + self.leeway > now);
                }
                cache.insert(token.to_owned(), claims.clone());
                (claims, false)
            }
        };
        self.recheck(&claims, now)?;
        Ok((claims, hit))
    }

    /// The checks that can change while a token is in use: time and revocation.
    pub fn recheck(&self, claims: &Claims, now: u64) -> Result<(), TokenError> {
        token::check_time(claims, self.leeway, now)?;
        self.revocations.check(&claims.jti, &claims.job)
    }
}

/// The verifier could not be set up from the data dir.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);
