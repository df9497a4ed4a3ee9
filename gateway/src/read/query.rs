//! A search as the gateway reads it: one [`SearchQuery`] for search, multi-search, facet
//! search and similar documents. The members Miroir reads or rewrites (paging, scores,
//! sort, distinct, facets, the filter) are typed; everything else stays as the client
//! sent it, in `rest`, and goes to the nodes unchanged. Parsing checks each typed member
//! as Meilisearch does, with its error code and message, in the body's order.

use crate::api::error::{MeiliError, json_kind};
use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// A typed member: absent (or `null`, which Meilisearch takes for absent), of its type,
/// or of another type, kept as sent for the nodes to refuse where Miroir does not check it
/// (a member a route does not know).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Member<T> {
    /// Not in the query, or `null`.
    #[default]
    Absent,
    /// Of the member's type.
    Given(T),
    /// Of another type: sent on as it came.
    Other(Value),
}

impl<T> Member<T> {
    /// Whether the query has no value for it.
    pub fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    /// The typed value, when there is one.
    pub fn get(&self) -> Option<&T> {
        match self {
            Self::Given(value) => Some(value),
            _ => None,
        }
    }
}

impl<T: Serialize> Member<T> {
    /// The member as sent on to a node, when it is given.
    pub fn to_json(&self) -> Option<Value> {
        match self {
            Self::Absent => None,
            Self::Given(value) => serde_json::to_value(value).ok(),
            Self::Other(value) => Some(value.clone()),
        }
    }
}

impl<T: Copy> Member<T> {
    /// The typed value, or `default`.
    pub fn or(&self, default: T) -> T {
        self.get().copied().unwrap_or(default)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Member<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Self::Absent);
        }
        Ok(match T::deserialize(&value) {
            Ok(typed) => Self::Given(typed),
            Err(_) => Self::Other(value),
        })
    }
}

impl<T: Serialize> Serialize for Member<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Absent => serializer.serialize_none(),
            Self::Given(value) => value.serialize(serializer),
            Self::Other(value) => value.serialize(serializer),
        }
    }
}

/// One search (a query of a multi-search, a facet search, a similar-documents search).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchQuery {
    /// The query words.
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub q: Member<String>,
    /// Hits skipped (offset mode).
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub offset: Member<usize>,
    /// Hits shown (offset mode).
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub limit: Member<usize>,
    /// The page shown (page mode).
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub page: Member<usize>,
    /// Hits per page (page mode).
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub hits_per_page: Member<usize>,
    /// `attr:asc|desc` rules.
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub sort: Member<Vec<String>>,
    /// The attributes shown in hits.
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub attributes_to_retrieve: Member<Vec<String>>,
    /// The facets counted.
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub facets: Member<Vec<String>>,
    /// The attribute hits are made distinct by (else the index's setting).
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub distinct: Member<String>,
    /// Whether hits show `_rankingScore`.
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub show_ranking_score: Member<bool>,
    /// Whether hits show `_rankingScoreDetails`.
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub show_ranking_score_details: Member<bool>,
    /// Whether the answer shows `performanceDetails`.
    #[serde(skip_serializing_if = "Member::is_absent")]
    pub show_performance_details: Member<bool>,
    /// The client's filter; each node gets its shards ANDed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// Hybrid search (`embedder`, `semanticRatio`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hybrid: Option<Value>,
    /// Every other member, as sent.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
    /// The typed members of another type, in the body's order: the first a route checks
    /// is the one its error names.
    #[serde(skip)]
    others: Vec<&'static str>,
}

/// One typed member read from a body, remembered when it is of another type.
fn member<'de, T: DeserializeOwned, A: MapAccess<'de>>(
    map: &mut A,
    name: &'static str,
    others: &mut Vec<&'static str>,
) -> Result<Member<T>, A::Error> {
    let member: Member<T> = map.next_value()?;
    if matches!(member, Member::Other(_)) {
        others.push(name);
    }
    Ok(member)
}

