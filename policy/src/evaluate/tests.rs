use super::*;
use crate::contract::Contract;

const SEED: &[u8] = include_bytes!("../../../examples/policies/1password-readonly-agent.json");
const VID: &str = "ytrfte14kw1uex5txaore1emkz";

fn seed() -> WpcDocument {
    Contract::from_slice(SEED).unwrap().document().clone()
}

fn named(id: &str, name: &str) -> Option<VaultRef> {
    Some(VaultRef {
        id: id.into(),
        name: Some(name.into()),
    })
}

fn request(op: Operation, vault: Option<VaultRef>, category: Option<Category>) -> Request {
    Request {
        op,
        vault,
        item: Some("x4tpzrqojj2ahmv3w7nb6vu2pe".into()),
        item_title: None,
        category,
    }
}

fn rule(d: &Decision) -> (&str, bool) {
    (d.rule(), d.is_allow())
}

#[test]
fn seed_allows_reading_allowed_categories_in_its_vault() {
    let doc = seed();
    let vault = named(VID, "vault_agent_secrets_prod");
    let d = evaluate(
        &doc,
        &doc.tool_scope,
        &request(Operation::ReadItem, vault.clone(), None),
    );
    assert_eq!(rule(&d), ("allowed_operations", true));
    let d = evaluate(
        &doc,
        &doc.tool_scope,
        &request(Operation::ReadItem, vault, Some(Category::Database)),
    );
    assert!(d.is_allow());
}

#[test]
fn each_rule_denies_what_it_names() {
    let doc = seed();
    let scope = &doc.tool_scope;
    let vault = named(VID, "vault_agent_secrets_prod");
    let cases = [
        (
            request(Operation::DeleteItem, vault.clone(), None),
            "deny_operations",
        ),
        (
            request(
                Operation::CreateItem,
                vault.clone(),
                Some(Category::Database),
            ),
            "deny_operations",
        ),
        (
            request(Operation::ListItems, vault.clone(), None),
            "allowed_operations",
        ),
        (
            request(Operation::ListVaults, None, None),
            "allowed_operations",
        ),
        (
            request(Operation::ReadFile, vault.clone(), None),
            "allowed_operations",
        ),
        (
            request(Operation::ReadItem, named(VID, "other"), None),
            "allowed_vaults",
        ),
        (
            request(
                Operation::ReadItem,
                Some(VaultRef {
                    id: VID.into(),
                    name: None,
                }),
                None,
            ),
            "allowed_vaults",
        ),
        (request(Operation::ReadItem, None, None), "allowed_vaults"),
        (
            request(Operation::ReadItem, vault.clone(), Some(Category::Login)),
            "allowed_categories",
        ),
    ];
    for (req, want) in cases {
        let d = evaluate(&doc, scope, &req);
        assert_eq!(rule(&d), (want, false), "{req:?}");
        if let Decision::Deny { reason, .. } = d {
            assert!(!reason.is_empty());
        }
    }
}

#[test]
fn deny_beats_allow() {
    let mut doc = seed();
    doc.tool_scope
        .allowed_operations
        .push(Operation::DeleteItem);
    let d = evaluate(
        &doc,
        &doc.tool_scope,
        &request(
            Operation::DeleteItem,
            named(VID, "vault_agent_secrets_prod"),
            None,
        ),
    );
    assert_eq!(rule(&d), ("deny_operations", false));
}

#[test]
fn vaults_match_by_id_or_name() {
    let mut doc = seed();
    let by_name = named(VID, "vault_agent_secrets_prod");
    assert!(
        evaluate(
            &doc,
            &doc.tool_scope,
            &request(Operation::ReadItem, by_name, None)
        )
        .is_allow()
    );
    doc.tool_scope.allowed_vaults = vec![VID.into()];
    let by_id = Some(VaultRef {
        id: VID.into(),
        name: None,
    });
    assert!(
        evaluate(
            &doc,
            &doc.tool_scope,
            &request(Operation::ReadItem, by_id, None)
        )
        .is_allow()
    );
}

