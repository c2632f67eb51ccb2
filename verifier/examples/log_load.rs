//! Run with `cargo run --release -p claw-verifier --example log_load [-- --seconds 3]`.
//!
//! Durable, signed receipts per second through the group-commit log writer, with 1, 8, 64 and
//! 512 concurrent submitters (each waits for its acknowledgement, i.e. for the fdatasync,
//! before submitting again), and data fdatasyncs per receipt. The log lives in a temporary
//! directory on the same file system as `--dir` (default: the system temp dir).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use claw_verifier::log::{Draft, LogConfig, LogWriter};
use claw_verifier::receipt::{AuditKey, Cst, Decision, Kind, Op, Req, Resp};

/// Measure durable receipts per second.
///
/// Example: `log_load --submitters 1,8,64,512 --seconds 3`
#[derive(Debug, Parser)]
struct Args {
    /// Concurrent submitters, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,512")]
    submitters: Vec<usize>,
    /// Seconds per setting.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent fdatasyncs allowed (the writer's `sync_lanes`).
    #[arg(long, default_value_t = 2)]
    lanes: usize,
    /// Where to create the temporary log.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("log_load: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn draft(audit: &AuditKey, job: &str) -> Draft {
    let mut d = Draft::new(Kind::Call, job);
    d.client = Some("10.0.0.5:51234".into());
    d.cst = Some(Cst {
        jti: "3f0c1a2b4d5e6f708192a3b4c5d6e7f8".into(),
        scope: format!("blake3:{}", "5a".repeat(32)),
    });
    d.wpc = Some(format!("blake3:{}", "c3".repeat(32)));
    d.req = Some(Req {
        method: "GET".into(),
        scheme: "https".into(),
        host: "connect.1password.com".into(),
        port: 443,
        path: "/v1/vaults/vault_agent_secrets_prod/items/q2x7fx4ldhcpkyr3yzv4cbmb7q".into(),
        ..Req::default()
    });
    d.op = Some(Op {
        integration: "onepassword".into(),
        name: "read_item".into(),
        vault: Some("vault_agent_secrets_prod".into()),
        item: Some("q2x7fx4ldhcpkyr3yzv4cbmb7q".into()),
        category: Some("API_CREDENTIAL".into()),
        ..Op::default()
    });
    d.decision = Some(Decision {
        allow: true,
        rule: "tool_scope.allowed_operations".into(),
        reason: "read_item is allowed in vault_agent_secrets_prod".into(),
        ..Decision::default()
    });
    d.resp = Some(Resp {
        status: 200,
        bytes: 1432,
        body_hash: audit.hash(b"{\"id\":\"q2x7fx4ldhcpkyr3yzv4cbmb7q\"}"),
        released: true,
    });
    d.duration_ms = Some(14);
    d
}

fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "| submitters | receipts | receipts/s | fsyncs/receipt | mean batch | mean fsync ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for &submitters in &args.submitters {
        let tmp = match &args.dir {
            Some(dir) => tempfile::tempdir_in(dir)?,
            None => tempfile::tempdir()?,
        };
        let audit = AuditKey::new([7; 32]);
        let mut config = LogConfig::new(
            tmp.path(),
            "pload0001",
            claw_policy::keys::generate(),
            audit.clone(),
        );
        config.sync_lanes = args.lanes;
        let seconds = args.seconds;
        let (count, elapsed, metrics) = runtime.block_on(async move {
            let (log, task) = LogWriter::open(config).await?;
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let mut handles = Vec::new();
            for s in 0..submitters {
                let (log, stop, done) = (log.clone(), stop.clone(), done.clone());
                let d = draft(&audit, &format!("job-{}", s % 64));
                handles.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        log.append(d.clone()).await?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<_, claw_verifier::log::LogError>(())
                }));
            }
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            stop.store(true, Ordering::Relaxed);
            for h in handles {
                h.await??;
            }
            let elapsed = started.elapsed();
            let m = log.metrics();
            let batches = m.batches.load(Ordering::Relaxed);
            let receipts = m.receipts.load(Ordering::Relaxed);
            let summary = (
                m.fsyncs_per_receipt(),
                receipts as f64 / batches.max(1) as f64,
                m.fsync_seconds.sum() * 1000.0 / m.fsync_seconds.count().max(1) as f64,
            );
            log.shutdown().await?;
            task.await?;
            Ok::<_, anyhow::Error>((done.load(Ordering::Relaxed), elapsed, summary))
        })?;
        let (per_receipt, mean_batch, mean_fsync) = metrics;
        println!(
            "| {submitters} | {count} | {:.0} | {per_receipt:.4} | {mean_batch:.1} | {mean_fsync:.2} |",
            count as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