/// Read in one pass over the body's members, in its order, straight from the request's
/// bytes (or from a query of a multi-search): no intermediate map.
impl<'de> Deserialize<'de> for SearchQuery {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = SearchQuery;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a search query object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SearchQuery, A::Error> {
                let mut q = SearchQuery::default();
                let mut others = Vec::new();
                let o = &mut others;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "q" => q.q = member(&mut map, "q", o)?,
                        "offset" => q.offset = member(&mut map, "offset", o)?,
                        "limit" => q.limit = member(&mut map, "limit", o)?,
                        "page" => q.page = member(&mut map, "page", o)?,
                        "hitsPerPage" => q.hits_per_page = member(&mut map, "hitsPerPage", o)?,
                        "sort" => q.sort = member(&mut map, "sort", o)?,
                        "attributesToRetrieve" => {
                            q.attributes_to_retrieve = member(&mut map, "attributesToRetrieve", o)?
                        }
                        "facets" => q.facets = member(&mut map, "facets", o)?,
                        "distinct" => q.distinct = member(&mut map, "distinct", o)?,
                        "showRankingScore" => {
                            q.show_ranking_score = member(&mut map, "showRankingScore", o)?
                        }
                        "showRankingScoreDetails" => {
                            q.show_ranking_score_details =
                                member(&mut map, "showRankingScoreDetails", o)?
                        }
                        "showPerformanceDetails" => {
                            q.show_performance_details =
                                member(&mut map, "showPerformanceDetails", o)?
                        }
                        "filter" => {
                            q.filter = Some(map.next_value::<Value>()?).filter(|f| !f.is_null())
                        }
                        "hybrid" => {
                            q.hybrid = Some(map.next_value::<Value>()?).filter(|h| !h.is_null())
                        }
                        _ => {
                            let value = map.next_value::<Value>()?;
                            q.rest.insert(key, value);
                        }
                    }
                }
                q.others = others;
                Ok(q)
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// What a member must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    PositiveInteger,
    Boolean,
    String,
    Strings,
}

/// Which route a search came by: it decides the error codes, and which members are checked
/// here (the others are left to the nodes, which refuse a member their route lacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchRoute {
    /// `…/search` and the queries of `/multi-search`.
    Search,
    /// `…/facet-search`.
    FacetSearch,
    /// `…/similar`.
    Similar,
}

impl SearchRoute {
    /// The kind and error code of a member this route checks.
    fn member(self, name: &str) -> Option<(Kind, &'static str)> {
        use Kind::*;
        let search = match name {
            "q" => (String, "invalid_search_q"),
            "offset" => (PositiveInteger, "invalid_search_offset"),
            "limit" => (PositiveInteger, "invalid_search_limit"),
            "page" => (PositiveInteger, "invalid_search_page"),
            "hitsPerPage" => (PositiveInteger, "invalid_search_hits_per_page"),
            "sort" => (Strings, "invalid_search_sort"),
            "attributesToRetrieve" => (Strings, "invalid_search_attributes_to_retrieve"),
            "facets" => (Strings, "invalid_search_facets"),
            "distinct" => (String, "invalid_search_distinct"),
            "showRankingScore" => (Boolean, "invalid_search_show_ranking_score"),
            "showRankingScoreDetails" => (Boolean, "invalid_search_show_ranking_score_details"),
            "showPerformanceDetails" => (Boolean, "invalid_search_show_performance_details"),
            _ => return None,
        };
        match self {
            Self::Search => Some(search),
            Self::FacetSearch => (name == "q").then_some(search),
            Self::Similar => Some(match name {
                "offset" => (PositiveInteger, "invalid_similar_offset"),
                "limit" => (PositiveInteger, "invalid_similar_limit"),
                "attributesToRetrieve" => (Strings, "invalid_similar_attributes_to_retrieve"),
                "showRankingScore" => (Boolean, "invalid_similar_show_ranking_score"),
                "showRankingScoreDetails" => {
                    (Boolean, "invalid_similar_show_ranking_score_details")
                }
                "showPerformanceDetails" => (Boolean, "invalid_similar_show_performance_details"),
                _ => return None,
            }),
        }
    }
}

