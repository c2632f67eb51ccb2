//! `host_rules`: method and path rules for hosts other than Connect.
//!
//! A host listed in a contract's `host_rules` is never tunnelled blind: the proxy terminates
//! TLS to it, normalises each request's path as it does for Connect (percent-decoding, dot
//! segments, duplicate and one trailing slash; ambiguous paths are refused before any rule is
//! read), and lets the request through only when one rule lists its method and has a path
//! pattern matching the normalised path. The query is not matched.
//!
//! Patterns are matched segment by segment, case-sensitively:
//!
//! | pattern segment | matches |
//! |---|---|
//! | `repos` | exactly `repos` |
//! | `*`, `v*`, `*.json` | one segment, `*` standing for any run of characters within it |
//! | `**` (the whole segment) | any number of segments, none included |
//!
//! So `/repos/acme/*` matches `/repos/acme/widgets` but not `/repos/acme/widgets/issues`, and
//! `/repos/acme/**` matches both and `/repos/acme` too. `*` is always a wildcard: paths are
//! decoded before matching, so a pattern is written decoded too.

use std::collections::BTreeMap;

use crate::canonical::escape_pointer_token;
use crate::contract::{HostRule, Violation, WpcDocument};
use crate::egress::canonical_host;
use crate::evaluate::Decision;

/// The rule name of every decision made here.
pub const RULE: &str = "host_rules";

/// The rules for `host` (any spelling `network_egress` accepts), if the contract lists it.
pub fn rules_for<'c>(contract: &'c WpcDocument, host: &str) -> Option<&'c [HostRule]> {
    if contract.host_rules.is_empty() {
        return None;
    }
    let host = canonical_host(host).ok()?;
    contract.host_rules.get(&host).map(Vec::as_slice)
}

/// Decides `method path` (the normalised path) to `host`: `None` when the host has no rules,
/// else an allow naming the rule that matched or a denial saying nothing did.
pub fn check(contract: &WpcDocument, host: &str, method: &str, path: &str) -> Option<Decision> {
    let rules = rules_for(contract, host)?;
    Some(match first_match(rules, method, path) {
        Some(_) => Decision::Allow { rule: RULE.into() },
        None => Decision::Deny {
            rule: RULE.into(),
            reason: format!(
                "{method} {path} matches no host_rules rule for {}",
                canonical_host(host).unwrap_or_default()
            ),
        },
    })
}

/// The index of the first rule that lets `method` reach the normalised `path`.
pub fn first_match(rules: &[HostRule], method: &str, path: &str) -> Option<usize> {
    rules.iter().position(|rule| {
        rule.methods.iter().any(|m| m == method) && rule.paths.iter().any(|p| matches(p, path))
    })
}

/// Whether the normalised `path` matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let pattern = segments(pattern);
    let path = segments(path);
    // reachable[i][j]: the first i pattern segments can consume the first j path segments.
    // Filled row by row; O(pattern × path), whatever the number of `**`.
    let width = path.len() + 1;
    let mut row = vec![false; width];
    row[0] = true;
    for segment in &pattern {
        let mut next = vec![false; width];
        if *segment == "**" {
            let mut any = false;
            for j in 0..width {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 1..width {
                next[j] = row[j - 1] && segment_matches(segment, path[j - 1]);
            }
        }
        row = next;
    }
    row[path.len()]
}

/// The segments of an absolute path; `/` has none.
fn segments(path: &str) -> Vec<&str> {
    match path.strip_prefix('/') {
        Some("") | None => Vec::new(),
        Some(rest) => rest.split('/').collect(),
    }
}

/// Wildcard match within one segment: `*` is any run of characters, everything else itself.
fn segment_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and how much of the text it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last star swallow one more byte and retry from there.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// Why a pattern could never match a normalised path, if it could not.
fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern == "/" {
        return None;
    }
    for segment in pattern.strip_prefix('/')?.split('/') {
        match segment {
            "" => {
                return Some(
                    "an empty segment (// or a trailing /): normalised paths have none".into(),
                );
            }
            "." | ".." => {
                return Some(format!("a {segment:?} segment: normalised paths have none"));
            }
            _ => {}
        }
        if segment.contains("**") && segment != "**" {
            return Some(format!(
                "{segment:?}: ** stands for whole segments, so it must be a segment of its own"
            ));
        }
        if segment.contains('%') {
            return Some(
                "a percent escape: paths are decoded before matching, so write the pattern \
                 decoded"
                    .into(),
            );
        }
        if let Some(c) = segment
            .bytes()
            .find(|&b| !crate::classify::allowed_path_byte(b))
        {
            return Some(format!(
                "character {:?}: the proxy refuses paths that contain it",
                c as char
            ));
        }
    }
    None
}

