//! Job-scoped tokens (CST) for clawproxy.
//!
//! A CST is the agent's only credential: a compact JWS signed with the issuer's Ed25519 key,
//! bound to one job, one proxy (`aud`), one contract hash (`wpc`) and one effective scope
//! (`scope`), and valid for at most the contract's `max_ttl_seconds`. The agent presents it
//! as its proxy password (`http://<job>:<token>@proxy:3128`).
//!
//! - [`mint`]: a token for the active version of a published, signed contract;
//! - [`token`]: encoding and strict verification, one [`TokenError`] variant per failure;
//! - [`verifier`]: the proxy's per-request check ([`Verifier::check`] → [`Verified`]) with a
//!   [`TokenCache`] and live revocation;
//! - [`revocation`], [`scope`], [`issued`], [`jwks`]: the data dir's revocations, effective
//!   scopes, the tokens it minted (for proof bundles), and the issuer keys as a JWKS;
//! - [`snapshot`]: the issuer's signed word on a job's revocations, carried in proof bundles.
//!
//! ```
//! use claw_policy::contract::Contract;
//! use claw_policy::datadir::{DataDir, init_keys};
//! use claw_policy::envelope::Envelope;
//! use claw_policy::keys::{Purpose, read_signing_key};
//! use claw_policy::registry::Registry;
//! use claw_policy::trust::TrustStore;
//! use claw_tokens::mint::{MintRequest, mint};
//! use claw_tokens::revocation::RevocationStore;
//! use claw_tokens::{TokenError, Verifier};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let dir = DataDir::new(tmp.path());
//! init_keys(&dir, false)?;
//! let seed = include_bytes!("../../examples/policies/1password-readonly-agent.json");
//! let contract = Contract::from_slice(seed)?;
//! let policy_key = read_signing_key(&dir.signing_key(Purpose::Policy))?;
//! let trust = TrustStore::load(&dir.trust())?;
//! Registry::new(dir.policies()).publish(&Envelope::sign(&contract, &policy_key), &trust)?;
//!
//! let now = claw_tokens::now();
//! let request = MintRequest {
//!     policy: "1password-readonly-agent".into(),
//!     job: "job-42".into(),
//!     agent: "builder".into(),
//!     ttl: Some(600),
//!     ..MintRequest::default()
//! };
//! let minted = mint(&dir, &request, now)?;
//!
//! // The proxy, per request:
//! let verifier = Verifier::from_data_dir(&dir)?;
//! let verified = verifier.check(&minted.token, now)?;
//! verified.check_job("job-42")?;
//!
//! // Revocation takes effect on the next call, cache or not.
//! RevocationStore::new(dir.state()).revoke_job("job-42", "done", now)?;
//! assert_eq!(
//!     verifier.check(&minted.token, now).unwrap_err(),
//!     TokenError::JobRevoked("job-42".into())
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # Decisions
//!
//! - Verification is entirely ours (size, three parts, our own header decode with exactly
//!   `alg`/`typ`/`kid`, trust-store `kid` for the issuer purpose only, `verify_strict`, typed
//!   claims with `deny_unknown_fields`). jsonwebtoken would enforce none of `typ`, `crit`,
//!   `iat` or `jti` and uses non-strict Ed25519 verification, so it would add a dependency
//!   tree without adding a check; it is not a dependency.
//! - Claims must also have the shapes mint produces (job pattern, jti of ≥ 128 bits,
//!   `blake3:<hex>` hashes), so a token from a misbehaving issuer is refused, not interpreted.
//! - `exp − iat` is checked against the pinned contract at verification too, not only at
//!   mint. A contract superseded after mint does not invalidate its tokens (DESIGN: "not
//!   superseded at mint time"); revoke the job to end them.
//! - `nbf` is set to `iat` at mint; `iat ≤ nbf < exp` is required.
//! - An unreadable revocation list fails closed: every token is refused
//!   ([`TokenError::RevocationsUnavailable`]).
//! - The cache keys tokens by their BLAKE3 hash, so no live token stays in its memory, and
//!   it never caches a failure (a bad token costs a signature check each time, which is what
//!   an attacker without the issuer key can cause anyway).
//! - `clawscope revoke --jti` does not know the token's `exp`, so the entry is kept for the
//!   longest lifetime any contract allows (86400 s) + 30 s; [`revocation::RevocationStore`]
//!   prunes at `exp` + 30 s when the caller knows `exp`.
//! - Mint refuses a job id whose revocation is still on record.

pub mod claims;
pub mod issued;
pub mod jwks;
pub mod mint;
pub mod revocation;
pub mod scope;
pub mod snapshot;
pub mod token;
pub mod verifier;

pub use claims::Claims;
pub use token::TokenError;
pub use verifier::{TokenCache, Verified, Verifier};

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
