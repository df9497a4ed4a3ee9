//! Document reads (DESIGN §5): `GET …/documents/{id}` from one live owner; browsing paged
//! across the covering set with no duplicate and no gap.

use super::consistency::SettingsFloor;
use super::documents::SHARD_FIELD;
use super::error::{ErrorType, MeiliError, positive_integer};
use super::request_body::{JsonBody, json_object};
use crate::read::merge::{lookup, sort_value_order};
use crate::read::plan::{CoveringSet, ReadPlan};
use crate::read::scatter::{NodeRequest, gather_from, mark_degraded, scatter};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http::Method;
use miroir_proto::pb;
use miroir_proto::placement::shard_for_key;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};

fn strip(mut document: Value) -> Value {
    if let Some(object) = document.as_object_mut() {
        object.remove(SHARD_FIELD);
    }
    document
}

/// The live nodes serving reads of `shard` of `index`, every group's, as (id, address):
/// owned, so no iterator's closure lives across an await (handlers must be Send).
pub(crate) fn live_owners(
    topology: &pb::Topology,
    index: &pb::Index,
    shard: usize,
) -> Vec<(String, String)> {
    index
        .routing
        .iter()
        .filter_map(|r| r.shards.get(shard))
        .flat_map(|s| s.in_sync())
        .filter_map(|owner| topology.nodes.iter().find(|n| &n.id == owner && n.serves()))
        .map(|n| (n.id.clone(), n.address.clone()))
        .collect()
}

