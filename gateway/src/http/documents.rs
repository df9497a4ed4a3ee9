//! Shard-routed writes (DESIGN §5): documents are grouped by shard, stamped with
//! `_miroir_shard`, sent as one batch per node, and acknowledged when every shard reached
//! quorum (`floor(RF/2)+1` of its write nodes) in at least one group.

use super::error::{ErrorType, MeiliError};
use super::indexes::find_index;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use miroir_proto::pb::{self, GroupState, NodeState};
use miroir_proto::placement::shard_for_key;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokio::task::JoinSet;

/// The field Miroir stamps on every document; `_miroir_*` fields are reserved.
pub const SHARD_FIELD: &str = "_miroir_shard";

fn no_candidate() -> MeiliError {
    MeiliError::invalid(
        "index_primary_key_no_candidate_found",
        "The primary key inference failed as the engine did not find any field ending with `id` in its name. Please specify the primary key manually using the `primaryKey` query parameter.",
    )
}

/// Meilisearch's primary-key inference: the first document's top-level keys ending in
/// `id` (any case); exactly one must exist.
pub fn infer_primary_key(first: Option<&Map<String, Value>>) -> Result<String, MeiliError> {
    let mut candidates: Vec<&String> = first
        .map(|d| {
            d.keys()
                .filter(|k| k.to_lowercase().ends_with("id"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(no_candidate()),
        [a, b, ..] => Err(MeiliError::invalid(
            "index_primary_key_multiple_candidates_found",
            format!(
                "The primary key inference failed as the engine found {} fields ending with `id` in their names: '{a}' and '{b}'. Please specify the primary key manually using the `primaryKey` query parameter.",
                candidates.len()
            ),
        )),
    }
}

/// The document id as Meilisearch accepts it: an integer, or 1–511 bytes of
/// `[A-Za-z0-9_-]`. Integers are returned as their decimal string.
pub fn document_id(document: &Map<String, Value>, pk: &str) -> Result<String, MeiliError> {
    let mut value = document.get(pk);
    if value.is_none() && pk.contains('.') {
        let mut current: Option<&Value> = None;
        for (i, part) in pk.split('.').enumerate() {
            current = if i == 0 {
                document.get(part)
            } else {
                current.and_then(|v| v.get(part))
            };
        }
        value = current;
    }
    let Some(value) = value else {
        return Err(MeiliError::invalid(
            "missing_document_id",
            format!(
                "Document doesn't have a `{pk}` attribute: `{}`.",
                serde_json::to_string(document).unwrap_or_default()
            ),
        ));
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
        other => Err(MeiliError::invalid(
            "invalid_document_id",
            format!(
                "Document identifier `{other}` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes."
            ),
        )),
    }
}

/// Parses a JSON or NDJSON documents payload.
fn parse_documents(
    headers: &HeaderMap,
    body: &Bytes,
    params: &HashMap<String, String>,
) -> Result<Vec<Map<String, Value>>, MeiliError> {
    let accepted = "Accepted values for the Content-Type header are: `application/json`, `application/x-ndjson`, `text/csv`";
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(MeiliError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "missing_content_type",
            ErrorType::InvalidRequest,
            format!("A Content-Type header is missing. {accepted}"),
        ));
    };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if params.contains_key("csvDelimiter") && mime != "text/csv" {
        return Err(MeiliError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_document_csv_delimiter",
            ErrorType::InvalidRequest,
            format!(
                "The Content-Type `{mime}` does not support the use of a csv delimiter. The csv delimiter can only be used with the Content-Type `text/csv`."
            ),
        ));
    }
    let malformed = |format: &str, detail: String| {
        MeiliError::invalid(
            "malformed_payload",
            format!(
                "The `{format}` payload provided is malformed. `Couldn't serialize document value: {detail}`."
            ),
        )
    };
    match mime.as_str() {
        "application/json" => {
            if body.is_empty() {
                return Err(MeiliError::invalid(
                    "missing_payload",
                    "A json payload is missing.",
                ));
            }
            match serde_json::from_slice::<Value>(body)
                .map_err(|e| malformed("json", e.to_string()))?
            {
                Value::Object(object) => Ok(vec![object]),
                Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::Object(object) => Ok(object),
                        _ => Err(malformed(
                            "json",
                            "data are neither an object nor a list of objects".into(),
                        )),
                    })
                    .collect(),
                _ => Err(malformed(
                    "json",
                    "data are neither an object nor a list of objects".into(),
                )),
            }
        }
        "application/x-ndjson" => {
            if body.is_empty() {
                return Err(MeiliError::invalid(
                    "missing_payload",
                    "A ndjson payload is missing.",
                ));
            }
            body.split(|b| *b == b'\n')
                .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
                .map(|line| match serde_json::from_slice::<Value>(line) {
                    Ok(Value::Object(object)) => Ok(object),
                    Ok(_) => Err(malformed(
                        "ndjson",
                        "data are neither an object nor a list of objects".into(),
                    )),
                    Err(e) => Err(malformed("ndjson", e.to_string())),
                })
                .collect()
        }
        "text/csv" => {
            if body.is_empty() {
                return Err(MeiliError::invalid(
                    "missing_payload",
                    "A csv payload is missing.",
                ));
            }
            let delimiter = match params.get("csvDelimiter").map(String::as_bytes) {
                None => b',',
                Some([d]) if d.is_ascii() => *d,
                Some(_) => {
                    return Err(MeiliError::invalid(
                        "invalid_document_csv_delimiter",
                        format!(
                            "csv delimiter must be an ascii character. Found: `{}`",
                            params
                                .get("csvDelimiter")
                                .map(String::as_str)
                                .unwrap_or_default()
                        ),
                    ));
                }
            };
            parse_csv(body, delimiter)
        }
        other => Err(MeiliError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_content_type",
            ErrorType::InvalidRequest,
            format!("The Content-Type `{other}` is invalid. {accepted}"),
        )),
    }
}