/// Meilisearch's refusal of `value` at `at` (`.limit`, `.queries[0].sort[1]`).
fn wrong_type(at: &str, expected: &str, value: &Value, code: &'static str) -> MeiliError {
    MeiliError::invalid(
        code,
        format!(
            "Invalid value type at `{at}`: expected {expected}, but found {}: `{value}`",
            json_kind(value)
        ),
    )
}

/// Checks `value` is of `kind` (`null` is absent, so it passes).
fn check(value: &Value, kind: Kind, at: &str, code: &'static str) -> Result<(), MeiliError> {
    let ok = match (kind, value) {
        (_, Value::Null) => true,
        (Kind::PositiveInteger, v) => v.is_u64(),
        (Kind::Boolean, v) => v.is_boolean(),
        (Kind::String, v) => v.is_string(),
        (Kind::Strings, Value::Array(items)) => {
            return match items.iter().position(|item| !item.is_string()) {
                None => Ok(()),
                Some(i) => Err(wrong_type(
                    &format!("{at}[{i}]"),
                    "a string",
                    &items[i],
                    code,
                )),
            };
        }
        (Kind::Strings, _) => false,
    };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        Kind::PositiveInteger => "a positive integer",
        Kind::Boolean => "a boolean",
        Kind::String => "a string",
        Kind::Strings => "an array",
    };
    Err(wrong_type(at, expected, value, code))
}

impl SearchQuery {
    /// Reads a search body that came by `route`; `at` is where it sits in the request
    /// (empty for a body of its own, `.queries[2]` in a multi-search).
    pub fn parse(
        body: Map<String, Value>,
        route: SearchRoute,
        at: &str,
    ) -> Result<Self, MeiliError> {
        Self::unchecked(body).checked(route, at)
    }

    /// Reads a search body straight from the request's bytes, with Meilisearch's errors
    /// for a body that is missing or no JSON object.
    pub fn from_body(body: &bytes::Bytes, route: SearchRoute) -> Result<Self, MeiliError> {
        match serde_json::from_slice::<Self>(body) {
            Ok(query) => query.checked(route, ""),
            // The error a body that is no object gets, read as `json_object` reads it.
            Err(_) => Self::parse(crate::api::request_body::json_object(body)?, route, ""),
        }
    }

    /// The query, or Meilisearch's error for its first member of another type that
    /// `route` checks.
    fn checked(self, route: SearchRoute, at: &str) -> Result<Self, MeiliError> {
        for name in &self.others {
            let Some((kind, code)) = route.member(name) else {
                continue;
            };
            if let Some(value) = self.member_json(name) {
                check(&value, kind, &format!("{at}.{name}"), code)?;
            }
        }
        Ok(self)
    }

    /// A typed member as sent.
    fn member_json(&self, name: &str) -> Option<Value> {
        match name {
            "q" => self.q.to_json(),
            "offset" => self.offset.to_json(),
            "limit" => self.limit.to_json(),
            "page" => self.page.to_json(),
            "hitsPerPage" => self.hits_per_page.to_json(),
            "sort" => self.sort.to_json(),
            "attributesToRetrieve" => self.attributes_to_retrieve.to_json(),
            "facets" => self.facets.to_json(),
            "distinct" => self.distinct.to_json(),
            "showRankingScore" => self.show_ranking_score.to_json(),
            "showRankingScoreDetails" => self.show_ranking_score_details.to_json(),
            "showPerformanceDetails" => self.show_performance_details.to_json(),
            _ => None,
        }
    }

    /// A search read without checks: members of another type are kept as sent, for the
    /// nodes to refuse (a `GET` whose parameters a node has checked already).
    pub fn unchecked(body: Map<String, Value>) -> Self {
        serde_json::from_value(Value::Object(body)).unwrap_or_default()
    }

    /// A search body given as JSON, checked as `…/search` checks it (tests).
    #[cfg(test)]
    pub fn of(body: Value) -> Self {
        let Value::Object(body) = body else {
            panic!("a search body is an object")
        };
        Self::parse(body, SearchRoute::Search, "").expect("a valid search")
    }

    /// The query as JSON, as a node gets it.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }

