//! Mutations: a random stack of one to a few edits per input.
//!
//! Byte-level edits (bit flips, interesting bytes, insert, delete, duplicate, swap, truncate),
//! two-input edits (splice, chunk insert), token edits (the target's dictionary plus
//! [`COMMON`]), and edits that know a little about our formats: replace a number with a huge
//! or unsafe one, wrap a range in deep `[`/`{` nesting, insert a long run, rewrite the contents
//! of a JSON string, and mutate *inside* a base64 run (decode, edit, re-encode), which is what
//! reaches the JSON inside a token or the bytes inside a signature line.

use base64::Engine;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::rng::Rng;

/// Tokens every target gets: path and encoding tricks, JSON oddities, note syntax, controls.
pub const COMMON: &[&[u8]] = &[
    b"%2e",
    b"%2E",
    b"%2e%2e",
    b"%2f",
    b"%2F",
    b"%5c",
    b"%00",
    b"%25",
    b"%252e",
    b"%c0%ae",
    b"%",
    b"..",
    b"/..",
    b"/../",
    b"./",
    b"//",
    b"\\",
    b"\\\\",
    b";",
    b"\\u0000",
    b"\\ud800",
    b"\\udc00\\ud800",
    b"\\u00e9",
    b"\\\"",
    b"\"",
    b"\x00",
    b"\x7f",
    b"\xc2\x85",
    b"\xe2\x80\xa8",
    b"\xef\xbb\xbf",
    b"\xc0\xae",
    b"\xff",
    b"\xe2\x80\x94 ",
    b"\n",
    b"\n\n",
    b"\r\n",
    b"\t",
    b" ",
    b":",
    b"@",
    b"?",
    b"#",
    b"&",
    b"=",
    b"==",
    b"+",
    b"-",
    b"_",
    b"null",
    b"true",
    b"false",
    b"[]",
    b"{}",
    b"{\"a\":1}",
    b",",
    b"\"\":",
    b"-0",
    b"1.0",
    b"1e999",
    b"9007199254740992",
    b"9007199254740993.0",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1e21",
];

/// Numbers that sit on a boundary somewhere: JSON's safe range, u64, u16 ports, TTLs.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "00",
    "01",
    "0.0",
    "1.5",
    "-1.5",
    "1e2",
    "1E+2",
    "65535",
    "65536",
    "86400",
    "86401",
    "2147483648",
    "4294967295",
    "4294967296",
    "9007199254740991",
    "9007199254740992",
    "-9007199254740992",
    "9007199254740993.0",
    "99999999999999999999.0",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1e21",
    "1e308",
    "1e999",
    "-1e999",
    "1.7976931348623157e308",
    "5e-324",
    "1e-400",
];

/// Bytes worth writing over another: delimiters of every format we parse, and UTF-8 edges.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xc0, 0xe2, 0xff, b'"', b'\\', b'.', b'/', b'%', b'{', b'}', b'[',
    b']', b':', b',', b'\n', b'\r', b' ', b'+', b'=', b'-', b'_', b'0', b'9', b'a', b'A', b'@',
    b'?', b'#', b';', b'&',
];

/// Depths around serde_json's recursion limit (128) and far past it.
const DEPTHS: &[usize] = &[2, 16, 64, 126, 127, 128, 129, 200, 1000, 5000];

/// Lengths of inserted runs.
const RUNS: &[usize] = &[16, 64, 255, 256, 1024, 4096, 65536];

const ENGINES: [GeneralPurpose; 4] = [URL_SAFE_NO_PAD, STANDARD, STANDARD_NO_PAD, URL_SAFE];

/// Applies a random stack of one to five mutations to `data`, then caps it at `max_len`.
/// `other` is a second corpus input for splices; `dictionary` the target's own tokens.
pub fn mutate(
    rng: &mut Rng,
    data: &mut Vec<u8>,
    other: &[u8],
    dictionary: &[&[u8]],
    max_len: usize,
) {
    // Mostly one edit, sometimes a stack: 1 (1/2), 2 (1/4), 3 (1/8), ...
    let rounds = 1 + (rng.next_u64() | (1 << 4)).trailing_zeros() as usize;
    for _ in 0..rounds {
        one(rng, data, other, dictionary, max_len, true);
    }
    data.truncate(max_len);
}

