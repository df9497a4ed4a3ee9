//! The test node's HTTP API: Meilisearch's routes, plus `/_testnode/faults`.

use super::error::NodeError;
use super::index::Index;
use super::node::{EXPERIMENTAL_FEATURES, Node, NodeState, TaskOp};
use super::search::kind_of;
use super::search::{
    facet_counts, facet_distribution, facet_order, parse_filter, project, search, search_ranked,
    tokenize,
};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use miroir_proto::time::PerformanceDetails;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Injected faults.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Answer every Meilisearch route with 503.
    pub down: bool,
    /// Delay every Meilisearch route by this much.
    pub latency_ms: u64,
    /// Fail this fraction (0..1) of requests with 500 (deterministically: every k-th).
    pub error_rate: f64,
    /// Delay before each task is processed (keeps tasks `enqueued` for a while).
    pub task_delay_ms: u64,
    /// Fail every settings update task (the node refuses the change).
    pub fail_settings: bool,
    /// Delay the settings routes (`/indexes/{uid}/settings…`) only by this much.
    pub settings_latency_ms: u64,
}

#[derive(Clone)]
struct App {
    node: Node,
    master_key: Option<Arc<str>>,
    faults: Arc<Mutex<Faults>>,
    requests: Arc<Mutex<u64>>,
    keys: Arc<super::keys::KeyStore>,
}

type Result<T, E = NodeError> = std::result::Result<T, E>;

/// The router for a node running with `master_key`.
pub fn router(master_key: Option<String>) -> Router {
    let keys = super::keys::KeyStore::new(master_key.clone());
    let app = App {
        node: Node::start(),
        keys: keys.clone(),
        master_key: master_key.map(Into::into),
        faults: Arc::default(),
        requests: Arc::default(),
    };
    let documents = "/indexes/{uid}/documents";
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "available"})) }))
        .route("/version", get(|| async { Json(json!({"commitSha": "miroir-test-node", "commitDate": "2026-01-01T00:00:00Z", "pkgVersion": "1.13.0"})) }))
        .route("/stats", get(global_stats))
        .route("/indexes", get(list_indexes).post(create_index))
        .route("/indexes/{uid}", get(get_index).patch(update_index).delete(delete_index))
        .route("/indexes/{uid}/stats", get(index_stats))
        .route("/indexes/{uid}/compact", post(compact_index))
        .route(documents, get(get_documents).post(add_documents).put(update_documents).delete(clear_documents))
        .route(&format!("{documents}/fetch"), post(fetch_documents))
        .route(&format!("{documents}/delete-batch"), post(delete_batch))
        .route(&format!("{documents}/delete"), post(delete_by_filter))
        .route(&format!("{documents}/{{id}}"), get(get_document).delete(delete_document))
        .route("/indexes/{uid}/search", get(search_get).post(search_post))
        .route("/indexes/{uid}/facet-search", post(facet_search))
        .route("/indexes/{uid}/settings", get(get_settings).patch(patch_settings).delete(reset_settings))
        .route("/indexes/{uid}/settings/{name}", get(get_setting).put(put_setting).patch(put_setting).delete(reset_setting))
        .route("/multi-search", post(multi_search))
        .route("/swap-indexes", post(swap_indexes))
        .route("/experimental-features", get(get_features).patch(patch_features))
        .route("/dumps", post(create_dump))
        .route("/snapshots", post(create_snapshot))
        .route("/tasks", get(list_tasks).delete(delete_tasks))
        .route("/tasks/cancel", post(cancel_tasks))
        .route("/tasks/{uid}", get(get_task))
        .route("/_testnode/faults", post(set_faults))
        .merge(super::keys::router(keys))
        // Like Meilisearch (no default service in its actix app): a bare 404.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .layer(DefaultBodyLimit::max(512 * 1024 * 1024))
        .with_state(app)
}

/// Faults, then authentication, before every Meilisearch route.
async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/_testnode/") {
        return next.run(request).await;
    }
    let (faults, n) = {
        let faults = app.faults.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut count = app.requests.lock().unwrap_or_else(|e| e.into_inner());
        *count += 1;
        (faults, *count)
    };
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.settings_latency_ms > 0 && path.contains("/settings") {
        tokio::time::sleep(Duration::from_millis(faults.settings_latency_ms)).await;
    }
    if faults.down {
        let error = NodeError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "internal",
            kind: "internal",
            message: "test node is down (injected fault)".into(),
        };
        return error.into_response();
    }
    if faults.error_rate > 0.0 {
        let every = (1.0 / faults.error_rate.min(1.0)).round().max(1.0) as u64;
        if n.is_multiple_of(every) {
            let error = NodeError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal",
                kind: "internal",
                message: "injected error".into(),
            };
            return error.into_response();
        }
    }
    if let Some(master_key) = &app.master_key
        && path != "/health"
    {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match header.and_then(|h| h.strip_prefix("Bearer ")) {
            None => return NodeError::auth(
                StatusCode::UNAUTHORIZED,
                "missing_authorization_header",
                "The Authorization header is missing. It must use the bearer authorization method.",
            )
            .into_response(),
            // API keys open every route but /keys (action checks: not modelled here).
            Some(token)
                if token.trim() != &**master_key
                    && (path.starts_with("/keys") || !app.keys.accepts(token.trim())) =>
            {
                return NodeError::auth(
                    StatusCode::FORBIDDEN,
                    "invalid_api_key",
                    "The provided API key is invalid.",
                )
                .into_response();
            }
            Some(_) => {}
        }
    }
    next.run(request).await
}

async fn set_faults(State(app): State<App>, Json(faults): Json<Faults>) -> Json<Faults> {
    *app.node
        .task_delay
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Duration::from_millis(faults.task_delay_ms);
    app.node
        .fail_settings
        .store(faults.fail_settings, std::sync::atomic::Ordering::Relaxed);
    *app.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults.clone();
    Json(faults)
}

fn accepted(summary: Value) -> Response {
    (StatusCode::ACCEPTED, Json(summary)).into_response()
}

fn json_body(body: &Bytes) -> Result<Value> {
    if body.is_empty() {
        return Err(NodeError::invalid(
            "missing_payload",
            "A json payload is missing.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        NodeError::invalid(
            "malformed_payload",
            format!("The json payload provided is malformed. `{e}`."),
        )
    })
}

fn json_object(body: &Bytes) -> Result<Map<String, Value>> {
    match json_body(body)? {
        Value::Object(map) => Ok(map),
        other => Err(NodeError::invalid(
            "bad_request",
            format!(
                "Invalid value type: expected an object, but found {}: `{other}`",
                kind_of(&other)
            ),
        )),
    }
}

fn with_index<T>(app: &App, uid: &str, f: impl FnOnce(&Index) -> Result<T>) -> Result<T> {
    with_index_filtered(app, uid, None, f)
}