/// What the schema cannot say about `host_rules`: every host is reachable by `network_egress`
/// and every pattern can match something.
pub(crate) fn violations(doc: &WpcDocument) -> Vec<Violation> {
    let mut out = Vec::new();
    let egress: BTreeMap<String, ()> = doc
        .sandbox
        .network_egress
        .iter()
        .filter_map(|entry| {
            let name = entry.rsplit_once(':').map_or(entry.as_str(), |(n, _)| n);
            canonical_host(name).ok().map(|n| (n, ()))
        })
        .collect();
    for (host, rules) in &doc.host_rules {
        let at = format!("/host_rules/{}", escape_pointer_token(host));
        if !egress.contains_key(host) {
            out.push(Violation {
                pointer: at.clone(),
                message: format!(
                    "host {host:?} is not in sandbox.network_egress, so these rules would never \
                     apply; list it there too"
                ),
            });
        }
        for (i, rule) in rules.iter().enumerate() {
            for (j, method) in rule.methods.iter().enumerate() {
                if method == "CONNECT" {
                    out.push(Violation {
                        pointer: format!("{at}/{i}/methods/{j}"),
                        message: "CONNECT opens the tunnel; rules judge the requests inside it"
                            .into(),
                    });
                }
            }
            for (j, pattern) in rule.paths.iter().enumerate() {
                if let Some(problem) = pattern_problem(pattern) {
                    out.push(Violation {
                        pointer: format!("{at}/{i}/paths/{j}"),
                        message: format!("{pattern:?} can never match: {problem}"),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_match_literally_star_within_one_double_star_across_any() {
        let cases: &[(&str, &str, bool)] = &[
            ("/", "/", true),
            ("/", "/a", false),
            ("/user", "/user", true),
            ("/user", "/User", false),
            ("/user", "/users", false),
            ("/repos/acme/*", "/repos/acme/widgets", true),
            ("/repos/acme/*", "/repos/acme/widgets/issues", false),
            ("/repos/acme/*", "/repos/acme", false),
            ("/repos/acme/*", "/repos/acmeX/widgets", false),
            ("/repos/acme/**", "/repos/acme", true),
            ("/repos/acme/**", "/repos/acme/widgets", true),
            ("/repos/acme/**", "/repos/acme/widgets/issues/7", true),
            ("/repos/acme/**", "/repos/acmeinc/widgets", false),
            ("/repos/acme/**", "/repos", false),
            ("/repos/*/issues", "/repos/w/issues", true),
            ("/repos/*/issues", "/repos/w/x/issues", false),
            ("/repos/**/issues", "/repos/issues", true),
            ("/repos/**/issues", "/repos/a/b/c/issues", true),
            ("/repos/**/issues", "/repos/a/b/c/pulls", false),
            ("/**", "/", true),
            ("/**", "/anything/at/all", true),
            ("/**/*.json", "/a/b/c.json", true),
            ("/**/*.json", "/c.json", true),
            ("/**/*.json", "/a/b/c.yaml", false),
            ("/v*/items", "/v1/items", true),
            ("/v*/items", "/v/items", true),
            ("/v*/items", "/x1/items", false),
            ("/a*b*c", "/aXXbYYc", true),
            ("/a*b*c", "/abc", true),
            ("/a*b*c", "/aXXcYYb", false),
            ("/**/**/x", "/x", true),
            ("/**/**/x", "/a/b/x", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(matches(pattern, path), *want, "{pattern} ~ {path}");
        }
    }

    /// The definition, written the slow and obvious way: recursion over segments and bytes.
    fn naive(pattern: &[&str], path: &[&str]) -> bool {
        fn segment(p: &[u8], t: &[u8]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some((b'*', rest)) => (0..=t.len()).any(|i| segment(rest, &t[i..])),
                Some((c, rest)) => t.first() == Some(c) && segment(rest, &t[1..]),
            }
        }
        match pattern.split_first() {
            None => path.is_empty(),
            Some((&"**", rest)) => (0..=path.len()).any(|i| naive(rest, &path[i..])),
            Some((first, rest)) => path.split_first().is_some_and(|(p, more)| {
                segment(first.as_bytes(), p.as_bytes()) && naive(rest, more)
            }),
        }
    }

    #[test]
    fn the_fast_matcher_agrees_with_the_definition_on_every_small_case() {
        fn all<'a>(alphabet: &[&'a str], max: usize) -> Vec<Vec<&'a str>> {
            let mut out = vec![Vec::new()];
            let mut last = vec![Vec::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|prefix: &Vec<&str>| {
                        alphabet
                            .iter()
                            .map(move |s| [prefix.clone(), vec![*s]].concat())
                    })
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        let patterns = all(&["a", "b", "*", "**", "a*", "*b", "a*b"], 3);
        let paths = all(&["a", "b", "ab", "ba", "aab"], 4);
        let mut checked = 0;
        for pattern in &patterns {
            let text = format!("/{}", pattern.join("/"));
            for path in &paths {
                let path_text = format!("/{}", path.join("/"));
                assert_eq!(
                    matches(&text, &path_text),
                    naive(pattern, path),
                    "{text} ~ {path_text}"
                );
                checked += 1;
            }
        }
        assert!(checked > 300_000, "{checked}");
    }

    #[test]
    fn many_double_stars_stay_cheap() {
        // Backtracking would take exponential time here; the table takes pattern × path steps.
        let pattern = format!("{}/z", "/**".repeat(60));
        let path = "/a".repeat(200);
        assert!(!matches(&pattern, &path));
        assert!(matches(&pattern, &format!("{path}/z")));
        assert!(!segment_matches(&"*a".repeat(100), &"a".repeat(99)));
    }

    #[test]
    fn patterns_that_can_never_match_are_named() {
        for (pattern, problem) in [
            ("/repos//x", "empty segment"),
            ("/repos/", "empty segment"),
            ("/repos/./x", "\".\""),
            ("/repos/../x", "\"..\""),
            ("/repos/a**", "segment of its own"),
            ("/repos/%41", "decoded"),
            ("/repos/a;b", "';'"),
            ("/repos/a\\b", "'\\\\'"),
        ] {
            let found = pattern_problem(pattern).unwrap_or_else(|| panic!("{pattern} accepted"));
            assert!(found.contains(problem), "{pattern}: {found}");
        }
        for pattern in ["/", "/**", "/repos/*/issues", "/a/b*c/**/d"] {
            assert_eq!(pattern_problem(pattern), None, "{pattern}");
        }
    }
}
