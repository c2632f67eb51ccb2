use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

fn key() -> SigningKey {
    claw_policy::keys::generate()
}

fn checkpoint() -> Checkpoint {
    Checkpoint::new("clawproxy/p01020304", 42, crate::merkle::leaf_hash(b"root"))
}

fn verifier(name: &str, key: &SigningKey) -> NoteVerifier {
    NoteVerifier::new(name, key.verifying_key())
}

/// Replaces the base64 signature of signature line `line` with `f(raw bytes)`.
fn with_signature(note: &str, line: usize, f: impl Fn(&mut Vec<u8>)) -> String {
    let split = note.rfind("\n\n").unwrap() + 2;
    let mut lines: Vec<String> = note[split..].lines().map(str::to_owned).collect();
    let (head, b64) = lines[line].rsplit_once(' ').unwrap();
    let mut raw = STANDARD.decode(b64).unwrap();
    f(&mut raw);
    lines[line] = format!("{head} {}", STANDARD.encode(raw));
    format!("{}{}\n", &note[..split], lines.join("\n"))
}

// === Round trips and tampering ===

#[test]
fn checkpoint_round_trip() {
    let key = key();
    let cp = checkpoint();
    let note = sign_checkpoint(&cp, &cp.origin, &key);
    assert!(note.starts_with(&cp.body()));
    assert!(note.contains("\n\n\u{2014} clawproxy/p01020304 "));
    let v = verifier(&cp.origin, &key);
    assert_eq!(
        open_checkpoint(&note, std::slice::from_ref(&v)),
        Ok(cp.clone())
    );
    let signed = open_note(&note, std::slice::from_ref(&v)).unwrap();
    assert_eq!(signed.text, cp.body());
    assert_eq!(signed.verified, vec![cp.origin.clone()]);
    assert_eq!(signed.signatures.len(), 1);
    assert_eq!(signed.signatures[0].key_id, key_id(&cp.origin, &v.key));

    let mut with_ext = cp.clone();
    with_ext.extensions = vec!["ext one".into(), "ext-two".into()];
    let note = sign_checkpoint(&with_ext, &cp.origin, &key);
    assert_eq!(open_checkpoint(&note, &[v]), Ok(with_ext));
}

#[test]
fn tampered_text_or_signature_is_rejected() {
    let key = key();
    let cp = checkpoint();
    let note = sign_checkpoint(&cp, &cp.origin, &key);
    let v = [verifier(&cp.origin, &key)];
    let bad = NoteError::BadSignature(cp.origin.clone());
    assert_eq!(
        open_checkpoint(&note.replace("\n42\n", "\n43\n"), &v),
        Err(bad.clone())
    );
    let other_root = STANDARD.encode(crate::merkle::leaf_hash(b"other"));
    let tampered = note.replace(&STANDARD.encode(cp.root), &other_root);
    assert_eq!(open_checkpoint(&tampered, &v), Err(bad.clone()));
    for byte in [4, 20, 67] {
        let tampered = with_signature(&note, 0, |raw| raw[byte] ^= 0x10);
        assert_eq!(
            open_checkpoint(&tampered, &v),
            Err(bad.clone()),
            "byte {byte}"
        );
    }
    // A signature cut or padded is a failed signature by a known key.
    let tampered = with_signature(&note, 0, |raw| raw.truncate(40));
    assert_eq!(open_checkpoint(&tampered, &v), Err(bad.clone()));
    let tampered = with_signature(&note, 0, |raw| raw.push(0));
    assert_eq!(open_checkpoint(&tampered, &v), Err(bad.clone()));
    // A different key id makes the line unknown: nothing verifies.
    let tampered = with_signature(&note, 0, |raw| raw[0] ^= 1);
    assert_eq!(open_checkpoint(&tampered, &v), Err(NoteError::Unverified));
    // Another key under the same name: unknown key id, ignored, nothing verifies.
    let stranger = [verifier(&cp.origin, &self::key())];
    assert_eq!(
        open_checkpoint(&note, &stranger),
        Err(NoteError::Unverified)
    );
    assert_eq!(open_checkpoint(&note, &[]), Err(NoteError::Unverified));
}

