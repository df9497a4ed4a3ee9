//! `GET` and `POST /indexes/{uid}/similar`: documents like one document, by an embedder.
//!
//! Only the node holding the document's shard knows its embedding, and a node's own
//! `similar` sees only its documents. So the owner answers the client's request first (its
//! refusals are Meilisearch's own: unknown document, embedder, bad parameters), the
//! document's embedding is read from it, and every covering node runs a vector search with
//! it over its shards; the hits are merged by similarity without the document itself, as
//! Meilisearch's `similar` leaves it out.

use super::auth::Caller;
use super::consistency::SettingsFloor;
use super::error::{ErrorType, MeiliError};
use super::indexes::index_in;
use super::request_body::{JsonBody, json_object};
use crate::read::merge::{as_asked, primary_key_order};
use crate::read::plan::next_turn;
use crate::read::query::{SearchQuery, SearchRoute};
use crate::read::scatter::{NodeRequest, SearchFailure, gather, mark_degraded};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http::Method;
use miroir_proto::placement::shard_for_key;
use serde_json::{Map, Value, json};
use std::cmp::Ordering;

/// `POST /indexes/{uid}/similar`.
pub async fn similar_post(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let query = json_object(&body)?;
    let owner_body = Value::Object(query.clone());
    let query = SearchQuery::parse(query, SearchRoute::Similar, "")?;
    let path = format!("/indexes/{uid}/similar");
    let request = (Method::POST, path, Some(owner_body));
    Ok(similar(&state, &caller, floor, &uid, query, request)
        .await
        .unwrap_or_else(SearchFailure::into_response))
}

/// `GET /indexes/{uid}/similar?id=…&embedder=…`.
pub async fn similar_get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    RawQuery(raw): RawQuery,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let raw = raw.unwrap_or_default();
    // Unchecked: the owner's answer to the `GET` itself refuses a bad parameter with
    // Meilisearch's words for a query string.
    let query = SearchQuery::unchecked(from_query_string(pairs));
    let path = format!("/indexes/{uid}/similar?{raw}");
    similar(
        &state,
        &caller,
        floor,
        &uid,
        query,
        (Method::GET, path, None),
    )
    .await
    .unwrap_or_else(SearchFailure::into_response)
}

/// The body a `GET` stands for, as Meilisearch reads its parameters (comma lists, booleans,
/// numbers). Values it would refuse are left as strings: the owner's answer to the `GET`
/// itself has already refused them by then.
fn from_query_string(pairs: Vec<(String, String)>) -> Map<String, Value> {
    let mut query = Map::new();
    for (key, value) in pairs {
        let typed = match key.as_str() {
            // Trimmed, as for a search's comma lists.
            "attributesToRetrieve" => json!(value.split(',').map(str::trim).collect::<Vec<_>>()),
            "offset" | "limit" => value.parse::<u64>().map_or(json!(value), |n| json!(n)),
            "rankingScoreThreshold" => value.parse::<f64>().map_or(json!(value), |n| json!(n)),
            "retrieveVectors"
            | "showRankingScore"
            | "showRankingScoreDetails"
            | "showPerformanceDetails" => value.parse::<bool>().map_or(json!(value), |b| json!(b)),
            _ => json!(value),
        };
        query.insert(key, typed);
    }
    query
}

