//! The proxy's per-request token check: verify each distinct token once, cache it until it
//! expires, and check the clock and revocations on every call, so a revocation or an expiry
//! takes effect on the very next request, tunnels included.
//!
//! ```text
//! let verifier = Verifier::from_data_dir(&dir)?;        // once, at start
//! let verified = verifier.check(&token, claw_tokens::now())?;   // every request
//! verified.check_job(basic_user)?;                       // Basic auth: user must be the job
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use claw_policy::contract::Contract;
use claw_policy::datadir::DataDir;
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;

use crate::claims::Claims;
use crate::revocation::RevocationStore;
use crate::token::{self, Contracts, Expect, MAX_LEEWAY_SECS, Revocations, TokenError};

/// Tokens cached before expired ones are swept (a few MB of claims at most).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

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

/// A token that passed every check, as of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Its claims.
    pub claims: Claims,
    /// Whether the signature and claim checks came from the cache (clock and revocation are
    /// always checked afresh).
    pub cached: bool,
}

impl Verified {
    /// The job id, which is also the only acceptable Basic-auth proxy user.
    pub fn job(&self) -> &str {
        &self.claims.job
    }

    /// The proxy's Basic-auth rule: the user must be the token's job.
    pub fn check_job(&self, user: &str) -> Result<(), TokenError> {
        if user == self.claims.job {
            Ok(())
        } else {
            Err(TokenError::JobMismatch {
                user: user.to_owned(),
            })
        }
    }
}

/// Claims of tokens that passed the signature and claim checks, by BLAKE3 of the token bytes
/// (so the cache never holds a live token), each kept until its `exp` + leeway.
///
/// The cache only remembers the checks that cannot change while a token lives (signature,
/// header, claims, contract); the caller checks the clock and revocations on every call.
#[derive(Debug)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Claims>>,
    capacity: usize,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_CAPACITY)
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens. When it is full, expired tokens are dropped, and
    /// if that is not enough, everything is (the next call of each token verifies again).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The cached claims of `token`, or runs `verify` and caches its answer if it succeeds
    /// (failures are never cached). The bool says whether the claims came from the cache.
    pub fn get_or_verify(
        &self,
        token: &str,
        now: u64,
        leeway: u64,
        verify: impl FnOnce() -> Result<Claims, TokenError>,
    ) -> Result<(Claims, bool), TokenError> {
        let key = *blake3::hash(token.as_bytes()).as_bytes();
        if let Some(claims) = self.locked().get(&key) {
            return Ok((claims.clone(), true));
        }
        // Verified outside the lock: a signature check must not stall every other request.
        let claims = verify()?;
        let mut entries = self.locked();
        if entries.len() >= self.capacity {
            entries.retain(|_, c| c.exp.saturating_add(leeway) > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, claims.clone());
        Ok((claims, false))
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.locked().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Claims>> {
        // A map insert cannot leave the map inconsistent, so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Verifies tokens for one proxy: its trust store, contracts, revocations and a
/// [`TokenCache`]. This is what the proxy calls on every request.
pub struct Verifier {
    trust: TrustStore,
    audience: String,
    leeway: u64,
    /// The data dir's contracts.
    pub contracts: RegistryContracts,
    revocations: RevocationStore,
    /// A fleet's revocations, checked after the data dir's.
    shared: Option<std::sync::Arc<dyn Revocations + Send + Sync>>,
    cache: TokenCache,
}

impl Verifier {
    /// A verifier for the proxy of `dir` (audience = its proxy key's name), leeway 30 s.
    pub fn from_data_dir(dir: &DataDir) -> Result<Self, SetupError> {
        let trust = TrustStore::load(&dir.trust()).map_err(|e| SetupError(e.to_string()))?;
        // Several keys under one name are one proxy whose key was rotated.
        let audience = match trust.proxy_ids().as_slice() {
            [one] => (*one).to_owned(),
            _ => {
                return Err(SetupError(
                    "trust.json must name exactly one proxy (the proxy keys' name) for this proxy"
                        .into(),
                ));
            }
        };
        Ok(Self {
            contracts: RegistryContracts::new(dir, trust.clone()),
            trust,
            audience,
            leeway: MAX_LEEWAY_SECS,
            revocations: RevocationStore::new(dir.state()),
            shared: None,
            cache: TokenCache::default(),
        })
    }

    /// Also refuses what `shared` revokes (a fleet's list, kept beside the data dir's).
    pub fn with_shared_revocations(
        mut self,
        shared: std::sync::Arc<dyn Revocations + Send + Sync>,
    ) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Tolerates `seconds` of clock skew instead of 30; more than 30 is refused.
    pub fn with_leeway(mut self, seconds: u64) -> Result<Self, SetupError> {
        if seconds > MAX_LEEWAY_SECS {
            return Err(SetupError(format!(
                "leeway {seconds} s is more than the {MAX_LEEWAY_SECS} s allowed"
            )));
        }
        self.leeway = seconds;
        Ok(self)
    }

    /// Expects tokens for `audience` instead of the data dir's proxy id.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// The proxy id tokens must name.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The clock skew tolerated, in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// Checks `token` at `now`: fully the first time, from the cache afterwards, and against
    /// the clock and the revocation list every time.
    pub fn check(&self, token: &str, now: u64) -> Result<Verified, TokenError> {
        let (claims, cached) = self.cache.get_or_verify(token, now, self.leeway, || {
            let expect = Expect {
                audience: &self.audience,
                leeway: self.leeway,
            };
            token::verify_signed(token, &self.trust, &self.contracts, &expect)
        })?;
        self.recheck(&claims, now)?;
        Ok(Verified { claims, cached })
    }

    /// [`Verifier::check`] as a pair: the claims, and whether the signature check was cached.
    pub fn verify(&self, token: &str, now: u64) -> Result<(Claims, bool), TokenError> {
        self.check(token, now).map(|v| (v.claims, v.cached))
    }

    /// The checks that can change while a token is in use: time and revocation.
    pub fn recheck(&self, claims: &Claims, now: u64) -> Result<(), TokenError> {
        token::check_time(claims, self.leeway, now)?;
        self.revocations.check(&claims.jti, &claims.job)?;
        match &self.shared {
            Some(shared) => shared.check(&claims.jti, &claims.job),
            None => Ok(()),
        }
    }
}

/// The verifier could not be set up from the data dir.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);
