use super::*;
use crate::contract::Operation::*;

const V: &str = "vault_agent_secrets_prod";
const VID: &str = "ytrfte14kw1uex5txaore1emkz";
const IID: &str = "x4tpzrqojj2ahmv3w7nb6vu2pe";
const FID: &str = "6r65pjq33banznomn7q22sj44e";

fn op(method: &str, target: &str) -> Op {
    classify(method, target)
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
        .op
}

#[test]
fn every_route_classifies() {
    let v = format!("/v1/vaults/{VID}");
    let i = format!("{v}/items/{IID}");
    let cases: Vec<(&str, String, Op)> = vec![
        ("GET", "/v1/vaults".into(), Op::Known(ListVaults)),
        ("GET", "/v1/vaults/".into(), Op::Known(ListVaults)),
        (
            "GET",
            "/v1/vaults?filter=name%20eq%20%22Demo%22".into(),
            Op::Known(ListVaults),
        ),
        (
            "GET",
            "/v1/vaults/?filter=title+eq+%22Demo%22".into(),
            Op::Known(ListVaults),
        ),
        ("GET", v.clone(), Op::Known(GetVault)),
        ("GET", format!("/v1/vaults/{V}"), Op::Known(GetVault)),
        ("GET", format!("{v}/items"), Op::Known(ListItems)),
        ("GET", format!("{v}/items/"), Op::Known(ListItems)),
        (
            "GET",
            format!("{v}/items/?filter=title%20eq%20%22db%22"),
            Op::Known(ListItems),
        ),
        ("POST", format!("{v}/items"), Op::Known(CreateItem)),
        ("POST", format!("{v}/items/"), Op::Known(CreateItem)),
        ("GET", i.clone(), Op::Known(ReadItem)),
        ("PUT", i.clone(), Op::Known(UpdateItem)),
        ("PATCH", i.clone(), Op::Known(PatchItem)),
        ("DELETE", i.clone(), Op::Known(DeleteItem)),
        ("GET", format!("{i}/files"), Op::Known(ListFiles)),
        ("GET", format!("{i}/files/"), Op::Known(ListFiles)),
        (
            "GET",
            format!("{i}/files?inline_files=true"),
            Op::Known(ListFiles),
        ),
        ("GET", format!("{i}/files/{FID}"), Op::Known(ReadFile)),
        (
            "GET",
            format!("{i}/files/{FID}/content"),
            Op::Known(ReadFileContent),
        ),
        (
            "GET",
            "/v1/activity?limit=10&offset=5".into(),
            Op::Known(Activity),
        ),
        ("GET", "/heartbeat".into(), Op::Known(Health)),
        ("GET", "/health".into(), Op::Known(Health)),
        ("GET", "/metrics".into(), Op::Known(Health)),
        // Absolute-form targets, as plain-HTTP clients send them through a proxy.
        (
            "GET",
            format!("http://connect.1password.com{i}"),
            Op::Known(ReadItem),
        ),
        (
            "GET",
            format!("http://127.0.0.1:8080{v}/items/"),
            Op::Known(ListItems),
        ),
        // Dot segments and duplicate slashes resolve before matching.
        (
            "GET",
            format!("/v1//vaults/{VID}/./items/{IID}"),
            Op::Known(ReadItem),
        ),
        (
            "GET",
            format!("/v1/vaults/{VID}/items/x/../{IID}"),
            Op::Known(ReadItem),
        ),
        (
            "GET",
            format!("/v1/vaults/{VID}/items/%2e%2e/items/{IID}"),
            Op::Known(ReadItem),
        ),
        ("GET", format!("/v1/%76aults/{VID}"), Op::Known(GetVault)),
        // Unknown routes and methods.
        ("GET", "/v2/vaults".into(), Op::Unknown),
        ("GET", "/".into(), Op::Unknown),
        ("POST", "/v1/vaults".into(), Op::Unknown),
        ("DELETE", v.clone(), Op::Unknown),
        ("get", i.clone(), Op::Unknown),
        ("HEAD", i.clone(), Op::Unknown),
        ("OPTIONS", "/v1/vaults".into(), Op::Unknown),
        ("TRACE", i.clone(), Op::Unknown),
        ("GET", format!("{i}/extra"), Op::Unknown),
        ("GET", format!("{i}/files/{FID}/content/x"), Op::Unknown),
        ("PUT", format!("{i}/files/{FID}"), Op::Unknown),
        ("GET", "/v1/vaults/a:b".into(), Op::Unknown),
        ("GET", "/v1/vaults/a@b/items".into(), Op::Unknown),
    ];
    for (method, target, want) in cases {
        assert_eq!(op(method, &target), want, "{method} {target}");
    }
}