/// [`with_index`] for a request carrying `filter`: once the index is found, a filter using
/// `CONTAINS` or `STARTS WITH` is refused unless the `containsFilter` experimental feature
/// is on, as in Meilisearch.
fn with_index_filtered<T>(
    app: &App,
    uid: &str,
    filter: Option<&Value>,
    f: impl FnOnce(&Index) -> Result<T>,
) -> Result<T> {
    let state = app.node.lock();
    let index = state
        .indexes
        .get(uid)
        .ok_or_else(|| NodeError::index_not_found(uid))?;
    if !state.features.contains("containsFilter") {
        refuse_contains(filter)?;
    }
    f(index)
}

/// Meilisearch's `feature_not_enabled` for the first filter string using `CONTAINS` or
/// `STARTS WITH`.
fn refuse_contains(filter: Option<&Value>) -> Result<()> {
    for text in filter
        .map(super::search::filter_strings)
        .unwrap_or_default()
    {
        if let Some((start, end)) = super::filter::contains_operator(text) {
            return Err(NodeError {
                status: StatusCode::BAD_REQUEST,
                code: "feature_not_enabled",
                kind: "invalid_request",
                message: format!(
                    "Using `CONTAINS` or `STARTS WITH` in a filter requires enabling the `contains filter` experimental feature. See https://github.com/orgs/meilisearch/discussions/763\n{start}:{end} {text}"
                ),
            });
        }
    }
    Ok(())
}

/// A multi-search query's error as Meilisearch words it: deserr's errors about the
/// body's shape carry the member's whole path (`.queries[1].limit`), the others are
/// prefixed with `Inside `.queries[1]`: `.
fn at_query(position: usize, message: &str) -> String {
    let path = format!(".queries[{position}]");
    if let Some(rest) = message.strip_prefix("Invalid value type at `.") {
        return format!("Invalid value type at `{path}.{rest}");
    }
    if let Some(rest) = message.strip_prefix("Invalid value at `.") {
        return format!("Invalid value at `{path}.{rest}");
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

/// The experimental features as Meilisearch lists them.
fn features_view(state: &NodeState) -> Value {
    let features: Map<String, Value> = EXPERIMENTAL_FEATURES
        .iter()
        .map(|f| ((*f).to_owned(), json!(state.features.contains(*f))))
        .collect();
    Value::Object(features)
}

/// `GET /experimental-features`.
async fn get_features(State(app): State<App>) -> Json<Value> {
    Json(features_view(&app.node.lock()))
}

/// `PATCH /experimental-features`: booleans set, `null` or absent leave a feature as it
/// is; an unknown feature or a value of another type changes nothing.
async fn patch_features(State(app): State<App>, body: Bytes) -> Result<Json<Value>> {
    let body = json_body(&body)?;
    let Value::Object(patch) = body else {
        return Err(NodeError::invalid(
            "bad_request",
            format!(
                "Invalid value type: expected an object, but found {}: `{body}`",
                kind_of(&body)
            ),
        ));
    };
    for (feature, value) in &patch {
        if !EXPERIMENTAL_FEATURES.contains(&feature.as_str()) {
            let expected: Vec<String> = EXPERIMENTAL_FEATURES
                .iter()
                .map(|f| format!("`{f}`"))
                .collect();
            return Err(NodeError::invalid(
                "bad_request",
                format!(
                    "Unknown field `{feature}`: expected one of {}",
                    expected.join(", ")
                ),
            ));
        }
        if !(value.is_boolean() || value.is_null()) {
            return Err(NodeError::invalid(
                "bad_request",
                format!(
                    "Invalid value type at `.{feature}`: expected a boolean, but found {}: `{value}`",
                    kind_of(value)
                ),
            ));
        }
    }
    let mut state = app.node.lock();
    for (feature, value) in patch {
        match value.as_bool() {
            Some(true) => {
                state.features.insert(feature);
            }
            Some(false) => {
                state.features.remove(&feature);
            }
            None => {}
        }
    }
    Ok(Json(features_view(&state)))
}

fn index_view(uid: &str, index: &Index) -> Value {
    json!({"uid": uid, "createdAt": index.created_at, "updatedAt": index.updated_at, "primaryKey": index.primary_key})
}

fn paging(params: &HashMap<String, String>, code_prefix: &str) -> Result<(usize, usize)> {
    let number = |name: &str, default: usize| -> Result<usize> {
        match params.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                NodeError::invalid(
                    if code_prefix == "documents" { if name == "offset" { "invalid_document_offset" } else { "invalid_document_limit" } } else if name == "offset" { "invalid_index_offset" } else { "invalid_index_limit" },
                    format!("Invalid value in parameter `{name}`: could not parse `{v}` as a positive integer"),
                )
            }),
        }
    };
    Ok((number("offset", 0)?, number("limit", 20)?))
}

async fn list_indexes(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    let (offset, limit) = paging(&params, "indexes")?;
    let state = app.node.lock();
    let results: Vec<Value> = state
        .indexes
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(uid, i)| index_view(uid, i))
        .collect();
    Ok(Json(
        json!({"results": results, "offset": offset, "limit": limit, "total": state.indexes.len()}),
    ))
}

fn valid_uid(uid: &str) -> Result<()> {
    if !uid.is_empty()
        && uid.len() <= 400
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(NodeError::invalid(
            "invalid_index_uid",
            format!(
                "`{uid}` is not a valid index uid. Index uid can be an integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can not be more than 512 bytes."
            ),
        ))
    }
}

async fn create_index(State(app): State<App>, body: Bytes) -> Result<Response> {
    let body = json_object(&body)?;
    let Some(uid) = body.get("uid").and_then(Value::as_str) else {
        return Err(NodeError::invalid(
            "missing_index_uid",
            "Missing field `uid`",
        ));
    };
    valid_uid(uid).map_err(|e| NodeError {
        message: format!("Invalid value at `.uid`: {}", e.message),
        ..e
    })?;
    let primary_key = body
        .get("primaryKey")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(accepted(app.node.enqueue(
        Some(uid),
        "indexCreation",
        Some(json!({"primaryKey": primary_key})),
        TaskOp::CreateIndex { primary_key },
    )))
}

async fn get_index(State(app): State<App>, Path(uid): Path<String>) -> Result<Json<Value>> {
    with_index(&app, &uid, |index| Ok(Json(index_view(&uid, index))))
}

async fn update_index(
    State(app): State<App>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let body = json_object(&body)?;
    for immutable in ["uid", "createdAt", "updatedAt"] {
        if body.contains_key(immutable) {
            let code = match immutable {
                "uid" => "immutable_index_uid",
                "createdAt" => "immutable_index_created_at",
                _ => "immutable_index_updated_at",
            };
            return Err(NodeError::invalid(
                code,
                format!("Immutable field `{immutable}`: expected one of `primaryKey`"),
            ));
        }
    }
    let primary_key = body
        .get("primaryKey")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(accepted(app.node.enqueue(
        Some(&uid),
        "indexUpdate",
        Some(json!({"primaryKey": primary_key})),
        TaskOp::UpdateIndex { primary_key },
    )))
}