    /// Whether any paging member is given (refused in a federated query).
    pub fn paging_member(&self) -> Option<&'static str> {
        [
            ("offset", self.offset.is_absent()),
            ("limit", self.limit.is_absent()),
            ("page", self.page.is_absent()),
            ("hitsPerPage", self.hits_per_page.is_absent()),
        ]
        .into_iter()
        .find(|(_, absent)| !absent)
        .map(|(name, _)| name)
    }

    /// The paging asked for.
    pub fn paging(&self) -> Paging {
        Paging::new(
            self.offset.get().copied(),
            self.limit.get().copied(),
            self.page.get().copied(),
            self.hits_per_page.get().copied(),
        )
    }

    /// The query words, as the answer's `query` shows them.
    pub fn words(&self) -> &str {
        self.q.get().map_or("", String::as_str)
    }

    /// Whether facets are asked for.
    pub fn asks_facets(&self) -> bool {
        !self.facets.is_absent()
    }

    /// Whether the query names facets (an empty list names none).
    pub fn names_facets(&self) -> bool {
        match &self.facets {
            Member::Absent => false,
            Member::Given(facets) => !facets.is_empty(),
            Member::Other(_) => true,
        }
    }

    /// Whether this is a hybrid search.
    pub fn is_hybrid(&self) -> bool {
        self.hybrid.as_ref().is_some_and(|h| !h.is_null())
    }

    /// The sort rules, each with whether it is ascending.
    pub fn sort_rules(&self) -> Vec<(&str, bool)> {
        self.sort
            .get()
            .into_iter()
            .flatten()
            .filter_map(|rule| rule.rsplit_once(':').map(|(f, d)| (f, d == "asc")))
            .collect()
    }

    /// A `GET …/search` query string in the POST body's shape, as Meilisearch reads it:
    /// numbers, booleans, comma-separated lists; `sort` keeps `_geoPoint(lat,lng)` whole; a
    /// `filter` that parses as JSON is JSON; `hybridEmbedder` and `hybridSemanticRatio`
    /// make `hybrid`.
    pub fn from_query_string(params: HashMap<String, String>) -> Result<Self, MeiliError> {
        let mut query = Map::new();
        let mut hybrid = HashMap::new();
        for (key, value) in params {
            let list = |v: &str| Value::Array(v.split(',').map(|s| json!(s.trim())).collect());
            let parsed = match key.as_str() {
                "offset" | "limit" | "page" | "hitsPerPage" | "cropLength" => json!(
                    crate::api::error::positive_integer::<u64>(&key, &value, get_code(&key))?
                ),
                "rankingScoreThreshold" => json!(value.parse::<f64>().map_err(|_| {
                    MeiliError::invalid(
                        "invalid_search_ranking_score_threshold",
                        format!("Invalid value in parameter `rankingScoreThreshold`: could not parse `{value}` as a float"),
                    )
                })?),
                "showRankingScore" | "showRankingScoreDetails" | "showMatchesPosition"
                | "showPerformanceDetails" | "retrieveVectors" => {
                    json!(value.parse::<bool>().map_err(|_| MeiliError::invalid(
                        get_code(&key),
                        format!("Invalid value in parameter `{key}`: could not parse `{value}` as a boolean, expected either `true` or `false`")
                    ))?)
                }
                "attributesToRetrieve" | "attributesToCrop" | "attributesToHighlight"
                | "facets" | "attributesToSearchOn" | "locales" => list(&value),
                "sort" => sort_list(&value),
                "filter" => serde_json::from_str(&value).unwrap_or(json!(value)),
                "vector" => {
                    let numbers: Result<Vec<f32>, _> =
                        value.split(',').map(|n| n.trim().parse::<f32>()).collect();
                    json!(numbers.map_err(|_| MeiliError::invalid(
                        "invalid_search_vector",
                        format!("Invalid value in parameter `vector`: could not parse `{value}` as a list of floats")
                    ))?)
                }
                // Folded into `hybrid` below, as Meilisearch does.
                "hybridEmbedder" | "hybridSemanticRatio" => {
                    hybrid.insert(key, value);
                    continue;
                }
                _ => json!(value),
            };
            query.insert(key, parsed);
        }
        if let Some(hybrid) = hybrid_from_query_string(&hybrid)? {
            query.insert("hybrid".into(), hybrid);
        }
        if query.contains_key("vector") && !query.contains_key("hybrid") {
            return Err(MeiliError::invalid(
                "missing_search_hybrid",
                "`hybridEmbedder` is mandatory when `vector` is present",
            ));
        }
        Self::parse(query, SearchRoute::Search, "")
    }
}

