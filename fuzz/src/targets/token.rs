//! `token`: the compact CST, decoded and verified against a fixed trust setup.
//!
//! The setup is the golden bundle's: its trust.json (issuer key `clawscope`), the one contract
//! its token pins (with that contract's `max_ttl_seconds`), no revocations, the token's own
//! audience, and a clock one second after its `iat`. Each input is tried three ways: as a whole
//! token, as the JSON header of the golden token, and as its JSON claims (the last two reach
//! the header and claim checks that byte mutations of base64 rarely get to).
//!
//! Invariants: only the golden token itself verifies (nothing else carries a valid signature);
//! a verified token's claims satisfy what verification promises; decode never yields an empty
//! `kid`; claims that parse pass or fail the clock check without panicking at any time.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claw_policy::canonical;
use claw_policy::keys::Purpose;
use claw_tokens::TokenError;
use claw_tokens::token::{self, Contracts, Expect, Revocations};

use super::{golden, text};
use crate::engine::{Target, Trace};

/// The target.
pub const TARGET: Target = Target {
    name: "token",
    about: "CST decode + verify (fixed trust), header and claims checks, clock checks",
    max_len: 8 * 1024,
    dictionary: &[
        b"\"alg\"",
        b"\"EdDSA\"",
        b"\"none\"",
        b"\"HS256\"",
        b"\"typ\"",
        b"\"cst+jwt\"",
        b"\"JWT\"",
        b"\"kid\"",
        b"\"crit\"",
        b"\"jku\"",
        b"\"x5u\"",
        b"\"jwk\"",
        b"\"iss\"",
        b"\"sub\"",
        b"\"aud\"",
        b"[\"p63511cd3\"]",
        b"\"iat\"",
        b"\"nbf\"",
        b"\"exp\"",
        b"\"jti\"",
        b"\"job\"",
        b"\"wpc\"",
        b"\"scope\"",
        b"\"blake3:\"",
        b"\"clawscope\"",
        b".",
        b"..",
        b"...",
        b"=",
        b"+",
        b"/",
    ],
    run,
};

struct GoldenContract;

impl Contracts for GoldenContract {
    fn max_ttl(&self, hash: &str) -> Option<u64> {
        let (pinned, ttl) = &golden().contract;
        (hash == pinned).then_some(*ttl)
    }
}

struct NoRevocations;

impl Revocations for NoRevocations {
    fn check(&self, _jti: &str, _job: &str) -> Result<(), TokenError> {
        Ok(())
    }
}

/// The golden token's three parts.
fn parts() -> [&'static str; 3] {
    let mut parts = golden().token.split('.');
    let mut next = || parts.next().expect("the golden token has three parts");
    [next(), next(), next()]
}

/// The golden token's audience and the clock the target verifies at.
fn expectation() -> (&'static str, u64) {
    static EXPECT: OnceLock<(String, u64)> = OnceLock::new();
    let (aud, now) = EXPECT.get_or_init(|| {
        let (_, claims) =
            token::dangerous_decode_unverified(&golden().token).expect("the golden token decodes");
        let aud = claims["aud"].as_str().expect("aud").to_owned();
        let iat = claims["iat"].as_u64().expect("iat");
        (aud, iat + 1)
    });
    (aud, *now)
}

fn run(input: &[u8], trace: &mut Trace) {
    let [header, payload, signature] = parts();
    whole(&text(input), trace);
    let part = URL_SAFE_NO_PAD.encode(input);
    whole(&format!("{part}.{payload}.{signature}"), trace);
    whole(&format!("{header}.{part}.{signature}"), trace);
    if let Ok(value) = canonical::parse_strict(input) {
        let claims = token::parse_claims(value);
        trace.outcome("claims", &claims);
        if let Ok(claims) = claims {
            let (_, now) = expectation();
            for at in [now, claims.iat, claims.nbf, claims.exp] {
                trace.outcome(
                    "time",
                    &token::check_time(&claims, token::MAX_LEEWAY_SECS, at),
                );
            }
        }
    }
}

fn whole(candidate: &str, trace: &mut Trace) {
    let g = golden();
    let unverified = token::dangerous_decode_unverified(candidate);
    trace.outcome("unverified", &unverified);

    let decoded = token::decode(candidate);
    trace.outcome("decode", &decoded);
    if let Ok(decoded) = &decoded {
        assert!(!decoded.kid.is_empty(), "decode returned an empty kid");
        assert!(
            unverified.is_ok(),
            "decode accepted what the unverified decode refused"
        );
        if let Some(issuer) = g.trust.key(&decoded.kid, Purpose::Issuer) {
            let verifies = decoded.signature_verifies(&issuer.key);
            trace.step(if verifies { "sig:ok" } else { "sig:bad" });
            assert!(
                !verifies || candidate == g.token,
                "a token other than the golden one has a valid signature"
            );
        }
    }

    let (audience, now) = expectation();
    let expect = Expect::new(audience);
    let verified = token::verify(
        candidate,
        &g.trust,
        &GoldenContract,
        &NoRevocations,
        &expect,
        now,
    );
    trace.outcome("verify", &verified);
    if let Ok(claims) = verified {
        assert_eq!(candidate, g.token, "only the golden token verifies");
        assert!(decoded.is_ok());
        assert_eq!(claims.aud, audience);
        assert!(claims.iat <= claims.nbf && claims.nbf < claims.exp);
        assert!(
            claims.exp - claims.iat <= g.contract.1,
            "ttl over the contract's maximum"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_token_verifies_in_the_fixed_setup() {
        let g = golden();
        let (audience, now) = expectation();
        let claims = token::verify(
            &g.token,
            &g.trust,
            &GoldenContract,
            &NoRevocations,
            &Expect::new(audience),
            now,
        )
        .unwrap();
        assert_eq!(claims.wpc, g.contract.0);
        run(g.token.as_bytes(), &mut Trace::default());
    }
}