fn one(
    rng: &mut Rng,
    data: &mut Vec<u8>,
    other: &[u8],
    dictionary: &[&[u8]],
    max_len: usize,
    nested: bool,
) {
    let room = max_len.saturating_sub(data.len());
    match rng.below(17) {
        0 => flip_bit(rng, data),
        1 => {
            if data.is_empty() {
                data.push(*rng.pick(INTERESTING));
            } else {
                let at = rng.below(data.len());
                data[at] = if rng.one_in(2) {
                    *rng.pick(INTERESTING)
                } else {
                    rng.byte()
                };
            }
        }
        2 => {
            let at = rng.below(data.len() + 1);
            let b = if rng.one_in(2) {
                *rng.pick(INTERESTING)
            } else {
                rng.byte()
            };
            data.insert(at, b);
        }
        3 => {
            if !data.is_empty() {
                let at = rng.below(data.len());
                let len = rng.between(1, (data.len() - at).min(16));
                data.drain(at..at + len);
            }
        }
        4 => {
            if !data.is_empty() {
                let at = rng.below(data.len());
                let len = rng.between(1, (data.len() - at).min(64)).min(room.max(1));
                let chunk = data[at..at + len].to_vec();
                let to = rng.below(data.len() + 1);
                let times = if rng.one_in(4) { rng.between(2, 32) } else { 1 };
                for _ in 0..times {
                    splice_in(data, to, &chunk);
                }
            }
        }
        5 => {
            // Prefix of this input, suffix of the other.
            let cut = rng.below(data.len() + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        6 => {
            if !other.is_empty() {
                let at = rng.below(other.len());
                let len = rng.between(1, (other.len() - at).min(128));
                let to = rng.below(data.len() + 1);
                splice_in(data, to, &other[at..at + len]);
            }
        }
        7 | 8 => {
            let token = token(rng, dictionary);
            let to = rng.below(data.len() + 1);
            splice_in(data, to, token);
        }
        9 => {
            let token = token(rng, dictionary);
            let at = rng.below(data.len() + 1);
            let end = (at + token.len()).min(data.len());
            data.splice(at..end, token.iter().copied());
        }
        10 => replace_number(rng, data),
        11 => nest(rng, data, room),
        12 => {
            let len = (*rng.pick(RUNS)).min(room);
            let b = if rng.one_in(2) {
                *rng.pick(INTERESTING)
            } else {
                rng.byte()
            };
            let to = rng.below(data.len() + 1);
            data.splice(to..to, std::iter::repeat_n(b, len));
        }
        13 | 14 if nested => {
            if !inside_base64(rng, data, other, dictionary, max_len) {
                flip_bit(rng, data);
            }
        }
        15 => json_string(rng, data, dictionary, room),
        _ => {
            if data.len() >= 2 && rng.one_in(2) {
                // Swap two chunks.
                let a = rng.below(data.len());
                let b = rng.below(data.len());
                let (a, b) = (a.min(b), a.max(b));
                let len = rng.between(1, (b - a).clamp(1, 32)).min(data.len() - b);
                if a + len <= b {
                    let first = data[a..a + len].to_vec();
                    let second = data[b..b + len].to_vec();
                    data[a..a + len].copy_from_slice(&second);
                    data[b..b + len].copy_from_slice(&first);
                }
            } else {
                let keep = rng.below(data.len() + 1);
                data.truncate(keep);
            }
        }
    }
}

fn flip_bit(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let at = rng.below(data.len());
        data[at] ^= 1 << rng.below(8);
    }
}

fn splice_in(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    data.splice(at..at, bytes.iter().copied());
}

fn token<'a>(rng: &mut Rng, dictionary: &[&'a [u8]]) -> &'a [u8] {
    if !dictionary.is_empty() && rng.below(3) < 2 {
        dictionary[rng.below(dictionary.len())]
    } else {
        COMMON[rng.below(COMMON.len())]
    }
}

/// Replaces one number (a run of `0-9 . e E + -` starting at a digit) with a boundary value,
/// or inserts one if there is no number.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let number = rng.pick(NUMBERS).as_bytes();
    let start = rng.below(data.len() + 1);
    let Some(at) = data[start..]
        .iter()
        .position(u8::is_ascii_digit)
        .map(|i| start + i)
        .or_else(|| data.iter().position(u8::is_ascii_digit))
    else {
        let to = rng.below(data.len() + 1);
        splice_in(data, to, number);
        return;
    };
    // Back up to the start of the number (sign and exponent included), then take it whole.
    let mut at = at;
    while at > 0 && (data[at - 1].is_ascii_digit() || b".eE+-".contains(&data[at - 1])) {
        at -= 1;
    }
    let len = data[at + 1..]
        .iter()
        .position(|b| !(b.is_ascii_digit() || b".eE+-".contains(b)))
        .map_or(data.len() - at, |n| n + 1);
    data.splice(at..at + len, number.iter().copied());
}