#[test]
fn a_failing_known_signature_is_fatal_even_next_to_a_good_one() {
    let (log, witness) = (key(), key());
    let cp = checkpoint();
    let note = sign_checkpoint(&cp, &cp.origin, &log);
    let witness_line = sign_note(&cp.body(), "witness.example/w", &witness);
    let two = format!(
        "{note}{}",
        &witness_line[witness_line.rfind('\u{2014}').unwrap()..]
    );
    let both = [
        verifier(&cp.origin, &log),
        verifier("witness.example/w", &witness),
    ];
    let signed = open_note(&two, &both).unwrap();
    assert_eq!(
        signed.verified,
        vec![cp.origin.clone(), "witness.example/w".into()]
    );
    let broken = with_signature(&two, 1, |raw| raw[10] ^= 1);
    assert_eq!(
        open_note(&broken, &both),
        Err(NoteError::BadSignature("witness.example/w".into()))
    );
    // Only the log's own signature may vouch for its checkpoint.
    let only_witness = [verifier("witness.example/w", &witness)];
    assert_eq!(
        open_checkpoint(&two, &only_witness),
        Err(NoteError::NotSignedByOrigin(cp.origin.clone()))
    );
}

#[test]
fn many_signatures_are_accepted_and_absurd_counts_refused() {
    let cp = checkpoint();
    let keys: Vec<SigningKey> = (0..20).map(|_| key()).collect();
    let mut note = sign_checkpoint(&cp, &cp.origin, &keys[0]);
    let mut verifiers = vec![verifier(&cp.origin, &keys[0])];
    for (i, k) in keys.iter().enumerate().skip(1) {
        let name = format!("witness.example/{i}");
        let line = sign_note(&cp.body(), &name, k);
        note.push_str(&line[line.rfind('\u{2014}').unwrap()..]);
        verifiers.push(verifier(&name, k));
    }
    let signed = open_note(&note, &verifiers).unwrap();
    assert_eq!(signed.verified.len(), 20);
    assert_eq!(open_checkpoint(&note, &verifiers), Ok(cp.clone()));

    let line = note[note.rfind('\u{2014}').unwrap()..].to_owned();
    let mut many = sign_checkpoint(&cp, &cp.origin, &keys[0]);
    for _ in 1..MAX_SIGNATURES {
        many.push_str(&line);
    }
    assert!(
        open_note(&many, &verifiers).is_ok(),
        "{MAX_SIGNATURES} lines are fine"
    );
    many.push_str(&line);
    assert_eq!(
        open_note(&many, &verifiers),
        Err(NoteError::TooManySignatures)
    );
    let huge = format!("{}\n\n{}", "a".repeat(MAX_NOTE_BYTES), &line);
    assert_eq!(
        open_note(&huge, &verifiers),
        Err(NoteError::TooLarge(huge.len()))
    );
}

#[test]
fn control_characters_are_rejected_even_when_signed() {
    let key = key();
    let v = [verifier("example.com/n", &key)];
    for c in ['\r', '\t', '\u{0}', '\u{7}', '\u{7f}', '\u{85}'] {
        let text = format!("line one{c}\nline two\n");
        // Signed directly, bypassing sign_note's debug check.
        let sig = key.sign(text.as_bytes());
        let mut raw = key_id("example.com/n", &key.verifying_key()).to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        let note = format!("{text}\n\u{2014} example.com/n {}\n", STANDARD.encode(raw));
        assert_eq!(
            open_note(&note, &v),
            Err(NoteError::ControlCharacter(u32::from(c))),
            "{c:?}"
        );
    }
    let cp = checkpoint();
    let note = sign_checkpoint(&cp, &cp.origin, &key).replace("\n\n", "\r\n\n");
    assert!(matches!(
        open_note(&note, &v),
        Err(NoteError::ControlCharacter(0x0d))
    ));
}