async fn delete_index(State(app): State<App>, Path(uid): Path<String>) -> Response {
    accepted(app.node.enqueue(
        Some(&uid),
        "indexDeletion",
        Some(json!({"deletedDocuments": null})),
        TaskOp::DeleteIndex,
    ))
}

fn stats_of(index: &Index, processing: bool) -> Value {
    let mut distribution: Map<String, Value> = Map::new();
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for document in index.documents.values() {
        if let Some(object) = document.as_object() {
            for key in object.keys() {
                *counts.entry(key.clone()).or_default() += 1;
            }
        }
    }
    for (key, count) in counts {
        distribution.insert(key, json!(count));
    }
    json!({
        "numberOfDocuments": index.documents.len(),
        "rawDocumentDbSize": 0,
        "avgDocumentSize": 0,
        "isIndexing": processing,
        "numberOfEmbeddings": 0,
        "numberOfEmbeddedDocuments": 0,
        "fieldDistribution": distribution,
    })
}

async fn index_stats(State(app): State<App>, Path(uid): Path<String>) -> Result<Json<Value>> {
    let state = app.node.lock();
    let index = state
        .indexes
        .get(&uid)
        .ok_or_else(|| NodeError::index_not_found(&uid))?;
    let busy = state.tasks.values().any(|t| {
        t.index_uid.as_deref() == Some(&uid) && matches!(t.status, "enqueued" | "processing")
    });
    Ok(Json(stats_of(index, busy)))
}

async fn global_stats(State(app): State<App>) -> Json<Value> {
    let state = app.node.lock();
    let indexes: Map<String, Value> = state
        .indexes
        .iter()
        .map(|(uid, index)| {
            let busy = state.tasks.values().any(|t| {
                t.index_uid.as_deref() == Some(uid) && matches!(t.status, "enqueued" | "processing")
            });
            (uid.clone(), stats_of(index, busy))
        })
        .collect();
    Json(
        json!({"databaseSize": 0, "usedDatabaseSize": 0, "lastUpdate": state.last_update, "indexes": indexes}),
    )
}

/// Parses a documents payload by content type.
fn parse_documents(
    headers: &HeaderMap,
    body: &Bytes,
    params: &HashMap<String, String>,
) -> Result<Vec<Value>> {
    let accepted_types = "Accepted values for the Content-Type header are: `application/json`, `application/x-ndjson`, `text/csv`";
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(NodeError::invalid(
            "missing_content_type",
            format!("A Content-Type header is missing. {accepted_types}"),
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if params.contains_key("csvDelimiter") && mime != "text/csv" {
        return Err(NodeError::invalid("invalid_document_csv_delimiter", format!("The Content-Type `{mime}` does not support the use of a csv delimiter. The csv delimiter can only be used with the Content-Type `text/csv`.")).with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    match mime.as_str() {
        "application/json" => {
            if body.is_empty() {
                return Err(NodeError::invalid(
                    "missing_payload",
                    "A json payload is missing.",
                ));
            }
            let malformed = |detail: String| {
                NodeError::invalid(
                    "malformed_payload",
                    format!(
                        "The `json` payload provided is malformed. `Couldn't serialize document value: {detail}`."
                    ),
                )
            };
            match serde_json::from_slice::<Value>(body).map_err(|e| malformed(e.to_string()))? {
                Value::Array(items) if items.iter().all(Value::is_object) => Ok(items),
                object @ Value::Object(_) => Ok(vec![object]),
                _ => Err(malformed(
                    "data are neither an object nor a list of objects".into(),
                )),
            }
        }
        "application/x-ndjson" => {
            if body.is_empty() {
                return Err(NodeError::invalid(
                    "missing_payload",
                    "A ndjson payload is missing.",
                ));
            }
            let text = std::str::from_utf8(body).map_err(|e| {
                NodeError::invalid(
                    "malformed_payload",
                    format!("The `ndjson` payload provided is malformed. `{e}`."),
                )
            })?;
            // A stream of values, as Meilisearch reads it (one per line, or several).
            serde_json::Deserializer::from_str(text)
                .into_iter::<Value>()
                .map(|value| match value {
                    Ok(object @ Value::Object(_)) => Ok(object),
                    Ok(_) => Err(NodeError::invalid("malformed_payload", "The `ndjson` payload provided is malformed. `Couldn't serialize document value: data are neither an object nor a list of objects`.")),
                    Err(e) => Err(NodeError::invalid("malformed_payload", format!("The `ndjson` payload provided is malformed. `Couldn't serialize document value: {e}`."))),
                })
                .collect()
        }
        "text/csv" => {
            if body.is_empty() {
                return Err(NodeError::invalid(
                    "missing_payload",
                    "A csv payload is missing.",
                ));
            }
            let delimiter = match params.get("csvDelimiter") {
                None => ',',
                Some(d) if d.chars().count() == 1 && d.is_ascii() => {
                    d.chars().next().unwrap_or(',')
                }
                Some(d) => {
                    return Err(NodeError::invalid(
                        "invalid_document_csv_delimiter",
                        format!("csv delimiter must be an ascii character. Found: `{d}`"),
                    ));
                }
            };
            let text = std::str::from_utf8(body).map_err(|e| {
                NodeError::invalid(
                    "malformed_payload",
                    format!("The `csv` payload provided is malformed: `{e}`."),
                )
            })?;
            parse_csv(text, delimiter)
        }
        other => Err(NodeError::invalid(
            "invalid_content_type",
            format!("The Content-Type `{other}` is invalid. {accepted_types}"),
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)),
    }
}

/// CSV with a header row; `name:number`, `name:boolean` and `name:string` headers type
/// their column; empty cells are null.
fn parse_csv(text: &str, delimiter: char) -> Result<Vec<Value>> {
    fn split(line: &str, delimiter: char) -> Vec<String> {
        let (mut cells, mut cell, mut quoted, mut chars) =
            (Vec::new(), String::new(), false, line.chars().peekable());
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    cell.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                c if c == delimiter && !quoted => cells.push(std::mem::take(&mut cell)),
                c => cell.push(c),
            }
        }
        cells.push(cell);
        cells
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Ok(Vec::new());
    };
    let columns: Vec<(String, String)> = split(header, delimiter)
        .into_iter()
        .map(|h| match h.rsplit_once(':') {
            Some((name, kind @ ("number" | "boolean" | "string"))) => {
                (name.to_owned(), kind.to_owned())
            }
            _ => (h, "string".to_owned()),
        })
        .collect();
    let mut documents = Vec::new();
    for (line_number, line) in lines.enumerate() {
        let cells = split(line, delimiter);
        let mut document = Map::new();
        for ((name, kind), cell) in columns.iter().zip(cells) {
            let value = if cell.is_empty() {
                Value::Null
            } else {
                match kind.as_str() {
                    "number" => cell.trim().parse::<i64>().map(Value::from).or_else(|_| cell.trim().parse::<f64>().map(Value::from)).map_err(|_| {
                        NodeError::invalid("malformed_payload", format!("The `csv` payload provided is malformed: `Error parsing number {cell:?} at line {}`.", line_number + 1))
                    })?,
                    "boolean" => Value::Bool(cell.trim() == "true"),
                    _ => Value::String(cell),
                }
            };
            document.insert(name.clone(), value);
        }
        documents.push(Value::Object(document));
    }
    Ok(documents)
}

async fn add(
    app: App,
    uid: String,
    headers: HeaderMap,
    params: HashMap<String, String>,
    body: Bytes,
    merge: bool,
) -> Result<Response> {
    valid_uid(&uid)?;
    let documents = parse_documents(&headers, &body, &params)?;
    let details = json!({"receivedDocuments": documents.len(), "indexedDocuments": null});
    let primary_key = params.get("primaryKey").cloned();
    Ok(accepted(app.node.enqueue(
        Some(&uid),
        "documentAdditionOrUpdate",
        Some(details),
        TaskOp::AddDocuments {
            documents,
            primary_key,
            merge,
        },
    )))
}

async fn add_documents(
    State(app): State<App>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    add(app, uid, headers, params, body, false).await
}

async fn update_documents(
    State(app): State<App>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    add(app, uid, headers, params, body, true).await
}

async fn clear_documents(State(app): State<App>, Path(uid): Path<String>) -> Response {
    accepted(app.node.enqueue(
        Some(&uid),
        "documentDeletion",
        Some(json!({"deletedDocuments": null})),
        TaskOp::Clear,
    ))
}

async fn delete_document(
    State(app): State<App>,
    Path((uid, id)): Path<(String, String)>,
) -> Response {
    let details = json!({"providedIds": 1, "deletedDocuments": null, "originalFilter": null});
    accepted(app.node.enqueue(
        Some(&uid),
        "documentDeletion",
        Some(details),
        TaskOp::DeleteIds(vec![id]),
    ))
}

async fn delete_batch(
    State(app): State<App>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let Value::Array(ids) = json_body(&body)? else {
        return Err(NodeError::invalid(
            "bad_request",
            "Invalid value type: expected an array",
        ));
    };
    let ids: Vec<String> = ids
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        })
        .collect();
    let details =
        json!({"providedIds": ids.len(), "deletedDocuments": null, "originalFilter": null});
    Ok(accepted(app.node.enqueue(
        Some(&uid),
        "documentDeletion",
        Some(details),
        TaskOp::DeleteIds(ids),
    )))
}

