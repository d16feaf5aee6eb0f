//! The published OpenAPI (a copy in `crates/samtykke/tests/reference/openapi.json`,
//! kept byte-identical to `../shared/reference/openapi.json` by a test) and a small
//! checker that validates JSON values against its schemas.
//!
//! The checker covers the OpenAPI 3.0 schema keywords the reference uses:
//! `$ref` (resolved within the reference document; siblings of a `$ref` are
//! ignored, as OpenAPI 3.0 says), `nullable`, `anyOf`, `oneOf`, `allOf`,
//! `type` (`object`, `array`, `string`, `integer`, `number`, `boolean`),
//! `required`, `properties`, `items`, `enum`, `minimum`, and the formats
//! `date-time` (RFC 3339), `uuid`, `int32` and `int64`.
//!
//! Objects are closed: a property that the schema does not list is an error,
//! so an extra or misspelt field on the wire is caught. An optional property
//! may be `null` (Jackson writes an absent object as `null`, and the
//! reference's own feed examples do so for `samtykkeArkivertEvent`); a
//! required one may not, unless its schema is `nullable`.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

/// Where the suite reads the reference: the copy inside the repository, so
/// the tests need nothing outside it.
pub fn reference_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/openapi.json")
}

/// Where the published reference sits when the `shared/` folder is checked
/// out beside the repository root (optional).
pub fn published_reference_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/openapi.json")
}

/// The reference OpenAPI document, read once.
pub fn reference() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = reference_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("cannot read the reference OpenAPI {}: {e}", path.display())
        });
        serde_json::from_str(&text).expect("the reference OpenAPI is JSON")
    })
}

/// The name in a `#/components/schemas/NAME` reference.
pub fn ref_name(reference: &str) -> &str {
    reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("unsupported $ref {reference}"))
}

/// Validates values against the schemas of one OpenAPI document.
pub struct Checker<'a> {
    doc: &'a Value,
}

impl<'a> Checker<'a> {
    pub fn new(doc: &'a Value) -> Self {
        Self { doc }
    }

    /// The reference's checker.
    pub fn reference() -> Checker<'static> {
        Checker::new(reference())
    }

    /// `components.schemas.NAME`.
    pub fn schema(&self, name: &str) -> &'a Value {
        let schema = &self.doc["components"]["schemas"][name];
        assert!(!schema.is_null(), "no schema {name} in the document");
        schema
    }

    /// The operation `method` (lower case) on `path` (as templated in the document).
    pub fn operation(&self, path: &str, method: &str) -> &'a Value {
        let op = &self.doc["paths"][path][method];
        assert!(
            !op.is_null(),
            "no operation {method} {path} in the document"
        );
        op
    }

    /// The declared response of an operation for `status`: `None` when the
    /// status is not declared, `Some(None)` when it is declared without a
    /// body, `Some(Some(schema))` otherwise.
    pub fn response_schema(
        &self,
        path: &str,
        method: &str,
        status: u16,
    ) -> Option<Option<&'a Value>> {
        let response = self.operation(path, method)["responses"].get(status.to_string())?;
        Some(
            response
                .get("content")
                .and_then(Value::as_object)
                .and_then(|content| content.values().next())
                .map(|media| &media["schema"]),
        )
    }

    /// Every mismatch between `value` and the schema named `name`.
    pub fn check_named(&self, value: &Value, name: &str) -> Vec<String> {
        self.check(value, self.schema(name))
    }

    /// Every mismatch between `value` and `schema`; empty when it conforms.
    pub fn check(&self, value: &Value, schema: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.walk(value, schema, "$", &mut errors);
        errors
    }

    fn resolve(&self, reference: &str) -> &'a Value {
        self.schema(ref_name(reference))
    }

    fn walk(&self, value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return self.walk(value, self.resolve(reference), at, errors);
        }
        if value.is_null() {
            if schema["nullable"] != true {
                errors.push(format!("{at}: null, but the schema is not nullable"));
            }
            return;
        }
        if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array) {
            let failures: Vec<Vec<String>> = alternatives
                .iter()
                .map(|s| self.check_at(value, s, at))
                .collect();
            if !failures.iter().any(Vec::is_empty) {
                errors.push(format!("{at}: matches none of anyOf: {failures:?}"));
            }
        }
        if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
            let matching = alternatives
                .iter()
                .filter(|s| self.check_at(value, s, at).is_empty())
                .count();
            if matching != 1 {
                errors.push(format!("{at}: matches {matching} of oneOf, not exactly 1"));
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.walk(value, s, at, errors);
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        let kind = schema
            .get("type")
            .and_then(Value::as_str)
            .or_else(|| schema.get("properties").map(|_| "object"));
        match kind {
            Some("object") => self.object(value, schema, at, errors),
            Some("array") => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item, &schema["items"], &format!("{at}[{i}]"), errors);
                    }
                }
                None => errors.push(format!("{at}: {value} is not an array")),
            },
            Some("string") => match value.as_str() {
                Some(s) => string_format(s, schema, at, errors),
                None => errors.push(format!("{at}: {value} is not a string")),
            },
            Some("integer") => {
                if !(value.is_i64() || value.is_u64()) {
                    errors.push(format!("{at}: {value} is not an integer"));
                } else {
                    let fits = match schema.get("format").and_then(Value::as_str) {
                        Some("int32") => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                        Some("int64") => value.is_i64(),
                        _ => true,
                    };
                    if !fits {
                        errors.push(format!("{at}: {value} does not fit {}", schema["format"]));
                    }
                    minimum(value, schema, at, errors);
                }
            }
            Some("number") => {
                if value.is_number() {
                    minimum(value, schema, at, errors);
                } else {
                    errors.push(format!("{at}: {value} is not a number"));
                }
            }
            Some("boolean") if !value.is_boolean() => {
                errors.push(format!("{at}: {value} is not a boolean"));
            }
            Some("boolean") | None => {}
            Some(other) => errors.push(format!("{at}: the checker does not know type {other}")),
        }
    }

    fn check_at(&self, value: &Value, schema: &Value, at: &str) -> Vec<String> {
        let mut errors = Vec::new();
        self.walk(value, schema, at, &mut errors);
        errors
    }

    fn object(&self, value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(object) = value.as_object() else {
            errors.push(format!("{at}: {value} is not an object"));
            return;
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for name in &required {
            if !object.contains_key(*name) {
                errors.push(format!("{at}: required property {name} is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, v) in object {
            let here = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name)) {
                None => errors.push(format!("{here}: not a property of the schema")),
                Some(_) if v.is_null() && !required.contains(&name.as_str()) => {}
                Some(s) => self.walk(v, s, &here, errors),
            }
        }
    }
}

fn string_format(s: &str, schema: &Value, at: &str, errors: &mut Vec<String>) {
    let ok = match schema.get("format").and_then(Value::as_str) {
        Some("date-time") => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
        }
        Some("uuid") => uuid::Uuid::parse_str(s).is_ok(),
        // `uri` (SpringErrorSchema.path): Spring sends the request path, a
        // URI reference; anything else is not checked.
        Some("uri") => !s.is_empty() && !s.contains(char::is_whitespace),
        _ => true,
    };
    if !ok {
        errors.push(format!("{at}: {s:?} is not a valid {}", schema["format"]));
    }
}

