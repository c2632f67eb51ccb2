//! `clawverify`: bundle a job's receipts, verify a bundle offline, query the logs, view a report.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use claw_policy::datadir::DataDir;
use claw_policy::trust::TrustStore;
use claw_verifier::bundle::{self, BuildOptions, TokenState};
use claw_verifier::query::{self, Filter};
use claw_verifier::receipt::AuditKey;
use claw_verifier::verify::{self, Status, Verification};
use claw_verifier::view;

/// Proof bundles for clawproxy jobs: gather, verify offline, query, view.
///
/// A reviewer needs only the bundle and a trust.json holding the three public keys (issuer,
/// proxy, policy); keys inside a bundle are never trusted.
///
///   clawscope revoke --job job-42                 # the job is over (a bundle refuses a live token)
///   clawverify bundle --job job-42 -o job-42.bundle.json
///   clawverify verify job-42.bundle.json --trust trust.json --report job-42.report.json
///   clawverify view job-42.bundle.json --trust trust.json --out job-42.html
///   clawverify query --job job-42 --op read_item --since 2026-11-22T14:00:00Z --until 2026-11-22T16:00:00Z
///
/// Data dir from --data-dir or CLAW_HOME, default ./.claw.
///
/// Exit codes: 0 ok (verify: no check failed; query: something matched); 1 a check failed,
/// or nothing matched; 2 usage or input error.
#[derive(Debug, Parser)]
#[command(name = "clawverify", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Gather a job's receipts, token, contract, checkpoint and proofs into one bundle file.
    ///
    /// The token is a live credential: it goes into a bundle only once it expired or was
    /// revoked, unless --include-live-token. Without -o the bundle goes to stdout. Where the
    /// data dir holds the issuer key, the issuer's signed word on the job's revocations goes
    /// in too (checked by verify as token.revocation).
    ///
    /// Example: clawverify bundle --job job-42 -o job-42.bundle.json
    Bundle {
        /// The job id.
        #[arg(long)]
        job: String,
        /// Output file (written whole or not at all); `-` or absent: stdout.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Include the token even though it is still valid (the bundle is then a secret).
        #[arg(long)]
        include_live_token: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Check a bundle against trusted keys: every named check, the trust tier, a verdict.
    ///
    /// Example: clawverify verify job-42.bundle.json --trust trust.json --report report.json
    Verify {
        /// The bundle file (`-`: stdin).
        file: PathBuf,
        /// The trusted keys (default: the data dir's trust.json).
        #[arg(long)]
        trust: Option<PathBuf>,
        /// Print the report as JSON instead of the summary.
        #[arg(long)]
        json: bool,
        /// Also write the report (JSON, schemas/report.schema.json) to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Find receipts in the data dir's logs: which job did what, when, with which decision.
    ///
    /// Every filter given must match. Times are RFC 3339 (2026-11-22T14:00:00Z).
    ///
    /// Example: clawverify query --job job-42 --item db-item-id --since 2026-11-22T14:00:00Z
    Query {
        /// The job id.
        #[arg(long)]
        job: Option<String>,
        /// The operation (read_item, list_items, …).
        #[arg(long)]
        op: Option<String>,
        /// The item id.
        #[arg(long)]
        item: Option<String>,
        /// The vault, by id or name.
        #[arg(long)]
        vault: Option<String>,
        /// allow or deny.
        #[arg(long, value_parser = ["allow", "deny"])]
        decision: Option<String>,
        /// Not before this time.
        #[arg(long)]
        since: Option<String>,
        /// Not after this time.
        #[arg(long)]
        until: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Fleet mode: ask the receipt index every proxy sharing this PostgreSQL keeps,
        /// instead of this data dir's logs. The proxies copy their receipts into it about a
        /// second after they are durable.
        ///
        /// Example: --state postgres://claw@10.0.0.5:5432/claw
        #[arg(long, env = "CLAW_STATE", hide_env_values = true)]
        state: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// The reviewer's page for a bundle: served on loopback, or written as one HTML file.
    ///
    /// Example: clawverify view job-42.bundle.json --trust trust.json --out job-42.html
    View {
        /// The bundle file.
        file: PathBuf,
        /// The trusted keys (default: the data dir's trust.json).
        #[arg(long)]
        trust: Option<PathBuf>,
        /// Serve on this address (loopback by default).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Write a self-contained HTML file instead of serving.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Print the keyed hash a receipt would carry for these bytes (blake3k:<kid>:<hex>).
    ///
    /// Lets an operator holding the audit key test a candidate body against a receipt's
    /// body_hash; without the key, a bundle confirms nothing about a guessed secret.
    ///
    /// Example: clawverify audit-hash --file body.json
    AuditHash {
        /// The bytes to hash (`-`: stdin).
        #[arg(long, default_value = "-")]
        file: PathBuf,
        /// Hash with the audit key of this kid, retired by `clawproxy rotate audit`
        /// (keys/audit-<kid>.key), to test a receipt made before the rotation.
        #[arg(long)]
        kid: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, clap::Args)]
struct DataDirArg {
    /// The data dir (keys, policies, receipts, state).
    #[arg(long, env = "CLAW_HOME", default_value = ".claw")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("clawverify: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Bundle {
            job,
            out,
            include_live_token,
            data,
        } => bundle_command(&DataDir::new(&data.data_dir), job, out, include_live_token),
        Command::Verify {
            file,
            trust,
            json,
            report,
            data,
        } => {
            let trust = load_trust(trust, &data)?;
            let bytes = read_input(&file)?;
            let verification = verify::verify(&bytes, &trust.1);
            let mut report_json = verify::report(&verification);
            with_history(&mut report_json, &data);
            if let Some(path) = report {
                write_file(&path, pretty(&report_json).as_bytes())?;
            }
            if json {
                println!("{}", pretty(&report_json));
            } else {
                print_summary(&file, &trust.0, &verification);
            }
            Ok(exit(verification.passed()))
        }
        Command::Query {
            job,
            op,
            item,
            vault,
            decision,
            since,
            until,
            json,
            state,
            data,
        } => {
            let filter = Filter {
                job,
                op,
                item,
                vault,
                allow: decision.map(|d| d == "allow"),
                since_ms: since.as_deref().map(parse_time).transpose()?,
                until_ms: until.as_deref().map(parse_time).transpose()?,
            };
            let answer = match state {
                Some(url) => fleet_query(&url, &filter)?,
                None => {
                    let dir = DataDir::new(&data.data_dir);
                    query::query(&dir.receipts(), &dir.state().join("index"), &filter)?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print_hits(&answer);
            }
            Ok(exit(!answer.matches.is_empty()))
        }
        Command::View {
            file,
            trust,
            listen,
            out,
            data,
        } => {
            let (trust_path, trust) = load_trust(trust, &data)?;
            let bytes = read_input(&file)?;
            let verification = verify::verify(&bytes, &trust);
            let mut report = verify::report(&verification);
            with_history(&mut report, &data);
            let verdict = if verification.passed() {
                "PASS"
            } else {
                "FAIL"
            };
            if let Some(out) = out {
                write_file(&out, view::render(&report).as_bytes())?;
                eprintln!(
                    "clawverify: {verdict} ({}) against {}; page written to {}",
                    verification.tier.as_str(),
                    trust_path.display(),
                    out.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let addr = listen.unwrap_or_else(view::default_listen);
            serve(addr, report, verdict)
        }
        Command::AuditHash { file, kid, data } => {
            let dir = DataDir::new(&data.data_dir);
            let load = |path: PathBuf| {
                AuditKey::load(&path)
                    .with_context(|| format!("reading the audit key {}", path.display()))
            };
            let current = load(dir.audit_key())?;
            let key = match kid {
                Some(kid) if kid != current.kid() => {
                    if kid.len() != 16 || !kid.bytes().all(|b| b.is_ascii_hexdigit()) {
                        anyhow::bail!("--kid {kid:?} is not an audit kid (16 hex digits)");
                    }
                    let retired = load(dir.retired_audit_key(&kid))?;
                    if retired.kid() != kid {
                        anyhow::bail!(
                            "{} holds the audit key {}, not {kid}",
                            dir.retired_audit_key(&kid).display(),
                            retired.kid()
                        );
                    }
                    retired
                }
                _ => current,
            };
            let bytes = read_input(&file)?;
            println!("{}", key.hash(&bytes));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn bundle_command(
    dir: &DataDir,
    job: String,
    out: Option<PathBuf>,
    include_live_token: bool,
) -> anyhow::Result<ExitCode> {
    let options = BuildOptions {
        job,
        include_live_token,
        now: claw_tokens::now(),
    };
    let target = out.filter(|p| p != Path::new("-"));
    let built = match &target {
        Some(path) => {
            // Written whole or not at all: a temporary file beside the target, then renamed.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let mut file = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            let built = bundle::build(dir, &options, &mut file).and_then(|built| {
                file.sync_all()?;
                Ok(built)
            });
            match built {
                Ok(built) => {
                    std::fs::rename(&tmp, path)
                        .with_context(|| format!("writing {}", path.display()))?;
                    built
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
            }
        }
        None => bundle::build(dir, &options, &mut std::io::stdout().lock())?,
    };
    let token = match built.token {
        TokenState::Expired => "expired",
        TokenState::Revoked => "revoked",
        TokenState::Live => "LIVE: this bundle holds a usable credential; keep it secret",
    };
    eprintln!(
        "clawverify: bundled job {}: {} receipts from {} log(s), {}; token {} ({token}); {}{}",
        options.job,
        built.receipts,
        built.logs,
        if built.closed {
            "closed"
        } else {
            "still open (no job_close yet)"
        },
        built.jti,
        if built.revocations {
            "the issuer's revocation snapshot signed in"
        } else {
            "no revocation snapshot (no issuer key in this data dir)"
        },
        target
            .map(|p| format!("; written to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// What changed from the contract's previous version, when the data dir's registry has it.
fn with_history(report: &mut serde_json::Value, data: &DataDirArg) {
    let registry = claw_policy::registry::Registry::new(DataDir::new(&data.data_dir).policies());
    verify::add_contract_history(report, &registry);
}

fn load_trust(path: Option<PathBuf>, data: &DataDirArg) -> anyhow::Result<(PathBuf, TrustStore)> {
    let path = path.unwrap_or_else(|| DataDir::new(&data.data_dir).trust());
    let trust = TrustStore::load(&path).with_context(|| {
        format!(
            "reading trusted keys from {} (pass --trust)",
            path.display()
        )
    })?;
    Ok((path, trust))
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = bundle::MAX_BUNDLE_BYTES + 1;
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("reading {}", path.display()))?
            .take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(bytes)
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value serialises")
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_summary(file: &Path, trust: &Path, v: &Verification) {
    println!(
        "{} (sha256 {}) against {}",
        file.display(),
        v.bundle_sha256,
        trust.display()
    );
    // Failures first: a reviewer must not have to look for them.
    let mut checks: Vec<_> = v.checks.iter().collect();
    checks.sort_by_key(|c| match c.status {
        Status::Fail => 0,
        Status::Pass | Status::Skip => 1,
    });
    for c in checks {
        let seqs = if c.receipts.is_empty() {
            String::new()
        } else {
            let shown: Vec<String> = c.receipts.iter().take(10).map(u64::to_string).collect();
            format!(" [receipts {}]", shown.join(", "))
        };
        println!(
            "  {:<4}  {:<31} {}{seqs}",
            c.status.as_str().to_uppercase(),
            c.name,
            c.reason
        );
    }
    let failed = v.failed();
    if failed.is_empty() {
        println!("verdict: PASS, tier {}", v.tier.as_str());
    } else {
        println!(
            "verdict: FAIL, tier {} ({} failed: {})",
            v.tier.as_str(),
            failed.len(),
            failed.join(", ")
        );
    }
}

fn print_hits(answer: &query::Answer) {
    for h in &answer.matches {
        println!(
            "{}  seq {:<8} {}  {:<14} {:<5} {:<20} {}  job {}  vault {}  item {}",
            h.ts,
            h.seq,
            h.id,
            h.op.as_deref().unwrap_or(&h.kind),
            h.decision.as_deref().unwrap_or("-"),
            h.rule.as_deref().unwrap_or("-"),
            h.status.map_or("-".to_owned(), |s| s.to_string()),
            h.job,
            h.vault_name
                .as_deref()
                .or(h.vault.as_deref())
                .unwrap_or("-"),
            h.item.as_deref().unwrap_or("-"),
        );
    }
    eprintln!(
        "clawverify: {} match(es) among {} receipts",
        answer.matches.len(),
        answer.scanned
    );
}

/// Answers `filter` from the fleet's receipt index.
fn fleet_query(url: &str, filter: &Filter) -> anyhow::Result<query::Answer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let fleet = claw_fleet::Fleet::connect(url)
            .await
            .context("connecting to the fleet's state (--state)")?;
        query::fleet::query(&fleet, filter)
            .await
            .context("querying the fleet's receipt index")
    })
}

fn parse_time(text: &str) -> anyhow::Result<i64> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{text:?} is not an RFC 3339 time (2026-11-22T14:00:00Z)"))?;
    Ok(i64::try_from(at.unix_timestamp_nanos() / 1_000_000)?)
}

fn serve(addr: SocketAddr, report: serde_json::Value, verdict: &str) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!(
            "clawverify: {verdict}; the page is at http://{}/ (Ctrl-C to stop)",
            listener.local_addr()?
        );
        tokio::select! {
            served = view::serve(report, listener) => served?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