#[test]
fn a_narrowed_scope_is_what_counts_and_the_contract_deny_list_still_applies() {
    let doc = seed();
    let mut narrow = doc.tool_scope.clone();
    narrow.allowed_categories = vec![Category::Database];
    let vault = named(VID, "vault_agent_secrets_prod");
    let d = evaluate(
        &doc,
        &narrow,
        &request(
            Operation::ReadItem,
            vault.clone(),
            Some(Category::ApiCredential),
        ),
    );
    assert_eq!(rule(&d), ("allowed_categories", false));
    // A scope that forgot the contract's deny list does not escape it.
    narrow.deny_operations.clear();
    narrow.allowed_operations.push(Operation::DeleteItem);
    let d = evaluate(&doc, &narrow, &request(Operation::DeleteItem, vault, None));
    assert_eq!(rule(&d), ("deny_operations", false));
}

#[test]
fn patch_needs_read_as_well() {
    let mut doc = seed();
    doc.tool_scope.deny_operations.clear();
    doc.tool_scope.allowed_operations = vec![Operation::PatchItem];
    let vault = named(VID, "vault_agent_secrets_prod");
    let d = evaluate(
        &doc,
        &doc.tool_scope,
        &request(Operation::PatchItem, vault.clone(), None),
    );
    assert_eq!(rule(&d), ("allowed_operations", false));
    doc.tool_scope.allowed_operations.push(Operation::ReadItem);
    assert!(
        evaluate(
            &doc,
            &doc.tool_scope,
            &request(Operation::PatchItem, vault, None)
        )
        .is_allow()
    );
}

#[test]
fn operations_without_a_vault_need_only_the_operation() {
    let mut doc = seed();
    doc.tool_scope
        .allowed_operations
        .push(Operation::ListVaults);
    assert!(
        evaluate(
            &doc,
            &doc.tool_scope,
            &request(Operation::ListVaults, None, None)
        )
        .is_allow()
    );
}

#[test]
fn write_bodies_reveal_vault_and_category() {
    // The Python SDK's create body.
    let python = br#"{"title":"t","vault":{"id":"ytrfte14kw1uex5txaore1emkz"},"category":"LOGIN","favorite":false,"trashed":false,"fields":[{"type":"STRING","purpose":"USERNAME","value":"u","generate":false}]}"#;
    let facts = inspect_body(Operation::CreateItem, python).unwrap();
    assert_eq!(facts.vault.as_deref(), Some(VID));
    assert_eq!(facts.category, Some(Category::Login));
    // PATCH that changes the category, the vault, or replaces the whole item.
    let patch = br#"[{"op":"replace","path":"/title","value":"x"},{"op":"replace","path":"/category","value":"SSH_KEY"}]"#;
    assert_eq!(
        inspect_body(Operation::PatchItem, patch).unwrap().category,
        Some(Category::SshKey)
    );
    let patch = br#"[{"op":"replace","path":"/vault/id","value":"otherotherotherotherother1"}]"#;
    assert_eq!(
        inspect_body(Operation::PatchItem, patch)
            .unwrap()
            .vault
            .as_deref(),
        Some("otherotherotherotherother1")
    );
    let patch = br#"[{"op":"replace","path":"/","value":{"category":"LOGIN","vault":{"id":"v"}}}]"#;
    assert_eq!(
        inspect_body(Operation::PatchItem, patch).unwrap().category,
        Some(Category::Login)
    );
    assert_eq!(
        inspect_body(Operation::PatchItem, b"[]").unwrap(),
        BodyFacts::default()
    );
}