fn minimum(value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n < min {
            errors.push(format!("{at}: {value} is below the minimum {min}"));
        }
    }
}

/// Asserts that `value` conforms to the reference schema `name`.
#[track_caller]
pub fn assert_conforms(value: &Value, name: &str) {
    let errors = Checker::reference().check_named(value, name);
    assert!(
        errors.is_empty(),
        "not a valid {name}: {errors:#?}\nin {value:#}"
    );
}

#[cfg(test)]
mod checker_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_reference_copy_is_identical_to_the_published_reference() {
        let copy =
            std::fs::read(reference_path()).expect("the reference copy is in the repository");
        let published = published_reference_path();
        match std::fs::read(&published) {
            Ok(bytes) => assert!(
                bytes == copy,
                "{} differs from {}: copy the published reference into the repository",
                reference_path().display(),
                published.display()
            ),
            Err(e) => println!(
                "SKIP comparing with the published reference: {} not readable ({e})",
                published.display()
            ),
        }
    }

    #[test]
    fn the_references_own_examples_conform() {
        let checker = Checker::reference();
        let mut checked = 0;
        for (path, item) in reference()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    for media in response
                        .get("content")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flat_map(|c| c.values())
                    {
                        for (name, example) in media
                            .get("examples")
                            .and_then(Value::as_object)
                            .into_iter()
                            .flatten()
                        {
                            let errors = checker.check(&example["value"], &media["schema"]);
                            assert!(
                                errors.is_empty(),
                                "{method} {path} {status} example {name}: {errors:?}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked >= 5, "only {checked} examples found");
    }

    #[test]
    fn the_checker_finds_each_kind_of_mismatch() {
        let checker = Checker::reference();
        let good = json!({"lastSequenceNr": 5});
        assert!(checker
            .check_named(&good, "LastSequenceNrResponse")
            .is_empty());
        for (bad, name, needle) in [
            (
                json!({}),
                "LastSequenceNrResponse",
                "required property lastSequenceNr",
            ),
            (
                json!({"lastSequenceNr": "5"}),
                "LastSequenceNrResponse",
                "not an integer",
            ),
            (
                json!({"lastSequenceNr": 5, "extra": 1}),
                "LastSequenceNrResponse",
                "not a property",
            ),
            (
                json!({"lastSequenceNr": null}),
                "LastSequenceNrResponse",
                "not nullable",
            ),
            (
                json!({"active": "yes", "expires_at": 1}),
                "consent_status",
                "not a boolean",
            ),
            (
                json!({"id": "x", "exp": 1, "scope": "debt.secured"}),
                "consent_metadata",
                "is not one of",
            ),
            (
                json!({"status": 400, "timestamp": "yesterday", "path": "/p", "error": "e", "requestId": "r"}),
                "SpringErrorSchema",
                "date-time",
            ),
            (
                json!({"clientId": "nope", "consentId": "5826f424-1848-4fc3-bb60-1bfca8f4a701"}),
                "SamtykkeArkivertEventDTO",
                "uuid",
            ),
            (
                json!({"startSequenceNr": 0, "endSequenceNr": 1, "generatedAt": "2024-05-13T14:30:00.123Z", "result": []}),
                "SamtykkeFeedResponseDTO",
                "minimum",
            ),
            (
                json!({"loans": [{"creditorName": "X", "loan": {"type": "chargeCard", "balanceX": 1}}]}),
                "debt_information",
                "anyOf",
            ),
            (json!({"loans": {}}), "debt_information", "not an array"),
        ] {
            let errors = checker.check_named(&bad, name);
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{bad} as {name}: {errors:?}"
            );
        }
        // An optional property may be null (the reference's examples do that);
        // a nullable one too.
        assert!(checker
            .check_named(
                &json!({"loans": [{"creditorName": "X", "loan": null}], "consent": null}),
                "debt_information"
            )
            .is_empty());
    }
}
