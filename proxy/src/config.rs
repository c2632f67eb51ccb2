//! `clawproxy.toml`: one struct, defaults in doc comments, checked before any port binds.
//!
//! Loading runs the TOML through `schemas/clawproxy.schema.json` (errors name the key, e.g.
//! `upstream[0].url`), then the typed model, then checks the schema cannot express (addresses
//! parse, exactly one token source per upstream, no duplicate hosts).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// The JSON Schema of the config file.
pub const SCHEMA: &str = include_str!("../../schemas/clawproxy.schema.json");

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path}: not valid TOML: {message}")]
    Toml {
        /// The config file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key has a bad value.
    #[error("{path}: {key}: {message}")]
    Key {
        /// The config file.
        path: PathBuf,
        /// The dotted key, e.g. `upstream[0].url`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The proxy's configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Agents' `HTTP_PROXY`/`HTTPS_PROXY` address. Defaults to `127.0.0.1:3128`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `/healthz`, `/readyz`, `/metrics`. Defaults to `127.0.0.1:9090`.
    #[serde(default = "default_admin")]
    pub admin: String,
    /// Hosts that get request-level enforcement. Defaults to none.
    #[serde(default)]
    pub upstream: Vec<Upstream>,
    /// Parser, body and connection limits.
    #[serde(default)]
    pub limits: Limits,
    /// Receipt log tuning.
    #[serde(default)]
    pub log: LogTuning,
    /// Fleet mode: `postgres://user@host:port/db`, where several proxies share revocations
    /// and rate-limit budgets. Defaults to none: this proxy's data dir and memory.
    #[serde(default)]
    pub state: Option<StateUrl>,
    /// Fleet mode: this proxy's name among those sharing the state and the proxy identity
    /// (a host name label: `a-z 0-9 -`). Its log is then `clawproxy/<proxy id>/<instance>`
    /// in `receipts/<proxy id>/<instance>`, so every proxy keeps a log of its own. Defaults
    /// to none: the log `clawproxy/<proxy id>`.
    #[serde(default)]
    pub instance: Option<String>,
    /// A file (mode 0600) holding the bearer token that opens the admin address's approval
    /// routes: `GET /approvals` and `POST /approvals/<id>/approve|deny`. Defaults to none:
    /// those routes are off, and approvers use `clawcontrols approve|deny`.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// PEM certificates trusted, besides the public web roots, when the proxy itself connects
    /// over TLS to a host it intercepts for a contract's `host_rules`. Defaults to none.
    #[serde(default)]
    pub egress_ca_file: Option<PathBuf>,
}

/// Where a fleet's state lives. The URL may carry a password, so `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StateUrl(String);

impl StateUrl {
    /// Wraps a URL given on the command line or in the environment.
    pub fn new(url: String) -> Self {
        Self(url)
    }

    /// The URL itself, for connecting: never for a log line or a message.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StateUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateUrl([redacted])")
    }
}

/// Command-line values that replace the file's.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--admin`.
    pub admin: Option<String>,
    /// `--state`.
    pub state: Option<StateUrl>,
    /// `--instance`.
    pub instance: Option<String>,
}

/// A configured upstream: the name agents use and where the server really is.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The name agents use (`connect.1password.com`); must be in the contract's egress list.
    pub host: String,
    /// Always `onepassword`.
    pub integration: String,
    /// Where the server is (`http://127.0.0.1:8080`); may be loopback or private.
    pub url: String,
    /// Environment variable holding the real Connect token.
    pub token_env: Option<String>,
    /// File (mode 0600) holding the real Connect token.
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle for an `https` url. Defaults to the webpki roots.
    pub ca_file: Option<PathBuf>,
}

