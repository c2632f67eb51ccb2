//! A dry run of one request against a contract: the operation, the decision, the rule, and why
//! in words an operator would use.

use serde::Serialize;

use crate::classify::{self, Op};
use crate::contract::{CONTRACT_RULES, Category, Operation, WpcDocument};
use crate::egress;
use crate::evaluate::{self, Decision, VaultRef};
use crate::host_rules;

/// The request to explain.
#[derive(Clone, Debug)]
pub struct Question<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Full URL (`http(s)://host[:port]/path?query`).
    pub url: &'a str,
    /// Request body, for writes.
    pub body: Option<&'a [u8]>,
    /// The vault's name, when the contract lists vaults by name (the proxy resolves it).
    pub vault_name: Option<&'a str>,
    /// Hosts that get request-level rules (the proxy's configured upstreams, e.g.
    /// [`DEFAULT_UPSTREAM`]); other hosts in `network_egress` are tunnelled opaquely.
    pub upstreams: &'a [String],
}

/// The Connect host agents name (`OP_CONNECT_HOST`), the usual configured upstream.
pub const DEFAULT_UPSTREAM: &str = "connect.1password.com";

/// The answer.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The deciding rule.
    pub rule: String,
    /// The classified operation (`unknown` when none).
    pub operation: String,
    /// Host and port the URL names.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Vault id from the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// Item id from the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// Plain sentences: the reason and what it means.
    pub why: Vec<String>,
    /// What the answer takes for granted that only the live proxy can know (the name of the
    /// vault an id stands for), when no `vault_name` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assumes: Option<String>,
    /// Who must approve an allowed request first (a contract `approvals` rule holds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Held>,
}

/// What an `approvals` rule asks of an allowed request.
#[derive(Clone, Debug, Serialize)]
pub struct Held {
    /// The rule's index in `approvals`.
    pub rule: usize,
    /// Who may approve.
    pub approvers: Vec<String>,
    /// How long the request waits before it is refused.
    pub timeout_seconds: u64,
}

/// Explains what the proxy would do with `question` under `contract`.
pub fn explain(contract: &WpcDocument, question: &Question<'_>) -> Result<Explanation, String> {
    let mut out = decide(contract, question)?;
    if contract.audit_only() {
        let shadowed = out.decision == "deny" && CONTRACT_RULES.contains(&out.rule.as_str());
        out.why.insert(
            0,
            if shadowed {
                "AUDIT-ONLY contract: the proxy lets this request pass and receipts it as \
                 \"would deny\" by this rule"
            } else {
                "AUDIT-ONLY contract: the proxy records every decision but refuses nothing by \
                 the contract's rules"
            }
            .into(),
        );
    }
    Ok(out)
}

