//! C2SP signed notes (`c2sp.org/signed-note`), checkpoints (`c2sp.org/tlog-checkpoint`) and
//! timestamped cosignatures (`c2sp.org/tlog-cosignature`), all Ed25519.
//!
//! A note is UTF-8 text ending in `\n` with no control character but `\n`, then a blank line,
//! then one line per signature: `— <name> base64(key id ‖ signature)` (U+2014 EM DASH and a
//! space). For an Ed25519 key (signature type 0x01) the key id is
//! `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]` and the signature covers the text. A
//! verifier key is written `name+hex(key id)+base64(0x01 ‖ public key)` (a "vkey").
//!
//! Opening a note ([`open_note`]) ignores signatures by unknown keys (unknown name or key id),
//! refuses the note if a known key's signature fails (even next to a good one), and requires at
//! least one known key's signature to verify. Every Ed25519 check is `verify_strict`. Up to
//! [`MAX_SIGNATURES`] lines are read (the spec asks verifiers to accept at least 16); more, or a
//! note over [`MAX_NOTE_BYTES`], is refused before any signature is checked.
//!
//! A checkpoint is a note whose text is `origin\nsize\nbase64(root)\n` plus optional extension
//! lines. Our logs use origin `clawproxy/<proxy id>` and sign under key name = origin;
//! [`open_checkpoint`] insists that a signature under the origin's own name verifies, so a
//! witness key alone cannot vouch for a log's tree.
//!
//! A cosignature (type 0x04) is a witness's statement "as of time t, this is the largest tree of
//! this log I have seen": key id `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`, signature
//! `u64 big-endian t ‖ Ed25519("cosignature/v1\ntime <t>\n" ‖ checkpoint text)`. Its key id
//! never equals the same key's 0x01 id, so [`open_note`] treats cosignatures as unknown keys and
//! [`verify_cosignature`] checks them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Most signature lines a note may carry (Go's `golang.org/x/mod/sumdb/note` uses the same
/// bound; the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Largest note accepted, in bytes: far above any checkpoint, far below a memory problem.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// Signature type of an Ed25519 note signature.
const TYPE_ED25519: u8 = 0x01;

/// Signature type of an Ed25519 timestamped cosignature.
const TYPE_COSIGNATURE: u8 = 0x04;

/// The em dash and space that open a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note, checkpoint or key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// Not a well-formed note, checkpoint body or key; the text says what is wrong.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// The note is larger than [`MAX_NOTE_BYTES`].
    #[error("note is {0} bytes, more than the {MAX_NOTE_BYTES} accepted")]
    TooLarge(usize),
    /// The note has more than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {MAX_SIGNATURES} signature lines")]
    TooManySignatures,
    /// A character other than `\n` is a control character.
    #[error("control character U+{0:04X} in note")]
    ControlCharacter(u32),
    /// A key name is empty or contains a space or `+`.
    #[error("bad key name {0:?}: must be non-empty without spaces or '+'")]
    BadName(String),
    /// No signature by a known key.
    #[error("no signature by a known key")]
    Unverified,
    /// A known key's signature does not verify.
    #[error("signature by {0} does not verify")]
    BadSignature(String),
    /// Signatures verified, but none under the checkpoint's origin.
    #[error("no verified signature by the log {0} itself")]
    NotSignedByOrigin(String),
    /// No cosignature by the given witness key.
    #[error("no cosignature by {0}")]
    NoCosignature(String),
}

