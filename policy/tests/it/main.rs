//! Integration tests for `clawcontrols` and the registry API.
//!
//! - `cli`: the binary end to end (validate, hash, publish, list, show, diff, explain);
//! - `envelope`: signed envelopes as input (tampered, unsigned, untrusted);
//! - `serve`: the read-only registry API router, and the binary on a real socket.

mod cli;
mod envelope;
mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The examples/policies directory.
fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies")
}

fn seed() -> PathBuf {
    policies().join("1password-readonly-agent.json")
}

/// A fresh initialised data dir (keys + trust.json).
fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("claw");
    claw_policy::datadir::init_keys(&claw_policy::datadir::DataDir::new(&root), false).unwrap();
    (tmp, root)
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn clawcontrols(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_clawcontrols"))
        .args(args)
        .env_remove("CLAW_HOME")
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
