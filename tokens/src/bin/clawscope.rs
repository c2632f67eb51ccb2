//! `clawscope`: mint, inspect and revoke job-scoped tokens.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use claw_fleet::Revoked;
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
/// A complete flow (data dir from --data-dir or CLAW_HOME, default ./.claw):
///   clawproxy init
///   clawcontrols publish examples/policies/1password-readonly-agent.json
///   JOB=job-42
///   TOKEN=$(clawscope mint --policy 1password-readonly-agent --job $JOB --agent builder --ttl 600)
///   export HTTPS_PROXY=http://$JOB:$TOKEN@127.0.0.1:3128 HTTP_PROXY=http://$JOB:$TOKEN@127.0.0.1:3128
///   echo "$TOKEN" | clawscope inspect -
///   clawscope revoke --job $JOB --reason "job finished"
///
/// Exit codes: 0 ok; 1 the token is expired, not yet valid or would not verify (inspect);
/// 2 usage or input error, or a token that cannot be minted (unknown or superseded contract,
/// ttl above the contract's max_ttl_seconds, --ops/--vaults that would widen the contract).
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
        /// Narrow the contract's operations (comma-separated, e.g. read_item); never widens.
        #[arg(long, value_delimiter = ',')]
        ops: Option<Vec<String>>,
        /// Narrow the contract's vaults (comma-separated vault ids); never widens.
        #[arg(long, value_delimiter = ',')]
        vaults: Option<Vec<String>>,
        /// The proxy id (aud). Defaults to the data dir's proxy.
        #[arg(long)]
        aud: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
        /// Fleet mode: also refuse a job the fleet's PostgreSQL state has revoked (revoked
        /// through another data dir).
        ///
        /// Example: --state postgres://claw@10.0.0.5:5432/claw
        #[arg(long, env = "CLAW_STATE", hide_env_values = true)]
        state: Option<String>,
    },
    /// Decode and explain a token without its key; says whether it would verify here.
    ///
    /// Shows the header, the claims, validity times (RFC 3339) and remaining lifetime, the
    /// contract it is bound to (name, version, active) and, if the data dir has a trust.json,
    /// whether this data dir's proxy would accept it now.
    ///
    /// Example: echo "$TOKEN" | clawscope inspect -   or   clawscope inspect "$TOKEN" --json
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
        /// Token id (the jti claim). Base64url, so it may start with `-`: taken as the value.
        #[arg(
            long,
            conflicts_with = "job",
            required_unless_present = "job",
            allow_hyphen_values = true
        )]
        jti: Option<String>,
        /// Job id (may start with `-`).
        #[arg(long, allow_hyphen_values = true)]
        job: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "revoked by operator")]
        reason: String,
        #[command(flatten)]
        data: DataDirArg,
        /// Fleet mode: also revoke in the PostgreSQL state every proxy of the fleet reads
        /// (each refuses the token within a second).
        ///
        /// Example: --state postgres://claw@10.0.0.5:5432/claw
        #[arg(long, env = "CLAW_STATE", hide_env_values = true)]
        state: Option<String>,
    },
    /// Print the trusted issuer keys (trust.json) as a JWKS.
    ///
    /// Example: clawscope jwks > jwks.json
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

/// Records a revocation in a fleet's shared state.
fn revoke_in_fleet(
    url: &str,
    kind: Revoked,
    subject: &str,
    reason: &str,
    now: u64,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let fleet = claw_fleet::Fleet::connect(url).await?;
        let until = claw_tokens::revocation::keep_until(None, now);
        fleet.revoke(kind, subject, reason, now, until).await
    })?;
    Ok(())
}

