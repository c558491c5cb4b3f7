//! Validation of siembridge objects as the API server validates them on create with strict field
//! validation (`kubectl apply --validate=strict`), for the objects that never reach an API server:
//! the manifests of `siembridge run`.
//!
//! The checks, in the API server's order, against the same OpenAPI v3 schema the CRDs carry (built
//! from the Rust types, see [`crate::crdgen`]):
//! 1. unknown fields are errors (the API server's strict decoding), `null` in a field that is not
//!    `nullable` is dropped (the API server prunes it before defaulting);
//! 2. the structural schema: types, `required`, `minimum`/`maximum`, `minLength`/`maxLength`,
//!    `minItems`/`maxItems`, `pattern`, `enum`, `format: date-time`, and the object metadata
//!    (name and namespace syntax);
//! 3. the CEL rules (`x-kubernetes-validations`) on the defaulted object, evaluated by kube's
//!    `cel` feature (the kube-cel crate).
//!
//! The schema walk is written here rather than handed to a JSON Schema crate: OpenAPI's
//! `nullable` and `x-kubernetes-int-or-string` mean something JSON Schema does not, unknown fields
//! need the walk anyway (a CRD schema does not say `additionalProperties: false`), and messages
//! read like the API server's (`spec.batch.maxEvents: Invalid value: 0: should be greater than or
//! equal to 1`). It knows exactly the keywords the generated schemas use; a test fails when a
//! type change brings in another one. The operator does not validate: the API server already did.
//!
//! String values are echoed only in type, enum and name errors: a pattern or length error may be
//! about a URL with credentials in it. The messages follow a v1.36 API server's (compared with
//! `kubectl apply --dry-run=server --validate=strict` on the cases of `tests/standalone.rs`),
//! except unknown fields, which the API server reports as `strict decoding error: unknown field
//! "spec.fromat"`.

use std::fmt;

use kube::core::cel::{compile_schema, CompiledSchema, Validator};
use kube::CustomResourceExt;
use serde_json::Value;

use super::{ConsumerGroup, LogSource, SiemDestination};

/// One rejected field, with its path from the object root (`spec.batch.maxEvents`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.detail)
        } else {
            write!(f, "{}: {}", self.path, self.detail)
        }
    }
}

/// An object the API server would reject, with every reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ObjectInvalid {
    pub kind: String,
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ObjectInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} is invalid: ", self.kind, self.name)?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

struct KindSchema {
    kind: String,
    schema: Value,
    rules: CompiledSchema,
}

/// The schemas of the siembridge kinds, compiled once, and a CEL evaluator.
pub struct SchemaValidator {
    kinds: Vec<KindSchema>,
    cel: Validator,
}

impl Default for SchemaValidator {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("kinds", &self.kinds.iter().map(|k| &k.kind).collect::<Vec<_>>())
            .finish()
    }
}

impl SchemaValidator {
    /// Validators of LogSource, ConsumerGroup and SiemDestination.
    pub fn new() -> Self {
        let crds = [LogSource::crd(), ConsumerGroup::crd(), SiemDestination::crd()];
        let kinds = crds
            .into_iter()
            .filter_map(|crd| {
                let schema = crd
                    .spec
                    .versions
                    .first()?
                    .schema
                    .as_ref()?
                    .open_api_v3_schema
                    .as_ref()?;
                let schema = serde_json::to_value(schema).ok()?;
                Some(KindSchema {
                    kind: crd.spec.names.kind.clone(),
                    rules: compile_schema(&schema),
                    schema,
                })
            })
            .collect();
        SchemaValidator {
            kinds,
            cel: Validator::new(),
        }
    }

