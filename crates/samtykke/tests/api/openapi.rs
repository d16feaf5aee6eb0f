//! `GET /openapi.json` against the published contract: the same paths,
//! operations, parameters, schema names, properties and required lists.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::schema::{ref_name, reference};

/// Every `$ref` name anywhere in `value`.
fn refs_in(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => {
                        out.insert(ref_name(r).to_owned());
                    }
                    _ => refs_in(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs_in(v, out)),
        _ => {}
    }
}

/// The schemas the reference's operations use, directly or through other
/// schemas. (`consent_info` is defined in the reference but used by no
/// operation, so it is not part of the contract we implement.)
fn schemas_used_by_the_reference_paths() -> BTreeSet<String> {
    let doc = reference();
    let mut used = BTreeSet::new();
    refs_in(&doc["paths"], &mut used);
    loop {
        let mut next = used.clone();
        for name in &used {
            refs_in(&doc["components"]["schemas"][name], &mut next);
        }
        if next == used {
            return used;
        }
        used = next;
    }
}

/// What a schema (possibly wrapped in oneOf/anyOf/allOf, as utoipa does for
/// nullable and inline enums) allows: its types, enum values and `$ref`s.
#[derive(Debug, Default)]
struct Shape {
    types: BTreeSet<String>,
    enums: BTreeSet<String>,
    refs: BTreeSet<String>,
}

fn shape(schema: &Value, out: &mut Shape) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        out.refs.insert(ref_name(r).to_owned());
        return;
    }
    match schema.get("type") {
        Some(Value::String(t)) => {
            out.types.insert(t.clone());
        }
        Some(Value::Array(ts)) => out
            .types
            .extend(ts.iter().filter_map(Value::as_str).map(str::to_owned)),
        _ => {}
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        out.enums.extend(values.iter().map(Value::to_string));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for s in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            shape(s, out);
        }
    }
}

fn required(schema: &Value) -> Option<BTreeSet<&str>> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
}

