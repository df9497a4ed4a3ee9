//! Search on the test node, following Meilisearch's semantics closely enough that a
//! gateway merging several nodes can be checked against one node holding everything.
//!
//! Matching: lower-cased alphanumeric words; the last query word also matches as a prefix
//! (unless the query ends with a space). Ranking rules run in the index's order as
//! buckets: `words` (with `matchingStrategy` `last`, the length of the longest prefix of
//! query words the document matches; `all` requires every word), `typo` and `proximity`
//! (no typos or distances here, so they never split a bucket), `attribute` (earliest
//! searchable attribute holding a match), `sort` (the query's `sort`), `exactness` (query
//! words matched exactly rather than as a prefix), and custom `attr:asc|desc` rules; ties
//! go to insertion order. `_rankingScore` depends only on the document and the query,
//! never on other documents, as in Meilisearch, and orders documents as the ranking
//! rules other than `sort` do.

use super::error::NodeError;
use super::filter::{self, Filter, geo_point, haversine_m, leaves, lookup};
use super::index::{Index, covers};
use miroir_proto::time::PerformanceDetails;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

const SEARCH_PARAMETERS: &[&str] = &[
    "q",
    "vector",
    "offset",
    "limit",
    "page",
    "hitsPerPage",
    "attributesToRetrieve",
    "retrieveVectors",
    "attributesToCrop",
    "cropLength",
    "attributesToHighlight",
    "showMatchesPosition",
    "showRankingScore",
    "showRankingScoreDetails",
    "showPerformanceDetails",
    "filter",
    "sort",
    "distinct",
    "facets",
    "highlightPreTag",
    "highlightPostTag",
    "cropMarker",
    "matchingStrategy",
    "attributesToSearchOn",
    "rankingScoreThreshold",
    "locales",
    "hybrid",
];

/// How Meilisearch (deserr) names a JSON value's kind in its type errors.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() => "a positive integer",
        Value::Number(n) if n.is_i64() => "a negative integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn bad_type(code: &'static str, field: &str, expected: &str, value: &Value) -> NodeError {
    let found = kind_of(value);
    NodeError::invalid(
        code,
        format!(
            "Invalid value type at `.{field}`: expected {expected}, but found {found}: `{value}`"
        ),
    )
}

fn uint(
    query: &Map<String, Value>,
    field: &str,
    code: &'static str,
) -> Result<Option<usize>, NodeError> {
    match query.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.as_u64().unwrap_or(0) as usize)),
        Some(other) => Err(bad_type(code, field, "a positive integer", other)),
    }
}

fn string_list(
    query: &Map<String, Value>,
    field: &str,
    code: &'static str,
) -> Result<Option<Vec<String>>, NodeError> {
    match query.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad_type(code, field, "a string", v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(bad_type(code, field, "an array", other)),
    }
}

fn flag(query: &Map<String, Value>, field: &str, code: &'static str) -> Result<bool, NodeError> {
    match query.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad_type(code, field, "a boolean", other)),
    }
}

fn text(
    query: &Map<String, Value>,
    field: &str,
    default: &str,
    code: &'static str,
) -> Result<String, NodeError> {
    match query.get(field) {
        None | Some(Value::Null) => Ok(default.to_owned()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(bad_type(code, field, "a string", other)),
    }
}

/// Lower-cased alphanumeric words.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

pub(crate) fn strings_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Array(items) => items.iter().for_each(|v| strings_in(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings_in(v, out)),
        Value::Null => {}
    }
}

/// Attributes a document is searched on, in rank order.
fn searchable_attributes<'a>(
    configured: &'a [String],
    document: &'a Value,
    restrict: Option<&[String]>,
) -> Vec<&'a str> {
    let mut attributes: Vec<&str> = if configured.iter().any(|a| a == "*") {
        document
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default()
    } else {
        configured.iter().map(String::as_str).collect()
    };
    if let Some(restrict) = restrict {
        attributes.retain(|a| restrict.iter().any(|r| covers(r, a) || covers(a, r)));
    }
    attributes
}

/// How a document matched the query.
#[derive(Clone, Debug)]
struct Match {
    /// Query words matched (the longest matched prefix for `last`).
    words: usize,
    /// Index of the earliest searchable attribute holding a matched word.
    attribute: usize,
    /// Number of searchable attributes.
    attributes: usize,
    /// Matched words that matched exactly.
    exact: usize,
}

/// The document searched: its value and the words its top-level attributes were
/// indexed with.
struct Searched<'a> {
    document: &'a Value,
    words: Option<&'a HashMap<String, Vec<String>>>,
}