#[test]
fn malformed_notes_are_rejected() {
    let key = key();
    let name = "example.com/n";
    let v = [verifier(name, &key)];
    let note = sign_note("hello\n", name, &key);
    assert!(open_note(&note, &v).is_ok());
    let sig = note.rsplit_once(' ').unwrap().1.trim_end().to_owned();
    let cases = [
        note.trim_end().to_owned(),                 // no final newline
        note.replacen("\n\n", "\n", 1),             // no blank line
        note.replace('\u{2014}', "-"),              // not an em dash
        note.replace("\u{2014} ", "\u{2014}"),      // no space after the dash
        note.replace(&format!(" {sig}"), ""),       // no signature
        note.replace(&format!(" {sig}"), " "),      // empty signature
        note.replace(&sig, &sig.replace('=', "")),  // unpadded base64
        note.replace(&sig, &format!("{sig}=")),     // extra padding
        note.replace(&sig, "!!!!"),                 // not base64
        note.replace(&sig, "AAAAAA=="),             // 4 bytes: key id only
        note.replace(name, "example.com/a b"),      // space in the name
        note.replace(name, "example.com/a+b"),      // plus in the name
        note.replace(name, "example.com/a\u{a0}b"), // Unicode space in the name
        format!("{note}\n"),                        // trailing blank line
        format!("{note}{}", "\u{2014} x\n"),        // a line without signature
        note.replace("\n\n", "\n\n\n"),             // empty signature line
    ];
    for (i, case) in cases.iter().enumerate() {
        let result = open_note(case, &v);
        assert!(result.is_err(), "case {i} opened: {case:?}");
        assert_ne!(
            result,
            Err(NoteError::Unverified),
            "case {i} must be malformed: {case:?}"
        );
    }
}

#[test]
fn checkpoint_bodies_are_parsed_strictly() {
    let root = STANDARD.encode([7u8; 32]);
    let ok = |text: &str| Checkpoint::parse_body(text);
    let max = ok(&format!("o\n18446744073709551615\n{root}\n")).unwrap();
    assert_eq!(max.size, u64::MAX);
    assert_eq!(ok(&format!("o\n0\n{root}\n")).unwrap().size, 0);
    assert_eq!(
        ok(&format!("o\n1\n{root}\nx y\n")).unwrap().extensions,
        vec!["x y".to_owned()]
    );
    let short = STANDARD.encode([7u8; 31]);
    let long = STANDARD.encode([7u8; 33]);
    let unpadded = root.trim_end_matches('=').to_owned();
    for text in [
        format!("o\n1\n{root}"),                      // no final newline
        format!("\n1\n{root}\n"),                     // empty origin
        format!("o o\n1\n{root}\n"),                  // space in origin
        format!("o+1\n1\n{root}\n"),                  // plus in origin
        format!("o\n01\n{root}\n"),                   // leading zero
        format!("o\n+1\n{root}\n"),                   // sign
        format!("o\n-1\n{root}\n"),                   // negative
        format!("o\n1.0\n{root}\n"),                  // not an integer
        format!("o\n18446744073709551616\n{root}\n"), // beyond u64
        format!("o\n\n{root}\n"),                     // empty size
        format!("o\n1\n{short}\n"),                   // 31 bytes
        format!("o\n1\n{long}\n"),                    // 33 bytes
        format!("o\n1\n{unpadded}\n"),                // not canonical base64
        "o\n1\n".to_owned(),                          // no root
        format!("o\n1\n{root}\n\nx\n"),               // empty extension line
        format!("o\n1\n{root}\nx\u{7}\n"),            // control character
    ] {
        assert!(ok(&text).is_err(), "accepted {text:?}");
    }
}

// === Cosignatures ===

