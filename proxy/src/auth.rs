//! Proxy authentication: the job token (CST) as `Proxy-Authorization`.
//!
//! `Basic base64(job:token)` (so `HTTP_PROXY=http://job:token@host:port` works in every
//! client) or `Bearer token`. The token is verified once and cached until it expires, while
//! expiry and revocation are checked again on every request, tunnels included. The Basic user
//! must be the token's job.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use claw_fleet::{RevocationFeed, Revoked};
use claw_policy::contract::{Contract, ToolScope};
use claw_policy::datadir::DataDir;
use claw_tokens::scope::ScopeStore;
use http::HeaderMap;
use http::header::PROXY_AUTHORIZATION;
use zeroize::Zeroizing;

/// Credentials as presented on one request.
pub struct Presented {
    token: Zeroizing<String>,
    user: Option<String>,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("token", &"[redacted]")
            .field("user", &self.user)
            .finish()
    }
}

/// Extracts the presented credentials, or says why there are none usable.
pub fn credentials(headers: &HeaderMap) -> Result<Presented, String> {
    let mut values = headers.get_all(PROXY_AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or("no Proxy-Authorization header; use http://<job>:<token>@proxy")?;
    if values.next().is_some() {
        return Err("more than one Proxy-Authorization header".into());
    }
    let value = value
        .to_str()
        .map_err(|_| "Proxy-Authorization is not ASCII")?;
    let (scheme, rest) = value
        .split_once(' ')
        .ok_or("Proxy-Authorization must be Basic or Bearer")?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Presented {
            token: Zeroizing::new(rest.to_owned()),
            user: None,
        });
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("Proxy-Authorization must be Basic or Bearer".into());
    }
    let decoded = Zeroizing::new(
        STANDARD
            .decode(rest)
            .map_err(|_| "Basic credentials are not base64")?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| "Basic credentials are not UTF-8")?;
    let (user, token) = text
        .split_once(':')
        .ok_or("Basic credentials must be <job>:<token>")?;
    Ok(Presented {
        token: Zeroizing::new(token.to_owned()),
        user: Some(user.to_owned()),
    })
}

/// Who is calling: a verified token, its contract and its effective scope.
pub struct Identity {
    token: Zeroizing<String>,
    /// The token's claims.
    pub claims: claw_tokens::Claims,
    /// The pinned contract.
    pub contract: Arc<Contract>,
    /// The contract's tool scope as narrowed at mint.
    pub scope: Arc<ToolScope>,
}

impl Identity {
    /// Whether `presented` carries this identity's token (constant time).
    pub fn presented_by(&self, presented: &Presented) -> bool {
        constant_time_eq(self.token.as_bytes(), presented.token.as_bytes())
    }

    /// The job id.
    pub fn job(&self) -> &str {
        &self.claims.job
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request's credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What to tell the agent.
    pub reason: String,
    /// The revocation list could not be confirmed: the token may be good, but nothing passes
    /// until it can (503, not 407: the agent's credentials are not the problem).
    pub unavailable: bool,
}

impl Refused {
    fn credentials(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            unavailable: false,
        }
    }
}

impl From<claw_tokens::TokenError> for Refused {
    fn from(error: claw_tokens::TokenError) -> Self {
        Self {
            unavailable: matches!(error, claw_tokens::TokenError::RevocationsUnavailable),
            reason: error.to_string(),
        }
    }
}

/// A fleet's revocations as the token verifier asks for them.
struct FleetRevocations(Arc<RevocationFeed>);

impl claw_tokens::token::Revocations for FleetRevocations {
    fn check(&self, jti: &str, job: &str) -> Result<(), claw_tokens::TokenError> {
        match self.0.check(jti, job, claw_tokens::now()) {
            Ok(None) => Ok(()),
            Ok(Some(Revoked::Jti)) => Err(claw_tokens::TokenError::Revoked(jti.to_owned())),
            Ok(Some(Revoked::Job)) => Err(claw_tokens::TokenError::JobRevoked(job.to_owned())),
            // Fail closed: a list not confirmed lately may be missing a revocation.
            Err(_) => Err(claw_tokens::TokenError::RevocationsUnavailable),
        }
    }
}

/// Verifies tokens against the data dir's trust store, registry and revocations.
pub struct Auth {
    dir: DataDir,
    audience: String,
    /// Replaced whole by [`Auth::reload`] (a key rotation changes trust.json).
    verifier: RwLock<Arc<claw_tokens::Verifier>>,
    scopes: ScopeStore,
    fleet: Option<Arc<RevocationFeed>>,
}

impl Auth {
    /// Loads everything verification needs from the data dir.
    pub fn new(dir: &DataDir) -> anyhow::Result<Self> {
        let verifier = claw_tokens::Verifier::from_data_dir(dir)?;
        Ok(Self {
            dir: dir.clone(),
            audience: verifier.audience().to_owned(),
            verifier: RwLock::new(Arc::new(verifier)),
            scopes: ScopeStore::new(dir.state()),
            fleet: None,
        })
    }

