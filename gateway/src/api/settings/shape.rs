//! The shape of a settings value and the refusal Meilisearch's deserializer (deserr) gives
//! for a value out of shape, word for word: "Invalid value type at `.typoTolerance.enabled`:
//! expected a boolean, but found a string: `\"yes\"`". The first fault in the body's order
//! is the one named, as deserr stops at its first error.

use crate::api::error::json_kind;
use serde_json::{Map, Value};

/// What a value must be.
#[derive(Clone, Copy)]
pub enum Shape {
    /// Anything (a REST embedder's request template).
    Any,
    Bool,
    /// A positive integer (`u64`, `usize`).
    Count,
    /// A positive integer other than 0 (`NonZeroUsize`).
    NonZeroCount,
    /// A positive integer up to 255 (`u8`).
    Byte,
    /// Any number (`f32`).
    Number,
    /// A number from 0 to 1 (`semanticRatio`: the name is in the error).
    Ratio(&'static str),
    Text,
    /// One of these strings (an enum).
    OneOf(&'static [&'static str]),
    /// A string a rule reads (a ranking rule); the rule's error is the message.
    TextWith(fn(&str) -> Result<(), String>),
    /// An array of these.
    List(&'static Shape),
    /// An object with any keys, each value of this shape.
    Map(&'static Shape),
    /// An object with these fields.
    Object(&'static Object),
    /// A string, or an object with these fields (a filterable attributes rule).
    TextOr(&'static Object),
}

/// An object's fields, in the order Meilisearch lists them when it names the fields it
/// expects.
pub struct Object {
    pub fields: &'static [Field],
    /// Other fields are taken too (an embedder's fragment).
    pub open: bool,
    /// A check of the whole object once each field is in shape (min word sizes for typos,
    /// an embedder's distribution); its error is the message of an "Invalid value".
    pub then: Option<WholeCheck>,
}

/// A check of a whole object; its error is the message.
pub type WholeCheck = fn(&Map<String, Value>) -> Result<(), String>;

pub struct Field {
    pub name: &'static str,
    pub shape: Shape,
    /// `null` is taken (reset), as for a `Setting<T>`.
    pub nullable: bool,
    pub required: bool,
}

/// A field that may be absent or `null` (a `Setting<T>`).
pub const fn setting(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        shape,
        nullable: true,
        required: false,
    }
}

/// A field that may be absent but not `null` (an `Option<T>` without a default for `null`).
pub const fn optional(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        shape,
        nullable: false,
        required: false,
    }
}

/// A field that must be there and not `null`.
pub const fn required(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        shape,
        nullable: false,
        required: true,
    }
}

/// Where a value sits in the body, as deserr writes it: `.typoTolerance.enabled`,
/// `.rankingRules[2]`, or nothing for the body itself.
#[derive(Default, Clone)]
pub struct Location(String);

impl Location {
    pub fn new(at: impl Into<String>) -> Self {
        Self(at.into())
    }

    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}.{key}", self.0))
    }

    fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// " at `.x`", or nothing for the body itself.
    fn at(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!(" at `{}`", self.0)
        }
    }

    /// " inside `.x`", or nothing for the body itself.
    fn inside(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!(" inside `{}`", self.0)
        }
    }
}

/// "Invalid value type at `.x`: expected a string, but found a positive integer: `1`".
pub fn wrong_type(at: &Location, expected: &str, value: &Value) -> String {
    let found = match value {
        Value::Null => "null".to_owned(),
        other => format!("{}: `{other}`", json_kind(other)),
    };
    format!(
        "Invalid value type{}: expected {expected}, but found {found}",
        at.at()
    )
}

/// "Invalid value at `.x`: {message}".
pub fn invalid_value(at: &Location, message: &str) -> String {
    format!("Invalid value{}: {message}", at.at())
}

/// "Unknown field `x` inside `.y`: expected one of `a`, `b`".
pub fn unknown_field(at: &Location, name: &str, expected: &[&str]) -> String {
    format!(
        "Unknown field `{name}`{}: expected one of {}",
        at.inside(),
        quoted(expected)
    )
}

