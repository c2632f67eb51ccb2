//! Job-scoped tokens (CST) for clawproxy.
//!
//! A CST is the agent's only credential: a compact JWS signed with the issuer's Ed25519 key,
//! bound to one job, one proxy (`aud`), one contract hash (`wpc`) and one effective scope
//! (`scope`), and valid for at most the contract's `max_ttl_seconds`.
//!
//! - [`mint`]: a token for the active version of a published, signed contract;
//! - [`token`]: encoding and strict verification, one [`TokenError`] variant per failure;
//! - [`verifier`]: the proxy's per-request check with a cache and live revocation;
//! - [`revocation`], [`scope`], [`jwks`]: the data dir's revocations, effective scopes, and
//!   the issuer keys as a JWKS.
//!
//! # Decisions
//!
//! - Verification is entirely ours (header pre-checks, trust-store `kid`, `verify_strict`,
//!   typed claims with `deny_unknown_fields`); jsonwebtoken would enforce none of `typ`,
//!   `crit`, `iat` or `jti` and uses non-strict Ed25519 verification, so it adds a dependency
//!   tree without adding a check.
//! - `exp − iat` is checked against the pinned contract at verification too, not only at
//!   mint, so a token from a misbehaving issuer cannot outlive its contract.
//! - An unreadable revocation list fails closed: every token is refused.

pub mod claims;
pub mod jwks;
pub mod mint;
pub mod revocation;
pub mod scope;
pub mod token;
pub mod verifier;

pub use claims::Claims;
pub use token::TokenError;
pub use verifier::Verifier;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