#[test]
fn ids_and_normalised_path_are_reported() {
    let c = classify(
        "GET",
        &format!("/v1//vaults/{VID}/items/{IID}/files/{FID}/content/"),
    )
    .unwrap();
    assert_eq!(c.vault.as_deref(), Some(VID));
    assert_eq!(c.item.as_deref(), Some(IID));
    assert_eq!(c.file.as_deref(), Some(FID));
    assert_eq!(
        c.path,
        format!("/v1/vaults/{VID}/items/{IID}/files/{FID}/content")
    );
}

#[test]
fn ambiguous_paths_are_errors() {
    for target in [
        "/v1/vaults/a%2fb/items",
        "/v1/vaults/a%2Fb",
        "/v1/vaults/a%5cb",
        "/v1/vaults\\x",
        "/v1/vaults;x=1",
        "/v1/vaults/a%3bb",
        "/v1/vaults/%00",
        "/v1/vaults/%252e%252e",
        "/v1/vaults/%c0%ae%c0%ae",
        "/v1/vaults/%e2%80%ae",
        "/v1/vaults/../../..",
        "/v1/vaults/%",
        "/v1/vaults/%zz",
        "/v1/vaults/a b",
        "/v1/vaults/a\"b",
        "/v1/vaults#frag",
        "v1/vaults",
    ] {
        assert!(
            matches!(classify("GET", target), Err(ClassifyError::Path(_))),
            "{target}: {:?}",
            classify("GET", target)
        );
    }
}

#[test]
fn normalisation_is_idempotent() {
    let inputs = [
        "/",
        "//",
        "/v1/",
        "/v1//vaults///x/",
        "/a/./b/../c",
        "/a/%2e/b",
        "/a/%2E%2E/b",
        "/%7euser/x",
        "/A/B/c/",
        "/v1/vaults/abc/items/def/files/",
        "/a/b/../../c/./d//",
    ];
    for raw in inputs {
        let once = normalize_path(raw).unwrap();
        assert_eq!(normalize_path(&once).unwrap(), once, "{raw}");
        assert!(!once.contains("//") && !once.contains("/./") && !once.contains('%'));
        assert!(once == "/" || !once.ends_with('/'), "{raw} -> {once}");
    }
}

#[test]
fn queries_decode_plus_and_percent_20_alike() {
    let a = classify("GET", "/v1/vaults?filter=title+eq+%22db%22").unwrap();
    let b = classify("GET", "/v1/vaults?filter=title%20eq%20%22db%22").unwrap();
    assert_eq!(a.filter, b.filter);
    assert_eq!(a.query, b.query);
    assert_eq!(a.query.as_deref(), Some("filter=title%20eq%20%22db%22"));
    let f = a.filter.unwrap();
    assert!(f.is_title_lookup());
    assert_eq!(f.terms[0].value, "db");
}

