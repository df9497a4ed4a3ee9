//! Document payloads as Meilisearch reads them (JSON, NDJSON, CSV), kept as raw object
//! texts: a JSON or NDJSON batch stays one buffer, each document a zero-copy slice of it,
//! and each node's batch is streamed from those slices in chunks, with `_miroir_shard`
//! appended to every object. A 100 MiB batch costs about 100 MiB here, not one copy per
//! node (`docs/benchmarks.md` has the measured peak).

use crate::api::error::{ErrorType, MeiliError};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use miroir_proto::settings::SHARD_FIELD;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio_stream::StreamExt;

/// Bytes per chunk of a node's streamed batch.
const CHUNK: usize = 256 * 1024;

/// Reads a request body of at most `limit` bytes into one buffer, allocated once from
/// `Content-Length` when the client sends it.
pub async fn collect(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, MeiliError> {
    let too_large = || {
        MeiliError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            ErrorType::InvalidRequest,
            format!(
                "The provided payload reached the size limit. The maximum accepted payload size is {}.",
                human_size(limit)
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut buffer = Vec::with_capacity(declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| {
            MeiliError::invalid(
                "malformed_payload",
                format!("The payload could not be read: {e}"),
            )
        })?;
        if buffer.len() + frame.len() > limit {
            return Err(too_large());
        }
        buffer.extend_from_slice(&frame);
    }
    Ok(Bytes::from(buffer))
}

fn human_size(bytes: usize) -> String {
    // As Meilisearch prints its limit: decimal units, at most two decimals (`100 MB`).
    let (value, unit) = match bytes {
        0..1_000 => return format!("{bytes} B"),
        1_000..1_000_000 => (bytes as f64 / 1e3, "KB"),
        1_000_000..1_000_000_000 => (bytes as f64 / 1e6, "MB"),
        _ => (bytes as f64 / 1e9, "GB"),
    };
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// The documents of a payload, each the text of one JSON object.
pub fn parse(
    headers: &HeaderMap,
    body: &Bytes,
    params: &HashMap<String, String>,
) -> Result<Vec<Bytes>, MeiliError> {
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
    let format = match mime.as_str() {
        "application/json" => "json",
        "application/x-ndjson" => "ndjson",
        "text/csv" => "csv",
        other => {
            return Err(MeiliError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_content_type",
                ErrorType::InvalidRequest,
                format!("The Content-Type `{other}` is invalid. {accepted}"),
            ));
        }
    };
    if body.is_empty() {
        return Err(MeiliError::invalid(
            "missing_payload",
            format!("A {format} payload is missing."),
        ));
    }
    let malformed = |detail: String| {
        MeiliError::invalid(
            "malformed_payload",
            format!(
                "The `{format}` payload provided is malformed. `Couldn't serialize document value: {detail}`."
            ),
        )
    };
    let not_objects = || malformed("data are neither an object nor a list of objects".into());
    // Each object's text, as a slice of the body.
    let object = |raw: &RawValue| -> Result<Bytes, MeiliError> {
        let text = raw.get();
        if !text.starts_with('{') {
            return Err(not_objects());
        }
        Ok(body.slice_ref(text.as_bytes()))
    };
    match format {
        "json" => {
            let start = body.iter().find(|b| !b.is_ascii_whitespace());
            match start {
                Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body)
                    .map_err(|e| malformed(e.to_string()))?
                    .into_iter()
                    .map(object)
                    .collect(),
                Some(b'{') => {
                    let raw = serde_json::from_slice::<&RawValue>(body)
                        .map_err(|e| malformed(e.to_string()))?;
                    Ok(vec![object(raw)?])
                }
                _ => match serde_json::from_slice::<&RawValue>(body) {
                    Err(e) => Err(malformed(e.to_string())),
                    Ok(_) => Err(not_objects()),
                },
            }
        }
        // A stream of JSON values, as Meilisearch reads NDJSON: one per line, or one after
        // the other on a line (`{"id": 1}{"id": 2}`, which the official SDKs' tests send).
        "ndjson" => serde_json::Deserializer::from_slice(body)
            .into_iter::<&RawValue>()
            .map(|raw| raw.map_err(|e| malformed(e.to_string())).and_then(object))
            .collect(),
        _ => {
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
            Ok(parse_csv(body, delimiter)?
                .into_iter()
                .map(|document| Bytes::from(Value::Object(document).to_string()))
                .collect())
        }
    }
}

/// CSV as Meilisearch reads it: a header row whose `name:number`, `name:boolean` and
/// `name:string` cells type their column (untyped columns are strings); empty cells are
/// null; every row has as many cells as the header.
pub fn parse_csv(body: &[u8], delimiter: u8) -> Result<Vec<Map<String, Value>>, MeiliError> {
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
                            malformed(format!(
                                "Error parsing number {cell:?} at line {line}: invalid float literal"
                            ))
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

/// A document's top-level fields, their values left unparsed.
pub fn fields(document: &[u8]) -> Result<BTreeMap<String, &RawValue>, MeiliError> {
    serde_json::from_slice(document).map_err(|e| {
        MeiliError::invalid(
            "malformed_payload",
            format!("The `json` payload provided is malformed. `Couldn't serialize document value: {e}`."),
        )
    })
}

fn no_candidate() -> MeiliError {
    MeiliError::invalid(
        "index_primary_key_no_candidate_found",
        "The primary key inference failed as the engine did not find any field ending with `id` in its name. Please specify the primary key manually using the `primaryKey` query parameter.",
    )
}

/// Meilisearch's primary-key inference: the first document's top-level keys ending in
/// `id` (any case); exactly one must exist.
pub fn infer_primary_key(first: Option<&Bytes>) -> Result<String, MeiliError> {
    let Some(first) = first else {
        return Err(no_candidate());
    };
    let fields = fields(first)?;
    let candidates: Vec<&String> = fields
        .keys()
        .filter(|k| k.to_lowercase().ends_with("id"))
        .collect();
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
/// `[A-Za-z0-9_-]`. Integers are returned as their decimal string. `pk` may be a dotted
/// path into nested objects.
pub fn document_id(document: &[u8], pk: &str) -> Result<String, MeiliError> {
    let top = fields(document)?;
    let mut value: Option<Value> = top
        .get(pk)
        .and_then(|raw| serde_json::from_str(raw.get()).ok());
    if value.is_none() && pk.contains('.') {
        let mut current: Option<Value> = None;
        for (i, part) in pk.split('.').enumerate() {
            current = if i == 0 {
                top.get(part)
                    .and_then(|raw| serde_json::from_str(raw.get()).ok())
            } else {
                current.and_then(|v| v.get(part).cloned())
            };
        }
        value = current;
    }
    let Some(value) = value else {
        let shown: Value = serde_json::from_slice(document).unwrap_or(Value::Null);
        return Err(MeiliError::invalid(
            "missing_document_id",
            format!("Document doesn't have a `{pk}` attribute: `{shown}`."),
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
            Ok(s)
        }
        other => Err(MeiliError::invalid(
            "invalid_document_id",
            format!(
                "Document identifier `{other}` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes."
            ),
        )),
    }
}

/// One node's batch as a JSON array streamed in chunks (see [`node_chunks`]).
pub fn node_body(documents: Arc<Vec<Bytes>>, picks: Vec<(usize, u32)>) -> crate::nodes::NodeBody {
    // About its size, for the call's timeout: each document, its shard tag and a comma.
    let len = picks
        .iter()
        .map(|&(position, _)| documents[position].len() as u64 + 32)
        .sum();
    crate::nodes::NodeBody::Chunks {
        parts: Box::new(node_chunks(documents, picks)),
        len,
    }
}

/// The chunks of a node's batch: a JSON array of the picked documents, each with
/// `"_miroir_shard": "<shard tag>"` appended before its closing brace (every document has at least
/// its primary key, so the comma is always right).
pub fn node_chunks(
    documents: Arc<Vec<Bytes>>,
    picks: Vec<(usize, u32)>,
) -> impl Iterator<Item = Bytes> + Send + Sync + 'static {
    let mut next = 0usize;
    // Each shard's tail (`,"_miroir_shard":"<tag>"}`) is built once per batch, not once
    // per document.
    let mut tails: std::collections::HashMap<u32, Vec<u8>> = std::collections::HashMap::new();
    std::iter::from_fn(move || {
        if next > picks.len() {
            return None;
        }
        let mut chunk = Vec::with_capacity(CHUNK + 1024);
        if next == 0 {
            chunk.push(b'[');
        }
        while next < picks.len() && chunk.len() < CHUNK {
            let (position, shard) = picks[next];
            if next > 0 {
                chunk.push(b',');
            }
            let document = &documents[position];
            chunk.extend_from_slice(&document[..document.len() - 1]);
            let tail = tails.entry(shard).or_insert_with(|| {
                let tag = miroir_proto::settings::shard_tag(shard);
                format!(",\"{SHARD_FIELD}\":\"{tag}\"}}").into_bytes()
            });
            chunk.extend_from_slice(tail);
            next += 1;
        }
        if next == picks.len() {
            chunk.push(b']');
            next += 1;
        }
        Some(Bytes::from(chunk))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_meilisearch_prints_them() {
        assert_eq!(human_size(100_000_000), "100 MB");
        assert_eq!(human_size(1024), "1.02 KB");
        assert_eq!(human_size(52_428_800), "52.43 MB");
        assert_eq!(human_size(999), "999 B");
    }
    use serde_json::json;

    fn json_headers(mime: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, mime.parse().unwrap());
        headers
    }

    #[test]
    fn documents_are_slices_of_the_body() {
        let body = Bytes::from_static(br#" [ {"id": 1, "t": "a"} , {"id":"x"} ] "#);
        let documents = parse(&json_headers("application/json"), &body, &HashMap::new()).unwrap();
        assert_eq!(documents[0], Bytes::from_static(br#"{"id": 1, "t": "a"}"#));
        assert_eq!(documents[0].as_ptr(), body[3..].as_ptr(), "no copy");
        let single = Bytes::from_static(br#"{"id": 2}"#);
        assert_eq!(
            parse(
                &json_headers("application/json; charset=utf-8"),
                &single,
                &HashMap::new()
            )
            .unwrap()
            .len(),
            1
        );
        let error = parse(
            &json_headers("application/json"),
            &Bytes::from_static(b"[1]"),
            &HashMap::new(),
        )
        .unwrap_err();
        assert_eq!(error.body()["code"], "malformed_payload");
        let ndjson = Bytes::from_static(b"{\"id\":1}\n\n{\"id\":2}\n{\"id\":3}{\"id\":4}\n");
        assert_eq!(
            parse(
                &json_headers("application/x-ndjson"),
                &ndjson,
                &HashMap::new()
            )
            .unwrap()
            .len(),
            4
        );
    }

    #[test]
    fn node_bodies_carry_the_shard_and_stay_valid_json() {
        let documents: Vec<Bytes> = (0..5000)
            .map(|i| Bytes::from(format!(r#"{{"id": {i}, "text": "{}" }}"#, "y".repeat(100))))
            .collect();
        let picks: Vec<(usize, u32)> = (0..5000).step_by(2).map(|i| (i, (i % 7) as u32)).collect();
        let chunks: Vec<Bytes> = node_chunks(Arc::new(documents), picks).collect();
        assert!(chunks.len() > 1, "large batches stream in several chunks");
        let collected: Vec<u8> = chunks.concat();
        let parsed: Vec<Value> = serde_json::from_slice(&collected).unwrap();
        assert_eq!(parsed.len(), 2500);
        assert_eq!(
            parsed[3],
            json!({"id": 6, "text": "y".repeat(100), SHARD_FIELD: miroir_proto::settings::shard_tag(6)})
        );
    }

    #[test]
    fn ids_and_inference_follow_meilisearch() {
        let doc = |v: Value| Bytes::from(v.to_string());
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
}
