//! Evidence for clawproxy: receipts, the Merkle log, checkpoints, proof bundles and their
//! offline verification.
//!
//! - [`merkle`]: RFC 9162 Merkle tree (SHA-256): hashes, compact range, proofs, verifiers;
//! - [`checkpoint`]: C2SP signed notes and checkpoints (Ed25519);
//! - [`receipt`]: the receipt format, canonical bytes, signing, strict verification, keyed
//!   body hashes;
//! - [`log`]: the durable group-commit log writer and the streaming log reader;
//! - [`bundle`]: proof bundles, gathered from a data dir and parsed strictly;
//! - [`query`]: which receipts match a job, operation, item, vault, decision and time, from
//!   an index of the logs;
//! - [`verify`]: every named check of a bundle against trusted keys, the tier and the report;
//! - [`view`]: the reviewer's page, one self-contained HTML file built from a report.

pub mod bundle;
pub mod checkpoint;
pub mod log;
pub mod merkle;
pub mod query;
pub mod receipt;
pub mod verify;
pub mod view;
