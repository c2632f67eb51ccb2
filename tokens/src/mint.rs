//! Minting: a token for one job, pinned to the active version of a published, signed contract.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claw_policy::contract::{Operation, ToolScope};
use claw_policy::datadir::DataDir;
use claw_policy::keys::{self, KeyError, Purpose};
use claw_policy::registry::{Registry, RegistryError};
use claw_policy::trust::{TrustError, TrustStore};
use rand_core::RngCore;

use crate::claims::Claims;
use crate::issued::IssuedTokens;
use crate::revocation::RevocationStore;
use crate::scope::{self, ScopeError, ScopeStore};
use crate::token;

/// What to mint.
#[derive(Clone, Debug, Default)]
pub struct MintRequest {
    /// Contract name (its active version) or hash.
    pub policy: String,
    /// Job id; becomes the proxy user name.
    pub job: String,
    /// Agent name (`sub`).
    pub agent: String,
    /// Lifetime in seconds. Defaults to the contract's `max_ttl_seconds`.
    pub ttl: Option<u64>,
    /// Narrow the operations.
    pub ops: Option<Vec<Operation>>,
    /// Narrow the vaults.
    pub vaults: Option<Vec<String>>,
    /// The proxy id (`aud`). Defaults to the data dir's one proxy key.
    pub audience: Option<String>,
}

/// A minted token and what it is bound to.
#[derive(Clone, Debug)]
pub struct Minted {
    /// The compact token.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
    /// The contract's name.
    pub contract: String,
    /// The contract's version.
    pub version: u32,
    /// The effective scope.
    pub scope: ToolScope,
    /// The contract is audit-only: the proxy records its denials and refuses nothing by them.
    pub audit_only: bool,
}

/// Why a token was not minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The contract is not published, not signed by a trusted key, or unreadable.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The hash is an old version of its name.
    #[error("contract {hash} is superseded by {active} ({name}); mint against the active version")]
    Superseded {
        /// The requested hash.
        hash: String,
        /// The name's active hash.
        active: String,
        /// The name.
        name: String,
    },
    /// The lifetime is over the contract's maximum or zero.
    #[error("ttl {ttl} s is not within 1..={max} (the contract's max_ttl_seconds)")]
    Ttl {
        /// Asked.
        ttl: u64,
        /// Allowed.
        max: u64,
    },
    /// A job or agent name that cannot be used.
    #[error("{0}")]
    Name(String),
    /// `--ops`/`--vaults` tried to widen.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The issuer key could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// trust.json could not be read.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// No (or more than one) proxy key to name as the audience, or an unusable `--aud`.
    #[error("{0}")]
    Audience(String),
    /// The data dir's issuer key is not in its trust.json, so no proxy would accept the token.
    #[error("the issuer key {0} is not in trust.json as an issuer key; run clawproxy init")]
    Issuer(String),
    /// The job was revoked.
    #[error("job {0} was revoked; use a new job id")]
    JobRevoked(String),
    /// Writing state failed.
    #[error("writing {what}: {message}")]
    State {
        /// What.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// Mints a token at time `now` (seconds since the epoch).
pub fn mint(dir: &DataDir, request: &MintRequest, now: u64) -> Result<Minted, MintError> {
    check_job(&request.job)?;
    if request.agent.trim().is_empty()
        || request.agent.len() > 256
        || request.agent.chars().any(char::is_control)
    {
        return Err(MintError::Name(
            "--agent must be 1 to 256 printable characters".into(),
        ));
    }
    if let Some(aud) = &request.audience
        && (aud.is_empty() || aud.len() > 256 || aud.chars().any(char::is_control))
    {
        return Err(MintError::Audience(
            "--aud must be 1 to 256 printable characters".into(),
        ));
    }
    let trust = TrustStore::load(&dir.trust())?;
    let registry = Registry::new(dir.policies());
    let (contract, status) = registry.load(&request.policy, &trust)?;
    if !status.active {
        let active = registry
            .index()?
            .contracts
            .get(&status.name)
            .map(|e| e.active.clone())
            .unwrap_or_default();
        return Err(MintError::Superseded {
            hash: contract.hash().to_owned(),
            active,
            name: status.name,
        });
    }
    let max = contract.document().cst_constraints.max_ttl_seconds;
    let ttl = request.ttl.unwrap_or(max);
    if ttl == 0 || ttl > max {
        return Err(MintError::Ttl { ttl, max });
    }
    let job_revoked = RevocationStore::new(dir.state())
        .job_revoked(&request.job)
        .map_err(|e| MintError::State {
            what: "revocations",
            message: e.to_string(),
        })?;
    if job_revoked {
        return Err(MintError::JobRevoked(request.job.clone()));
    }
    let effective = scope::narrow(
        &contract.document().tool_scope,
        request.ops.as_deref(),
        request.vaults.as_deref(),
    )?;
    let scope_hash =
        ScopeStore::new(dir.state())
            .put(&effective)
            .map_err(|e| MintError::State {
                what: "scope",
                message: e.to_string(),
            })?;
    let key = keys::read_signing_key(&dir.signing_key(Purpose::Issuer))?;
    let kid = keys::kid(&key.verifying_key());
    let iss = trust
        .key(&kid, Purpose::Issuer)
        .map(|k| k.name.clone())
        .ok_or_else(|| MintError::Issuer(kid.clone()))?;
    let aud = match &request.audience {
        Some(aud) => aud.clone(),
        None => match trust.proxy_ids().as_slice() {
            [one] => (*one).to_owned(),
            [] => {
                return Err(MintError::Audience(
                    "trust.json has no proxy key; pass --aud".into(),
                ));
            }
            _ => {
                return Err(MintError::Audience(
                    "trust.json names several proxies; pass --aud".into(),
                ));
            }
        },
    };
    let mut jti = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut jti);
    let claims = Claims {
        iss,
        sub: request.agent.clone(),
        aud,
        iat: now,
        nbf: now,
        exp: now + ttl,
        jti: URL_SAFE_NO_PAD.encode(jti),
        job: request.job.clone(),
        wpc: contract.hash().to_owned(),
        scope: scope_hash,
    };
    let token = token::encode(&claims, &key);
    IssuedTokens::new(dir.state())
        .put(&token, &claims)
        .map_err(|e| MintError::State {
            what: "issued tokens",
            message: e.to_string(),
        })?;
    Ok(Minted {
        token,
        claims,
        contract: status.name,
        version: status.version,
        scope: effective,
        audit_only: contract.document().audit_only(),
    })
}

/// A job id is a proxy user name: `[A-Za-z0-9._-]{1,128}`, so no `:` can split Basic auth.
pub fn check_job(job: &str) -> Result<(), MintError> {
    if crate::claims::is_job(job) {
        Ok(())
    } else {
        Err(MintError::Name(format!(
            "job id {job:?} must be 1 to 128 of A-Z a-z 0-9 . _ -"
        )))
    }
}
