//! The compact CST: encoding, our own strict decoding, and verification.
//!
//! Verification never trusts the token to say how it should be checked: the header must be
//! exactly `{"alg":"EdDSA","typ":"cst+jwt","kid":…}` (anything else, `crit`, `jku`, `x5u`, `x5c`
//! or `jwk` included, is refused before any key is touched and nothing is ever fetched), the
//! `kid` is looked up in the local trust store for the issuer purpose only, the signature is
//! checked with Ed25519 `verify_strict`, and then every claim is checked. Each failure is its
//! own [`TokenError`] variant.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claw_policy::canonical;
use claw_policy::keys::{self, Purpose};
use claw_policy::trust::TrustStore;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde_json::Value;

use crate::claims::{Claims, REQUIRED};

/// Tokens larger than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The only `typ` a CST may carry.
pub const TYP: &str = "cst+jwt";

/// The most clock skew tolerated, and the default.
pub const MAX_LEEWAY_SECS: u64 = 30;

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("token is {0} bytes, more than the 4096 allowed")]
    TooLarge(usize),
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is not `EdDSA` (e.g. `none`, `HS256`).
    #[error("algorithm {0:?} is not allowed; only EdDSA")]
    Algorithm(String),
    /// `typ` missing or not `cst+jwt`.
    #[error("token type must be cst+jwt, found {0:?}")]
    Type(String),
    /// A header member other than alg, typ, kid (`crit`, `jku`, `x5u`, `x5c`, `jwk`, …).
    #[error("header member {0:?} is not allowed")]
    ForbiddenHeader(String),
    /// No trusted issuer key with this id.
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    /// The key is trusted, but not for signing tokens.
    #[error("key {0:?} is trusted for another purpose, not for tokens")]
    WrongKeyPurpose(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    Signature,
    /// A required claim is absent.
    #[error("claim {0:?} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unknown claim is present.
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
    /// `iss` is not the trusted issuer key's name.
    #[error("issuer {0:?} is not the issuer of this key")]
    Issuer(String),
    /// `aud` is not this proxy.
    #[error("audience {0:?} is not this proxy")]
    Audience(String),
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `iat ≤ nbf < exp` does not hold.
    #[error("token lifetime is inconsistent (iat ≤ nbf < exp)")]
    Lifetime,
    /// `exp − iat` exceeds the contract's `max_ttl_seconds`.
    #[error("token lifetime {ttl} s exceeds the contract's max_ttl_seconds {max}")]
    TtlTooLong {
        /// `exp − iat`.
        ttl: u64,
        /// The contract's maximum.
        max: u64,
    },
    /// The pinned contract is not published and signed here.
    #[error("pinned contract {0} is unknown here")]
    UnknownContract(String),
    /// The token's `jti` was revoked.
    #[error("token {0} was revoked")]
    Revoked(String),
    /// The token's job was revoked.
    #[error("job {0} was revoked")]
    JobRevoked(String),
    /// The proxy user name is not the token's job.
    #[error("proxy user {user:?} is not the token's job")]
    JobMismatch {
        /// The Basic-auth user.
        user: String,
    },
    /// The revocation list could not be read, so no token is accepted (fail closed).
    #[error("the revocation list cannot be read; refusing every token until it can")]
    RevocationsUnavailable,
}

/// What verification needs to know about contracts (the proxy caches them).
pub trait Contracts {
    /// The `max_ttl_seconds` of a published, signed contract, or `None` if unknown here.
    fn max_ttl(&self, hash: &str) -> Option<u64>;
}

/// What verification needs to know about revocations.
pub trait Revocations {
    /// The error if `jti` or `job` is revoked.
    fn check(&self, jti: &str, job: &str) -> Result<(), TokenError>;
}

/// Verification settings.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    /// The proxy id this token must name in `aud`.
    pub audience: &'a str,
    /// Clock skew tolerated; values above [`MAX_LEEWAY_SECS`] are treated as 30. Defaults to 30.
    pub leeway: u64,
}

