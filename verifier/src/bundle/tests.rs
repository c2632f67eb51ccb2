//! Bundle format tests (the checks on real bundles are in `tests/bundle_mutations.rs`).

use super::*;

const GOLDEN: &str = include_str!("../../tests/fixtures/golden/bundle.json");

#[test]
fn the_golden_bundle_parses_and_round_trips() {
    let bundle = parse(GOLDEN.as_bytes()).unwrap();
    assert_eq!(bundle.kind, BUNDLE_TYPE);
    let again = parse(&serde_json::to_vec(&bundle).unwrap()).unwrap();
    assert_eq!(again.receipts, bundle.receipts);
}

#[test]
fn oversized_parts_are_refused_by_name() {
    let mut value: Value = serde_json::from_str(GOLDEN).unwrap();
    value["receipts"][0]["decision"]["reason"] = Value::String("x".repeat(MAX_RECEIPT_BYTES));
    let error = parse(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(error.message.starts_with("/receipts/0:"), "{error}");

    let mut value: Value = serde_json::from_str(GOLDEN).unwrap();
    value["logs"][0]["inclusion"][0]["hashes"] = serde_json::json!(vec!["AA=="; 65]);
    let error = parse(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(error.message.contains("longer than any tree"), "{error}");
}

#[test]
fn a_missing_or_foreign_type_is_named() {
    assert!(parse(b"{}").unwrap_err().message.contains("/type: missing"));
    let error = parse(br#"{"type":"in-toto"}"#).unwrap_err();
    assert!(error.message.contains("not a bundle type"), "{error}");
    assert!(parse(b"[1,2]").is_err());
}

#[test]
fn proof_hashes_are_exactly_32_bytes() {
    let hash = [3u8; 32];
    assert_eq!(decode_hash(&encode_hash(&hash)), Some(hash));
    assert_eq!(decode_hash("AAAA"), None);
    assert_eq!(decode_hash("not base64!"), None);
}
