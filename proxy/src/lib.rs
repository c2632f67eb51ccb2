//! clawproxy: the enforcing forward proxy for AI agents.
//!
//! An agent's only way out is this proxy. Each request is authenticated with a job-scoped
//! token, checked against the token's pinned Work Policy Contract, sent upstream with the real
//! credential injected, and receipted in a signed, durable log before the agent sees an answer.
//!
//! - [`stack`]: the life of a request, top to bottom (start here);
//! - [`listen`], [`auth`], [`upstream`], [`intercept`], [`hygiene`], [`receipt`], [`respond`],
//!   [`admin`], [`metrics`]: one concern each;
//! - [`run`]: load, check, bind, serve, shut down;
//! - [`config`]: `clawproxy.toml`, checked before any port binds;
//! - [`init`]: a fresh data dir (keys, CA, trust.json, config);
//! - [`rotate`], [`control`]: replacing a key while the proxy runs;
//! - [`demo`]: the quickstart, end to end on loopback.

pub mod admin;
pub mod auth;
pub mod config;
pub mod control;
pub mod demo;
pub mod drain;
pub mod hold;
pub mod hygiene;
pub mod init;
pub mod intercept;
pub mod listen;
pub mod metrics;
pub mod ratelimit;
pub mod receipt;
pub mod respond;
pub mod rotate;
pub mod run;
pub mod stack;
pub mod upstream;
