//! `clawproxy demo`: the quickstart on the embedded default, end to end on loopback.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use claw_policy::contract::Contract;
use claw_policy::datadir::DataDir;
use claw_policy::envelope::Envelope;
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;

/// The seed contract, verbatim.
pub const SEED_CONTRACT: &str =
    include_str!("../../examples/policies/1password-readonly-agent.json");

/// Runs the demo in `data_dir` (a fresh temporary directory when `None`), telling the story on
/// `out`.
pub fn run(data_dir: Option<PathBuf>, out: &mut dyn Write) -> anyhow::Result<()> {
    let (_tmp, root) = match data_dir {
        Some(dir) => (None, dir),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("clawproxy-demo-")
                .tempdir()?;
            let root = tmp.path().join("claw");
            // Keep the directory: the story ends by pointing at its files.
            (Some(tmp.keep()), root)
        }
    };
    let dir = DataDir::new(&root);
    writeln!(out, "clawproxy demo in {}", root.display())?;

    let init = crate::init::init(&dir, false)?;
    writeln!(
        out,
        "1. init: keys, CA and trust.json (proxy id {})",
        init.keys.proxy_id
    )?;

    let contract =
        Contract::from_slice(SEED_CONTRACT.as_bytes()).context("the embedded seed contract")?;
    writeln!(
        out,
        "2. validate: {} is valid, hash {}",
        contract.name(),
        contract.hash()
    )?;

    let trust = TrustStore::load(&dir.trust())?;
    let key = keys::read_signing_key(&dir.signing_key(Purpose::Policy))?;
    let published =
        Registry::new(dir.policies()).publish(&Envelope::sign(&contract, &key), &trust)?;
    writeln!(
        out,
        "3. publish: {} v{} is active ({})",
        published.name, published.version, published.hash
    )?;
    writeln!(out, "data dir: {}", root.display())?;
    Ok(())
}
