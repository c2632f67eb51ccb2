use super::*;
use claw_tokens::TokenError;
use claw_tokens::revocation::RevocationStore;
use claw_tokens::token::{self, Expect};
use claw_tokens::verifier::RegistryContracts;
use serde_json::{Value, json};

fn verify_at(f: &Fixture, token: &str, now: u64) -> Result<claw_tokens::Claims, TokenError> {
    let trust = f.trust();
    let audience = f.audience();
    let contracts = RegistryContracts::new(&f.dir, trust.clone());
    let revocations = RevocationStore::new(f.dir.state());
    let expect = Expect {
        audience: &audience,
        leeway: 30,
    };
    token::verify(token, &trust, &contracts, &revocations, &expect, now)
}

fn verify(f: &Fixture, token: &str) -> Result<claw_tokens::Claims, TokenError> {
    verify_at(f, token, NOW + 1)
}

/// A valid header and claims pair to mutate.
fn parts(f: &Fixture) -> (Value, Value) {
    let minted = f.mint("job-1");
    let header = json!({ "alg": "EdDSA", "typ": "cst+jwt", "kid": keys::kid(&f.key(Purpose::Issuer).verifying_key()) });
    (header, serde_json::to_value(&minted.claims).unwrap())
}

#[test]
fn a_minted_token_verifies() {
    let f = Fixture::new();
    let minted = f.mint("job-1");
    let claims = verify(&f, &minted.token).unwrap();
    assert_eq!(claims.job, "job-1");
    assert_eq!(claims.wpc, f.hash);
    assert_eq!(claims.exp - claims.iat, 900);
    // And a forged copy of the same claims with our own encoder verifies too.
    let (h, c) = parts(&f);
    assert!(verify(&f, &forge(&h, &c, &f.key(Purpose::Issuer))).is_ok());
}

#[test]
fn header_attacks_are_refused_before_any_key_is_used() {
    let f = Fixture::new();
    let (h, c) = parts(&f);
    let issuer = f.key(Purpose::Issuer);
    let with = |k: &str, v: Value| {
        let mut h = h.clone();
        h[k] = v;
        forge(&h, &c, &issuer)
    };
    let without = |k: &str| {
        let mut h = h.clone();
        h.as_object_mut().unwrap().remove(k);
        forge(&h, &c, &issuer)
    };
    let cases: Vec<(String, TokenError)> = vec![
        (
            with("alg", json!("none")),
            TokenError::Algorithm("none".into()),
        ),
        (
            with("alg", json!("HS256")),
            TokenError::Algorithm("HS256".into()),
        ),
        (
            with("alg", json!("Ed25519")),
            TokenError::Algorithm("Ed25519".into()),
        ),
        (without("typ"), TokenError::Type(String::new())),
        (with("typ", json!("JWT")), TokenError::Type("JWT".into())),
        (
            with("kid", json!("unknown-kid")),
            TokenError::UnknownKey("unknown-kid".into()),
        ),
        (
            with("kid", json!("")),
            TokenError::UnknownKey("\"\"".into()),
        ),
        (
            with("kid", json!("../keys/issuer.pem")),
            TokenError::UnknownKey("../keys/issuer.pem".into()),
        ),
        (
            with("crit", json!(["exp"])),
            TokenError::ForbiddenHeader("crit".into()),
        ),
        (
            with("jku", json!("http://127.0.0.1:1/jwks")),
            TokenError::ForbiddenHeader("jku".into()),
        ),
        (
            with("x5u", json!("http://127.0.0.1:1/x5u")),
            TokenError::ForbiddenHeader("x5u".into()),
        ),
        (
            with("x5c", json!(["MIIB"])),
            TokenError::ForbiddenHeader("x5c".into()),
        ),
        (
            with("jwk", json!({"kty": "OKP"})),
            TokenError::ForbiddenHeader("jwk".into()),
        ),
    ];
    for (token, want) in cases {
        assert_eq!(verify(&f, &token).unwrap_err(), want);
    }
}

#[test]
fn alg_none_with_an_empty_signature_is_refused() {
    let f = Fixture::new();
    let (mut h, c) = parts(&f);
    h["alg"] = json!("none");
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    assert_eq!(
        verify(&f, &token).unwrap_err(),
        TokenError::Algorithm("none".into())
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    use sha2::Digest;
    let f = Fixture::new();
    let (mut h, c) = parts(&f);
    h["alg"] = json!("HS256");
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    // Not a real HMAC, but any signature bytes: the algorithm is refused before they matter.
    let public = f.key(Purpose::Issuer).verifying_key().to_bytes();
    let fake = sha2::Sha256::digest([public.as_slice(), input.as_bytes()].concat());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(fake));
    assert_eq!(
        verify(&f, &token).unwrap_err(),
        TokenError::Algorithm("HS256".into())
    );
}

