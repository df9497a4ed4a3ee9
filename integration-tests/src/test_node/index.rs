//! One index of the test node: documents in insertion order, primary key, settings.

use super::error::NodeError;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

/// Meilisearch's default settings (v1.12/1.13), in its key order.
pub fn default_settings() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "displayedAttributes": ["*"],
        "searchableAttributes": ["*"],
        "filterableAttributes": [],
        "sortableAttributes": [],
        "rankingRules": ["words", "typo", "proximity", "attributeRank", "sort", "wordPosition", "exactness"],
        "stopWords": [],
        "nonSeparatorTokens": [],
        "separatorTokens": [],
        "dictionary": [],
        "synonyms": {},
        "distinctAttribute": null,
        "proximityPrecision": "byWord",
        "typoTolerance": {
            "enabled": true,
            "minWordSizeForTypos": { "oneTypo": 5, "twoTypos": 9 },
            "disableOnWords": [],
            "disableOnAttributes": []
        },
        "faceting": { "maxValuesPerFacet": 100, "sortFacetValuesBy": { "*": "alpha" } },
        "pagination": { "maxTotalHits": 1000 },
        "embedders": {},
        "searchCutoffMs": null,
        "localizedAttributes": null,
        "facetSearch": true,
        "prefixSearch": "indexingTime"
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

/// Settings keys whose value is an object merged field by field on update.
const MERGED_SETTINGS: &[&str] = &["typoTolerance", "faceting", "pagination", "embedders"];

/// An index.
#[derive(Debug, Clone)]
pub struct Index {
    /// Primary key attribute.
    pub primary_key: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last update time (RFC 3339).
    pub updated_at: String,
    /// Documents by internal id (insertion order).
    pub documents: BTreeMap<u64, Value>,
    /// External id → internal id.
    pub ids: HashMap<String, u64>,
    /// Each document's words per top-level attribute, taken when it is written (as an
    /// engine indexes at write time): a search then does not tokenize every document
    /// again, and its time does not grow with fields it never matches on.
    pub words: HashMap<u64, HashMap<String, Vec<String>>>,
    next_internal: u64,
    /// Current settings.
    pub settings: Map<String, Value>,
}

impl Index {
    /// An empty index.
    pub fn new(primary_key: Option<String>, now: &str) -> Self {
        Self {
            primary_key,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            documents: BTreeMap::new(),
            ids: HashMap::new(),
            words: HashMap::new(),
            next_internal: 0,
            settings: default_settings(),
        }
    }