#[test]
fn uninspectable_bodies_are_errors() {
    for (op, body) in [
        (Operation::CreateItem, &b"not json"[..]),
        (Operation::CreateItem, b"[1]"),
        (Operation::CreateItem, br#"{"category":"NOT_A_CATEGORY"}"#),
        (
            Operation::CreateItem,
            br#"{"category":"LOGIN","category":"DATABASE"}"#,
        ),
        (Operation::UpdateItem, br#"{"vault":{"id":5}}"#),
        (Operation::PatchItem, br#"{"op":"replace"}"#),
        (
            Operation::PatchItem,
            br#"[{"op":"move","path":"/category","from":"/x"}]"#,
        ),
        (
            Operation::PatchItem,
            br#"[{"op":"remove","path":"/category"}]"#,
        ),
        (Operation::PatchItem, br#"[{"path":"/title"}]"#),
        // Go reads member names without regard to case: two spellings, two readings.
        (
            Operation::CreateItem,
            br#"{"category":"LOGIN","CATEGORY":"SSH_KEY"}"#,
        ),
        (Operation::CreateItem, br#"{"Category":"SSH_KEY"}"#),
        (Operation::UpdateItem, br#"{"Vault":{"id":"v"}}"#),
        (Operation::UpdateItem, br#"{"vault":{"ID":"v"}}"#),
        (Operation::UpdateItem, br#"{"vault":"v"}"#),
        (
            Operation::PatchItem,
            br#"[{"op":"replace","path":"/Category","value":"SSH_KEY"}]"#,
        ),
        (
            Operation::PatchItem,
            br#"[{"op":"replace","path":"/VAULT/id","value":"v"}]"#,
        ),
        // Removing, with or without a value, and setting twice to different values.
        (
            Operation::PatchItem,
            br#"[{"op":"remove","path":"/category","value":"LOGIN"}]"#,
        ),
        (Operation::PatchItem, br#"[{"op":"remove","path":"/"}]"#),
        (
            Operation::PatchItem,
            br#"[{"op":"replace","path":"/category","value":"LOGIN"},{"op":"replace","path":"/","value":{"category":"SSH_KEY"}}]"#,
        ),
        (
            Operation::PatchItem,
            br#"[{"op":"replace","path":"/vault","value":{"id":"a"}},{"op":"replace","path":"/vault/id","value":"b"}]"#,
        ),
    ] {
        assert!(
            inspect_body(op, body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn sdk_body_shapes_are_read() {
    // The JS SDK's create body (connect-api.md §4).
    let js = br#"{"title":"t","vault":{"id":"ytrfte14kw1uex5txaore1emkz"},"category":"API_CREDENTIAL","urls":[],"tags":[],"sections":[{"id":"Section_ab12","label":"s"}],"fields":[{"section":{"id":"Section_ab12"},"type":"CONCEALED","purpose":"","label":"key","value":"v","generate":true,"recipe":{"length":32,"characterSets":["LETTERS"]}}]}"#;
    let facts = inspect_body(Operation::CreateItem, js).unwrap();
    assert_eq!(facts.vault.as_deref(), Some(VID));
    assert_eq!(facts.category, Some(Category::ApiCredential));
    // A PUT echoes read-only fields; they are ignored.
    let put = br#"{"id":"x4tpzrqojj2ahmv3w7nb6vu2pe","title":"t","vault":{"id":"ytrfte14kw1uex5txaore1emkz"},"category":"DATABASE","version":3,"createdAt":"2026-01-01T00:00:00Z","lastEditedBy":"U","fields":[]}"#;
    let facts = inspect_body(Operation::UpdateItem, put).unwrap();
    assert_eq!(facts.category, Some(Category::Database));
    // Setting the same value twice is not ambiguous.
    let patch = br#"[{"op":"replace","path":"/category","value":"LOGIN"},{"op":"replace","path":"/","value":{"category":"LOGIN"}}]"#;
    assert_eq!(
        inspect_body(Operation::PatchItem, patch).unwrap().category,
        Some(Category::Login)
    );
    // Bodies of operations that carry none are not read at all.
    assert_eq!(
        inspect_body(Operation::ReadItem, b"garbage").unwrap(),
        BodyFacts::default()
    );
}

#[test]
fn oversized_bodies_are_refused() {
    let mut body = br#"{"category":"LOGIN","notes":""#.to_vec();
    body.resize(MAX_BODY_BYTES + 1, b'a');
    body.extend_from_slice(br#""}"#);
    let err = inspect_body(Operation::CreateItem, &body).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn item_lists_narrow_a_vault_by_id_or_title() {
    let mut doc = seed();
    const LISTED: &str = "x4tpzrqojj2ahmv3w7nb6vu2pe";
    const OTHER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaa";
    doc.tool_scope.allowed_items.insert(
        "vault_agent_secrets_prod".into(),
        vec![LISTED.into(), "prod-db".into()],
    );
    let scope = &doc.tool_scope;
    let vault = named(VID, "vault_agent_secrets_prod");
    let ask = |item: &str, title: Option<&str>| {
        let mut r = request(Operation::ReadItem, vault.clone(), Some(Category::Database));
        r.item = Some(item.into());
        r.item_title = title.map(str::to_owned);
        evaluate(&doc, scope, &r)
    };
    assert_eq!(rule(&ask(LISTED, None)), ("allowed_operations", true));
    assert_eq!(
        rule(&ask(OTHER, Some("prod-db"))),
        ("allowed_operations", true)
    );
    assert_eq!(rule(&ask(OTHER, None)), ("allowed_items", false));
    assert_eq!(rule(&ask(OTHER, Some("Prod-DB"))), ("allowed_items", false));
    // Operations without an item are not touched by item lists.
    let mut list = request(Operation::ReadItem, vault.clone(), None);
    list.item = None;
    assert!(evaluate(&doc, scope, &list).is_allow());
    // The vault rule comes first; another vault has no list.
    let elsewhere = named("bbbbbbbbbbbbbbbbbbbbbbbbbb", "other");
    assert!(item_allowed(scope, elsewhere.as_ref().unwrap(), Some(OTHER), None).is_allow());
    assert!(lists_titles(scope, vault.as_ref().unwrap()));
    // A list keyed by the vault id applies too.
    let mut by_id = seed();
    by_id
        .tool_scope
        .allowed_items
        .insert(VID.into(), vec![LISTED.into()]);
    let unnamed = Some(VaultRef {
        id: VID.into(),
        name: None,
    });
    assert!(
        !item_allowed(
            &by_id.tool_scope,
            unnamed.as_ref().unwrap(),
            Some(OTHER),
            None
        )
        .is_allow()
    );
    assert!(!lists_titles(&by_id.tool_scope, unnamed.as_ref().unwrap()));
    // create_item in a listed vault: only a listed title may be created.
    let mut create = request(
        Operation::CreateItem,
        vault.clone(),
        Some(Category::Database),
    );
    doc.tool_scope
        .allowed_operations
        .push(Operation::CreateItem);
    doc.tool_scope.deny_operations.clear();
    create.item = None;
    create.item_title = Some("prod-db".into());
    assert!(evaluate(&doc, &doc.tool_scope, &create).is_allow());
    create.item_title = Some("anything else".into());
    assert_eq!(
        rule(&evaluate(&doc, &doc.tool_scope, &create)),
        ("allowed_items", false)
    );
    create.item_title = None;
    assert_eq!(
        rule(&evaluate(&doc, &doc.tool_scope, &create)),
        ("allowed_items", false)
    );
}

#[test]
fn approval_rules_hold_what_they_name() {
    let mut doc = seed();
    doc.tool_scope.allowed_operations.push(Operation::ListItems);
    let rule = |vaults: &[&str], items: &[&str]| crate::contract::ApprovalRule {
        operations: vec![Operation::ReadItem],
        vaults: vaults.iter().map(|s| s.to_string()).collect(),
        items: items.iter().map(|s| s.to_string()).collect(),
        approvers: vec!["alice".into()],
        timeout_seconds: 60,
        on_timeout: crate::contract::OnTimeout::Deny,
    };
    let vault = named(VID, "vault_agent_secrets_prod");
    let read = request(Operation::ReadItem, vault.clone(), None);
    let list = Request {
        item: None,
        ..request(Operation::ListItems, vault.clone(), None)
    };
    assert_eq!(approval_rule(&doc, &read), None, "no rules, nothing held");

    doc.approvals = vec![rule(&[], &[])];
    assert_eq!(approval_rule(&doc, &read).map(|(i, _)| i), Some(0));
    assert_eq!(approval_rule(&doc, &list), None, "another operation");

    // Vaults by id or by resolved name; a rule naming vaults holds nothing in other vaults.
    for (vaults, held) in [
        (&["vault_agent_secrets_prod"][..], true),
        (&[VID][..], true),
        (&["other"][..], false),
    ] {
        doc.approvals = vec![rule(vaults, &[])];
        assert_eq!(approval_rule(&doc, &read).is_some(), held, "{vaults:?}");
    }
    let unnamed = request(Operation::ReadItem, None, None);
    doc.approvals = vec![rule(&["vault_agent_secrets_prod"], &[])];
    assert_eq!(approval_rule(&doc, &unnamed), None);

    // Items by id or title.
    let titled = Request {
        item_title: Some("prod-db".into()),
        ..read.clone()
    };
    for (items, request, held) in [
        (&["x4tpzrqojj2ahmv3w7nb6vu2pe"][..], &read, true),
        (&["prod-db"][..], &read, false),
        (&["prod-db"][..], &titled, true),
        (&["other"][..], &titled, false),
    ] {
        doc.approvals = vec![rule(&[], items)];
        assert_eq!(approval_rule(&doc, request).is_some(), held, "{items:?}");
    }

    // The first matching rule decides.
    doc.approvals = vec![rule(&["other"], &[]), rule(&[], &[]), rule(&[], &[])];
    assert_eq!(approval_rule(&doc, &read).map(|(i, _)| i), Some(1));
}
