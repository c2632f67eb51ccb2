//! Real clients: curl over plain HTTP (absolute-form) and HTTPS (CONNECT + interception with
//! the data dir's CA).

use std::process::Command;

use super::*;

#[tokio::test]
async fn curl_over_http_and_https_gets_exactly_what_the_contract_allows() {
    let (stack, token) = seed_stack().await;
    for scheme in ["http", "https"] {
        let url = |item: &str| format!("{scheme}://connect.1password.com{}", item_path(item));
        let stack_ref = &stack;
        let token_ref = token.clone();
        let (allowed, denied, deleted) = tokio::task::spawn_blocking({
            let (a, d) = (url(DEMO_DB_ITEM_ID), url(DEMO_LOGIN_ITEM_ID));
            let proxy = stack_ref.addr();
            let ca = stack_ref.ca();
            move || {
                let run = |u: &str, extra: &[&str]| {
                    let out = Command::new("curl")
                        .args([
                            "-s",
                            "-w",
                            "\n%{http_code}",
                            "--max-time",
                            "10",
                            "--noproxy",
                            "",
                        ])
                        .args(["-x", &format!("http://job-1:{token_ref}@{proxy}")])
                        .args(["--cacert", ca.to_str().unwrap()])
                        .args(extra)
                        .arg(u)
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout).into_owned()
                };
                (run(&a, &[]), run(&d, &[]), run(&a, &["-X", "DELETE"]))
            }
        })
        .await
        .unwrap();
        assert!(
            allowed.ends_with("200") && allowed.contains("DATABASE"),
            "{scheme}: {allowed}"
        );
        assert!(
            denied.ends_with("403") && denied.contains("allowed_categories"),
            "{scheme}: {denied}"
        );
        assert!(
            deleted.ends_with("403") && deleted.contains("deny_operations"),
            "{scheme}: {deleted}"
        );
    }
}
