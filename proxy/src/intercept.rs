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

/// The key id of a CA key, as `key_rotation` receipts name it: `sha256:<hex>` of its
/// SubjectPublicKeyInfo (what `openssl pkey -pubout -outform DER | sha256sum` prints).
pub fn ca_kid(key: &KeyPair) -> String {
    use rcgen::PublicKeyData;
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.subject_public_key_info());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Reads the CA key from the data dir.
pub(crate) fn read_ca_key(dir: &DataDir) -> anyhow::Result<KeyPair> {
    let key_pem = claw_policy::keys::read_secret(&dir.ca_key())?;
    let key_pem = std::str::from_utf8(&key_pem).context("ca.key is not PEM text")?;
    KeyPair::from_pem(key_pem).context("ca.key is not a private key")
}

/// Mints and caches per-host server configs.
pub struct Interceptor {
    leaf_key: KeyPair,
    /// The CA and the leaves it signed; replaced whole by [`Interceptor::reload`].
    ca: Mutex<Ca>,
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    kid: String,
    configs: HashMap<String, Arc<ServerConfig>>,
}

impl Ca {
    fn load(dir: &DataDir) -> anyhow::Result<Self> {
        let key = read_ca_key(dir)?;
        Ok(Self {
            kid: ca_kid(&key),
            issuer: Issuer::new(ca_params(), key),
            configs: HashMap::new(),
        })
    }
}

impl Interceptor {
    /// Loads the CA from the data dir.
    pub fn load(dir: &DataDir) -> anyhow::Result<Self> {
        Ok(Self {
            leaf_key: KeyPair::generate().context("generating the leaf key")?,
            ca: Mutex::new(Ca::load(dir)?),
        })
    }

    /// Loads the data dir's CA again (after `clawproxy rotate ca`) and forgets every leaf of
    /// the old one: connections made from now on get leaves of the new CA, those already open
    /// keep theirs. Returns the new CA's kid; on error the current CA stays.
    pub fn reload(&self, dir: &DataDir) -> anyhow::Result<String> {
        let ca = Ca::load(dir)?;
        let kid = ca.kid.clone();
        *self.ca.lock().unwrap_or_else(|e| e.into_inner()) = ca;
        Ok(kid)
    }

    /// The kid of the CA in use.
    pub fn ca_kid(&self) -> String {
        self.ca
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .kid
            .clone()
    }

    /// The server config for `host` (lowercase name), minting its leaf on first use.
    pub fn server_config(&self, host: &str) -> anyhow::Result<Arc<ServerConfig>> {
        let mut ca = self.ca.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = ca.configs.get(host) {
            return Ok(config.clone());
        }
        let config = Arc::new(self.mint(&ca.issuer, host)?);
        ca.configs.insert(host.to_owned(), config.clone());
        Ok(config)
    }

    fn mint(&self, issuer: &Issuer<'static, KeyPair>, host: &str) -> anyhow::Result<ServerConfig> {
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, host);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(7);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&self.leaf_key, issuer)?;
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
