//! The parse stage of a document write: the query's options, checked before the body is
//! read (as Meilisearch checks them first), then the payload as Meilisearch reads it
//! (JSON, NDJSON, CSV; [`super::payload`]), each document kept as its raw JSON object.

use super::off_thread;
use super::payload;
use crate::api::error::MeiliError;
use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// What a document write's query string asks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `primaryKey`: the key to set, or the one the index must have.
    pub primary_key: Option<String>,
    /// `skipCreation` (Meilisearch 1.50): only documents that exist already are updated.
    pub skip_creation: Option<bool>,
    /// `customMetadata`, shown on the task.
    pub custom_metadata: Option<String>,
}

impl WriteOptions {
    /// The options of a write's query, with Meilisearch's refusal of a bad `skipCreation`.
    pub fn from_query(params: &HashMap<String, String>) -> Result<Self, MeiliError> {
        let skip_creation = match params.get("skipCreation") {
            None => None,
            Some(skip) if skip.eq_ignore_ascii_case("true") => Some(true),
            Some(skip) if skip.eq_ignore_ascii_case("false") => Some(false),
            Some(other) => {
                return Err(MeiliError::invalid(
                    "invalid_skip_creation",
                    format!("skipCreation must be either `true` or `false`. Found: `{other}`"),
                ));
            }
        };
        Ok(Self {
            primary_key: params.get("primaryKey").cloned(),
            skip_creation,
            custom_metadata: params.get("customMetadata").cloned(),
        })
    }
}

/// A parsed batch of documents.
#[derive(Clone, Debug)]
pub struct DocumentBatch {
    /// Each document as its raw JSON object, in the client's order.
    pub documents: Arc<Vec<Bytes>>,
    /// The payload's size: a large batch is parsed and routed on the blocking pool.
    pub size: usize,
}

impl DocumentBatch {
    /// Reads and parses a write's body (bounded by `--payload-size-limit`).
    pub async fn read(
        body: Body,
        headers: &HeaderMap,
        params: &HashMap<String, String>,
        limit: usize,
    ) -> Result<Self, MeiliError> {
        let body = payload::collect(body, headers, limit).await?;
        let size = body.len();
        let (headers, params) = (headers.clone(), params.clone());
        let documents = off_thread(size, move || parse(&headers, &body, &params)).await??;
        Ok(Self {
            documents: Arc::new(documents),
            size,
        })
    }

    /// How many documents the client sent.
    pub fn received(&self) -> usize {
        self.documents.len()
    }
}

/// The documents of a payload; a document carrying a `_miroir_` field is refused whole,
/// since Miroir writes those fields itself.
pub fn parse(
    headers: &HeaderMap,
    body: &Bytes,
    params: &HashMap<String, String>,
) -> Result<Vec<Bytes>, MeiliError> {
    let documents = payload::parse(headers, body, params)?;
    for document in &documents {
        if let Some(field) = payload::fields(document)?
            .keys()
            .find(|k| k.starts_with("_miroir_"))
        {
            return Err(MeiliError::invalid(
                "miroir_reserved_field",
                format!(
                    "The field `{field}` is reserved by Miroir: fields starting with `_miroir_` cannot be written."
                ),
            ));
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_read_as_meilisearch_reads_them() {
        let options = WriteOptions::from_query(&params(&[
            ("primaryKey", "sku"),
            ("skipCreation", "TRUE"),
            ("customMetadata", "import-7"),
        ]))
        .unwrap();
        assert_eq!(
            options,
            WriteOptions {
                primary_key: Some("sku".into()),
                skip_creation: Some(true),
                custom_metadata: Some("import-7".into()),
            }
        );
        let error = WriteOptions::from_query(&params(&[("skipCreation", "yes")])).unwrap_err();
        assert_eq!(error.code, "invalid_skip_creation");
        assert_eq!(
            WriteOptions::from_query(&params(&[])).unwrap(),
            WriteOptions::default()
        );
    }

    #[test]
    fn miroirs_fields_cannot_be_written() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        let ok = parse(
            &headers,
            &Bytes::from(r#"[{"id": 1}, {"id": 2}]"#),
            &params(&[]),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let error = parse(
            &headers,
            &Bytes::from(r#"[{"id": 1}, {"id": 2, "_miroir_shard": 3}]"#),
            &params(&[]),
        )
        .unwrap_err();
        assert_eq!(error.code, "miroir_reserved_field");
    }
}