/// `GET /indexes/{uid}/documents/{id}`: asks the shard's live owners in turn.
pub async fn get_one(
    State(state): State<AppState>,
    Path((uid, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, MeiliError> {
    let (_pin, topology) = state.topology.pin();
    let index = super::indexes::index_in(&topology, &uid)?;
    let shard = shard_for_key(&id, index.shard_count).0 as usize;
    let mut path = miroir_proto::node_paths::document(&uid, &id);
    if let Some(fields) = params.get("fields") {
        let fields = miroir_proto::node_paths::query_value(fields);
        path.push_str(&format!("?fields={fields}"));
    }
    let live = live_owners(&topology, index, shard);
    let (state, path) = (&state, &path);
    let asked = crate::nodes::in_turn(
        state.config.node_timeout,
        live,
        |(id, address)| async move {
            let call = state.nodes.call(&id, &address, Method::GET, path, None);
            let answer = crate::nodes::trouble::watched(state, &id, call)
                .await
                .map_err(|unreachable| unreachable.error())?;
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = if status.is_success() {
                strip(answer.body)
            } else {
                answer.body
            };
            Ok((status, Json(body)).into_response())
        },
    )
    .await;
    let last_error = match asked {
        Ok(response) => return Ok(response),
        Err(last_error) => last_error,
    };
    let message = last_error
        .and_then(|e: Value| e["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("no live replica holds shard {shard} of index `{uid}`"));
    Err(MeiliError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "miroir_shard_unavailable",
        ErrorType::System,
        message,
    ))
}

/// Documents a browse asks one node for at once. A page within the first this many
/// documents is one call per node; a deeper or larger one walks each node in pages of this
/// size, so the gateway holds at most this many documents per node besides the answer.
const BROWSE_PAGE: usize = 1000;

/// `POST /indexes/{uid}/documents/fetch` and `GET …/documents`: each covering node returns
/// its shards' matching documents; pages run over the nodes in a fixed order, so paging
/// has no duplicate and no gap. Unsorted, node i's documents come after those of nodes
/// 0..i, in the node's own order; sorted, a k-way merge by the sort keys keeps that order
/// among equals.
async fn browse(
    state: &AppState,
    floor: SettingsFloor,
    uid: &str,
    request: Map<String, Value>,
) -> Result<Response, MeiliError> {
    // Nodes get paging of Miroir's making: the client's is checked here.
    for (key, code) in [
        ("offset", "invalid_document_offset"),
        ("limit", "invalid_document_limit"),
    ] {
        super::error::check_positive_integer(request.get(key), || format!(".{key}"), code)?;
    }
    let offset = request.get("offset").and_then(Value::as_u64).unwrap_or(0);
    let limit = request.get("limit").and_then(Value::as_u64).unwrap_or(20);
    let mut body = request.clone();
    body.insert("offset".into(), json!(0));
    body.insert(
        "limit".into(),
        json!(offset.saturating_add(limit).min(BROWSE_PAGE as u64)),
    );
    let sort: Vec<(String, bool)> = request
        .get("sort")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|s| s.rsplit_once(':').map(|(f, d)| (f.to_owned(), d == "asc")))
        .collect();
    // The merge compares on the sort fields: fetch them, strip those not asked for.
    let mut injected: Vec<String> = Vec::new();
    if let Some(Value::Array(fields)) = body.get_mut("fields")
        && !fields.iter().any(|f| f == "*")
    {
        for (field, _) in &sort {
            if !fields.iter().any(|f| f == field.as_str()) {
                fields.push(json!(field));
                injected.push(field.clone());
            }
        }
    }
    let path = format!("/indexes/{uid}/documents/fetch");
    // Turn 0: the same covering set for every page of a browse.
    let filter = request.get("filter");
    let node_request = NodeRequest::One {
        body: &body,
        filter,
    };
    // Ids, or a filter pinning primary keys, need only their shards' nodes.
    let planned = ReadPlan::pinned(state, uid, 0, floor, |primary_key| {
        let ids = request
            .get("ids")
            .filter(|ids| !ids.is_null())
            .and_then(crate::read::pinned::keys_of_ids);
        ids.or_else(|| crate::read::pinned::keys_of_filter(filter?, primary_key))
    });
    let gathered = match planned {
        Ok(read) => gather_from(state, read, &path, node_request).await,
        Err(failure) => Err(failure),
    };
    let mut gathered = match gathered {
        Ok(gathered) => gathered,
        Err(failure) => {
            let (status, body) = failure.parts();
            return Ok((status, Json(body)).into_response());
        }
    };
    let mut cursors: Vec<BrowseCursor> = gathered
        .answers
        .iter_mut()
        .zip(&gathered.sources)
        .map(|(answer, source)| BrowseCursor {
            source,
            total: answer["total"].as_u64().unwrap_or(0),
            position: 0,
            buffer: match answer["results"].take() {
                Value::Array(results) => results.into(),
                _ => VecDeque::new(),
            },
        })
        .collect();
    let total: u64 = cursors.iter().map(|c| c.total).sum();
    let pages = PageSource {
        state,
        topology: &gathered.topology,
        path: &path,
        body: &body,
        filter,
    };
    let mut results = Vec::new();
    let wanted = limit.min(total.saturating_sub(offset)) as usize;
    if sort.is_empty() {
        // Whole nodes are skipped by their totals, the rest by position.
        let mut skip = offset;
        for cursor in &mut cursors {
            if skip >= cursor.total {
                skip -= cursor.total;
                continue;
            }
            cursor.skip(skip);
            skip = 0;
            while results.len() < wanted {
                match cursor.next(&pages).await? {
                    Some(document) => results.push(document),
                    None => break,
                }
            }
        }
    } else {
        let order = |a: &Value, b: &Value| {
            sort.iter()
                .map(|(field, ascending)| {
                    sort_value_order(lookup(a, field), lookup(b, field), *ascending)
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        let mut skip = offset;
        while results.len() < wanted {
            for cursor in &mut cursors {
                cursor.peek(&pages).await?;
            }
            let mut first: Option<usize> = None;
            for (i, cursor) in cursors.iter().enumerate() {
                let Some(head) = cursor.buffer.front() else {
                    continue;
                };
                // Strictly smaller only: among equals the earlier node comes first.
                if first.is_none_or(|f| {
                    cursors[f]
                        .buffer
                        .front()
                        .is_some_and(|best| order(head, best).is_lt())
                }) {
                    first = Some(i);
                }
            }
            let Some(next) = first.and_then(|i| cursors[i].pop()) else {
                break;
            };
            if skip > 0 {
                skip -= 1;
            } else {
                results.push(next);
            }
        }
    }
    let results: Vec<Value> = results
        .into_iter()
        .map(|mut document| {
            if let Some(object) = document.as_object_mut() {
                for field in &injected {
                    object.remove(field);
                }
            }
            strip(document)
        })
        .collect();
    let mut response =
        Json(json!({"results": results, "offset": offset, "limit": limit, "total": total}))
            .into_response();
    mark_degraded(&mut response, &gathered.degraded);
    Ok(response)
}

/// Where a browse's further pages come from: the read's topology and the node body.
struct PageSource<'a> {
    state: &'a AppState,
    topology: &'a pb::Topology,
    path: &'a str,
    body: &'a Map<String, Value>,
    filter: Option<&'a Value>,
}

impl PageSource<'_> {
    /// [`BROWSE_PAGE`] documents from `position` of the node (and shards) of `source`.
    async fn page(&self, source: &CoveringSet, position: u64) -> Result<Vec<Value>, MeiliError> {
        let mut body = self.body.clone();
        body.insert("offset".into(), json!(position));
        body.insert("limit".into(), json!(BROWSE_PAGE));
        let request = NodeRequest::One {
            body: &body,
            filter: self.filter,
        };
        // The next page comes from the node that gave the first ones (no hedge): pages by
        // offset are in that node's order.
        let answer = scatter(
            self.state,
            self.topology,
            source,
            self.path,
            request,
            None,
            None,
        )
        .await
        .into_iter()
        .next();
        let node = source.assignments.keys().next().map_or("", String::as_str);
        match answer {
            Some((_, Ok(mut answer), _)) if answer.status == 200 => {
                Ok(match answer.body["results"].take() {
                    Value::Array(results) => results,
                    _ => Vec::new(),
                })
            }
            Some((_, Ok(answer), _)) => Err(MeiliError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_shard_unavailable",
                ErrorType::System,
                format!(
                    "Node `{node}` answered {} while the gateway paged through its documents: retry the request.",
                    answer.status
                ),
            )),
            Some((_, Err(unreachable), _)) => Err(MeiliError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_shard_unavailable",
                ErrorType::System,
                format!(
                    "{unreachable}, while the gateway paged through its documents: retry the request."
                ),
            )),
            None => Err(MeiliError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_shard_unavailable",
                ErrorType::System,
                format!(
                    "Node `{node}` left the topology while the gateway paged through its documents: retry the request."
                ),
            )),
        }
    }
}

/// One node's documents in a browse: a page at a time, from `position`.
struct BrowseCursor<'a> {
    source: &'a CoveringSet,
    /// The node's matching documents.
    total: u64,
    /// The node's position of `buffer`'s first document.
    position: u64,
    buffer: VecDeque<Value>,
}

