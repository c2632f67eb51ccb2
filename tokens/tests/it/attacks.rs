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
            TokenError::UnknownKey(String::new()),
        ),
        (without("kid"), TokenError::UnknownKey(String::new())),
        (
            with("kid", json!(["a"])),
            TokenError::UnknownKey("[\"a\"]".into()),
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
    assert_eq!(
        verify(&f, &token).unwrap_err(),
        TokenError::WrongKeyPurpose(keys::kid(&policy.verifying_key()))
    );
    // The proxy's receipt key is no better.
    let (mut h, c) = parts(&f);
    let proxy = f.key(Purpose::Proxy);
    h["kid"] = json!(keys::kid(&proxy.verifying_key()));
    assert_eq!(
        verify(&f, &forge(&h, &c, &proxy)).unwrap_err(),
        TokenError::WrongKeyPurpose(keys::kid(&proxy.verifying_key()))
    );
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
            with("wpc", json!(format!("blake3:{}", "0".repeat(64)))),
            TokenError::UnknownContract(format!("blake3:{}", "0".repeat(64))),
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

#[test]
fn malformed_encodings_are_refused() {
    let f = Fixture::new();
    let (h, c) = parts(&f);
    let issuer = f.key(Purpose::Issuer);
    let sign = |header: String, payload: String| {
        let input = format!("{header}.{payload}");
        let sig = issuer.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    };
    let payload = URL_SAFE_NO_PAD.encode(c.to_string());
    // Two `alg` members: a reader keeping the first and one keeping the last would disagree.
    let kid = h["kid"].as_str().unwrap();
    let dup = format!(r#"{{"alg":"EdDSA","alg":"none","typ":"cst+jwt","kid":"{kid}"}}"#);
    let token = sign(URL_SAFE_NO_PAD.encode(dup), payload.clone());
    assert!(
        matches!(verify(&f, &token).unwrap_err(), TokenError::Malformed(m) if m.contains("header"))
    );
    // Padded or standard-alphabet base64 is not base64url.
    let padded = format!("{}==", URL_SAFE_NO_PAD.encode(h.to_string()));
    assert!(matches!(
        verify(&f, &sign(padded, payload.clone())).unwrap_err(),
        TokenError::Malformed(_)
    ));
    // A header that is JSON but not an object.
    let token = sign(URL_SAFE_NO_PAD.encode("[1]"), payload.clone());
    assert!(matches!(
        verify(&f, &token).unwrap_err(),
        TokenError::Malformed(_)
    ));
    // Empty parts.
    assert!(matches!(
        verify(&f, "..").unwrap_err(),
        TokenError::Malformed(_)
    ));
    assert!(matches!(
        verify(&f, "").unwrap_err(),
        TokenError::Malformed(_)
    ));
    // Claims that are not an object.
    let token = sign(
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode("42"),
    );
    assert!(matches!(
        verify(&f, &token).unwrap_err(),
        TokenError::InvalidClaims(_)
    ));
}

#[test]
fn a_malleated_signature_is_refused() {
    // s + L is the same signature to a lax verifier; verify_strict (and dalek 2) refuse it.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let f = Fixture::new();
    let token = f.mint("job-1").token;
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mut carry = 0u16;
    for (i, l) in L.iter().enumerate() {
        let sum = u16::from(sig[32 + i]) + u16::from(*l) + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(verify(&f, &token).unwrap_err(), TokenError::Signature);
}

#[test]
fn claim_shapes_that_mint_never_makes_are_refused() {
    let f = Fixture::new();
    let (h, c) = parts(&f);
    let issuer = f.key(Purpose::Issuer);
    let with = |k: &str, v: Value| {
        let mut c = c.clone();
        c[k] = v;
        forge(&h, &c, &issuer)
    };
    for (claim, value) in [
        ("jti", json!("short")),
        ("jti", json!("not base64url at all!!!!!!")),
        ("job", json!("a:b")),
        ("job", json!("")),
        ("sub", json!("")),
        ("scope", json!("blake3:00")),
        ("wpc", json!("sha256:abc")),
        ("iat", json!(-1)),
        ("exp", json!(9_007_199_254_740_993u64)),
    ] {
        let err = verify(&f, &with(claim, value.clone())).unwrap_err();
        assert!(
            matches!(err, TokenError::InvalidClaims(_) | TokenError::Malformed(_)),
            "{claim} = {value}: {err:?}"
        );
    }
    // iat after nbf, and an issue time far back that makes the lifetime too long.
    let iat = c["iat"].as_u64().unwrap();
    assert_eq!(
        verify(&f, &with("iat", json!(iat + 1))).unwrap_err(),
        TokenError::Lifetime
    );
    assert_eq!(
        verify(&f, &with("iat", json!(iat - 1000))).unwrap_err(),
        TokenError::TtlTooLong {
            ttl: 1900,
            max: 900
        }
    );
}

#[test]
fn nbf_leeway_is_thirty_seconds_at_most() {
    let f = Fixture::new();
    let (h, c) = parts(&f);
    let issuer = f.key(Purpose::Issuer);
    let mut future = c.clone();
    future["nbf"] = json!(NOW + 1 + 30);
    let token = forge(&h, &future, &issuer);
    assert!(verify(&f, &token).is_ok(), "within 30 s of skew");
    let trust = f.trust();
    let audience = f.audience();
    let contracts = RegistryContracts::new(&f.dir, trust.clone());
    let revocations = RevocationStore::new(f.dir.state());
    // A caller asking for more leeway still gets 30.
    let lax = Expect {
        audience: &audience,
        leeway: 3600,
    };
    future["nbf"] = json!(NOW + 1 + 31);
    let token = forge(&h, &future, &issuer);
    assert_eq!(
        token::verify(&token, &trust, &contracts, &revocations, &lax, NOW + 1).unwrap_err(),
        TokenError::NotYetValid
    );
}

#[test]
fn the_verifier_takes_less_leeway_but_not_more() {
    let f = Fixture::new();
    let minted = f.mint("job-1");
    let exp = minted.claims.exp;
    let strict = claw_tokens::Verifier::from_data_dir(&f.dir)
        .unwrap()
        .with_leeway(0)
        .unwrap();
    assert!(strict.check(&minted.token, exp - 1).is_ok());
    assert_eq!(
        strict.check(&minted.token, exp).unwrap_err(),
        TokenError::Expired
    );
    assert!(
        claw_tokens::Verifier::from_data_dir(&f.dir)
            .unwrap()
            .with_leeway(31)
            .is_err()
    );
}

#[test]
fn verified_checks_the_basic_auth_user() {
    let f = Fixture::new();
    let verifier = claw_tokens::Verifier::from_data_dir(&f.dir).unwrap();
    let minted = f.mint("job-1");
    let verified = verifier.check(&minted.token, NOW + 1).unwrap();
    assert_eq!(verified.job(), "job-1");
    assert!(verified.check_job("job-1").is_ok());
    assert_eq!(
        verified.check_job("job-2").unwrap_err(),
        TokenError::JobMismatch {
            user: "job-2".into()
        }
    );
    assert_eq!(
        verified.check_job("").unwrap_err(),
        TokenError::JobMismatch {
            user: String::new()
        }
    );
}

#[test]
fn another_proxy_refuses_the_token() {
    let f = Fixture::new();
    let minted = f.mint("job-1");
    let other = claw_tokens::Verifier::from_data_dir(&f.dir)
        .unwrap()
        .with_audience("proxy-b");
    assert_eq!(
        other.check(&minted.token, NOW + 1).unwrap_err(),
        TokenError::Audience(minted.claims.aud.clone())
    );
}

#[test]
fn an_unreadable_revocation_list_refuses_every_token() {
    let f = Fixture::new();
    let verifier = claw_tokens::Verifier::from_data_dir(&f.dir).unwrap();
    let minted = f.mint("job-1");
    assert!(verifier.check(&minted.token, NOW + 1).is_ok());
    std::fs::create_dir_all(f.dir.state()).unwrap();
    std::fs::write(f.dir.state().join("revocations.json"), b"{\"jti\":").unwrap();
    assert_eq!(
        verifier.check(&minted.token, NOW + 2).unwrap_err(),
        TokenError::RevocationsUnavailable
    );
}

#[test]
fn failures_are_not_cached_and_the_cache_is_bounded() {
    use claw_tokens::verifier::TokenCache;
    let f = Fixture::new();
    let minted = f.mint("job-1");
    let cache = TokenCache::new(2);
    let mut calls = 0;
    let fail = cache.get_or_verify(&minted.token, NOW, 30, || {
        calls += 1;
        Err(TokenError::Signature)
    });
    assert_eq!(fail.unwrap_err(), TokenError::Signature);
    assert!(cache.is_empty());
    let ok = |c: &claw_tokens::Claims| {
        let c = c.clone();
        move || Ok(c)
    };
    let (_, hit) = cache
        .get_or_verify(&minted.token, NOW, 30, ok(&minted.claims))
        .unwrap();
    assert!(!hit);
    let (_, hit) = cache
        .get_or_verify(&minted.token, NOW, 30, || unreachable!())
        .unwrap();
    assert!(hit);
    for job in ["job-2", "job-3", "job-4"] {
        let m = f.mint(job);
        cache
            .get_or_verify(&m.token, NOW, 30, ok(&m.claims))
            .unwrap();
    }
    assert!(cache.len() <= 2);
    assert_eq!(calls, 1);
}
