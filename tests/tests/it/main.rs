//! End-to-end suites: the proxy in-process on loopback, connect-sim or a recording upstream,
//! requests over raw sockets and from real clients (curl).
//!
//! - `flow`: the seed contract end to end: allowed, withheld, denied, receipts, injection;
//! - `auth`: proxy authentication, identity per connection, revocation and expiry mid-job;
//! - `threats`: one module per class of ../shared/reference/threats.md;
//! - `clients`: curl over plain HTTP and HTTPS with interception;
//! - `evidence`: a real job bundled from its data dir and verified offline (and the golden
//!   bundle for the verifier's mutation tests);
//! - `sdk`: the official Python and JS Connect SDKs through the proxy, HTTP and HTTPS;
//! - `faults`: a hostile or broken upstream and a proxy shut down mid-request;
//! - `extensions`: the optional contract fields (item allow-lists, rate limits).

mod auth;
mod clients;
mod evidence;
mod extensions;
mod faults;
mod flow;
mod sdk;
mod threats;

use claw_tests::raw::{self, RawResponse, basic};
use claw_tests::recorder::{Answer, Recorder};
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

/// A stack on the seed contract whose Connect upstream is a recorder answering as `answer`, with
/// `limits` under `[limits]`, and a token for job-1.
async fn recording_stack(answer: Answer, limits: &str) -> (Stack, String, Recorder) {
    recording_stack_on(&seed_by_vault_id(), answer, limits).await
}

/// The seed contract naming its vault by id, so the proxy never asks the upstream for a vault
/// name: every request a recorder sees is the agent's.
fn seed_by_vault_id() -> String {
    std::str::from_utf8(claw_tests::SEED).unwrap().replace(
        "\"vault_agent_secrets_prod\"",
        &format!("\"{DEMO_VAULT_ID}\""),
    )
}

/// [`recording_stack`] under another variant of the seed contract (its name kept).
async fn recording_stack_on(
    contract: &str,
    answer: Answer,
    limits: &str,
) -> (Stack, String, Recorder) {
    let (recorder, addr) = Recorder::answering(answer).await;
    let stack = Stack::start_with(contract.as_bytes(), Upstream::At(addr), limits).await;
    let token = stack.mint(POLICY, "job-1", None);
    (stack, token, recorder)
}

/// The DATABASE item the seed contract lets job-1 read.
fn db_item() -> serde_json::Value {
    serde_json::json!({"id": DEMO_DB_ITEM_ID, "title": "t", "category": "DATABASE", "vault": {"id": DEMO_VAULT_ID}})
}

/// A keep-alive `GET` of the DATABASE item as job-1, with `extra` header lines.
fn read_db_item(token: &str, extra: &str) -> String {
    format!(
        "GET http://connect.1password.com{} HTTP/1.1\r\nHost: connect.1password.com\r\nProxy-Authorization: {}\r\n{extra}\r\n",
        item_path(DEMO_DB_ITEM_ID),
        basic("job-1", token)
    )
}

fn item_path(item: &str) -> String {
    format!("/v1/vaults/{DEMO_VAULT_ID}/items/{item}")
}
