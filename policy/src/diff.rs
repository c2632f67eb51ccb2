//! What a new contract version allows or denies in addition to the old one.

use std::collections::BTreeSet;
use std::fmt;

use crate::contract::{Operation, WpcDocument};

/// Whether a change gives the agent more or less.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The new version allows more.
    Widens,
    /// The new version allows less.
    Narrows,
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// More or less.
    pub direction: Direction,
    /// `operation`, `vault`, `item`, `request` (host rules), `category`, `host`,
    /// `rate_limit`, `approval`, `enforcement` or `max_ttl_seconds`.
    pub what: &'static str,
    /// The value that appeared or disappeared (or `old → new`).
    pub value: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.direction {
            Direction::Widens => "allows",
            Direction::Narrows => "no longer allows",
        };
        if self.what == "enforcement" {
            write!(
                f,
                "enforcement {} ({})",
                self.value,
                match self.direction {
                    Direction::Widens => "contract rules only recorded, nothing refused by them",
                    Direction::Narrows => "contract rules refuse again",
                }
            )
        } else if self.what == "max_ttl_seconds" {
            write!(
                f,
                "max_ttl_seconds {} ({})",
                self.value,
                match self.direction {
                    Direction::Widens => "longer tokens",
                    Direction::Narrows => "shorter tokens",
                }
            )
        } else if self.what == "approval" {
            match self.direction {
                Direction::Widens => write!(f, "no longer needs approval: {}", self.value),
                Direction::Narrows => write!(f, "needs approval: {}", self.value),
            }
        } else {
            write!(f, "{verb} {} {}", self.what, self.value)
        }
    }
}

/// The changes from `old` to `new`, widenings first.
pub fn diff(old: &WpcDocument, new: &WpcDocument) -> Vec<Change> {
    let mut out = Vec::new();
    let ops = |d: &WpcDocument| -> BTreeSet<String> {
        d.tool_scope
            .allowed_operations
            .iter()
            .filter(|op| !d.tool_scope.deny_operations.contains(op))
            .map(|op: &Operation| op.as_str().to_owned())
            .collect()
    };
    sets(&mut out, "operation", ops(old), ops(new));
    let strings = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    sets(
        &mut out,
        "vault",
        strings(&old.tool_scope.allowed_vaults),
        strings(&new.tool_scope.allowed_vaults),
    );
    items(&mut out, old, new);
    host_rules(&mut out, old, new);
    rates(&mut out, old, new);
    approvals(&mut out, old, new);
    if old.audit_only() != new.audit_only() {
        // Audit-only refuses nothing by the contract's rules: switching to it widens everything.
        let mode = |d: &WpcDocument| if d.audit_only() { "audit" } else { "enforce" };
        out.push(Change {
            direction: if new.audit_only() {
                Direction::Widens
            } else {
                Direction::Narrows
            },
            what: "enforcement",
            value: format!("{} → {}", mode(old), mode(new)),
        });
    }
    let cats = |d: &WpcDocument| -> BTreeSet<String> {
        d.tool_scope
            .allowed_categories
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect()
    };
    sets(&mut out, "category", cats(old), cats(new));
    sets(
        &mut out,
        "host",
        strings(&old.sandbox.network_egress),
        strings(&new.sandbox.network_egress),
    );
    let (a, b) = (
        old.cst_constraints.max_ttl_seconds,
        new.cst_constraints.max_ttl_seconds,
    );
    if a != b {
        out.push(Change {
            direction: if b > a {
                Direction::Widens
            } else {
                Direction::Narrows
            },
            what: "max_ttl_seconds",
            value: format!("{a} → {b}"),
        });
    }
    out.sort_by_key(|c| c.direction == Direction::Narrows);
    out
}

