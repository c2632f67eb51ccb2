//! `receipt`: one receipt leaf, verified strictly, parsed, re-signed and verified again.
//!
//! Invariants: only the golden leaves verify under the golden trust store, and a verified
//! leaf is exactly its input and passes its shape rules; the writer's serialisation of any
//! receipt is its RFC 8785 form and parses back to the same receipt; a receipt re-signed by
//! a trusted key verifies exactly when its shape is valid (writer and verifier agree).

use std::sync::OnceLock;

use claw_policy::canonical;
use claw_policy::keys::{self, Purpose};
use claw_policy::trust::TrustStore;
use claw_verifier::merkle;
use claw_verifier::receipt::{self, Receipt, ReceiptError, verify_leaf};
use ed25519_dalek::SigningKey;

use super::{golden, text};
use crate::engine::{Target, Trace};

/// The target.
pub const TARGET: Target = Target {
    name: "receipt",
    about: "receipt verify_leaf (golden trust), shape rules, JCS agreement, re-sign + verify",
    max_len: 16 * 1024,
    dictionary: &[
        b"\"kind\"",
        b"\"request\"",
        b"\"call\"",
        b"\"tunnel_open\"",
        b"\"tunnel_close\"",
        b"\"job_close\"",
        b"\"recovery\"",
        b"\"@anonymous\"",
        b"\"@log\"",
        b"\"sha256:",
        b"\"blake3k:",
        b"\"blake3:",
        b"0000000000000000000000000000000000000000000000000000000000000000",
        b"\"rid\"",
        b"\"cst\"",
        b"\"wpc\"",
        b"\"count\"",
        b"\"closed\"",
        b"\"expired\"",
        b"\"tunnel\"",
        b"\"segment\"",
        b"\"sig\"",
        b"\"proxy\"",
        b"\"log\"",
        b"\"clawproxy/fuzzproxy\"",
        b"\"2026-02-29T00:00:00.000Z\"",
        b"\"9999-12-31T23:59:60.999Z\"",
        b"\"7ZZZZZZZZZZZZZZZZZZZZZZZZZ\"",
        b"\"v\":2",
    ],
    run,
};

/// A key of our own, trusted as the proxy `fuzzproxy`, to re-sign mutated receipts with.
fn resigner() -> &'static (SigningKey, TrustStore) {
    static RESIGNER: OnceLock<(SigningKey, TrustStore)> = OnceLock::new();
    RESIGNER.get_or_init(|| {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut trust = TrustStore::default();
        trust.add(Purpose::Proxy, "fuzzproxy", key.verifying_key());
        (key, trust)
    })
}

fn run(input: &[u8], trace: &mut Trace) {
    let g = golden();
    let verified = verify_leaf(input, &g.trust);
    trace.outcome("verify", &verified);
    if let Ok(checked) = &verified {
        assert_eq!(checked.leaf(), input, "a verified leaf is its input");
        assert!(
            g.receipts.iter().any(|r| r == input),
            "a leaf other than the golden ones verified"
        );
        assert_eq!(checked.leaf_hash(), merkle::leaf_hash(input));
        assert_eq!(checked.receipt().check_shape(), Ok(()));
    }

    let _ = receipt::ts_millis(&text(input));
    let parsed: Result<Receipt, _> = serde_json::from_slice(input);
    trace.outcome("parse", &parsed);
    let Ok(parsed) = parsed else { return };
    let shape = parsed.check_shape();
    trace.outcome("shape", &shape);
    if shape.is_ok() {
        assert!(
            receipt::ts_millis(&parsed.ts).is_some(),
            "a valid ts has a time"
        );
    }

    // The writer's bytes are RFC 8785 for what the writer can produce: strings, booleans and
    // integers below 2^53 (larger ones JCS writes as floats; strict parsing refuses them).
    if canonical::parse_strict(input).is_err() {
        return;
    }
    let leaf = parsed.leaf();
    let jcs = canonical::to_jcs_of(&parsed).expect("a receipt canonicalises");
    assert_eq!(
        leaf,
        jcs,
        "the writer's bytes are not RFC 8785 for {:?}",
        String::from_utf8_lossy(&leaf)
    );
    let back: Receipt = serde_json::from_slice(&leaf).expect("a leaf parses");
    assert_eq!(back, parsed, "leaf round trip");
    let _ = parsed.signing_bytes();

    // Re-signed by a trusted key, under its own log: verifies exactly when the shape holds.
    let (key, trust) = resigner();
    let mut resigned = parsed;
    resigned.proxy = keys::kid(&key.verifying_key());
    resigned.log = receipt::origin("fuzzproxy");
    resigned.sign(key);
    let shape = resigned.check_shape();
    let again = verify_leaf(&resigned.leaf(), trust);
    trace.outcome("resigned", &again);
    match (&shape, &again) {
        (Ok(()), Ok(checked)) => assert_eq!(checked.receipt(), &resigned),
        (Err(expected), Err(ReceiptError::Shape { .. })) => {
            assert_eq!(again.as_ref().err(), Some(expected));
        }
        _ => panic!("re-signed receipt: shape {shape:?} but verify_leaf {again:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_leaves_verify_and_re_sign() {
        let g = golden();
        assert!(g.receipts.len() >= 2);
        for leaf in &g.receipts {
            verify_leaf(leaf, &g.trust).unwrap();
            run(leaf, &mut Trace::default());
        }
    }
}