/// CSV as Meilisearch reads it: a header row whose `name:number`, `name:boolean` and
/// `name:string` cells type their column (untyped columns are strings); empty cells are
/// null; every row has as many cells as the header.
fn parse_csv(body: &[u8], delimiter: u8) -> Result<Vec<Map<String, Value>>, MeiliError> {
    let malformed = |detail: String| {
        MeiliError::invalid(
            "malformed_payload",
            format!("The `csv` payload provided is malformed: `{detail}`."),
        )
    };
    #[derive(Clone, Copy)]
    enum Kind {
        String,
        Number,
        Boolean,
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(body);
    let columns: Vec<(String, Kind)> = reader
        .headers()
        .map_err(|e| malformed(e.to_string()))?
        .iter()
        .map(|header| match header.rsplit_once(':') {
            Some((name, "string")) => (name.to_owned(), Kind::String),
            Some((name, "number")) => (name.to_owned(), Kind::Number),
            Some((name, "boolean")) => (name.to_owned(), Kind::Boolean),
            _ => (header.to_owned(), Kind::String),
        })
        .collect();
    let mut documents = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| malformed(e.to_string()))?;
        let line = record.position().map_or(0, csv::Position::line);
        let mut document = Map::with_capacity(columns.len());
        for ((name, kind), cell) in columns.iter().zip(record.iter()) {
            let trimmed = cell.trim();
            let value = match kind {
                Kind::String if cell.is_empty() => Value::Null,
                Kind::String => Value::String(cell.to_owned()),
                Kind::Number | Kind::Boolean if trimmed.is_empty() => Value::Null,
                Kind::Number => match trimmed.parse::<i64>() {
                    Ok(integer) => Value::from(integer),
                    Err(_) => trimmed
                        .parse::<f64>()
                        .ok()
                        .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                        .ok_or_else(|| {
                            malformed(format!("Error parsing number {cell:?} at line {line}: invalid float literal"))
                        })?,
                },
                Kind::Boolean => Value::Bool(trimmed.parse::<bool>().map_err(|_| {
                    malformed(format!(
                        "Error parsing boolean {cell:?} at line {line}: provided string was not `true` or `false`"
                    ))
                })?),
            };
            document.insert(name.clone(), value);
        }
        documents.push(document);
    }
    Ok(documents)
}