/// Approval rules: one removed widens (those requests pass without a person), one added
/// narrows. A changed rule shows as one removed and one added.
fn approvals(out: &mut Vec<Change>, old: &WpcDocument, new: &WpcDocument) {
    let rules = |d: &WpcDocument| -> BTreeSet<String> {
        d.approvals
            .iter()
            .map(|r| {
                let scope = [("vaults", &r.vaults), ("items", &r.items)]
                    .into_iter()
                    .filter(|(_, list)| !list.is_empty())
                    .map(|(what, list)| format!(" in {what} {}", list.join(", ")))
                    .collect::<String>();
                let ops: Vec<&str> = r.operations.iter().map(|o| o.as_str()).collect();
                format!(
                    "{}{scope} held for {} (timeout {} s)",
                    ops.join(", "),
                    r.approvers.join(", "),
                    r.timeout_seconds
                )
            })
            .collect()
    };
    let (a, b) = (rules(old), rules(new));
    for (direction, gone, kept) in [(Direction::Widens, &a, &b), (Direction::Narrows, &b, &a)] {
        for rule in gone.difference(kept) {
            out.push(Change {
                direction,
                what: "approval",
                value: rule.clone(),
            });
        }
    }
}

/// Rate limits: a higher or removed budget widens, a lower or new one narrows.
fn rates(out: &mut Vec<Change>, old: &WpcDocument, new: &WpcDocument) {
    let budget = |d: &WpcDocument, class: &str| -> [(&'static str, Option<u32>); 3] {
        let limits = d.rate_limits.as_ref();
        let rate = limits.and_then(|l| if class == "reads" { l.reads } else { l.writes });
        let per_second = rate.and_then(|r| r.per_second);
        [
            ("per_second", per_second),
            ("burst", rate.and_then(|r| r.burst.or(per_second))),
            ("per_hour", rate.and_then(|r| r.per_hour)),
        ]
    };
    for class in ["reads", "writes"] {
        for ((field, a), (_, b)) in budget(old, class).into_iter().zip(budget(new, class)) {
            let shown = |v: Option<u32>| v.map_or("unlimited".to_owned(), |n| n.to_string());
            // None is unlimited: larger than any number.
            let widens = match (a, b) {
                (Some(a), Some(b)) if a != b => b > a,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                _ => continue,
            };
            out.push(Change {
                direction: if widens {
                    Direction::Widens
                } else {
                    Direction::Narrows
                },
                what: "rate_limit",
                value: format!("{class}.{field} {} → {}", shown(a), shown(b)),
            });
        }
    }
}

/// Item lists: a vault losing its list widens to every item, one gaining a list narrows, and
/// entries added to or removed from a list widen or narrow one by one.
fn items(out: &mut Vec<Change>, old: &WpcDocument, new: &WpcDocument) {
    let (old, new) = (&old.tool_scope.allowed_items, &new.tool_scope.allowed_items);
    let vaults: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for vault in vaults {
        let every = |direction| Change {
            direction,
            what: "item",
            value: format!("every item in vault {vault}"),
        };
        match (old.get(vault), new.get(vault)) {
            (Some(_), None) => out.push(every(Direction::Widens)),
            (None, Some(_)) => out.push(every(Direction::Narrows)),
            (Some(a), Some(b)) => {
                let entries = |v: &[String]| {
                    v.iter()
                        .map(|e| format!("{e} in vault {vault}"))
                        .collect::<BTreeSet<_>>()
                };
                sets(out, "item", entries(a), entries(b));
            }
            (None, None) => {}
        }
    }
}

/// Host rules: a host losing its rules widens to every request, one gaining rules narrows,
/// and each method-and-pattern pair of a host that keeps rules widens when it appears and
/// narrows when it goes (overlapping patterns are not merged: each pair is shown as written).
fn host_rules(out: &mut Vec<Change>, old: &WpcDocument, new: &WpcDocument) {
    let (old, new) = (&old.host_rules, &new.host_rules);
    let hosts: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for host in hosts {
        let every = |direction| Change {
            direction,
            what: "request",
            value: format!("every request to {host}"),
        };
        match (old.get(host), new.get(host)) {
            (Some(_), None) => out.push(every(Direction::Widens)),
            (None, Some(_)) => out.push(every(Direction::Narrows)),
            (Some(a), Some(b)) => {
                let pairs = |rules: &[crate::contract::HostRule]| {
                    rules
                        .iter()
                        .flat_map(|r| {
                            r.methods.iter().flat_map(move |m| {
                                r.paths.iter().map(move |p| format!("{m} {host}{p}"))
                            })
                        })
                        .collect::<BTreeSet<_>>()
                };
                sets(out, "request", pairs(a), pairs(b));
            }
            (None, None) => {}
        }
    }
}

fn sets(out: &mut Vec<Change>, what: &'static str, old: BTreeSet<String>, new: BTreeSet<String>) {
    for value in new.difference(&old) {
        out.push(Change {
            direction: Direction::Widens,
            what,
            value: value.clone(),
        });
    }
    for value in old.difference(&new) {
        out.push(Change {
            direction: Direction::Narrows,
            what,
            value: value.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;

    fn load(name: &str) -> WpcDocument {
        let path = format!("{}/../examples/policies/{name}", env!("CARGO_MANIFEST_DIR"));
        Contract::from_slice(&std::fs::read(path).unwrap())
            .unwrap()
            .document()
            .clone()
    }

    #[test]
    fn read_by_title_adds_list_operations_and_back() {
        let seed = load("1password-readonly-agent.json");
        let title = load("1password-read-by-title.json");
        let forward = diff(&seed, &title);
        let widened: Vec<String> = forward
            .iter()
            .filter(|c| c.direction == Direction::Widens)
            .map(|c| format!("{} {}", c.what, c.value))
            .collect();
        assert_eq!(widened, ["operation list_items", "operation list_vaults"]);
        assert!(forward.iter().all(|c| c.direction == Direction::Widens));
        let back = diff(&title, &seed);
        assert_eq!(back.len(), 2);
        assert!(back.iter().all(|c| c.direction == Direction::Narrows));
        assert_eq!(back[0].to_string(), "no longer allows operation list_items");
        assert!(diff(&seed, &seed).is_empty());
    }

    #[test]
    fn denied_operations_do_not_count_as_allowed() {
        let seed = load("1password-readonly-agent.json");
        let mut wider = seed.clone();
        wider
            .tool_scope
            .allowed_operations
            .push(Operation::DeleteItem);
        // delete_item is still in deny_operations: nothing new is allowed.
        assert!(diff(&seed, &wider).is_empty());
        wider.tool_scope.deny_operations.clear();
        let changes = diff(&seed, &wider);
        assert_eq!(changes[0].to_string(), "allows operation delete_item");
    }

    #[test]
    fn switching_to_audit_only_widens_and_back_narrows() {
        let seed = load("1password-readonly-agent.json");
        let mut audit = seed.clone();
        audit.enforcement = Some(crate::contract::Enforcement::Audit);
        let to_audit = diff(&seed, &audit);
        assert_eq!(to_audit.len(), 1);
        assert_eq!(to_audit[0].direction, Direction::Widens);
        assert_eq!(
            to_audit[0].to_string(),
            "enforcement enforce → audit (contract rules only recorded, nothing refused by them)"
        );
        let back = diff(&audit, &seed);
        assert_eq!(back[0].direction, Direction::Narrows);
        // Spelling out the default is no change.
        let mut explicit = seed.clone();
        explicit.enforcement = Some(crate::contract::Enforcement::Enforce);
        assert!(diff(&seed, &explicit).is_empty());
    }

    #[test]
    fn approvals_narrow_when_added_and_widen_when_removed() {
        let seed = load("1password-readonly-agent.json");
        let mut held = seed.clone();
        held.approvals = vec![crate::contract::ApprovalRule {
            operations: vec![crate::contract::Operation::ReadItem],
            vaults: vec!["vault_agent_secrets_prod".into()],
            items: vec![],
            approvers: vec!["alice".into()],
            timeout_seconds: 60,
            on_timeout: crate::contract::OnTimeout::Deny,
        }];
        let added = diff(&seed, &held);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].direction, Direction::Narrows);
        assert_eq!(
            added[0].value,
            "read_item in vaults vault_agent_secrets_prod held for alice (timeout 60 s)"
        );
        assert_eq!(
            added[0].to_string(),
            "needs approval: read_item in vaults vault_agent_secrets_prod held for alice (timeout 60 s)"
        );
        assert_eq!(diff(&held, &seed)[0].direction, Direction::Widens);
        let mut longer = held.clone();
        longer.approvals[0].timeout_seconds = 120;
        let changed = diff(&held, &longer);
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(diff(&held, &held.clone()).is_empty());
    }

    #[test]
    fn rate_limits_widen_when_raised_or_removed() {
        let seed = load("1password-readonly-agent.json");
        let mut limited = seed.clone();
        limited.rate_limits = Some(crate::contract::RateLimits {
            reads: Some(crate::contract::Rate {
                per_second: Some(5),
                burst: None,
                per_hour: Some(1000),
            }),
            writes: None,
        });
        let shown = |changes: Vec<Change>| -> Vec<String> {
            changes
                .iter()
                .map(|c| format!("{:?} {}", c.direction, c.value))
                .collect()
        };
        assert_eq!(
            shown(diff(&seed, &limited)),
            [
                "Narrows reads.per_second unlimited → 5",
                "Narrows reads.burst unlimited → 5",
                "Narrows reads.per_hour unlimited → 1000"
            ]
        );
        let mut raised = limited.clone();
        raised
            .rate_limits
            .as_mut()
            .unwrap()
            .reads
            .as_mut()
            .unwrap()
            .per_second = Some(10);
        assert_eq!(
            shown(diff(&limited, &raised)),
            [
                "Widens reads.per_second 5 → 10",
                "Widens reads.burst 5 → 10"
            ]
        );
        assert_eq!(diff(&limited, &seed).len(), 3);
        assert!(
            diff(&limited, &seed)
                .iter()
                .all(|c| c.direction == Direction::Widens)
        );
    }

    #[test]
    fn host_rules_widen_and_narrow_per_method_and_pattern() {
        let seed = load("1password-readonly-agent.json");
        let rule = |methods: &[&str], paths: &[&str]| crate::contract::HostRule {
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        };
        let mut ruled = seed.clone();
        ruled.host_rules.insert(
            "api.1password.com".into(),
            vec![rule(&["GET"], &["/v1/**"])],
        );
        let shown = |a: &WpcDocument, b: &WpcDocument| -> Vec<String> {
            diff(a, b).iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            shown(&seed, &ruled),
            ["no longer allows request every request to api.1password.com"]
        );
        assert_eq!(
            shown(&ruled, &seed),
            ["allows request every request to api.1password.com"]
        );
        let mut wider = ruled.clone();
        wider.host_rules.get_mut("api.1password.com").unwrap()[0] =
            rule(&["GET", "POST"], &["/v1/**", "/v2/*"]);
        assert_eq!(
            shown(&ruled, &wider),
            [
                "allows request GET api.1password.com/v2/*",
                "allows request POST api.1password.com/v1/**",
                "allows request POST api.1password.com/v2/*",
            ]
        );
        assert_eq!(diff(&wider, &ruled).len(), 3);
        assert!(
            diff(&wider, &ruled)
                .iter()
                .all(|c| c.direction == Direction::Narrows)
        );
    }

    #[test]
    fn item_lists_widen_and_narrow() {
        let seed = load("1password-readonly-agent.json");
        let mut listed = seed.clone();
        let vault = "vault_agent_secrets_prod".to_owned();
        listed
            .tool_scope
            .allowed_items
            .insert(vault.clone(), vec!["prod-db".into()]);
        let shown = |changes: Vec<Change>| -> Vec<String> {
            changes.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            shown(diff(&seed, &listed)),
            ["no longer allows item every item in vault vault_agent_secrets_prod"]
        );
        assert_eq!(
            shown(diff(&listed, &seed)),
            ["allows item every item in vault vault_agent_secrets_prod"]
        );
        let mut other = listed.clone();
        other
            .tool_scope
            .allowed_items
            .insert(vault, vec!["billing".into()]);
        assert_eq!(
            shown(diff(&listed, &other)),
            [
                "allows item billing in vault vault_agent_secrets_prod",
                "no longer allows item prod-db in vault vault_agent_secrets_prod"
            ]
        );
    }

    #[test]
    fn hosts_categories_vaults_and_ttl_are_compared() {
        let seed = load("1password-readonly-agent.json");
        let multi = load("multi-host.json");
        let text: Vec<String> = diff(&seed, &multi)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            text.contains(&"allows host api.github.com".to_owned()),
            "{text:?}"
        );
        let mut shorter = seed.clone();
        shorter.cst_constraints.max_ttl_seconds = 300;
        shorter
            .tool_scope
            .allowed_categories
            .retain(|c| c.as_str() == "DATABASE");
        let text: Vec<String> = diff(&seed, &shorter)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "no longer allows category API_CREDENTIAL",
                "max_ttl_seconds 900 → 300 (shorter tokens)"
            ]
        );
    }
}