/// A tree head: what a log commits to at one size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin, e.g. `clawproxy/p1a2b3c4d`: no spaces, no `+`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// The root hash over those leaves.
    pub root: Hash,
    /// Extension lines after the root (the spec allows them but does not recommend them; we
    /// never write any, and a verifier must not give them meaning unless it knows them).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text that is signed: `origin\nsize\nbase64(root)\n`, then each extension line.
    pub fn body(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint body strictly: origin without spaces or `+`, a decimal size without
    /// sign or leading zero that fits a u64, canonical base64 of exactly 32 bytes, then
    /// non-empty extension lines; no control character but `\n`; a final `\n`.
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::Malformed(m.to_owned());
        check_text(text)?;
        let mut lines = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("checkpoint must end in a newline"))?
            .split('\n');
        let origin = lines.next().unwrap_or_default();
        check_name(origin).map_err(|_| bad("checkpoint origin is empty or has a space or '+'"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("checkpoint size is not a decimal u64 without leading zeros"))?;
        let root: Hash = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("checkpoint root is not base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("checkpoint has an empty line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// A key a note may be verified with (signature type 0x01, or 0x04 for cosignatures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    /// The key name (for a log: its origin).
    pub name: String,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl NoteVerifier {
    /// A verifier for `key` under `name`.
    pub fn new(name: impl Into<String>, key: VerifyingKey) -> Self {
        Self {
            name: name.into(),
            key,
        }
    }
}

/// One signature line of a note, not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name on the line.
    pub name: String,
    /// The 4-byte key id.
    pub key_id: [u8; 4],
    /// The signature bytes after the key id (64 for Ed25519; 72 for a cosignature:
    /// timestamp then signature).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The timestamp, if this line has the shape of an Ed25519 cosignature (72 bytes). Only
    /// [`verify_cosignature`] makes the time trustworthy.
    pub fn cosignature_time(&self) -> Option<u64> {
        if self.signature.len() != 72 {
            return None;
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&self.signature[..8]);
        Some(u64::from_be_bytes(time))
    }
}

/// A note split into its text and signature lines, none of them checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in `\n` (the blank separator line excluded).
    pub text: String,
    /// Every signature line, in order.
    pub signatures: Vec<NoteSignature>,
}

/// A note whose signatures were checked by [`open_note`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, ending in `\n`.
    pub text: String,
    /// Names of the known keys whose signature verified, each once, in line order.
    pub verified: Vec<String>,
    /// Every signature line, verified or ignored (unknown keys, cosignatures).
    pub signatures: Vec<NoteSignature>,
}

/// The Ed25519 (type 0x01) key id: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    typed_key_id(name, TYPE_ED25519, key)
}

/// The cosignature (type 0x04) key id: `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`.
pub fn cosignature_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    typed_key_id(name, TYPE_COSIGNATURE, key)
}

fn typed_key_id(name: &str, kind: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, kind]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The Ed25519 vkey: `name+hex(key id)+base64(0x01 ‖ public key)`.
pub fn vkey(name: &str, key: &VerifyingKey) -> String {
    typed_vkey(name, TYPE_ED25519, key)
}

/// The cosignature vkey: `name+hex(key id)+base64(0x04 ‖ public key)`.
pub fn cosignature_vkey(name: &str, key: &VerifyingKey) -> String {
    typed_vkey(name, TYPE_COSIGNATURE, key)
}

fn typed_vkey(name: &str, kind: u8, key: &VerifyingKey) -> String {
    let id = typed_key_id(name, kind, key);
    let mut raw = vec![kind];
    raw.extend_from_slice(key.as_bytes());
    format!("{name}+{}+{}", hex4(id), STANDARD.encode(raw))
}

/// Parses an Ed25519 (type 0x01) vkey, checking that its key id matches the name and key and
/// refusing small-order keys.
pub fn parse_vkey(text: &str) -> Result<NoteVerifier, NoteError> {
    parse_typed_vkey(text, TYPE_ED25519)
}

/// Parses a cosignature (type 0x04) vkey, as [`parse_vkey`] does for type 0x01.
pub fn parse_cosignature_vkey(text: &str) -> Result<NoteVerifier, NoteError> {
    parse_typed_vkey(text, TYPE_COSIGNATURE)
}