async fn delete_by_filter(
    State(app): State<App>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let body = json_object(&body)?;
    let Some(filter) = body.get("filter").cloned() else {
        return Err(NodeError::invalid(
            "missing_document_filter",
            "Missing field `filter`",
        ));
    };
    if !app.node.lock().features.contains("containsFilter") {
        refuse_contains(Some(&filter))?;
    }
    if super::filter::parse_json(&filter)
        .map_err(|e| NodeError::invalid("invalid_document_filter", e))?
        .is_none()
    {
        return Err(NodeError::invalid(
            "invalid_document_filter",
            "Sending an empty filter is forbidden.",
        ));
    }
    let details =
        json!({"providedIds": 0, "deletedDocuments": null, "originalFilter": filter.to_string()});
    Ok(accepted(app.node.enqueue(
        Some(&uid),
        "documentDeletion",
        Some(details),
        TaskOp::DeleteByFilter(filter),
    )))
}

/// Documents browse/fetch: filter, ids, sort (insertion order otherwise), fields, paging.
fn browse(uid: &str, index: &Index, request: &Map<String, Value>) -> Result<Value> {
    let uint = |name: &str, default: usize, code: &'static str| -> Result<usize> {
        match request.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64().unwrap_or(0) as usize),
            Some(other) => Err(NodeError::invalid(
                code,
                format!(
                    "Invalid value type at `.{name}`: expected a positive integer, but found {}: `{other}`",
                    kind_of(other)
                ),
            )),
        }
    };
    let offset = uint("offset", 0, "invalid_document_offset")?;
    let limit = uint("limit", 20, "invalid_document_limit")?;
    let fields: Option<Vec<String>> = request.get("fields").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    });
    let ids: Option<Vec<String>> = request.get("ids").and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect()
    });
    let filter = parse_filter(
        uid,
        index,
        request.get("filter").filter(|f| !f.is_null()),
        "invalid_document_filter",
    )?;
    let mut matching: Vec<&Value> = index
        .documents
        .values()
        .filter(|d| filter.as_ref().is_none_or(|f| f.matches(d)))
        .filter(|d| {
            ids.as_ref()
                .is_none_or(|ids| index.external_id(d).is_some_and(|id| ids.contains(&id)))
        })
        .collect();
    if let Some(sort) = request.get("sort").and_then(Value::as_array) {
        let mut query = Map::new();
        query.insert("sort".into(), Value::Array(sort.clone()));
        query.insert("limit".into(), json!(0));
        // Reuse search's sort validation, then sort here without the result cap.
        search(uid, index, &query).map_err(|e| NodeError {
            code: "invalid_document_sort",
            ..e
        })?;
        let keys: Vec<(String, bool)> = sort
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|s| s.rsplit_once(':').map(|(f, d)| (f.to_owned(), d == "asc")))
            .collect();
        matching.sort_by(|a, b| {
            for (field, ascending) in &keys {
                let (va, vb) = (
                    super::filter::lookup(a, field),
                    super::filter::lookup(b, field),
                );
                let o = match (va, vb) {
                    (Some(Value::Number(x)), Some(Value::Number(y))) => x
                        .as_f64()
                        .partial_cmp(&y.as_f64())
                        .unwrap_or(std::cmp::Ordering::Equal),
                    (Some(Value::String(x)), Some(Value::String(y))) => {
                        x.to_lowercase().cmp(&y.to_lowercase())
                    }
                    (Some(_), None) => return std::cmp::Ordering::Less,
                    (None, Some(_)) => return std::cmp::Ordering::Greater,
                    _ => std::cmp::Ordering::Equal,
                };
                let o = if *ascending { o } else { o.reverse() };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    let displayed = index.setting_list("displayedAttributes");
    let results: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| Value::Object(project(d, &displayed, fields.as_deref())))
        .collect();
    Ok(json!({"results": results, "offset": offset, "limit": limit, "total": matching.len()}))
}

async fn get_documents(
    State(app): State<App>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    let (offset, limit) = paging(&params, "documents")?;
    let mut request = Map::new();
    request.insert("offset".into(), json!(offset));
    request.insert("limit".into(), json!(limit));
    let list = |v: &String| Value::Array(v.split(',').map(|s| json!(s.trim())).collect());
    if let Some(fields) = params.get("fields") {
        request.insert("fields".into(), list(fields));
    }
    if let Some(ids) = params.get("ids") {
        request.insert("ids".into(), list(ids));
    }
    if let Some(sort) = params.get("sort") {
        request.insert("sort".into(), list(sort));
    }
    if let Some(filter) = params.get("filter") {
        request.insert(
            "filter".into(),
            serde_json::from_str(filter).unwrap_or_else(|_| json!(filter)),
        );
    }
    with_index_filtered(&app, &uid, request.get("filter"), |index| {
        browse(&uid, index, &request).map(Json)
    })
}

async fn fetch_documents(
    State(app): State<App>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let request = if body.is_empty() {
        Map::new()
    } else {
        json_object(&body)?
    };
    with_index_filtered(&app, &uid, request.get("filter"), |index| {
        browse(&uid, index, &request).map(Json)
    })
}

async fn get_document(
    State(app): State<App>,
    Path((uid, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    with_index(&app, &uid, |index| {
        let document = index
            .ids
            .get(&id)
            .and_then(|i| index.documents.get(i))
            .ok_or_else(|| {
                NodeError::invalid("document_not_found", format!("Document `{id}` not found."))
                    .with_status(StatusCode::NOT_FOUND)
            })?;
        let fields: Option<Vec<String>> = params
            .get("fields")
            .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect());
        Ok(Json(Value::Object(project(
            document,
            &index.setting_list("displayedAttributes"),
            fields.as_deref(),
        ))))
    })
}

/// Turns GET search parameters into the POST body shape.
fn search_params(params: &HashMap<String, String>) -> Map<String, Value> {
    let mut query = Map::new();
    for (key, value) in params {
        let parsed = match key.as_str() {
            "offset" | "limit" | "page" | "hitsPerPage" | "cropLength" => value
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(value)),
            "rankingScoreThreshold" => value
                .parse::<f64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(value)),
            "showRankingScore"
            | "showRankingScoreDetails"
            | "showMatchesPosition"
            | "showPerformanceDetails"
            | "retrieveVectors" => value
                .parse::<bool>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(value)),
            "attributesToRetrieve"
            | "attributesToCrop"
            | "attributesToHighlight"
            | "facets"
            | "attributesToSearchOn"
            | "locales" => Value::Array(value.split(',').map(|s| json!(s.trim())).collect()),
            "sort" => {
                // Commas inside _geoPoint(…) do not separate criteria.
                let (mut items, mut current, mut depth) = (Vec::new(), String::new(), 0);
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
            "filter" => serde_json::from_str(value).unwrap_or_else(|_| json!(value)),
            _ => json!(value),
        };
        query.insert(key.clone(), parsed);
    }
    query
}