/// A `sort` parameter split at its top-level commas.
fn sort_list(value: &str) -> Value {
    let (mut items, mut current, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(json!(current.trim()));
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        items.push(json!(current.trim()));
    }
    Value::Array(items)
}

/// `hybrid` from `hybridEmbedder` and `hybridSemanticRatio` (default 0.5), as Meilisearch
/// builds it for a GET search.
fn hybrid_from_query_string(params: &HashMap<String, String>) -> Result<Option<Value>, MeiliError> {
    let ratio = match params.get("hybridSemanticRatio") {
        None => 0.5,
        Some(value) => match value.parse::<f32>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
            _ => {
                return Err(MeiliError::invalid(
                    "invalid_search_semantic_ratio",
                    format!(
                        "Invalid value in parameter `hybridSemanticRatio`: `{value}` is not a float between `0.0` and `1.0`"
                    ),
                ));
            }
        },
    };
    match params.get("hybridEmbedder") {
        Some(embedder) => Ok(Some(json!({"embedder": embedder, "semanticRatio": ratio}))),
        None if params.contains_key("hybridSemanticRatio") => Err(MeiliError::invalid(
            "invalid_search_hybrid_query",
            "`hybridEmbedder` is mandatory when `hybridSemanticRatio` is present",
        )),
        None => Ok(None),
    }
}

fn get_code(key: &str) -> &'static str {
    match key {
        "offset" => "invalid_search_offset",
        "limit" => "invalid_search_limit",
        "page" => "invalid_search_page",
        "hitsPerPage" => "invalid_search_hits_per_page",
        "cropLength" => "invalid_search_crop_length",
        "showRankingScore" => "invalid_search_show_ranking_score",
        "showRankingScoreDetails" => "invalid_search_show_ranking_score_details",
        "showMatchesPosition" => "invalid_search_show_matches_position",
        "showPerformanceDetails" => "invalid_search_show_performance_details",
        _ => "invalid_search_retrieve_vectors",
    }
}

/// Which hits a search shows: Meilisearch's `offset`/`limit`, or `page`/`hitsPerPage`
/// when either is given (a search's or a federation's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// `offset` and `limit` (defaults 0 and 20); the answer estimates its total.
    Offset {
        /// Hits skipped.
        offset: usize,
        /// Hits shown.
        limit: usize,
    },
    /// `page` and `hitsPerPage` (defaults 1 and 20); the answer counts exactly.
    Pages {
        /// The page shown, from 1 (0 shows nothing).
        page: usize,
        /// Hits per page.
        hits_per_page: usize,
    },
}

/// Meilisearch's default `limit` and `hitsPerPage`.
const DEFAULT_HITS: usize = 20;

impl Paging {
    /// The paging of these members (absent ones at their defaults).
    pub fn new(
        offset: Option<usize>,
        limit: Option<usize>,
        page: Option<usize>,
        hits_per_page: Option<usize>,
    ) -> Self {
        if page.is_some() || hits_per_page.is_some() {
            Self::Pages {
                page: page.unwrap_or(1),
                hits_per_page: hits_per_page.unwrap_or(DEFAULT_HITS),
            }
        } else {
            Self::Offset {
                offset: offset.unwrap_or(0),
                limit: limit.unwrap_or(DEFAULT_HITS),
            }
        }
    }

