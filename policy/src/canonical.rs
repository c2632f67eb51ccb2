//! Strict JSON input and RFC 8785 (JCS) canonical output.
//!
//! `serde_json::Value` silently keeps the *last* of two duplicate keys, so two readers of the
//! same bytes could disagree on what a signed document says. [`parse_strict`] refuses duplicate
//! keys and integers outside the range JSON numbers carry exactly (|n| ≤ 2^53 − 1) before any
//! other code sees the document. [`to_jcs`] produces the canonical bytes every hash and
//! signature in the workspace is computed over.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The largest integer every JSON implementation represents exactly (I-JSON, RFC 7493).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a JSON document was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON at all, or JSON with a duplicate key or an unsafe number.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The value cannot be put in canonical form (e.g. a non-finite number).
    #[error("cannot canonicalise: {0}")]
    Canonical(String),
}

/// Parses `bytes` as JSON, refusing duplicate object keys and integers beyond ±(2^53 − 1),
/// also when spelled as floats (`9007199254740993.0`, `1e20`) below the 1e21 from which JCS
/// writes an exponent: their canonical form would be an integer this parser refuses.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut de).and_then(|v| de.end().map(|()| v.0));
    value.map_err(|e| JsonError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })
}

/// Deserialises `T` from bytes after the strict checks of [`parse_strict`].
///
/// Errors name the JSON pointer of the offending field.
pub fn from_slice_strict<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    let value = parse_strict(bytes).map_err(|e| FieldError {
        pointer: String::new(),
        message: e.to_string(),
    })?;
    from_value_at(value)
}

/// Deserialises `T` from an already strictly parsed value; errors carry a JSON pointer.
pub fn from_value_at<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| FieldError {
        pointer: pointer_of(e.path()),
        message: e.into_inner().to_string(),
    })
}

/// A typed-deserialisation failure at a JSON pointer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", if pointer.is_empty() { "/" } else { pointer.as_str() })]
pub struct FieldError {
    /// RFC 6901 pointer to the field ("" is the whole document).
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

/// The RFC 8785 canonical bytes of `value`.
pub fn to_jcs(value: &Value) -> Result<Vec<u8>, JsonError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| JsonError::Canonical(e.to_string()))
}

/// The RFC 8785 canonical bytes of any serialisable value.
pub fn to_jcs_of<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, JsonError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| JsonError::Canonical(e.to_string()))
}

