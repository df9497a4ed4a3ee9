//! Where an import reads: a running Meilisearch (its HTTP API, with an API key) or a
//! Meilisearch dump file (`.dump`, a gzipped tar: `indexes/<uid>/metadata.json`,
//! `settings.json` and `documents.jsonl`).

use anyhow::{Context, bail};
use miroir_proto::meili_client::MeiliClient;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// One index of the source: its primary key, settings and document count.
#[derive(Debug, Clone)]
pub struct SourceIndex {
    pub uid: String,
    pub primary_key: Option<String>,
    pub settings: Value,
    pub documents: u64,
}

/// A page of one index's documents, starting at `offset`.
pub struct Page {
    pub uid: String,
    pub offset: u64,
    pub documents: Vec<Value>,
}

pub enum Source {
    /// A running Meilisearch.
    Remote { client: MeiliClient, url: String },
    /// A dump file.
    Dump { path: PathBuf },
}

impl Source {
    /// What the state file records as the source (the same source resumes).
    pub fn name(&self) -> String {
        match self {
            Self::Remote { url, .. } => url.clone(),
            Self::Dump { path } => format!("dump:{}", path.display()),
        }
    }

    /// The source's indexes (those of `only`, when given), in uid order.
    pub async fn indexes(&self, only: &[String]) -> anyhow::Result<Vec<SourceIndex>> {
        let found = match self {
            Self::Remote { client, url } => remote_indexes(client, url).await?,
            Self::Dump { path } => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || dump_indexes(&path)).await??
            }
        };
        for uid in only {
            if !found.iter().any(|i| &i.uid == uid) {
                bail!("the source has no index `{uid}`");
            }
        }
        Ok(found
            .into_iter()
            .filter(|i| only.is_empty() || only.contains(&i.uid))
            .collect())
    }

    /// Sends the documents of `indexes` from each one's resume point (`from[uid]`), in
    /// pages of `page_size`, into `pages`; index after index.
    pub async fn stream(
        &self,
        indexes: Vec<String>,
        from: BTreeMap<String, u64>,
        page_size: usize,
        pages: mpsc::Sender<anyhow::Result<Page>>,
    ) {
        let result = match self {
            Self::Remote { client, url } => {
                remote_pages(client, url, &indexes, &from, page_size, &pages).await
            }
            Self::Dump { path } => {
                let (path, sender) = (path.clone(), pages.clone());
                tokio::task::spawn_blocking(move || {
                    dump_pages(&path, &indexes, &from, page_size, &sender)
                })
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("dump reader panicked: {e}")))
            }
        };
        if let Err(error) = result {
            let _ = pages.send(Err(error)).await;
        }
    }
}

async fn get(client: &MeiliClient, url: &str, path: &str) -> anyhow::Result<Value> {
    client
        .get("source", format!("{}{path}", url.trim_end_matches('/')))
        .await
        .map_err(|e| anyhow::anyhow!("the source answered {path} with {}", e.error))
}

async fn remote_indexes(client: &MeiliClient, url: &str) -> anyhow::Result<Vec<SourceIndex>> {
    let mut indexes = Vec::new();
    let mut offset = 0;
    loop {
        let page = get(client, url, &format!("/indexes?offset={offset}&limit=100")).await?;
        let results = page["results"].as_array().cloned().unwrap_or_default();
        if results.is_empty() {
            break;
        }
        offset += results.len();
        for index in results {
            let uid = index["uid"].as_str().unwrap_or_default().to_owned();
            let settings = get(client, url, &format!("/indexes/{uid}/settings")).await?;
            let stats = get(client, url, &format!("/indexes/{uid}/stats")).await?;
            indexes.push(SourceIndex {
                primary_key: index["primaryKey"].as_str().map(str::to_owned),
                documents: stats["numberOfDocuments"].as_u64().unwrap_or(0),
                uid,
                settings,
            });
        }
    }
    indexes.sort_by(|a, b| a.uid.cmp(&b.uid));
    Ok(indexes)
}

async fn remote_pages(
    client: &MeiliClient,
    url: &str,
    indexes: &[String],
    from: &BTreeMap<String, u64>,
    page_size: usize,
    pages: &mpsc::Sender<anyhow::Result<Page>>,
) -> anyhow::Result<()> {
    for uid in indexes {
        let mut offset = from.get(uid).copied().unwrap_or(0);
        loop {
            let path = format!("/indexes/{uid}/documents?offset={offset}&limit={page_size}");
            let page = get(client, url, &path).await?;
            let documents = page["results"].as_array().cloned().unwrap_or_default();
            if documents.is_empty() {
                break;
            }
            let count = documents.len() as u64;
            let page = Page {
                uid: uid.clone(),
                offset,
                documents,
            };
            if pages.send(Ok(page)).await.is_err() {
                return Ok(());
            }
            offset += count;
        }
    }
    Ok(())
}

