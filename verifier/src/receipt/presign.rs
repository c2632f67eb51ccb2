//! Ed25519 signing with the nonce work done ahead of time, for the log writer.
//!
//! An Ed25519 signature over a message M is (R, S) with R = r·B and
//! S = r + SHA-512(R ‖ A ‖ M)·a, where a is the secret scalar and A = a·B the public key.
//! RFC 8032 derives r from M, so the fixed-base multiplication r·B, most of the cost of a
//! signature, can only start once the message is known. The log writer signs receipts one
//! after another (a receipt's `prev` is the leaf hash of the signed receipt before it), so
//! that multiplication sat on the log's critical path.
//!
//! A verifier cannot tell how r was chosen. The result is an ordinary Ed25519 signature as
//! long as r is secret, uniform and never used for two messages (a reused r gives the key
//! away). [`Presigner`] draws r as SHA-512(domain ‖ hash prefix ‖ counter ‖ 32 bytes from the
//! OS generator) mod ℓ:
//! - uniform when the OS generator is sound;
//! - secret even if the generator's output were guessed, because the hash prefix is secret;
//! - different for every nonce of one signer even if the generator repeated itself, because
//!   of the counter.
//!
//! A thread fills a bounded queue with (r, r·B) pairs. [`Presigner`] takes one by value for
//! each signature, so a nonce is never used twice, and signs the RFC 8032 way when the queue
//! is empty (or the thread has stopped), so signing never waits. Every r is zeroised when
//! dropped, and the thread stops when its presigner is dropped.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::{Signature, Signer, SigningKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, Zeroizing};

/// Nonces kept ready: enough for a large group commit, few enough that filling the queue at
/// start costs a few milliseconds of one core.
const QUEUE: usize = 256;

/// Separates these nonces from RFC 8032's SHA-512(hash prefix ‖ M).
const DOMAIN: &[u8] = b"clawproxy receipt nonce v1\0";

/// Signs with precomputed nonces (module docs). Signatures verify like any Ed25519 signature
/// of the key.
pub struct Presigner {
    key: SigningKey,
    secret: ExpandedSecretKey,
    queue: Option<Receiver<Nonce>>,
    filler: Option<JoinHandle<()>>,
}

impl Presigner {
    /// Starts the thread that keeps nonces ready for `key`.
    pub fn new(key: SigningKey) -> Self {
        let (sender, queue) = sync_channel(QUEUE);
        let secret = ExpandedSecretKey::from(key.as_bytes());
        let source = NonceSource::new(secret.hash_prefix);
        // Without the thread every signature is an RFC 8032 one: slower, equally valid.
        let filler = std::thread::Builder::new()
            .name("receipt-nonces".into())
            .spawn(move || source.fill(&sender))
            .ok();
        Self {
            secret,
            key,
            queue: Some(queue),
            filler,
        }
    }

    /// The key signatures are made with.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// S = r + SHA-512(R ‖ A ‖ M)·a with the nonce's r, which is dropped (zeroised) after.
    fn finish(&self, nonce: Nonce, message: &[u8]) -> Signature {
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(nonce.commitment.as_bytes())
                .chain_update(self.key.verifying_key().as_bytes())
                .chain_update(message),
        );
        let s = k * self.secret.scalar + nonce.r;
        Signature::from_components(nonce.commitment.to_bytes(), s.to_bytes())
    }
}

impl Signer<Signature> for Presigner {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, ed25519_dalek::SignatureError> {
        match self.queue.as_ref().and_then(|q| q.try_recv().ok()) {
            Some(nonce) => Ok(self.finish(nonce, message)),
            None => Ok(self.key.sign(message)),
        }
    }
}

impl Drop for Presigner {
    fn drop(&mut self) {
        // Closing the queue wakes the thread out of a full `send`; it then exits.
        drop(self.queue.take());
        if let Some(filler) = self.filler.take() {
            let _ = filler.join();
        }
    }
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("public", &self.key.verifying_key())
            .finish_non_exhaustive()
    }
}

/// A secret r and its commitment R = r·B, used once.
struct Nonce {
    r: Scalar,
    commitment: CompressedEdwardsY,
}

impl Nonce {
    fn from_scalar(r: Scalar) -> Self {
        Self {
            commitment: EdwardsPoint::mul_base(&r).compress(),
            r,
        }
    }
}

