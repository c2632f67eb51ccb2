//! `claw-fleet` against a real PostgreSQL on loopback (`state`). Two `clawproxy` processes
//! sharing one server are in the crash suite (`tests/tests/crash/fleet.rs`), beside the other
//! whole-process tests.

mod index;
mod state;
