//! `POST /multi-search`: each query is a scatter-gather search; with `federation`, the
//! results are merged into one list by weighted ranking score.

use super::error::MeiliError;
use super::indexes::json_object;
use super::scatter::mark_degraded;
use super::search::{FacetOrder, SearchFailure, Searched, merge_facets, run_search};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;

fn inside(position: usize, failure: SearchFailure) -> Response {
    let (status, mut body) = failure.parts();
    if let Some(message) = body.get("message").and_then(Value::as_str) {
        body["message"] = json!(format!("Inside `.queries[{position}]`: {message}"));
    }
    (status, Json(body)).into_response()
}

/// Runs the queries at once (each is a scatter-gather of its own); the answers in the
/// queries' order.
async fn run_all(
    state: &AppState,
    caller: &super::auth::Caller,
    queries: Vec<(String, Map<String, Value>)>,
) -> Vec<Result<Searched, SearchFailure>> {
    let count = queries.len();
    let mut running = tokio::task::JoinSet::new();
    for (position, (uid, query)) in queries.into_iter().enumerate() {
        let (state, caller) = (state.clone(), caller.clone());
        running.spawn(async move {
            let searched = run_search(&state, &caller, &uid, query, false).await;
            (position, searched)
        });
    }
    let mut answers: Vec<Option<Result<Searched, SearchFailure>>> =
        (0..count).map(|_| None).collect();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((position, searched)) => answers[position] = Some(searched),
            Err(error) => tracing::error!(%error, "a multi-search query panicked"),
        }
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                Err(SearchFailure::Miroir(MeiliError::internal(
                    "the query could not be run",
                )))
            })
        })
        .collect()
}

