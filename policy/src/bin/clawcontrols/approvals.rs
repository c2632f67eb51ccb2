//! `clawcontrols approvals | approve | deny`: the human side of a contract's `approvals` rules.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use claw_policy::approval::{ApprovalStore, Approvals, HeldRequest, SharedApprovals};
use claw_policy::datadir::DataDir;

use crate::Decide;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The data dir's held requests, or with `state` the fleet's; runs `work` on it.
fn with_store<T>(
    dir: &DataDir,
    state: Option<String>,
    work: impl AsyncFnOnce(&ApprovalStore) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = match state {
            None => ApprovalStore::Dir(Approvals::new(dir)),
            Some(url) => {
                let fleet = claw_fleet::Fleet::connect(&url)
                    .await
                    .context("connecting to the fleet's state (--state)")?;
                ApprovalStore::Fleet(SharedApprovals::new(fleet))
            }
        };
        work(&store).await
    })
}

/// Prints the pending requests.
pub(crate) fn list(dir: &DataDir, state: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let now = now_ms();
    let pending = with_store(dir, state, async |store| Ok(store.pending(now).await?))?;
    if json {
        let rows: Vec<_> = pending.iter().map(|held| held.listing(now)).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if pending.is_empty() {
        println!("no requests are waiting for approval");
    } else {
        for held in &pending {
            print!("{}", describe(held, now));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Approves or denies one held request.
pub(crate) fn decide(args: Decide, approve: bool) -> anyhow::Result<ExitCode> {
    let dir = DataDir::new(&args.data.data_dir);
    let id = &args.request_id;
    let (held, verdict) = with_store(&dir, args.state.state, async |store| {
        let held = store.get(id).await.ok();
        let verdict = store
            .decide(id, &args.by, approve, args.reason, now_ms())
            .await?;
        Ok((held, verdict))
    })?;
    let what = held.map_or_else(String::new, |h| {
        format!(" ({} {} for job {})", h.method, h.path, h.job)
    });
    println!(
        "{} {}{what} as {}",
        verdict.outcome.as_str(),
        verdict.id,
        args.by
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(held: &HeldRequest, now: u64) -> String {
    let named = |id: &Option<String>, name: &Option<String>| match (id, name) {
        (Some(id), Some(name)) => format!("{name} ({id})"),
        (Some(id), None) => id.clone(),
        (None, Some(name)) => name.clone(),
        (None, None) => "-".into(),
    };
    let query = held
        .query
        .as_deref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let body = held
        .body_hash
        .as_deref()
        .map(|h| format!("\n  body     {h}"))
        .unwrap_or_default();
    format!(
        "{id}\n  job      {job}\n  op       {op}  vault {vault}  item {item}\n  request  {method} {host}{path}{query}{body}\n  approve  clawcontrols approve {id} --as NAME   (NAME one of: {approvers})\n  waits    {left} s more, then it is refused\n",
        id = held.id,
        job = held.job,
        op = held.operation,
        vault = named(&held.vault, &held.vault_name),
        item = named(&held.item, &held.item_title),
        method = held.method,
        host = held.host,
        path = held.path,
        approvers = held.approvers.join(", "),
        left = held.expires_ms.saturating_sub(now).div_ceil(1000),
    )
}