async fn similar(
    state: &AppState,
    caller: &Caller,
    floor: SettingsFloor,
    uid: &str,
    mut query: SearchQuery,
    owner_request: (Method, String, Option<Value>),
) -> Result<Response, SearchFailure> {
    caller.restrict_search(uid, &mut query)?;
    let (_pin, topology) = state.topology.pin();
    let index = index_in(&topology, uid)?.clone();
    // The document's id as Meilisearch reads it: a string or an integer.
    let id = match query.rest.get("id") {
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Number(id)) => Some(id.to_string()),
        _ => None,
    };
    // Its shard's live owners; without an id, any live node (which refuses the request
    // as one Meilisearch would). No live owner is a 503 below, not the "not found" a node
    // without the document would answer.
    let owners: Vec<(String, String)> = match id.as_deref() {
        Some(id) => {
            let shard = shard_for_key(id, index.shard_count).0 as usize;
            super::document_reads::live_owners(&topology, &index, shard)
        }
        None => topology
            .nodes
            .iter()
            .filter(|n| n.serves())
            .map(|n| (n.id.clone(), n.address.clone()))
            .collect(),
    };
    let (method, path, body) = owner_request;
    let owner_answer =
        crate::nodes::in_turn(state.config.node_timeout, owners, |(node, address)| {
            let (method, path, body) = (method.clone(), path.clone(), body.clone());
            async move {
                let answer = state
                    .nodes
                    .call(&node, &address, method, &path, body.as_ref())
                    .await
                    .map_err(|unreachable| unreachable.error())?;
                if answer.status >= 500 {
                    return Err(answer.body);
                }
                Ok((node, address, answer))
            }
        })
        .await;
    let (owner, address, answer) = owner_answer.map_err(|last| {
        SearchFailure::Miroir(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_shard_unavailable",
            ErrorType::System,
            last.and_then(|e| e["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| {
                    format!("no live replica holds the document's shard in index `{uid}`")
                }),
        ))
    })?;
    if answer.status != 200 {
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
        return Err(SearchFailure::Node(status, answer.body));
    }
    // Checked by the owner: an id and an embedder it knows.
    let id = id.unwrap_or_default();
    let embedder = query
        .rest
        .get("embedder")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let vector = embedding_of(state, &owner, &address, uid, &id, &embedder).await?;

    let (offset, limit) = (query.offset.or(0), query.limit.or(20));
    let (show_score, show_details) = (
        query.show_ranking_score.or(false),
        query.show_ranking_score_details.or(false),
    );
    let primary_key = index.primary_key.clone().unwrap_or_else(|| "id".into());

    let (hits, total, processing, degraded) = match vector {
        // Without an embedding Meilisearch finds nothing alike, and counts what the
        // filter leaves but the document.
        None => {
            let mut count = Map::new();
            count.insert("limit".into(), json!(0));
            let gathered =
                gather_or_respond(state, uid, floor, &count, query.filter.as_ref()).await?;
            let total: u64 = gathered
                .answers
                .iter()
                .filter_map(|a| a["estimatedTotalHits"].as_u64())
                .sum();
            (Vec::new(), total.saturating_sub(1), 0, gathered.degraded)
        }
        Some(vector) => {
            let mut search = Map::new();
            search.insert("vector".into(), vector);
            search.insert(
                "hybrid".into(),
                json!({"embedder": embedder, "semanticRatio": 1.0}),
            );
            // One more: the document itself comes back, and is left out.
            search.insert(
                "limit".into(),
                json!(offset.saturating_add(limit).saturating_add(1)),
            );
            search.insert("showRankingScore".into(), json!(true));
            // A vector search also lists documents without an embedding, after the others;
            // `similar` does not: the details tell them apart (`vectorSort` without a
            // similarity).
            search.insert("showRankingScoreDetails".into(), json!(true));
            if let Some(attributes) = query.attributes_to_retrieve.to_json() {
                search.insert("attributesToRetrieve".into(), attributes);
            }
            for key in ["retrieveVectors", "rankingScoreThreshold"] {
                if let Some(value) = query.rest.get(key) {
                    search.insert(key.into(), value.clone());
                }
            }
            // The primary key tells the document itself apart.
            let mut injected = Vec::new();
            if let Some(Value::Array(attributes)) = search.get_mut("attributesToRetrieve")
                && !attributes
                    .iter()
                    .any(|a| a == "*" || *a == json!(primary_key))
            {
                attributes.push(json!(primary_key));
                injected.push(primary_key.clone());
            }
            let gathered =
                gather_or_respond(state, uid, floor, &search, query.filter.as_ref()).await?;
            let processing = gathered
                .answers
                .iter()
                .filter_map(|a| a["processingTimeMs"].as_u64())
                .max()
                .unwrap_or(0);
            let mut total: u64 = gathered
                .answers
                .iter()
                .filter_map(|a| a["estimatedTotalHits"].as_u64())
                .sum();
            let mut hits: Vec<Value> = Vec::new();
            for answer in gathered.answers {
                if let Some(Value::Array(list)) = answer.get("hits") {
                    hits.extend(list.iter().cloned());
                }
            }
            let itself = |hit: &Value| match hit.get(&primary_key) {
                Some(Value::String(s)) => *s == id,
                Some(Value::Number(n)) => n.to_string() == id,
                _ => false,
            };
            let before = hits.len();
            hits.retain(|hit| !itself(hit));
            if hits.len() < before {
                total = total.saturating_sub(1);
            }
            hits.retain(|hit| hit["_rankingScoreDetails"]["vectorSort"]["similarity"].is_number());
            let score = |hit: &Value| hit["_rankingScore"].as_f64().unwrap_or(0.0);
            // Equal similarity: by primary key, as in a merged search.
            hits.sort_by(|a, b| {
                score(b)
                    .partial_cmp(&score(a))
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| primary_key_order(a.get(&primary_key), b.get(&primary_key)))
            });
            let hits = hits
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|mut hit| {
                    as_asked(&mut hit, &injected, show_score, show_details);
                    hit
                })
                .collect();
            (hits, total, processing, gathered.degraded)
        }
    };
    let mut response = json!({
        "hits": hits,
        "id": id,
        "processingTimeMs": processing,
        "limit": limit,
        "offset": offset,
        "estimatedTotalHits": total,
    });
    if let Some(details) = answer.body.get("performanceDetails") {
        response["performanceDetails"] = details.clone();
    }
    let mut response = (StatusCode::OK, Json(response)).into_response();
    mark_degraded(&mut response, &degraded);
    Ok(response)
}

/// A vector search (or count) over every shard of the index.
async fn gather_or_respond(
    state: &AppState,
    uid: &str,
    floor: SettingsFloor,
    body: &Map<String, Value>,
    filter: Option<&Value>,
) -> Result<crate::read::scatter::Gathered, SearchFailure> {
    let path = format!("/indexes/{uid}/search");
    gather(
        state,
        uid,
        next_turn(),
        floor,
        &path,
        NodeRequest::One { body, filter },
    )
    .await
}

/// The first embedding document `id` holds for `embedder` on `node`, or `None` when it has
/// none.
async fn embedding_of(
    state: &AppState,
    node: &str,
    address: &str,
    uid: &str,
    id: &str,
    embedder: &str,
) -> Result<Option<Value>, SearchFailure> {
    let path = format!(
        "{}?retrieveVectors=true",
        miroir_proto::node_paths::document(uid, id)
    );
    let answer = state
        .nodes
        .call(node, address, Method::GET, &path, None)
        .await
        .map_err(|unreachable| {
            SearchFailure::Node(StatusCode::SERVICE_UNAVAILABLE, unreachable.error())
        })?;
    let embeddings = &answer.body["_vectors"][embedder];
    let embeddings = embeddings.get("embeddings").unwrap_or(embeddings);
    Ok(match embeddings {
        Value::Array(items) if items.first().is_some_and(Value::is_number) => {
            Some(embeddings.clone())
        }
        Value::Array(items) => items.first().filter(|v| v.is_array()).cloned(),
        _ => None,
    })
}
