//! The `embedders` setting: each embedder's shape, the experimental features it needs, and
//! the rules Meilisearch 1.50 checks before it enqueues the change (which fields a source
//! takes and needs, `dimensions`, the URL, the REST templates, OpenAI's models). What
//! depends on the embedder already stored (a change without `source`) is left to the nodes,
//! as Meilisearch leaves it to the task.

use super::shape::{Location, Object, Shape, quoted, setting};
use crate::api::error::MeiliError;
use serde_json::{Map, Value};

/// `embedders`: a map of embedder names to an embedder (or `null`, removing it).
pub static EMBEDDERS: Shape = Shape::Map(&Shape::Object(&EMBEDDER));

const SOURCES: &[&str] = &[
    "openAi",
    "huggingFace",
    "ollama",
    "userProvided",
    "rest",
    "composite",
];

/// `indexingFragments` / `searchFragments`: named fragments, each with its `value`.
const FRAGMENTS: Shape = Shape::Map(&Shape::Object(&Object {
    fields: &[super::shape::required("value", Shape::Any)],
    open: true,
    then: None,
}));

const DISTRIBUTION: Object = Object {
    fields: &[
        super::shape::required("mean", Shape::Number),
        super::shape::required("sigma", Shape::Number),
    ],
    open: false,
    then: Some(distribution),
};

/// An embedder's fields, in the order Meilisearch names them.
static EMBEDDER: Object = Object {
    fields: &[
        setting("source", Shape::OneOf(SOURCES)),
        setting("model", Shape::Text),
        setting("revision", Shape::Text),
        setting(
            "pooling",
            Shape::OneOf(&["useModel", "forceCls", "forceMean"]),
        ),
        setting("apiKey", Shape::Text),
        setting("dimensions", Shape::Count),
        setting("binaryQuantized", Shape::Bool),
        setting("documentTemplate", Shape::Text),
        setting("documentTemplateMaxBytes", Shape::Count),
        setting("url", Shape::Text),
        setting("indexingFragments", FRAGMENTS),
        setting("searchFragments", FRAGMENTS),
        setting("request", Shape::Any),
        setting("response", Shape::Any),
        setting("headers", Shape::Map(&Shape::Text)),
        setting("searchEmbedder", Shape::Object(&NESTED)),
        setting("indexingEmbedder", Shape::Object(&NESTED)),
        setting("distribution", Shape::Object(&DISTRIBUTION)),
    ],
    open: false,
    then: None,
};

/// A composite embedder's search or indexing embedder (its own order of fields).
static NESTED: Object = Object {
    fields: &[
        setting("source", Shape::OneOf(SOURCES)),
        setting("model", Shape::Text),
        setting("revision", Shape::Text),
        setting(
            "pooling",
            Shape::OneOf(&["useModel", "forceCls", "forceMean"]),
        ),
        setting("apiKey", Shape::Text),
        setting("dimensions", Shape::Count),
        setting("documentTemplate", Shape::Text),
        setting("documentTemplateMaxBytes", Shape::Count),
        setting("url", Shape::Text),
        setting("indexingFragments", FRAGMENTS),
        setting("searchFragments", FRAGMENTS),
        setting("request", Shape::Any),
        setting("response", Shape::Any),
        setting("headers", Shape::Map(&Shape::Text)),
        setting("distribution", Shape::Object(&DISTRIBUTION)),
        setting("binaryQuantized", Shape::Bool),
        setting("searchEmbedder", Shape::Object(&NESTED)),
        setting("indexingEmbedder", Shape::Object(&NESTED)),
    ],
    open: false,
    then: None,
};

fn distribution(distribution: &Map<String, Value>) -> Result<(), String> {
    // Meilisearch reads both as `f32` and prints them so.
    let value = |name| {
        distribution
            .get(name)
            .and_then(Value::as_f64)
            .unwrap_or(0.5) as f32
    };
    let (mean, sigma) = (value("mean"), value("sigma"));
    if !(0.0..=1.0).contains(&mean) {
        Err(format!(
            "the distribution mean must be in the range [0, 1], got {mean}"
        ))
    } else if !(sigma > 0.0 && sigma <= 1.0) {
        Err(format!(
            "the distribution sigma must be in the range ]0, 1], got {sigma}"
        ))
    } else {
        Ok(())
    }
}