async fn search_get(
    State(app): State<App>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    let query = search_params(&params);
    with_index_filtered(&app, &uid, query.get("filter"), |index| {
        search(&uid, index, &query).map(Json)
    })
}

async fn search_post(
    State(app): State<App>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let query = if body.is_empty() {
        Map::new()
    } else {
        json_object(&body)?
    };
    with_index_filtered(&app, &uid, query.get("filter"), |index| {
        search(&uid, index, &query).map(Json)
    })
}

async fn facet_search(
    State(app): State<App>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let mut body = json_object(&body)?;
    let Some(facet) = body
        .remove("facetName")
        .and_then(|v| v.as_str().map(str::to_owned))
    else {
        return Err(NodeError::invalid(
            "missing_facet_search_facet_name",
            "Missing field `facetName`",
        ));
    };
    let facet_query = body
        .remove("facetQuery")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    body.remove("exhaustiveFacetCount");
    with_index_filtered(&app, &uid, body.get("filter"), |index| {
        if index.settings.get("facetSearch") == Some(&Value::Bool(false)) {
            return Err(NodeError::invalid(
                "facet_search_disabled",
                "The facet search is disabled for this index",
            ));
        }
        if !index.is_filterable(&facet) {
            return Err(NodeError::invalid(
                "invalid_facet_search_facet_name",
                format!(
                    "Attribute `{facet}` is not facet-searchable. Note that attributes are facet-searchable only if they are filterable."
                ),
            ));
        }
        // Every document the query and filter match (not only the first
        // `maxTotalHits`), then their values of the facet that the facet query matches,
        // collected as Meilisearch does: up to `maxValuesPerFacet`, the most frequent
        // (ties: the greater value first) or the first by normalized value.
        let (_, matching, _) = search_ranked(&uid, index, &body)?;
        let documents = matching.iter().filter_map(|id| index.documents.get(id));
        let wanted = tokenize(&facet_query).join(" ");
        let mut values: Vec<(String, u64)> = facet_counts(documents, &facet)
            .into_iter()
            .filter(|(v, _)| tokenize(v).join(" ").starts_with(&wanted))
            .collect();
        let order = facet_order(index, &facet);
        if order.1 == "count" {
            values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        }
        values.truncate(order.0);
        let hits: Vec<Value> = values
            .into_iter()
            .map(|(v, c)| json!({"value": v, "count": c}))
            .collect();
        Ok(Json(
            json!({"facetHits": hits, "facetQuery": if facet_query.is_empty() { Value::Null } else { json!(facet_query) }, "processingTimeMs": 0}),
        ))
    })
}