/// Opens the dump's tar stream.
fn open_dump(path: &Path) -> anyhow::Result<tar::Archive<flate2::read::GzDecoder<std::fs::File>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(file)))
}

/// `indexes/<uid>/<file>` of an entry's path.
fn index_entry(path: &Path) -> Option<(String, String)> {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        ["indexes", uid, file] => Some(((*uid).to_owned(), (*file).to_owned())),
        _ => None,
    }
}

/// One pass over the dump: each index's metadata and settings, and its documents counted.
fn dump_indexes(path: &Path) -> anyhow::Result<Vec<SourceIndex>> {
    let mut archive = open_dump(path)?;
    let mut found: BTreeMap<String, SourceIndex> = BTreeMap::new();
    let mut saw_metadata = false;
    for entry in archive
        .entries()
        .context("not a Meilisearch dump (a gzipped tar)")?
    {
        let mut entry = entry.context("reading the dump")?;
        let entry_path = entry.path()?.into_owned();
        if entry_path.components().count() <= 2 && entry_path.ends_with("metadata.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            let metadata: Value = serde_json::from_str(&text)?;
            if metadata["dumpVersion"] != "V6" {
                bail!(
                    "dump version {} is not supported (Meilisearch ≥ 1.0 writes V6)",
                    metadata["dumpVersion"]
                );
            }
            saw_metadata = true;
            continue;
        }
        let Some((uid, file)) = index_entry(&entry_path) else {
            continue;
        };
        let index = found.entry(uid.clone()).or_insert_with(|| SourceIndex {
            uid,
            primary_key: None,
            settings: Value::Null,
            documents: 0,
        });
        match file.as_str() {
            "metadata.json" => {
                let metadata: Value = serde_json::from_reader(&mut entry)?;
                index.primary_key = metadata["primaryKey"].as_str().map(str::to_owned);
            }
            "settings.json" => index.settings = serde_json::from_reader(&mut entry)?,
            "documents.jsonl" => {
                let reader = std::io::BufReader::new(&mut entry);
                index.documents = reader
                    .lines()
                    .filter(|l| l.as_ref().is_ok_and(|l| !l.trim().is_empty()))
                    .count() as u64;
            }
            _ => {}
        }
    }
    if !saw_metadata {
        bail!(
            "{} is not a Meilisearch dump: no metadata.json",
            path.display()
        );
    }
    Ok(found.into_values().collect())
}

/// A second pass: the documents of `indexes`, as pages.
fn dump_pages(
    path: &Path,
    indexes: &[String],
    from: &BTreeMap<String, u64>,
    page_size: usize,
    pages: &mpsc::Sender<anyhow::Result<Page>>,
) -> anyhow::Result<()> {
    let mut archive = open_dump(path)?;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some((uid, file)) = index_entry(&entry.path()?) else {
            continue;
        };
        if file != "documents.jsonl" || !indexes.contains(&uid) {
            continue;
        }
        let skip = from.get(&uid).copied().unwrap_or(0);
        let mut offset = 0u64;
        let mut page = Vec::with_capacity(page_size);
        let mut page_offset = skip;
        for line in std::io::BufReader::new(&mut entry).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            offset += 1;
            if offset <= skip {
                continue;
            }
            page.push(
                serde_json::from_str(&line)
                    .with_context(|| format!("document {offset} of index `{uid}` is not JSON"))?,
            );
            if page.len() == page_size {
                let full = std::mem::replace(&mut page, Vec::with_capacity(page_size));
                let sent = Page {
                    uid: uid.clone(),
                    offset: page_offset,
                    documents: full,
                };
                page_offset += page_size as u64;
                if pages.blocking_send(Ok(sent)).is_err() {
                    return Ok(());
                }
            }
        }
        if !page.is_empty() {
            let sent = Page {
                uid: uid.clone(),
                offset: page_offset,
                documents: page,
            };
            if pages.blocking_send(Ok(sent)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dumps_index_files_are_found_by_their_path() {
        assert_eq!(
            index_entry(Path::new("./indexes/movies/documents.jsonl")),
            Some(("movies".into(), "documents.jsonl".into()))
        );
        assert_eq!(
            index_entry(Path::new("indexes/movies/settings.json")),
            Some(("movies".into(), "settings.json".into()))
        );
        assert_eq!(index_entry(Path::new("tasks/queue.jsonl")), None);
        assert_eq!(index_entry(Path::new("indexes/movies")), None);
    }
}
