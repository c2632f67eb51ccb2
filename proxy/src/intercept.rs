//! TLS interception for configured upstreams: a leaf certificate per host, minted from the data
//! dir's CA and cached, and a rustls server config that only answers for that host.
//!
//! The CA is rebuilt from its key and the fixed subject `init` gives it, so no X.509 parser is
//! needed: the issuer name and authority key id of every leaf match the CA certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use claw_policy::datadir::DataDir;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// The subject `init` gives the CA; leaves name it as their issuer.
pub(crate) fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "clawproxy interception CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "clawproxy");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Mints and caches per-host server configs.
pub struct Interceptor {
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    configs: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl Interceptor {
    /// Loads the CA from the data dir.
    pub fn load(dir: &DataDir) -> anyhow::Result<Self> {
        let key_pem = claw_policy::keys::read_secret(&dir.ca_key())?;
        let key_pem = std::str::from_utf8(&key_pem).context("ca.key is not PEM text")?;
        let ca_key = KeyPair::from_pem(key_pem).context("ca.key is not a private key")?;
        Ok(Self {
            issuer: Issuer::new(ca_params(), ca_key),
            leaf_key: KeyPair::generate().context("generating the leaf key")?,
            configs: Mutex::new(HashMap::new()),
        })
    }

    /// The server config for `host` (lowercase name), minting its leaf on first use.
    pub fn server_config(&self, host: &str) -> anyhow::Result<Arc<ServerConfig>> {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = configs.get(host) {
            return Ok(config.clone());
        }
        let config = Arc::new(self.mint(host)?);
        configs.insert(host.to_owned(), config.clone());
        Ok(config)
    }

    fn mint(&self, host: &str) -> anyhow::Result<ServerConfig> {
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, host);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(7);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&self.leaf_key, &self.issuer)?;
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::from_pem_slice(self.leaf_key.serialize_pem().as_bytes())
            .context("leaf key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider
            .key_provider
            .load_private_key(key)
            .context("loading the leaf key")?;
        let resolver = OneHost {
            host: host.to_owned(),
            key: Arc::new(CertifiedKey::new(chain, signing)),
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        // HTTP/1.1 only: h2 would let one connection carry several authorities.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Answers only a ClientHello whose SNI names the tunnel's host (CONNECT authority = SNI).
#[derive(Debug)]
struct OneHost {
    host: String,
    key: Arc<CertifiedKey>,
}

impl ResolvesServerCert for OneHost {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?;
        sni.trim_end_matches('.')
            .eq_ignore_ascii_case(&self.host)
            .then(|| self.key.clone())
    }
}