    /// A federation's paging (its `offset`, `limit`, `page`, `hitsPerPage`), checked as
    /// Meilisearch checks them at `.federation.…`.
    pub fn of_federation(federation: &Value) -> Result<Self, MeiliError> {
        let number = |name: &str, code: &'static str| -> Result<Option<usize>, MeiliError> {
            match federation.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => {
                    check(
                        value,
                        Kind::PositiveInteger,
                        &format!(".federation.{name}"),
                        code,
                    )?;
                    Ok(value.as_u64().map(|n| n as usize))
                }
            }
        };
        Ok(Self::new(
            number("offset", "invalid_search_offset")?,
            number("limit", "invalid_search_limit")?,
            number("page", "invalid_search_page")?,
            number("hitsPerPage", "invalid_search_hits_per_page")?,
        ))
    }

    /// The hits shown: how many are skipped, how many taken. Saturating: paging values
    /// may be anything up to 2^64 - 1, and a wrap would show another page.
    pub fn window(&self) -> (usize, usize) {
        match *self {
            Self::Offset { offset, limit } => (offset, limit),
            Self::Pages { page: 0, .. } => (0, 0),
            Self::Pages {
                page,
                hits_per_page,
            } => ((page - 1).saturating_mul(hits_per_page), hits_per_page),
        }
    }

    /// How many of the best hits must be known to show the window.
    pub fn required(&self) -> usize {
        let (skip, take) = self.window();
        skip.saturating_add(take)
    }

    /// The paging members of the answer, with its `total`.
    pub fn describe(&self, response: &mut Map<String, Value>, total: u64) {
        match *self {
            Self::Offset { offset, limit } => {
                response.insert("limit".into(), json!(limit));
                response.insert("offset".into(), json!(offset));
                response.insert("estimatedTotalHits".into(), json!(total));
            }
            Self::Pages {
                page,
                hits_per_page,
            } => {
                let pages = if hits_per_page == 0 {
                    0
                } else {
                    total.div_ceil(hits_per_page as u64)
                };
                response.insert("hitsPerPage".into(), json!(hits_per_page));
                response.insert("page".into(), json!(page));
                response.insert("totalPages".into(), json!(pages));
                response.insert("totalHits".into(), json!(total));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<SearchQuery, MeiliError> {
        SearchQuery::parse(body.as_object().unwrap().clone(), SearchRoute::Search, "")
    }

    #[test]
    fn typed_members_are_read_and_the_rest_kept_as_sent() {
        let query = parse(json!({
            "q": "kiwi", "limit": 5, "page": null, "sort": ["year:desc"],
            "showRankingScore": true, "cropLength": 7, "filter": "a = 1"
        }))
        .unwrap();
        assert_eq!(query.words(), "kiwi");
        assert_eq!(query.limit, Member::Given(5));
        assert!(query.page.is_absent(), "null is absent, as in Meilisearch");
        assert_eq!(
            query.paging(),
            Paging::Offset {
                offset: 0,
                limit: 5
            }
        );
        assert_eq!(query.sort_rules(), [("year", false)]);
        assert_eq!(query.rest["cropLength"], 7);
        assert_eq!(
            query.to_json(),
            json!({"q": "kiwi", "limit": 5, "sort": ["year:desc"],
                   "showRankingScore": true, "filter": "a = 1", "cropLength": 7})
        );
    }

    #[test]
    fn bad_values_get_meilisearchs_errors_in_the_bodys_order() {
        let error = parse(json!({"showRankingScore": "yes"})).unwrap_err();
        assert_eq!(error.code, "invalid_search_show_ranking_score");
        assert_eq!(
            error.message,
            "Invalid value type at `.showRankingScore`: expected a boolean, but found a string: `\"yes\"`"
        );
        let error = parse(json!({"limit": -1})).unwrap_err();
        assert_eq!(
            error.message,
            "Invalid value type at `.limit`: expected a positive integer, but found a negative integer: `-1`"
        );
        let error = parse(json!({"sort": ["a:asc", 1]})).unwrap_err();
        assert_eq!(
            (error.code, error.message.as_str()),
            (
                "invalid_search_sort",
                "Invalid value type at `.sort[1]`: expected a string, but found a positive integer: `1`"
            )
        );
        let error = parse(json!({"facets": "x"})).unwrap_err();
        assert_eq!(
            error.message,
            "Invalid value type at `.facets`: expected an array, but found a string: `\"x\"`"
        );
        // The first bad member in the body's order is the one named.
        let error = parse(json!({"q": 3, "limit": "x"})).unwrap_err();
        assert_eq!(error.code, "invalid_search_q");
        let body = json!({"limit": "x"}).as_object().unwrap().clone();
        let error =
            SearchQuery::parse(body.clone(), SearchRoute::Search, ".queries[2]").unwrap_err();
        assert!(
            error
                .message
                .starts_with("Invalid value type at `.queries[2].limit`")
        );
        let error = SearchQuery::parse(body.clone(), SearchRoute::Similar, "").unwrap_err();
        assert_eq!(error.code, "invalid_similar_limit");
        // Facet search has no paging: its nodes refuse the member as Meilisearch does.
        let query = SearchQuery::parse(body, SearchRoute::FacetSearch, "").unwrap();
        assert_eq!(query.limit, Member::Other(json!("x")));
        assert_eq!(query.to_json(), json!({"limit": "x"}));
    }

    #[test]
    fn a_body_is_read_from_its_bytes_with_meilisearchs_errors() {
        let read = |body: &str| {
            SearchQuery::from_body(&bytes::Bytes::from(body.to_owned()), SearchRoute::Search)
        };
        assert_eq!(read("").unwrap_err().code, "missing_payload");
        let query = read(r#"{"q": "a", "filter": null, "hybrid": null, "x": [1]}"#).unwrap();
        assert_eq!(query.to_json(), json!({"q": "a", "x": [1]}));
        assert_eq!(read("[1]").unwrap_err().code, "bad_request");
        assert_eq!(read("{").unwrap_err().code, "malformed_payload");
        let error = read(r#"{"sort": "x", "limit": "y"}"#).unwrap_err();
        assert_eq!(
            error.code, "invalid_search_sort",
            "the first in the body's order"
        );
        let error = read(r#"{"limit": "y", "sort": "x"}"#).unwrap_err();
        assert_eq!(error.code, "invalid_search_limit");
    }

    #[test]
    fn paging_windows_and_answers() {
        let pages = |page, per| Paging::new(None, None, Some(page), Some(per));
        assert_eq!(pages(3, 10).window(), (20, 10));
        assert_eq!(pages(0, 10).window(), (0, 0));
        assert_eq!(pages(usize::MAX, 2).required(), usize::MAX, "saturates");
        assert_eq!(Paging::new(Some(5), None, None, None).window(), (5, 20));
        assert_eq!(
            Paging::new(None, None, None, Some(7)),
            Paging::Pages {
                page: 1,
                hits_per_page: 7
            }
        );
        let mut answer = Map::new();
        pages(1, 0).describe(&mut answer, 12);
        assert_eq!(answer["totalPages"], 0);
        pages(2, 5).describe(&mut answer, 12);
        assert_eq!(
            Value::Object(answer),
            json!({"hitsPerPage": 5, "page": 2, "totalPages": 3, "totalHits": 12})
        );
        let error = Paging::of_federation(&json!({"limit": "x"})).unwrap_err();
        assert_eq!(
            error.message,
            "Invalid value type at `.federation.limit`: expected a positive integer, but found a string: `\"x\"`"
        );
    }

    #[test]
    fn a_get_search_builds_hybrid_as_meilisearch_does() {
        let params = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let query = SearchQuery::from_query_string(params(&[
            ("hybridEmbedder", "e"),
            ("sort", "_geoPoint(1,2):asc,year:desc"),
            ("limit", "3"),
        ]))
        .unwrap();
        assert_eq!(
            query.hybrid,
            Some(json!({"embedder": "e", "semanticRatio": 0.5}))
        );
        assert_eq!(
            query.sort,
            Member::Given(vec!["_geoPoint(1,2):asc".into(), "year:desc".into()])
        );
        assert_eq!(query.limit, Member::Given(3));
        let error =
            SearchQuery::from_query_string(params(&[("hybridSemanticRatio", "0.3")])).unwrap_err();
        assert_eq!(error.code, "invalid_search_hybrid_query");
        let error = SearchQuery::from_query_string(params(&[("vector", "1,2")])).unwrap_err();
        assert_eq!(error.code, "missing_search_hybrid");
        let error = SearchQuery::from_query_string(params(&[
            ("hybridEmbedder", "e"),
            ("hybridSemanticRatio", "2"),
        ]))
        .unwrap_err();
        assert_eq!(error.code, "invalid_search_semantic_ratio");
    }
}