/// The experimental features the embedders need: a composite source, fragments.
pub fn features(
    embedders: &Map<String, Value>,
    enabled: &dyn Fn(&str) -> bool,
) -> Result<(), MeiliError> {
    for embedder in embedders.values().filter_map(Value::as_object) {
        if embedder.get("source").and_then(Value::as_str) == Some("composite")
            && !enabled("compositeEmbedders")
        {
            return Err(MeiliError::invalid(
                "feature_not_enabled",
                "using `\"composite\"` as source requires enabling the `composite embedders` experimental feature. See https://github.com/orgs/meilisearch/discussions/816",
            ));
        }
        for fragments in ["indexingFragments", "searchFragments"] {
            if embedder.get(fragments).is_some_and(|f| !f.is_null()) && !enabled("multimodal") {
                return Err(MeiliError::invalid(
                    "feature_not_enabled",
                    format!(
                        "setting `{fragments}` requires enabling the `multimodal` experimental feature. See https://github.com/orgs/meilisearch/discussions/846"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Each embedder's rules, in the order of their names (located as `.embedders.x`, on the
/// sub-route too).
pub fn rules(embedders: &Map<String, Value>) -> Result<(), MeiliError> {
    let mut names: Vec<&String> = embedders.keys().collect();
    names.sort();
    for name in names {
        if let Some(embedder) = embedders[name].as_object() {
            let at = Location::new(".embedders").key(name);
            embedder_rules(embedder, at.as_str())?;
        }
    }
    Ok(())
}

fn embedder_rules(embedder: &Map<String, Value>, at: &str) -> Result<(), MeiliError> {
    if embedder.get("dimensions").and_then(Value::as_u64) == Some(0) {
        return refuse(format!("`{at}.dimensions`: `dimensions` cannot be zero"));
    }
    // A composite embedder's documents are read by its indexing embedder's template.
    let template = match embedder.get("indexingEmbedder").and_then(Value::as_object) {
        Some(indexing) if is_composite(embedder) => indexing.get("documentTemplate"),
        _ => embedder.get("documentTemplate"),
    };
    if let Some(template) = template.and_then(Value::as_str)
        && let Err(e) = TEMPLATES.parse(template)
    {
        return refuse(format!(
            "`{at}.documentTemplate`: Invalid template: user error: cannot parse template: {e}."
        ));
    }
    if let Some(url) = embedder.get("url").and_then(Value::as_str)
        && let Err(e) = url::Url::parse(url)
    {
        return refuse(format!("`{at}.url`: could not parse `{url}`: {e}"));
    }
    rest_templates(embedder)?;
    let Some(source) = embedder.get("source").and_then(Value::as_str) else {
        // Which fields fit depends on the embedder already stored: the task checks them.
        return Ok(());
    };
    let fields = fields_of(source);
    for (field, sources) in AVAILABILITY {
        let given = embedder.get(*field);
        if given.is_some() && !fields.contains(field) {
            return refuse(format!(
                "`{at}`: Field `{field}` unavailable for source `{source}`.\n  - note: `{field}` is available for sources: {}\n  - note: available fields for source `{source}`: {}",
                quoted(sources),
                quoted(&fields)
            ));
        }
        if given.is_none_or(Value::is_null) && mandatory(source).contains(field) {
            return refuse(missing(at, field, source));
        }
        if let (Some(role), Some(Value::Object(nested))) = (Role::of(field), given) {
            nested_rules(nested, role, at)?;
        }
    }
    if source == "openAi" {
        open_ai(embedder, at)?;
    }
    Ok(())
}

fn refuse(message: String) -> Result<(), MeiliError> {
    Err(MeiliError::invalid("invalid_settings_embedders", message))
}

fn missing(at: &str, field: &str, source: &str) -> String {
    format!("`{at}`: Missing field `{field}` (note: this field is mandatory for source `{source}`)")
}

fn is_composite(embedder: &Map<String, Value>) -> bool {
    embedder.get("source").and_then(Value::as_str) == Some("composite")
}

/// Meilisearch's parser of document templates: Liquid with its standard library.
static TEMPLATES: std::sync::LazyLock<liquid::Parser> = std::sync::LazyLock::new(|| {
    liquid::ParserBuilder::with_stdlib()
        .build()
        .expect("the standard library of Liquid builds")
});

/// The role of a composite embedder's nested embedder.
#[derive(Clone, Copy)]
enum Role {
    Search,
    Indexing,
}

impl Role {
    fn of(field: &str) -> Option<Self> {
        match field {
            "searchEmbedder" => Some(Self::Search),
            "indexingEmbedder" => Some(Self::Indexing),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Indexing => "indexing",
        }
    }

    /// What a source's embedder takes in this role: neither the distribution nor binary
    /// quantization (the composite's own), no document template to search with, and only
    /// the fragments of its role.
    fn fields_of(self, source: &str) -> Vec<&'static str> {
        let left_out: &[&str] = match self {
            Self::Search => &[
                "documentTemplate",
                "documentTemplateMaxBytes",
                "indexingFragments",
            ],
            Self::Indexing => &["searchFragments"],
        };
        fields_of(source)
            .into_iter()
            .filter(|f| !["distribution", "binaryQuantized"].contains(f) && !left_out.contains(f))
            .collect()
    }
}

/// A composite embedder's search or indexing embedder: a source of its own (one that
/// computes embeddings), and only the fields that source takes in that role. A missing
/// mandatory field is named at the composite embedder, as Meilisearch names it.
fn nested_rules(
    nested: &Map<String, Value>,
    role: Role,
    composite_at: &str,
) -> Result<(), MeiliError> {
    let at = format!("{composite_at}.{}Embedder", role.name());
    let Some(source) = nested.get("source").and_then(Value::as_str) else {
        return refuse(format!(
            "`{at}`: Missing field `source`.\n  - note: this field is mandatory for nested embedders"
        ));
    };
    if matches!(source, "userProvided" | "composite") {
        return refuse(format!(
            "`{at}.source`: Source `{source}` is not available in a nested embedder"
        ));
    }
    let role_name = role.name();
    let fields = role.fields_of(source);
    let top_level = fields_of(source);
    for (field, sources) in AVAILABILITY {
        let given = nested.get(*field);
        if given.is_some() && !fields.contains(field) {
            let fields = quoted(&fields);
            return refuse(if top_level.contains(field) {
                format!(
                    "`{at}`: Field `{field}` unavailable for source `{source}` for the {role_name} embedder.\n  - note: available fields for source `{source}` for the {role_name} embedder: {fields}\n  - note: `{field}` is available when source `{source}` is not for the {role_name} embedder"
                )
            } else {
                format!(
                    "`{at}`: Field `{field}` unavailable for source `{source}` for the {role_name} embedder.\n  - note: `{field}` is available for sources: {}\n  - note: available fields for source `{source}` for the {role_name} embedder: {fields}",
                    quoted(sources)
                )
            });
        }
        if given.is_none_or(Value::is_null) && mandatory(source).contains(field) {
            return refuse(missing(composite_at, field, source));
        }
    }
    Ok(())
}

/// Each field with the sources that take it, in the order Meilisearch checks and lists
/// them.
const AVAILABILITY: &[(&str, &[&str])] = &[
    ("source", SOURCES),
    ("model", &["openAi", "huggingFace", "ollama"]),
    ("revision", &["huggingFace"]),
    ("pooling", &["huggingFace"]),
    ("apiKey", &["openAi", "ollama", "rest"]),
    ("dimensions", &["openAi", "ollama", "userProvided", "rest"]),
    (
        "documentTemplate",
        &["openAi", "huggingFace", "ollama", "rest"],
    ),
    (
        "documentTemplateMaxBytes",
        &["openAi", "huggingFace", "ollama", "rest"],
    ),
    ("url", &["openAi", "ollama", "rest"]),
    ("indexingFragments", &["rest"]),
    ("searchFragments", &["rest"]),
    ("request", &["rest"]),
    ("response", &["rest"]),
    ("headers", &["rest"]),
    ("searchEmbedder", &["composite"]),
    ("indexingEmbedder", &["composite"]),
    ("distribution", SOURCES),
    ("binaryQuantized", SOURCES),
];

/// The fields `source` takes, in Meilisearch's order.
fn fields_of(source: &str) -> Vec<&'static str> {
    AVAILABILITY
        .iter()
        .filter(|(_, sources)| sources.contains(&source))
        .map(|(field, _)| *field)
        .collect()
}

fn mandatory(source: &str) -> &'static [&'static str] {
    match source {
        "userProvided" => &["dimensions"],
        "ollama" => &["model"],
        "rest" => &["url", "request", "response"],
        "composite" => &["searchEmbedder", "indexingEmbedder"],
        _ => &[],
    }
}

/// OpenAI's models and the dimensions each may be asked for.
fn open_ai(embedder: &Map<String, Value>, at: &str) -> Result<(), MeiliError> {
    const MODELS: [(&str, u64, bool); 3] = [
        ("text-embedding-ada-002", 1536, false),
        ("text-embedding-3-small", 1536, true),
        ("text-embedding-3-large", 3072, true),
    ];
    let model = embedder
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("text-embedding-3-small");
    let Some((model, native, overridable)) = MODELS.into_iter().find(|(m, ..)| *m == model) else {
        return refuse(format!(
            "`{at}.model`: Invalid model `{model}` for OpenAI. Supported models: [\"text-embedding-ada-002\", \"text-embedding-3-small\", \"text-embedding-3-large\"]"
        ));
    };
    match embedder.get("dimensions").and_then(Value::as_u64) {
        Some(d) if !overridable && d != native => refuse(format!(
            "`{at}.dimensions`: Model `{model}` does not support overriding its native dimensions of {native}. Found {d}"
        )),
        Some(d) if d > native => refuse(format!(
            "`{at}.dimensions`: Model `{model}` does not support overriding its dimensions to a value higher than {native}. Found {d}"
        )),
        _ => Ok(()),
    }
}

/// A REST embedder's fragments are Liquid templates; its `request` holds the placeholder
/// once (`{{fragment}}` when it has fragments, else `{{text}}`), and its `response` holds
/// `{{embedding}}` once; a request that repeats texts (`"{{..}}"` after the text in an
/// array) needs a response that repeats embeddings.
fn rest_templates(embedder: &Map<String, Value>) -> Result<(), MeiliError> {
    let error = |message: String| {
        Err(MeiliError::invalid(
            "vector_embedding_error",
            format!("Error while generating embeddings: user error: {message}"),
        ))
    };
    let fragments = ["indexingFragments", "searchFragments"]
        .iter()
        .filter_map(|f| embedder.get(*f).and_then(Value::as_object));
    let mut uses_fragments = false;
    for fragment in fragments {
        uses_fragments |= !fragment.is_empty();
        for value in fragment.values().filter_map(|f| f.get("value")) {
            if let Some(e) = template_error(value) {
                return error(format!("error while parsing template: {e}"));
            }
        }
    }
    let (placeholder, other, note) = if uses_fragments {
        (
            "{{fragment}}",
            "{{text}}",
            "\n  - Note: this template is using fragments, and so expects to contain the placeholder \"{{fragment}}\" rathern than \"{{text}}\"",
        )
    } else {
        (
            "{{text}}",
            "{{fragment}}",
            "\n  - Note: this template is using a document template, and so expects to contain the placeholder \"{{text}}\" rather than \"{{fragment}}\"",
        )
    };
    let mut request_repeats = false;
    if let Some(request) = embedder.get("request").filter(|r| !r.is_null()) {
        let mut found = Vec::new();
        placeholders(request, "request", placeholder, &mut found);
        let mut others = Vec::new();
        placeholders(request, "request", other, &mut others);
        match found.as_slice() {
            // A request with `{{fragment}}` and no fragments is left to the task.
            [] if uses_fragments || others.is_empty() => {
                return error(format!("in `request`: \"{placeholder}\" not found{note}"));
            }
            [first, second, ..] => {
                return error(format!(
                    "in `{}`: Found \"{placeholder}\", but it was already present in `{}`{note}",
                    second.0, first.0
                ));
            }
            _ => {}
        }
        request_repeats = found.iter().chain(&others).any(|(_, repeats)| *repeats);
    }
    if let Some(response) = embedder.get("response").filter(|r| !r.is_null()) {
        let mut found = Vec::new();
        placeholders(response, "response", "{{embedding}}", &mut found);
        match found.as_slice() {
            [] => return error("in `response`: \"{{embedding}}\" not found".to_owned()),
            [first, second, ..] => {
                return error(format!(
                    "in `{}`: Found \"{{{{embedding}}}}\", but it was already present in `{}`",
                    second.0, first.0
                ));
            }
            [(_, repeats)] if request_repeats && !repeats => {
                return error(
                    "in `response`: `response` has a single embedding, but `request` has multiple texts to embed"
                        .to_owned(),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first string in `value` that is no Liquid template, and why.
fn template_error(value: &Value) -> Option<liquid::Error> {
    match value {
        Value::String(text) => TEMPLATES.parse(text).err(),
        Value::Array(items) => items.iter().find_map(template_error),
        Value::Object(map) => map.values().find_map(template_error),
        _ => None,
    }
}

/// Where `placeholder` stands as a whole string in `value` (`request.input`), and whether
/// it repeats there (followed by `"{{..}}"` in its array).
fn placeholders(value: &Value, at: &str, placeholder: &str, found: &mut Vec<(String, bool)>) {
    match value {
        Value::String(s) if s == placeholder => found.push((at.to_owned(), false)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let before = found.len();
                placeholders(item, &format!("{at}[{i}]"), placeholder, found);
                if found.len() > before
                    && items.get(i + 1).and_then(Value::as_str) == Some("{{..}}")
                {
                    for entry in &mut found[before..] {
                        entry.1 = true;
                    }
                }
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                placeholders(item, &format!("{at}.{key}"), placeholder, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::settings::shape::check;
    use serde_json::json;

    fn refusal(embedder: Value) -> (String, String) {
        let embedders = json!({ "x": embedder });
        let error = check(&embedders, EMBEDDERS, &Location::new(".embedders"))
            .map_err(|m| MeiliError::invalid("invalid_settings_embedders", m))
            .and_then(|()| features(embedders.as_object().unwrap(), &|_| false))
            .and_then(|()| rules(embedders.as_object().unwrap()))
            .unwrap_err();
        (error.code.to_owned(), error.message)
    }

    #[test]
    fn embedders_are_refused_as_meilisearch_refuses_them() {
        assert_eq!(
            refusal(json!({"source": "userProvided"})).1,
            "`.embedders.x`: Missing field `dimensions` (note: this field is mandatory for source `userProvided`)"
        );
        assert_eq!(
            refusal(json!({"source": "userProvided", "dimensions": 3, "model": null})).1,
            "`.embedders.x`: Field `model` unavailable for source `userProvided`.\n  - note: `model` is available for sources: `openAi`, `huggingFace`, `ollama`\n  - note: available fields for source `userProvided`: `source`, `dimensions`, `distribution`, `binaryQuantized`"
        );
        assert_eq!(
            refusal(json!({"source": "ollama", "revision": "r"})).1,
            "`.embedders.x`: Missing field `model` (note: this field is mandatory for source `ollama`)"
        );
        assert_eq!(
            refusal(json!({"source": "userProvided", "dimensions": 3, "distribution": {"mean": 2, "sigma": 0.1}})).1,
            "Invalid value at `.embedders.x.distribution`: the distribution mean must be in the range [0, 1], got 2"
        );
        assert_eq!(
            refusal(
                json!({"source": "openAi", "model": "text-embedding-3-small", "dimensions": 2000})
            )
            .1,
            "`.embedders.x.dimensions`: Model `text-embedding-3-small` does not support overriding its dimensions to a value higher than 1536. Found 2000"
        );
        assert_eq!(
            refusal(json!({"source": "openAi", "url": "not a url"})).1,
            "`.embedders.x.url`: could not parse `not a url`: relative URL without a base"
        );
        assert_eq!(
            refusal(json!({"source": "composite", "model": "r"})).0,
            "feature_not_enabled"
        );
        assert_eq!(
            refusal(json!({"source": "rest", "url": "http://a/x", "request": {"input": "{{text}}", "b": "{{text}}"}, "response": {"e": "{{embedding}}"}})),
            ("vector_embedding_error".into(), "Error while generating embeddings: user error: in `request.b`: Found \"{{text}}\", but it was already present in `request.input`\n  - Note: this template is using a document template, and so expects to contain the placeholder \"{{text}}\" rather than \"{{fragment}}\"".into())
        );
        assert_eq!(
            refusal(json!({"source": "rest", "url": "http://a/x", "request": ["{{text}}", "{{..}}"], "response": {"e": "{{embedding}}"}})).1,
            "Error while generating embeddings: user error: in `response`: `response` has a single embedding, but `request` has multiple texts to embed"
        );
    }

    #[test]
    fn what_depends_on_the_stored_embedder_is_left_to_the_nodes() {
        let embedders = json!({"x": {"revision": "r"}, "y": {"model": "bogus"}, "z": null});
        assert!(check(&embedders, EMBEDDERS, &Location::new(".embedders")).is_ok());
        assert!(rules(embedders.as_object().unwrap()).is_ok());
        let fine = json!({"x": {"source": "rest", "url": "http://a/x", "request": ["{{text}}", "{{..}}", 3], "response": ["{{embedding}}", "{{..}}"]}});
        assert!(rules(fine.as_object().unwrap()).is_ok());
    }
}