async fn multi_search(State(app): State<App>, body: Bytes) -> Result<Json<Value>> {
    let body = json_object(&body)?;
    let Some(Value::Array(queries)) = body.get("queries") else {
        return Err(NodeError::invalid("bad_request", "Missing field `queries`"));
    };
    let federation = body.get("federation").filter(|f| !f.is_null());
    let started = std::time::Instant::now();
    // (position, index, weight, answer, matching documents in rank order)
    let mut results = Vec::new();
    let mut stages = PerformanceDetails::default();
    for (position, query) in queries.iter().enumerate() {
        let Some(mut query) = query.as_object().cloned() else {
            return Err(NodeError::invalid(
                "bad_request",
                format!("Invalid value type at `.queries[{position}]`: expected an object"),
            ));
        };
        let Some(uid) = query
            .remove("indexUid")
            .and_then(|v| v.as_str().map(str::to_owned))
        else {
            return Err(NodeError::invalid(
                "missing_index_uid",
                format!("Missing field `indexUid` inside `.queries[{position}]`"),
            ));
        };
        let options = query.remove("federationOptions");
        // deserr checks the weight with the body, before any search.
        let at = format!(".queries[{position}].federationOptions.weight");
        match options.as_ref().and_then(|o| o.get("weight")) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_f64().is_some_and(|w| w >= 0.0) => {}
            Some(Value::Number(_)) => {
                return Err(NodeError::invalid(
                    "invalid_multi_search_weight",
                    format!(
                        "Invalid value at `{at}`: the value of `weight` is invalid, expected a positive float (>= 0.0)."
                    ),
                ));
            }
            Some(other) => {
                return Err(NodeError::invalid(
                    "invalid_multi_search_weight",
                    format!(
                        "Invalid value type at `{at}`: expected a number, but found {}: `{other}`",
                        kind_of(other)
                    ),
                ));
            }
        }
        if federation.is_some() {
            for field in ["offset", "limit", "page", "hitsPerPage"] {
                if query.contains_key(field) {
                    return Err(NodeError::invalid(
                        "invalid_multi_search_query_pagination",
                        format!(
                            "Inside `.queries[{position}]`: Using pagination options is not allowed in federated queries.\n - Hint: remove `{field}` from query #{position} or remove `federation` from the request"
                        ),
                    ));
                }
            }
            if query.contains_key("facets") {
                return Err(NodeError::invalid(
                    "invalid_multi_search_query_facets",
                    format!(
                        "Inside `.queries[{position}]`: Using facet options is not allowed in federated queries.\n - Hint: remove `facets` from query #{position} or remove `federation` from the request"
                    ),
                ));
            }
            query.insert("limit".into(), json!(usize::MAX >> 12));
            query.insert("showRankingScore".into(), json!(true));
        } else if options.is_some() {
            return Err(NodeError::invalid(
                "invalid_multi_search_federation_options",
                format!(
                    "Inside `.queries[{position}]`: Using `federationOptions` is not allowed in a non-federated search."
                ),
            ));
        }
        let (mut result, matching, spent) =
            with_index_filtered(&app, &uid, query.get("filter"), |index| {
                search_ranked(&uid, index, &query)
            })
            .map_err(|e| NodeError {
                message: at_query(position, &e.message),
                // A missing index is not the request's URL: 400, not 404.
                status: if e.code == "index_not_found" {
                    StatusCode::BAD_REQUEST
                } else {
                    e.status
                },
                ..e
            })?;
        let weight = options
            .as_ref()
            .and_then(|o| o.get("weight"))
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        result
            .as_object_mut()
            .map(|r| r.insert("indexUid".into(), json!(uid)));
        stages.merge(&spent);
        // A placeholder search ranks nothing: its list of rule scores is empty, below
        // any other's in a federation whatever the weights (Meilisearch 1.50).
        let unranked = query
            .get("q")
            .is_none_or(|q| q.is_null() || q.as_str().is_some_and(|q| q.trim().is_empty()))
            && query.get("sort").is_none_or(Value::is_null);
        results.push(QueryResult {
            position,
            uid,
            weight,
            unranked,
            result,
            matching,
        });
    }
    stages.add("search > execute local search", started.elapsed());
    let Some(federation) = federation else {
        let request_uid = json!(uuid::Uuid::now_v7().to_string());
        let results: Vec<Value> = results
            .into_iter()
            .map(|QueryResult { uid, result, .. }| {
                let mut out = Map::new();
                out.insert("indexUid".into(), json!(uid));
                if let Value::Object(map) = result {
                    out.extend(map.into_iter().filter(|(k, _)| k != "indexUid"));
                }
                out.insert("requestUid".into(), request_uid.clone());
                Value::Object(out)
            })
            .collect();
        return Ok(Json(json!({"results": results})));
    };
    federated(&app, federation, results, stages).map(Json)
}

/// One query of a multi-search, run.
struct QueryResult {
    position: usize,
    uid: String,
    weight: f64,
    /// A placeholder search (no words, no sort): it ranks nothing.
    unranked: bool,
    result: Value,
    /// Every matching document, in rank order.
    matching: Vec<u64>,
}

/// A federated hit: (unranked, weighted score), query position, rank, index, document.
type FederatedHit = ((bool, f64), usize, usize, String, u64, Value);

/// A federated multi-search as Meilisearch answers it: the queries of one index form one
/// list in which a document appears once (where it ranks best); each index counts, and
/// facets with `facetsByIndex`, the union of what its queries match; `mergeFacets` sums
/// the indexes' facets.
fn federated(
    app: &App,
    federation: &Value,
    results: Vec<QueryResult>,
    mut stages: PerformanceDetails,
) -> Result<Value> {
    let show_performance = match federation.get("showPerformanceDetails") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(show)) => *show,
        Some(other) => {
            return Err(NodeError::invalid(
                "invalid_search_show_performance_details",
                format!(
                    "Invalid value type at `.federation.showPerformanceDetails`: expected a boolean, but found {}: `{other}`",
                    kind_of(other)
                ),
            ));
        }
    };
    let merging = std::time::Instant::now();
    let number = |name: &str| {
        federation
            .get(name)
            .and_then(Value::as_u64)
            .map(|n| n as usize)
    };
    let (page, hits_per_page) = (number("page"), number("hitsPerPage"));
    let page_mode = page.is_some() || hits_per_page.is_some();
    let (page, hits_per_page) = (page.unwrap_or(1), hits_per_page.unwrap_or(20));
    let (skip, take) = if page_mode {
        (
            page.saturating_sub(1) * hits_per_page,
            if page == 0 { 0 } else { hits_per_page },
        )
    } else {
        (number("offset").unwrap_or(0), number("limit").unwrap_or(20))
    };
    let facets_by_index = match federation.get("facetsByIndex") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(NodeError::invalid(
                "invalid_multi_search_facets_by_index",
                format!(
                    "Invalid value type at `.federation.facetsByIndex`: expected an object, but found {}: `{other}`",
                    kind_of(other)
                ),
            ));
        }
    };
    let mut unions: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    let mut hits: Vec<FederatedHit> = Vec::new();
    for QueryResult {
        position,
        uid,
        weight,
        unranked,
        result,
        matching,
    } in results
    {
        let union = unions.entry(uid.clone()).or_default();
        union.extend(matching.iter().copied());
        for (rank, (hit, internal)) in result["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(matching)
            .enumerate()
        {
            let score = hit["_rankingScore"].as_f64().unwrap_or(0.0) * weight;
            let mut hit = hit.clone();
            if let Some(map) = hit.as_object_mut() {
                map.remove("_rankingScore");
                map.insert("_federation".into(), json!({"indexUid": uid, "queriesPosition": position, "weightedRankingScore": score}));
            }
            hits.push((
                (unranked, score),
                position,
                rank,
                uid.clone(),
                internal,
                hit,
            ));
        }
    }
    hits.sort_by(|a, b| {
        let by_score = match (a.0.0, b.0.0) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            (false, false) => {
                b.0.1
                    .partial_cmp(&a.0.1)
                    .unwrap_or(std::cmp::Ordering::Equal)
            }
        };
        by_score.then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    });
    let mut seen = HashSet::new();
    let hits: Vec<Value> = hits
        .into_iter()
        .filter(|(_, _, _, uid, internal, _)| seen.insert((uid.clone(), *internal)))
        .skip(skip)
        .take(take)
        .map(|h| h.5)
        .collect();
    let total: usize = unions.values().map(HashSet::len).sum();
    stages.add("search > merge results", merging.elapsed());
    let merging = std::time::Instant::now();
    let mut facets = Map::new();
    for (uid, asked) in &facets_by_index {
        let wanted: Vec<String> = match asked {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            other => {
                return Err(NodeError::invalid(
                    "invalid_multi_search_facets_by_index",
                    format!(
                        "Invalid value type at `.federation.facetsByIndex.{uid}`: expected an array, but found {}: `{other}`",
                        kind_of(other)
                    ),
                ));
            }
        };
        let union = unions.get(uid);
        let computed = with_index(app, uid, |index| {
            let documents = union
                .into_iter()
                .flatten()
                .filter_map(|internal| index.documents.get(internal));
            Ok(facet_distribution(index, documents, &wanted))
        })
        .map_err(|e| {
            let note = if union.is_some() {
                String::new()
            } else {
                format!("\n - Note: index `{uid}` is not used in queries")
            };
            NodeError {
                message: format!(
                    "Inside `.federation.facetsByIndex.{uid}`: {}{note}",
                    e.message
                ),
                ..e
            }
            .with_status(StatusCode::BAD_REQUEST)
        })?;
        if union.is_some() && !asked.is_null() {
            facets.insert(
                uid.clone(),
                json!({"distribution": computed.0, "stats": computed.1}),
            );
        }
    }
    let mut response = if page_mode {
        let pages = if hits_per_page == 0 {
            0
        } else {
            total.div_ceil(hits_per_page)
        };
        json!({"hits": hits, "processingTimeMs": 0, "hitsPerPage": hits_per_page, "page": page, "totalPages": pages, "totalHits": total})
    } else {
        json!({"hits": hits, "processingTimeMs": 0, "limit": take, "offset": skip, "estimatedTotalHits": total})
    };
    let merge = federation.get("mergeFacets").filter(|m| !m.is_null());
    match merge {
        _ if facets.is_empty() => {}
        Some(merge) => {
            let max_values = merge
                .get("maxValuesPerFacet")
                .and_then(Value::as_u64)
                .map_or(usize::MAX, |n| n as usize);
            let (distribution, stats) = merge_facet_maps(facets.values(), max_values);
            response["facetDistribution"] = distribution;
            response["facetStats"] = stats;
        }
        None => response["facetsByIndex"] = Value::Object(facets),
    }
    response["requestUid"] = json!(uuid::Uuid::now_v7().to_string());
    if show_performance {
        stages.add("search > merge facets", merging.elapsed());
        response["performanceDetails"] = stages.to_value();
    }
    Ok(response)
}