fn match_document(
    searchable: &[String],
    searched: Searched<'_>,
    words: &[String],
    last_is_prefix: bool,
    all: bool,
    restrict: Option<&[String]>,
) -> Option<Match> {
    let document = searched.document;
    let attributes = searchable_attributes(searchable, document, restrict);
    if words.is_empty() {
        return Some(Match {
            words: 0,
            attribute: 0,
            attributes: attributes.len().max(1),
            exact: 0,
        });
    }
    let tokens: Vec<Cow<'_, [String]>> = attributes
        .iter()
        .map(|a| {
            if !a.contains('.')
                && let Some(indexed) = searched.words
            {
                return indexed
                    .get(*a)
                    .map_or(Cow::Borrowed(&[][..]), |w| Cow::Borrowed(&w[..]));
            }
            let mut strings = Vec::new();
            if let Some(v) = lookup(document, a) {
                strings_in(v, &mut strings);
            }
            Cow::Owned(strings.iter().flat_map(|s| tokenize(s)).collect())
        })
        .collect();
    // For each query word: (earliest attribute, exact?) where it matches.
    let found: Vec<Option<(usize, bool)>> = words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let prefix = last_is_prefix && i + 1 == words.len();
            tokens.iter().enumerate().find_map(|(a, toks)| {
                if toks.iter().any(|t| t == word) {
                    Some((a, true))
                } else if prefix && toks.iter().any(|t| t.starts_with(word.as_str())) {
                    Some((a, false))
                } else {
                    None
                }
            })
        })
        .collect();
    let matched = found.iter().take_while(|f| f.is_some()).count();
    if matched == 0 || (all && matched < words.len()) {
        return None;
    }
    let used = &found[..matched];
    Some(Match {
        words: matched,
        attribute: used.iter().flatten().map(|(a, _)| *a).min().unwrap_or(0),
        attributes: attributes.len().max(1),
        exact: used.iter().flatten().filter(|(_, exact)| *exact).count(),
    })
}

/// One client sort criterion.
#[derive(Clone, Debug)]
enum SortKey {
    Field(String, bool),
    Geo(f64, f64, bool),
}

fn parse_sort(uid: &str, index: &Index, sort: &[String]) -> Result<Vec<SortKey>, NodeError> {
    let mut keys = Vec::new();
    for criterion in sort {
        let (target, direction) = criterion
            .rsplit_once(':')
            .filter(|(_, d)| *d == "asc" || *d == "desc")
            .ok_or_else(|| NodeError::invalid("invalid_search_sort", format!("Invalid syntax for the sort parameter: expected expression ending by `:asc` or `:desc`, found `{criterion}`.")))?;
        let ascending = direction == "asc";
        if let Some(args) = target
            .strip_prefix("_geoPoint(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let mut parts = args.split(',').map(|p| p.trim().parse::<f64>());
            let (Some(Ok(lat)), Some(Ok(lng)), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(NodeError::invalid(
                    "invalid_search_sort",
                    format!(
                        "Invalid syntax for the geo parameter: expected expression formated like `_geoPoint(latitude, longitude)` and ending by `:asc` or `:desc`, found `{criterion}`."
                    ),
                ));
            };
            if !index.is_sortable("_geo") {
                return Err(not_sortable(uid, index, "_geo"));
            }
            keys.push(SortKey::Geo(lat, lng, ascending));
        } else {
            if target == "_geo" {
                return Err(NodeError::invalid(
                    "invalid_search_sort",
                    "`_geo` is a reserved keyword and thus can't be used as a sort expression. Use the _geoPoint(latitude, longitude) built-in rule to sort on _geo field coordinates.",
                ));
            }
            if !index.is_sortable(target) {
                return Err(not_sortable(uid, index, target));
            }
            keys.push(SortKey::Field(target.to_owned(), ascending));
        }
    }
    if !keys.is_empty()
        && !index
            .setting_list("rankingRules")
            .iter()
            .any(|r| r == "sort")
    {
        return Err(NodeError::invalid(
            "invalid_search_sort",
            format!(
                "Index `{uid}`: You must specify where `sort` is listed in the rankingRules setting to use the sort parameter at search time."
            ),
        ));
    }
    Ok(keys)
}

/// The end of Meilisearch's "not filterable" errors: the filterable attributes, or that
/// there are none.
fn filterable_tail(index: &Index) -> String {
    let filterable = index.setting_list("filterableAttributes");
    if filterable.is_empty() {
        "This index does not have configured filterable attributes.".to_owned()
    } else {
        format!(
            "Available filterable attributes are: {}.",
            available(&filterable)
        )
    }
}