#[test]
fn filters_parse_or_refuse() {
    let f = Filter::parse(r#"title co "prod" or tag eq "banking""#).unwrap();
    assert_eq!(f.terms.len(), 2);
    assert!(!Filter::parse(r#"tag eq "x""#).unwrap().is_title_lookup());
    for bad in [
        r#"title eq 'x'"#,
        r#"title sw "x""#,
        r#"colour eq "x""#,
        r#"title eq x"#,
        r#"title eq "x" and tag eq "y""#,
        r#"title eq "x"#,
        "",
    ] {
        assert!(Filter::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn duplicate_query_parameters_are_ambiguous() {
    assert!(matches!(
        classify("GET", "/v1/vaults?filter=a&filter=b"),
        Err(ClassifyError::Query(_))
    ));
    assert!(matches!(
        classify("GET", "/v1/vaults?filter=%0a"),
        Err(ClassifyError::Query(_))
    ));
}

/// Found by `claw-fuzz classify`: duplicate names were found by comparing each name with every
/// earlier one, so a 64 KiB query of distinct names (`a&b&c…`, the longest target `http`
/// accepts) cost over half a second of CPU. The check is a set now; this is the shape of that
/// input, and a duplicate at its very end is still found.
#[test]
fn many_distinct_query_parameters_are_read_once_each() {
    let names: Vec<String> = (0..16_000).map(|i| format!("p{i:x}")).collect();
    let query = names.join("&");
    assert!(query.len() > 60_000);
    let c = classify("GET", &format!("/v1/vaults?{query}")).unwrap();
    assert_eq!(c.unknown_params.len(), 16_000);
    assert_eq!(
        c.query.as_deref().map(|q| q.matches('&').count()),
        Some(15_999)
    );
    let err = classify("GET", &format!("/v1/vaults?{query}&p0=again")).unwrap_err();
    assert_eq!(
        err,
        ClassifyError::Query("parameter \"p0\" appears twice".into())
    );
}

#[test]
fn an_empty_filter_is_no_filter() {
    // The JS SDK lists vaults with `GET /v1/vaults/?filter=`.
    for target in [
        "/v1/vaults/?filter=",
        "/v1/vaults?filter",
        "/v1/vaults?filter=+",
    ] {
        let c = classify("GET", target).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(c.op, Op::Known(ListVaults), "{target}");
        assert_eq!(c.filter, None, "{target}");
        assert!(c.unknown_params.is_empty(), "{target}");
    }
}

#[test]
fn undocumented_query_parameters_are_kept_and_reported() {
    let c = classify(
        "GET",
        &format!("/v1/vaults/{VID}/items/{IID}?reveal=1&inline_files=true"),
    )
    .unwrap();
    assert_eq!(c.op, Op::Known(ReadItem));
    assert_eq!(c.unknown_params, ["reveal", "inline_files"]);
    assert_eq!(c.query.as_deref(), Some("reveal=1&inline_files=true"));

    let c = classify(
        "GET",
        &format!("/v1/vaults/{VID}/items/{IID}/files?inline_files=true"),
    )
    .unwrap();
    assert!(c.unknown_params.is_empty());
    let c = classify("GET", "/v1/activity?limit=5&offset=10&sort=desc").unwrap();
    assert_eq!(c.unknown_params, ["sort"]);
}

#[test]
fn queries_are_re_encoded_one_way() {
    // A title with `&` or `#` must be percent-encoded by the client; what the proxy forwards
    // is the decoded-then-re-encoded query, so the upstream reads exactly what was checked.
    let c = classify("GET", "/v1/vaults?filter=title%20eq%20%22a%26b%23c%22").unwrap();
    assert_eq!(c.filter.unwrap().terms[0].value, "a&b#c");
    assert_eq!(
        c.query.as_deref(),
        Some("filter=title%20eq%20%22a%26b%23c%22")
    );
    for bad in [
        "/v1/vaults?filter=%",
        "/v1/vaults?filter=%g0",
        "/v1/vaults?x=%ff",
    ] {
        assert!(
            matches!(classify("GET", bad), Err(ClassifyError::Query(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        classify("GET", "/v1/vaults?filter=title%20eq%20%27x%27"),
        Err(ClassifyError::Filter(_))
    ));
}

/// Every path of up to four segments over an alphabet of troublesome pieces: whatever
/// normalises at all normalises to a fixed point made only of safe bytes.
#[test]
fn normalisation_is_idempotent_on_generated_paths() {
    let pieces = [
        "", ".", "..", "a", "%2e", "%2E%2e", "%41", "~", "%7e", "b.c", "...", "%2e.", "x%20",
        "%25", "%2f", ";", "%00", "%c0%ae",
    ];
    let mut checked = 0;
    let mut refused = 0;
    let n = pieces.len();
    for len in 0..=4u32 {
        for mut code in 0..n.pow(len) {
            let mut raw = String::new();
            for _ in 0..len {
                raw.push('/');
                raw.push_str(pieces[code % n]);
                code /= n;
            }
            if raw.is_empty() {
                raw.push('/');
            }
            match normalize_path(&raw) {
                Ok(once) => {
                    checked += 1;
                    assert_eq!(normalize_path(&once).as_ref(), Ok(&once), "{raw}");
                    assert!(once.starts_with('/'), "{raw} -> {once}");
                    assert!(once == "/" || !once.ends_with('/'), "{raw} -> {once}");
                    assert!(
                        !once.contains("//") && !once.contains('%'),
                        "{raw} -> {once}"
                    );
                    assert!(
                        once.split('/').all(|s| s != "." && s != ".."),
                        "{raw} -> {once}"
                    );
                }
                Err(_) => refused += 1,
            }
        }
    }
    // Both branches are exercised, so the property is not vacuous.
    assert!(checked > 10_000 && refused > 10_000, "{checked} {refused}");
}

// === Properties ===

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// One path segment: dot segments (plain and encoded), unreserved text, percent escapes of
    /// any byte, and any printable ASCII but the `?` and `#` that would end the path.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E%2e".to_owned()),
            Just(".%2e".to_owned()),
            "[A-Za-z0-9._~-]{1,8}",
            any::<u8>().prop_map(|b| format!("%{b:02X}")),
            "[ -~&&[^?#]]{1,4}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 0..10).prop_map(|s| format!("/{}", s.join("/")))
    }

    /// The shape every normalised path has.
    fn assert_normal(raw: &str, once: &str) {
        assert!(once.starts_with('/'), "{raw:?} -> {once:?}");
        assert!(
            !once.contains("//") && !once.contains('%'),
            "{raw:?} -> {once:?}"
        );
        assert!(once == "/" || !once.ends_with('/'), "{raw:?} -> {once:?}");
        assert!(
            once.split('/').all(|s| s != "." && s != ".."),
            "{raw:?} -> {once:?}"
        );
    }

    proptest! {
        /// normalize(normalize(p)) == normalize(p) whenever the first succeeds.
        #[test]
        fn normalisation_is_idempotent(raw in path()) {
            if let Ok(once) = normalize_path(&raw) {
                assert_normal(&raw, &once);
                prop_assert_eq!(normalize_path(&once), Ok(once));
            }
        }

        /// The same over arbitrary text: no panic, and idempotent where it succeeds.
        #[test]
        fn normalisation_is_idempotent_on_any_text(raw in "/\\PC{0,40}") {
            if let Ok(once) = normalize_path(&raw) {
                assert_normal(&raw, &once);
                prop_assert_eq!(normalize_path(&once), Ok(once));
            }
        }

        /// The path the classifier reports is the normalised path, and classifying what the
        /// proxy forwards (that path and the re-encoded query) gives the same result.
        #[test]
        fn classification_is_stable_on_what_is_forwarded(
            raw in path(),
            query in "[a-z=&+%0-9A-F]{0,16}",
            method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ) {
            let target = if query.is_empty() { raw.clone() } else { format!("{raw}?{query}") };
            if let Ok(c) = classify(method, &target) {
                prop_assert_eq!(Ok(c.path.clone()), normalize_path(&raw));
                let forwarded = match &c.query {
                    Some(q) => format!("{}?{q}", c.path),
                    None => c.path.clone(),
                };
                prop_assert_eq!(classify(method, &forwarded), Ok(c));
            }
        }
    }
}