/// "`a`, `b`, `c`".
pub fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `value` against `shape`; the error is Meilisearch's message for the first fault.
pub fn check(value: &Value, shape: Shape, at: &Location) -> Result<(), String> {
    match shape {
        Shape::Any => Ok(()),
        Shape::Bool if value.is_boolean() => Ok(()),
        Shape::Bool => Err(wrong_type(at, "a boolean", value)),
        Shape::Count if value.is_u64() => Ok(()),
        Shape::NonZeroCount if value.as_u64() == Some(0) => Err(invalid_value(
            at,
            "a non-zero integer value lower than `18446744073709551615` was expected, but found a zero",
        )),
        Shape::NonZeroCount if value.is_u64() => Ok(()),
        Shape::Byte => match value.as_u64() {
            Some(n) if n <= 255 => Ok(()),
            Some(n) => Err(invalid_value(
                at,
                &format!(
                    "value: `{n}` is too large to be deserialized, maximum value authorized is `255`"
                ),
            )),
            None => Err(wrong_type(at, "a positive integer", value)),
        },
        Shape::Count | Shape::NonZeroCount => Err(wrong_type(at, "a positive integer", value)),
        Shape::Number if value.is_number() => Ok(()),
        Shape::Number => Err(wrong_type(at, "a number", value)),
        Shape::Ratio(name) => match value.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => Ok(()),
            Some(_) => Err(invalid_value(
                at,
                &format!(
                    "the value of `{name}` is invalid, expected a float between `0.0` and `1.0`."
                ),
            )),
            None => Err(wrong_type(at, "a number", value)),
        },
        Shape::Text if value.is_string() => Ok(()),
        Shape::Text => Err(wrong_type(at, "a string", value)),
        Shape::OneOf(names) => match value.as_str() {
            Some(name) if names.contains(&name) => Ok(()),
            Some(name) => Err(format!(
                "Unknown value `{name}`{}: expected one of {}",
                at.at(),
                quoted(names)
            )),
            None => Err(wrong_type(at, "a string", value)),
        },
        Shape::TextWith(rule) => match value.as_str() {
            Some(text) => rule(text).map_err(|message| invalid_value(at, &message)),
            None => Err(wrong_type(at, "a string", value)),
        },
        Shape::List(item) => match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| check(v, *item, &at.index(i))),
            other => Err(wrong_type(at, "an array", other)),
        },
        Shape::Map(item) => match value {
            Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                if v.is_null() && is_nullable_map(item) {
                    return Ok(());
                }
                check(v, *item, &at.key(k))
            }),
            other => Err(wrong_type(at, "an object", other)),
        },
        Shape::Object(object) => match value {
            Value::Object(map) => check_object(map, object, at),
            other => Err(wrong_type(at, "an object", other)),
        },
        Shape::TextOr(object) => match value {
            Value::String(_) => Ok(()),
            Value::Object(map) => check_object(map, object, at),
            other => Err(wrong_type(at, "a string", other)),
        },
    }
}

/// Whether a map's `null` values are taken: maps of objects in Meilisearch's settings are
/// maps of `Setting<…>` (an embedder or a fragment removed by `null`).
fn is_nullable_map(item: &Shape) -> bool {
    matches!(item, Shape::Object(_) | Shape::Map(_))
}

fn check_object(map: &Map<String, Value>, object: &Object, at: &Location) -> Result<(), String> {
    for (key, value) in map {
        let Some(field) = object.fields.iter().find(|f| f.name == key) else {
            if object.open {
                continue;
            }
            let names: Vec<&str> = object.fields.iter().map(|f| f.name).collect();
            return Err(unknown_field(at, key, &names));
        };
        if value.is_null() && field.nullable {
            continue;
        }
        check(value, field.shape, &at.key(key))?;
    }
    if let Some(missing) = object
        .fields
        .iter()
        .find(|f| f.required && !map.contains_key(f.name))
    {
        return Err(format!("Missing field `{}`{}", missing.name, at.inside()));
    }
    match object.then {
        Some(then) => then(map).map_err(|message| invalid_value(at, &message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POINT: Object = Object {
        fields: &[required("x", Shape::Count), setting("label", Shape::Text)],
        open: false,
        then: None,
    };

    fn at(path: &str) -> Location {
        Location::new(path)
    }

    #[test]
    fn faults_are_named_as_deserr_names_them() {
        let point = Shape::Object(&POINT);
        assert_eq!(
            check(&json!({"x": -1}), point, &at(".p")).unwrap_err(),
            "Invalid value type at `.p.x`: expected a positive integer, but found a negative integer: `-1`"
        );
        assert_eq!(
            check(&json!({"y": 1, "x": "a"}), point, &at(".p")).unwrap_err(),
            "Unknown field `y` inside `.p`: expected one of `x`, `label`"
        );
        assert_eq!(
            check(&json!({"label": null}), point, &at("")).unwrap_err(),
            "Missing field `x`"
        );
        assert_eq!(
            check(&json!([1, null]), Shape::List(&Shape::Count), &at("")).unwrap_err(),
            "Invalid value type at `[1]`: expected a positive integer, but found null"
        );
        assert_eq!(
            check(&json!("up"), Shape::OneOf(&["alpha", "count"]), &at(".s")).unwrap_err(),
            "Unknown value `up` at `.s`: expected one of `alpha`, `count`"
        );
        assert_eq!(
            check(&json!(300), Shape::Byte, &at(".b")).unwrap_err(),
            "Invalid value at `.b`: value: `300` is too large to be deserialized, maximum value authorized is `255`"
        );
        assert_eq!(
            check(&json!(0), Shape::NonZeroCount, &at(".n")).unwrap_err(),
            "Invalid value at `.n`: a non-zero integer value lower than `18446744073709551615` was expected, but found a zero"
        );
        assert!(check(&json!({"x": 1, "label": null}), point, &at("")).is_ok());
        assert!(
            check(
                &json!({"a": null}),
                Shape::Map(&Shape::Object(&POINT)),
                &at("")
            )
            .is_ok()
        );
        assert!(check(&json!("a"), Shape::TextOr(&POINT), &at("")).is_ok());
    }
}