/// Limits that bound what one client can make the proxy hold.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head. Defaults to 16 KiB.
    pub max_header_bytes: usize,
    /// Most header lines. Defaults to 64.
    pub max_headers: usize,
    /// Largest body buffered for inspection (requests and responses). Defaults to 4 MiB.
    pub max_body_bytes: usize,
    /// Time allowed to send a request head. Defaults to 10 s.
    pub header_timeout_ms: u64,
    /// Idle time before a connection or tunnel is closed. Defaults to 60 s.
    pub idle_timeout_ms: u64,
    /// Most open tunnels. Defaults to 1024.
    pub max_tunnels: usize,
    /// Time allowed for an upstream answer. Defaults to 30 s.
    pub upstream_timeout_ms: u64,
    /// On SIGTERM, time allowed for requests in flight to finish. Defaults to 10 s.
    pub drain_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 4 * 1024 * 1024,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_tunnels: 1024,
            upstream_timeout_ms: 30_000,
            drain_timeout_ms: 10_000,
        }
    }
}

impl Limits {
    /// `header_timeout_ms` as a duration.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    /// `idle_timeout_ms` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// `upstream_timeout_ms` as a duration.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    /// `drain_timeout_ms` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// Receipt log tuning.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogTuning {
    /// Roll to a new segment past this size. Defaults to 64 MiB.
    pub segment_bytes: u64,
    /// Checkpoint at least this often while receipts arrive. Defaults to 1000 ms.
    pub checkpoint_interval_ms: u64,
}

impl Default for LogTuning {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            checkpoint_interval_ms: 1000,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:3128".into()
}

fn default_admin() -> String {
    "127.0.0.1:9090".into()
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and checks config text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let key_error = |key: String, message: String| ConfigError::Key {
            path: path.to_owned(),
            key,
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })?;
        let json = serde_json::to_value(&table).map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(error) = schema().iter_errors(&json).next() {
            let key = dotted(&error.instance_path().to_string());
            return Err(key_error(key, error.to_string()));
        }
        let config: Config = serde_json::from_value(json)
            .map_err(|e| key_error("(top level)".into(), e.to_string()))?;
        config
            .check()
            .map_err(|(key, message)| key_error(key, message))?;
        Ok(config)
    }

    /// Applies command-line overrides and checks the result again.
    pub fn with_overrides(
        mut self,
        overrides: Overrides,
        path: &Path,
    ) -> Result<Self, ConfigError> {
        if let Some(listen) = overrides.listen {
            self.listen = listen;
        }
        if let Some(admin) = overrides.admin {
            self.admin = admin;
        }
        if let Some(state) = overrides.state {
            self.state = Some(state);
        }
        if let Some(instance) = overrides.instance {
            self.instance = Some(instance);
        }
        self.check().map_err(|(key, message)| ConfigError::Key {
            path: path.to_owned(),
            key,
            message,
        })?;
        Ok(self)
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("checked at load")
    }

    /// The admin address, parsed.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.parse().expect("checked at load")
    }

    fn check(&self) -> Result<(), (String, String)> {
        if let Some(url) = &self.state {
            // The message never repeats the URL: it may hold a password.
            claw_fleet::parse_url(url.expose()).map_err(|e| ("state".to_owned(), e.to_string()))?;
        }
        if let Some(instance) = &self.instance
            && !claw_verifier::receipt::is_instance_name(instance)
        {
            return Err((
                "instance".to_owned(),
                format!(
                    "{instance:?} is not an instance name: 1 to 63 of a-z, 0-9 and -, not \
                     starting with - (a host name label such as proxy-a)"
                ),
            ));
        }
        for (key, addr) in [("listen", &self.listen), ("admin", &self.admin)] {
            addr.parse::<SocketAddr>().map_err(|_| {
                (
                    key.to_owned(),
                    format!("{addr:?} is not an address like 127.0.0.1:3128"),
                )
            })?;
        }
        for (i, upstream) in self.upstream.iter().enumerate() {
            let key = |field: &str| format!("upstream[{i}].{field}");
            match (&upstream.token_env, &upstream.token_file) {
                (Some(_), Some(_)) => {
                    return Err((
                        key("token_env"),
                        "set token_env or token_file, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err((
                        key("token_env"),
                        "missing: set token_env = \"OP_CONNECT_TOKEN\" or token_file = \"…\""
                            .into(),
                    ));
                }
                _ => {}
            }
            let parsed: http::Uri = upstream
                .url
                .parse()
                .map_err(|e| (key("url"), format!("{:?} is not a URL: {e}", upstream.url)))?;
            if parsed.host().is_none() || !matches!(parsed.path(), "" | "/") {
                return Err((
                    key("url"),
                    format!(
                        "{:?} must be scheme://host[:port] with no path",
                        upstream.url
                    ),
                ));
            }
            if self.upstream[..i].iter().any(|u| u.host == upstream.host) {
                return Err((
                    key("host"),
                    format!("{:?} is configured twice", upstream.host),
                ));
            }
        }
        Ok(())
    }
}

