//! `clawcontrols`: write, validate, hash, sign, version, diff and explain Work Policy Contracts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use claw_policy::contract::{Category, Contract, ContractError, Operation, Violation};
use claw_policy::datadir::DataDir;
use claw_policy::envelope::Envelope;
use claw_policy::explain::{Question, explain};
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;

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
/// Exit codes: 0 ok (explain: allowed), 1 explain: denied, 2 usage or input error.
#[derive(Debug, Parser)]
#[command(name = "clawcontrols", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check contract files: schema, duplicate keys, unknown fields, semantics.
    ///
    /// Example: clawcontrols validate examples/policies/*.json
    Validate {
        /// Contract files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print a contract's hash: blake3 of its RFC 8785 canonical form.
    ///
    /// Example: clawcontrols hash examples/policies/1password-readonly-agent.json
    Hash {
        /// A contract file.
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validate, sign with the data dir's policy key, store, and make active. Prints the hash.
    ///
    /// Example: clawcontrols publish my-contract.json --data-dir .claw
    Publish {
        /// A contract file.
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List published contracts with their versions and the active one.
    List {
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show a published contract by name (its active version) or hash.
    ///
    /// Example: clawcontrols show 1password-readonly-agent
    Show {
        /// Name or blake3:… hash.
        policy: String,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output (the signed envelope).
        #[arg(long)]
        json: bool,
    },
    /// What B allows or denies in addition to A (files, names or hashes).
    ///
    /// Example: clawcontrols diff 1password-readonly-agent examples/policies/1password-writer.json
    Diff {
        /// The old contract.
        a: String,
        /// The new contract.
        b: String,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Dry-run one request: operation, decision, the rule, and why. Exit 0 allow, 1 deny.
    ///
    /// Example: clawcontrols explain --policy 1password-readonly-agent --method DELETE \
    ///     --url https://connect.1password.com/v1/vaults/V/items/I
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
        /// Request body file (for create, update, patch).
        #[arg(long)]
        body: Option<PathBuf>,
        /// The vault's name, when the contract lists vaults by name.
        #[arg(long)]
        vault_name: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Serve the registry read-only over HTTP (GET /v1/contracts, /v1/contracts/{hash},
    /// /v1/contracts/by-name/{name}).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8181")]
        listen: String,
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

/// An input problem: exit code 2 after printing.
#[derive(Debug)]
struct InputError(String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

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
        Command::Validate { files, json } => validate(&files, json),
        Command::Hash { file, json } => {
            let contract = load_file(&file)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "file": file, "hash": contract.hash() })
                );
            } else {
                println!("{}", contract.hash());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish { file, data, json } => {
            let contract = load_file(&file)?;
            let dir = DataDir::new(&data.data_dir);
            let key =
                keys::read_signing_key(&dir.signing_key(Purpose::Policy)).with_context(|| {
                    format!(
                        "reading the policy key (run `clawproxy init --data-dir {}` first)",
                        dir.root().display()
                    )
                })?;
            let trust = TrustStore::load(&dir.trust())?;
            let published =
                Registry::new(dir.policies()).publish(&Envelope::sign(&contract, &key), &trust)?;
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
                    "already active"
                };
                eprintln!(
                    "{} v{} {note} and active",
                    published.name, published.version
                );
            }
            Ok(ExitCode::SUCCESS)
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
            };
            let answer = explain(contract.document(), &question).map_err(InputError)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!(
                    "{} {} → {} (rule {})",
                    method, url, answer.decision, answer.rule
                );
                println!("operation: {}", answer.operation);
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
        Command::Serve { listen, data } => {
            let registry = Registry::new(DataDir::new(&data.data_dir).policies());
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                eprintln!(
                    "clawcontrols: serving the registry on http://{}",
                    listener.local_addr()?
                );
                axum::serve(listener, claw_policy::registry_api::router(registry)).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Validates every file, reporting each; exit 2 if any is invalid.
fn validate(files: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let mut report = Vec::new();
    for file in files {
        match load_file(file) {
            Ok(contract) => {
                if json {
                    report.push(
                        serde_json::json!({ "file": file, "valid": true, "hash": contract.hash() }),
                    );
                } else {
                    println!(
                        "{}: valid ({}, {})",
                        file.display(),
                        contract.name(),
                        contract.hash()
                    );
                }
            }
            Err(error) => {
                ok = false;
                if json {
                    report.push(serde_json::json!({ "file": file, "valid": false, "error": format!("{error:#}") }));
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

/// Reads and checks a contract file; errors name the file, the pointer and the fix.
fn load_file(path: &Path) -> anyhow::Result<Contract> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Contract::from_slice(&bytes).map_err(|error| {
        let text = match &error {
            ContractError::Invalid(violations) => violations
                .iter()
                .map(|v| format!("{}: {v}{}", path.display(), hint(v)))
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!(
                "{}: {other} (fix the JSON syntax; each key may appear once)",
                path.display()
            ),
        };
        InputError(text).into()
    })
}

/// A file, a registry name or a hash.
fn load_any(what: &str, dir: &DataDir) -> anyhow::Result<Contract> {
    let path = Path::new(what);
    if path.is_file() {
        return load_file(path);
    }
    let registry = Registry::new(dir.policies());
    let trust = TrustStore::load(&dir.trust())
        .with_context(|| format!("{what:?} is not a file; looking it up needs a data dir"))?;
    Ok(registry.load(what, &trust)?.0)
}

/// The fix for a violation, when there is an obvious one.
fn hint(v: &Violation) -> String {
    let m = &v.message;
    let p = &v.pointer;
    if p.contains("operations") && m.contains("is not one of") {
        let ops: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        format!(" (fix: use one of {})", ops.join(", "))
    } else if p.contains("allowed_categories") && m.contains("is not one of") {
        let cats: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        format!(
            " (fix: use one of the 22 Connect categories: {})",
            cats.join(", ")
        )
    } else if m.contains("Additional properties") || m.contains("unknown field") {
        " (fix: remove the field; schemas/wpc.schema.json lists the allowed ones)".into()
    } else if m.contains("[]")
        || m.contains("fewer than")
        || m.contains("minItems")
        || m.contains("empty") && p.contains("allowed")
    {
        " (fix: list at least one value; an empty allow-list allows nothing)".into()
    } else if p.ends_with("max_ttl_seconds") {
        " (fix: a whole number of seconds from 1 to 86400)".into()
    } else {
        String::new()
    }
}