    /// Also refuses what the fleet's revocation list names, and every token while that list
    /// cannot be confirmed.
    pub fn with_fleet(mut self, feed: Arc<RevocationFeed>) -> anyhow::Result<Self> {
        self.fleet = Some(feed);
        let verifier = self.build()?;
        self.verifier = RwLock::new(Arc::new(verifier));
        Ok(self)
    }

    /// Re-reads trust.json and the registry's trust (after a key rotation): tokens and
    /// contracts signed by the new keys pass from now on, and those signed by the old keys
    /// still do as long as trust.json keeps them. On error the current state stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let verifier = self.build()?;
        if verifier.audience() != self.audience {
            anyhow::bail!(
                "trust.json now names proxy {:?}, not {:?}; restart the proxy to change its id",
                verifier.audience(),
                self.audience
            );
        }
        *self.verifier.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(verifier);
        Ok(())
    }

    /// A verifier of the data dir as it is now, with the fleet's revocations if any.
    fn build(&self) -> anyhow::Result<claw_tokens::Verifier> {
        let verifier = claw_tokens::Verifier::from_data_dir(&self.dir)?;
        Ok(match &self.fleet {
            Some(feed) => {
                verifier.with_shared_revocations(Arc::new(FleetRevocations(feed.clone())))
            }
            None => verifier,
        })
    }

    fn verifier(&self) -> Arc<claw_tokens::Verifier> {
        self.verifier
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The data dir verification reads.
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// Why no token can pass now, if the fleet's revocation list is not confirmed lately.
    pub fn fleet_stale(&self) -> Option<claw_fleet::Stale> {
        self.fleet.as_ref().and_then(|feed| feed.current().err())
    }

    /// The proxy id tokens must name as their audience (fixed for the proxy's life).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies presented credentials into an identity, or says why not. The bool says
    /// whether the signature check came from the cache.
    pub fn authenticate(&self, presented: &Presented) -> Result<(Arc<Identity>, bool), Refused> {
        let verifier = self.verifier();
        let (claims, cached) = verifier.verify(&presented.token, claw_tokens::now())?;
        if let Some(user) = &presented.user
            && *user != claims.job
        {
            return Err(claw_tokens::TokenError::JobMismatch { user: user.clone() }.into());
        }
        let contract = verifier.contracts.contract(&claims.wpc).ok_or_else(|| {
            Refused::credentials(format!("pinned contract {} is unknown here", claims.wpc))
        })?;
        let scope = self
            .scopes
            .get(&claims.scope)
            .map_err(|e| Refused::credentials(e.to_string()))?;
        Ok((
            Arc::new(Identity {
                token: presented.token.clone(),
                claims,
                contract,
                scope: Arc::new(scope),
            }),
            cached,
        ))
    }

    /// Checks an identity is still good (not expired, not revoked).
    pub fn recheck(&self, identity: &Identity) -> Result<(), Refused> {
        self.recheck_claims(&identity.claims)
    }

    /// Checks claims are still good (not expired, not revoked).
    pub fn recheck_claims(&self, claims: &claw_tokens::Claims) -> Result<(), Refused> {
        Ok(self.verifier().recheck(claims, claw_tokens::now())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(PROXY_AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn reload_reads_trust_anew_but_keeps_the_proxy_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("claw"));
        crate::init::init(&dir, false).unwrap();
        let auth = Auth::new(&dir).unwrap();
        let id = auth.audience().to_owned();
        auth.reload().unwrap();
        let text = std::fs::read_to_string(dir.trust()).unwrap();
        std::fs::write(dir.trust(), text.replace(&id, "p00000000")).unwrap();
        let err = auth.reload().unwrap_err();
        assert!(err.to_string().contains("restart the proxy"), "{err}");
        assert_eq!(auth.audience(), id);
        std::fs::write(dir.trust(), "{").unwrap();
        assert!(auth.reload().is_err());
    }

    #[test]
    fn basic_and_bearer_are_understood() {
        let basic = STANDARD.encode("job-1:tok.en.sig");
        let p = credentials(&headers(&format!("Basic {basic}"))).unwrap();
        assert_eq!(p.user.as_deref(), Some("job-1"));
        assert_eq!(p.token.as_str(), "tok.en.sig");
        let p = credentials(&headers("Bearer tok.en.sig")).unwrap();
        assert_eq!(p.user, None);
    }

    #[test]
    fn bad_credentials_say_why() {
        assert!(
            credentials(&HeaderMap::new())
                .unwrap_err()
                .contains("no Proxy-Authorization")
        );
        assert!(credentials(&headers("Digest x")).is_err());
        assert!(credentials(&headers("Basic !!!")).is_err());
        let no_colon = STANDARD.encode("just-a-token");
        assert!(credentials(&headers(&format!("Basic {no_colon}"))).is_err());
        let mut two = headers("Bearer a");
        two.append(PROXY_AUTHORIZATION, "Bearer b".parse().unwrap());
        assert!(credentials(&two).unwrap_err().contains("more than one"));
    }
}