/// Several indexes' `{"distribution", "stats"}` summed: counts added per value (values in
/// alphabetical order, at most `max_values` per facet), stats as the overall min and max.
fn merge_facet_maps<'a>(
    facets: impl Iterator<Item = &'a Value>,
    max_values: usize,
) -> (Value, Value) {
    let mut distribution: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut stats: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for computed in facets {
        for (facet, values) in computed["distribution"].as_object().into_iter().flatten() {
            let merged = distribution.entry(facet.clone()).or_default();
            for (value, count) in values.as_object().into_iter().flatten() {
                *merged.entry(value.clone()).or_default() += count.as_u64().unwrap_or(0);
            }
        }
        for (facet, own) in computed["stats"].as_object().into_iter().flatten() {
            let (min, max) = (
                own["min"].as_f64().unwrap_or(f64::INFINITY),
                own["max"].as_f64().unwrap_or(f64::NEG_INFINITY),
            );
            let merged = stats
                .entry(facet.clone())
                .or_insert((f64::INFINITY, f64::NEG_INFINITY));
            *merged = (merged.0.min(min), merged.1.max(max));
        }
    }
    let distribution: Map<String, Value> = distribution
        .into_iter()
        .map(|(facet, values)| {
            let values: Map<String, Value> = values
                .into_iter()
                .take(max_values)
                .map(|(v, c)| (v, json!(c)))
                .collect();
            (facet, Value::Object(values))
        })
        .collect();
    let stats: Map<String, Value> = stats
        .into_iter()
        .map(|(facet, (min, max))| (facet, json!({"min": min, "max": max})))
        .collect();
    (Value::Object(distribution), Value::Object(stats))
}

async fn get_settings(State(app): State<App>, Path(uid): Path<String>) -> Result<Json<Value>> {
    with_index(&app, &uid, |index| {
        Ok(Json(Value::Object(index.settings.clone())))
    })
}