#[test]
fn cosignature_round_trip() {
    let (log, witness) = (key(), key());
    let cp = checkpoint();
    let note = sign_checkpoint(&cp, &cp.origin, &log);
    let cosigned = cosign(&note, "witness.example/w1", &witness, 1_700_000_000).unwrap();
    let w = verifier("witness.example/w1", &witness);
    assert_eq!(verify_cosignature(&cosigned, &w), Ok(1_700_000_000));
    // The cosignature's key id is type 0x04: open_note ignores it, even given the witness key.
    let both = [verifier(&cp.origin, &log), w.clone()];
    let signed = open_note(&cosigned, &both).unwrap();
    assert_eq!(signed.verified, vec![cp.origin.clone()]);
    assert_eq!(signed.signatures[1].cosignature_time(), Some(1_700_000_000));
    assert_eq!(open_checkpoint(&cosigned, &both), Ok(cp.clone()));
    assert_eq!(
        open_note(&cosigned, std::slice::from_ref(&w)),
        Err(NoteError::Unverified)
    );

    let bad = NoteError::BadSignature("witness.example/w1".into());
    let later = with_signature(&cosigned, 1, |raw| raw[11] ^= 1); // the timestamp
    assert_eq!(verify_cosignature(&later, &w), Err(bad.clone()));
    let flipped = with_signature(&cosigned, 1, |raw| raw[40] ^= 1); // the signature
    assert_eq!(verify_cosignature(&flipped, &w), Err(bad.clone()));
    let text = cosigned.replace("\n42\n", "\n43\n");
    assert_eq!(verify_cosignature(&text, &w), Err(bad));
    assert_eq!(
        verify_cosignature(&note, &w),
        Err(NoteError::NoCosignature("witness.example/w1".into()))
    );
    let stranger = verifier("witness.example/w1", &key());
    assert!(matches!(
        verify_cosignature(&cosigned, &stranger),
        Err(NoteError::NoCosignature(_))
    ));
    // A plain 0x01 signature is not a cosignature.
    assert!(cosignature_key_id("w", &w.key) != key_id("w", &w.key));
    assert!(cosign("not a note", "w", &witness, 1).is_err());
}

#[test]
fn vkeys_round_trip_and_are_checked() {
    let k = key().verifying_key();
    let text = vkey("example.com/k", &k);
    assert_eq!(parse_vkey(&text), Ok(NoteVerifier::new("example.com/k", k)));
    let co = cosignature_vkey("example.com/k", &k);
    assert_eq!(parse_cosignature_vkey(&co).unwrap().key, k);
    assert!(parse_vkey(&co).is_err(), "a 0x04 key is not a 0x01 key");
    assert!(parse_cosignature_vkey(&text).is_err());
    let (name, rest) = text.split_once('+').unwrap();
    let (id, b64) = rest.split_once('+').unwrap();
    assert!(parse_vkey(&format!("{name}+{}+{b64}", id.to_uppercase())).is_ok());
    for bad in [
        format!("other.example+{id}+{b64}"),
        format!("{name}+00000000+{b64}"),
        format!("{name}+{}+{b64}", &id[..6]),
        format!("{name}+{id}"),
        format!("{name}+{id}+{}", &b64[..20]),
        format!("{name}+{id}+!{b64}"),
        format!("a b+{id}+{b64}"),
        format!("+{id}+{b64}"),
    ] {
        assert!(parse_vkey(&bad).is_err(), "accepted {bad}");
    }
    // The identity point is a small-order key: refused even with a matching id.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = VerifyingKey::from_bytes(&identity).unwrap();
    assert!(weak.is_weak());
    assert!(parse_vkey(&vkey("w", &weak)).is_err());
}

// === C2SP vectors ===

