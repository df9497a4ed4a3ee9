//! `POST /multi-search`: each query is a scatter-gather search; with `federation`, the
//! results are merged into one list by weighted ranking score.

use super::consistency::SettingsFloor;
use super::error::MeiliError;
use super::request_body::{JsonBody, json_object};
use crate::read::facets::FacetOrder;
use crate::read::federation::{FederatedQuery, merge_hits, merge_index_facets, union_of};
use crate::read::query::{Paging, SearchQuery, SearchRoute};
use crate::read::respond::{Searched, request_uid};
use crate::read::scatter::SearchFailure;
use crate::read::scatter::mark_degraded;
use crate::read::search::run_search;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::time::PerformanceDetails;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

fn inside(position: usize, failure: SearchFailure) -> Response {
    let (status, body) = failure.parts();
    query_error(status, body, |message| at_query(position, message))
}

/// A query's refusal with its message reworded by `reword`; a missing index is not the
/// request's URL, so (as in Meilisearch) a 400, not a 404.
fn query_error(
    mut status: StatusCode,
    mut body: Value,
    reword: impl FnOnce(&str) -> String,
) -> Response {
    if body["code"] == "index_not_found" {
        status = StatusCode::BAD_REQUEST;
    }
    if let Some(message) = body.get("message").and_then(Value::as_str) {
        body["message"] = json!(reword(message));
    }
    (status, Json(body)).into_response()
}

/// A federated query's `federationOptions.weight` (1 when absent), refused as Meilisearch
/// refuses it when it is not a number or below 0.
fn query_weight(position: usize, options: Option<&Value>) -> Result<f64, MeiliError> {
    let at = format!(".queries[{position}].federationOptions.weight");
    match options.and_then(|o| o.get("weight")) {
        None | Some(Value::Null) => Ok(1.0),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(weight) if weight >= 0.0 => Ok(weight),
            _ => Err(MeiliError::invalid(
                "invalid_multi_search_weight",
                format!(
                    "Invalid value at `{at}`: the value of `weight` is invalid, expected a positive float (>= 0.0)."
                ),
            )),
        },
        Some(other) => Err(MeiliError::invalid(
            "invalid_multi_search_weight",
            format!(
                "Invalid value type at `{at}`: expected a number, but found {}: `{other}`",
                super::error::json_kind(other)
            ),
        )),
    }
}

/// A query's error as Meilisearch words it in a multi-search: errors about the body's
/// shape (deserr's) carry the member's whole path, `.queries[1].limit`; the others are
/// prefixed with `Inside `.queries[1]`: `.
fn at_query(position: usize, message: &str) -> String {
    let path = format!(".queries[{position}]");
    for lead in ["Invalid value type at `.", "Invalid value at `."] {
        if let Some(rest) = message.strip_prefix(lead) {
            return format!("{}{path}.{rest}", &lead[..lead.len() - 1]);
        }
    }
    if let Some((value, rest)) = message
        .strip_prefix("Unknown value `")
        .and_then(|m| m.split_once("` at `."))
    {
        return format!("Unknown value `{value}` at `{path}.{rest}");
    }
    if let Some((field, rest)) = message
        .strip_prefix("Unknown field `")
        .and_then(|m| m.split_once("`: "))
    {
        return format!("Unknown field `{field}` inside `{path}`: {rest}");
    }
    format!("Inside `{path}`: {message}")
}

/// A node's refusal of a union's federated search names the failing query by its place
/// among the union's queries (`Inside `.queries[1]`: …`, or a path `.queries[1].limit`):
/// the client is told its own place.
fn inside_union(positions: &[usize], failure: SearchFailure) -> Response {
    let (status, body) = failure.parts();
    query_error(status, body, |message| {
        let renamed = || {
            let at = message.find("`.queries[")?;
            let digits = at + "`.queries[".len();
            let end = digits + message[digits..].find(']')?;
            let position = *positions.get(message[digits..end].parse::<usize>().ok()?)?;
            Some(match message[end..].strip_prefix("]`: ") {
                Some(rest) if message[..at] == *"Inside " => at_query(position, rest),
                _ => format!(
                    "{}`.queries[{position}]{}",
                    &message[..at],
                    &message[end + 1..]
                ),
            })
        };
        renamed().unwrap_or_else(|| at_query(positions[0], message))
    })
}

