//! `classify`: the Connect request classifier and its path normaliser.
//!
//! Input: `METHOD target` (method optional, `GET` if absent); the target is origin-form or
//! absolute-form, exactly as the proxy passes it.
//!
//! Invariants: a normalised path starts with `/`, has no `//`, no `.` or `..` segment, no `%`,
//! no trailing `/` (except the root), and normalising it again changes nothing; a classified
//! request's path is such a path, and classifying its normalised path plus re-encoded query
//! again yields the same result (what the proxy checks is what it forwards); a parsed filter
//! prints back to itself.

use claw_policy::classify::{Classified, Filter, Op, classify, normalize_path};

use super::text;
use crate::engine::{Target, Trace};

/// The target.
pub const TARGET: Target = Target {
    name: "classify",
    about: "Connect classifier + normalize_path: idempotence, no dot segments or //",
    // The longest target http::Uri accepts.
    max_len: 64 * 1024,
    dictionary: &[
        b"GET ",
        b"PUT ",
        b"POST ",
        b"PATCH ",
        b"DELETE ",
        b"http://",
        b"https://h",
        b"/v1/vaults/",
        b"/items/",
        b"/files/",
        b"/content",
        b"/v1/activity",
        b"/heartbeat",
        b"ytrfte14kw1uex5txaore1emkz",
        b"?filter=",
        b"title eq \"x\"",
        b"title%20eq%20%22x%22",
        b" or ",
        b"tag co ",
        b"'",
        b"inline_files=true",
        b"&limit=10",
        b"%20",
        b"%2B",
        b"%22",
        b"%0a",
        b"%ff",
        b"%41",
        b"%7e",
        b"/./",
        b"/.",
        b"/...",
    ],
    run,
};

fn run(input: &[u8], trace: &mut Trace) {
    let text = text(input);
    let (method, target) = match text.split_once(' ') {
        Some((m, t))
            if (1..=10).contains(&m.len()) && m.bytes().all(|b| b.is_ascii_uppercase()) =>
        {
            (m, t)
        }
        _ => ("GET", text.as_ref()),
    };

    normalised(target, trace);
    let path = target.split(['?', '#']).next().unwrap_or_default();
    normalised(path, trace);

    let classified = classify(method, target);
    trace.outcome("classify", &classified);
    if let Ok(c) = classified {
        trace.step(c.op.as_str());
        check_classified(method, &c);
    }

    let filter = Filter::parse(&text);
    trace.outcome("filter", &filter);
    if let Ok(filter) = filter {
        check_filter(&filter);
    }
}

/// Normalises `raw`; on success checks the output's shape and that it is a fixed point.
fn normalised(raw: &str, trace: &mut Trace) {
    let once = normalize_path(raw);
    trace.outcome("normalize", &once);
    if let Ok(once) = once {
        check_normal(raw, &once);
    }
}

fn check_normal(raw: &str, once: &str) {
    assert!(once.starts_with('/'), "{raw:?} -> {once:?}: not absolute");
    assert!(!once.contains("//"), "{raw:?} -> {once:?}: contains //");
    assert!(
        once.split('/').all(|s| s != "." && s != ".."),
        "{raw:?} -> {once:?}: dot segment"
    );
    assert!(!once.contains('%'), "{raw:?} -> {once:?}: percent left");
    assert!(
        once == "/" || !once.ends_with('/'),
        "{raw:?} -> {once:?}: trailing /"
    );
    assert_eq!(
        normalize_path(once).as_deref(),
        Ok(once),
        "{raw:?}: normalisation is not idempotent"
    );
}

fn check_classified(method: &str, c: &Classified) {
    check_normal(&c.path, &c.path);
    let again = match &c.query {
        Some(query) => format!("{}?{query}", c.path),
        None => c.path.clone(),
    };
    assert_eq!(
        classify(method, &again).as_ref(),
        Ok(c),
        "{method} {again:?}: the forwarded form classifies differently"
    );
    let segments: Vec<&str> = c.path.split('/').collect();
    for id in [&c.vault, &c.item, &c.file].into_iter().flatten() {
        assert!(
            segments.contains(&id.as_str()),
            "{id:?} is not a segment of {:?}",
            c.path
        );
    }
    if c.op == Op::Unknown {
        assert!(c.vault.is_none() && c.item.is_none() && c.file.is_none());
    }
    if let Some(filter) = &c.filter {
        check_filter(filter);
    }
}

fn check_filter(filter: &Filter) {
    let printed = filter.to_string();
    assert_eq!(
        Filter::parse(&printed).as_ref(),
        Ok(filter),
        "filter {printed:?} does not parse back to itself"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_reach_known_operations() {
        let c = classify(
            "GET",
            "/v1/vaults/ytrfte14kw1uex5txaore1emkz/items?filter=title%20eq%20%22x%22",
        )
        .unwrap();
        assert!(matches!(c.op, Op::Known(_)) && c.filter.is_some());
        for seed in crate::load_corpus(&crate::corpus_dir("classify")).unwrap() {
            run(&seed, &mut Trace::default());
        }
    }
}