impl BrowseCursor<'_> {
    /// Passes over `count` documents, fetching none of them.
    fn skip(&mut self, count: u64) {
        if count < self.buffer.len() as u64 {
            self.buffer.drain(..count as usize);
        } else {
            self.buffer.clear();
        }
        self.position = self.position.saturating_add(count);
    }

    /// The next document, fetching the next page when the buffer is empty.
    async fn peek(&mut self, pages: &PageSource<'_>) -> Result<Option<&Value>, MeiliError> {
        if self.buffer.is_empty() && self.position < self.total {
            self.buffer = pages.page(self.source, self.position).await?.into();
            if self.buffer.is_empty() {
                // Documents deleted meanwhile: nothing further on this node.
                self.total = self.position;
            }
        }
        Ok(self.buffer.front())
    }

    /// Takes the document [`BrowseCursor::peek`] showed.
    fn pop(&mut self) -> Option<Value> {
        let document = self.buffer.pop_front()?;
        self.position += 1;
        Some(document)
    }

    async fn next(&mut self, pages: &PageSource<'_>) -> Result<Option<Value>, MeiliError> {
        self.peek(pages).await?;
        Ok(self.pop())
    }
}

/// `POST /indexes/{uid}/documents/fetch`.
pub async fn fetch(
    State(state): State<AppState>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let request = json_object(&body)?;
    match browse(&state, floor, &uid, request).await {
        // Meilisearch names the first bad member in the body's order: a node is asked.
        Err(ours) if ours.status.is_client_error() => {
            let path = format!("/indexes/{uid}/documents/fetch");
            Ok(super::any_node::post_refusal(&state, &path, &body, ours).await)
        }
        answer => answer,
    }
}

/// `GET /indexes/{uid}/documents`.
pub async fn list(
    State(state): State<AppState>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, MeiliError> {
    let mut request = Map::new();
    for (key, value) in params {
        let parsed = match key.as_str() {
            "offset" | "limit" => json!(positive_integer::<u64>(
                &key,
                &value,
                if key == "offset" {
                    "invalid_document_offset"
                } else {
                    "invalid_document_limit"
                }
            )?),
            "fields" | "ids" | "sort" => json!(value.split(',').map(str::trim).collect::<Vec<_>>()),
            "filter" => serde_json::from_str(&value).unwrap_or(json!(value)),
            "retrieveVectors" => json!(value.parse::<bool>().map_err(|_| MeiliError::invalid(
                "invalid_document_retrieve_vectors",
                format!("Invalid value in parameter `retrieveVectors`: could not parse `{value}` as a boolean, expected either `true` or `false`")
            ))?),
            _ => json!(value),
        };
        request.insert(key, parsed);
    }
    browse(&state, floor, &uid, request).await
}