/// Wraps a random range in `depth` levels of arrays or objects.
fn nest(rng: &mut Rng, data: &mut Vec<u8>, room: usize) {
    let (open, close): (&[u8], &[u8]) = match rng.below(3) {
        0 => (b"[", b"]"),
        1 => (b"{\"a\":", b"}"),
        _ => (b"[{\"a\":", b"}]"),
    };
    let depth = (*rng.pick(DEPTHS))
        .min(room / (open.len() + close.len()))
        .max(1);
    let start = rng.below(data.len() + 1);
    let end = if rng.one_in(2) {
        data.len()
    } else {
        rng.between(start, data.len())
    };
    let mut out = Vec::with_capacity(data.len() + depth * (open.len() + close.len()));
    out.extend_from_slice(&data[..start]);
    for _ in 0..depth {
        out.extend_from_slice(open);
    }
    out.extend_from_slice(&data[start..end]);
    for _ in 0..depth {
        out.extend_from_slice(close);
    }
    out.extend_from_slice(&data[end..]);
    *data = out;
}

/// Rewrites the contents of one JSON string (between a `"` and the next `"`).
fn json_string(rng: &mut Rng, data: &mut Vec<u8>, dictionary: &[&[u8]], room: usize) {
    let quotes: Vec<usize> = data
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'"')
        .map(|(i, _)| i)
        .collect();
    if quotes.len() < 2 {
        return;
    }
    let q = rng.below(quotes.len() - 1);
    let (start, end) = (quotes[q] + 1, quotes[q + 1]);
    let replacement: Vec<u8> = match rng.below(4) {
        0 => Vec::new(),
        1 => {
            let len = (*rng.pick(RUNS)).min(room + (end - start));
            vec![*rng.pick(b"aA0-._~/%\\"); len]
        }
        _ => token(rng, dictionary).to_vec(),
    };
    data.splice(start..end, replacement);
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+/=-_".contains(&b)
}

/// Decodes one base64 run of at least 8 characters, mutates the decoded bytes and re-encodes
/// them with the same alphabet and padding. False if there was no run that decodes.
fn inside_base64(
    rng: &mut Rng,
    data: &mut Vec<u8>,
    other: &[u8],
    dictionary: &[&[u8]],
    max_len: usize,
) -> bool {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if is_base64_byte(data[i]) {
            let start = i;
            while i < data.len() && is_base64_byte(data[i]) {
                i += 1;
            }
            if i - start >= 8 {
                runs.push((start, i));
            }
        } else {
            i += 1;
        }
    }
    if runs.is_empty() {
        return false;
    }
    let (start, end) = *rng.pick(&runs);
    let text = &data[start..end];
    let Some((engine, mut decoded)) = ENGINES
        .iter()
        .find_map(|e| e.decode(text).ok().map(|d| (e, d)))
    else {
        return false;
    };
    one(rng, &mut decoded, other, dictionary, max_len, false);
    let encoded = engine.encode(&decoded);
    data.splice(start..end, encoded.into_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_inputs_and_respect_the_cap() {
        let mut rng = Rng::new(7);
        let seed = br#"{"a":[1,2,"eyJhbGciOiJFZERTQSJ9"],"b":"x"}"#.to_vec();
        let mut changed = 0;
        for _ in 0..5000 {
            let mut data = seed.clone();
            mutate(&mut rng, &mut data, b"other input", &[b"tok"], 300);
            assert!(data.len() <= 300);
            changed += usize::from(data != seed);
        }
        // Some stacks cancel out (e.g. a truncation to full length), but few.
        assert!(changed > 4500, "{changed}");
    }

    #[test]
    fn base64_runs_are_mutated_inside() {
        let mut rng = Rng::new(1);
        let token = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA"}"#);
        let mut decodes = 0;
        for _ in 0..200 {
            let mut data = format!("x.{token}.y").into_bytes();
            assert!(inside_base64(&mut rng, &mut data, b"", &[], 1000));
            let text = String::from_utf8(data).unwrap();
            let part = text.split('.').nth(1).unwrap();
            decodes += usize::from(URL_SAFE_NO_PAD.decode(part).is_ok());
        }
        // Re-encoded with the same engine, so the part still decodes (nearly) always.
        assert!(decodes > 190, "{decodes}");
    }

    #[test]
    fn numbers_are_replaced_whole() {
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let mut data = b"{\"n\":-12.5e3}".to_vec();
            replace_number(&mut rng, &mut data);
            let text = String::from_utf8(data).unwrap();
            assert!(text.starts_with("{\"n\":") && text.ends_with('}'), "{text}");
            assert!(!text.contains("12.5"), "{text}");
        }
    }
}