fn revoked_in_fleet(url: &str, job: &str) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let revoked = runtime.block_on(async {
        let fleet = claw_fleet::Fleet::connect(url).await?;
        fleet
            .is_revoked(Revoked::Job, job, claw_tokens::now())
            .await
    })?;
    Ok(revoked)
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
            state,
        } => {
            if let Some(url) = state {
                claw_tokens::mint::check_job(&job)?;
                let revoked = revoked_in_fleet(&url, &job)
                    .context("checking the fleet's revocations (--state); nothing was minted")?;
                anyhow::ensure!(
                    !revoked,
                    "job {job} was revoked in the fleet; use a new job id"
                );
            }
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
                "clawscope: minted a token for job {} (agent {}, proxy {})\n  \
                 contract {} v{} ({})\n  scope {}\n  valid {} s, until {}; jti {}\n  \
                 use it as http://{}:$TOKEN@<proxy>:3128; revoke with clawscope revoke --job {}",
                c.job,
                c.sub,
                c.aud,
                minted.contract,
                minted.version,
                c.wpc,
                c.scope,
                c.exp - c.iat,
                rfc3339(c.exp),
                c.jti,
                c.job,
                c.job,
            );
            if minted.audit_only {
                eprintln!(
                    "clawscope: warning: contract {} is AUDIT-ONLY (enforcement: \"audit\"): the \
                     proxy records what it would deny and lets every such request through; \
                     nothing this job does is refused by the contract's rules",
                    minted.contract
                );
            }
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
            state,
        } => {
            let store = RevocationStore::new(DataDir::new(&data.data_dir).state());
            let now = claw_tokens::now();
            let (kind, subject) = match (jti, job) {
                (Some(jti), _) => {
                    anyhow::ensure!(
                        claw_tokens::claims::is_jti(&jti),
                        "--jti {jti:?} is not a token id (22+ base64url characters, as shown \
                         by clawscope inspect)"
                    );
                    store.revoke_jti(&jti, None, &reason, now)?;
                    (Revoked::Jti, jti)
                }
                (None, Some(job)) => {
                    claw_tokens::mint::check_job(&job)?;
                    store.revoke_job(&job, &reason, now)?;
                    (Revoked::Job, job)
                }
                (None, None) => anyhow::bail!("give --jti or --job"),
            };
            let what = match kind {
                Revoked::Jti => format!("token {subject}"),
                Revoked::Job => format!("job {subject} (every token of it)"),
            };
            match state {
                None => {
                    eprintln!("revoked {what}: every proxy sharing this data dir refuses it now")
                }
                Some(url) => {
                    revoke_in_fleet(&url, kind, &subject, &reason, now).with_context(|| {
                        format!(
                            "revoked {what} in this data dir, but NOT in the fleet's state; \
                             proxies of the fleet still accept it: retry"
                        )
                    })?;
                    eprintln!(
                        "revoked {what}: every proxy of the fleet refuses it within a second"
                    );
                }
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
        std::io::stdin()
            .take(token::MAX_TOKEN_BYTES as u64 * 2)
            .read_to_string(&mut text)
            .context("reading the token from stdin")?;
        text.trim().to_owned()
    } else {
        token.trim().to_owned()
    };
    // Display only: nothing decoded here is trusted; the verdict below decides.
    let (header, claims) =
        token::dangerous_decode_unverified(&token).context("cannot decode the token")?;
    let now = claw_tokens::now();
    let time = |k: &str| claims.get(k).and_then(serde_json::Value::as_u64);
    let (iat, nbf, exp) = (time("iat"), time("nbf"), time("exp"));
    let leeway = token::MAX_LEEWAY_SECS;
    let state = match (nbf, exp) {
        (_, None) => "no expiry (refused)",
        (Some(nbf), _) if nbf > now + leeway => "not yet valid",
        (_, Some(exp)) if now >= exp + leeway => "expired",
        (_, Some(_)) => "within its lifetime",
    };
    let binding = claims
        .get("wpc")
        .and_then(|w| w.as_str())
        .and_then(|hash| Registry::new(dir.policies()).resolve(hash).ok())
        .filter(|(envelope, _)| claims.get("wpc").and_then(|w| w.as_str()) == Some(&envelope.hash))
        .map(|(envelope, s)| (s.name, s.version, s.active, audit_only(&envelope.wpc)));
    // Key-free checks first: a token with a forbidden header never verifies anywhere.
    let verdict: Option<Result<(), String>> = match token::decode(&token) {
        Err(e) => Some(Err(e.to_string())),
        Ok(_) if !dir.trust().exists() => None,
        Ok(_) => Some(verify_here(&token, &claims, dir, now)),
    };
    let failed = matches!(verdict, Some(Err(_))) || state != "within its lifetime";
    if json {
        let out = serde_json::json!({
            "header": header,
            "claims": claims,
            "validity": {
                "state": state,
                "issued_at": iat.map(rfc3339),
                "not_before": nbf.map(rfc3339),
                "expires_at": exp.map(rfc3339),
                "lifetime_seconds": iat.zip(exp).map(|(i, e)| e.saturating_sub(i)),
                "remaining_seconds": exp.map(|e| e.saturating_sub(now)),
            },
            "contract": binding.as_ref().map(|(name, version, active, audit)| serde_json::json!({
                "name": name, "version": version, "active": active,
                "enforcement": if *audit { "audit" } else { "enforce" },
            })),
            "data_dir": dir.root(),
            "verifies_here": verdict.as_ref().map(Result::is_ok),
            "reason": verdict.as_ref().and_then(|v| v.as_ref().err()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("header: {header}");
        for key in claw_tokens::claims::REQUIRED {
            let value = claims.get(key).map(|v| match v.as_u64() {
                Some(t) if matches!(key, "iat" | "nbf" | "exp") => format!("{t} ({})", rfc3339(t)),
                _ => v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            });
            println!("{key:>6}: {}", value.unwrap_or_else(|| "(missing)".into()));
        }
        if let Some(obj) = claims.as_object() {
            for extra in obj
                .keys()
                .filter(|k| !claw_tokens::claims::REQUIRED.contains(&k.as_str()))
            {
                println!("{extra:>6}: (unknown claim: refused)");
            }
        }
        match (iat, exp) {
            (Some(iat), Some(exp)) => println!(
                "validity: {state}; lifetime {} s, {} s left (now {})",
                exp.saturating_sub(iat),
                exp.saturating_sub(now),
                rfc3339(now)
            ),
            _ => println!("validity: {state}"),
        }
        match &binding {
            Some((name, version, active, audit)) => println!(
                "contract: {name} v{version} ({}){}",
                if *active {
                    "active"
                } else {
                    "superseded since mint"
                },
                if *audit {
                    "; AUDIT-ONLY: its rules are recorded, not enforced"
                } else {
                    ""
                }
            ),
            None => println!("contract: not in the registry of {}", dir.root().display()),
        }
        match &verdict {
            Some(Ok(())) => println!("verifies here: yes"),
            Some(Err(reason)) => println!("verifies here: no ({reason})"),
            None => println!(
                "verifies here: unknown (no trust.json in {}; checked without keys only)",
                dir.root().display()
            ),
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether a registry document says `enforcement: "audit"` (read for display; the proxy acts on
/// the checked contract).
fn audit_only(wpc: &serde_json::Value) -> bool {
    wpc.get("enforcement").and_then(serde_json::Value::as_str) == Some("audit")
}

/// Full verification against the data dir, as its proxy would (its proxy id as audience).
fn verify_here(
    token: &str,
    claims: &serde_json::Value,
    dir: &DataDir,
    now: u64,
) -> Result<(), String> {
    let trust = TrustStore::load(&dir.trust()).map_err(|e| format!("trust store: {e}"))?;
    // With one proxy in trust.json, that is who must accept it; otherwise judge the token
    // against the proxy it names (it was minted with --aud).
    let audience = match trust.proxy_ids().as_slice() {
        [one] => (*one).to_owned(),
        _ => claims
            .get("aud")
            .and_then(|a| a.as_str())
            .unwrap_or_default()
            .to_owned(),
    };
    let contracts = RegistryContracts::new(dir, trust.clone());
    let revocations = RevocationStore::new(dir.state());
    token::verify(
        token,
        &trust,
        &contracts,
        &revocations,
        &Expect::new(&audience),
        now,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Seconds since the epoch as RFC 3339 UTC, or "invalid" for a time no calendar holds.
fn rfc3339(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "invalid".into())
}