impl<'a> Expect<'a> {
    /// Expect tokens for `audience`, with the default (and largest) leeway of 30 s.
    pub fn new(audience: &'a str) -> Self {
        Self {
            audience,
            leeway: MAX_LEEWAY_SECS,
        }
    }
}

/// Signs `claims` with the issuer key.
pub fn encode(claims: &Claims, key: &SigningKey) -> String {
    let kid = keys::kid(&key.verifying_key());
    // Member order fixed; the verifier checks the set, not the order.
    let header = serde_json::json!({ "alg": "EdDSA", "typ": TYP, "kid": kid });
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    // Serialising a struct of strings and integers cannot fail.
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_string(claims).expect("claims serialise"));
    let signing_input = format!("{header}.{payload}");
    let signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// A token split and decoded, not verified.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// The header's key id.
    pub kid: String,
    /// The claims as JSON (not yet checked).
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Decoded {
    /// Whether the signature verifies (Ed25519 `verify_strict`) under `key` over `header.payload`.
    pub fn signature_verifies(&self, key: &ed25519_dalek::VerifyingKey) -> bool {
        Signature::from_slice(&self.signature).is_ok_and(|sig| {
            key.verify_strict(self.signing_input.as_bytes(), &sig)
                .is_ok()
        })
    }
}

/// Splits a token into its three parts after the size check.
fn split(token: &str) -> Result<[&str; 3], TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge(token.len()));
    }
    let parts: Vec<&str> = token.split('.').collect();
    <[&str; 3]>::try_from(parts).map_err(|parts| {
        TokenError::Malformed(format!("{} parts, a compact JWS has 3", parts.len()))
    })
}

/// One base64url (unpadded, canonical) part holding strict JSON (no duplicate members).
fn json_part(part: &str, what: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
    canonical::parse_strict(&bytes).map_err(|e| TokenError::Malformed(format!("{what}: {e}")))
}

/// Header and claims as JSON, with only the size, shape and JSON checks applied.
///
/// For display (`clawscope inspect`) only: nothing here says the token is genuine, its
/// header acceptable or its claims true. Use [`verify`] to decide anything.
pub fn dangerous_decode_unverified(token: &str) -> Result<(Value, Value), TokenError> {
    let [header, claims, _] = split(token)?;
    Ok((json_part(header, "header")?, json_part(claims, "payload")?))
}

/// Splits and decodes a token, applying every check that needs no key.
pub fn decode(token: &str) -> Result<Decoded, TokenError> {
    let parts = split(token)?;
    let header = json_part(parts[0], "header")?;
    let header = header
        .as_object()
        .ok_or_else(|| TokenError::Malformed("header is not an object".into()))?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "EdDSA" => {}
        Some(Value::String(alg)) => return Err(TokenError::Algorithm(alg.clone())),
        other => return Err(TokenError::Algorithm(format!("{other:?}"))),
    }
    match header.get("typ") {
        Some(Value::String(typ)) if typ == TYP => {}
        Some(Value::String(typ)) => return Err(TokenError::Type(typ.clone())),
        Some(other) => return Err(TokenError::Type(other.to_string())),
        None => return Err(TokenError::Type(String::new())),
    }
    if let Some(name) = header
        .keys()
        .find(|k| !matches!(k.as_str(), "alg" | "typ" | "kid"))
    {
        return Err(TokenError::ForbiddenHeader(name.clone()));
    }
    // An empty, missing or non-string kid names no key; it is never used as a path or URL.
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => kid.clone(),
        Some(other) => return Err(TokenError::UnknownKey(other.to_string())),
        None => return Err(TokenError::UnknownKey(String::new())),
    };
    if kid.is_empty() {
        return Err(TokenError::UnknownKey(kid));
    }
    let claims = json_part(parts[1], "payload")?;
    // A signature that does not decode is a signature that does not verify.
    let signature = URL_SAFE_NO_PAD
        .decode(parts[2])
        .map_err(|_| TokenError::Signature)?;
    Ok(Decoded {
        kid,
        claims,
        signing_input: format!("{}.{}", parts[0], parts[1]),
        signature,
    })
}

