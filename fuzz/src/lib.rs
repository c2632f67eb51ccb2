//! A small mutation fuzzer that runs on stable Rust, and its targets: every parser in the
//! workspace that reads bytes an attacker controls.
//!
//! No nightly, no sanitizer coverage, no `cargo-fuzz`: each target runs a library entry point
//! on an input and reports a [`Trace`] of what it saw (which step accepted, which error
//! variant refused). A mutated input whose trace is new joins the in-memory corpus, so the
//! search still moves towards inputs that reach different code, without instrumentation.
//!
//! - [`rng`]: the xorshift PRNG (no dependency, reproducible from a seed);
//! - [`mutate`]: bit flips, byte insert/delete/duplicate, splices, dictionary tokens, huge
//!   numbers, deep nesting, long runs, and mutations inside base64 and JSON strings;
//! - [`engine`]: the loop, crash artifacts, the hang watchdog, corpus loading;
//! - [`targets`]: one module per target, each with its fixed trust setup and invariants.
//!
//! Run it with `cargo run -p claw-fuzz --release -- <target|all> --seconds N`; see
//! `fuzz/README.md`.

pub mod engine;
pub mod mutate;
pub mod rng;
pub mod targets;

pub use engine::{Options, Stats, Target, Trace, corpus_dir, load_corpus, run};

#[cfg(test)]
mod tests;
