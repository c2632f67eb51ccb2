//! `checkpoint`: C2SP signed notes, checkpoints, verifier keys and cosignatures.
//!
//! Invariants: a note that parses prints back to exactly its input (text, blank line, one
//! canonical line per signature); a checkpoint body that parses prints back to itself; only
//! the golden note (and the C2SP example note) opens under the known keys; a vkey that parses
//! round-trips; a parsed checkpoint cosigned by our witness key verifies with that key at
//! that time, and no input carries a cosignature by the log key (it never cosigns).

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use claw_verifier::checkpoint::{
    self, Checkpoint, NoteVerifier, cosign, open_checkpoint, open_note, parse_checkpoint,
    parse_cosignature_vkey, parse_note, parse_vkey, verify_cosignature,
};
use ed25519_dalek::SigningKey;

use super::{golden, text};
use crate::engine::{Target, Trace};

/// The target.
pub const TARGET: Target = Target {
    name: "checkpoint",
    about: "signed note / checkpoint / vkey parse, open under known keys, cosign + verify",
    max_len: 16 * 1024,
    dictionary: &[
        b"\xe2\x80\x94 ",
        b"\n\xe2\x80\x94 clawproxy/p63511cd3 ",
        b"clawproxy/p63511cd3",
        b"example.com/foo",
        b"+530d903a+",
        b"+00000000+",
        b"Af",
        b"BA",
        b"\n0\n",
        b"\n18446744073709551615\n",
        b"\n18446744073709551616\n",
        b"\n01\n",
        b"\n-1\n",
        b"\n+1\n",
        b"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        b"\xe2\x80\x83",
        b"\xc2\xa0",
    ],
    run,
};

/// The C2SP signed-note example's vkey and note (`shared/vectors/c2sp`, copied to the corpus).
const C2SP_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const C2SP_TEXT: &str = "This is an example message.\n";

/// Keys a note may be opened with: the golden log's and the C2SP example's.
fn verifiers() -> &'static [NoteVerifier; 2] {
    static VERIFIERS: OnceLock<[NoteVerifier; 2]> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        [
            golden().log_verifier.clone(),
            parse_vkey(C2SP_VKEY).expect("the C2SP example vkey parses"),
        ]
    })
}

/// Our witness: a fixed key named `witness.fuzz/w1`.
fn witness() -> &'static (SigningKey, NoteVerifier) {
    static WITNESS: OnceLock<(SigningKey, NoteVerifier)> = OnceLock::new();
    WITNESS.get_or_init(|| {
        let key = SigningKey::from_bytes(&[9; 32]);
        let verifier = NoteVerifier::new("witness.fuzz/w1", key.verifying_key());
        (key, verifier)
    })
}

fn golden_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        parse_note(&golden().checkpoint)
            .expect("the golden checkpoint parses")
            .text
    })
}

fn run(input: &[u8], trace: &mut Trace) {
    let text = text(input);
    let text = text.as_ref();

    let note = parse_note(text);
    trace.outcome("note", &note);
    if let Ok(note) = &note {
        let mut printed = format!("{}\n", note.text);
        for line in &note.signatures {
            let _ = line.cosignature_time();
            let mut raw = line.key_id.to_vec();
            raw.extend_from_slice(&line.signature);
            printed.push_str(&format!(
                "\u{2014} {} {}\n",
                line.name,
                STANDARD.encode(raw)
            ));
        }
        assert_eq!(
            printed, text,
            "a parsed note does not print back to its input"
        );
    }

    let body = Checkpoint::parse_body(text);
    trace.outcome("body", &body);
    if let Ok(body) = &body {
        assert_eq!(
            body.body(),
            text,
            "a checkpoint body does not print back to itself"
        );
    }

    let parsed = parse_checkpoint(text);
    trace.outcome("checkpoint", &parsed);
    if let Ok((cp, note)) = &parsed {
        assert_eq!(cp.body(), note.text);
        assert_eq!(Checkpoint::parse_body(&cp.body()).as_ref(), Ok(cp));
        cosigned(text, trace);
    }

    let opened = open_note(text, verifiers());
    trace.outcome("open", &opened);
    if let Ok(opened) = &opened {
        assert!(
            opened.text == golden_text() || opened.text == C2SP_TEXT,
            "a note no known key signed opened: {:?}",
            opened.text
        );
    }
    let cp = open_checkpoint(text, verifiers());
    trace.outcome("open_checkpoint", &cp);
    if let Ok(cp) = &cp {
        assert_eq!(cp.origin, golden().log_verifier.name);
        assert_eq!(cp.body(), golden_text());
    }
    let log_cosig = verify_cosignature(text, &golden().log_verifier);
    trace.outcome("log_cosignature", &log_cosig);
    assert!(log_cosig.is_err(), "the log key never cosigns");

    for (what, vkey) in [
        ("vkey", parse_vkey(text)),
        ("cosig_vkey", parse_cosignature_vkey(text)),
    ] {
        trace.outcome(what, &vkey);
        if let Ok(v) = vkey {
            let printed = if what == "vkey" {
                checkpoint::vkey(&v.name, &v.key)
            } else {
                checkpoint::cosignature_vkey(&v.name, &v.key)
            };
            // Name and key exactly; the key id in either case.
            let a: Vec<&str> = printed.splitn(3, '+').collect();
            let b: Vec<&str> = text.splitn(3, '+').collect();
            assert!(
                a.len() == 3 && a[0] == b[0] && a[1].eq_ignore_ascii_case(b[1]) && a[2] == b[2],
                "vkey {text:?} prints as {printed:?}"
            );
        }
    }
}

/// A checkpoint that parses can be cosigned, and the cosignature verifies at its time.
fn cosigned(note: &str, trace: &mut Trace) {
    let (key, verifier) = witness();
    let time = 1_795_428_650;
    let result = cosign(note, &verifier.name, key, time);
    trace.outcome("cosign", &result);
    if let Ok(cosigned) = result {
        assert_eq!(verify_cosignature(&cosigned, verifier), Ok(time));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_checkpoint_opens_and_the_c2sp_note_opens() {
        let cp = open_checkpoint(&golden().checkpoint, verifiers()).unwrap();
        assert!(cp.size > 0);
        let c2sp = format!(
            "{C2SP_TEXT}\n\u{2014} example.com/foo \
             Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
        );
        open_note(&c2sp, verifiers()).unwrap();
        for seed in [golden().checkpoint.as_str(), &c2sp, C2SP_VKEY] {
            run(seed.as_bytes(), &mut Trace::default());
        }
    }
}
