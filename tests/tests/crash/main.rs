//! The whole proxy as real processes (`clawproxy run`, `connect-sim`, and
//! the `clawproxy`/`clawcontrols`/`clawscope`/`clawverify` command lines):
//!
//! - `kill`: agents read through the proxy while it is `kill -9`ed and restarted on the same
//!   data dir, again and again; every answer an agent saw has its receipt in a log that still
//!   verifies, torn tails are cut and recorded, and the job's bundle verifies;
//! - `secrets`: at trace level, no concealed value, Connect token or job token reaches a log, a
//!   receipt, a bundle, a report or the reviewer's page;
//! - `reload`: SIGHUP swaps in a new Connect token from its file, on open connections too;
//! - `rotate`: `clawproxy rotate` replaces each key while the proxy serves an open connection;
//!   every rotation is receipted, and the log and a bundle still verify under trust.json;
//! - `disk`: the data dir on a tmpfs that fills up: the proxy answers 503 and releases nothing,
//!   stays poisoned until restarted, and after a restart serves again on a log that verifies;
//!   a slow disk (a preloaded shim delays every sync) only slows answers down, and one that
//!   stalls past the log's stage limit fails closed like a full one.
//! - `fleet`: two proxies with `--state postgres://…` on a real PostgreSQL share revocations and
//!   rate-limit budgets, fail closed (503) while the server is down and recover when it returns.
//!
//! The binaries are built (or found up to date) once per run with `cargo build` into this
//! test's own target directory; `CLAW_BIN_DIR=<dir>` uses prebuilt ones instead.

mod approvals;
mod disk;
mod fleet;
mod kill;
mod reload;
mod rotate;
mod secrets;
mod support;
