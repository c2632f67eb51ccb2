//! The upstream leg: configured upstreams (pooled client, injected credential) and direct
//! connections to other allowed hosts (resolve once, judge every address, dial the one judged).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::config::Upstream;

/// The pooled HTTP(S) client used for configured upstreams.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A configured upstream, ready to use.
pub struct UpstreamTarget {
    /// The name agents use.
    pub host: String,
    /// `scheme://authority` where the server really is.
    pub base: Uri,
    /// The real credential, injected on every request. Never logged. Replaced in place when
    /// its `token_file` is reloaded (SIGHUP), so open connections keep working.
    token: RwLock<Arc<SecretString>>,
    /// Where the token came from, for reloads.
    token_file: Option<PathBuf>,
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
        let token = Zeroizing::new(match (&config.token_env, &config.token_file) {
            (Some(var), _) => env(var).filter(|t| !t.trim().is_empty()).with_context(|| {
                format!(
                    "upstream {}: environment variable {var} is not set; export the Connect token in it",
                    config.host
                )
            })?,
            (None, Some(file)) => read_token_file(file)
                .with_context(|| format!("upstream {}: token_file", config.host))?,
            (None, None) => bail!("upstream {}: no token source", config.host),
        });
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
            token: RwLock::new(Arc::new(SecretString::from(token.trim().to_owned()))),
            token_file: config.token_file.clone(),
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
    pub fn token(&self) -> Arc<SecretString> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads `token_file` and swaps the token in: requests from now on carry the new one;
    /// requests already sent keep theirs. A token from the environment cannot change while the
    /// process runs (`Ok(false)`). A file that is missing, unsafe or empty leaves the old token
    /// in place and says why.
    pub fn reload_token(&self) -> anyhow::Result<bool> {
        let Some(path) = &self.token_file else {
            return Ok(false);
        };
        let token = Zeroizing::new(
            read_token_file(path).with_context(|| format!("upstream {}: token_file", self.host))?,
        );
        let fresh = Arc::new(SecretString::from(token.as_str().to_owned()));
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(true)
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

/// A configured upstream's TLS: its `ca_file` alone when given, else the public web roots.
fn client_tls(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => add_pem_roots(&mut roots, path)?,
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // ALPN (http/1.1 only) is set by the connector builder's enable_http1.
    verifying(roots)
}

/// The TLS of the direct leg to hosts intercepted for `host_rules`: the public web roots plus
/// `extra` (`egress_ca_file`), HTTP/1.1 only.
pub fn direct_tls(extra: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra {
        add_pem_roots(&mut roots, path)?;
    }
    let mut config = verifying(roots)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn add_pem_roots(roots: &mut rustls::RootCertStore, path: &Path) -> anyhow::Result<()> {
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
    {
        roots.add(cert?)?;
        added += 1;
    }
    if added == 0 {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(())
}

fn verifying(roots: rustls::RootCertStore) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
    judge_answers(host, &addrs, own)?;
    Ok(addrs)
}

/// Judges a whole answer set for `host`: every address must be public and none the proxy's
/// own listener, or the lot is refused (a mixed set is how DNS rebinding hides a private
/// target behind a public one). Addresses are compared in canonical form, so the IPv4-mapped
/// spelling of a listener is that listener.
fn judge_answers(host: &str, addrs: &[SocketAddr], own: &[SocketAddr]) -> Result<(), String> {
    if addrs.is_empty() {
        return Err(format!("{host} has no addresses"));
    }
    for addr in addrs {
        judge(addr.ip())?;
        let ip = addr.ip().to_canonical();
        if own.iter().any(|o| {
            o.port() == addr.port() && (o.ip().to_canonical() == ip || o.ip().is_unspecified())
        }) {
            return Err("the proxy's own listeners are not a destination".into());
        }
    }
    Ok(())
}

fn judge(ip: IpAddr) -> Result<(), String> {
    let class = claw_policy::egress::classify_ip(ip);
    if class.is_public() {
        Ok(())
    } else {
        Err(format!("{ip} is a {class} address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    /// The proxy listening on a public address (where the own-listener rule matters).
    const OWN: &[&str] = &["93.184.216.34:3128", "127.0.0.1:9090"];

    #[test]
    fn answer_sets_are_judged_whole() {
        let own = addrs(OWN);
        let cases: &[(&[&str], Option<&str>)] = &[
            // All public: dialled.
            (&["8.8.8.8:443"], None),
            (
                &["8.8.8.8:443", "1.1.1.1:443", "[2606:4700::1111]:443"],
                None,
            ),
            // The proxy's public address on another port is just a host.
            (&["93.184.216.34:443"], None),
            // Rebinding: one private, loopback or metadata answer among public ones.
            (&["8.8.8.8:443", "10.0.0.1:443"], Some("private")),
            (&["127.0.0.1:443", "8.8.8.8:443"], Some("loopback")),
            (&["8.8.8.8:443", "169.254.169.254:443"], Some("metadata")),
            (&["8.8.8.8:443", "[::1]:443"], Some("loopback")),
            // IPv4 hidden in IPv6: mapped, NAT64, 6to4, Teredo.
            (&["[::ffff:10.0.0.1]:443"], Some("private")),
            (&["8.8.8.8:443", "[::ffff:127.0.0.1]:443"], Some("loopback")),
            (&["[64:ff9b::a9fe:a9fe]:443"], Some("metadata")),
            (&["[64:ff9b::c0a8:101]:443"], Some("private")),
            (&["[2002:a00:1::]:443"], Some("private")),
            (&["[2002:7f00:1::1]:443"], Some("loopback")),
            (
                &["[2001:0:4136:e378:8000:63bf:f5ff:fffe]:443"],
                Some("private"),
            ),
            // Local-use NAT64: what it reaches depends on the translator's prefix length.
            (&["[64:ff9b:1:a00:0:100:808:808]:443"], Some("reserved")),
            // The proxy's own listeners, however spelt.
            (&["93.184.216.34:3128"], Some("own listeners")),
            (&["[::ffff:93.184.216.34]:3128"], Some("own listeners")),
            (
                &["8.8.8.8:3128", "93.184.216.34:3128"],
                Some("own listeners"),
            ),
            // Nothing to dial.
            (&[], Some("no addresses")),
        ];
        for (answers, refused) in cases {
            let result = judge_answers("host.example", &addrs(answers), &own);
            match refused {
                None => assert_eq!(result, Ok(()), "{answers:?}"),
                Some(why) => {
                    let reason = result.expect_err(&format!("{answers:?} was accepted"));
                    assert!(reason.contains(why), "{answers:?}: {reason}");
                }
            }
        }
    }

    #[test]
    fn a_listener_on_every_address_owns_its_port_everywhere() {
        for listener in ["0.0.0.0:3128", "[::]:3128"] {
            let own = addrs(&[listener]);
            for answer in ["8.8.8.8:3128", "[2606:4700::1111]:3128"] {
                let reason = judge_answers("h", &addrs(&[answer]), &own).unwrap_err();
                assert!(
                    reason.contains("own listeners"),
                    "{listener} {answer}: {reason}"
                );
            }
            assert_eq!(judge_answers("h", &addrs(&["8.8.8.8:443"]), &own), Ok(()));
        }
    }

    #[test]
    fn egress_ca_file_must_hold_a_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = claw_policy::datadir::DataDir::new(tmp.path().join("claw"));
        crate::init::init(&dir, false).unwrap();
        let config = direct_tls(Some(&dir.ca_cert())).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(direct_tls(None).is_ok());
        let empty = tmp.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = direct_tls(Some(&empty)).unwrap_err();
        assert!(
            format!("{error:#}").contains("holds no PEM certificate"),
            "{error:#}"
        );
        let missing = direct_tls(Some(&tmp.path().join("missing.pem"))).unwrap_err();
        assert!(
            format!("{missing:#}").contains("missing.pem"),
            "{missing:#}"
        );
    }

    #[tokio::test]
    async fn literals_are_judged_without_a_lookup() {
        let own = addrs(OWN);
        assert_eq!(
            resolve_public("8.8.8.8", 443, &own).await,
            Ok(addrs(&["8.8.8.8:443"]))
        );
        for literal in [
            "127.1",
            "0x7f000001",
            "[::ffff:7f00:1]",
            "[fe80::1%25eth0]",
            "1.2.3.4.5",
        ] {
            assert!(
                resolve_public(literal, 443, &own).await.is_err(),
                "{literal}"
            );
        }
        assert!(resolve_public("93.184.216.34", 3128, &own).await.is_err());
    }
}