async fn patch_settings(
    State(app): State<App>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let update = json_object(&body)?;
    let known = super::index::default_settings();
    if let Some(unknown) = update.keys().find(|k| !known.contains_key(*k)) {
        return Err(NodeError::invalid(
            "bad_request",
            format!(
                "Unknown field `{unknown}`: expected one of {}",
                known
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    valid_uid(&uid)?;
    Ok(accepted(app.node.enqueue(
        Some(&uid),
        "settingsUpdate",
        Some(Value::Object(update.clone())),
        TaskOp::Settings(update),
    )))
}

async fn reset_settings(State(app): State<App>, Path(uid): Path<String>) -> Response {
    let reset: Map<String, Value> = super::index::default_settings()
        .keys()
        .map(|k| (k.clone(), Value::Null))
        .collect();
    accepted(app.node.enqueue(
        Some(&uid),
        "settingsUpdate",
        Some(Value::Object(reset.clone())),
        TaskOp::Settings(reset),
    ))
}

/// `filterable-attributes` → `filterableAttributes`.
fn setting_key(route: &str) -> Option<String> {
    let mut key = String::new();
    let mut upper = false;
    for c in route.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            key.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            key.push(c);
        }
    }
    super::index::default_settings()
        .contains_key(&key)
        .then_some(key)
}

async fn get_setting(
    State(app): State<App>,
    Path((uid, name)): Path<(String, String)>,
) -> Result<Response> {
    let Some(key) = setting_key(&name) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    with_index(&app, &uid, |index| {
        Ok(Json(index.settings.get(&key).cloned().unwrap_or(Value::Null)).into_response())
    })
}

async fn put_setting(
    State(app): State<App>,
    Path((uid, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let Some(key) = setting_key(&name) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let value = json_body(&body)?;
    let mut update = Map::new();
    update.insert(key, value);
    Ok(accepted(app.node.enqueue(
        Some(&uid),
        "settingsUpdate",
        Some(Value::Object(update.clone())),
        TaskOp::Settings(update),
    )))
}

async fn reset_setting(
    State(app): State<App>,
    Path((uid, name)): Path<(String, String)>,
) -> Result<Response> {
    let Some(key) = setting_key(&name) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let mut update = Map::new();
    update.insert(key, Value::Null);
    Ok(accepted(app.node.enqueue(
        Some(&uid),
        "settingsUpdate",
        Some(Value::Object(update.clone())),
        TaskOp::Settings(update),
    )))
}

async fn swap_indexes(State(app): State<App>, body: Bytes) -> Result<Response> {
    let Value::Array(swaps) = json_body(&body)? else {
        return Err(NodeError::invalid(
            "bad_request",
            "Invalid value type: expected an array",
        ));
    };
    let mut pairs = Vec::new();
    for swap in &swaps {
        let names: Vec<String> = swap
            .get("indexes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if names.len() != 2 {
            return Err(NodeError::invalid(
                "invalid_swap_indexes",
                format!(
                    "Two indexes must be given for each swap. The list `{}` contains {} indexes.",
                    json!(names),
                    names.len()
                ),
            ));
        }
        pairs.push((names[0].clone(), names[1].clone()));
    }
    Ok(accepted(app.node.enqueue(
        None,
        "indexSwap",
        Some(json!({"swaps": swaps})),
        TaskOp::Swap(pairs),
    )))
}

/// `POST /dumps`: a `dumpCreation` task whose details name the dump once it succeeded.
async fn create_dump(State(app): State<App>) -> Response {
    accepted(app.node.enqueue(
        None,
        "dumpCreation",
        Some(json!({"dumpUid": null})),
        TaskOp::Dump,
    ))
}

/// `POST /indexes/{uid}/compact`: an `indexCompaction` task, enqueued whether or not
/// the index exists (it then fails), as in Meilisearch.
async fn compact_index(State(app): State<App>, Path(uid): Path<String>) -> Response {
    accepted(app.node.enqueue(
        Some(&uid),
        "indexCompaction",
        Some(json!({})),
        TaskOp::Compact,
    ))
}

/// `POST /snapshots`: a `snapshotCreation` task (no details, as in Meilisearch).
async fn create_snapshot(State(app): State<App>) -> Response {
    accepted(
        app.node
            .enqueue(None, "snapshotCreation", None, TaskOp::Nothing),
    )
}

/// Task filters shared by list, cancel and delete.
struct TaskFilter {
    uids: Option<Vec<u64>>,
    statuses: Option<Vec<String>>,
    types: Option<Vec<String>>,
    index_uids: Option<Vec<String>>,
}

fn task_filter(params: &HashMap<String, String>) -> Result<TaskFilter> {
    let list = |name: &str| {
        params.get(name).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty() && s != "*")
                .collect::<Vec<_>>()
        })
    };
    let uids = match list("uids") {
        None => None,
        Some(values) => Some(
            values
                .iter()
                .map(|v| v.parse::<u64>().map_err(|_| NodeError::invalid("invalid_task_uids", format!("Invalid value in parameter `uids`: could not parse `{v}` as a positive integer"))))
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    const STATUSES: &[&str] = &["enqueued", "processing", "succeeded", "failed", "canceled"];
    if let Some(bad) = list("statuses")
        .into_iter()
        .flatten()
        .find(|s| !STATUSES.contains(&s.as_str()))
    {
        return Err(NodeError::invalid(
            "invalid_task_statuses",
            format!(
                "Invalid value in parameter `statuses`: `{bad}` is not a valid task status. Available statuses are `enqueued`, `processing`, `succeeded`, `failed`, `canceled`."
            ),
        ));
    }
    Ok(TaskFilter {
        uids,
        statuses: list("statuses"),
        types: list("types"),
        index_uids: list("indexUids"),
    })
}

impl TaskFilter {
    fn matches(&self, task: &super::node::Task) -> bool {
        self.uids.as_ref().is_none_or(|u| u.contains(&task.uid))
            && self
                .statuses
                .as_ref()
                .is_none_or(|s| s.iter().any(|s| s == task.status))
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == task.kind))
            && self
                .index_uids
                .as_ref()
                .is_none_or(|i| task.index_uid.as_ref().is_some_and(|uid| i.contains(uid)))
    }
}

async fn list_tasks(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    let filter = task_filter(&params)?;
    let number = |name: &str, code: &'static str| -> Result<Option<u64>> {
        params.get(name).map(|v| v.parse::<u64>().map_err(|_| NodeError::invalid(code, format!("Invalid value in parameter `{name}`: could not parse `{v}` as a positive integer")))).transpose()
    };
    let limit = number("limit", "invalid_task_limit")?.unwrap_or(20) as usize;
    let from = number("from", "invalid_task_from")?;
    let reverse = params.get("reverse").is_some_and(|r| r == "true");
    let state = app.node.lock();
    let matching: Vec<&super::node::Task> =
        state.tasks.values().filter(|t| filter.matches(t)).collect();
    let total = matching.len();
    let mut ordered: Vec<&super::node::Task> = if reverse {
        matching
            .into_iter()
            .filter(|t| from.is_none_or(|f| t.uid >= f))
            .collect()
    } else {
        matching
            .into_iter()
            .rev()
            .filter(|t| from.is_none_or(|f| t.uid <= f))
            .collect()
    };
    let next = ordered.get(limit).map(|t| t.uid);
    ordered.truncate(limit);
    let results: Vec<Value> = ordered.iter().map(|t| t.view()).collect();
    let first = ordered.first().map(|t| t.uid);
    Ok(Json(
        json!({"results": results, "total": total, "limit": limit, "from": first, "next": next}),
    ))
}

async fn get_task(State(app): State<App>, Path(uid): Path<String>) -> Result<Json<Value>> {
    let parsed: u64 = uid.parse().map_err(|_| {
        NodeError::invalid(
            "invalid_task_uids",
            format!("Task uid `{uid}` is invalid. It should only contain numeric characters."),
        )
    })?;
    let state = app.node.lock();
    let task = state.tasks.get(&parsed).ok_or_else(|| {
        NodeError::invalid("task_not_found", format!("Task `{parsed}` not found."))
            .with_status(StatusCode::NOT_FOUND)
    })?;
    Ok(Json(task.view()))
}

fn raw_query(params: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    format!("?{}", pairs.join("&"))
}

async fn cancel_tasks(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    if params.is_empty() {
        return Err(NodeError::invalid(
            "missing_task_filters",
            "Query parameters to filter the tasks to cancel are missing. Available query parameters are: `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`.",
        ));
    }
    let filter = task_filter(&params)?;
    let (matched, canceled) = {
        let mut state = app.node.lock();
        let next_uid = state.tasks.keys().next_back().map_or(0, |u| u + 1);
        let mut matched = 0;
        let mut canceled = 0;
        for task in state.tasks.values_mut().filter(|t| filter.matches(t)) {
            matched += 1;
            if task.status == "enqueued" {
                task.status = "canceled";
                task.canceled_by = Some(next_uid);
                task.finished_at = Some(super::time::now());
                canceled += 1;
            }
        }
        (matched, canceled)
    };
    Ok(Json(app.node.finished_task("taskCancelation", json!({"matchedTasks": matched, "canceledTasks": canceled, "originalFilter": raw_query(&params)}))))
}

async fn delete_tasks(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    if params.is_empty() {
        return Err(NodeError::invalid(
            "missing_task_filters",
            "Query parameters to filter the tasks to delete are missing. Available query parameters are: `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`.",
        ));
    }
    let filter = task_filter(&params)?;
    let (matched, deleted) = {
        let mut state = app.node.lock();
        let doomed: Vec<u64> = state
            .tasks
            .values()
            .filter(|t| filter.matches(t))
            .map(|t| t.uid)
            .collect();
        let mut deleted = 0;
        for uid in &doomed {
            if state
                .tasks
                .get(uid)
                .is_some_and(|t| !matches!(t.status, "enqueued" | "processing"))
            {
                state.tasks.remove(uid);
                deleted += 1;
            }
        }
        (doomed.len(), deleted)
    };
    Ok(Json(app.node.finished_task("taskDeletion", json!({"matchedTasks": matched, "deletedTasks": deleted, "originalFilter": raw_query(&params)}))))
}
