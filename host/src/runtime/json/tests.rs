use std::collections::BTreeMap;

use serde_json::json;
use wit_parser::{Resolve, TypeDefKind};

use super::*;

/// The `types` interface of `wit/`.
fn wit_types() -> (Resolve, wit_parser::InterfaceId) {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit"))
        .unwrap();
    let id = resolve.packages[pkg].interfaces["types"];
    (resolve, id)
}

/// How a mirror enum spells each case in JSON.
fn spelled<T: Serialize>(cases: &[T]) -> Vec<String> {
    cases
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Every WIT enum is mirrored, and each mirror spells its cases exactly as
/// the WIT names them, in the WIT's order; each WIT name reads back.
#[test]
fn enum_cases_are_spelled_as_the_wit_names_them() {
    let (resolve, types_id) = wit_types();
    let mut wit = BTreeMap::new();
    for (name, id) in &resolve.interfaces[types_id].types {
        if let TypeDefKind::Enum(e) = &resolve.types[*id].kind {
            let cases: Vec<String> = e.cases.iter().map(|c| c.name.clone()).collect();
            wit.insert(name.clone(), cases);
        }
    }
    let mirrored = BTreeMap::from([
        ("body-format".to_string(), spelled(BodyFormat::ALL)),
        ("priority".to_string(), spelled(Priority::ALL)),
        ("role".to_string(), spelled(Role::ALL)),
    ]);
    assert_eq!(mirrored, wit, "mirror every WIT enum in runtime/json.rs");
    for name in &wit["priority"] {
        serde_json::from_value::<Priority>(json!(name)).unwrap();
    }
    for name in &wit["role"] {
        serde_json::from_value::<Role>(json!(name)).unwrap();
    }
    for name in &wit["body-format"] {
        serde_json::from_value::<BodyFormat>(json!(name)).unwrap();
    }
}

/// The only WIT variant is the error type, which reaches callers as the
/// API's error shape, never as operation JSON. A new variant in a record
/// would need a kebab-case mirror here; this says so.
#[test]
fn no_variant_travels_in_operation_json() {
    let (resolve, types_id) = wit_types();
    let variants: Vec<&String> = resolve.interfaces[types_id]
        .types
        .iter()
        .filter(|(_, id)| matches!(resolve.types[**id].kind, TypeDefKind::Variant(_)))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        variants,
        ["plugin-error"],
        "mirror new variants in runtime/json.rs"
    );
}