fn parse_typed_vkey(text: &str, kind: u8) -> Result<NoteVerifier, NoteError> {
    let bad = |m: String| NoteError::Malformed(m);
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("vkey must be name+keyid+key".into()));
    };
    check_name(name)?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("vkey key id must be 8 hex digits".into()));
    }
    let raw = STANDARD
        .decode(key)
        .map_err(|_| bad("vkey key is not base64".into()))?;
    let Some((&got, key)) = raw.split_first() else {
        return Err(bad("vkey key is empty".into()));
    };
    if got != kind {
        return Err(bad(format!(
            "vkey has signature type 0x{got:02x}, expected 0x{kind:02x}"
        )));
    }
    let bytes: [u8; 32] = key
        .try_into()
        .map_err(|_| bad("vkey key is not 32 bytes".into()))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| bad("vkey key is not an Ed25519 point".into()))?;
    if key.is_weak() {
        return Err(bad("vkey key is a small-order point".into()));
    }
    if !id.eq_ignore_ascii_case(&hex4(typed_key_id(name, kind, &key))) {
        return Err(bad("vkey key id does not match its name and key".into()));
    }
    Ok(NoteVerifier::new(name, key))
}

/// Signs note `text` as `name` with an Ed25519 (type 0x01) signature and returns the note.
///
/// `text` must end in `\n` and hold no control character but `\n`, and `name` must have no
/// space or `+`; otherwise the result is a note nobody can open (checked in debug builds).
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    debug_assert!(
        check_text(text).is_ok() && text.ends_with('\n'),
        "bad note text"
    );
    debug_assert!(check_name(name).is_ok(), "bad key name");
    let sig = key.sign(text.as_bytes());
    let mut raw = key_id(name, &key.verifying_key()).to_vec();
    raw.extend_from_slice(&sig.to_bytes());
    format!("{text}\n{SIG_PREFIX}{name} {}\n", STANDARD.encode(raw))
}

/// Splits a note into text and signature lines without checking any signature.
pub fn parse_note(note: &str) -> Result<Note, NoteError> {
    let bad = |m: &str| NoteError::Malformed(m.to_owned());
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge(note.len()));
    }
    check_text(note)?;
    // Signature lines are never empty, so the last blank line is the separator.
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let (text, block) = (&note[..split + 1], &note[split + 2..]);
    let block = block
        .strip_suffix('\n')
        .ok_or_else(|| bad("note must end in a newline"))?;
    let mut signatures = Vec::new();
    for line in block.split('\n') {
        if signatures.len() == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("signature line must start with an em dash and a space"))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| bad("signature line needs a key name and a signature"))?;
        check_name(name)?;
        let raw = STANDARD
            .decode(sig)
            .map_err(|_| bad("signature is not canonical base64"))?;
        if raw.len() < 5 {
            return Err(bad("signature is shorter than a key id and one byte"));
        }
        let (id, signature) = raw.split_at(4);
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(id);
        signatures.push(NoteSignature {
            name: name.to_owned(),
            key_id,
            signature: signature.to_vec(),
        });
    }
    Ok(Note {
        text: text.to_owned(),
        signatures,
    })
}

/// Opens a note: ignores signatures by unknown keys, refuses it if any known key's signature
/// fails, and requires at least one known key's signature to verify.
pub fn open_note(note: &str, verifiers: &[NoteVerifier]) -> Result<SignedNote, NoteError> {
    let Note { text, signatures } = parse_note(note)?;
    let mut verified: Vec<String> = Vec::new();
    for line in &signatures {
        let Some(verifier) = verifiers
            .iter()
            .find(|v| v.name == line.name && key_id(&v.name, &v.key) == line.key_id)
        else {
            continue;
        };
        let ok = Signature::from_slice(&line.signature)
            .is_ok_and(|s| verifier.key.verify_strict(text.as_bytes(), &s).is_ok());
        if !ok {
            return Err(NoteError::BadSignature(line.name.clone()));
        }
        if !verified.contains(&line.name) {
            verified.push(line.name.clone());
        }
    }
    if verified.is_empty() {
        return Err(NoteError::Unverified);
    }
    Ok(SignedNote {
        text,
        verified,
        signatures,
    })
}