/// The contract's decision, as if enforced.
fn decide(contract: &WpcDocument, question: &Question<'_>) -> Result<Explanation, String> {
    let (scheme, host, port, target) = split_url(question.url)?;
    let mut out = Explanation {
        decision: "deny",
        rule: String::new(),
        operation: "unknown".into(),
        host: host.clone(),
        port,
        vault: None,
        item: None,
        why: Vec::new(),
        assumes: None,
        approval: None,
    };
    if let Some(Ok(ip)) = egress::parse_ip_literal(&host) {
        let class = egress::classify_ip(ip);
        if !class.is_public() {
            out.rule = "network_egress".into();
            out.why.push(format!(
                "{host} is a {class} address: the proxy never dials one for an agent, whatever \
                 the contract lists"
            ));
            return Ok(out);
        }
    }
    if let Decision::Deny { rule, reason } = egress::check_egress(&contract.sandbox, &host, port) {
        out.rule = rule;
        out.why.push(format!(
            "{reason}: the agent may not reach this host at all ({scheme} to {host}:{port})"
        ));
        return Ok(out);
    }
    let canonical = egress::canonical_host(&host).unwrap_or_else(|_| host.clone());
    let upstream = question
        .upstreams
        .iter()
        .any(|u| egress::canonical_host(u).is_ok_and(|u| u == canonical));
    if let Some(rules) = host_rules::rules_for(contract, &canonical) {
        let raw_path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);
        let path = match classify::normalize_path(raw_path) {
            Ok(path) => path,
            Err(error) => {
                out.rule = "ambiguous_path".into();
                out.why.push(format!(
                    "{error}: the proxy refuses requests it could read two ways"
                ));
                return Ok(out);
            }
        };
        let Some(index) = host_rules::first_match(rules, question.method, &path) else {
            out.rule = host_rules::RULE.into();
            out.why.push(format!(
                "{} {path} matches no host_rules rule for {canonical}: the proxy intercepts TLS \
                 to this host and lets through only the methods and paths its rules list",
                question.method
            ));
            return Ok(out);
        };
        let allowed = format!(
            "{} {path} is allowed by host_rules rule {index} for {canonical}",
            question.method
        );
        if !upstream {
            out.decision = "allow";
            out.rule = host_rules::RULE.into();
            out.operation = "request".into();
            out.why.push(format!(
                "{allowed}; the proxy intercepts TLS to this host (agents must trust the proxy \
                 CA), checks every request's method and normalised path, and forwards what it \
                 checked over its own verified connection, with a receipt per request"
            ));
            return Ok(out);
        }
        out.why.push(allowed);
    }
    if !upstream {
        out.decision = "allow";
        out.rule = "network_egress".into();
        out.operation = "tunnel".into();
        out.why.push(format!(
            "{canonical}:{port} is in network_egress and is not a configured upstream, so the \
             proxy passes the traffic through without seeing requests (receipts record the \
             tunnel's open and close, bytes each way); operation, vault and category rules \
             apply only to {}",
            question.upstreams.join(", ")
        ));
        return Ok(out);
    }
    let classified = match classify::classify(question.method, &target) {
        Ok(c) => c,
        Err(error) => {
            out.rule = "ambiguous_path".into();
            out.why.push(format!(
                "{error}: the proxy refuses requests it could read two ways"
            ));
            return Ok(out);
        }
    };
    out.vault = classified.vault.clone();
    out.item = classified.item.clone();
    let op = match classified.op {
        Op::Known(op) => op,
        Op::Unknown => {
            out.rule = "unknown_operation".into();
            out.why.push(format!(
                "{} {} is not a 1Password Connect operation, and anything unrecognised is denied",
                question.method, classified.path
            ));
            return Ok(out);
        }
    };
    out.operation = op.as_str().into();
    let mut category: Option<Category> = None;
    if let Some(body) = question.body {
        match evaluate::inspect_body(op, body) {
            Ok(facts) => category = facts.category,
            Err(error) => {
                out.rule = "uninspectable_body".into();
                out.why.push(error.to_string());
                return Ok(out);
            }
        }
    }
    let vault = classified.vault.as_ref().map(|id| {
        let mut name = question.vault_name.map(str::to_owned);
        let listed_by_id = contract.tool_scope.allowed_vaults.contains(id);
        if name.is_none() && !listed_by_id {
            // The proxy asks Connect which name this id has; a dry run cannot. Assume it is
            // the first listed name and say so, rather than deny what the proxy would allow.
            if let Some(first) = contract
                .tool_scope
                .allowed_vaults
                .iter()
                .find(|v| !evaluate::looks_like_id(v))
            {
                out.assumes = Some(format!(
                    "vault {id} is the vault named {first}: the contract lists vaults by name \
                     and the proxy looks the id up in Connect (pass --vault-name to check a \
                     real name)"
                ));
                name = Some(first.clone());
            }
        }
        VaultRef {
            id: id.clone(),
            name,
        }
    });
    let request = evaluate::Request {
        op,
        vault: vault.clone(),
        item: classified.item.clone(),
        item_title: None,
        category,
    };
    let decision = evaluate::evaluate(contract, &contract.tool_scope, &request);
    out.rule = decision.rule().to_owned();
    match decision {
        Decision::Allow { .. } => {
            out.decision = "allow";
            out.why
                .push(format!("operation {op} is allowed in this vault"));
            if let Some((index, rule)) = evaluate::approval_rule(contract, &request) {
                out.why.push(format!(
                    "but first held for approval (approvals rule {index}): one of {} must run \
                     `clawcontrols approve REQUEST_ID --as NAME` within {} s, else it is refused \
                     (rule approvals)",
                    rule.approvers.join(", "),
                    rule.timeout_seconds
                ));
                out.approval = Some(Held {
                    rule: index,
                    approvers: rule.approvers.clone(),
                    timeout_seconds: rule.timeout_seconds,
                });
            }
            if let Some(limits) = &contract.rate_limits {
                let (class, rate) = if op.is_mutating() {
                    ("writes", limits.writes)
                } else {
                    ("reads", limits.reads)
                };
                if let Some(rate) = rate {
                    let parts: Vec<String> = [
                        rate.per_second.map(|n| format!("{n} per second")),
                        rate.burst.map(|n| format!("bursts of {n}")),
                        rate.per_hour.map(|n| format!("{n} per hour")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    out.why.push(format!(
                        "within the job's {class} budget ({}); over it the proxy answers 429",
                        parts.join(", ")
                    ));
                }
            }
            if let Some(list) = vault
                .as_ref()
                .and_then(|v| evaluate::item_list(&contract.tool_scope, v))
            {
                out.why.push(format!(
                    "only these items of the vault, by id or title: {}",
                    list.join(", ")
                ));
            }
            if question.body.is_none()
                && matches!(
                    op,
                    Operation::CreateItem | Operation::UpdateItem | Operation::PatchItem
                )
            {
                out.why.push(
                    "the proxy also checks the category in the request body; pass --body FILE \
                     to check it here"
                        .into(),
                );
            }
            if matches!(op, Operation::ReadItem | Operation::ListItems)
                || op == Operation::ListFiles
            {
                let cats: Vec<&str> = contract
                    .tool_scope
                    .allowed_categories
                    .iter()
                    .map(|c| c.as_str())
                    .collect();
                out.why.push(format!(
                    "the answer is checked too: items outside {} are withheld",
                    cats.join(", ")
                ));
            }
        }
        Decision::Deny { rule, reason } => {
            out.why.push(reason);
            if op == Operation::ListItems
                && rule == "allowed_operations"
                && classified
                    .filter
                    .as_ref()
                    .is_some_and(|f| f.is_title_lookup())
            {
                out.why.push(
                    "read by title is a list_items call (the SDK looks the title up with \
                     ?filter=title eq \"…\"), which this contract does not allow; read the item \
                     by its id, or use a contract that also allows list_items"
                        .into(),
                );
            }
            if op == Operation::ListVaults && rule == "allowed_operations" {
                out.why.push(
                    "looking a vault up by name is a list_vaults call; pass the vault id instead"
                        .into(),
                );
            }
            if rule == "allowed_items"
                && vault
                    .as_ref()
                    .is_some_and(|v| evaluate::lists_titles(&contract.tool_scope, v))
            {
                out.why.push(
                    "the vault's item list also names items by title; the proxy looks this \
                     item's title up in Connect, which a dry run cannot, so it may still be \
                     allowed by title"
                        .into(),
                );
            }
            if rule == "allowed_vaults" && question.vault_name.is_none() {
                out.why.push(
                    "the contract lists vaults by id only, and this id is not one of them".into(),
                );
            }
        }
    }
    Ok(out)
}

/// `scheme://host[:port]/target` → parts; the target keeps path and query.
fn split_url(url: &str) -> Result<(String, String, u16, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL (expected http://host/path)"))?;
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(format!("scheme {scheme:?} is not http or https")),
    };
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(cut);
    if authority.contains('@') {
        return Err("userinfo in the URL is not allowed".into());
    }
    let port_of = |p: &str| p.parse::<u16>().map_err(|_| format!("bad port {p:?}"));
    let (host, port) = if authority.starts_with('[') {
        // [v6]:port — the colons inside the brackets are the address's own.
        let end = authority
            .find(']')
            .ok_or_else(|| format!("unclosed IPv6 literal in {url:?}"))?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, default),
            _ => match rest.strip_prefix(':') {
                Some(p) => (host, port_of(p)?),
                None => return Err(format!("junk after the IPv6 literal in {url:?}")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(format!("IPv6 literals need brackets in {url:?}"));
            }
            Some((h, p)) => (h, port_of(p)?),
            None => (authority, default),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    let target = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("/{target}")
    };
    Ok((scheme.to_owned(), host.to_owned(), port, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;

    const SEED: &[u8] = include_bytes!("../../examples/policies/1password-readonly-agent.json");
    const VID: &str = "ytrfte14kw1uex5txaore1emkz";
    const IID: &str = "x4tpzrqojj2ahmv3w7nb6vu2pe";

    fn ask(method: &str, url: &str) -> Explanation {
        ask_under(Contract::from_slice(SEED).unwrap().document(), method, url)
    }

    /// `ask` under another contract.
    fn ask_under(doc: &WpcDocument, method: &str, url: &str) -> Explanation {
        explain(
            doc,
            &Question {
                method,
                url,
                body: None,
                vault_name: Some("vault_agent_secrets_prod"),
                upstreams: &[DEFAULT_UPSTREAM.to_owned()],
            },
        )
        .unwrap()
    }

    #[test]
    fn approvals_are_explained() {
        let mut doc = Contract::from_slice(SEED).unwrap().document().clone();
        let url = format!("https://connect.1password.com/v1/vaults/{VID}/items/{IID}");
        assert!(ask_under(&doc, "GET", &url).approval.is_none());
        doc.approvals = vec![crate::contract::ApprovalRule {
            operations: vec![Operation::ReadItem],
            vaults: vec![],
            items: vec![IID.into()],
            approvers: vec!["alice".into(), "bob".into()],
            timeout_seconds: 90,
            on_timeout: crate::contract::OnTimeout::Deny,
        }];
        let held = ask_under(&doc, "GET", &url);
        assert_eq!(held.decision, "allow");
        let approval = held.approval.as_ref().unwrap();
        assert_eq!((approval.rule, approval.timeout_seconds), (0, 90));
        assert!(
            held.why
                .iter()
                .any(|w| w.contains("held for approval") && w.contains("alice, bob must run")),
            "{:?}",
            held.why
        );
        // Another item is not held.
        let other = url.replace(IID, "aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert!(ask_under(&doc, "GET", &other).approval.is_none());
    }

    #[test]
    fn item_lists_and_rate_limits_are_explained() {
        let mut doc = Contract::from_slice(SEED).unwrap().document().clone();
        doc.tool_scope.allowed_items.insert(
            "vault_agent_secrets_prod".into(),
            vec![IID.into(), "prod-db".into()],
        );
        doc.rate_limits = Some(crate::contract::RateLimits {
            reads: Some(crate::contract::Rate {
                per_second: Some(5),
                burst: None,
                per_hour: Some(100),
            }),
            writes: None,
        });
        let question = |url: String| ask_under(&doc, "GET", &url);
        let listed = question(format!(
            "https://connect.1password.com/v1/vaults/{VID}/items/{IID}"
        ));
        assert_eq!(
            (listed.decision, listed.rule.as_str()),
            ("allow", "allowed_operations")
        );
        assert!(
            listed
                .why
                .iter()
                .any(|w| w.contains("5 per second, 100 per hour") && w.contains("reads budget")),
            "{:?}",
            listed.why
        );
        assert!(
            listed
                .why
                .iter()
                .any(|w| w.contains(&format!("{IID}, prod-db"))),
            "{:?}",
            listed.why
        );
        let other = question(format!(
            "https://connect.1password.com/v1/vaults/{VID}/items/aaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
        assert_eq!(
            (other.decision, other.rule.as_str()),
            ("deny", "allowed_items")
        );
        assert!(
            other
                .why
                .iter()
                .any(|w| w.contains("may still be allowed by title")),
            "{:?}",
            other.why
        );
    }

    #[test]
    fn audit_only_contracts_say_what_passes() {
        let mut doc = Contract::from_slice(SEED).unwrap().document().clone();
        doc.enforcement = Some(crate::contract::Enforcement::Audit);
        let ask_audit = |method: &str, url: &str| ask_under(&doc, method, url);
        let item = format!("https://connect.1password.com/v1/vaults/{VID}/items/{IID}");
        let delete = ask_audit("DELETE", &item);
        assert_eq!(
            (delete.decision, delete.rule.as_str()),
            ("deny", "deny_operations")
        );
        assert!(delete.why[0].contains("would deny"), "{:?}", delete.why);
        let read = ask_audit("GET", &item);
        assert_eq!(read.decision, "allow");
        assert!(read.why[0].starts_with("AUDIT-ONLY"), "{:?}", read.why);
        // A refusal that protects the proxy is not shadowed.
        let unknown = ask_audit("GET", "https://connect.1password.com/v2/whatever");
        assert_eq!(unknown.rule, "unknown_operation");
        assert!(!unknown.why[0].contains("would deny"), "{:?}", unknown.why);
    }

    #[test]
    fn read_by_id_is_allowed() {
        let e = ask(
            "GET",
            &format!("https://connect.1password.com/v1/vaults/{VID}/items/{IID}"),
        );
        assert_eq!(
            (e.decision, e.rule.as_str(), e.operation.as_str()),
            ("allow", "allowed_operations", "read_item")
        );
    }

    #[test]
    fn read_by_title_is_explained_as_list_items() {
        let e = ask(
            "GET",
            &format!(
                "https://connect.1password.com/v1/vaults/{VID}/items?filter=title%20eq%20%22db%22"
            ),
        );
        assert_eq!((e.decision, e.operation.as_str()), ("deny", "list_items"));
        assert!(
            e.why
                .iter()
                .any(|w| w.contains("read by title is a list_items call")),
            "{:?}",
            e.why
        );
    }

    #[test]
    fn delete_unknown_and_egress_are_denied_with_their_rule() {
        let e = ask(
            "DELETE",
            &format!("https://connect.1password.com/v1/vaults/{VID}/items/{IID}"),
        );
        assert_eq!((e.decision, e.rule.as_str()), ("deny", "deny_operations"));
        let e = ask("GET", "https://connect.1password.com/v2/secrets");
        assert_eq!((e.decision, e.rule.as_str()), ("deny", "unknown_operation"));
        let e = ask("GET", "https://api.github.com/repos");
        assert_eq!((e.decision, e.rule.as_str()), ("deny", "network_egress"));
        let e = ask("GET", "https://connect.1password.com/v1/vaults/a%2fb");
        assert_eq!((e.decision, e.rule.as_str()), ("deny", "ambiguous_path"));
    }

    #[test]
    fn urls_are_parsed_strictly() {
        let doc = Contract::from_slice(SEED).unwrap().document().clone();
        for url in [
            "connect.1password.com/v1",
            "ftp://x/",
            "http://u@connect.1password.com/",
            "http://h:99999/",
            "http://[::1/",
            "http://[::1]x/",
            "http://::1/",
            "http:///v1/vaults",
        ] {
            let q = Question {
                method: "GET",
                url,
                body: None,
                vault_name: None,
                upstreams: &[],
            };
            assert!(explain(&doc, &q).is_err(), "{url}");
        }
    }

    #[test]
    fn hosts_without_request_rules_are_tunnelled_and_private_literals_refused() {
        let e = ask("GET", "https://api.1password.com/api/v1/whatever");
        assert_eq!(
            (e.decision, e.rule.as_str(), e.operation.as_str()),
            ("allow", "network_egress", "tunnel")
        );
        assert!(
            e.why[0].contains("not a configured upstream"),
            "{:?}",
            e.why
        );
        // The same host as a configured upstream gets request-level rules.
        let doc = Contract::from_slice(SEED).unwrap().document().clone();
        let e = explain(
            &doc,
            &Question {
                method: "GET",
                url: "https://api.1password.com/v1/vaults",
                body: None,
                vault_name: None,
                upstreams: &["API.1password.com.".to_owned()],
            },
        )
        .unwrap();
        assert_eq!((e.decision, e.operation.as_str()), ("deny", "list_vaults"));
        for url in [
            "http://127.0.0.1/v1/vaults",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:10.0.0.1]/",
        ] {
            let e = ask("GET", url);
            assert_eq!(
                (e.decision, e.rule.as_str()),
                ("deny", "network_egress"),
                "{url}"
            );
            assert!(e.why[0].contains("address"), "{url}: {:?}", e.why);
        }
    }

    #[test]
    fn host_rules_are_explained_per_method_and_path() {
        let mut doc = Contract::from_slice(SEED).unwrap().document().clone();
        doc.host_rules.insert(
            "api.1password.com".into(),
            vec![crate::contract::HostRule {
                methods: vec!["GET".into()],
                paths: vec!["/api/v1/**".into()],
            }],
        );
        let e = ask_under(&doc, "GET", "https://API.1password.com/api//v1/./x?y=1");
        assert_eq!(
            (e.decision, e.rule.as_str(), e.operation.as_str()),
            ("allow", "host_rules", "request")
        );
        assert!(
            e.why[0].contains("GET /api/v1/x is allowed by host_rules rule 0"),
            "{:?}",
            e.why
        );
        assert!(e.why[0].contains("intercepts TLS"), "{:?}", e.why);
        for (method, url) in [
            ("POST", "https://api.1password.com/api/v1/x"),
            ("GET", "https://api.1password.com/api/v2/x"),
            ("GET", "https://api.1password.com/"),
        ] {
            let e = ask_under(&doc, method, url);
            assert_eq!(
                (e.decision, e.rule.as_str()),
                ("deny", "host_rules"),
                "{url}"
            );
            assert!(
                e.why[0].contains("matches no host_rules rule"),
                "{:?}",
                e.why
            );
        }
        let e = ask_under(&doc, "GET", "https://api.1password.com/api/v1/a%2fb");
        assert_eq!((e.decision, e.rule.as_str()), ("deny", "ambiguous_path"));
        // Egress is judged first: the rules only narrow a host the agent may reach.
        let e = ask_under(&doc, "GET", "https://api.1password.com:8443/api/v1/x");
        assert_eq!((e.decision, e.rule.as_str()), ("deny", "network_egress"));
        // A host without rules keeps its own: Connect's operations here.
        let e = ask_under(&doc, "GET", "https://connect.1password.com/v1/vaults");
        assert_eq!(
            (e.decision, e.rule.as_str()),
            ("deny", "allowed_operations")
        );
    }

    #[test]
    fn a_vault_id_without_its_name_is_assumed_and_said() {
        let doc = Contract::from_slice(SEED).unwrap().document().clone();
        let ask = |vault_name| {
            explain(
                &doc,
                &Question {
                    method: "GET",
                    url: &format!("https://connect.1password.com/v1/vaults/{VID}/items/{IID}"),
                    body: None,
                    vault_name,
                    upstreams: &[DEFAULT_UPSTREAM.to_owned()],
                },
            )
            .unwrap()
        };
        let e = ask(None);
        assert_eq!(
            (e.decision, e.rule.as_str()),
            ("allow", "allowed_operations")
        );
        assert!(
            e.assumes
                .as_deref()
                .is_some_and(|a| a.contains("vault_agent_secrets_prod")),
            "{e:?}"
        );
        // A real name that is not listed is denied, with no assumption.
        let e = ask(Some("vault_other"));
        assert_eq!((e.decision, e.rule.as_str()), ("deny", "allowed_vaults"));
        assert!(e.assumes.is_none());
        // A contract listing ids only: an unlisted id is denied outright.
        let mut by_id = doc.clone();
        by_id.tool_scope.allowed_vaults = vec!["o7h3rv4u1tv4u1tv4u1tv4u1tv".into()];
        let e = explain(
            &by_id,
            &Question {
                method: "GET",
                url: &format!("https://connect.1password.com/v1/vaults/{VID}/items/{IID}"),
                body: None,
                vault_name: None,
                upstreams: &[DEFAULT_UPSTREAM.to_owned()],
            },
        )
        .unwrap();
        assert_eq!((e.decision, e.rule.as_str()), ("deny", "allowed_vaults"));
    }
}
