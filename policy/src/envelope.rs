//! The signed contract envelope: `{ "wpc": {...}, "hash": "blake3:…", "signatures": [...] }`.
//!
//! Each `sig` is Ed25519 over `PAE("application/vnd.clawproxy.wpc.v1+json", JCS(wpc))`.
//! Verification recomputes the hash from the document, ignores signatures by keys it does not
//! trust, refuses the envelope if any signature by a trusted policy key fails (tampering), and
//! requires at least one that verifies.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature as Ed25519Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{self, FieldError};
use crate::contract::{Contract, ContractError};
use crate::dsse::{WPC_PAYLOAD_TYPE, pae};
use crate::keys::{self, Purpose};
use crate::trust::TrustStore;

/// A contract with its hash and signatures, as stored in the registry and in proof bundles.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The contract document, as written.
    pub wpc: Value,
    /// `blake3:<hex>` of `JCS(wpc)`.
    pub hash: String,
    /// Signatures over the PAE of the canonical document.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature on an envelope.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// Key id of the signer (RFC 7638 thumbprint).
    pub kid: String,
    /// Ed25519 signature, standard base64.
    pub sig: String,
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The envelope itself is malformed.
    #[error("envelope {0}")]
    Format(#[from] FieldError),
    /// The document inside is not a valid contract.
    #[error("contract in envelope: {0}")]
    Contract(#[from] ContractError),
    /// The stated hash is not the hash of the document.
    #[error("hash mismatch: envelope says {stated}, document hashes to {actual} (tampered?)")]
    HashMismatch {
        /// The hash the envelope claims.
        stated: String,
        /// The hash of the document it carries.
        actual: String,
    },
    /// No signature at all.
    #[error("envelope is unsigned; publish it with `clawcontrols publish`")]
    Unsigned,
    /// Signatures exist, but none by a trusted policy key.
    #[error("no signature by a trusted policy key (signed by: {kids}); add the key to trust.json")]
    Untrusted {
        /// The key ids that signed.
        kids: String,
    },
    /// A trusted policy key's signature does not verify.
    #[error("signature by trusted policy key {kid} does not verify (tampered?)")]
    BadSignature {
        /// The key id.
        kid: String,
    },
}

impl Envelope {
    /// Signs a checked contract with a policy key.
    pub fn sign(contract: &Contract, key: &SigningKey) -> Self {
        let message = pae(WPC_PAYLOAD_TYPE, &contract.canonical());
        let sig = key.sign(&message);
        Self {
            wpc: contract.value().clone(),
            hash: contract.hash().to_owned(),
            signatures: vec![EnvelopeSignature {
                kid: keys::kid(&key.verifying_key()),
                sig: STANDARD.encode(sig.to_bytes()),
            }],
        }
    }

    /// Parses envelope bytes strictly (no duplicate keys, no unknown fields).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(canonical::from_slice_strict(bytes)?)
    }

    /// Pretty JSON for storage and display.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("envelope serialises")
    }

    /// Checks the document, its hash and its signatures against trusted policy keys.
    pub fn verify(&self, trust: &TrustStore) -> Result<Contract, EnvelopeError> {
        let contract = self.check_hash()?;
        if self.signatures.is_empty() {
            return Err(EnvelopeError::Unsigned);
        }
        let message = pae(WPC_PAYLOAD_TYPE, &contract.canonical());
        let mut verified = 0;
        for signature in &self.signatures {
            let Some(trusted) = trust.key(&signature.kid, Purpose::Policy) else {
                continue;
            };
            let ok = STANDARD
                .decode(&signature.sig)
                .ok()
                .and_then(|raw| Ed25519Signature::from_slice(&raw).ok())
                .is_some_and(|sig| trusted.key.verify_strict(&message, &sig).is_ok());
            if !ok {
                return Err(EnvelopeError::BadSignature {
                    kid: signature.kid.clone(),
                });
            }
            verified += 1;
        }
        if verified == 0 {
            let kids = self
                .signatures
                .iter()
                .map(|s| s.kid.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(EnvelopeError::Untrusted { kids });
        }
        Ok(contract)
    }

    /// Checks the document and that `hash` is its hash, without looking at signatures.
    pub fn check_hash(&self) -> Result<Contract, EnvelopeError> {
        let contract = Contract::from_value(self.wpc.clone())?;
        if contract.hash() != self.hash {
            return Err(EnvelopeError::HashMismatch {
                stated: self.hash.clone(),
                actual: contract.hash().to_owned(),
            });
        }
        Ok(contract)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = include_bytes!("../../examples/policies/1password-readonly-agent.json");

    fn signed() -> (Envelope, TrustStore) {
        let key = keys::generate();
        let mut trust = TrustStore::default();
        trust.add(Purpose::Policy, "policy", key.verifying_key());
        let contract = Contract::from_slice(SEED).unwrap();
        (Envelope::sign(&contract, &key), trust)
    }

    #[test]
    fn signed_envelope_verifies_and_round_trips() {
        let (envelope, trust) = signed();
        let again = Envelope::from_slice(envelope.to_json_pretty().as_bytes()).unwrap();
        assert_eq!(again.verify(&trust).unwrap().hash(), envelope.hash);
    }

    #[test]
    fn tampered_document_is_refused() {
        let (mut envelope, trust) = signed();
        envelope.wpc["cst_constraints"]["max_ttl_seconds"] = 86400.into();
        assert!(matches!(
            envelope.verify(&trust),
            Err(EnvelopeError::HashMismatch { .. })
        ));
        // Re-hashing the tampered document does not help: the signature no longer verifies.
        envelope.hash = crate::contract::hash_value(&envelope.wpc).unwrap();
        assert!(matches!(
            envelope.verify(&trust),
            Err(EnvelopeError::BadSignature { .. })
        ));
    }

    #[test]
    fn unsigned_and_untrusted_are_refused() {
        let (mut envelope, trust) = signed();
        let other = TrustStore::default();
        assert!(matches!(
            envelope.verify(&other),
            Err(EnvelopeError::Untrusted { .. })
        ));
        // A key trusted for another purpose is not a policy key.
        let mut wrong_purpose = TrustStore::default();
        wrong_purpose.add(Purpose::Issuer, "x", trust.keys()[0].key);
        assert!(matches!(
            envelope.verify(&wrong_purpose),
            Err(EnvelopeError::Untrusted { .. })
        ));
        envelope.signatures.clear();
        assert!(matches!(
            envelope.verify(&trust),
            Err(EnvelopeError::Unsigned)
        ));
    }

    #[test]
    fn a_contract_signature_is_not_a_signature_over_the_bare_document() {
        let (envelope, trust) = signed();
        let key = &trust.keys()[0].key;
        let raw = STANDARD.decode(&envelope.signatures[0].sig).unwrap();
        let sig = Ed25519Signature::from_slice(&raw).unwrap();
        let bare = canonical::to_jcs(&envelope.wpc).unwrap();
        assert!(key.verify_strict(&bare, &sig).is_err());
    }
}
