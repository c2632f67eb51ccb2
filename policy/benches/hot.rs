//! The per-request policy work on the proxy's hot path: classifying a Connect request target
//! and evaluating the classified request against the seed contract, and judging a request to a
//! host with `host_rules`.

use std::hint::black_box;

use claw_policy::classify::{self, Op};
use claw_policy::contract::{Category, Contract};
use claw_policy::egress;
use claw_policy::evaluate::{self, Request, VaultRef};
use claw_policy::host_rules;
use criterion::{Criterion, criterion_group, criterion_main};

const READ_ITEM: &str = "/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/x4tpzrqojj2ahmv3w7nb6vu2pe";
const ABSOLUTE_LIST: &str = "http://127.0.0.1:8080/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/?filter=title%20eq%20%22db%22";

fn bench(c: &mut Criterion) {
    let seed = include_bytes!("../../examples/policies/1password-readonly-agent.json");
    let contract = Contract::from_slice(seed).expect("the seed contract is valid");
    let document = contract.document();
    let scope = &document.tool_scope;

    c.bench_function("classify read_item (origin-form)", |b| {
        b.iter(|| classify::classify(black_box("GET"), black_box(READ_ITEM)))
    });
    c.bench_function("classify list_items (absolute-form + filter)", |b| {
        b.iter(|| classify::classify(black_box("GET"), black_box(ABSOLUTE_LIST)))
    });

    let classified = classify::classify("GET", READ_ITEM).expect("the path is unambiguous");
    let Op::Known(op) = classified.op else {
        panic!("read_item classifies as a known operation");
    };
    let request = Request {
        op,
        vault: classified.vault.map(|id| VaultRef {
            id,
            name: Some("vault_agent_secrets_prod".into()),
        }),
        item: classified.item,
        item_title: None,
        category: Some(Category::Database),
    };
    c.bench_function("evaluate read_item (seed contract)", |b| {
        b.iter(|| evaluate::evaluate(black_box(document), black_box(scope), black_box(&request)))
    });
    c.bench_function("classify + evaluate read_item", |b| {
        b.iter(|| {
            let c = classify::classify("GET", black_box(READ_ITEM)).expect("unambiguous");
            let Op::Known(op) = c.op else {
                unreachable!("read_item is known")
            };
            evaluate::evaluate(
                document,
                scope,
                &Request {
                    op,
                    vault: c.vault.map(|id| VaultRef { id, name: None }),
                    item: c.item,
                    item_title: None,
                    category: None,
                },
            )
        })
    });
    c.bench_function("check_egress", |b| {
        b.iter(|| {
            egress::check_egress(
                black_box(&document.sandbox),
                black_box("Connect.1Password.com."),
                443,
            )
        })
    });

    // A contract with host rules: the normalised path of a GitHub-style request matched against
    // a host's rules (the proxy does both for every request to a ruled host).
    let mut ruled = document.clone();
    ruled.sandbox.network_egress.push("api.github.com".into());
    ruled.host_rules.insert(
        "api.github.com".into(),
        vec![
            claw_policy::contract::HostRule {
                methods: vec!["GET".into(), "HEAD".into()],
                paths: vec!["/repos/acme/**".into(), "/orgs/acme/*".into()],
            },
            claw_policy::contract::HostRule {
                methods: vec!["POST".into()],
                paths: vec!["/repos/acme/*/issues".into()],
            },
        ],
    );
    const ISSUES: &str = "/repos/acme/widgets/issues";
    c.bench_function("host_rules: normalise + check (POST, second rule)", |b| {
        b.iter(|| {
            let path = classify::normalize_path(black_box(ISSUES)).expect("unambiguous");
            host_rules::check(&ruled, black_box("api.github.com"), "POST", &path)
        })
    });
    c.bench_function("host_rules: check, no rule matches", |b| {
        b.iter(|| {
            host_rules::check(
                &ruled,
                black_box("api.github.com"),
                "DELETE",
                black_box("/repos/acme/widgets/issues/7/comments"),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
