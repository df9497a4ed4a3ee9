//! Index settings as Miroir handles them: what nodes receive for a client's change (with
//! Miroir's hidden settings merged in), what clients read back (with them hidden), and
//! the canonical hash the two-phase commit and the drift reconciler compare.
//!
//! Hidden settings, and why:
//! - `_miroir_shard` in `filterableAttributes`: every read restricts a node to the shards
//!   it is asked for.
//! - `faceting.maxValuesPerFacet` = [`NODE_MAX_VALUES_PER_FACET`] on nodes: the merge sums
//!   facet counts across nodes and must see every value of every node to pick the index's
//!   top values exactly; the client's own value is remembered and applied in the merge.
//!
//! `pagination.maxTotalHits` needs no hidden value: each node caps its total at the
//! client's limit, and min(Σ min(cᵢ, cap), cap) = min(Σ cᵢ, cap), so capping the sum again
//! in the gateway is exact.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The attribute every document carries on the nodes: its shard, as [`shard_tag`].
pub const SHARD_FIELD: &str = "_miroir_shard";

/// The digits of a shard tag: characters Meilisearch's tokenizer (charabia) always
/// treats as separators.
const TAG_DIGITS: [char; 4] = ['-', '_', ':', '/'];

/// What a document of `shard` holds in [`SHARD_FIELD`]: the shard number in base 4
/// written with separator characters only (shard 0 is `-`, 6 is `_:`). Nodes index every
/// searchable attribute, `_miroir_shard` too while `searchableAttributes` is `["*"]`, and
/// a number would be a word a query can match ("3" would find every document of shard 3);
/// a string of separators yields no word at all, yet filters by equality like any string.
pub fn shard_tag(shard: u32) -> String {
    let mut digits = Vec::new();
    let mut rest = shard;
    loop {
        digits.push(TAG_DIGITS[(rest % 4) as usize]);
        rest /= 4;
        if rest == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// The filter that selects the documents of `shards`: `_miroir_shard IN ["-", "_:"]`.
pub fn shard_filter(shards: &[u32]) -> String {
    let tags: Vec<String> = shards
        .iter()
        .map(|shard| format!("\"{}\"", shard_tag(*shard)))
        .collect();
    format!("{SHARD_FIELD} IN [{}]", tags.join(", "))
}

/// `faceting.maxValuesPerFacet` on nodes: facets with more distinct values on one node
/// than this are merged from each node's top values only.
pub const NODE_MAX_VALUES_PER_FACET: u64 = 10_000;

/// Meilisearch's default `faceting.maxValuesPerFacet`.
pub const DEFAULT_MAX_VALUES_PER_FACET: u64 = 100;

/// Every settings key of Meilisearch 1.50, in its order (`foreignKeys` and `chat` show in
/// its `GET` only while their experimental features are on).
pub const KEYS: &[&str] = &[
    "displayedAttributes",
    "searchableAttributes",
    "filterableAttributes",
    "sortableAttributes",
    "foreignKeys",
    "rankingRules",
    "stopWords",
    "nonSeparatorTokens",
    "separatorTokens",
    "dictionary",
    "synonyms",
    "distinctAttribute",
    "proximityPrecision",
    "typoTolerance",
    "faceting",
    "pagination",
    "embedders",
    "searchCutoffMs",
    "localizedAttributes",
    "facetSearch",
    "prefixSearch",
    "chat",
];

/// The `details` of a settings task for a client's change, as Meilisearch shows them: a
/// reset `displayedAttributes` or `searchableAttributes` reads `["*"]` (their value once
/// reset); everything else as sent.
pub fn task_details(change: &Map<String, Value>) -> Map<String, Value> {
    let mut details = change.clone();
    for key in ["displayedAttributes", "searchableAttributes"] {
        if let Some(value @ Value::Null) = details.get_mut(key) {
            *value = json!(["*"]);
        }
    }
    details
}

/// The hidden settings every node of a new index receives.
pub fn initial_node_settings() -> Map<String, Value> {
    let mut settings = Map::new();
    settings.insert("filterableAttributes".into(), json!([SHARD_FIELD]));
    settings.insert(
        "faceting".into(),
        json!({ "maxValuesPerFacet": NODE_MAX_VALUES_PER_FACET }),
    );
    settings
}

/// What nodes receive for a client's change (PATCH semantics: absent keys unchanged, null
/// resets): the same, except that `filterableAttributes` keeps `_miroir_shard` and
/// `faceting.maxValuesPerFacet` stays at the node value.
pub fn node_patch(client: &Map<String, Value>) -> Map<String, Value> {
    let mut nodes = client.clone();
    if let Some(filterable) = nodes.get_mut("filterableAttributes") {
        match filterable {
            Value::Array(items) if !items.iter().any(|v| v == SHARD_FIELD) => {
                items.push(json!(SHARD_FIELD));
            }
            Value::Null => *filterable = json!([SHARD_FIELD]),
            _ => {}
        }
    }
    if let Some(faceting) = nodes.get_mut("faceting") {
        match faceting {
            Value::Object(fields) if fields.contains_key("maxValuesPerFacet") => {
                fields.insert("maxValuesPerFacet".into(), json!(NODE_MAX_VALUES_PER_FACET));
            }
            Value::Null => {
                *faceting = json!({
                    "maxValuesPerFacet": NODE_MAX_VALUES_PER_FACET,
                    "sortFacetValuesBy": null,
                })
            }
            _ => {}
        }
    }
    nodes
}

/// The client's `faceting.maxValuesPerFacet` after `patch`, given the one before.
fn client_max_values(previous: Option<&Map<String, Value>>, patch: &Map<String, Value>) -> Value {
    match patch.get("faceting") {
        Some(Value::Null) => return json!(DEFAULT_MAX_VALUES_PER_FACET),
        Some(Value::Object(faceting)) => match faceting.get("maxValuesPerFacet") {
            Some(Value::Null) => return json!(DEFAULT_MAX_VALUES_PER_FACET),
            Some(value) => return value.clone(),
            None => {}
        },
        _ => {}
    }
    previous
        .and_then(|p| p.get("faceting"))
        .and_then(|f| f.get("maxValuesPerFacet"))
        .cloned()
        .unwrap_or(json!(DEFAULT_MAX_VALUES_PER_FACET))
}

/// What clients read, from what a node holds after `patch` was applied on top of the
/// settings clients read before (`previous`, `None` for a new index): Miroir's hidden
/// settings removed and the client's own values put back.
pub fn client_view(
    node: &Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    patch: &Map<String, Value>,
) -> Map<String, Value> {
    let mut view = node.clone();
    if let Some(Value::Array(items)) = view.get_mut("filterableAttributes") {
        items.retain(|v| v != SHARD_FIELD);
    }
    let max_values = client_max_values(previous, patch);
    if let Some(Value::Object(faceting)) = view.get_mut("faceting") {
        faceting.insert("maxValuesPerFacet".into(), max_values);
    }
    view
}

/// What nodes must hold for clients to read `view`: the full settings PATCH a drifted
/// node is repaired with.
pub fn node_settings(view: &Map<String, Value>) -> Map<String, Value> {
    let mut nodes = view.clone();
    if let Some(Value::Array(items)) = nodes.get_mut("filterableAttributes")
        && !items.iter().any(|v| v == SHARD_FIELD)
    {
        items.push(json!(SHARD_FIELD));
    }
    if let Some(Value::Object(faceting)) = nodes.get_mut("faceting") {
        faceting.insert("maxValuesPerFacet".into(), json!(NODE_MAX_VALUES_PER_FACET));
    }
    nodes
}

/// SHA-256 (lowercase hex) of `settings` written canonically: object keys sorted at every
/// depth, no whitespace. Arrays keep their order (Meilisearch returns sets sorted and
/// ordered lists, like ranking rules, in their meaningful order).
pub fn hash(settings: &Map<String, Value>) -> String {
    let mut canonical = String::new();
    write_canonical(&mut canonical, &Value::Object(settings.clone()));
    crate::keys::hex(&Sha256::digest(canonical.as_bytes()))
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(out, &map[key]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn shard_tags_are_distinct_and_hold_no_word() {
        assert_eq!(shard_tag(0), "-");
        assert_eq!(shard_tag(6), "_:");
        let tags: std::collections::HashSet<String> = (0..5000).map(shard_tag).collect();
        assert_eq!(tags.len(), 5000, "one tag per shard");
        assert!(tags.iter().all(|t| !t.chars().any(char::is_alphanumeric)));
        assert_eq!(shard_filter(&[0, 6]), r#"_miroir_shard IN ["-", "_:"]"#);
    }

    use super::*;

    #[test]
    fn reset_wildcard_settings_read_as_their_default_in_task_details() {
        let change =
            json!({"displayedAttributes": null, "searchableAttributes": ["a"], "stopWords": null});
        let details = task_details(change.as_object().unwrap());
        assert_eq!(
            Value::Object(details),
            json!({"displayedAttributes": ["*"], "searchableAttributes": ["a"], "stopWords": null})
        );
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn nodes_keep_miroir_settings_whatever_the_client_sends() {
        let patch = |v: Value| node_patch(&map(v));
        assert_eq!(
            patch(json!({"filterableAttributes": ["genre"]}))["filterableAttributes"],
            json!(["genre", "_miroir_shard"])
        );
        assert_eq!(
            patch(json!({"filterableAttributes": null}))["filterableAttributes"],
            json!(["_miroir_shard"])
        );
        assert_eq!(
            patch(json!({"faceting": {"maxValuesPerFacet": 3}}))["faceting"],
            json!({"maxValuesPerFacet": NODE_MAX_VALUES_PER_FACET})
        );
        assert_eq!(
            patch(json!({"faceting": null}))["faceting"]["maxValuesPerFacet"],
            json!(NODE_MAX_VALUES_PER_FACET)
        );
        assert_eq!(
            patch(json!({"faceting": {"sortFacetValuesBy": {"*": "count"}}}))["faceting"],
            json!({"sortFacetValuesBy": {"*": "count"}})
        );
        assert!(!patch(json!({"rankingRules": ["words"]})).contains_key("filterableAttributes"));
    }

    #[test]
    fn clients_read_their_own_values() {
        let node = map(json!({
            "filterableAttributes": ["genre", "_miroir_shard"],
            "faceting": {"maxValuesPerFacet": NODE_MAX_VALUES_PER_FACET, "sortFacetValuesBy": {"*": "alpha"}},
        }));
        let fresh = client_view(&node, None, &Map::new());
        assert_eq!(fresh["filterableAttributes"], json!(["genre"]));
        assert_eq!(fresh["faceting"]["maxValuesPerFacet"], json!(100));
        let set = client_view(
            &node,
            Some(&fresh),
            &map(json!({"faceting": {"maxValuesPerFacet": 7}})),
        );
        assert_eq!(set["faceting"]["maxValuesPerFacet"], json!(7));
        // Unrelated changes keep it; a reset brings back the default.
        let kept = client_view(&node, Some(&set), &map(json!({"rankingRules": null})));
        assert_eq!(kept["faceting"]["maxValuesPerFacet"], json!(7));
        let reset = client_view(&node, Some(&set), &map(json!({"faceting": null})));
        assert_eq!(reset["faceting"]["maxValuesPerFacet"], json!(100));
        // And the view maps back to what nodes hold.
        assert_eq!(node_settings(&set), node);
    }

    #[test]
    fn hash_ignores_key_order_not_list_order() {
        let a = map(json!({"a": 1, "b": {"x": [1, 2], "y": null}}));
        let b = map(json!({"b": {"y": null, "x": [1, 2]}, "a": 1}));
        let c = map(json!({"a": 1, "b": {"x": [2, 1], "y": null}}));
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&c));
        assert_eq!(hash(&a).len(), 64);
    }
}