/// Signs a checkpoint as `name` (for our logs: the origin).
pub fn sign_checkpoint(checkpoint: &Checkpoint, name: &str, key: &SigningKey) -> String {
    sign_note(&checkpoint.body(), name, key)
}

/// Opens a checkpoint note: [`open_note`], a strict [`Checkpoint::parse_body`], and a verified
/// signature under the origin's own name.
pub fn open_checkpoint(note: &str, verifiers: &[NoteVerifier]) -> Result<Checkpoint, NoteError> {
    let signed = open_note(note, verifiers)?;
    let checkpoint = Checkpoint::parse_body(&signed.text)?;
    if !signed.verified.contains(&checkpoint.origin) {
        return Err(NoteError::NotSignedByOrigin(checkpoint.origin));
    }
    Ok(checkpoint)
}

/// Parses a checkpoint note without checking any signature (for display, or to read a note
/// whose keys are unknown); nothing in it is trustworthy.
pub fn parse_checkpoint(note: &str) -> Result<(Checkpoint, Note), NoteError> {
    let parsed = parse_note(note)?;
    Ok((Checkpoint::parse_body(&parsed.text)?, parsed))
}

/// The bytes a cosignature signs: `cosignature/v1\ntime <t>\n` then the checkpoint text.
pub fn cosignature_message(text: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{text}")
}

/// Adds a timestamped cosignature (type 0x04) by witness `name` to a checkpoint note.
///
/// The note must be well formed and its text a checkpoint; its existing signatures are kept
/// unchecked (a witness checks them, and consistency, before it cosigns).
pub fn cosign(note: &str, name: &str, key: &SigningKey, time: u64) -> Result<String, NoteError> {
    let (_, parsed) = parse_checkpoint(note)?;
    check_name(name)?;
    if parsed.signatures.len() >= MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures);
    }
    let sig = key.sign(cosignature_message(&parsed.text, time).as_bytes());
    let mut raw = cosignature_key_id(name, &key.verifying_key()).to_vec();
    raw.extend_from_slice(&time.to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    Ok(format!(
        "{note}{SIG_PREFIX}{name} {}\n",
        STANDARD.encode(raw)
    ))
}

/// Checks the cosignature of `witness` on a checkpoint note and returns its timestamp (POSIX
/// seconds). Every line by that witness key must verify; none at all is an error.
pub fn verify_cosignature(note: &str, witness: &NoteVerifier) -> Result<u64, NoteError> {
    let (_, parsed) = parse_checkpoint(note)?;
    let id = cosignature_key_id(&witness.name, &witness.key);
    let mut time = None;
    for line in &parsed.signatures {
        if line.name != witness.name || line.key_id != id {
            continue;
        }
        let bad = || NoteError::BadSignature(line.name.clone());
        let t = line.cosignature_time().ok_or_else(bad)?;
        let sig = Signature::from_slice(&line.signature[8..]).map_err(|_| bad())?;
        witness
            .key
            .verify_strict(cosignature_message(&parsed.text, t).as_bytes(), &sig)
            .map_err(|_| bad())?;
        time = Some(time.map_or(t, |old: u64| old.max(t)));
    }
    time.ok_or_else(|| NoteError::NoCosignature(witness.name.clone()))
}

/// Refuses control characters other than `\n`.
fn check_text(text: &str) -> Result<(), NoteError> {
    match text.chars().find(|c| c.is_control() && *c != '\n') {
        Some(c) => Err(NoteError::ControlCharacter(u32::from(c))),
        None => Ok(()),
    }
}

/// A key name (or origin): non-empty, no Unicode space, no `+`, no control character.
fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(NoteError::BadName(name.to_owned()));
    }
    Ok(())
}

fn hex4(id: [u8; 4]) -> String {
    format!("{:02x}{:02x}{:02x}{:02x}", id[0], id[1], id[2], id[3])
}

#[cfg(test)]
mod tests;
