//! `token.*`: the job's token, checked as the proxy checked it, minus the clock.

use claw_policy::keys::Purpose;
use claw_tokens::scope::scope_hash;
use claw_tokens::token as cst;

use crate::receipt::{Kind, format_ts, ts_millis};

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

/// How long after the second of its revocation a proxy may still have let one of the job's
/// calls through: the revocation's time is whole seconds, and a fleet's proxies learn of a
/// revocation by polling the shared state (every 200 ms).
pub(crate) const REVOCATION_LEEWAY_MS: i64 = 2_000;

/// `token.revocation`: with the issuer's signed revocation snapshot, no call, request or
/// tunnel of the job was allowed after the job or its token was revoked. A receipt counts from
/// when its request arrived (`ts − duration_ms`), within [`REVOCATION_LEEWAY_MS`] of the
/// revocation's second; closes, `job_close` and denials are what a revocation leads to.
pub(crate) fn revocation(ctx: &Ctx<'_>) -> Outcome {
    let Some(signed) = &ctx.bundle.revocations else {
        return skip(
            "the bundle carries no signed revocation snapshot (built without the issuer key); \
             a revocation still shows as the job's signed job_close (see job.closed)",
        );
    };
    let snapshot = match signed.verify(ctx.trust) {
        Ok(snapshot) => snapshot,
        Err(e) => return fail(format!("revocation snapshot: {e}")),
    };
    if snapshot.job != ctx.bundle.job {
        return fail(format!(
            "the revocation snapshot is of job {:?}, the bundle of {:?}",
            snapshot.job, ctx.bundle.job
        ));
    }
    let Some(claims) = &ctx.claims else {
        return skip("the claims did not parse (token.claims)");
    };
    if !snapshot.jti.contains(&claims.jti) {
        return fail(format!(
            "the revocation snapshot does not speak for the bundle's token {}",
            claims.jti
        ));
    }
    let mut problems = Problems::default();
    let mut checked = 0;
    for (i, r) in ctx.receipts() {
        let opens = matches!(r.kind, Kind::Call | Kind::Request | Kind::TunnelOpen);
        if !opens || !r.decision.as_ref().is_some_and(|d| d.allow) {
            continue;
        }
        let jti = r.cst.as_ref().map(|c| c.jti.as_str());
        if jti.is_some_and(|jti| !snapshot.jti.iter().any(|j| j == jti)) {
            problems.receipt(
                Some(r.seq),
                format!("receipt #{i} is of token {jti:?}, which the snapshot does not cover"),
            );
            continue;
        }
        let Some(revoked) = snapshot.revoked_at(jti) else {
            continue;
        };
        checked += 1;
        let Some(at) = ts_millis(&r.ts) else {
            continue; // receipt.time names it
        };
        let arrived = at - i64::try_from(r.duration_ms.unwrap_or(0)).unwrap_or(i64::MAX);
        let cutoff = (i64::try_from(revoked).unwrap_or(i64::MAX) + 1) * 1000;
        if arrived > cutoff + REVOCATION_LEEWAY_MS {
            problems.receipt(
                Some(r.seq),
                format!(
                    "receipt #{i} was allowed at {}, after the revocation at {}",
                    r.ts,
                    format_secs(revoked)
                ),
            );
        }
    }
    let summary = match snapshot.revoked_at(Some(&claims.jti)) {
        None => format!(
            "the issuer recorded no revocation of job {:?} or its tokens as of {}",
            snapshot.job,
            format_secs(snapshot.as_of)
        ),
        Some(at) => format!(
            "revoked at {}; all {checked} allowed receipts arrived before",
            format_secs(at)
        ),
    };
    problems.outcome(summary)
}

fn format_secs(secs: u64) -> String {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format_ts(at)
}
