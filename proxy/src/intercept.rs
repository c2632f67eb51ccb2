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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn client_config(dir: &DataDir) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.ca_cert()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Handshakes a client asking for `sni` with a server configured for `host`.
    async fn handshake(interceptor: &Interceptor, dir: &DataDir, host: &str, sni: &str) -> bool {
        let acceptor = TlsAcceptor::from(interceptor.server_config(host).unwrap());
        let connector = TlsConnector::from(client_config(dir));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut tls = acceptor.accept(server_io).await.ok()?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.ok()?;
            tls.write_all(&buf).await.ok()?;
            tls.flush().await.ok()
        });
        let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let client = async {
            let mut tls = connector.connect(name, client_io).await.ok()?;
            tls.write_all(b"ping").await.ok()?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.ok()?;
            (&buf == b"ping").then_some(())
        };
        let ok = client.await.is_some();
        let _ = server.await;
        ok
    }

    #[tokio::test]
    async fn leaf_is_trusted_for_its_host_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("claw"));
        crate::init::init(&dir, false).unwrap();
        let interceptor = Interceptor::load(&dir).unwrap();
        assert!(
            handshake(
                &interceptor,
                &dir,
                "connect.1password.com",
                "connect.1password.com"
            )
            .await
        );
        // SNI naming another host than the CONNECT authority: no certificate, no handshake.
        assert!(!handshake(&interceptor, &dir, "connect.1password.com", "evil.example").await);
        // The cache hands back the same config.
        let a = interceptor.server_config("connect.1password.com").unwrap();
        let b = interceptor.server_config("connect.1password.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