#[test]
fn signature_and_shape_attacks() {
    let f = Fixture::new();
    let token = f.mint("job-1").token;
    let truncated = &token[..token.len() - 4];
    assert_eq!(verify(&f, truncated).unwrap_err(), TokenError::Signature);
    let four = format!("{token}.AAAA");
    assert!(matches!(
        verify(&f, &four).unwrap_err(),
        TokenError::Malformed(_)
    ));
    let big = format!("{token}{}", "A".repeat(5 * 1024));
    assert_eq!(
        verify(&f, &big).unwrap_err(),
        TokenError::TooLarge(big.len())
    );
    // Signed by a key that trust.json holds for another purpose.
    let (mut h, c) = parts(&f);
    let policy = f.key(Purpose::Policy);
    h["kid"] = json!(keys::kid(&policy.verifying_key()));
    let token = forge(&h, &c, &policy);
    assert!(matches!(
        verify(&f, &token).unwrap_err(),
        TokenError::WrongKeyPurpose(_)
    ));
    // Signed by an untrusted key under the trusted kid.
    let (h, c) = parts(&f);
    assert_eq!(
        verify(&f, &forge(&h, &c, &keys::generate())).unwrap_err(),
        TokenError::Signature
    );
}

#[test]
fn claim_attacks() {
    let f = Fixture::new();
    let (h, c) = parts(&f);
    let issuer = f.key(Purpose::Issuer);
    let with = |k: &str, v: Value| {
        let mut c = c.clone();
        c[k] = v;
        forge(&h, &c, &issuer)
    };
    let without = |k: &str| {
        let mut c = c.clone();
        c.as_object_mut().unwrap().remove(k);
        forge(&h, &c, &issuer)
    };
    let iat = c["iat"].as_u64().unwrap();
    let cases: Vec<(String, TokenError)> = vec![
        (without("exp"), TokenError::MissingClaim("exp")),
        (without("aud"), TokenError::MissingClaim("aud")),
        (without("jti"), TokenError::MissingClaim("jti")),
        (
            with("aud", json!("another-proxy")),
            TokenError::Audience("another-proxy".into()),
        ),
        (
            with("iss", json!("mallory")),
            TokenError::Issuer("mallory".into()),
        ),
        (with("nbf", json!(iat + 600)), TokenError::NotYetValid),
        (
            with("exp", json!(iat + 901)),
            TokenError::TtlTooLong { ttl: 901, max: 900 },
        ),
        (with("exp", json!(iat)), TokenError::Lifetime),
        (
            with("wpc", json!("blake3:00")),
            TokenError::UnknownContract("blake3:00".into()),
        ),
    ];
    for (token, want) in cases {
        assert_eq!(verify(&f, &token).unwrap_err(), want);
    }
    let two = with("aud", json!([f.audience(), "other"]));
    assert!(matches!(
        verify(&f, &two).unwrap_err(),
        TokenError::InvalidClaims(_)
    ));
    let extra = with("admin", json!(true));
    assert!(
        matches!(verify(&f, &extra).unwrap_err(), TokenError::InvalidClaims(m) if m.contains("admin"))
    );
    let typed = with("exp", json!("tomorrow"));
    assert!(matches!(
        verify(&f, &typed).unwrap_err(),
        TokenError::InvalidClaims(_)
    ));
}

#[test]
fn expiry_and_revocation() {
    let f = Fixture::new();
    let minted = f.mint("job-1");
    let exp = minted.claims.exp;
    assert!(
        verify_at(&f, &minted.token, exp + 29).is_ok(),
        "within leeway"
    );
    assert_eq!(
        verify_at(&f, &minted.token, exp + 30).unwrap_err(),
        TokenError::Expired
    );

    let store = RevocationStore::new(f.dir.state());
    store
        .revoke_jti(&minted.claims.jti, Some(exp), "leaked", NOW)
        .unwrap();
    assert_eq!(
        verify(&f, &minted.token).unwrap_err(),
        TokenError::Revoked(minted.claims.jti.clone())
    );

    let other = f.mint("job-2");
    store.revoke_job("job-2", "done", NOW).unwrap();
    assert_eq!(
        verify(&f, &other.token).unwrap_err(),
        TokenError::JobRevoked("job-2".into())
    );
}

#[test]
fn the_cached_verifier_still_sees_revocation_and_expiry() {
    let f = Fixture::new();
    let verifier = claw_tokens::Verifier::from_data_dir(&f.dir).unwrap();
    let minted = f.mint("job-1");
    let (_, hit) = verifier.verify(&minted.token, NOW + 1).unwrap();
    assert!(!hit);
    let (claims, hit) = verifier.verify(&minted.token, NOW + 2).unwrap();
    assert!(hit);
    RevocationStore::new(f.dir.state())
        .revoke_job("job-1", "stop", NOW)
        .unwrap();
    assert_eq!(
        verifier.verify(&minted.token, NOW + 3).unwrap_err(),
        TokenError::JobRevoked("job-1".into())
    );
    assert!(verifier.recheck(&claims, NOW + 3).is_err());
    let fresh = f.mint("job-3");
    assert_eq!(
        verifier
            .verify(&fresh.token, fresh.claims.exp + 31)
            .unwrap_err(),
        TokenError::Expired
    );
}
