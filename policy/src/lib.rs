//! Work Policy Contracts (WPC) for clawproxy.
//!
//! A contract says what an agent job may do through the proxy: which 1Password Connect
//! operations, vaults and item categories, and which hosts it may reach. This crate holds
//! everything about contracts that needs no network or runtime:
//!
//! - [`canonical`]: strict JSON input (duplicate keys refused) and RFC 8785 canonical bytes;
//! - [`contract`]: the model, schema and semantic checks, and the `blake3:` hash;
//! - [`envelope`]: signed envelopes (Ed25519 over DSSE PAE) and their verification;
//! - [`registry`]: the content-addressed local registry with versions and the active one;
//! - [`keys`], [`trust`], [`datadir`], [`dsse`]: key files, `trust.json`, the data-dir layout
//!   and the signature pre-image, shared by every crate above this one.
//!
//! ```
//! use claw_policy::contract::{Contract, Operation};
//!
//! let seed = include_bytes!("../../examples/policies/1password-readonly-agent.json");
//! let contract = Contract::from_slice(seed).unwrap();
//! assert!(contract.hash().starts_with("blake3:"));
//! assert_eq!(contract.document().tool_scope.allowed_operations, [Operation::ReadItem]);
//! ```
//!
//! # Decisions
//!
//! - Shared primitives (keys, trust store, data dir, PAE) live here because every other crate
//!   depends on `policy` and DESIGN.md's dependency order leaves no lower crate.
//! - `cst_constraints.policy_hash_pin` and `job_scoped` must be `true`: tokens are always
//!   pinned and job-bound, and a contract claiming otherwise would mislead its reader.
//! - Registry envelope files are named by the hex of their hash only, so no query string can
//!   name a path outside the registry.

pub mod approval;
pub mod canonical;
pub mod classify;
pub mod contract;
pub mod datadir;
pub mod diff;
pub mod dsse;
pub mod egress;
pub mod envelope;
pub mod evaluate;
pub mod explain;
pub mod host_rules;
pub mod keys;
pub mod registry;
pub mod registry_api;
pub mod trust;
