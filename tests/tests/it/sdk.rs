//! The official 1Password Connect SDKs, unchanged and configured only by environment variables,
//! through the proxy to connect-sim: over plain HTTP and over HTTPS with interception. The
//! agent's OP_CONNECT_TOKEN is a placeholder, so every success proves the proxy injected the
//! real one. The scripts in tests/e2e/ assert the allowed read, the withheld LOGIN item, the
//! denied delete and vault listing, and the receipt header.
//!
//! The SDKs come from `tests/sdk/setup.sh` (run by `tests/run`). Missing ones fail the test when
//! `CI` is set and skip it otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn installed(path: &Path) -> bool {
    if path.exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: run tests/sdk/setup.sh",
        path.display()
    );
    eprintln!(
        "skipping: {} is missing (run tests/sdk/setup.sh)",
        path.display()
    );
    false
}

async fn run(stack: &Stack, token: &str, scheme: &str, program: &Path, script: &str) {
    let proxy = format!("http://job-1:{token}@{}", stack.addr());
    let mut command = Command::new(program);
    command
        .arg(root().join(script))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env("HTTP_PROXY", &proxy)
        .env("HTTPS_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .env("https_proxy", &proxy)
        .env(
            "OP_CONNECT_HOST",
            format!("{scheme}://connect.1password.com"),
        )
        .env("OP_CONNECT_TOKEN", "agent-placeholder-not-the-real-token")
        .env("OP_VAULT", DEMO_VAULT_ID)
        .env("DB_ITEM", DEMO_DB_ITEM_ID)
        .env("LOGIN_ITEM", DEMO_LOGIN_ITEM_ID)
        .env("AGENT_ALLOWED_ITEM", DEMO_DB_ITEM_ID)
        .env("AGENT_DENIED_ITEM", DEMO_LOGIN_ITEM_ID)
        .env("AGENT_OUTSIDE_URL", "http://example.org/")
        .env("SSL_CERT_FILE", stack.ca())
        .env("NODE_EXTRA_CA_CERTS", stack.ca())
        .env("CURL_CA_BUNDLE", stack.ca())
        .env("NODE_PATH", root().join("tests/sdk/node/node_modules"))
        .env(
            "SDK_NODE_MODULES",
            root().join("tests/sdk/node/node_modules"),
        );
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} over {scheme} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("FAIL") && !stdout.contains("BAD"),
        "{stdout}"
    );
}

#[tokio::test]
async fn python_sdk_through_the_proxy() {
    let python = root().join("tests/sdk/.venv/bin/python");
    if !installed(&python) {
        return;
    }
    let (stack, token) = seed_stack().await;
    for scheme in ["http", "https"] {
        run(
            &stack,
            &token,
            scheme,
            &python,
            "tests/e2e/sdk_through_proxy.py",
        )
        .await;
    }
}

#[tokio::test]
async fn js_sdk_through_the_proxy() {
    if !installed(&root().join("tests/sdk/node/node_modules/@1password/connect/package.json")) {
        return;
    }
    let (stack, token) = seed_stack().await;
    for scheme in ["http", "https"] {
        run(
            &stack,
            &token,
            scheme,
            Path::new("node"),
            "tests/e2e/sdk_through_proxy.js",
        )
        .await;
    }
}

/// The example agents of `examples/agents/` (curl, the Python SDK, the JS SDK), configured
/// only by the environment variables their README lists, follow the seed contract.
#[tokio::test]
async fn the_example_agents_get_what_the_contract_allows() {
    let python = root().join("tests/sdk/.venv/bin/python");
    if !installed(&python)
        || !installed(&root().join("tests/sdk/node/node_modules/@1password/connect/package.json"))
    {
        return;
    }
    let (stack, token) = seed_stack().await;
    let agents = [
        (Path::new("bash"), "examples/agents/agent.sh"),
        (python.as_path(), "examples/agents/agent.py"),
        (Path::new("node"), "examples/agents/agent.js"),
    ];
    for scheme in ["http", "https"] {
        for (program, script) in agents {
            run(&stack, &token, scheme, program, script).await;
        }
    }
}