/// Compares one reference object schema with ours; mismatches go to `errors`.
fn compare_object(at: &str, theirs: &Value, ours: &Value, errors: &mut Vec<String>) {
    let props = |s: &Value| -> BTreeMap<String, Value> {
        s.get("properties")
            .and_then(Value::as_object)
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let (their_props, our_props) = (props(theirs), props(ours));
    let their_names: BTreeSet<&String> = their_props.keys().collect();
    let our_names: BTreeSet<&String> = our_props.keys().collect();
    if their_names != our_names {
        errors.push(format!(
            "{at}: properties {our_names:?}, the reference has {their_names:?}"
        ));
    }
    if let Some(theirs_required) = required(theirs) {
        let ours_required = required(ours).unwrap_or_default();
        if theirs_required != ours_required {
            errors.push(format!(
                "{at}: required {ours_required:?}, the reference has {theirs_required:?}"
            ));
        }
    }
    for (name, their_prop) in &their_props {
        let Some(our_prop) = our_props.get(name) else {
            continue;
        };
        let here = format!("{at}.{name}");
        let (mut t, mut o) = (Shape::default(), Shape::default());
        shape(their_prop, &mut t);
        shape(our_prop, &mut o);
        if !t.types.is_subset(&o.types) {
            errors.push(format!(
                "{here}: type {:?}, the reference has {:?}",
                o.types, t.types
            ));
        }
        if !t.enums.is_empty() && t.enums != o.enums {
            errors.push(format!(
                "{here}: enum {:?}, the reference has {:?}",
                o.enums, t.enums
            ));
        }
        // A nullable property of the reference (`debt_information.loans[].loan`:
        // a creditor that did not answer) must allow null in ours too, in
        // 3.0's `nullable` or 3.1's `null` type.
        if their_prop["nullable"] == true
            && !(our_prop["nullable"] == true || o.types.contains("null"))
        {
            errors.push(format!("{here}: not nullable, the reference's is"));
        }
        if !t.refs.is_subset(&o.refs) {
            errors.push(format!(
                "{here}: refers to {:?}, the reference to {:?}",
                o.refs, t.refs
            ));
        }
        // Inline objects (the items of debt_information.loans) are compared too.
        let (their_items, our_items) = (&their_prop["items"], &our_prop["items"]);
        if their_items.get("properties").is_some() {
            compare_object(&format!("{here}[]"), their_items, our_items, errors);
        }
    }
}

async fn our_document(app: &crate::helpers::TestApp) -> Value {
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    doc
}

engine_tests! {
    async fn every_schema_the_contract_uses_has_the_same_name_properties_and_required_list(app) {
        let doc = our_document(&app).await;
        let used = schemas_used_by_the_reference_paths();
        for name in ["SpringErrorSchema", "CreateConsentRequestDTO", "CreateConsentResponseDTO", "ConsentResponseDTO",
            "SamtykkeFeedResponseDTO", "SamtykkeFeedEventDTO", "SamtykkeOpprettetEventDTO", "SamtykkeArkivertEventDTO",
            "LastSequenceNrResponse", "FirstSequenceNrResponse", "debt_information", "consent_metadata",
            "credit_facility", "repayment_loan", "charge_cards", "consent_status", "error"] {
            assert!(used.contains(name), "{name} is not used by the reference paths: {used:?}");
        }
        let mut errors = Vec::new();
        for name in &used {
            let theirs = &reference()["components"]["schemas"][name];
            let ours = &doc["components"]["schemas"][name];
            if ours.is_null() {
                errors.push(format!("{name}: missing from our document"));
                continue;
            }
            compare_object(name, theirs, ours, &mut errors);
        }
        assert!(errors.is_empty(), "{errors:#?}");
    }

    async fn every_operation_of_the_contract_is_described_with_its_parameters_and_response_schemas(app) {
        let doc = our_document(&app).await;
        let mut errors = Vec::new();
        let mut operations = 0;
        for (path, item) in reference()["paths"].as_object().unwrap() {
            for (method, theirs) in item.as_object().unwrap() {
                operations += 1;
                let at = format!("{} {path}", method.to_uppercase());
                let ours = &doc["paths"][path][method];
                if ours.is_null() {
                    errors.push(format!("{at}: missing from our document"));
                    continue;
                }
                if ours["operationId"] != theirs["operationId"] {
                    errors.push(format!("{at}: operationId {}, the reference has {}", ours["operationId"], theirs["operationId"]));
                }
                if ours["tags"] != theirs["tags"] {
                    errors.push(format!("{at}: tags {}, the reference has {}", ours["tags"], theirs["tags"]));
                }
                // Path and query parameters (the reference also lists the
                // Authorization header; we describe it as a security scheme).
                for param in theirs["parameters"].as_array().into_iter().flatten() {
                    if param["in"] == "header" {
                        continue;
                    }
                    let found = ours["parameters"].as_array().into_iter().flatten()
                        .find(|p| p["name"] == param["name"] && p["in"] == param["in"]);
                    match found {
                        None => errors.push(format!("{at}: no {} parameter {}", param["in"], param["name"])),
                        Some(p) => {
                            if p["required"] != param["required"] {
                                errors.push(format!("{at}: parameter {} required {}, the reference has {}", param["name"], p["required"], param["required"]));
                            }
                            if p["schema"]["type"] != param["schema"]["type"] {
                                errors.push(format!("{at}: parameter {} type {}, the reference has {}", param["name"], p["schema"]["type"], param["schema"]["type"]));
                            }
                        }
                    }
                }
                // Same body schema for every status both describe; every
                // success status of the reference is described.
                let schema_names = |op: &Value, status: &str| -> BTreeSet<String> {
                    let mut out = BTreeSet::new();
                    refs_in(&op["responses"][status]["content"], &mut out);
                    out
                };
                for status in theirs["responses"].as_object().unwrap().keys() {
                    if ours["responses"].get(status).is_none() {
                        if status.starts_with('2') {
                            errors.push(format!("{at}: response {status} is not described"));
                        }
                        continue;
                    }
                    let (t, o) = (schema_names(theirs, status), schema_names(ours, status));
                    // Where the reference gives no body (401 of the agreement
                    // API), ours may describe the one we send.
                    if !t.is_empty() && t != o {
                        errors.push(format!("{at} {status}: body {o:?}, the reference has {t:?}"));
                    }
                }
            }
        }
        assert_eq!(operations, 8, "the reference's operations");
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

#[test]
fn the_comparison_notices_each_kind_of_difference() {
    let theirs = &reference()["components"]["schemas"];
    let mut errors = Vec::new();
    compare_object(
        "same",
        &theirs["SamtykkeFeedEventDTO"],
        &theirs["SamtykkeFeedEventDTO"],
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    for (name, change, needle) in [
        (
            "CreateConsentRequestDTO",
            serde_json::json!({"properties": {"our_consent_id": {"type": "string"}}}),
            "properties",
        ),
        (
            "CreateConsentRequestDTO",
            serde_json::json!({"required": ["nin"]}),
            "required",
        ),
        (
            "ConsentResponseDTO",
            serde_json::json!({"properties": {"scope_of_consent": {"type": "string", "enum": ["debt.unsecured.presentation"]}}}),
            "enum",
        ),
        (
            "consent_status",
            serde_json::json!({"properties": {"expires_at": {"type": "string"}}}),
            "type",
        ),
        (
            "debt_information",
            serde_json::json!({"properties": {"consent": {"$ref": "#/components/schemas/consent_info"}}}),
            "refers to",
        ),
        (
            "debt_information",
            serde_json::json!({"properties": {"loans": {"type": "array", "items": {"type": "object", "properties": {"creditor": {"type": "string"}, "loan": {}}}}}}),
            "loans[]",
        ),
        (
            "debt_information",
            serde_json::json!({"properties": {"loans": {"items": {"properties": {"loan": {"nullable": false}}}}}}),
            "not nullable",
        ),
    ] {
        let mut ours = theirs[name].clone();
        merge(&mut ours, &change);
        let mut errors = Vec::new();
        compare_object(name, &theirs[name], &ours, &mut errors);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{name} {change}: {errors:?}"
        );
    }
}

/// Overlays `change` on `value` (objects merge key by key; anything else replaces).
fn merge(value: &mut Value, change: &Value) {
    match (value, change) {
        (Value::Object(v), Value::Object(c)) => {
            for (k, cv) in c {
                merge(v.entry(k.clone()).or_insert(Value::Null), cv);
            }
        }
        (v, c) => *v = c.clone(),
    }
}
