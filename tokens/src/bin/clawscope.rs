//! `clawscope`: mint, inspect and revoke job-scoped tokens.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use claw_policy::contract::Operation;
use claw_policy::datadir::DataDir;
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;
use claw_tokens::mint::{MintRequest, mint};
use claw_tokens::revocation::RevocationStore;
use claw_tokens::token::{self, Expect};
use claw_tokens::verifier::RegistryContracts;

/// Mint, inspect and revoke job-scoped tokens (CST) bound to a contract hash.
///
/// A token is an agent job's only credential: it names one job, one proxy, one contract
/// version and lives at most the contract's max_ttl_seconds.
///
/// A complete flow:
///   clawcontrols publish examples/policies/1password-readonly-agent.json
///   TOKEN=$(clawscope mint --policy 1password-readonly-agent --job job-42 --agent builder --ttl 600)
///   export HTTPS_PROXY=http://job-42:$TOKEN@127.0.0.1:3128 HTTP_PROXY=$HTTPS_PROXY
///   clawscope inspect "$TOKEN"
///   clawscope revoke --job job-42 --reason "job finished"
///
/// Exit codes: 0 ok, 1 the token would not verify (inspect), 2 usage or input error.
#[derive(Debug, Parser)]
#[command(name = "clawscope", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint a token; prints only the token on stdout (a summary goes to stderr).
    ///
    /// Example: TOKEN=$(clawscope mint --policy 1password-readonly-agent --job j1 --agent a)
    Mint {
        /// Contract name (its active version) or hash.
        #[arg(long)]
        policy: String,
        /// Job id (the proxy user name): 1 to 128 of A-Z a-z 0-9 . _ -
        #[arg(long)]
        job: String,
        /// Agent name (the token's subject).
        #[arg(long)]
        agent: String,
        /// Lifetime in seconds. Defaults to the contract's max_ttl_seconds.
        #[arg(long)]
        ttl: Option<u64>,
        /// Narrow the contract's operations (comma-separated); never widens.
        #[arg(long, value_delimiter = ',')]
        ops: Option<Vec<String>>,
        /// Narrow the contract's vaults (comma-separated); never widens.
        #[arg(long, value_delimiter = ',')]
        vaults: Option<Vec<String>>,
        /// The proxy id (aud). Defaults to the data dir's proxy.
        #[arg(long)]
        aud: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Decode and explain a token without its key; says whether it would verify here.
    ///
    /// Example: clawscope inspect "$TOKEN"   or   echo "$TOKEN" | clawscope inspect -
    Inspect {
        /// The token, or - to read it from stdin.
        token: String,
        #[command(flatten)]
        data: DataDirArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one token (by jti) or every token of a job. Takes effect at once.
    ///
    /// Example: clawscope revoke --job job-42 --reason "job finished"
    Revoke {
        /// Token id (the jti claim).
        #[arg(long, conflicts_with = "job", required_unless_present = "job")]
        jti: Option<String>,
        /// Job id.
        #[arg(long)]
        job: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "revoked by operator")]
        reason: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Print the trusted issuer keys as a JWKS.
    Jwks {
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
            eprintln!("clawscope: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Mint {
            policy,
            job,
            agent,
            ttl,
            ops,
            vaults,
            aud,
            data,
        } => {
            let ops = ops
                .map(|ops| {
                    ops.iter()
                        .map(|o| o.parse::<Operation>().map_err(anyhow::Error::msg))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
                .transpose()?;
            let request = MintRequest {
                policy,
                job,
                agent,
                ttl,
                ops,
                vaults,
                audience: aud,
            };
            let minted = mint(&DataDir::new(&data.data_dir), &request, claw_tokens::now())?;
            println!("{}", minted.token);
            let c = &minted.claims;
            eprintln!(
                "minted for job {} (agent {}): {} v{} {}, expires in {} s (jti {})",
                c.job,
                c.sub,
                minted.contract,
                minted.version,
                c.wpc,
                c.exp - c.iat,
                c.jti
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { token, data, json } => {
            inspect(&token, &DataDir::new(&data.data_dir), json)
        }
        Command::Revoke {
            jti,
            job,
            reason,
            data,
        } => {
            let store = RevocationStore::new(DataDir::new(&data.data_dir).state());
            let now = claw_tokens::now();
            match (jti, job) {
                (Some(jti), _) => {
                    store.revoke_jti(&jti, None, &reason, now)?;
                    eprintln!(
                        "revoked token {jti}: every proxy sharing this data dir refuses it now"
                    );
                }
                (None, Some(job)) => {
                    claw_tokens::mint::check_job(&job)?;
                    store.revoke_job(&job, &reason, now)?;
                    eprintln!("revoked job {job}: every token of it is refused now");
                }
                (None, None) => anyhow::bail!("give --jti or --job"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jwks { data } => {
            let trust = TrustStore::load(&DataDir::new(&data.data_dir).trust())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&claw_tokens::jwks::jwks(&trust))?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn inspect(token: &str, dir: &DataDir, json: bool) -> anyhow::Result<ExitCode> {
    let token = if token == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text.trim().to_owned()
    } else {
        token.trim().to_owned()
    };
    let decoded = token::decode(&token).context("cannot decode the token")?;
    let claims = &decoded.claims;
    let now = claw_tokens::now();
    let time = |k: &str| claims.get(k).and_then(serde_json::Value::as_u64);
    let verdict: Result<(), String> = (|| {
        let trust =
            TrustStore::load(&dir.trust()).map_err(|e| format!("no trust store here: {e}"))?;
        let audience = claims
            .get("aud")
            .and_then(|a| a.as_str())
            .unwrap_or_default()
            .to_owned();
        let expect = Expect {
            audience: &audience,
            leeway: token::MAX_LEEWAY_SECS,
        };
        let contracts = RegistryContracts::new(dir, trust.clone());
        let revocations = RevocationStore::new(dir.state());
        token::verify(&token, &trust, &contracts, &revocations, &expect, now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })();
    let binding = claims
        .get("wpc")
        .and_then(|w| w.as_str())
        .and_then(|hash| Registry::new(dir.policies()).resolve(hash).ok())
        .map(|(_, s)| {
            format!(
                "{} v{} ({})",
                s.name,
                s.version,
                if s.active { "active" } else { "superseded" }
            )
        });
    if json {
        let out = serde_json::json!({
            "kid": decoded.kid, "claims": claims,
            "verifies_here": verdict.is_ok(), "reason": verdict.as_ref().err(),
            "contract": binding,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("header: alg EdDSA, typ cst+jwt, kid {}", decoded.kid);
        for key in claw_tokens::claims::REQUIRED {
            let value = claims.get(key).map(|v| match v.as_u64() {
                Some(t) if matches!(key, "iat" | "nbf" | "exp") => format!("{t} ({})", rfc3339(t)),
                _ => v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            });
            println!("{key:>6}: {}", value.unwrap_or_else(|| "(missing)".into()));
        }
        match (time("exp"), time("iat")) {
            (Some(exp), Some(iat)) => {
                let left = exp.saturating_sub(now);
                println!("lifetime: {} s, {left} s left", exp.saturating_sub(iat));
            }
            _ => println!("lifetime: unknown"),
        }
        println!(
            "contract: {}",
            binding.unwrap_or_else(|| "not in this data dir's registry".into())
        );
        match &verdict {
            Ok(()) => println!("verifies here: yes"),
            Err(reason) => println!("verifies here: no ({reason})"),
        }
    }
    Ok(if verdict.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn rfc3339(t: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t as i64)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "invalid".into())
}
