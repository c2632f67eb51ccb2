//! `contract`: strict JSON and JCS, contract parse + validate + hash, signed envelopes.
//!
//! Invariants: the canonical form of anything parsed re-parses and is a fixed point (and, with
//! no float in it, re-parses to the same value); a valid contract's hash is the BLAKE3 of its
//! canonical bytes, and those bytes (and its typed document, re-serialised) are again a valid
//! contract with the same document; a verified envelope states its contract's hash.

use claw_policy::canonical;
use claw_policy::contract::{Contract, ContractError, hash_bytes};
use claw_policy::envelope::Envelope;
use serde_json::Value;

use super::golden;
use crate::engine::{Target, Trace};

/// The target.
pub const TARGET: Target = Target {
    name: "contract",
    about: "strict JSON + JCS round trip, contract parse/validate/hash, envelope verify",
    max_len: 64 * 1024,
    dictionary: &[
        b"\"wpc_version\"",
        b"\"1.0\"",
        b"\"tool_scope\"",
        b"\"cst_constraints\"",
        b"\"sandbox\"",
        b"\"allowed_vaults\"",
        b"\"allowed_operations\"",
        b"\"allowed_categories\"",
        b"\"deny_operations\"",
        b"\"allowed_items\"",
        b"\"read_item\"",
        b"\"delete_item\"",
        b"\"LOGIN\"",
        b"\"CUSTOM\"",
        b"\"max_ttl_seconds\"",
        b"\"policy_hash_pin\"",
        b"\"job_scoped\"",
        b"\"network_egress\"",
        b"\"connect.1password.com:0\"",
        b"\"connect.1password.com:65536\"",
        b"\"[::1]:443\"",
        b"\"workspace_access\"",
        b"\"read_write\"",
        b"\"signatures\"",
        b"\"hash\"",
        b"\"blake3:\"",
        b"\"kid\"",
        b"\"sig\"",
        b"\"wpc\"",
    ],
    run,
};

fn run(input: &[u8], trace: &mut Trace) {
    strict_json(input, trace);

    let contract = Contract::from_slice(input);
    match &contract {
        Ok(contract) => {
            trace.step("contract:ok");
            let canonical = contract.canonical();
            assert_eq!(
                contract.hash(),
                hash_bytes(&canonical),
                "hash of the JCS bytes"
            );
            let again = Contract::from_slice(&canonical).unwrap_or_else(|e| {
                panic!("the canonical form of a valid contract is refused: {e}")
            });
            assert_eq!(again.hash(), contract.hash());
            assert_eq!(again.document(), contract.document());
            let typed = serde_json::to_vec(contract.document()).expect("a document serialises");
            let typed = Contract::from_slice(&typed)
                .unwrap_or_else(|e| panic!("the typed document re-serialised is refused: {e}"));
            assert_eq!(typed.document(), contract.document());
        }
        Err(ContractError::Invalid(violations)) => {
            assert!(!violations.is_empty(), "refused without a violation");
            // Which fields were refused (two levels deep, indices and input-chosen keys
            // left out), not what they held or how often.
            let mut fields: Vec<String> = violations
                .iter()
                .map(|v| {
                    v.pointer
                        .split('/')
                        .take(3)
                        .map(|s| {
                            if s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                                s
                            } else {
                                "*"
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect();
            fields.sort();
            fields.dedup();
            trace.step(&fields.join(" "));
        }
        Err(_) => trace.step("contract:json"),
    }

    let envelope = Envelope::from_slice(input);
    trace.outcome("envelope", &envelope);
    if let Ok(envelope) = envelope {
        let verified = envelope.verify(&golden().trust);
        trace.outcome("envelope.verify", &verified);
        if let Ok(contract) = verified {
            assert_eq!(contract.hash(), envelope.hash, "a verified envelope's hash");
        }
    }
}

/// `parse_strict` then `to_jcs`: the canonical bytes re-parse, are a fixed point, and (without
/// floats, whose integral values re-read as integers) re-parse to the same value.
fn strict_json(input: &[u8], trace: &mut Trace) {
    let parsed = canonical::parse_strict(input);
    trace.outcome("json", &parsed);
    let Ok(value) = parsed else { return };
    let jcs = canonical::to_jcs(&value);
    trace.outcome("jcs", &jcs);
    let Ok(jcs) = jcs else { return };
    let again = canonical::parse_strict(&jcs).unwrap_or_else(|e| {
        panic!(
            "canonical output {:?} does not re-parse: {e}",
            String::from_utf8_lossy(&jcs)
        )
    });
    let twice = canonical::to_jcs(&again).expect("canonical output canonicalises");
    assert_eq!(twice, jcs, "JCS is not a fixed point");
    if !has_float(&value) {
        assert_eq!(again, value, "JCS round trip changed the value");
    }
}

fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::GOLDEN_BUNDLE;

    #[test]
    fn the_seed_contract_and_the_golden_envelope_are_accepted() {
        let seed = include_bytes!("../../../examples/policies/1password-readonly-agent.json");
        assert!(Contract::from_slice(seed).is_ok());
        let bundle: Value = serde_json::from_str(GOLDEN_BUNDLE).unwrap();
        let envelope = serde_json::to_vec(&bundle["policies"][0]).unwrap();
        let envelope = Envelope::from_slice(&envelope).unwrap();
        envelope.verify(&golden().trust).unwrap();
        run(seed, &mut Trace::default());
    }
}