fn available(list: &[String]) -> String {
    let mut list = list.to_vec();
    list.sort();
    list.iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn not_sortable(uid: &str, index: &Index, attribute: &str) -> NodeError {
    let sortable = index.setting_list("sortableAttributes");
    let tail = if sortable.is_empty() {
        "This index does not have configured sortable attributes.".to_owned()
    } else {
        format!(
            "Available sortable attributes are: {}.",
            available(&sortable)
        )
    };
    NodeError::invalid(
        "invalid_search_sort",
        format!("Index `{uid}`: Attribute `{attribute}` is not sortable. {tail}"),
    )
}

/// Checks that every attribute `filter` names is filterable; an error quotes the filter
/// string (of an array, the element) naming the attribute, as Meilisearch does.
pub fn check_filterable(
    uid: &str,
    index: &Index,
    filter: &Filter,
    texts: &[&str],
    code: &'static str,
) -> Result<(), NodeError> {
    for attribute in filter.attributes() {
        if !index.is_filterable(attribute) {
            let tail = filterable_tail(index);
            let raw = texts
                .iter()
                .find(|t| t.contains(attribute))
                .or(texts.first())
                .copied()
                .unwrap_or_default();
            let start = raw.find(attribute).map_or(1, |i| i + 1);
            return Err(NodeError::invalid(
                code,
                format!(
                    "Index `{uid}`: Attribute `{attribute}` is not filterable. {tail}\n{start}:{} {raw}",
                    start + attribute.len()
                ),
            ));
        }
    }
    Ok(())
}

/// The strings of a filter: itself, or an array's elements (inner arrays' too).
pub fn filter_strings(raw: &Value) -> Vec<&str> {
    match raw {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(filter_strings).collect(),
        _ => Vec::new(),
    }
}

/// Parses and checks a filter from a request.
pub fn parse_filter(
    uid: &str,
    index: &Index,
    raw: Option<&Value>,
    code: &'static str,
) -> Result<Option<Filter>, NodeError> {
    let Some(raw) = raw else { return Ok(None) };
    let texts = filter_strings(raw);
    let filter = filter::parse_json(raw).map_err(|message| {
        // A filter of the wrong shape is refused without a position.
        if message.starts_with("Invalid syntax for the filter parameter") {
            return NodeError::invalid(code, message);
        }
        // Meilisearch parses an array's strings one by one and quotes the one that fails.
        let original = texts
            .iter()
            .find(|t| filter::parse(t).is_err())
            .map_or_else(|| raw.to_string(), |t| (*t).to_owned());
        NodeError::invalid(
            code,
            format!("{message}\n1:{} {original}", original.chars().count() + 1),
        )
    })?;
    if let Some(filter) = &filter {
        check_filterable(uid, index, filter, &texts, code)?;
    }
    Ok(filter)
}

fn compare_json(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    // Numbers before strings; missing values last (Meilisearch puts documents without the
    // field after the others, whatever the direction).
    fn first(v: Option<&Value>) -> Option<&Value> {
        match v {
            Some(Value::Array(items)) => items.first(),
            other => other,
        }
    }
    match (first(a), first(b)) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Some(Value::Number(_)), Some(Value::String(_))) => Ordering::Less,
        (Some(Value::String(_)), Some(Value::Number(_))) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

fn has_sort_value(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Number(_) | Value::String(_)))
        || matches!(v, Some(Value::Array(items)) if !items.is_empty())
}

struct Candidate<'a> {
    internal: u64,
    document: &'a Value,
    matched: Match,
    geo_distance: Option<f64>,
}

