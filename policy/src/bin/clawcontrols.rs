//! `clawcontrols`: write, validate, hash, sign, version, diff and explain Work Policy Contracts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use claw_policy::datadir::{self, DataDir};
use claw_policy::envelope::{Envelope, EnvelopeError};
use claw_policy::explain::{self, Question};
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::{Registry, RegistryError};
use claw_policy::trust::TrustStore;

// The crate root is not a mod.rs, so the module dir is named explicitly.
#[path = "clawcontrols/approvals.rs"]
mod approvals;
#[path = "clawcontrols/input.rs"]
mod input;

use input::{Check, InputError, load_any, load_file};

/// Write, validate, hash, sign, version, diff and explain Work Policy Contracts.
///
/// A contract says what an agent job may do through clawproxy: which 1Password Connect
/// operations, vaults and item categories, and which hosts it may reach. Default deny.
///
/// Typical flow:
///   clawcontrols validate examples/policies/1password-readonly-agent.json
///   clawcontrols publish examples/policies/1password-readonly-agent.json --data-dir .claw
///   clawcontrols explain --policy 1password-readonly-agent --method GET \
///       --url https://connect.1password.com/v1/vaults/V/items?filter=title%20eq%20%22db%22
///
/// Requests a contract's `approvals` rules hold wait for a person:
///   clawcontrols approvals --data-dir .claw
///   clawcontrols approve apr_… --as alice      (or: deny apr_… --as alice --reason "…")
///
/// Exit codes: 0 ok (explain: allowed), 1 explain: denied, 2 usage or input error.
#[derive(Debug, Parser)]
#[command(name = "clawcontrols", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check contract files: syntax, duplicate keys, schema, unknown fields, semantics.
    ///
    /// Each FILE is checked and reported; a problem is printed as FILE: POINTER: what (fix: how).
    /// A signed envelope ({"wpc","hash","signatures"}) is checked too: hash and signatures
    /// against the data dir's trust.json.
    ///
    /// Example: clawcontrols validate examples/policies/*.json
    ///
    /// Exit codes: 0 every file valid, 2 any file invalid or unreadable.
    #[command(verbatim_doc_comment)]
    Validate {
        /// Contract files (bare contracts or signed envelopes).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output: one {file, valid, hash | errors} per file.
        #[arg(long)]
        json: bool,
    },
    /// Print a contract's hash: blake3 of its RFC 8785 canonical form.
    ///
    /// Key order and whitespace do not change it. For a signed envelope, the hash of the
    /// document inside (after checking the envelope's stated hash matches).
    ///
    /// Example: clawcontrols hash examples/policies/1password-readonly-agent.json
    ///
    /// Exit codes: 0 printed, 2 invalid file.
    #[command(verbatim_doc_comment)]
    Hash {
        /// A contract file.
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validate, sign with the data dir's policy key, store, and make active. Prints the hash.
    ///
    /// A bare contract is signed with DATA_DIR/keys/policy.pem; a signed envelope is stored as
    /// it is if a trusted policy key signed it. Nothing is written unless every check passes.
    ///
    /// Example: clawcontrols publish examples/policies/1password-read-by-title.json --data-dir .claw
    ///
    /// Exit codes: 0 published (or already active), 2 invalid file, missing or untrusted key.
    #[command(verbatim_doc_comment)]
    Publish {
        /// A contract file or signed envelope.
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output: {name, version, hash, changed}.
        #[arg(long)]
        json: bool,
    },
    /// List published contracts with their versions and the active one.
    ///
    /// Example: clawcontrols list --data-dir .claw --json
    ///
    /// Exit codes: 0 listed, 2 unreadable registry.
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output: {name: {active, versions: [...]}}.
        #[arg(long)]
        json: bool,
    },
    /// Show a published contract by name (its active version) or hash.
    ///
    /// Example: clawcontrols show 1password-readonly-agent
    ///          clawcontrols show blake3:3dc0… --json
    ///
    /// Exit codes: 0 shown, 2 unknown name or hash.
    #[command(verbatim_doc_comment)]
    Show {
        /// Name or blake3:… hash.
        policy: String,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output: the signed envelope.
        #[arg(long)]
        json: bool,
    },
    /// What B allows or denies in addition to A, per operation, vault, category, host and TTL.
    ///
    /// A and B are files, registry names or hashes. "+" lines widen what the agent may do,
    /// "-" lines narrow it. Operations also in deny_operations do not count as allowed.
    ///
    /// Example: clawcontrols diff examples/policies/1password-readonly-agent.json \
    ///              examples/policies/1password-read-by-title.json
    ///          clawcontrols diff blake3:3dc0… 1password-readonly-agent
    ///
    /// Exit codes: 0 compared (with or without changes), 2 invalid or unknown contract.
    #[command(verbatim_doc_comment)]
    Diff {
        /// The old contract: file, name or hash.
        a: String,
        /// The new contract: file, name or hash.
        b: String,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output: [{direction: widens|narrows, what, value}].
        #[arg(long)]
        json: bool,
    },
    /// Dry-run one request: operation, decision, the rule, and why.
    ///
    /// Example: clawcontrols explain --policy 1password-readonly-agent --method GET \
    ///              --url 'https://connect.1password.com/v1/vaults/V/items?filter=title%20eq%20%22db%22'
    ///          → deny: read by title is a list_items call, which this contract does not allow
    ///
    /// Exit codes: 0 allowed, 1 denied, 2 usage error (bad URL, unknown contract).
    #[command(verbatim_doc_comment)]
    Explain {
        /// Contract name, hash, or file.
        #[arg(long)]
        policy: String,
        /// HTTP method.
        #[arg(long)]
        method: String,
        /// Full URL the agent would request.
        #[arg(long)]
        url: String,
        /// Request body file (for create, update, patch): its category is checked.
        #[arg(long)]
        body: Option<PathBuf>,
        /// The vault's name, when the contract lists vaults by name.
        #[arg(long)]
        vault_name: Option<String>,
        /// A host with request-level rules (a configured upstream in clawproxy.toml); other
        /// allowed hosts are tunnelled. Repeat for several.
        #[arg(long = "upstream", value_name = "HOST", default_value = explain::DEFAULT_UPSTREAM)]
        upstreams: Vec<String>,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output: {decision, rule, operation, host, port, vault, item, why}.
        #[arg(long)]
        json: bool,
    },
    /// List the requests held for approval (by a contract's `approvals` rules), oldest first.
    ///
    /// Each shows its id, job, operation, vault, item, the exact request, who may decide and
    /// how long it still waits. Bodies are never shown, only their keyed hash.
    ///
    /// Example: clawcontrols approvals --data-dir .claw
    ///
    /// Exit codes: 0 listed (also when none), 2 unreadable state.
    #[command(verbatim_doc_comment)]
    Approvals {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        state: StateArg,
        /// Machine-readable output: [{id, job, operation, method, host, path, approvers,
        /// expires_in_seconds, …}].
        #[arg(long)]
        json: bool,
    },
    /// Approve a held request: the proxy forwards it, once, and receipts who approved.
    ///
    /// NAME must be one of the approvers of the contract rule that holds it. The approval is
    /// bound to that exact request (method, path, body hash) and cannot be reused.
    ///
    /// Example: clawcontrols approve apr_5d0f… --as alice --data-dir .claw
    ///
    /// Exit codes: 0 approved, 2 unknown, expired or already decided id, or NAME not an approver.
    #[command(verbatim_doc_comment)]
    Approve(Decide),
    /// Deny a held request: the agent gets 403 (rule approvals), receipted with who denied.
    ///
    /// Example: clawcontrols deny apr_5d0f… --as alice --reason "not during the freeze"
    ///
    /// Exit codes: 0 denied, 2 unknown, expired or already decided id, or NAME not an approver.
    #[command(verbatim_doc_comment)]
    Deny(Decide),
    /// Serve the registry read-only over HTTP (axum).
    ///
    /// GET /v1/contracts                  names, versions, active hash
    /// GET /v1/contracts/{hash}           the signed envelope
    /// GET /v1/contracts/by-name/{name}   the active envelope of a name
    /// Unknown names or hashes: 404 {"status":404,"message":…}. Loopback addresses only.
    ///
    /// Example: clawcontrols serve --listen 127.0.0.1:8181 --data-dir .claw
    ///
    /// Exit codes: 0 stopped, 2 cannot listen (address in use, not loopback).
    #[command(verbatim_doc_comment)]
    Serve {
        /// Address to listen on (a loopback address).
        #[arg(long, default_value = "127.0.0.1:8181")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        data: DataDirArg,
        /// Print the bound address as {"listen": "ADDR"} on stdout once listening.
        #[arg(long)]
        json: bool,
    },
}

