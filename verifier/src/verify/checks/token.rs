//! `token.*`: the job's token, checked as the proxy checked it, minus the clock.

use claw_policy::keys::Purpose;
use claw_tokens::scope::scope_hash;
use claw_tokens::token as cst;

use super::{Outcome, Problems, fail, pass, skip};
use crate::verify::context::Ctx;

/// `token.shape`: three base64url parts of strict JSON, at most 4 KiB, header exactly
/// `{alg: EdDSA, typ: cst+jwt, kid}` (no `crit`, `jku`, `x5u`, `x5c`, `jwk`).
pub(crate) fn shape(ctx: &Ctx<'_>) -> Outcome {
    match &ctx.decoded {
        Ok(decoded) => pass(format!(
            "compact JWS, {} bytes, header {{alg EdDSA, typ cst+jwt, kid {}}}",
            ctx.bundle.token.len(),
            decoded.kid
        )),
        Err(e) => fail(e.to_string()),
    }
}

/// `token.signature`: Ed25519 `verify_strict` over `header.payload` with the trusted issuer
/// key the header names.
pub(crate) fn signature(ctx: &Ctx<'_>) -> Outcome {
    let Ok(decoded) = &ctx.decoded else {
        return skip("token.shape failed");
    };
    let Some(issuer) = ctx.trust.key(&decoded.kid, Purpose::Issuer) else {
        return fail(format!(
            "key {} is not a trusted issuer key (see keys.trusted)",
            decoded.kid
        ));
    };
    if decoded.signature_verifies(&issuer.key) {
        pass(format!("signed by trusted issuer {:?}", issuer.name))
    } else {
        fail(format!(
            "the signature does not verify under issuer key {}",
            decoded.kid
        ))
    }
}

/// `token.claims`: every claim present, typed and in mint's form; `iss` is the trusted
/// issuer's name; `aud` names the proxy that wrote the receipts.
pub(crate) fn claims(ctx: &Ctx<'_>) -> Outcome {
    let Ok(decoded) = &ctx.decoded else {
        return skip("token.shape failed");
    };
    let claims = match cst::parse_claims(decoded.claims.clone()) {
        Ok(claims) => claims,
        Err(e) => return fail(e.to_string()),
    };
    let mut problems = Problems::default();
    match ctx.trust.key(&decoded.kid, Purpose::Issuer) {
        Some(issuer) if issuer.name == claims.iss => {}
        Some(issuer) => problems.add(format!(
            "iss {:?} is not the name of its key's issuer ({:?})",
            claims.iss, issuer.name
        )),
        None => problems.add(format!("iss {:?} is not a trusted issuer", claims.iss)),
    }
    for log in &ctx.bundle.logs {
        if !crate::receipt::is_origin_of(&log.origin, &claims.aud) {
            problems.add(format!(
                "aud {:?} is not the proxy of log {:?}",
                claims.aud, log.origin
            ));
        }
    }
    problems.outcome(format!(
        "all claims present; issuer {:?}, agent {:?}, audience {:?}",
        claims.iss, claims.sub, claims.aud
    ))
}

/// `token.lifetime`: `iat ≤ nbf < exp` and `exp − iat` within the contract's
/// `max_ttl_seconds`.
pub(crate) fn lifetime(ctx: &Ctx<'_>) -> Outcome {
    let Some(claims) = &ctx.claims else {
        return skip("the claims did not parse (token.claims)");
    };
    if !(claims.iat <= claims.nbf && claims.nbf < claims.exp) {
        return fail(format!(
            "iat {} ≤ nbf {} < exp {} does not hold",
            claims.iat, claims.nbf, claims.exp
        ));
    }
    let Some(contract) = &ctx.contract else {
        return fail(format!(
            "the bundle has no valid contract {} to bound the lifetime",
            claims.wpc
        ));
    };
    let max = contract.document().cst_constraints.max_ttl_seconds;
    let ttl = claims.exp - claims.iat;
    if ttl > max {
        return fail(format!(
            "lifetime {ttl} s exceeds the contract's max_ttl_seconds {max}"
        ));
    }
    pass(format!("{ttl} s, within max_ttl_seconds {max}"))
}

/// `token.binding`: the token is for this job, pins a contract in the bundle, and its scope
/// claim is the hash of the effective scope.
pub(crate) fn binding(ctx: &Ctx<'_>) -> Outcome {
    let Some(claims) = &ctx.claims else {
        return skip("the claims did not parse (token.claims)");
    };
    let mut problems = Problems::default();
    if claims.job != ctx.bundle.job {
        problems.add(format!(
            "token is for job {:?}, the bundle for {:?}",
            claims.job, ctx.bundle.job
        ));
    }
    if !ctx.bundle.policies.iter().any(|p| p.hash == claims.wpc) {
        problems.add(format!(
            "pinned contract {} is not in the bundle",
            claims.wpc
        ));
    }
    match &ctx.scope {
        Some(scope) if scope_hash(scope) == claims.scope => {}
        Some(_) => problems.add(format!(
            "scope claim {} is not the hash of the {} scope",
            claims.scope,
            if ctx.bundle.scope.is_some() {
                "bundled"
            } else {
                "contract's"
            }
        )),
        None => problems.add("no effective scope to compare the scope claim with"),
    }
    problems.outcome(format!(
        "job {:?}, contract {}, scope {}",
        claims.job, claims.wpc, claims.scope
    ))
}

/// `token.revocation`: needs a signed revocation snapshot, which v1 bundles do not carry; a
/// revoked job is still visible as its signed `job_close` (`job.closed`).
pub(crate) fn revocation(_ctx: &Ctx<'_>) -> Outcome {
    skip(
        "the bundle carries no signed revocation snapshot; a revocation shows as the job's \
         signed job_close (see job.closed)",
    )
}