/// A document write that failed before reaching any node: 202 and a failed task.
async fn failed_task(
    state: &AppState,
    uid: &str,
    received: usize,
    error: MeiliError,
) -> Result<Response, MeiliError> {
    let details = json!({"receivedDocuments": received, "indexedDocuments": 0});
    super::indexes::failed_task(state, uid, "documentAdditionOrUpdate", details, error).await
}

/// Meilisearch's refusal to change an index's primary key once set.
fn primary_key_exists(current: &str) -> MeiliError {
    MeiliError::invalid(
        "index_primary_key_already_exists",
        format!("Index already has a primary key: `{current}`."),
    )
}

/// The index to write to, created through the control plane if it does not exist yet
/// (Meilisearch creates indexes on first write).
pub(super) async fn index_for_write(
    state: &AppState,
    uid: &str,
    primary_key: Option<&str>,
) -> Result<pb::Index, MeiliError> {
    if let Ok(index) = find_index(state, uid) {
        return Ok(index);
    }
    let request = pb::CreateIndexRequest {
        uid: uid.to_owned(),
        primary_key: primary_key.map(str::to_owned),
        shard_count: None,
        replication_factor: None,
    };
    let result = state.control_plane.create_index(request).await;
    match result {
        Ok(response) => {
            state
                .topology
                .wait_for_version(response.topology_version, super::indexes::TOPOLOGY_WAIT)
                .await;
            response.index.ok_or_else(|| {
                MeiliError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    ErrorType::Internal,
                    "no index in the answer",
                )
            })
        }
        // Another gateway created it meanwhile.
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            let request = pb::GetIndexRequest {
                uid: uid.to_owned(),
            };
            state
                .control_plane
                .get_index(request)
                .await
                .ok()
                .and_then(|r| r.index)
                .ok_or_else(|| MeiliError::from_status(&status, "index_not_found"))
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            Err(MeiliError::invalid("invalid_index_uid", status.message()))
        }
        Err(status) => Err(MeiliError::from_status(&status, "index_not_found")),
    }
}