/// `/upstream/0/url` → `upstream[0].url`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        if token.chars().all(|c| c.is_ascii_digit()) && !token.is_empty() {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(token);
        }
    }
    if out.is_empty() {
        "(top level)".into()
    } else {
        out
    }
}

fn schema() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA).expect("config schema is JSON");
        jsonschema::draft202012::new(&schema).expect("config schema compiles")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("clawproxy.toml"))
    }

    #[test]
    fn the_init_template_loads() {
        let config = load(&crate::init::config_template("127.0.0.1:8080")).unwrap();
        assert_eq!(config.listen, "127.0.0.1:3128");
        assert_eq!(config.upstream[0].host, "connect.1password.com");
        assert_eq!(
            config.upstream[0].token_env.as_deref(),
            Some("OP_CONNECT_TOKEN")
        );
    }

    #[test]
    fn empty_file_gets_defaults() {
        let config = load("").unwrap();
        assert_eq!(config.admin, "127.0.0.1:9090");
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("listen = 5", "listen"),
            ("listen = \"nowhere\"", "listen"),
            ("colour = \"blue\"", "(top level)"),
            (
                "[[upstream]]\nhost = \"c.example\"\nintegration = \"onepassword\"\nurl = \"ftp://x\"\ntoken_env = \"T\"",
                "upstream[0].url",
            ),
            (
                "[[upstream]]\nhost = \"c.example\"\nintegration = \"onepassword\"\nurl = \"http://x\"",
                "upstream[0].token_env",
            ),
            (
                "[[upstream]]\nhost = \"c.example\"\nintegration = \"onepassword\"\nurl = \"http://x\"\ntoken_env = \"T\"\ntoken_file = \"f\"",
                "upstream[0].token_env",
            ),
            ("[limits]\nmax_headers = 2", "limits.max_headers"),
            ("state = 5", "state"),
            ("instance = \"Proxy_A\"", "instance"),
            ("instance = \"\"", "instance"),
            ("instance = \"-a\"", "instance"),
            ("instance = \"a/b\"", "instance"),
            ("state = \"mysql://u:pw@db/x\"", "state"),
        ];
        for (text, key) in cases {
            match load(text) {
                Err(ConfigError::Key { key: got, .. }) => assert_eq!(got, key, "{text}"),
                other => panic!("{text}: expected a key error, got {other:?}"),
            }
        }
        assert!(matches!(load("listen = "), Err(ConfigError::Toml { .. })));
    }

    #[test]
    fn a_state_url_is_checked_without_being_repeated() {
        let config = load("state = \"postgres://claw@127.0.0.1:5432/claw\"").unwrap();
        assert_eq!(
            config.state.as_ref().map(StateUrl::expose),
            Some("postgres://claw@127.0.0.1:5432/claw")
        );
        let with_password = load("state = \"postgres://claw:hunter2@db/claw\"").unwrap();
        assert!(!format!("{with_password:?}").contains("hunter2"));
        let err = load("state = \"mysql://claw:hunter2@db/claw\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("postgres://") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