/// Escapes one RFC 6901 reference token.
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&escape_pointer_token(key));
            }
            Segment::Enum { variant } => {
                out.push('/');
                out.push_str(&escape_pointer_token(variant));
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A `Value` whose deserialisation refuses duplicate keys and unsafe integers.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("integer {v} is outside ±(2^53 − 1)")));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("integer {v} is outside ±(2^53 − 1)")));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // JCS writes a float of magnitude below 1e21 in plain integer notation when it is
        // integral, and every float beyond 2^53 is. Such a value would canonicalise to an
        // integer this parser refuses (`9007199254740993.0` → `9007199254740992`), so bytes
        // that were hashed or signed could not be read back: refuse it here as well.
        if v.abs() > MAX_SAFE_INTEGER as f64 && v.abs() < 1e21 {
            return Err(E::custom(format!(
                "number {v} is an integer outside ±(2^53 − 1)"
            )));
        }
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let err = parse_strict(br#"{"a":{"b":1,"b":2}}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"b\""), "{err}");
        assert!(parse_strict(br#"{"a":1,"a":1}"#).is_err());
        assert!(parse_strict(br#"[{"x":1},{"x":2}]"#).is_ok());
    }

    #[test]
    fn unsafe_integers_are_refused() {
        assert!(parse_strict(b"9007199254740991").is_ok());
        assert!(parse_strict(b"9007199254740992").is_err());
        assert!(parse_strict(b"-9007199254740992").is_err());
    }

    /// Found by `claw-fuzz contract`: a float beyond 2^53 was accepted, but its canonical
    /// form is a plain integer that this parser refuses, so the JCS bytes did not re-parse.
    #[test]
    fn floats_that_canonicalise_to_unsafe_integers_are_refused() {
        for text in [
            "9007199254740993.0",
            "-9007199254740993.0",
            "9007199254740992.5e0",
            "1e20",
            "99999999999999999999.0",
        ] {
            let err = parse_strict(text.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("outside"), "{text}: {err}");
        }
        // Below the bound, and from 1e21 on (JCS writes an exponent there), floats stay, and
        // their canonical form reads back.
        for text in ["9007199254740991.0", "1.5", "-0.0", "1e21", "-1e300"] {
            let v = parse_strict(text.as_bytes()).unwrap();
            let jcs = to_jcs(&v).unwrap();
            let again = parse_strict(&jcs).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(to_jcs(&again).unwrap(), jcs, "{text}");
        }
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(parse_strict(b"{} {}").is_err());
        assert!(parse_strict(b"{\"a\":1").is_err());
    }

    #[test]
    fn jcs_sorts_keys_by_utf16_and_formats_numbers() {
        let v = parse_strict("{\"\u{20ac}\":1,\"\u{1f600}\":2,\"\u{fb33}\":3}".as_bytes()).unwrap();
        let out = String::from_utf8(to_jcs(&v).unwrap()).unwrap();
        assert_eq!(out, "{\"\u{20ac}\":1,\"\u{1f600}\":2,\"\u{fb33}\":3}");
        let v = parse_strict(b"[1e21,1e-7,-0.0,100.0]").unwrap();
        assert_eq!(to_jcs(&v).unwrap(), b"[1e+21,1e-7,0,100]");
    }

    // === Properties ===

    use proptest::prelude::*;

    /// Any JSON value: safe integers, finite floats outside the band JCS would print as an
    /// unsafe integer, strings with escapes and non-ASCII, nested arrays and objects.
    fn json() -> impl Strategy<Value = Value> {
        let max = MAX_SAFE_INTEGER as i64;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-max..=max).prop_map(Value::from),
            (-1e15f64..1e15).prop_map(Value::from),
            (21i32..300, any::<bool>())
                .prop_map(|(e, neg)| Value::from(if neg { -1.0 } else { 1.0 } * 10f64.powi(e))),
            "\\PC{0,12}".prop_map(Value::String),
            "[\"\\\\/\u{0}-\u{1f}\u{7f}\u{2028}\u{fffd}\u{1f600}a]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn has_float(value: &Value) -> bool {
        match value {
            Value::Number(n) => n.is_f64(),
            Value::Array(items) => items.iter().any(has_float),
            Value::Object(map) => map.values().any(has_float),
            _ => false,
        }
    }

    /// Prints `value` with object members in an order and whitespace chosen by `seed`.
    fn print_shuffled(value: &Value, seed: &mut u64, out: &mut String) {
        fn next(seed: &mut u64, n: usize) -> usize {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 33) as usize) % n.max(1)
        }
        let space = |seed: &mut u64| [" ", "", "\n", "\t", "\r\n  "][next(seed, 5)];
        match value {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(space(seed));
                    print_shuffled(item, seed, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                for i in (1..entries.len()).rev() {
                    entries.swap(i, next(seed, i + 1));
                }
                out.push('{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(space(seed));
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push_str(space(seed));
                    out.push(':');
                    print_shuffled(v, seed, out);
                }
                out.push_str(space(seed));
                out.push('}');
            }
            scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
        }
    }

    proptest! {
        /// The canonical bytes of any value re-parse strictly, are a fixed point, and (with no
        /// float, whose integral values read back as integers) give back the same value.
        #[test]
        fn jcs_round_trips(value in json()) {
            let jcs = to_jcs(&value).unwrap();
            let again = parse_strict(&jcs).unwrap();
            prop_assert_eq!(to_jcs(&again).unwrap(), jcs);
            if !has_float(&value) {
                prop_assert_eq!(again, value);
            }
        }

        /// The same document with shuffled member order and whitespace has the same hash.
        #[test]
        fn hash_ignores_member_order_and_whitespace(value in json(), seed in any::<u64>()) {
            let mut text = String::new();
            print_shuffled(&value, &mut seed.clone(), &mut text);
            let reparsed = parse_strict(text.as_bytes()).unwrap();
            prop_assert_eq!(
                crate::contract::hash_value(&reparsed).unwrap(),
                crate::contract::hash_value(&value).unwrap()
            );
        }

        /// A real contract, shuffled and re-spaced, still validates with the same hash; a
        /// changed value changes it.
        #[test]
        fn contract_hash_is_stable_under_reformatting(seed in any::<u64>(), ttl in 1u64..=86400) {
            use crate::contract::Contract;
            let original = include_bytes!("../../examples/policies/1password-writer.json");
            let contract = Contract::from_slice(original).unwrap();
            let mut text = String::new();
            print_shuffled(contract.value(), &mut seed.clone(), &mut text);
            let shuffled = Contract::from_slice(text.as_bytes()).unwrap();
            prop_assert_eq!(shuffled.hash(), contract.hash());
            let mut changed = contract.value().clone();
            changed["cst_constraints"]["max_ttl_seconds"] = ttl.into();
            let changed = Contract::from_value(changed).unwrap();
            prop_assert_eq!(changed.hash() == contract.hash(), ttl == 600);
        }
    }

    #[test]
    fn field_errors_name_the_pointer() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            n: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            list: Vec<Inner>,
        }
        let err = from_slice_strict::<Outer>(br#"{"list":[{"n":1},{"n":"x"}]}"#).unwrap_err();
        assert_eq!(err.pointer, "/list/1/n");
    }
}