/// The arguments of `approve` and `deny`.
#[derive(Debug, clap::Args)]
struct Decide {
    /// The id from `clawcontrols approvals` (apr_…).
    request_id: String,
    /// Your name, as the contract's approvers list it.
    #[arg(long = "as", value_name = "NAME")]
    by: String,
    /// A note kept with the decision (a denial's shows in the agent's 403 and the receipt).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    state: StateArg,
}

#[derive(Debug, clap::Args)]
struct StateArg {
    /// Fleet mode: the requests held by every proxy sharing this PostgreSQL, instead of the
    /// data dir's (the proxies' `state`).
    ///
    /// Example: --state postgres://claw@10.0.0.5:5432/claw
    #[arg(long, env = "CLAW_STATE", hide_env_values = true)]
    state: Option<String>,
}

#[derive(Debug, clap::Args)]
struct DataDirArg {
    /// The data dir (keys, policies, receipts, state).
    #[arg(long, env = "CLAW_HOME", default_value = ".claw")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("clawcontrols: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { files, data, json } => {
            validate(&files, &DataDir::new(&data.data_dir), json)
        }
        Command::Hash { file, json } => {
            // Hashing needs no keys: an envelope's signatures are not looked at, only its hash.
            let loaded = load_file(&file, &DataDir::new(datadir::DEFAULT), Check::Hash)?;
            let hash = loaded.contract.hash();
            if json {
                println!("{}", serde_json::json!({ "file": file, "hash": hash }));
            } else {
                println!("{hash}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish { file, data, json } => {
            publish(&file, &DataDir::new(&data.data_dir), json)
        }
        Command::List { data, json } => {
            let index = Registry::new(DataDir::new(&data.data_dir).policies()).index()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&index.contracts)?);
            } else if index.contracts.is_empty() {
                println!("no contracts published yet (clawcontrols publish FILE)");
            } else {
                for (name, entry) in &index.contracts {
                    println!("{name}");
                    for v in &entry.versions {
                        let mark = if v.hash == entry.active {
                            "  active"
                        } else {
                            ""
                        };
                        println!("  v{}  {}  {}{mark}", v.version, v.hash, v.published_at);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { policy, data, json } => {
            let registry = Registry::new(DataDir::new(&data.data_dir).policies());
            let (envelope, status) = registry.resolve(&policy)?;
            if json {
                println!("{}", envelope.to_json_pretty());
            } else {
                let state = if status.active {
                    "active"
                } else {
                    "superseded"
                };
                println!(
                    "{} v{} ({state})\n{}",
                    status.name, status.version, envelope.hash
                );
                for s in &envelope.signatures {
                    println!("signed by {}", s.kid);
                }
                println!("{}", serde_json::to_string_pretty(&envelope.wpc)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { a, b, data, json } => {
            let dir = DataDir::new(&data.data_dir);
            let old = load_any(&a, &dir)?;
            let new = load_any(&b, &dir)?;
            let changes = claw_policy::diff::diff(old.document(), new.document());
            if json {
                println!("{}", serde_json::to_string_pretty(&changes)?);
            } else if changes.is_empty() {
                println!(
                    "no change in what is allowed ({} → {})",
                    old.hash(),
                    new.hash()
                );
            } else {
                for change in &changes {
                    let sign = match change.direction {
                        claw_policy::diff::Direction::Widens => "+",
                        claw_policy::diff::Direction::Narrows => "-",
                    };
                    println!("{sign} {change}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            policy,
            method,
            url,
            body,
            vault_name,
            upstreams,
            data,
            json,
        } => {
            let contract = load_any(&policy, &DataDir::new(&data.data_dir))?;
            let body = match &body {
                Some(path) => Some(
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            let question = Question {
                method: &method,
                url: &url,
                body: body.as_deref(),
                vault_name: vault_name.as_deref(),
                upstreams: &upstreams,
            };
            let answer =
                explain::explain(contract.document(), &question).map_err(InputError::Plain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!(
                    "{} {} → {} (rule {})",
                    method, url, answer.decision, answer.rule
                );
                println!("operation: {}", answer.operation);
                if let Some(assumes) = &answer.assumes {
                    println!("assumes: {assumes}");
                }
                for line in &answer.why {
                    println!("why: {line}");
                }
            }
            Ok(if answer.decision == "allow" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Approvals { data, state, json } => {
            approvals::list(&DataDir::new(&data.data_dir), state.state, json)
        }
        Command::Approve(decide) => approvals::decide(decide, true),
        Command::Deny(decide) => approvals::decide(decide, false),
        Command::Serve { listen, data, json } => {
            if !listen.ip().is_loopback() {
                return Err(InputError::Plain(format!(
                    "--listen {listen}: the registry API binds loopback addresses only \
                     (fix: use 127.0.0.1:PORT or [::1]:PORT)"
                ))
                .into());
            }
            let registry = Registry::new(DataDir::new(&data.data_dir).policies());
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let bound = listener.local_addr()?;
                if json {
                    println!("{}", serde_json::json!({ "listen": bound.to_string() }));
                } else {
                    eprintln!("clawcontrols: serving the registry on http://{bound}");
                }
                axum::serve(listener, claw_policy::registry_api::router(registry)).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Checks, signs (a bare contract) and stores; the registry writes atomically under a lock.
fn publish(file: &Path, dir: &DataDir, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = load_file(file, dir, Check::Signatures)?;
    let trust = TrustStore::load(&dir.trust()).with_context(|| {
        format!(
            "reading {} (run `clawproxy init --data-dir {}` first)",
            dir.trust().display(),
            dir.root().display()
        )
    })?;
    let envelope = match loaded.envelope {
        Some(envelope) => envelope,
        None => {
            let key =
                keys::read_signing_key(&dir.signing_key(Purpose::Policy)).with_context(|| {
                    format!(
                        "reading the policy key (run `clawproxy init --data-dir {}` first)",
                        dir.root().display()
                    )
                })?;
            Envelope::sign(&loaded.contract, &key)
        }
    };
    let published = Registry::new(dir.policies())
        .publish(&envelope, &trust)
        .map_err(|error| match error {
            RegistryError::Envelope(EnvelopeError::Untrusted { kids }) => {
                InputError::Plain(format!(
                    "{}: signed by {kids}, which {} does not trust as a policy key (fix: the data \
                 dir's keys/policy.pem must match its trust.json; run `clawproxy init --force` \
                 or add the key)",
                    file.display(),
                    dir.trust().display()
                ))
                .into()
            }
            other => anyhow::Error::from(other),
        })?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "name": published.name, "version": published.version,
                "hash": published.hash, "changed": published.changed })
        );
    } else {
        println!("{}", published.hash);
        let note = if published.changed {
            "published"
        } else {
            "was already published"
        };
        eprintln!("{} v{} {note}; active", published.name, published.version);
    }
    Ok(ExitCode::SUCCESS)
}

/// Validates every file, reporting each; exit 2 if any is invalid.
fn validate(files: &[PathBuf], dir: &DataDir, json: bool) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let mut report = Vec::new();
    for file in files {
        match load_file(file, dir, Check::Signatures) {
            Ok(loaded) => {
                let contract = &loaded.contract;
                let kind = if loaded.envelope.is_some() {
                    "signed envelope"
                } else {
                    "contract"
                };
                if json {
                    report.push(
                        serde_json::json!({ "file": file, "valid": true, "kind": kind,
                        "name": contract.name(), "hash": contract.hash() }),
                    );
                } else {
                    println!(
                        "{}: valid {kind} ({}, {})",
                        file.display(),
                        contract.name(),
                        contract.hash()
                    );
                }
            }
            Err(error) => {
                ok = false;
                if json {
                    let errors = match error.downcast_ref::<InputError>() {
                        Some(InputError::Located(problems)) => serde_json::to_value(problems)?,
                        _ => serde_json::json!([{ "file": file, "pointer": "/",
                            "message": format!("{error:#}") }]),
                    };
                    report.push(
                        serde_json::json!({ "file": file, "valid": false, "errors": errors }),
                    );
                } else {
                    eprintln!("{error:#}");
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