/// Verifies a token completely at time `now` (seconds since the epoch).
pub fn verify(
    token: &str,
    trust: &TrustStore,
    contracts: &dyn Contracts,
    revocations: &dyn Revocations,
    expect: &Expect<'_>,
    now: u64,
) -> Result<Claims, TokenError> {
    let claims = verify_signed(token, trust, contracts, expect)?;
    check_time(&claims, expect.leeway, now)?;
    revocations.check(&claims.jti, &claims.job)?;
    Ok(claims)
}

/// Every check that does not depend on the clock or on revocations (what a cache may keep).
pub fn verify_signed(
    token: &str,
    trust: &TrustStore,
    contracts: &dyn Contracts,
    expect: &Expect<'_>,
) -> Result<Claims, TokenError> {
    let decoded = decode(token)?;
    let issuer = match trust.key(&decoded.kid, Purpose::Issuer) {
        Some(key) => key,
        None if trust.keys().iter().any(|k| k.kid == decoded.kid) => {
            return Err(TokenError::WrongKeyPurpose(decoded.kid));
        }
        None => return Err(TokenError::UnknownKey(decoded.kid)),
    };
    if !decoded.signature_verifies(&issuer.key) {
        return Err(TokenError::Signature);
    }
    let claims = parse_claims(decoded.claims)?;
    if claims.iss != issuer.name {
        return Err(TokenError::Issuer(claims.iss));
    }
    if claims.aud != expect.audience {
        return Err(TokenError::Audience(claims.aud));
    }
    if !(claims.iat <= claims.nbf && claims.nbf < claims.exp) {
        return Err(TokenError::Lifetime);
    }
    let max = contracts
        .max_ttl(&claims.wpc)
        .ok_or_else(|| TokenError::UnknownContract(claims.wpc.clone()))?;
    let ttl = claims.exp - claims.iat;
    if ttl > max {
        return Err(TokenError::TtlTooLong { ttl, max });
    }
    Ok(claims)
}

/// `nbf ≤ now + leeway` and `now < exp + leeway`.
pub fn check_time(claims: &Claims, leeway: u64, now: u64) -> Result<(), TokenError> {
    let leeway = leeway.min(MAX_LEEWAY_SECS);
    if claims.nbf > now + leeway {
        return Err(TokenError::NotYetValid);
    }
    if now >= claims.exp + leeway {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// Parses decoded claims: every required claim present and typed, no other, each in the form
/// mint produces.
pub fn parse_claims(value: Value) -> Result<Claims, TokenError> {
    let object = value
        .as_object()
        .ok_or_else(|| TokenError::InvalidClaims("payload is not an object".into()))?;
    for name in REQUIRED {
        if !object.contains_key(name) {
            return Err(TokenError::MissingClaim(name));
        }
    }
    if !object.get("aud").is_some_and(Value::is_string) {
        return Err(TokenError::InvalidClaims("aud must be one string".into()));
    }
    let claims: Claims =
        serde_json::from_value(value).map_err(|e| TokenError::InvalidClaims(e.to_string()))?;
    check_shapes(&claims)?;
    Ok(claims)
}

/// The claims' formats: what mint produces, so anything else was not minted by us.
fn check_shapes(claims: &Claims) -> Result<(), TokenError> {
    let bad = |m: &str| Err(TokenError::InvalidClaims(m.to_owned()));
    if claims.iss.is_empty() || claims.sub.is_empty() || claims.aud.is_empty() {
        return bad("iss, sub and aud must not be empty");
    }
    if !crate::claims::is_job(&claims.job) {
        return bad("job must be 1 to 128 of A-Z a-z 0-9 . _ -");
    }
    if !crate::claims::is_jti(&claims.jti) {
        return bad("jti must be at least 128 bits, base64url");
    }
    if !crate::claims::is_blake3(&claims.wpc) || !crate::claims::is_blake3(&claims.scope) {
        return bad("wpc and scope must be blake3:<64 hex>");
    }
    Ok(())
}
