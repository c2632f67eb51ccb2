//! Evidence for clawproxy: receipts, the Merkle log, checkpoints, proof bundles and their
//! offline verification.
//!
//! - [`merkle`]: RFC 9162 Merkle tree (SHA-256): hashes, compact range, proofs, verifiers;
//! - [`checkpoint`]: C2SP signed notes and checkpoints (Ed25519);
//! - [`receipt`]: the receipt format, canonical bytes, signing, strict verification, keyed
//!   body hashes;
//! - [`log`]: the durable group-commit log writer and the streaming log reader;
//! - [`view`]: the reviewer's page, one self-contained HTML file built from a report.

pub mod checkpoint;
pub mod log;
pub mod merkle;
pub mod receipt;
pub mod view;