    /// A settings list as strings (e.g. `filterableAttributes`).
    pub fn setting_list(&self, key: &str) -> Vec<String> {
        self.settings
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `attribute` (or a parent of it) is filterable.
    pub fn is_filterable(&self, attribute: &str) -> bool {
        self.setting_list("filterableAttributes")
            .iter()
            .any(|f| covers(f, attribute))
    }

    /// Whether `attribute` (or a parent of it) is sortable.
    pub fn is_sortable(&self, attribute: &str) -> bool {
        self.setting_list("sortableAttributes")
            .iter()
            .any(|f| covers(f, attribute))
    }

    /// Applies a settings update (`null` resets a key).
    pub fn apply_settings(&mut self, update: &Map<String, Value>) {
        let defaults = default_settings();
        for (key, value) in update {
            let default = defaults.get(key).cloned().unwrap_or(Value::Null);
            let new = match (value, MERGED_SETTINGS.contains(&key.as_str())) {
                (Value::Null, _) => default,
                (Value::Object(patch), true) => {
                    let mut merged = self.settings.get(key).cloned().unwrap_or(default.clone());
                    merge(&mut merged, patch, &default);
                    merged
                }
                (other, _) => other.clone(),
            };
            self.settings.insert(key.clone(), new);
        }
    }

    /// Adds documents: replacing them (`merge == false`) or merging fields into existing
    /// ones. Infers the primary key from the first document if needed.
    pub fn add_documents(
        &mut self,
        documents: &[Value],
        primary_key: Option<&str>,
        merge: bool,
    ) -> Result<u64, NodeError> {
        let pk = match (&self.primary_key, primary_key) {
            (Some(existing), Some(given)) if existing != given => {
                return Err(NodeError::invalid(
                    "index_primary_key_already_exists",
                    format!("Index already has a primary key: `{existing}`."),
                ));
            }
            (Some(existing), _) => existing.clone(),
            (None, Some(given)) => given.to_owned(),
            // An empty batch succeeds and leaves the key unset (Meilisearch ≥ 1.12).
            (None, None) if documents.is_empty() => return Ok(0),
            (None, None) => infer_primary_key(documents.first())?,
        };
        // Validate the whole batch before changing anything: a task is all or nothing.
        let mut prepared = Vec::with_capacity(documents.len());
        for document in documents {
            let Value::Object(object) = document else {
                return Err(NodeError::invalid(
                    "malformed_payload",
                    "The `json` payload provided is malformed. `Couldn't serialize document value: data are neither an object nor a list of objects`.",
                ));
            };
            let id = document_id(object, &pk)?;
            prepared.push((id, object.clone()));
        }
        self.primary_key = Some(pk);
        let mut indexed = 0;
        for (id, object) in prepared {
            indexed += 1;
            match self.ids.get(&id) {
                Some(&internal) if merge => {
                    if let Some(Value::Object(existing)) = self.documents.get_mut(&internal) {
                        for (k, v) in object {
                            existing.insert(k, v);
                        }
                    }
                    self.index_words(internal);
                }
                Some(&internal) => {
                    self.documents.insert(internal, Value::Object(object));
                    self.index_words(internal);
                }
                None => {
                    let internal = self.next_internal;
                    self.next_internal += 1;
                    self.ids.insert(id, internal);
                    self.documents.insert(internal, Value::Object(object));
                    self.index_words(internal);
                }
            }
        }
        Ok(indexed)
    }

    /// Records the words of a stored document's top-level attributes.
    fn index_words(&mut self, internal: u64) {
        let Some(Value::Object(document)) = self.documents.get(&internal) else {
            return;
        };
        let words = document
            .iter()
            .map(|(attribute, value)| {
                let mut strings = Vec::new();
                super::search::strings_in(value, &mut strings);
                let words = strings.iter().flat_map(|s| super::search::tokenize(s));
                (attribute.clone(), words.collect())
            })
            .collect();
        self.words.insert(internal, words);
    }

    /// Deletes documents by external id; returns how many existed.
    pub fn delete_ids(&mut self, ids: &[String]) -> u64 {
        let mut deleted = 0;
        for id in ids {
            if let Some(internal) = self.ids.remove(id) {
                self.documents.remove(&internal);
                self.words.remove(&internal);
                deleted += 1;
            }
        }
        deleted
    }

    /// The external id of a stored document.
    pub fn external_id(&self, document: &Value) -> Option<String> {
        let pk = self.primary_key.as_deref()?;
        match super::filter::lookup(document, pk)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Whether a settings entry `pattern` covers `attribute` (itself, or a parent object of it).
pub fn covers(pattern: &str, attribute: &str) -> bool {
    pattern == "*"
        || attribute == pattern
        || attribute
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn merge(target: &mut Value, patch: &Map<String, Value>, default: &Value) {
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        let default_value = default.get(key).cloned().unwrap_or(Value::Null);
        match value {
            Value::Null => {
                target.insert(key.clone(), default_value);
            }
            Value::Object(inner)
                if target.get(key).is_some_and(Value::is_object) && key != "sortFacetValuesBy" =>
            {
                let entry = target.get_mut(key).expect("checked");
                merge(entry, inner, &default_value);
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

fn infer_primary_key(first: Option<&Value>) -> Result<String, NodeError> {
    let mut candidates: Vec<&String> = first
        .and_then(Value::as_object)
        .map(|o| {
            o.keys()
                .filter(|k| k.to_lowercase().ends_with("id"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(NodeError::invalid(
            "index_primary_key_no_candidate_found",
            "The primary key inference failed as the engine did not find any field ending with `id` in its name. Please specify the primary key manually using the `primaryKey` query parameter.",
        )),
        [a, b, ..] => Err(NodeError::invalid(
            "index_primary_key_multiple_candidates_found",
            format!(
                "The primary key inference failed as the engine found {} fields ending with `id` in their names: '{a}' and '{b}'. Please specify the primary key manually using the `primaryKey` query parameter.",
                candidates.len()
            ),
        )),
    }
}

/// The validated external id of a document.
pub fn document_id(object: &Map<String, Value>, pk: &str) -> Result<String, NodeError> {
    let document = Value::Object(object.clone());
    let Some(value) = super::filter::lookup(&document, pk) else {
        return Err(NodeError::invalid(
            "missing_document_id",
            format!(
                "Document doesn't have a `{pk}` attribute: `{}`.",
                serde_json::to_string(object).unwrap_or_default()
            ),
        ));
    };
    let invalid = || {
        NodeError::invalid(
            "invalid_document_id",
            format!(
                "Document identifier `{value}` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes."
            ),
        )
    };
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::String(s)
            if !s.is_empty()
                && s.len() <= 511
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(s.clone())
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_batch_leaves_the_primary_key_unset() {
        let mut index = Index::new(None, "now");
        assert_eq!(index.add_documents(&[], None, false).expect("accepted"), 0);
        assert_eq!(index.primary_key, None);
    }

    #[test]
    fn infers_and_validates_primary_keys() {
        let mut index = Index::new(None, "now");
        index
            .add_documents(&[json!({"movie_id": 1, "title": "a"})], None, false)
            .unwrap();
        assert_eq!(index.primary_key.as_deref(), Some("movie_id"));
        let mut index = Index::new(None, "now");
        let err = index
            .add_documents(&[json!({"id": 1, "object_id": 2})], None, false)
            .unwrap_err();
        assert_eq!(err.code, "index_primary_key_multiple_candidates_found");
        let mut index = Index::new(Some("id".into()), "now");
        let err = index
            .add_documents(&[json!({"id": "a b"})], None, false)
            .unwrap_err();
        assert_eq!(err.code, "invalid_document_id");
        assert!(index.documents.is_empty(), "nothing half-applied");
    }

    #[test]
    fn replace_and_merge() {
        let mut index = Index::new(Some("id".into()), "now");
        index
            .add_documents(&[json!({"id": 1, "a": 1, "b": 1})], None, false)
            .unwrap();
        index
            .add_documents(&[json!({"id": 1, "b": 2})], None, true)
            .unwrap();
        assert_eq!(index.documents[&0], json!({"id": 1, "a": 1, "b": 2}));
        index
            .add_documents(&[json!({"id": "1", "c": 3})], None, false)
            .unwrap();
        assert_eq!(index.documents.len(), 1, "1 and \"1\" are one document");
        assert_eq!(index.documents[&0], json!({"id": "1", "c": 3}));
    }

    #[test]
    fn settings_updates_merge_and_reset() {
        let mut index = Index::new(None, "now");
        index.apply_settings(
            json!({"faceting": {"maxValuesPerFacet": 5}, "filterableAttributes": ["genre"]})
                .as_object()
                .unwrap(),
        );
        assert_eq!(
            index.settings["faceting"],
            json!({"maxValuesPerFacet": 5, "sortFacetValuesBy": {"*": "alpha"}})
        );
        assert!(index.is_filterable("genre"));
        index.apply_settings(json!({"filterableAttributes": null}).as_object().unwrap());
        assert!(!index.is_filterable("genre"));
    }
}
