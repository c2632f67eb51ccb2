//! The fuzz targets, one module each, and the fixed trust setup they share.
//!
//! The trust setup is the golden proof bundle a real proxy run produced
//! (`verifier/tests/fixtures/golden`): its `trust.json`, token, receipts and checkpoint. It is
//! read from there, not copied, so the targets keep reaching their accepting paths when the
//! fixtures are regenerated (the tests in each module check that they do).

use std::sync::OnceLock;

use claw_policy::canonical;
use claw_policy::keys::Purpose;
use claw_policy::trust::TrustStore;
use claw_verifier::checkpoint::NoteVerifier;
use serde_json::Value;

use crate::engine::Target;

pub mod bundle;
pub mod checkpoint;
pub mod classify;
pub mod contract;
pub mod proxy;
pub mod receipt;
pub mod token;

/// Every target, in the order `all` runs them.
pub fn all() -> [&'static Target; 7] {
    [
        &contract::TARGET,
        &token::TARGET,
        &classify::TARGET,
        &receipt::TARGET,
        &bundle::TARGET,
        &checkpoint::TARGET,
        &proxy::TARGET,
    ]
}

/// The target called `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    all().into_iter().find(|t| t.name == name)
}

/// The golden bundle's bytes.
pub const GOLDEN_BUNDLE: &str = include_str!("../../../verifier/tests/fixtures/golden/bundle.json");

/// The trust.json the golden bundle verifies against.
pub const GOLDEN_TRUST: &str = include_str!("../../../verifier/tests/fixtures/golden/trust.json");

/// What the targets take from the golden bundle.
pub struct Golden {
    /// The reviewer's trust store.
    pub trust: TrustStore,
    /// The job token.
    pub token: String,
    /// Each receipt's leaf bytes (its JCS form).
    pub receipts: Vec<Vec<u8>>,
    /// The log's checkpoint note.
    pub checkpoint: String,
    /// The log's note verifier (origin name, proxy key).
    pub log_verifier: NoteVerifier,
    /// The pinned contract's hash and `max_ttl_seconds`.
    pub contract: (String, u64),
}

/// The golden fixtures, parsed once.
pub fn golden() -> &'static Golden {
    static GOLDEN: OnceLock<Golden> = OnceLock::new();
    GOLDEN.get_or_init(|| {
        let trust = TrustStore::from_json(GOLDEN_TRUST.as_bytes()).expect("golden trust.json");
        let bundle: Value = serde_json::from_str(GOLDEN_BUNDLE).expect("golden bundle is JSON");
        let receipts = bundle["receipts"]
            .as_array()
            .expect("receipts")
            .iter()
            .map(|r| canonical::to_jcs(r).expect("a receipt canonicalises"))
            .collect();
        let proxy = trust
            .by_purpose(Purpose::Proxy)
            .next()
            .expect("a proxy key");
        let log_verifier =
            NoteVerifier::new(claw_verifier::receipt::origin(&proxy.name), proxy.key);
        let policy = &bundle["policies"][0];
        Golden {
            token: bundle["token"].as_str().expect("token").to_owned(),
            checkpoint: bundle["logs"][0]["checkpoint"]
                .as_str()
                .expect("checkpoint")
                .to_owned(),
            contract: (
                policy["hash"].as_str().expect("policy hash").to_owned(),
                policy["wpc"]["cst_constraints"]["max_ttl_seconds"]
                    .as_u64()
                    .expect("max_ttl_seconds"),
            ),
            receipts,
            log_verifier,
            trust,
        }
    })
}

/// The input as text: invalid UTF-8 replaced, so byte-level mutations still reach text parsers.
pub(crate) fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}