    /// Validate `object` (with `kind` set). On success, the object as the API server would keep
    /// it: `null`s of non-nullable fields and `status` (a subresource) dropped. Schema defaults
    /// are left to serde, which knows the same defaults.
    pub fn validate(&self, mut object: Value) -> Result<Value, ObjectInvalid> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let invalid = |errors| ObjectInvalid {
            kind: kind.clone(),
            name: name.clone(),
            errors,
        };
        let Some(k) = self.kinds.iter().find(|k| k.kind == kind) else {
            return Err(invalid(vec![FieldError {
                path: "kind".into(),
                detail: format!("Unsupported value: {kind:?}"),
            }]));
        };
        let mut errors = Vec::new();
        if let Some(map) = object.as_object_mut() {
            // The status subresource: the API server ignores it on create.
            map.remove("status");
        }
        let mut schema = k.schema.clone();
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.remove("status");
            // The envelope is the API server's own: type fields (already matched) and metadata,
            // checked below.
            props.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
            props.insert("kind".into(), serde_json::json!({"type": "string"}));
            props.insert(
                "metadata".into(),
                serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        }
        check(&schema, &mut object, "", &mut errors);
        if let Some(meta) = object.get("metadata") {
            check_metadata(meta, &mut errors);
        }
        if errors.is_empty() {
            if let Err(failures) = self.cel.validate_compiled(&k.rules, &object, None) {
                for f in failures.iter() {
                    errors.push(FieldError {
                        path: f.field_path.clone(),
                        detail: format!("Invalid value: {}", f.message),
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(object)
        } else {
            Err(invalid(errors))
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The value as shown in a message: numbers, booleans and short strings; composite values by type.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() <= 64 => format!("{s:?}"),
        Value::String(_) => "\"string\"".into(),
        Value::Array(_) => "\"array\"".into(),
        Value::Object(_) => "\"object\"".into(),
        other => other.to_string(),
    }
}

fn type_matches(expected: &str, value: &Value, int_or_string: bool) -> bool {
    let actual = type_name(value);
    if int_or_string {
        return matches!(actual, "integer" | "string");
    }
    actual == expected || (expected == "number" && actual == "integer")
}

/// Check `value` against the structural schema node `schema`; drops `null`s of non-nullable
/// fields from objects on the way.
fn check(schema: &Value, value: &mut Value, path: &str, errors: &mut Vec<FieldError>) {
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(FieldError {
                path: path.into(),
                detail: "Invalid value: null: must not be null".into(),
            });
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        if !type_matches(expected, value, int_or_string) {
            errors.push(FieldError {
                path: path.into(),
                detail: format!("Invalid value: {}: must be of type {expected}", shown(value)),
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            errors.push(FieldError {
                path: path.into(),
                detail: format!(
                    "Unsupported value: {}: supported values: {}",
                    shown(value),
                    list.join(", ")
                ),
            });
        }
    }
    match value {
        Value::Object(map) => check_object(schema, map, path, errors),
        Value::Array(items) => {
            check_count(schema, items.len(), "items", path, errors);
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::String(s) => check_string(schema, s, path, errors),
        Value::Number(n) => check_number(schema, n, path, errors),
        Value::Bool(_) | Value::Null => {}
    }
}

fn check_object(schema: &Value, map: &mut serde_json::Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    let empty = serde_json::Map::new();
    let properties = schema.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    // The API server prunes nulls of fields that are not nullable before defaulting.
    map.retain(|key, v| {
        let field_schema = properties.get(key).or(additional);
        !(v.is_null() && field_schema.is_some_and(|s| s.get("nullable") != Some(&Value::Bool(true))))
    });
    for (key, v) in map.iter_mut() {
        let here = join(path, key);
        match (properties.get(key), additional) {
            (Some(s), _) | (None, Some(s)) => check(s, v, &here, errors),
            (None, None) if preserve => {}
            (None, None) => errors.push(FieldError {
                path: here,
                detail: match closest(key, properties.keys()) {
                    Some(near) => format!("unknown field (did you mean {near:?}?)"),
                    None => "unknown field".into(),
                },
            }),
        }
    }
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = required.as_str() {
            if !map.contains_key(name) {
                errors.push(FieldError {
                    path: join(path, name),
                    detail: "Required value".into(),
                });
            }
        }
    }
}

fn check_count(schema: &Value, n: usize, unit: &str, path: &str, errors: &mut Vec<FieldError>) {
    let (min, max) = match unit {
        "items" => ("minItems", "maxItems"),
        _ => ("minLength", "maxLength"),
    };
    let n = n as u64;
    if let Some(lo) = schema.get(min).and_then(Value::as_u64) {
        if n < lo {
            errors.push(FieldError {
                path: path.into(),
                detail: format!("Invalid value: {n} {unit}: should have at least {lo} {unit}"),
            });
        }
    }
    if let Some(hi) = schema.get(max).and_then(Value::as_u64) {
        if n > hi {
            errors.push(FieldError {
                path: path.into(),
                detail: format!("Too long: {n} {unit}: may have at most {hi} {unit}"),
            });
        }
    }
}

fn check_string(schema: &Value, s: &str, path: &str, errors: &mut Vec<FieldError>) {
    check_count(schema, s.chars().count(), "characters", path, errors);
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        // The API server's patterns are RE2, which the regex crate implements.
        if let Ok(re) = regex::Regex::new(pattern) {
            if !re.is_match(s) {
                errors.push(FieldError {
                    path: path.into(),
                    detail: format!("Invalid value: should match '{pattern}'"),
                });
            }
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && chrono::DateTime::parse_from_rfc3339(s).is_err()
    {
        errors.push(FieldError {
            path: path.into(),
            detail: format!(
                "Invalid value: {}: must be an RFC 3339 date-time",
                shown(&Value::from(s))
            ),
        });
    }
}

fn check_number(schema: &Value, n: &serde_json::Number, path: &str, errors: &mut Vec<FieldError>) {
    let Some(x) = n.as_f64() else { return };
    let exclusive = |k: &str| schema.get(k) == Some(&Value::Bool(true));
    if let Some(lo) = schema.get("minimum").and_then(Value::as_f64) {
        let below = if exclusive("exclusiveMinimum") { x <= lo } else { x < lo };
        if below {
            let than = if exclusive("exclusiveMinimum") {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errors.push(FieldError {
                path: path.into(),
                detail: format!("Invalid value: {n}: should be {than} {}", number(lo)),
            });
        }
    }
    if let Some(hi) = schema.get("maximum").and_then(Value::as_f64) {
        let above = if exclusive("exclusiveMaximum") { x >= hi } else { x > hi };
        if above {
            let than = if exclusive("exclusiveMaximum") {
                "less than"
            } else {
                "less than or equal to"
            };
            errors.push(FieldError {
                path: path.into(),
                detail: format!("Invalid value: {n}: should be {than} {}", number(hi)),
            });
        }
    }
}

/// `1` rather than `1.0` for the whole bounds the schemas hold.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// Metadata as the API server checks it for a namespaced object: a name (DNS subdomain), a
/// namespace (DNS label), string labels and annotations, and no field ObjectMeta does not have.
fn check_metadata(meta: &Value, errors: &mut Vec<FieldError>) {
    const FIELDS: &[&str] = &[
        "name",
        "namespace",
        "labels",
        "annotations",
        "generateName",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "finalizers",
        "ownerReferences",
        "managedFields",
        "selfLink",
    ];
    let Some(map) = meta.as_object() else { return };
    for key in map.keys() {
        if !FIELDS.contains(&key.as_str()) {
            errors.push(FieldError {
                path: format!("metadata.{key}"),
                detail: match closest(key, FIELDS.iter()) {
                    Some(near) => format!("unknown field (did you mean {near:?}?)"),
                    None => "unknown field".into(),
                },
            });
        }
    }
    match map.get("name") {
        None | Some(Value::Null) => errors.push(FieldError {
            path: "metadata.name".into(),
            detail: "Required value: name is required".into(),
        }),
        Some(Value::String(name)) => {
            if let Some(why) = dns_subdomain_error(name) {
                errors.push(FieldError {
                    path: "metadata.name".into(),
                    detail: format!("Invalid value: {}: {why}", shown(&Value::from(name.as_str()))),
                });
            }
        }
        Some(other) => errors.push(FieldError {
            path: "metadata.name".into(),
            detail: format!("Invalid value: {}: must be of type string", shown(other)),
        }),
    }
    match map.get("namespace") {
        None | Some(Value::Null) => {}
        Some(Value::String(ns)) => {
            let label = ns.len() <= 63 && !ns.contains('.') && dns_subdomain_error(ns).is_none();
            if !label {
                errors.push(FieldError {
                    path: "metadata.namespace".into(),
                    detail: format!(
                        "Invalid value: {}: a lowercase RFC 1123 label must consist of lower case alphanumeric \
                         characters or '-', and must start and end with an alphanumeric character",
                        shown(&Value::from(ns.as_str()))
                    ),
                });
            }
        }
        Some(other) => errors.push(FieldError {
            path: "metadata.namespace".into(),
            detail: format!("Invalid value: {}: must be of type string", shown(other)),
        }),
    }
    for field in ["labels", "annotations"] {
        match map.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(entries)) => {
                for (k, v) in entries {
                    if !v.is_string() {
                        errors.push(FieldError {
                            path: format!("metadata.{field}.{k}"),
                            detail: format!("Invalid value: {}: must be of type string", shown(v)),
                        });
                    }
                }
            }
            Some(other) => errors.push(FieldError {
                path: format!("metadata.{field}"),
                detail: format!("Invalid value: {}: must be of type object", shown(other)),
            }),
        }
    }
}

/// Why `name` is not a lowercase RFC 1123 subdomain, as the API server says it.
fn dns_subdomain_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.split('.').all(label_ok) {
        None
    } else {
        Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character"
                .into(),
        )
    }
}

/// The known name closest to a misspelt one: case aside, at most two edits, or one in four
/// characters for long names (`excludeCategory` for `excludeCategories`).
fn closest<'a, S: AsRef<str> + 'a>(unknown: &str, known: impl Iterator<Item = &'a S>) -> Option<String> {
    let lower = unknown.to_ascii_lowercase();
    let allowed = (unknown.chars().count() / 4).max(2);
    known
        .map(|k| k.as_ref())
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = here;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every keyword of a schema node under `node`, with the node's path.
    fn keywords(node: &Value, path: &str, out: &mut Vec<(String, String)>) {
        let Some(map) = node.as_object() else { return };
        for (k, v) in map {
            out.push((path.to_string(), k.clone()));
            match k.as_str() {
                "properties" => {
                    for (name, sub) in v.as_object().into_iter().flatten() {
                        keywords(sub, &join(path, name), out);
                    }
                }
                "items" | "additionalProperties" => keywords(v, &format!("{path}<{k}>"), out),
                _ => {}
            }
        }
    }

    /// The walk above implements these keywords and no others; a type change that brings in
    /// another (`oneOf`, `x-kubernetes-list-type`, ...) must teach it here first.
    #[test]
    fn the_generated_schemas_use_only_keywords_the_walk_knows() {
        const KNOWN: &[&str] = &[
            "type",
            "description",
            "title",
            "properties",
            "required",
            "items",
            "additionalProperties",
            "nullable",
            "default",
            "format",
            "minimum",
            "maximum",
            "minLength",
            "maxLength",
            "minItems",
            "maxItems",
            "pattern",
            "enum",
            "x-kubernetes-validations",
            "x-kubernetes-int-or-string",
            // Merge semantics of server-side apply (status.conditions keyed by type): they do not
            // change which values are valid in a manifest.
            "x-kubernetes-list-type",
            "x-kubernetes-list-map-keys",
        ];
        let v = SchemaValidator::new();
        assert_eq!(v.kinds.len(), 3);
        for k in &v.kinds {
            let mut found = Vec::new();
            keywords(&k.schema, "", &mut found);
            let unknown: Vec<_> = found.iter().filter(|(_, kw)| !KNOWN.contains(&kw.as_str())).collect();
            assert!(
                unknown.is_empty(),
                "{}: keywords the validator ignores: {unknown:?}",
                k.kind
            );
        }
    }

    fn errors_of(yaml: &str) -> Vec<String> {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        match SchemaValidator::new().validate(value) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_valid_object_passes_and_nulls_of_plain_fields_are_dropped() {
        let value: Value = serde_yaml::from_str(
            "apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {name: d}\nspec:\n  stdout: {}\n  batch: null\nstatus: {anything: 1}\n",
        )
        .unwrap();
        let out = SchemaValidator::new().validate(value).unwrap();
        assert!(out.get("status").is_none());
        assert!(out["spec"].get("batch").is_none(), "{out}");
    }

    #[test]
    fn messages_name_the_field_path() {
        let errs = errors_of(
            "apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {name: d}\nspec:\n  stdout: {}\n  fromat: raw\n  batch: {maxEvents: 0}\n",
        );
        assert!(
            errs.contains(&"spec.fromat: unknown field (did you mean \"format\"?)".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.batch.maxEvents: Invalid value: 0: should be greater than or equal to")),
            "{errs:?}"
        );
    }

    #[test]
    fn metadata_is_checked_like_the_api_server_does() {
        let errs = errors_of("apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {name: Bad_Name, lables: {}}\nspec: {stdout: {}}\n");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("metadata.name: Invalid value: \"Bad_Name\"")),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"metadata.lables: unknown field (did you mean \"labels\"?)".to_string()),
            "{errs:?}"
        );
        let errs =
            errors_of("apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {}\nspec: {stdout: {}}\n");
        assert!(
            errs.iter().any(|e| e.starts_with("metadata.name: Required value")),
            "{errs:?}"
        );
    }

    #[test]
    fn cel_rules_are_evaluated() {
        let errs = errors_of(
            "apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {name: d}\nspec: {stdout: {}, file: {path: /tmp/x}}\n",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec: Invalid value: set exactly one of"),
            "{errs:?}"
        );
    }

    #[test]
    fn near_names_are_suggested() {
        let known = ["format", "batch", "retry"];
        assert_eq!(closest("fromat", known.iter()), Some("format".into()));
        assert_eq!(closest("Batch", known.iter()), Some("batch".into()));
        assert_eq!(closest("transport", known.iter()), None);
        let filter = ["includeCategories", "excludeCategories"];
        assert_eq!(
            closest("excludeCategory", filter.iter()),
            Some("excludeCategories".into())
        );
    }
}
