//! `…/search` (POST and GET) and `…/facet-search`: the read path ([`crate::read`]) behind
//! Meilisearch's routes.

use super::auth::Caller;
use super::consistency::SettingsFloor;
use super::error::MeiliError;
use super::request_body::JsonBody;
use crate::read::cache;
use crate::read::facets::FacetOrder;
use crate::read::plan::next_turn;
use crate::read::query::{SearchQuery, SearchRoute};
use crate::read::respond::respond;
use crate::read::scatter::{NodeRequest, gather, mark_degraded};
use crate::read::search::run_search;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// `POST /indexes/{uid}/search`.
pub async fn search_post(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    if !cache::cacheable(&state, &body) {
        return search_post_now(state, caller, floor, uid, body).await;
    }
    let key = cache::request_key("search", &caller, floor.0, &body);
    let index = uid.clone();
    let compute = || async {
        search_post_now(state.clone(), caller, floor, uid, body)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    };
    Ok(cache::answer(&state, &[&index], &key, compute).await)
}

async fn search_post_now(
    state: AppState,
    caller: Caller,
    floor: SettingsFloor,
    uid: String,
    body: axum::body::Bytes,
) -> Result<Response, MeiliError> {
    let query = match SearchQuery::from_body(&body, SearchRoute::Search) {
        Ok(query) => query,
        Err(ours) => {
            let path = format!("/indexes/{uid}/search");
            return Ok(super::any_node::post_refusal(&state, &path, &body, ours).await);
        }
    };
    Ok(respond(
        run_search(&state, &caller, floor, &uid, query, true).await,
    ))
}

/// `GET /indexes/{uid}/search`: the query string read as Meilisearch reads it
/// ([`SearchQuery::from_query_string`]).
pub async fn search_get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, MeiliError> {
    let raw_bytes = raw.clone().unwrap_or_default();
    if !cache::cacheable(&state, raw_bytes.as_bytes()) {
        return search_get_now(state, caller, floor, uid, params, raw).await;
    }
    let key = cache::request_key("search?", &caller, floor.0, raw_bytes.as_bytes());
    let index = uid.clone();
    let compute = || async {
        search_get_now(state.clone(), caller, floor, uid, params, raw)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    };
    Ok(cache::answer(&state, &[&index], &key, compute).await)
}

async fn search_get_now(
    state: AppState,
    caller: Caller,
    floor: SettingsFloor,
    uid: String,
    params: HashMap<String, String>,
    raw: Option<String>,
) -> Result<Response, MeiliError> {
    let query = match SearchQuery::from_query_string(params) {
        Ok(query) => query,
        // Meilisearch names the first bad parameter in the query string's order.
        Err(ours) => {
            let path = format!("/indexes/{uid}/search?{}", raw.unwrap_or_default());
            let refusal = super::any_node::refusal(&state, http::Method::GET, &path, None, ours);
            return Ok(refusal.await);
        }
    };
    Ok(respond(
        run_search(&state, &caller, floor, &uid, query, true).await,
    ))
}

/// `POST /indexes/{uid}/facet-search`: each covering node searches the facet values of its
/// own shards; counts are summed per value.
pub async fn facet_search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let mut query = match SearchQuery::from_body(&body, SearchRoute::FacetSearch) {
        Ok(query) => query,
        Err(ours) => {
            let path = format!("/indexes/{uid}/facet-search");
            return Ok(super::any_node::post_refusal(&state, &path, &body, ours).await);
        }
    };
    caller.restrict_search(&uid, &mut query)?;
    let path = format!("/indexes/{uid}/facet-search");
    let request = NodeRequest::Search(&query);
    let gathered = match gather(&state, &uid, next_turn(), floor, &path, request).await {
        Ok(gathered) => gathered,
        Err(failure) => {
            let (status, body) = failure.parts();
            return Ok((status, Json(body)).into_response());
        }
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut processing = 0;
    for answer in &gathered.answers {
        processing = processing.max(answer["processingTimeMs"].as_u64().unwrap_or(0));
        for hit in answer["facetHits"].as_array().into_iter().flatten() {
            if let Some(value) = hit["value"].as_str() {
                *counts.entry(value.to_owned()).or_default() += hit["count"].as_u64().unwrap_or(0);
            }
        }
    }
    // Nodes answer up to Miroir's own limit; the client's index shows its
    // `maxValuesPerFacet` values in the facet's order, as Meilisearch collects them.
    let settings = super::settings::cached(&state, &uid).await;
    let facet = query
        .rest
        .get("facetName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let hits: Vec<Value> = FacetOrder::from_settings(settings.as_deref())
        .keep(facet, counts.into_iter().collect(), true, 0)
        .into_iter()
        .map(|(value, count)| json!({"value": value, "count": count}))
        .collect();
    let facet_query = query.rest.get("facetQuery").cloned().unwrap_or(Value::Null);
    let mut response =
        Json(json!({"facetHits": hits, "facetQuery": facet_query, "processingTimeMs": processing}))
            .into_response();
    mark_degraded(&mut response, &gathered.degraded);
    Ok(response)
}