/// (rule, rank, max rank) of each scoring ranking rule, in rule order.
type Ranks = Vec<(&'static str, u64, u64)>;

/// The ranking rules as (rank, max rank) pairs, for the score and its details.
fn ranks(rules: &[String], m: &Match, query_words: usize) -> Ranks {
    let mut out = Vec::new();
    for rule in rules {
        match rule.as_str() {
            "words" => out.push(("words", m.words as u64 + 1, query_words as u64 + 1)),
            "typo" => out.push(("typo", 1, 1)),
            "proximity" => out.push(("proximity", 1, 1)),
            // Meilisearch 1.50 splits `attribute` into `attributeRank` and `wordPosition`;
            // the test node ranks words at no position, so `wordPosition` never decides.
            rule @ ("attribute" | "attributeRank") => out.push((
                if rule == "attribute" {
                    "attribute"
                } else {
                    "attributeRank"
                },
                (m.attributes - m.attribute) as u64,
                m.attributes as u64,
            )),
            "exactness" => out.push(("exactness", m.exact as u64 + 1, m.words as u64 + 1)),
            _ => {}
        }
    }
    out
}

/// Lexicographic score in (0, 1]: the best document in every rule scores 1.
/// A rule's local score quantized to 0..=255: `(rank - 1) / (max - 1)`, or full when the
/// rule cannot tell documents apart.
fn level(rank: u64, max: u64) -> u64 {
    if max <= 1 {
        255
    } else {
        ((rank.max(1) - 1) as f64 / (max - 1) as f64 * 255.0).round() as u64
    }
}

/// Lexicographic score in [0, 1] from the rules' levels, one byte each, so that ranking
/// by levels and ranking by score always agree (up to six rules fit an f64 exactly).
fn global_score(ranks: &[(&'static str, u64, u64)]) -> f64 {
    let (mut value, mut total) = (0f64, 1f64);
    for &(_, rank, max) in ranks {
        value = value * 256.0 + level(rank, max) as f64;
        total *= 256.0;
    }
    if ranks.is_empty() {
        1.0
    } else {
        value / (total - 1.0)
    }
}

/// Runs a search on `index`; `query` is the request body.
pub fn search(uid: &str, index: &Index, query: &Map<String, Value>) -> Result<Value, NodeError> {
    search_ranked(uid, index, query).map(|(response, _, _)| response)
}

/// [`search`], with every matching document's internal id in rank order (the hits are a
/// slice of it): a federated search counts and facets the union of its queries' matches;
/// and the time of each stage.
pub fn search_ranked(
    uid: &str,
    index: &Index,
    query: &Map<String, Value>,
) -> Result<(Value, Vec<u64>, PerformanceDetails), NodeError> {
    if let Some(unknown) = query
        .keys()
        .find(|k| !SEARCH_PARAMETERS.contains(&k.as_str()))
    {
        return Err(NodeError::invalid(
            "bad_request",
            format!(
                "Unknown field `{unknown}`: expected one of {}",
                SEARCH_PARAMETERS
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let started = std::time::Instant::now();
    let q = match query.get("q") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(bad_type("invalid_search_q", "q", "a string", other)),
    };
    let offset = uint(query, "offset", "invalid_search_offset")?.unwrap_or(0);
    let limit = uint(query, "limit", "invalid_search_limit")?.unwrap_or(20);
    let page = uint(query, "page", "invalid_search_page")?;
    let hits_per_page = uint(query, "hitsPerPage", "invalid_search_hits_per_page")?;
    let facets = string_list(query, "facets", "invalid_search_facets")?;
    let sort = string_list(query, "sort", "invalid_search_sort")?.unwrap_or_default();
    let to_retrieve = string_list(
        query,
        "attributesToRetrieve",
        "invalid_search_attributes_to_retrieve",
    )?;
    let to_highlight = string_list(
        query,
        "attributesToHighlight",
        "invalid_search_attributes_to_highlight",
    )?;
    let to_crop = string_list(
        query,
        "attributesToCrop",
        "invalid_search_attributes_to_crop",
    )?;
    let search_on = string_list(
        query,
        "attributesToSearchOn",
        "invalid_search_attributes_to_search_on",
    )?;
    let show_score = flag(
        query,
        "showRankingScore",
        "invalid_search_show_ranking_score",
    )?;
    let show_details = flag(
        query,
        "showRankingScoreDetails",
        "invalid_search_show_ranking_score_details",
    )?;
    let show_positions = flag(
        query,
        "showMatchesPosition",
        "invalid_search_show_matches_position",
    )?;
    let show_performance = flag(
        query,
        "showPerformanceDetails",
        "invalid_search_show_performance_details",
    )?;
    let pre_tag = text(
        query,
        "highlightPreTag",
        "<em>",
        "invalid_search_highlight_pre_tag",
    )?;
    let post_tag = text(
        query,
        "highlightPostTag",
        "</em>",
        "invalid_search_highlight_post_tag",
    )?;
    let strategy = text(
        query,
        "matchingStrategy",
        "last",
        "invalid_search_matching_strategy",
    )?;
    if !matches!(strategy.as_str(), "last" | "all" | "frequency") {
        return Err(NodeError::invalid(
            "invalid_search_matching_strategy",
            format!(
                "Unknown value `{strategy}` at `.matchingStrategy`: expected one of `last`, `all`, `frequency`"
            ),
        ));
    }
    let threshold = match query.get("rankingScoreThreshold") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| (0.0..=1.0).contains(&f)) => {
            n.as_f64()
        }
        Some(_) => {
            return Err(NodeError::invalid(
                "invalid_search_ranking_score_threshold",
                "Invalid value at `.rankingScoreThreshold`: the value of `rankingScoreThreshold` is invalid, expected a float between `0.0` and `1.0`.",
            ));
        }
    };
    if let Some(hybrid) = query.get("hybrid").filter(|h| !h.is_null()) {
        let embedder = hybrid
            .get("embedder")
            .and_then(Value::as_str)
            .unwrap_or("default");
        return Err(NodeError::invalid(
            "invalid_search_embedder",
            format!("Cannot find embedder with name `{embedder}`."),
        ));
    }
    if query.get("vector").is_some_and(|v| !v.is_null()) {
        return Err(NodeError::invalid(
            "missing_search_hybrid",
            "Passing `vector` as a parameter requires `hybrid` to be passed as well.",
        ));
    }
    if let Some(search_on) = &search_on {
        let searchable = index.setting_list("searchableAttributes");
        if !searchable.iter().any(|s| s == "*")
            && let Some(bad) = search_on
                .iter()
                .find(|a| !searchable.iter().any(|s| covers(s, a)))
        {
            return Err(NodeError::invalid(
                "invalid_search_attributes_to_search_on",
                format!(
                    "Index `{uid}`: Attribute `{bad}` is not searchable. Available searchable attributes are: `{}`.",
                    searchable.join(", ")
                ),
            ));
        }
    }
    let filter = parse_filter(
        uid,
        index,
        query.get("filter").filter(|f| !f.is_null()),
        "invalid_search_filter",
    )?;
    let sort_keys = parse_sort(uid, index, &sort)?;
    if let Some(facets) = &facets {
        let bad: Vec<&String> = facets
            .iter()
            .filter(|f| *f != "*" && !index.is_filterable(f))
            .collect();
        if !bad.is_empty() {
            let tail = filterable_tail(index);
            let head = if bad.len() == 1 {
                format!("Attribute `{}` is not filterable.", bad[0])
            } else {
                format!(
                    "Attributes `{}` are not filterable.",
                    bad.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(NodeError::invalid(
                "invalid_search_facets",
                format!("Invalid facet distribution: {head} {tail}"),
            ));
        }
    }
    let distinct = match query.get("distinct") {
        Some(Value::String(d)) => {
            if !index.is_filterable(d) {
                let tail = filterable_tail(index);
                return Err(NodeError::invalid(
                    "invalid_search_distinct",
                    format!(
                        "Index `{uid}`: Attribute `{d}` is not filterable and thus, cannot be used as distinct attribute. {tail}"
                    ),
                ));
            }
            Some(d.clone())
        }
        None | Some(Value::Null) => index
            .settings
            .get("distinctAttribute")
            .and_then(Value::as_str)
            .map(str::to_owned),
        Some(other) => {
            return Err(bad_type(
                "invalid_search_distinct",
                "distinct",
                "a string",
                other,
            ));
        }
    };

    let mut stages = PerformanceDetails::default();
    let mut stage = std::time::Instant::now();
    let mut lap = |stages: &mut PerformanceDetails, name: &str| {
        let now = std::time::Instant::now();
        stages.add(name, now - stage);
        stage = now;
    };
    let words = tokenize(&q);
    lap(&mut stages, "search > tokenize");
    let last_is_prefix = !q.ends_with(char::is_whitespace);
    let all = strategy == "all";
    let rules = index.setting_list("rankingRules");
    let geo_origin = sort_keys.iter().find_map(|k| match k {
        SortKey::Geo(lat, lng, _) => Some((*lat, *lng)),
        SortKey::Field(..) => None,
    });

    let searchable = index.setting_list("searchableAttributes");
    let universe: Vec<(&u64, &Value)> = index
        .documents
        .iter()
        .filter(|(_, doc)| filter.as_ref().is_none_or(|f| f.matches(doc)))
        .collect();
    lap(&mut stages, "search > resolve universe");
    let mut candidates: Vec<Candidate> = universe
        .into_iter()
        .filter_map(|(internal, doc)| {
            let matched = match_document(
                &searchable,
                Searched {
                    document: doc,
                    words: index.words.get(internal),
                },
                &words,
                last_is_prefix,
                all,
                search_on.as_deref(),
            )?;
            let geo_distance = geo_origin.and_then(|(lat, lng)| {
                geo_point(doc).map(|(dlat, dlng)| haversine_m(lat, lng, dlat, dlng))
            });
            Some(Candidate {
                internal: *internal,
                document: doc,
                matched,
                geo_distance,
            })
        })
        .collect();

    let compare_sort = |a: &Candidate, b: &Candidate| -> Ordering {
        for key in &sort_keys {
            let ordering = match key {
                SortKey::Field(field, ascending) => {
                    let (va, vb) = (lookup(a.document, field), lookup(b.document, field));
                    match (has_sort_value(va), has_sort_value(vb)) {
                        (true, false) => Ordering::Less,
                        (false, true) => Ordering::Greater,
                        (false, false) => Ordering::Equal,
                        (true, true) => {
                            let o = compare_json(va, vb);
                            if *ascending { o } else { o.reverse() }
                        }
                    }
                }
                SortKey::Geo(_, _, ascending) => match (a.geo_distance, b.geo_distance) {
                    (Some(x), Some(y)) => {
                        let o = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                        if *ascending { o } else { o.reverse() }
                    }
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                },
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    };
    let levels = |c: &Candidate, rule: &str| -> u64 {
        ranks(&rules, &c.matched, words.len())
            .iter()
            .find(|(r, _, _)| *r == rule)
            .map_or(255, |(_, rank, max)| level(*rank, *max))
    };
    candidates.sort_by(|a, b| {
        for rule in &rules {
            let ordering = match rule.as_str() {
                rule @ ("words" | "attribute" | "attributeRank" | "exactness") => {
                    levels(b, rule).cmp(&levels(a, rule))
                }
                "sort" => compare_sort(a, b),
                "typo" | "proximity" => Ordering::Equal,
                custom => match custom.rsplit_once(':') {
                    Some((field, direction)) => {
                        let o = compare_json(lookup(a.document, field), lookup(b.document, field));
                        if direction == "desc" { o.reverse() } else { o }
                    }
                    None => Ordering::Equal,
                },
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        a.internal.cmp(&b.internal)
    });

    let scored: Vec<(Candidate, Ranks, f64)> = candidates
        .into_iter()
        .map(|c| {
            let r = ranks(&rules, &c.matched, words.len());
            let score = global_score(&r);
            (c, r, score)
        })
        .filter(|(_, _, score)| threshold.is_none_or(|t| *score >= t))
        .collect();

    let mut seen = HashSet::new();
    let ranked: Vec<_> = scored
        .into_iter()
        .filter(|(c, _, _)| match &distinct {
            None => true,
            Some(attribute) => {
                let values = leaves(c.document, attribute);
                if values.is_empty() {
                    return true;
                }
                let key = values
                    .iter()
                    .map(|v| normalize(v))
                    .collect::<Vec<_>>()
                    .join("\u{1f}");
                seen.insert(key)
            }
        })
        .collect();

    lap(
        &mut stages,
        if words.is_empty() {
            "search > placeholder search"
        } else {
            "search > keyword search"
        },
    );
    let max_total_hits = index
        .settings
        .get("pagination")
        .and_then(|p| p.get("maxTotalHits"))
        .and_then(Value::as_u64)
        .unwrap_or(1000) as usize;
    // Meilisearch 1.50 counts every candidate; `maxTotalHits` bounds the hits shown.
    let total = ranked.len();
    let page_mode = page.is_some() || hits_per_page.is_some();
    let (from, count) = if page_mode {
        let hpp = hits_per_page.unwrap_or(20);
        let page = page.unwrap_or(1);
        if page == 0 || hpp == 0 {
            (0, 0)
        } else {
            ((page - 1) * hpp, hpp)
        }
    } else {
        (offset, limit)
    };
    // At most `maxTotalHits` hits can be paged through, in both modes.
    let from = from.min(max_total_hits);
    let count = count.min(max_total_hits - from);
    let end = from.saturating_add(count).min(total);
    let page_hits = if from < end {
        &ranked[from..end]
    } else {
        &ranked[0..0]
    };

    let displayed = index.setting_list("displayedAttributes");
    let hits: Vec<Value> = page_hits
        .iter()
        .map(|(c, r, score)| {
            let mut hit = project(c.document, &displayed, to_retrieve.as_deref());
            if to_highlight.is_some() || to_crop.is_some() {
                let formatted = format_hit(c.document, &displayed, to_highlight.as_deref(), &words, last_is_prefix, &pre_tag, &post_tag);
                hit.insert("_formatted".into(), Value::Object(formatted));
            }
            if show_positions {
                hit.insert("_matchesPosition".into(), matches_position(c.document, &words, last_is_prefix));
            }
            if let Some(distance) = c.geo_distance {
                hit.insert("_geoDistance".into(), json!(distance.round() as u64));
            }
            if show_score {
                hit.insert("_rankingScore".into(), json!(score));
            }
            if show_details {
                // One entry per ranking rule in rule order, the `sort` rule expanded into
                // one entry per criterion with its value, as Meilisearch does.
                let mut details = Map::new();
                let mut order = 0;
                for rule in &rules {
                    if rule == "sort" {
                        for (criterion, key) in sort.iter().zip(&sort_keys) {
                            let entry = match key {
                                SortKey::Field(field, _) => json!({"order": order, "value": lookup(c.document, field)}),
                                SortKey::Geo(..) => json!({"order": order, "value": geo_point(c.document).map(|(lat, lng)| json!({"lat": lat, "lng": lng})), "distance": c.geo_distance}),
                            };
                            details.insert(criterion.clone(), entry);
                            order += 1;
                        }
                    } else if let Some((name, rank, max)) = r.iter().find(|(name, _, _)| *name == rule.as_str()) {
                        details.insert((*name).to_owned(), json!({"order": order, "rank": rank, "maxRank": max, "score": global_score(&[(name, *rank, *max)])}));
                        order += 1;
                    }
                }
                hit.insert("_rankingScoreDetails".into(), Value::Object(details));
            }
            Value::Object(hit)
        })
        .collect();

    lap(&mut stages, "search > format");
    let mut response = Map::new();
    response.insert("hits".into(), Value::Array(hits));
    response.insert("query".into(), json!(q));
    response.insert(
        "processingTimeMs".into(),
        json!(started.elapsed().as_millis() as u64),
    );
    if page_mode {
        let hpp = hits_per_page.unwrap_or(20);
        response.insert("hitsPerPage".into(), json!(hpp));
        response.insert("page".into(), json!(page.unwrap_or(1)));
        response.insert(
            "totalPages".into(),
            json!(if hpp == 0 { 0 } else { total.div_ceil(hpp) }),
        );
        response.insert("totalHits".into(), json!(total));
    } else {
        response.insert("limit".into(), json!(limit));
        response.insert("offset".into(), json!(offset));
        response.insert("estimatedTotalHits".into(), json!(total));
    }
    if let Some(facets) = facets {
        let (distribution, stats) =
            facet_distribution(index, ranked.iter().map(|(c, _, _)| c.document), &facets);
        response.insert("facetDistribution".into(), distribution);
        response.insert("facetStats".into(), stats);
        lap(&mut stages, "search > facet distribution");
    }
    response.insert("requestUid".into(), json!(uuid::Uuid::now_v7().to_string()));
    stages.add("search", started.elapsed());
    if show_performance {
        response.insert("performanceDetails".into(), stages.to_value());
    }
    let ids = ranked.iter().map(|(c, _, _)| c.internal).collect();
    Ok((Value::Object(response), ids, stages))
}

fn normalize(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    }
}

/// Keeps the displayed attributes the client asked for, in document order.
pub fn project(
    document: &Value,
    displayed: &[String],
    requested: Option<&[String]>,
) -> Map<String, Value> {
    let Some(object) = document.as_object() else {
        return Map::new();
    };
    object
        .iter()
        .filter(|(k, _)| displayed.iter().any(|d| covers(d, k)))
        .filter(|(k, _)| requested.is_none_or(|r| r.iter().any(|a| covers(a, k))))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn highlight(text: &str, words: &[String], last_is_prefix: bool, pre: &str, post: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(char::is_alphanumeric).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let lower = word.to_lowercase();
        let hit = words.iter().enumerate().find_map(|(i, w)| {
            if lower == *w {
                Some(word.len())
            } else if last_is_prefix && i + 1 == words.len() && lower.starts_with(w.as_str()) {
                word.char_indices()
                    .nth(w.chars().count())
                    .map(|(b, _)| b)
                    .or(Some(word.len()))
            } else {
                None
            }
        });
        match hit {
            Some(len) => {
                out.push_str(pre);
                out.push_str(&word[..len]);
                out.push_str(post);
                out.push_str(&word[len..]);
            }
            None => out.push_str(word),
        }
        rest = &rest[end..];
    }
    out
}

fn format_value(
    value: &Value,
    words: &[String],
    last_is_prefix: bool,
    pre: &str,
    post: &str,
) -> Value {
    match value {
        Value::String(s) => Value::String(highlight(s, words, last_is_prefix, pre, post)),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| format_value(v, words, last_is_prefix, pre, post))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), format_value(v, words, last_is_prefix, pre, post)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn format_hit(
    document: &Value,
    displayed: &[String],
    highlight_on: Option<&[String]>,
    words: &[String],
    last_is_prefix: bool,
    pre: &str,
    post: &str,
) -> Map<String, Value> {
    project(document, displayed, None)
        .into_iter()
        .map(|(k, v)| {
            let highlighted = highlight_on.is_some_and(|h| h.iter().any(|a| covers(a, &k)));
            let value = if highlighted {
                format_value(&v, words, last_is_prefix, pre, post)
            } else {
                format_value(&v, &[], false, pre, post)
            };
            (k, value)
        })
        .collect()
}

fn matches_position(document: &Value, words: &[String], last_is_prefix: bool) -> Value {
    let mut out = Map::new();
    let Some(object) = document.as_object() else {
        return Value::Object(out);
    };
    for (key, value) in object {
        let Value::String(text) = value else { continue };
        let mut positions = Vec::new();
        let mut offset = 0;
        for token in text.split(|c: char| !c.is_alphanumeric()) {
            if !token.is_empty() {
                let lower = token.to_lowercase();
                let len = words.iter().enumerate().find_map(|(i, w)| {
                    if lower == *w {
                        Some(token.len())
                    } else if last_is_prefix
                        && i + 1 == words.len()
                        && lower.starts_with(w.as_str())
                    {
                        Some(w.len())
                    } else {
                        None
                    }
                });
                if let Some(length) = len {
                    positions.push(json!({"start": offset, "length": length}));
                }
            }
            offset += token.len() + 1;
        }
        if !positions.is_empty() {
            out.insert(key.clone(), Value::Array(positions));
        }
    }
    Value::Object(out)
}

/// `facetDistribution` and `facetStats` over `documents`.
pub fn facet_distribution<'a>(
    index: &Index,
    documents: impl Iterator<Item = &'a Value> + Clone,
    facets: &[String],
) -> (Value, Value) {
    let facets: Vec<String> = if facets.iter().any(|f| f == "*") {
        index.setting_list("filterableAttributes")
    } else {
        facets.to_vec()
    };
    let mut distribution = Map::new();
    let mut stats = Map::new();
    for facet in facets {
        let mut values = facet_counts(documents.clone(), &facet);
        let (max_values, sort_by) = facet_order(index, &facet);
        // Meilisearch 1.50: equal counts, the greater value first.
        if sort_by == "count" {
            values.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        }
        values.truncate(max_values);
        distribution.insert(
            facet.clone(),
            Value::Object(values.into_iter().map(|(k, c)| (k, json!(c))).collect()),
        );
        let numbers = documents
            .clone()
            .flat_map(|d| leaves(d, &facet))
            .filter_map(Value::as_f64);
        let (min, max) = numbers.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), n| {
            (lo.min(n), hi.max(n))
        });
        if min.is_finite() {
            stats.insert(facet, json!({"min": min, "max": max}));
        }
    }
    (Value::Object(distribution), Value::Object(stats))
}

/// The index's `faceting` for `facet`: `maxValuesPerFacet` and `sortFacetValuesBy`
/// (`alpha` or `count`).
pub fn facet_order(index: &Index, facet: &str) -> (usize, String) {
    let faceting = index.settings.get("faceting");
    let max_values = faceting
        .and_then(|f| f.get("maxValuesPerFacet"))
        .and_then(Value::as_u64)
        .unwrap_or(100) as usize;
    let sort_by = faceting
        .and_then(|f| f.get("sortFacetValuesBy"))
        .and_then(|b| b.get(facet).or_else(|| b.get("*")))
        .and_then(Value::as_str)
        .unwrap_or("alpha")
        .to_owned();
    (max_values, sort_by)
}

/// How many of `documents` hold each value of `facet`, by normalized (lower-cased) value
/// in its order, each shown in its smallest spelling (so the answer does not depend on the
/// order documents were ranked or stored in).
pub fn facet_counts<'a>(
    documents: impl Iterator<Item = &'a Value>,
    facet: &str,
) -> Vec<(String, u64)> {
    // normalized value → (spelling shown, count)
    let mut counts: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for document in documents {
        let mut seen = HashSet::new();
        for value in leaves(document, facet) {
            let original = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            let key = original.to_lowercase();
            if seen.insert(key.clone()) {
                let entry = counts.entry(key).or_insert((original.clone(), 0));
                if original < entry.0 {
                    entry.0 = original;
                }
                entry.1 += 1;
            }
        }
    }
    counts.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movies() -> Index {
        let mut index = Index::new(Some("id".into()), "now");
        index.apply_settings(json!({"filterableAttributes": ["genre", "year", "id"], "sortableAttributes": ["year"]}).as_object().unwrap());
        index
            .add_documents(
                &[
                    json!({"id": 1, "title": "The Dark Knight", "genre": "Action", "year": 2008}),
                    json!({"id": 2, "title": "Dark Water", "genre": "Horror", "year": 2005}),
                    json!({"id": 3, "title": "Knight and Day", "genre": "Action", "year": 2010}),
                    json!({"id": 4, "title": "Darkness", "genre": "horror", "year": 2002}),
                ],
                None,
                false,
            )
            .unwrap();
        index
    }

    fn run(index: &Index, query: Value) -> Value {
        search("movies", index, query.as_object().unwrap()).unwrap()
    }

    fn ids(response: &Value) -> Vec<u64> {
        response["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn words_then_exactness_then_insertion_order() {
        let index = movies();
        let r = run(
            &index,
            json!({"q": "dark knight", "showRankingScore": true}),
        );
        // With `last`, 1 matches both words and 2 the first; 4's "darkness" is no match
        // for the non-final word "dark".
        assert_eq!(ids(&r), vec![1, 2]);
        let r = run(&index, json!({"q": "dark"}));
        assert_eq!(
            ids(&r),
            vec![1, 2, 4],
            "exact matches before the prefix match"
        );
        assert_eq!(r["estimatedTotalHits"], 3);
    }

    #[test]
    fn scores_depend_only_on_document_and_query() {
        let index = movies();
        let all = run(&index, json!({"q": "dark", "showRankingScore": true}));
        let filtered = run(
            &index,
            json!({"q": "dark", "showRankingScore": true, "filter": "id = 4"}),
        );
        assert_eq!(
            all["hits"][2]["_rankingScore"],
            filtered["hits"][0]["_rankingScore"]
        );
        let scores: Vec<f64> = all["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["_rankingScore"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }

    #[test]
    fn filters_facets_sort_and_pages() {
        let index = movies();
        let r = run(
            &index,
            json!({"filter": "genre = horror", "facets": ["genre", "year"], "sort": ["year:asc"]}),
        );
        assert_eq!(ids(&r), vec![4, 2]);
        assert_eq!(r["facetDistribution"]["genre"], json!({"Horror": 2}));
        assert_eq!(
            r["facetStats"]["year"],
            json!({"min": 2002.0, "max": 2005.0})
        );
        let r = run(&index, json!({"hitsPerPage": 3, "page": 2}));
        assert_eq!(ids(&r), vec![4]);
        assert_eq!(
            (r["totalHits"].as_u64(), r["totalPages"].as_u64()),
            (Some(4), Some(2))
        );
        let err = search(
            "movies",
            &index,
            json!({"filter": "title = x"}).as_object().unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_search_filter");
        assert!(err.message.starts_with("Index `movies`: Attribute `title` is not filterable. Available filterable attributes are: `genre`, `id`, `year`.\n1:6 title = x"), "{}", err.message);
        let err = search(
            "movies",
            &index,
            json!({"sort": ["title:asc"]}).as_object().unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_search_sort");
    }

    #[test]
    fn distinct_keeps_the_best_per_value() {
        let index = movies();
        let r = run(&index, json!({"distinct": "genre"}));
        assert_eq!(ids(&r), vec![1, 2]);
    }

    #[test]
    fn highlights() {
        let index = movies();
        let r = run(
            &index,
            json!({"q": "dar", "attributesToHighlight": ["title"], "filter": "id = 4"}),
        );
        assert_eq!(r["hits"][0]["_formatted"]["title"], "<em>Dar</em>kness");
        assert_eq!(r["hits"][0]["_formatted"]["id"], "4");
    }
}