impl Drop for Nonce {
    fn drop(&mut self) {
        self.r.zeroize();
    }
}

/// What the filling thread holds: the hash prefix and a counter, never the signing scalar.
struct NonceSource {
    prefix: Zeroizing<[u8; 32]>,
    counter: u64,
}

impl NonceSource {
    fn new(prefix: [u8; 32]) -> Self {
        Self {
            prefix: Zeroizing::new(prefix),
            counter: 0,
        }
    }

    /// The next nonce, or `None` when the OS generator fails (the thread then stops).
    fn next(&mut self) -> Option<Nonce> {
        let mut fresh = Zeroizing::new([0u8; 32]);
        OsRng.try_fill_bytes(fresh.as_mut()).ok()?;
        self.counter += 1;
        let r = Scalar::from_hash(
            Sha512::new()
                .chain_update(DOMAIN)
                .chain_update(self.prefix.as_ref())
                .chain_update(self.counter.to_be_bytes())
                .chain_update(fresh.as_ref()),
        );
        Some(Nonce::from_scalar(r))
    }

    /// Keeps the queue full until the presigner is dropped or the generator fails.
    fn fill(mut self, queue: &SyncSender<Nonce>) {
        while let Some(nonce) = self.next() {
            if queue.send(nonce).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Verifier;

    use super::*;

    fn key() -> SigningKey {
        claw_policy::keys::generate()
    }

    fn source(key: &SigningKey) -> NonceSource {
        NonceSource::new(ExpandedSecretKey::from(key.as_bytes()).hash_prefix)
    }

    /// With RFC 8032's r, the split computation is RFC 8032 signing, bit for bit: the
    /// algebra of `finish` is Ed25519's.
    #[test]
    fn finish_with_the_rfc_nonce_is_rfc_8032_signing() {
        let signer = Presigner::new(key());
        for len in [0, 1, 63, 64, 65, 700, 4096] {
            let message: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let rfc_r = Scalar::from_hash(
                Sha512::new()
                    .chain_update(signer.secret.hash_prefix)
                    .chain_update(&message),
            );
            let split = signer.finish(Nonce::from_scalar(rfc_r), &message);
            assert_eq!(split, signer.key.sign(&message), "message of {len} bytes");
        }
    }

    #[test]
    fn presigned_signatures_verify_strictly_and_differ_from_rfc_ones() {
        let signer = Presigner::new(key());
        let public = signer.key().verifying_key();
        // Wait for the thread so the queue, not the fallback, is exercised.
        let nonce = signer.queue.as_ref().unwrap().recv().unwrap();
        let presigned = signer.finish(nonce, b"receipt");
        public.verify_strict(b"receipt", &presigned).unwrap();
        assert_ne!(presigned, signer.key().sign(b"receipt"));
        assert!(public.verify(b"receipt!", &presigned).is_err());
        // Through the trait, queue or fallback: always valid.
        for i in 0..2 * QUEUE {
            let message = format!("receipt {i}");
            let sig = signer.sign(message.as_bytes());
            public.verify_strict(message.as_bytes(), &sig).unwrap();
        }
    }

    #[test]
    fn nonces_are_never_repeated() {
        let mut source = source(&key());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let nonce = source.next().unwrap();
            assert!(seen.insert(nonce.commitment.to_bytes()));
        }
        assert_eq!(source.counter, 2000);
    }

    #[test]
    fn nonces_depend_on_the_key_and_the_generator() {
        // Same key, same counter: the generator's bytes alone make them differ.
        let a = source(&key()).next().unwrap();
        let key = key();
        let b = source(&key).next().unwrap();
        let c = source(&key).next().unwrap();
        assert_ne!(a.commitment, b.commitment);
        assert_ne!(b.commitment, c.commitment);
    }

    #[test]
    fn dropping_the_presigner_stops_its_thread() {
        let signer = Presigner::new(key());
        // Let the thread fill the queue and block in `send`.
        let first = signer.queue.as_ref().unwrap().recv().unwrap();
        drop(first);
        let filler = signer.filler.as_ref().unwrap().thread().clone();
        assert_eq!(filler.name(), Some("receipt-nonces"));
        drop(signer); // joins: returning at all proves the thread exited.
    }
}