/// Runs the queries at once (each is a scatter-gather of its own); the answers in the
/// queries' order.
async fn run_all(
    state: &AppState,
    caller: &super::auth::Caller,
    floor: SettingsFloor,
    queries: Vec<(String, SearchQuery)>,
) -> Vec<Result<Searched, SearchFailure>> {
    let count = queries.len();
    // Each query runs on its own task, the request's settings floor with it.
    let running = queries
        .into_iter()
        .enumerate()
        .map(|(position, (uid, query))| {
            let (state, caller) = (state.clone(), caller.clone());
            let search =
                async move { run_search(&state, &caller, floor, &uid, query, false).await };
            (position, search)
        });
    let mut answers: Vec<Option<Result<Searched, SearchFailure>>> =
        (0..count).map(|_| None).collect();
    for (position, searched) in miroir_proto::fan_out::join_tagged(running).await {
        // A query that panicked (logged) answers 500 below.
        answers[position] = searched.ok();
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

/// `POST /multi-search`. A request Miroir refuses is shown to a node, whose refusal names
/// the first bad member in the body's order as Meilisearch does ([`super::any_node::refusal`]).
pub async fn multi_search(
    State(state): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
    floor: SettingsFloor,
    JsonBody(bytes): JsonBody,
) -> Response {
    let indexes = crate::read::cache::cacheable(&state, &bytes)
        .then(|| indexes_of(&state, &bytes))
        .flatten();
    let Some(indexes) = indexes else {
        return multi_search_now(state, caller, floor, bytes).await;
    };
    let key = crate::read::cache::request_key("multi-search", &caller, floor.0, &bytes);
    let uids: Vec<&str> = indexes.iter().map(String::as_str).collect();
    let compute = || multi_search_now(state.clone(), caller, floor, bytes);
    crate::read::cache::answer(&state, &uids, &key, compute).await
}

/// The indexes a multi-search reads (aliases resolved), for the result cache; `None` when
/// the body does not say (its refusal is not cached).
fn indexes_of(state: &AppState, bytes: &[u8]) -> Option<Vec<String>> {
    let body: Value = serde_json::from_slice(bytes).ok()?;
    let topology = state.topology.current();
    let mut uids: Vec<String> = body["queries"]
        .as_array()?
        .iter()
        .map(|q| {
            q["indexUid"]
                .as_str()
                .map(|uid| super::aliases::index_of(&topology, uid).to_owned())
        })
        .collect::<Option<_>>()?;
    uids.sort();
    uids.dedup();
    Some(uids)
}

async fn multi_search_now(
    state: AppState,
    caller: super::auth::Caller,
    floor: SettingsFloor,
    bytes: axum::body::Bytes,
) -> Response {
    match federate(&state, &caller, floor, &bytes).await {
        // A query's refusal: one Meilisearch checks every query before it runs any, so
        // another query's bad member may be what it names.
        Ok(response) if response.status().is_client_error() => {
            let refusal = super::any_node::post_refusal(&state, "/multi-search", &bytes, response);
            refusal.await
        }
        Ok(response) => response,
        Err(ours) if ours.status.is_client_error() => {
            super::any_node::post_refusal(&state, "/multi-search", &bytes, ours).await
        }
        Err(ours) => ours.into_response(),
    }
}

async fn federate(
    state: &AppState,
    caller: &super::auth::Caller,
    floor: SettingsFloor,
    bytes: &axum::body::Bytes,
) -> Result<Response, MeiliError> {
    let (state, caller) = (state.clone(), caller.clone());
    let body = json_object(bytes)?;
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
        // Checked with the request's whole path, as Meilisearch checks the body at once.
        let query =
            SearchQuery::parse(query, SearchRoute::Search, &format!(".queries[{position}]"))?;
        if federation.is_some() {
            if let Some(field) = query.paging_member() {
                return Err(MeiliError::invalid(
                    "invalid_multi_search_query_pagination",
                    format!(
                        "Inside `.queries[{position}]`: Using pagination options is not allowed in federated queries.\n - Hint: remove `{field}` from query #{position} or remove `federation` from the request"
                    ),
                ));
            }
            // An empty list asks for no facet, and Meilisearch takes it.
            if query.names_facets() {
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
        let weight = query_weight(position, options.as_ref())?;
        prepared.push((uid, query, weight));
    }

    // A query through an alias runs on the alias's index; a result keeps the name asked.
    let aliased = state.topology.current();
    let index_of = |uid: &str| super::aliases::index_of(&aliased, uid).to_owned();
    let Some(federation) = federation else {
        let uids: Vec<String> = prepared.iter().map(|(uid, _, _)| uid.clone()).collect();
        let queries = prepared
            .into_iter()
            .map(|(uid, query, _)| (index_of(&uid), query));
        let answers = run_all(&state, &caller, floor, queries.collect()).await;
        let mut results = Vec::with_capacity(uids.len());
        let mut degraded = Vec::new();
        // One request, one `requestUid` in every result.
        let request_uid = json!(request_uid());
        for (position, (uid, searched)) in uids.into_iter().zip(answers).enumerate() {
            match searched {
                Ok(searched) => {
                    let mut result = Map::new();
                    result.insert("indexUid".into(), json!(uid));
                    result.extend(searched.body);
                    result.insert("requestUid".into(), request_uid.clone());
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

    if federation
        .get("distinct")
        .is_some_and(|v| !v.is_null() && *v != json!(false))
    {
        return Err(MeiliError::new(
            StatusCode::NOT_IMPLEMENTED,
            "miroir_not_supported",
            super::error::ErrorType::InvalidRequest,
            "`.federation.distinct` is not supported by Miroir yet.",
        ));
    }
    let show_performance = match federation.get("showPerformanceDetails") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(show)) => *show,
        Some(other) => {
            return Err(MeiliError::invalid(
                "invalid_search_show_performance_details",
                format!(
                    "Invalid value type at `.federation.showPerformanceDetails`: expected a boolean, but found {}: `{other}`",
                    super::error::json_kind(other)
                ),
            ));
        }
    };
    let partitioned = std::time::Instant::now();
    let paging = Paging::of_federation(&federation)?;
    // Federated hits name the index itself (`_federation.indexUid`).
    for (uid, _, _) in &mut prepared {
        *uid = index_of(uid);
    }
    let facets_by_index: Map<String, Value> = federation
        .get("facetsByIndex")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(uid, facets)| (index_of(uid), facets.clone()))
        .collect();
    let merge = federation
        .get("mergeFacets")
        .filter(|m| !m.is_null())
        .cloned();
    let topology = state.topology.current();
    // Meilisearch checks the indexes of `facetsByIndex` that no query uses, too (a used
    // one that does not exist fails its query).
    for uid in facets_by_index.keys() {
        if prepared.iter().all(|(used, _, _)| used != uid)
            && let Err(mut error) = super::indexes::index_in(&topology, uid)
        {
            error.status = StatusCode::BAD_REQUEST;
            error.message = format!(
                "Inside `.federation.facetsByIndex.{uid}`: {}\n - Note: index `{uid}` is not used in queries",
                error.message
            );
            return Err(error);
        }
    }
    // As in Meilisearch, the queries of one index form one result list: a document that
    // several of them match appears once, where it ranks best, and the index counts (and
    // facets) the union of what its queries match.
    let mut queries_of: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (position, (uid, _, _)) in prepared.iter().enumerate() {
        queries_of.entry(uid.clone()).or_default().push(position);
    }
    let primary_keys: BTreeMap<String, Option<String>> = queries_of
        .keys()
        .map(|uid| {
            let pk = super::indexes::index_in(&topology, uid)
                .ok()
                .and_then(|index| index.primary_key.clone());
            (uid.clone(), pk)
        })
        .collect();
    // Every index counts (and facets) from a federated search of its own on the nodes,
    // as Meilisearch does: the number of documents its queries match, which a search's
    // total (capped at the index's `maxTotalHits`) is not.
    let mut unions = Vec::new();
    for (uid, positions) in &queries_of {
        let queries = positions.iter().map(|&p| prepared[p].1.clone()).collect();
        let facets = facets_by_index.get(uid).filter(|f| !f.is_null());
        unions.push((
            uid.clone(),
            union_of(&state, &caller, floor, uid, queries, facets),
        ));
    }
    let mut queries = Vec::with_capacity(prepared.len());
    let mut shown = Vec::with_capacity(prepared.len());
    for (uid, mut query, weight) in prepared {
        let alone = queries_of[&uid].len() == 1;
        let pk = primary_keys[&uid].clone();
        shown.push(FederatedQuery::plan(
            &uid,
            &mut query,
            weight,
            &paging,
            show_performance,
            alone,
            pk,
        ));
        queries.push((uid, query));
    }
    let unions = async {
        let mut done = Vec::with_capacity(unions.len());
        for (uid, union) in unions {
            done.push((uid, union.await));
        }
        done
    };
    let mut details = PerformanceDetails::default();
    details.add("search > partition queries", partitioned.elapsed());
    let waited = std::time::Instant::now();
    let (answers, unions) = tokio::join!(run_all(&state, &caller, floor, queries), unions);
    details.add("search > wait for remote results", waited.elapsed());
    let merged = std::time::Instant::now();
    let mut total = 0;
    let mut facet_answers: Map<String, Value> = Map::new();
    let mut degraded = Vec::new();
    for (uid, union) in unions {
        match union {
            Ok(union) => {
                total += union.total;
                degraded.extend(union.degraded);
                if let Some(facets) = union.facets {
                    facet_answers.insert(uid, facets);
                }
            }
            Err(failure) => return Ok(inside_union(&queries_of[&uid], failure)),
        }
    }
    let mut processing = 0;
    let mut bodies = Vec::with_capacity(answers.len());
    for (position, searched) in answers.into_iter().enumerate() {
        let searched = match searched {
            Ok(searched) => searched,
            Err(failure) => return Ok(inside(position, failure)),
        };
        degraded.extend(searched.degraded);
        details.add_answer(searched.body.get("performanceDetails"));
        processing = processing.max(searched.body["processingTimeMs"].as_u64().unwrap_or(0));
        bodies.push(searched.body);
    }
    let page = merge_hits(&shown, bodies, &paging);
    let mut response = Map::new();
    response.insert("hits".into(), Value::Array(page));
    response.insert("processingTimeMs".into(), json!(processing));
    paging.describe(&mut response, total);
    details.add("search > merge results", merged.elapsed());
    let facets_merged = std::time::Instant::now();
    if let Some(merge) = merge {
        if !facet_answers.is_empty() {
            let max_values = merge
                .get("maxValuesPerFacet")
                .and_then(Value::as_u64)
                .map(|n| n as usize);
            let mut orders = Vec::with_capacity(facet_answers.len());
            for uid in facet_answers.keys() {
                let settings = super::settings::cached(&state, uid).await;
                orders.push(FacetOrder::from_settings(settings.as_deref()));
            }
            let (distribution, stats) = merge_index_facets(&facet_answers, &orders, max_values);
            response.insert("facetDistribution".into(), distribution);
            response.insert("facetStats".into(), stats);
        }
    } else if !facet_answers.is_empty() {
        response.insert("facetsByIndex".into(), Value::Object(facet_answers));
    }
    response.insert("requestUid".into(), json!(request_uid()));
    if show_performance {
        details.add("search > merge facets", facets_merged.elapsed());
        response.insert("performanceDetails".into(), details.to_value());
    }
    let mut response = (StatusCode::OK, Json(Value::Object(response))).into_response();
    mark_degraded(&mut response, &degraded);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_union_query_error_names_the_client_query() {
        async fn message(failure_message: &str) -> String {
            let failure = SearchFailure::Node(
                StatusCode::BAD_REQUEST,
                json!({"message": failure_message, "code": "x"}),
            );
            let response = inside_union(&[2, 5], failure);
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_owned()
        }
        assert_eq!(
            message("Inside `.queries[1]`: Index `m`: Attribute `x` is not filterable.").await,
            "Inside `.queries[5]`: Index `m`: Attribute `x` is not filterable."
        );
        assert_eq!(
            message("Invalid value type at `.queries[1].q`: expected a string").await,
            "Invalid value type at `.queries[5].q`: expected a string"
        );
        assert_eq!(message("boom").await, "Inside `.queries[2]`: boom");
    }

    #[test]
    fn query_errors_name_the_query_as_meilisearch_does() {
        assert_eq!(
            at_query(
                1,
                "Invalid value type at `.limit`: expected a positive integer, but found a string: `\"x\"`"
            ),
            "Invalid value type at `.queries[1].limit`: expected a positive integer, but found a string: `\"x\"`"
        );
        assert_eq!(
            at_query(
                0,
                "Unknown value `foo` at `.matchingStrategy`: expected one of `last`, `all`"
            ),
            "Unknown value `foo` at `.queries[0].matchingStrategy`: expected one of `last`, `all`"
        );
        assert_eq!(
            at_query(2, "Unknown field `nope`: expected one of `q`, `offset`"),
            "Unknown field `nope` inside `.queries[2]`: expected one of `q`, `offset`"
        );
        assert_eq!(
            at_query(0, "Index `m`: Attribute `x` is not filterable."),
            "Inside `.queries[0]`: Index `m`: Attribute `x` is not filterable."
        );
    }
}