fn vectors() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/c2sp");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "test vectors missing at {} (CI is set)",
        dir.display()
    );
    eprintln!("skipping: test vectors not found at {}", dir.display());
    None
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn example(index: &Value, id: &str) -> Value {
    index["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("example {id}"))
        .clone()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn c2sp_signed_note_example() {
    let Some(dir) = vectors() else { return };
    let index: Value = serde_json::from_str(&read(&dir, "index.json")).unwrap();
    let ex = example(&index, "signed-note-example");
    let vkey_text = read(&dir, "signed-note-example.vkey");
    assert_eq!(vkey_text, ex["vkey"].as_str().unwrap());
    let v = parse_vkey(&vkey_text).unwrap();
    assert_eq!(v.name, "example.com/foo");
    assert_eq!(
        hex(v.key.as_bytes()),
        ex["ed25519_public_key_hex"].as_str().unwrap()
    );
    assert_eq!(hex(&key_id(&v.name, &v.key)), "530d903a");
    assert_eq!(
        vkey(&v.name, &v.key),
        vkey_text,
        "vkey re-encodes byte for byte"
    );

    let note = read(&dir, "signed-note-example.note");
    assert_eq!(note, ex["note"].as_str().unwrap());
    let signed = open_note(&note, std::slice::from_ref(&v)).unwrap();
    assert_eq!(signed.text, ex["note_text"].as_str().unwrap());
    assert_eq!(signed.verified, vec!["example.com/foo".to_owned()]);
    assert_eq!(
        hex(&signed.signatures[0].signature),
        ex["signatures"][0]["ed25519_signature_hex"]
            .as_str()
            .unwrap()
    );

    let bad = Err(NoteError::BadSignature("example.com/foo".into()));
    let v = std::slice::from_ref(&v);
    assert_eq!(
        open_note(&note.replace("example message", "example massage"), v),
        bad
    );
    assert_eq!(open_note(&note.replace("message.", "message!"), v), bad);
    assert_eq!(
        open_note(&with_signature(&note, 0, |raw| raw[30] ^= 4), v),
        bad
    );
    assert_eq!(
        open_note(&note.replace("message.\n", "message.\n\n"), v),
        bad
    );
    // Not a checkpoint, so open_checkpoint refuses it after the signature verified.
    assert!(matches!(
        open_checkpoint(&note, v),
        Err(NoteError::Malformed(_))
    ));
}

#[test]
fn c2sp_checkpoint_example() {
    let Some(dir) = vectors() else { return };
    let index: Value = serde_json::from_str(&read(&dir, "index.json")).unwrap();
    let ex = example(&index, "tlog-checkpoint-example");
    let note = read(&dir, "tlog-checkpoint-example.note");
    let (cp, parsed) = parse_checkpoint(&note).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(
        hex(&cp.root),
        ex["checkpoint"]["root_hash_hex"].as_str().unwrap()
    );
    assert!(cp.extensions.is_empty());
    assert_eq!(cp.body(), ex["note_text"].as_str().unwrap());
    assert_eq!(parsed.signatures.len(), 1);
    assert_eq!(parsed.signatures[0].name, "example.com/behind-the-sofa");
    assert_eq!(hex(&parsed.signatures[0].key_id), "033de0ae");

    let foo = parse_vkey(&read(&dir, "signed-note-example.vkey")).unwrap();
    assert_eq!(
        open_checkpoint(&note, std::slice::from_ref(&foo)),
        Err(NoteError::Unverified)
    );
    assert_eq!(open_note(&note, &[foo]), Err(NoteError::Unverified));
    // A key under the origin's name but with another key id is unknown too.
    let guess = NoteVerifier::new("example.com/behind-the-sofa", key().verifying_key());
    assert_eq!(open_checkpoint(&note, &[guess]), Err(NoteError::Unverified));
}

#[test]
fn c2sp_cosigned_example() {
    let Some(dir) = vectors() else { return };
    let index: Value = serde_json::from_str(&read(&dir, "index.json")).unwrap();
    let ex = example(&index, "tlog-cosignature-example");
    let note = read(&dir, "tlog-cosignature-example.note");
    let (cp, parsed) = parse_checkpoint(&note).unwrap();
    assert_eq!(
        (cp.origin.as_str(), cp.size),
        ("example.com/behind-the-sofa", 20852163)
    );
    assert_eq!(parsed.signatures.len(), 2);
    let w = &parsed.signatures[1];
    assert_eq!(w.name, "witness.example.com/w1");
    assert_eq!(hex(&w.key_id), "8d66cf3f");
    assert_eq!(w.cosignature_time(), Some(1679315147));
    assert_eq!(parsed.signatures[0].cosignature_time(), None);
    assert_eq!(
        cosignature_message(&parsed.text, 1679315147),
        ex["cosigned_message_per_spec"].as_str().unwrap()
    );
    let foo = parse_vkey(&read(&dir, "signed-note-example.vkey")).unwrap();
    assert_eq!(open_note(&note, &[foo]), Err(NoteError::Unverified));

    // Our own log signature added to the same body opens, and both foreign lines (the
    // unknown log key and the witness) are ignored.
    let key = key();
    let ours = sign_checkpoint(&cp, &cp.origin, &key);
    let foreign = &note[note.rfind("\n\n").unwrap() + 2..];
    let mixed = format!("{ours}{foreign}");
    let v = [verifier(&cp.origin, &key)];
    let signed = open_note(&mixed, &v).unwrap();
    assert_eq!(signed.signatures.len(), 3);
    assert_eq!(signed.verified, vec![cp.origin.clone()]);
    assert_eq!(open_checkpoint(&mixed, &v), Ok(cp));
}