#[test]
fn a_new_ticket_takes_wit_spellings_and_fields_as_an_object() {
    let value = json!({
        "title": "VPN down", "priority": "p1", "fields": {"category": "network"}
    });
    let ticket: NewTicket = input("tickets.create", value).unwrap();
    assert_eq!(
        types::NewTicket::from_json(ticket),
        types::NewTicket {
            title: "VPN down".into(),
            description: None,
            kind: None,
            priority: Some(types::Priority::P1),
            fields: Some(r#"{"category":"network"}"#.into()),
        }
    );
    let update: TicketUpdate = input("tickets.update", json!({"id": "7", "fields": null})).unwrap();
    assert_eq!(types::TicketUpdate::from_json(update).fields, None);
}

#[test]
fn a_page_and_a_chat_take_wit_spellings() {
    let page: NewPage = input(
        "documents.publish-page",
        json!({"space_key": "ENG", "title": "T", "body": {"format": "markdown", "content": "# T"}}),
    )
    .unwrap();
    assert_eq!(
        types::NewPage::from_json(page).body.format,
        types::BodyFormat::Markdown
    );
    let chat: ChatRequest = input(
        "chat.complete",
        json!({"messages": [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]}),
    )
    .unwrap();
    let roles: Vec<_> = types::ChatRequest::from_json(chat)
        .messages
        .into_iter()
        .map(|m| m.role)
        .collect();
    assert_eq!(roles, [types::Role::System, types::Role::User]);
}

/// What an input error says, in full.
fn refusal<T: DeserializeOwned + std::fmt::Debug>(operation: &str, value: Value) -> String {
    input::<T>(operation, value).unwrap_err().to_string()
}

#[test]
fn input_errors_name_the_field_path() {
    assert_eq!(
        refusal::<ChatRequest>(
            "chat.complete",
            json!({"messages": [{"role": "User", "content": "hi"}]})
        ),
        "invalid input for chat.complete: messages[0].role: unknown variant `User`, \
         expected one of `system`, `user`, `assistant`"
    );
    assert_eq!(
        refusal::<NewTicket>("tickets.create", json!({"title": "t", "priority": "P1"})),
        "invalid input for tickets.create: priority: unknown variant `P1`, \
         expected one of `p1`, `p2`, `p3`, `p4`"
    );
    assert_eq!(
        refusal::<NewTicket>(
            "tickets.create",
            json!({"title": "t", "fields": r#"{"category": "network"}"#})
        ),
        "invalid input for tickets.create: fields: invalid type: string \
         \"{\\\"category\\\": \\\"network\\\"}\", expected a map"
    );
    assert_eq!(
        refusal::<PageUpdate>(
            "documents.update-page",
            json!({"id": "1", "body": {"format": "Storage", "content": "x"}})
        ),
        "invalid input for documents.update-page: body.format: unknown variant `Storage`, \
         expected `storage` or `markdown`"
    );
    assert_eq!(
        refusal::<NewPage>(
            "documents.publish-page",
            json!({"space_key": "E", "title": "t"})
        ),
        "invalid input for documents.publish-page: missing field `body`"
    );
}

/// Misspelt fields (kebab-case, a typo) are refused, not silently dropped.
#[test]
fn unknown_input_fields_are_refused() {
    assert_eq!(
        refusal::<TicketQuery>("tickets.search", json!({"native-query": "x", "limit": 5})),
        "invalid input for tickets.search: native-query: unknown field `native-query`, \
         expected one of `text`, `native_query`, `limit`"
    );
    assert!(
        refusal::<ChatRequest>(
            "chat.complete",
            json!({"messages": [{"role": "user", "content": "hi", "name": "x"}]})
        )
        .starts_with("invalid input for chat.complete: messages[0].name: unknown field `name`")
    );
    assert!(refusal::<NoInput>("chat.list-models", json!({"x": 1})).contains("unknown field `x`"));
    input::<NoInput>("chat.list-models", Value::Null).unwrap();
    input::<NoInput>("chat.list-models", json!({})).unwrap();
}

fn ticket(fields: &str) -> types::Ticket {
    types::Ticket {
        id: "abc".into(),
        number: Some("INC0010001".into()),
        title: "VPN down".into(),
        description: None,
        kind: Some("incident".into()),
        state: None,
        priority: Some(types::Priority::P2),
        url: None,
        created_at: None,
        updated_at: Some("2026-01-02 03:04:05".into()),
        fields: fields.into(),
    }
}

#[test]
fn a_ticket_answers_with_wit_spellings_and_fields_as_an_object() {
    let out = output(ticket(r#"{"category": "network", "impact": 2}"#));
    assert_eq!(
        out,
        json!({
            "id": "abc", "number": "INC0010001", "title": "VPN down", "description": null,
            "kind": "incident", "state": null, "priority": "p2", "url": null,
            "created_at": null, "updated_at": "2026-01-02 03:04:05",
            "fields": {"category": "network", "impact": 2}
        })
    );
    // A client reading the answer into the mirror gets the same value back.
    let back: Ticket = serde_json::from_value(out).unwrap();
    assert_eq!(
        back,
        ticket(r#"{"category": "network", "impact": 2}"#).to_json()
    );
}

/// A plugin bug (fields that are not a JSON object) loses nothing: the
/// text passes through as a JSON string.
#[test]
fn fields_that_are_not_an_object_pass_through_as_a_string() {
    for raw in ["[1, 2]", "not json", "", "\"text\"", "null"] {
        let out = output(ticket(raw));
        assert_eq!(out["fields"], json!(raw), "{raw:?}");
        let back: Ticket = serde_json::from_value(out).unwrap();
        assert_eq!(back.fields, Fields::Raw(raw.into()));
    }
    assert_eq!(output(ticket("{}"))["fields"], json!({}));
}

#[test]
fn outputs_keep_snake_case_fields_and_round_trip() {
    let page = types::SyncPage {
        records: vec![types::SyncRecord {
            id: "1".into(),
            kind: "incident".into(),
            updated_at: None,
            data: r#"{"a":1}"#.into(),
        }],
        next_cursor: Some("c".into()),
        has_more: true,
    };
    let out = output(page.clone());
    assert_eq!(
        out,
        json!({"records": [{"id": "1", "kind": "incident", "updated_at": null, "data": "{\"a\":1}"}],
               "next_cursor": "c", "has_more": true})
    );
    assert_eq!(
        serde_json::from_value::<SyncPage>(out).unwrap(),
        page.to_json()
    );
    let report = types::ConnectionReport {
        account: Some("ada".into()),
        message: "ok".into(),
        details: vec![("site".into(), "acme".into())],
    };
    assert_eq!(
        output(report),
        json!({"account": "ada", "message": "ok", "details": [["site", "acme"]]})
    );
}

/// The schemas cover every operation and say what the decoder accepts.
#[test]
fn operation_schemas_describe_the_contract() {
    let schemas = crate::runtime::operation_schemas();
    let names: Vec<_> = schemas.iter().map(|s| s.operation).collect();
    assert_eq!(names, crate::runtime::OPERATIONS);
    let create = schemas
        .iter()
        .find(|s| s.operation == "tickets.create")
        .unwrap();
    let input = create.input.as_value();
    assert_eq!(input["additionalProperties"], json!(false));
    assert_eq!(input["required"], json!(["title"]));
    let priority = serde_json::to_string(&input["properties"]["priority"]).unwrap();
    assert!(
        priority.contains(r#""enum":["p1","p2","p3","p4""#),
        "{priority}"
    );
    let fields = serde_json::to_string(&input["properties"]["fields"]).unwrap();
    assert!(fields.contains(r#""object""#), "{fields}");
    assert!(
        !input.to_string().contains("$ref"),
        "self-contained: {input}"
    );
    let output = create.output.as_value();
    assert!(
        output["required"]
            .as_array()
            .unwrap()
            .contains(&json!("fields")),
        "{output}"
    );
    let get = schemas
        .iter()
        .find(|s| s.operation == "tickets.get")
        .unwrap();
    assert_eq!(get.input.as_value()["required"], json!(["id"]));
    let models = schemas
        .iter()
        .find(|s| s.operation == "chat.list-models")
        .unwrap();
    assert_eq!(models.output.as_value()["type"], json!("array"));
}

/// Every example decodes as its operation's input, and there is one per
/// operation, in table order.
#[test]
fn every_example_decodes() {
    for (operation, example) in EXAMPLES {
        let value: Value = serde_json::from_str(example).unwrap();
        decode(operation, value).unwrap_or_else(|e| panic!("{operation}: {e}"));
    }
    let named: Vec<_> = EXAMPLES.iter().map(|(op, _)| *op).collect();
    assert_eq!(named, crate::runtime::OPERATIONS);
}

/// `operation`'s input decoded into its mirror.
fn decode(operation: &str, value: Value) -> Result<(), CallError> {
    match operation {
        "connector.test-connection" | "chat.list-models" => {
            input::<NoInput>(operation, value).map(drop)
        }
        "documents.list-spaces" => input::<Limit>(operation, value).map(drop),
        "documents.get-page" | "tickets.get" => input::<Id>(operation, value).map(drop),
        "documents.search-pages" => input::<PageQuery>(operation, value).map(drop),
        "documents.publish-page" => input::<NewPage>(operation, value).map(drop),
        "documents.update-page" => input::<PageUpdate>(operation, value).map(drop),
        "tickets.search" => input::<TicketQuery>(operation, value).map(drop),
        "tickets.create" => input::<NewTicket>(operation, value).map(drop),
        "tickets.update" => input::<TicketUpdate>(operation, value).map(drop),
        "sync.fetch-page" => input::<SyncRequest>(operation, value).map(drop),
        "chat.complete" => input::<ChatRequest>(operation, value).map(drop),
        other => panic!("no decoder for {other}"),
    }
}

/// README.md's table of example inputs is [`EXAMPLES`], row for row.
#[test]
fn the_readme_shows_the_examples() {
    let readme = include_str!("../../../../README.md");
    let start = readme
        .find("<!-- operation-examples -->")
        .expect("README.md has the operation examples table");
    let rows: Vec<(&str, &str)> = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| `"))
        .take_while(|l| l.starts_with("| `"))
        .map(|l| {
            let (op, json) = l.split_once(" | ").unwrap();
            let op = op.trim_start_matches("| ").trim_matches('`');
            (op, json.trim_end_matches(" |").trim_matches('`'))
        })
        .collect();
    assert_eq!(
        rows, EXAMPLES,
        "update README.md's table from runtime/json.rs"
    );
}
