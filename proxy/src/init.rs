//! `clawproxy init`: a data dir with keys, the interception CA, `trust.json` and a commented
//! `clawproxy.toml`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use anyhow::{Context, bail};
use claw_policy::datadir::{DataDir, InitKeys, init_keys};
use claw_policy::keys;
use rcgen::KeyPair;

/// What `init` created.
#[derive(Debug)]
pub struct Initialised {
    /// Keys and proxy id.
    pub keys: InitKeys,
}

/// Creates a data dir. Refuses to touch an existing one unless `force`.
pub fn init(dir: &DataDir, force: bool) -> anyhow::Result<Initialised> {
    if !force && dir.config().exists() {
        bail!(
            "{} is already initialised ({} exists); use --force to replace its keys",
            dir.root().display(),
            dir.config().display()
        );
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.root())
        .with_context(|| format!("creating {}", dir.root().display()))?;
    let keys = init_keys(dir, force)?;
    write_ca(dir, force)?;
    for sub in [dir.policies(), dir.receipts(), dir.state()] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&sub)
            .with_context(|| format!("creating {}", sub.display()))?;
    }
    claw_policy::registry::write_atomic(
        &dir.config(),
        config_template("127.0.0.1:8080").as_bytes(),
    )
    .with_context(|| format!("writing {}", dir.config().display()))?;
    Ok(Initialised { keys })
}

/// The commented config `init` writes, with Connect expected at `connect_addr`.
pub fn config_template(connect_addr: &str) -> String {
    format!(
        r#"# clawproxy configuration (checked against schemas/clawproxy.schema.json at start;
# `clawproxy check-config` checks it without starting).

# Agents' HTTP_PROXY / HTTPS_PROXY address.
listen = "127.0.0.1:3128"
# /healthz, /readyz and Prometheus /metrics.
admin = "127.0.0.1:9090"

# A host that gets request-level enforcement. Agents use the name in `host` (it must be in the
# contract's sandbox.network_egress); the proxy sends their requests to `url` and injects the
# real Connect token, which the agent never holds.
[[upstream]]
host = "connect.1password.com"
integration = "onepassword"
url = "http://{connect_addr}"
token_env = "OP_CONNECT_TOKEN"     # or: token_file = "/run/secrets/connect-token" (mode 0600)
# ca_file = "connect-ca.pem"       # for an https url not signed by a public CA

# [limits]                         # defaults shown
# max_header_bytes = 16384
# max_headers = 64
# max_body_bytes = 4194304
# header_timeout_ms = 10000
# idle_timeout_ms = 60000
# max_tunnels = 1024
# upstream_timeout_ms = 30000
# drain_timeout_ms = 10000
"#
    )
}

fn write_ca(dir: &DataDir, force: bool) -> anyhow::Result<()> {
    let pem = dir.ca_cert();
    if !force && (pem.exists() || dir.ca_key().exists()) {
        bail!("{} already exists; use --force", pem.display());
    }
    write_new_ca(dir)?;
    Ok(())
}

/// Creates a CA key and its self-signed certificate and writes both (`ca.key` 0600, `ca.pem`
/// 0644, each atomically), replacing any there. Returns the new key.
pub(crate) fn write_new_ca(dir: &DataDir) -> anyhow::Result<KeyPair> {
    // The same subject the interceptor rebuilds, so leaves name this certificate as issuer.
    let mut params = crate::intercept::ca_params();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let pem = dir.ca_cert();
    claw_policy::registry::write_atomic(&pem, cert.pem().as_bytes())
        .with_context(|| format!("writing {}", pem.display()))?;
    // The CA certificate is public: agents need to read it to trust the proxy.
    fs::set_permissions(&pem, fs::Permissions::from_mode(0o644))?;
    keys::write_secret(&dir.ca_key(), key.serialize_pem().as_bytes(), true)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use claw_policy::keys::Purpose;

    #[test]
    fn init_creates_a_usable_data_dir_and_refuses_to_repeat() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("claw"));
        let done = init(&dir, false).unwrap();
        assert!(done.keys.proxy_id.starts_with('p'));
        for purpose in Purpose::ALL {
            let mode = fs::metadata(dir.signing_key(purpose))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mode = fs::metadata(dir.ca_key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(crate::config::Config::load(&dir.config()).is_ok());
        let err = init(&dir, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        init(&dir, true).unwrap();
    }
}
