//! End-to-end suites: the proxy in-process on loopback, connect-sim or a recording upstream,
//! requests over raw sockets and from real clients (curl).
//!
//! - `flow`: the seed contract end to end: allowed, withheld, denied, receipts, injection;
//! - `auth`: proxy authentication, identity per connection, revocation and expiry mid-job;
//! - `threats`: one module per class of ../shared/reference/threats.md;
//! - `clients`: curl over plain HTTP and HTTPS with interception;
//! - `evidence`: a real job bundled from its data dir and verified offline (and the golden
//!   bundle for the verifier's mutation tests);
//! - `sdk`: the official Python and JS Connect SDKs through the proxy, HTTP and HTTPS.

mod auth;
mod clients;
mod evidence;
mod flow;
mod sdk;
mod threats;

use claw_tests::raw::{self, RawResponse, basic};
use claw_tests::{Stack, Upstream};
use connect_sim::demo::{DEMO_DB_ITEM_ID, DEMO_LOGIN_ITEM_ID, DEMO_VAULT_ID};

const POLICY: &str = "1password-readonly-agent";

/// A stack on the seed contract with connect-sim, and a token for job-1.
async fn seed_stack() -> (Stack, String) {
    let stack = Stack::start(claw_tests::SEED, Upstream::Sim).await;
    let token = stack.mint(POLICY, "job-1", None);
    (stack, token)
}

/// `METHOD http://connect.1password.com<path>` through the proxy as job-1.
async fn connect(stack: &Stack, token: &str, method: &str, path: &str) -> RawResponse {
    let request = format!(
        "{method} http://connect.1password.com{path} HTTP/1.1\r\nHost: connect.1password.com\r\nProxy-Authorization: {}\r\nAuthorization: Bearer agent-placeholder\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        basic("job-1", token)
    );
    raw::send(stack.addr(), request.as_bytes()).await
}

fn item_path(item: &str) -> String {
    format!("/v1/vaults/{DEMO_VAULT_ID}/items/{item}")
}
