//! The issuer's public keys as a JWKS (RFC 7517, OKP keys per RFC 8037).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claw_policy::keys::Purpose;
use claw_policy::trust::TrustStore;
use serde_json::{Value, json};

/// `{"keys":[{kty, crv, x, kid, alg, use}]}` for every trusted issuer key.
pub fn jwks(trust: &TrustStore) -> Value {
    let keys: Vec<Value> = trust
        .by_purpose(Purpose::Issuer)
        .map(|k| {
            json!({ "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(k.key.as_bytes()),
                    "kid": k.kid, "alg": "EdDSA", "use": "sig" })
        })
        .collect();
    json!({ "keys": keys })
}