/// `POST /indexes/{uid}/documents` (replace).
pub async fn replace(
    state: State<AppState>,
    uid: Path<String>,
    params: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, MeiliError> {
    write(state, uid, params, headers, body, Method::POST).await
}

/// `PUT /indexes/{uid}/documents` (update: merge fields).
pub async fn update(
    state: State<AppState>,
    uid: Path<String>,
    params: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, MeiliError> {
    write(state, uid, params, headers, body, Method::PUT).await
}

async fn write(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
    method: Method,
) -> Result<Response, MeiliError> {
    let enqueued_at_ms = miroir_proto::time::now_ms();
    if !state.topology.lease.is_valid() {
        let mut response = MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_lease_expired",
            ErrorType::System,
            "this gateway has lost contact with the control plane and accepts no writes until it reconnects; retry, possibly on another gateway",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(response);
    }
    let mut documents = parse_documents(&headers, &body, &params)?;
    if let Some(field) = documents
        .iter()
        .flat_map(|d| d.keys())
        .find(|k| k.starts_with("_miroir_"))
    {
        return Err(MeiliError::invalid(
            "miroir_reserved_field",
            format!(
                "The field `{field}` is reserved by Miroir: fields starting with `_miroir_` cannot be written."
            ),
        ));
    }
    let query_pk = params.get("primaryKey").map(String::as_str);
    let index = index_for_write(&state, &uid, query_pk).await?;
    let pk = match (index.primary_key.as_deref(), query_pk) {
        (Some(pk), Some(asked)) if asked != pk => {
            let error = primary_key_exists(pk);
            return failed_task(&state, &uid, documents.len(), error).await;
        }
        (Some(pk), _) => pk.to_owned(),
        (None, asked) => {
            let pk = match asked
                .map(str::to_owned)
                .map_or_else(|| infer_primary_key(documents.first()), Ok)
            {
                Ok(pk) => pk,
                Err(error) => return failed_task(&state, &uid, documents.len(), error).await,
            };
            // Recorded before any node sees a document, so every gateway routes by it.
            let request = pb::SetPrimaryKeyRequest {
                uid: uid.clone(),
                primary_key: pk.clone(),
            };
            match state.control_plane.set_primary_key(request).await {
                Ok(_) => pk,
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    let error =
                        MeiliError::invalid("index_primary_key_already_exists", status.message());
                    return failed_task(&state, &uid, documents.len(), error).await;
                }
                Err(status) => return Err(MeiliError::from_status(&status, "index_not_found")),
            }
        }
    };
    let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (position, document) in documents.iter_mut().enumerate() {
        let id = match document_id(document, &pk) {
            Ok(id) => id,
            // All or nothing, as Meilisearch fails the whole batch.
            Err(error) => return failed_task(&state, &uid, position.max(1), error).await,
        };
        let shard = shard_for_key(&id, index.shard_count).0;
        document.insert(SHARD_FIELD.into(), json!(shard));
        by_shard.entry(shard).or_default().push(position);
    }
    let received = documents.len();
    let topology = state.topology.current();
    let active_groups: BTreeSet<u32> = topology
        .groups
        .iter()
        .filter(|g| g.state != GroupState::Draining as i32)
        .map(|g| g.id)
        .collect();
    // node → the documents it must receive; and (group, shard) → its write nodes.
    let mut batches: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut writers: BTreeMap<(u32, u32), Vec<String>> = BTreeMap::new();
    for routing in index
        .routing
        .iter()
        .filter(|r| active_groups.contains(&r.group_id))
    {
        for (&shard, positions) in &by_shard {
            let Some(route) = routing.shards.get(shard as usize) else {
                continue;
            };
            for node in &route.write_nodes {
                batches.entry(node.clone()).or_default().extend(positions);
            }
            writers.insert((routing.group_id, shard), route.write_nodes.clone());
        }
    }
    let path = format!("/indexes/{uid}/documents?primaryKey={pk}");
    let mut calls = JoinSet::new();
    for (node_id, positions) in batches {
        let Some(node) = topology.nodes.iter().find(|n| n.id == node_id) else {
            continue;
        };
        if node.state == NodeState::Failed as i32 {
            continue;
        }
        let batch = Value::Array(
            positions
                .iter()
                .map(|&p| Value::Object(documents[p].clone()))
                .collect(),
        );
        let (client, address, path, method) = (
            state.nodes.clone(),
            node.address.clone(),
            path.clone(),
            method.clone(),
        );
        calls.spawn(tracing::Instrument::in_current_span(async move {
            let answer = client
                .call(&node_id, &address, method, &path, Some(&batch))
                .await;
            (node_id, answer)
        }));
    }
    let mut node_tasks = Vec::new();
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut node_errors: Vec<Value> = Vec::new();
    while let Some(Ok((node_id, answer))) = calls.join_next().await {
        match answer {
            Ok(answer) if answer.status == 202 => match answer.body["taskUid"].as_u64() {
                Some(uid) => {
                    node_tasks.push(pb::NodeTask {
                        node_id: node_id.clone(),
                        node_task_uid: uid,
                    });
                    acked.insert(node_id);
                }
                None => node_errors.push(answer.body),
            },
            Ok(answer) => node_errors.push(answer.body),
            Err(unreachable) => node_errors.push(unreachable.error()),
        }
    }
    // Quorum per group and shard; each shard needs one group at quorum.
    let quorum = |writers: &Vec<String>| {
        // floor(RF/2) + 1 acknowledgements.
        writers.iter().filter(|n| acked.contains(*n)).count() > writers.len() / 2
    };
    let mut missed: Vec<String> = Vec::new();
    let mut unwritten: Vec<u32> = Vec::new();
    for &shard in by_shard.keys() {
        let groups: Vec<(&(u32, u32), &Vec<String>)> =
            writers.iter().filter(|((_, s), _)| *s == shard).collect();
        let ok_groups = groups.iter().filter(|(_, w)| quorum(w)).count();
        if ok_groups == 0 {
            unwritten.push(shard);
        }
        missed.extend(
            groups
                .iter()
                .filter(|(_, w)| !quorum(w))
                .map(|((g, s), _)| format!("group{g}/shard{s}")),
        );
    }
    if !unwritten.is_empty() {
        let detail = node_errors
            .first()
            .and_then(|e| e["message"].as_str())
            .unwrap_or("no write node answered");
        return Err(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_no_quorum",
            ErrorType::System,
            format!(
                "shards {unwritten:?} of index `{uid}` reached no write quorum in any group ({detail}); the write was not acknowledged, retry it"
            ),
        ));
    }
    node_tasks.sort_by(|a, b| (&a.node_id, a.node_task_uid).cmp(&(&b.node_id, b.node_task_uid)));
    let request = pb::CreateTaskRequest {
        index_uid: Some(uid.clone()),
        task_type: "documentAdditionOrUpdate".into(),
        node_tasks,
        details_json: json!({"receivedDocuments": received, "indexedDocuments": null}).to_string(),
        enqueued_at_ms,
        error_json: String::new(),
        cancels: Vec::new(),
    };
    let task = super::indexes::record_task(&state, request).await?;
    let mut response = super::indexes::accepted(&task);
    if !missed.is_empty()
        && let Ok(value) = HeaderValue::from_str(&missed.join(","))
    {
        response.headers_mut().insert("x-miroir-degraded", value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_reads_like_meilisearch() {
        let documents = parse_csv(
            b"id:number,title,price:number,sold:boolean\n1,\"Hello, \"\"world\"\"\",9.5,true\n2,,,\n",
            b',',
        )
        .unwrap();
        assert_eq!(
            Value::Object(documents[0].clone()),
            json!({"id": 1, "title": "Hello, \"world\"", "price": 9.5, "sold": true})
        );
        assert_eq!(
            Value::Object(documents[1].clone()),
            json!({"id": 2, "title": null, "price": null, "sold": null})
        );
        let semicolons = parse_csv(b"id;name\n7;x\n", b';').unwrap();
        assert_eq!(semicolons[0]["name"], "x");
        let error = parse_csv(b"id:number\nabc\n", b',').unwrap_err();
        assert_eq!(error.body()["code"], "malformed_payload");
        assert!(
            parse_csv(b"a,b\n1\n", b',').is_err(),
            "rows keep the header's width"
        );
    }

    #[test]
    fn ids_and_inference_follow_meilisearch() {
        let doc = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            infer_primary_key(Some(&doc(json!({"movie_id": 1, "title": "x"})))).unwrap(),
            "movie_id"
        );
        assert_eq!(
            infer_primary_key(Some(&doc(json!({"id": 1, "uid": 2}))))
                .unwrap_err()
                .code,
            "index_primary_key_multiple_candidates_found"
        );
        assert_eq!(document_id(&doc(json!({"id": 42})), "id").unwrap(), "42");
        assert_eq!(
            document_id(&doc(json!({"id": "a-b_c"})), "id").unwrap(),
            "a-b_c"
        );
        assert_eq!(
            document_id(&doc(json!({"id": "a b"})), "id")
                .unwrap_err()
                .code,
            "invalid_document_id"
        );
        assert_eq!(
            document_id(&doc(json!({"id": 1.5})), "id")
                .unwrap_err()
                .code,
            "invalid_document_id"
        );
        assert_eq!(
            document_id(&doc(json!({"x": 1})), "id").unwrap_err().code,
            "missing_document_id"
        );
        assert_eq!(
            document_id(&doc(json!({"a": {"b": 7}})), "a.b").unwrap(),
            "7"
        );
    }
}
