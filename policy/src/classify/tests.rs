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
