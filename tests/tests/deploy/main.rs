//! The deployment files, checked against the binaries they run:
//!
//! - `compose`: `docker-compose.yml` (read as YAML; `docker compose config -q` too where it is
//!   installed) and the `Dockerfile`: the three services, the agent alone with the proxy on an
//!   internal network, the proxy's command and every `deploy/*.toml` accepted by `clawproxy`,
//!   non-root images; the init script, proxy command and HEALTHCHECK run here as written;
//! - `systemd`: `deploy/clawproxy.service`'s hardening, its commands run without systemd
//!   (reload included), and `systemd-analyze verify` where it is installed;
//! - `host_rules`: a contract's host rules against a real HTTPS server at a public address,
//!   all in a network namespace of its own (root only, like `sandbox`);
//! - `sandbox`: the example agent in a network namespace whose only way out is the proxy
//!   (root only; skipped loudly elsewhere, and never skipped as root in CI).
//!
//! The binaries are built (or found up to date) once per run with `cargo build`, as the crash
//! suite does; `CLAW_BIN_DIR=<dir>` uses prebuilt ones instead.

mod compose;
mod files;
mod host_rules;
mod sandbox;
#[allow(dead_code)] // the crash suite's helpers; this suite uses a few of them
#[path = "../crash/support.rs"]
mod support;
mod systemd;
