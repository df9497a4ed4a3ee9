//! A search's answer, as one Meilisearch gives it: the merged hits and totals in its key
//! order, a one-node answer passed on with Miroir's field taken out, or the failure.

use super::facets::{FacetOrder, merge_facets};
use super::merge::{Merged, strip_miroir};
use super::plan::SearchPlan;
use super::scatter::{SearchFailure, mark_degraded};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::settings::SHARD_FIELD;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// A merged search answer and the `index/shard`s no live replica could serve.
pub struct Searched {
    /// The response body, in Meilisearch's key order.
    pub body: Map<String, Value>,
    /// The response as a node sent it, Miroir's field removed (then `body` is empty): a
    /// one-node answer passed through without a parse (see [`super::search`]).
    pub raw: Option<Vec<u8>>,
    /// Shards left out (partial results).
    pub degraded: Vec<String>,
}

/// The HTTP answer for a search.
pub fn respond(result: Result<Searched, SearchFailure>) -> Response {
    match result {
        Ok(searched) => {
            let mut response = match searched.raw {
                Some(raw) => (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    raw,
                )
                    .into_response(),
                None => (StatusCode::OK, Json(Value::Object(searched.body))).into_response(),
            };
            mark_degraded(&mut response, &searched.degraded);
            response
        }
        Err(failure) => {
            let (status, body) = failure.parts();
            (status, Json(body)).into_response()
        }
    }
}

/// How long the gateway's own stages of a search took, for `performanceDetails`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    /// From sending to the nodes to their last answer.
    pub waited: Duration,
    /// The merge.
    pub merged: Duration,
    /// The shards a primary key pinned, if it did.
    pub pinned: Option<Pinned>,
}

/// A plan a primary key pinned: `shards` of the index's `of`, planned in `planned_in`.
#[derive(Clone, Copy, Debug)]
pub struct Pinned {
    pub shards: usize,
    pub of: u32,
    pub planned_in: Duration,
}

/// The body of a merged search's answer, in Meilisearch's key order. `request_uid`: a
/// single search has its own; multi-search gives one to the whole request.
pub fn search_body(
    plan: &SearchPlan,
    words: &str,
    merged: Merged,
    timing: Timing,
    request_uid: bool,
) -> Map<String, Value> {
    let mut response = Map::new();
    response.insert("hits".into(), Value::Array(merged.hits));
    response.insert("query".into(), json!(words));
    if let Some(vector) = merged.query_vector {
        response.insert("queryVector".into(), vector);
    }
    response.insert("processingTimeMs".into(), json!(merged.processing_time_ms));
    plan.paging.describe(&mut response, merged.total);
    if let Some((distribution, stats)) = merged.facets {
        response.insert("facetDistribution".into(), distribution);
        response.insert("facetStats".into(), stats);
    }
    if request_uid {
        response.insert("requestUid".into(), json!(self::request_uid()));
    }
    if let Some(mut details) = merged.performance {
        if let Some(pinned) = timing.pinned {
            // The planner's choice, as a stage: its name says it, its time is the plan's.
            details.add(
                &format!(
                    "search > plan > primary key pins {} of {} shards",
                    pinned.shards, pinned.of
                ),
                pinned.planned_in,
            );
        }
        details.add("search > wait for remote results", timing.waited);
        details.add("search > merge results", timing.merged);
        response.insert("performanceDetails".into(), details.to_value());
    }
    if let Some(semantic) = merged.semantic_hits {
        response.insert("semanticHitCount".into(), json!(semantic));
    }
    response
}

/// A one-node answer as the client gets it: without Miroir's field (in hits and facets)
/// and with facet values cut to the index's `maxValuesPerFacet`.
pub fn one_node_answer(body: Value, settings: Option<&Map<String, Value>>) -> Option<Searched> {
    let Value::Object(mut response) = body else {
        return None;
    };
    if let Some(Value::Array(hits)) = response.get_mut("hits") {
        for hit in hits.iter_mut().filter_map(Value::as_object_mut) {
            strip_miroir(hit);
        }
    }
    if let Some(Value::Object(stats)) = response.get_mut("facetStats") {
        stats.remove(SHARD_FIELD);
    }
    if let Some(distribution) = response.get_mut("facetDistribution").map(Value::take) {
        let order = FacetOrder::from_settings(settings);
        let only = json!({ "facetDistribution": distribution });
        let candidates = ["estimatedTotalHits", "totalHits"]
            .iter()
            .find_map(|key| response.get(*key).and_then(Value::as_u64))
            .unwrap_or(0);
        let (distribution, _) = merge_facets(std::iter::once(&only), &order, candidates);
        response.insert("facetDistribution".into(), distribution);
    }
    Some(Searched {
        body: response,
        raw: None,
        degraded: Vec::new(),
    })
}

pub use super::request_uid::request_uid;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_answers_never_show_miroirs_field() {
        let a = json!({"hits": [{"id": 1, "_miroir_shard": 3, "_formatted": {"_miroir_shard": "3"}}],
                       "facetDistribution": {"genre": {"a": 1}, "_miroir_shard": {"3": 1}},
                       "facetStats": {"_miroir_shard": {"min": 3.0, "max": 3.0}}});
        let answer = one_node_answer(a, None).expect("an object");
        assert_eq!(answer.body["hits"], json!([{"id": 1, "_formatted": {}}]));
        assert_eq!(answer.body["facetDistribution"], json!({"genre": {"a": 1}}));
        assert_eq!(answer.body["facetStats"], json!({}));
    }

    #[test]
    fn merged_answers_are_in_meilisearchs_shape() {
        let query = super::super::query::SearchQuery::of(
            json!({"q": "kiwi", "page": 2, "hitsPerPage": 1, "facets": ["g"], "showPerformanceDetails": true}),
        );
        let plan = SearchPlan::new(&query, None, None);
        let merged = Merged {
            hits: vec![json!({"id": 2})],
            total: 3,
            semantic_hits: Some(0),
            facets: Some((json!({"g": {"x": 3}}), json!({}))),
            processing_time_ms: 4,
            query_vector: None,
            performance: Some(Default::default()),
        };
        let body = search_body(&plan, query.words(), merged, Timing::default(), false);
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "hits",
                "query",
                "processingTimeMs",
                "hitsPerPage",
                "page",
                "totalPages",
                "totalHits",
                "facetDistribution",
                "facetStats",
                "performanceDetails",
                "semanticHitCount"
            ]
        );
        assert_eq!(body["totalPages"], 3);
        assert_eq!(body["query"], "kiwi");
    }
}
