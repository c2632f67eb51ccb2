//! C2SP signed notes and checkpoints (Ed25519, signature type 0x01).
//!
//! A checkpoint body is `origin\nsize\nbase64(root)\n`; the note appends a blank line and one
//! line per signature, `— <name> base64(key id ‖ signature)`, where the key id is
//! `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`. Verifiers ignore signatures by unknown keys,
//! refuse a note whose known-key signature fails, and require at least one that verifies.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Most signature lines a note may carry.
const MAX_SIGNATURES: usize = 100;

/// Why a note or checkpoint was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// Not a well-formed note.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// No signature by a known key.
    #[error("no signature by a known key")]
    Unverified,
    /// A known key's signature does not verify.
    #[error("signature by {0} does not verify")]
    BadSignature(String),
}

/// A tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin, e.g. `clawproxy/p1a2b3c4d`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text that is signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a checkpoint body (extension lines are refused: we never write them).
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::Malformed(m.to_owned());
        let mut lines = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("text must end in a newline"))?
            .split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty() && !o.contains([' ', '+']))
            .ok_or_else(|| bad("bad origin"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad size"))?;
        let root: Hash = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("bad root hash"))?;
        if lines.next().is_some() {
            return Err(bad("unexpected extension lines"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// A key a note may be verified with.
#[derive(Clone, Debug)]
pub struct NoteVerifier {
    /// The key name (for a checkpoint: the origin).
    pub name: String,
    /// The Ed25519 key.
    pub key: VerifyingKey,
}

/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, 0x01]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// `name+hex(key id)+base64(0x01 ‖ public key)`.
pub fn vkey(name: &str, key: &VerifyingKey) -> String {
    let id: String = key_id(name, key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut raw = vec![0x01];
    raw.extend_from_slice(key.as_bytes());
    format!("{name}+{id}+{}", STANDARD.encode(raw))
}

/// Parses a vkey.
pub fn parse_vkey(text: &str) -> Result<NoteVerifier, NoteError> {
    let bad = |m: &str| NoteError::Malformed(m.to_owned());
    let mut parts = text.splitn(3, '+');
    let (name, id, key) = (parts.next(), parts.next(), parts.next());
    let (Some(name), Some(id), Some(key)) = (name, id, key) else {
        return Err(bad("vkey must be name+id+key"));
    };
    let raw = STANDARD
        .decode(key)
        .map_err(|_| bad("vkey key is not base64"))?;
    let (&[0x01], key) = raw.split_at(1) else {
        return Err(bad("vkey is not an Ed25519 key"));
    };
    let key = VerifyingKey::from_bytes(
        key.try_into()
            .map_err(|_| bad("vkey key is not 32 bytes"))?,
    )
    .map_err(|_| bad("vkey key is not a point"))?;
    let want: String = key_id(name, &key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if want != id {
        return Err(bad("vkey id does not match its key"));
    }
    Ok(NoteVerifier {
        name: name.to_owned(),
        key,
    })
}

/// Signs note `text` (ending in `\n`) as `name`.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    let sig = key.sign(text.as_bytes());
    let mut raw = key_id(name, &key.verifying_key()).to_vec();
    raw.extend_from_slice(&sig.to_bytes());
    format!("{text}\n\u{2014} {name} {}\n", STANDARD.encode(raw))
}

/// Checks a note's signatures and returns its text.
pub fn open_note(note: &str, verifiers: &[NoteVerifier]) -> Result<String, NoteError> {
    let bad = |m: &str| NoteError::Malformed(m.to_owned());
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad("control character in note"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no signature block"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    let sigs = sigs
        .strip_suffix('\n')
        .ok_or_else(|| bad("note must end in a newline"))?;
    let lines: Vec<&str> = sigs.split('\n').collect();
    if lines.is_empty() || lines.len() > MAX_SIGNATURES {
        return Err(bad("bad number of signatures"));
    }
    let mut verified = 0;
    for line in lines {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad("signature line must start with an em dash"))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| bad("signature line needs a name and a signature"))?;
        let raw = STANDARD
            .decode(sig)
            .map_err(|_| bad("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(bad("signature too short"));
        }
        let id: [u8; 4] = raw[..4].try_into().expect("length checked");
        let Some(verifier) = verifiers
            .iter()
            .find(|v| v.name == name && key_id(name, &v.key) == id)
        else {
            continue;
        };
        let ok = Signature::from_slice(&raw[4..])
            .is_ok_and(|s| verifier.key.verify_strict(text.as_bytes(), &s).is_ok());
        if !ok {
            return Err(NoteError::BadSignature(name.to_owned()));
        }
        verified += 1;
    }
    if verified == 0 {
        return Err(NoteError::Unverified);
    }
    Ok(text.to_owned())
}

/// Signs a checkpoint with the log key under the origin's name.
pub fn sign_checkpoint(checkpoint: &Checkpoint, key: &SigningKey) -> String {
    sign_note(&checkpoint.body(), &checkpoint.origin, key)
}

/// Verifies a checkpoint note and parses its body.
pub fn open_checkpoint(note: &str, verifiers: &[NoteVerifier]) -> Result<Checkpoint, NoteError> {
    Checkpoint::parse_body(&open_note(note, verifiers)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = claw_policy::keys::generate();
        let cp = Checkpoint {
            origin: "clawproxy/p01020304".into(),
            size: 42,
            root: [7; 32],
        };
        let note = sign_checkpoint(&cp, &key);
        let verifier = NoteVerifier {
            name: cp.origin.clone(),
            key: key.verifying_key(),
        };
        assert_eq!(
            open_checkpoint(&note, std::slice::from_ref(&verifier)).unwrap(),
            cp
        );
        let tampered = note.replace("\n42\n", "\n43\n");
        assert_eq!(
            open_checkpoint(&tampered, std::slice::from_ref(&verifier)),
            Err(NoteError::BadSignature(cp.origin.clone()))
        );
        let other = NoteVerifier {
            name: cp.origin.clone(),
            key: claw_policy::keys::generate().verifying_key(),
        };
        assert_eq!(open_checkpoint(&note, &[other]), Err(NoteError::Unverified));
        assert!(
            open_checkpoint(
                &note.replace("42", "4\u{7}2"),
                std::slice::from_ref(&verifier)
            )
            .is_err()
        );
        assert_eq!(
            parse_vkey(&vkey(&cp.origin, &verifier.key)).unwrap().key,
            verifier.key
        );
    }

    #[test]
    fn c2sp_vectors() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/c2sp");
        if !dir.is_dir() {
            assert!(std::env::var_os("CI").is_none(), "vectors missing");
            return;
        }
        let vkey_text = std::fs::read_to_string(dir.join("signed-note-example.vkey")).unwrap();
        let verifier = parse_vkey(vkey_text.trim()).unwrap();
        let note = std::fs::read_to_string(dir.join("signed-note-example.note")).unwrap();
        assert!(open_note(&note, std::slice::from_ref(&verifier)).is_ok());
        let checkpoint = std::fs::read_to_string(dir.join("tlog-checkpoint-example.note")).unwrap();
        assert_eq!(
            open_note(&checkpoint, std::slice::from_ref(&verifier)),
            Err(NoteError::Unverified)
        );
        let text = &checkpoint[..checkpoint.rfind("\n\n").unwrap() + 1];
        let parsed = Checkpoint::parse_body(text).unwrap();
        assert_eq!(
            (parsed.origin.as_str(), parsed.size),
            ("example.com/behind-the-sofa", 20852163)
        );
    }
}