/// `POST /multi-search`.
pub async fn multi_search(
    State(state): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
    body: Bytes,
) -> Result<Response, MeiliError> {
    let body = json_object(&body)?;
    let Some(Value::Array(queries)) = body.get("queries") else {
        return Err(MeiliError::invalid(
            "bad_request",
            "Missing field `queries`",
        ));
    };
    let federation = body.get("federation").filter(|f| !f.is_null()).cloned();
    let mut prepared = Vec::with_capacity(queries.len());
    for (position, query) in queries.iter().enumerate() {
        let Some(mut query) = query.as_object().cloned() else {
            return Err(MeiliError::invalid(
                "bad_request",
                format!("Invalid value type at `.queries[{position}]`: expected an object"),
            ));
        };
        let Some(uid) = query
            .remove("indexUid")
            .and_then(|v| v.as_str().map(str::to_owned))
        else {
            return Err(MeiliError::invalid(
                "missing_index_uid",
                format!("Missing field `indexUid` inside `.queries[{position}]`"),
            ));
        };
        let options = query.remove("federationOptions");
        if federation.is_some() {
            if let Some(field) = ["offset", "limit", "page", "hitsPerPage"]
                .into_iter()
                .find(|f| query.contains_key(*f))
            {
                return Err(MeiliError::invalid(
                    "invalid_multi_search_query_pagination",
                    format!(
                        "Inside `.queries[{position}]`: Using pagination options is not allowed in federated queries.\n - Hint: remove `{field}` from query #{position} or remove `federation` from the request"
                    ),
                ));
            }
            if query.contains_key("facets") {
                return Err(MeiliError::invalid(
                    "invalid_multi_search_query_facets",
                    format!(
                        "Inside `.queries[{position}]`: Using facet options is not allowed in federated queries.\n - Hint: remove `facets` from query #{position} or remove `federation` from the request"
                    ),
                ));
            }
        } else if options.is_some() {
            return Err(MeiliError::invalid(
                "invalid_multi_search_federation_options",
                format!(
                    "Inside `.queries[{position}]`: Using `federationOptions` is not allowed in a non-federated search."
                ),
            ));
        }
        let weight = options
            .as_ref()
            .and_then(|o| o.get("weight"))
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        prepared.push((uid, query, weight));
    }

    let Some(federation) = federation else {
        let uids: Vec<String> = prepared.iter().map(|(uid, _, _)| uid.clone()).collect();
        let queries = prepared.into_iter().map(|(uid, query, _)| (uid, query));
        let answers = run_all(&state, &caller, queries.collect()).await;
        let mut results = Vec::with_capacity(uids.len());
        let mut degraded = Vec::new();
        for (position, (uid, searched)) in uids.into_iter().zip(answers).enumerate() {
            match searched {
                Ok(searched) => {
                    let mut result = Map::new();
                    result.insert("indexUid".into(), json!(uid));
                    result.extend(searched.body);
                    results.push(Value::Object(result));
                    degraded.extend(searched.degraded);
                }
                Err(failure) => return Ok(inside(position, failure)),
            }
        }
        let mut response = (StatusCode::OK, Json(json!({"results": results}))).into_response();
        mark_degraded(&mut response, &degraded);
        return Ok(response);
    };

    let offset = federation
        .get("offset")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let limit = federation
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(20) as usize;
    let facets_by_index = federation
        .get("facetsByIndex")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let merge = federation
        .get("mergeFacets")
        .filter(|m| !m.is_null())
        .is_some();
    let mut hits: Vec<(f64, usize, usize, Value)> = Vec::new();
    let mut total = 0;
    let mut processing = 0;
    let mut facet_answers: Map<String, Value> = Map::new();
    let mut with_facets: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut degraded = Vec::new();
    let mut queries = Vec::with_capacity(prepared.len());
    let mut shown = Vec::with_capacity(prepared.len());
    for (uid, mut query, weight) in prepared {
        let show_score = query
            .get("showRankingScore")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        query.insert("limit".into(), json!(offset + limit));
        query.insert("showRankingScore".into(), json!(true));
        // Facets of an index are computed once, on its first query.
        let facets = facets_by_index.get(&uid).filter(|f| !f.is_null()).cloned();
        if let Some(facets) = &facets
            && with_facets.insert(uid.clone())
        {
            query.insert("facets".into(), facets.clone());
        }
        shown.push((uid.clone(), weight, show_score));
        queries.push((uid, query));
    }
    let answers = run_all(&state, &caller, queries).await;
    for (position, ((uid, weight, show_score), searched)) in
        shown.into_iter().zip(answers).enumerate()
    {
        let searched = match searched {
            Ok(searched) => searched,
            Err(failure) => return Ok(inside(position, failure)),
        };
        degraded.extend(searched.degraded);
        total += searched.body["estimatedTotalHits"].as_u64().unwrap_or(0);
        processing = processing.max(searched.body["processingTimeMs"].as_u64().unwrap_or(0));
        if searched.body.contains_key("facetDistribution") {
            facet_answers.insert(uid.clone(), json!({"distribution": searched.body["facetDistribution"], "stats": searched.body["facetStats"]}));
        }
        for (rank, hit) in searched.body["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let score = hit["_rankingScore"].as_f64().unwrap_or(0.0) * weight;
            let mut hit = hit.clone();
            if let Some(object) = hit.as_object_mut() {
                if !show_score {
                    object.remove("_rankingScore");
                }
                object.insert("_federation".into(), json!({"indexUid": uid, "queriesPosition": position, "weightedRankingScore": score}));
            }
            hits.push((score, position, rank, hit));
        }
    }
    hits.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(Ordering::Equal)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });
    let page: Vec<Value> = hits
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|h| h.3)
        .collect();
    let mut response = json!({"hits": page, "processingTimeMs": processing, "limit": limit, "offset": offset, "estimatedTotalHits": total});
    for uid in facets_by_index.keys() {
        facet_answers
            .entry(uid.clone())
            .or_insert_with(|| json!({"distribution": {}, "stats": {}}));
    }
    if merge {
        let answers: Vec<Value> = facet_answers
            .values()
            .map(|f| json!({"facetDistribution": f["distribution"], "facetStats": f["stats"]}))
            .collect();
        // `mergeFacets.maxValuesPerFacet` (Meilisearch's default 100), alphabetical.
        let order = FacetOrder {
            max_values: federation
                .get("mergeFacets")
                .and_then(|m| m.get("maxValuesPerFacet"))
                .and_then(Value::as_u64)
                .map_or(100, |n| n as usize),
            ..FacetOrder::default()
        };
        let (distribution, stats) = merge_facets(answers.iter(), &order);
        response["facetDistribution"] = distribution;
        response["facetStats"] = stats;
    } else if !facets_by_index.is_empty() {
        response["facetsByIndex"] = Value::Object(facet_answers);
    }
    let mut response = (StatusCode::OK, Json(response)).into_response();
    mark_degraded(&mut response, &degraded);
    Ok(response)
}
