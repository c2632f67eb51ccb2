//! The upstream leg: configured upstreams (pooled client, injected credential) and direct
//! connections to other allowed hosts (resolve once, judge every address, dial the one judged).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use secrecy::{ExposeSecret, SecretString};

use crate::config::Upstream;

/// The pooled HTTP(S) client used for configured upstreams.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A configured upstream, ready to use.
pub struct UpstreamTarget {
    /// The name agents use.
    pub host: String,
    /// `scheme://authority` where the server really is.
    pub base: Uri,
    /// The real credential, injected on every request. Never logged.
    pub token: SecretString,
    /// The pooled client (verifies https with webpki roots or `ca_file`).
    pub client: UpstreamClient,
}

impl std::fmt::Debug for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTarget")
            .field("host", &self.host)
            .field("base", &self.base)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl UpstreamTarget {
    /// Builds the upstream from its config, reading the token from env or a 0600 file.
    pub fn new(config: &Upstream, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let token = match (&config.token_env, &config.token_file) {
            (Some(var), _) => env(var).filter(|t| !t.trim().is_empty()).with_context(|| {
                format!(
                    "upstream {}: environment variable {var} is not set; export the Connect token in it",
                    config.host
                )
            })?,
            (None, Some(file)) => read_token_file(file)
                .with_context(|| format!("upstream {}: token_file", config.host))?,
            (None, None) => bail!("upstream {}: no token source", config.host),
        };
        let base: Uri = config.url.parse()?;
        let tls = client_tls(config.ca_file.as_deref())
            .with_context(|| format!("upstream {}: TLS setup", config.host))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            host: config.host.clone(),
            base,
            token: SecretString::from(token.trim().to_owned()),
            client,
        })
    }

    /// The upstream URI for a normalised path and query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> anyhow::Result<Uri> {
        let scheme = self.base.scheme_str().unwrap_or("http");
        let authority = self.base.authority().context("upstream url has no host")?;
        let target = match query {
            Some(q) => format!("{scheme}://{authority}{path}?{q}"),
            None => format!("{scheme}://{authority}{path}"),
        };
        Ok(target.parse()?)
    }

    /// The token, for injection only.
    pub fn token(&self) -> &str {
        self.token.expose_secret()
    }
}

fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let bytes = claw_policy::keys::read_secret(path)?;
    let text = std::str::from_utf8(&bytes).context("token file is not UTF-8")?;
    if text.trim().is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(text.trim().to_owned())
}

fn client_tls(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?
            {
                roots.add(cert?)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // ALPN (http/1.1 only) is set by the connector builder's enable_http1.
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Resolves `host` once and returns the addresses to dial, refusing the lot if any answer is
/// not a public address (a mixed answer set is how DNS rebinding hides a private target).
pub async fn resolve_public(
    host: &str,
    port: u16,
    own: &[SocketAddr],
) -> Result<Vec<SocketAddr>, String> {
    let literal = claw_policy::egress::parse_ip_literal(host);
    let addrs: Vec<SocketAddr> = match literal {
        Some(Ok(ip)) => vec![SocketAddr::new(ip, port)],
        Some(Err(reason)) => return Err(reason),
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| format!("cannot resolve {host}"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{host} has no addresses"));
    }
    for addr in &addrs {
        judge(addr.ip())?;
        if own
            .iter()
            .any(|o| o.port() == addr.port() && (o.ip() == addr.ip() || o.ip().is_unspecified()))
        {
            return Err("the proxy's own listeners are not a destination".into());
        }
    }
    Ok(addrs)
}

fn judge(ip: IpAddr) -> Result<(), String> {
    let class = claw_policy::egress::classify_ip(ip);
    if class.is_public() {
        Ok(())
    } else {
        Err(format!("{ip} is a {class} address"))
    }
}
