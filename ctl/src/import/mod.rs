//! `miroir-ctl import`: copies indexes from a running Meilisearch (`--from URL`) or a
//! Meilisearch dump (`--dump FILE`) into the fleet, through a gateway: each index is
//! created with its primary key and its settings are applied first (so documents are
//! indexed once, with them), then its documents are sent in pages. Progress is saved in
//! a state file after each page the fleet indexed, so running the same command again
//! resumes where it stopped; writing a document again only replaces it.

mod source;

use anyhow::{Context, bail};
use miroir_proto::meili_client::MeiliClient;
use miroir_proto::node_client::NodeClientOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use source::{Page, Source, SourceIndex};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pages written and not yet indexed at once.
const IN_FLIGHT: usize = 4;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["from", "dump"]))]
pub struct ImportArgs {
    /// URL of the Meilisearch to copy from, e.g. http://old-search:7700.
    #[arg(long)]
    from: Option<String>,
    /// Its API key (one that may read indexes, settings and documents).
    #[arg(
        long,
        env = "MIROIR_IMPORT_API_KEY",
        hide_env_values = true,
        requires = "from"
    )]
    api_key: Option<String>,
    /// A Meilisearch dump file (`.dump`, from `POST /dumps`) to import instead.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Import only these indexes (repeat the flag; default: every index).
    #[arg(long = "index", value_name = "UID")]
    indexes: Vec<String>,
    /// A gateway of the fleet to write through.
    #[arg(long, env = "MIROIR_GATEWAY", default_value = "http://127.0.0.1:7700")]
    gateway: String,
    /// The fleet's master key (or an API key that may create indexes, change settings and
    /// add documents).
    #[arg(long, env = "MIROIR_MASTER_KEY", hide_env_values = true)]
    master_key: String,
    /// Documents per page read and written.
    #[arg(long, default_value_t = 5000)]
    page_size: usize,
    /// Where progress is saved; the same command with the same file resumes.
    #[arg(long, default_value = "miroir-import.json")]
    state: PathBuf,
}

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ImportState {
    source: String,
    indexes: BTreeMap<String, IndexState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct IndexState {
    /// Created, with its settings applied.
    settings: bool,
    /// Documents the fleet indexed, from the start of the source's order.
    documents: u64,
    /// Every document imported.
    done: bool,
}

impl ImportState {
    fn load(path: &Path, source: &str) -> anyhow::Result<Self> {
        let state: Self = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not an import state file", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Self {
                source: source.to_owned(),
                ..Default::default()
            },
            Err(error) => return Err(error).context(format!("cannot read {}", path.display())),
        };
        if state.source != source {
            bail!(
                "{} records an import from {}, not {source}: give another --state file",
                path.display(),
                state.source
            );
        }
        Ok(state)
    }

    /// Written whole to a new file, then renamed over the old one.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The fleet, through a gateway.
struct Fleet {
    client: MeiliClient,
    url: String,
}

impl Fleet {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    /// Sends a write; its task uid.
    async fn enqueue(&self, method: http::Method, path: &str, body: Value) -> anyhow::Result<u64> {
        self.client
            .enqueue("gateway", method, self.url(path), Some(body))
            .await
            .map_err(|e| anyhow::anyhow!("the gateway refused {path}: {}", e.error))
    }

    /// Waits for a task; its final view.
    async fn wait(&self, task: u64) -> anyhow::Result<Value> {
        self.client
            .wait_task("gateway", self.url.trim_end_matches('/'), task)
            .await
            .map_err(|e| anyhow::anyhow!("task {task}: {}", e.error))
    }

    /// Creates `index` (an index that exists already is taken as is) and applies its
    /// settings. A setting the fleet refuses because an experimental feature is off is
    /// left out, and named.
    async fn prepare(&self, index: &SourceIndex) -> anyhow::Result<Vec<String>> {
        let mut body = json!({"uid": index.uid});
        if let Some(pk) = &index.primary_key {
            body["primaryKey"] = json!(pk);
        }
        let task = self.enqueue(http::Method::POST, "/indexes", body).await?;
        let created = self.wait(task).await?;
        if created["status"] != "succeeded" && created["error"]["code"] != "index_already_exists" {
            bail!(
                "creating index `{}` failed: {}",
                index.uid,
                created["error"]
            );
        }
        let mut settings = index.settings.clone();
        let mut left_out = Vec::new();
        let Some(members) = settings.as_object_mut() else {
            return Ok(left_out);
        };
        // Nulls are defaults: nothing to set.
        members.retain(|_, v| !v.is_null());
        loop {
            let path = format!("/indexes/{}/settings", index.uid);
            let refused = match self
                .enqueue(http::Method::PATCH, &path, settings.clone())
                .await
            {
                Ok(task) => {
                    let done = self.wait(task).await?;
                    if done["status"] == "succeeded" {
                        return Ok(left_out);
                    }
                    done["error"].clone()
                }
                Err(error) => json!({"message": error.to_string(), "code": "feature_not_enabled"}),
            };
            let message = refused["message"].as_str().unwrap_or_default();
            let feature_off = message.contains("experimental feature");
            let named = message
                .split('`')
                .nth(1)
                .filter(|name| feature_off && settings.get(*name).is_some())
                .map(str::to_owned);
            match (settings.as_object_mut(), named) {
                (Some(members), Some(name)) => {
                    members.remove(&name);
                    left_out.push(name);
                }
                _ => bail!(
                    "the settings of index `{}` were refused: {refused}",
                    index.uid
                ),
            }
        }
    }
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(120);
    let source = match (&args.from, &args.dump) {
        (Some(url), None) => Source::Remote {
            client: MeiliClient::new(NodeClientOptions::new(
                args.api_key.as_deref().unwrap_or_default(),
                timeout,
            ))?,
            url: url.clone(),
        },
        (None, Some(path)) => Source::Dump { path: path.clone() },
        _ => bail!("give --from URL or --dump FILE"),
    };
    if args.page_size == 0 {
        bail!("--page-size must be at least 1");
    }
    let fleet = Fleet {
        client: MeiliClient::new(NodeClientOptions::new(&args.master_key, timeout))?,
        url: args.gateway.clone(),
    };
    let mut state = ImportState::load(&args.state, &source.name())?;
    let indexes = source.indexes(&args.indexes).await?;
    println!(
        "importing {} index{} from {} into {} (state in {})",
        indexes.len(),
        if indexes.len() == 1 { "" } else { "es" },
        source.name(),
        args.gateway,
        args.state.display()
    );

    // Settings first, for every index: documents are then indexed once, with them.
    for index in &indexes {
        let recorded = state.indexes.entry(index.uid.clone()).or_default();
        if recorded.settings {
            continue;
        }
        let left_out = fleet.prepare(index).await?;
        for name in &left_out {
            println!(
                "{}: setting `{name}` left out: the fleet has the experimental feature it needs off",
                index.uid
            );
        }
        println!("{}: created, settings applied", index.uid);
        state.indexes.entry(index.uid.clone()).or_default().settings = true;
        state.save(&args.state)?;
    }

    // Then the documents.
    let mut from = BTreeMap::new();
    let mut to_import = Vec::new();
    for index in &indexes {
        let recorded = &state.indexes[&index.uid];
        if recorded.done {
            println!(
                "{}: already imported ({} documents)",
                index.uid, recorded.documents
            );
            continue;
        }
        if recorded.documents > 0 {
            println!("{}: resuming at document {}", index.uid, recorded.documents);
        }
        from.insert(index.uid.clone(), recorded.documents);
        to_import.push(index.uid.clone());
    }
    let (sender, mut pages) = tokio::sync::mpsc::channel(2);
    let reading = {
        let (to_import, from) = (to_import.clone(), from.clone());
        let page_size = args.page_size;
        async move { source.stream(to_import, from, page_size, sender).await }
    };
    let writing = async move {
        let mut writer = Writer {
            progress: indexes
                .iter()
                .map(|i| {
                    let start = from.get(&i.uid).copied().unwrap_or(0);
                    (i.uid.clone(), Progress::new(start, i.documents))
                })
                .collect(),
            primary_keys: indexes
                .iter()
                .map(|i| (i.uid.clone(), i.primary_key.clone()))
                .collect(),
            fleet,
            state,
            state_path: args.state.clone(),
            in_flight: VecDeque::new(),
        };
        let mut current: Option<String> = None;
        while let Some(page) = pages.recv().await {
            let page = page?;
            if current.as_deref() != Some(page.uid.as_str()) {
                // The previous index is whole once its last pages are indexed.
                writer.settle(0).await?;
                if let Some(done) = current.replace(page.uid.clone()) {
                    writer.finish(&done)?;
                }
            }
            writer.write(page).await?;
            writer.settle(IN_FLIGHT).await?;
        }
        writer.settle(0).await?;
        if let Some(done) = current {
            writer.finish(&done)?;
        }
        // Indexes with nothing left to read (empty ones, or read whole before a stop).
        for uid in &to_import {
            if !writer.state.indexes[uid].done {
                writer.finish(uid)?;
            }
        }
        anyhow::Ok(())
    };
    let ((), written) = tokio::join!(reading, writing);
    written?;
    println!("import finished");
    Ok(())
}

/// The documents' writing side: pages sent to the fleet, and the state file kept.
struct Writer {
    fleet: Fleet,
    state: ImportState,
    state_path: PathBuf,
    progress: BTreeMap<String, Progress>,
    primary_keys: BTreeMap<String, Option<String>>,
    /// Pages sent and not yet indexed: (index, where the page ends, task).
    in_flight: VecDeque<(String, u64, u64)>,
}

impl Writer {
    /// Sends one page to the fleet.
    async fn write(&mut self, page: Page) -> anyhow::Result<()> {
        let Page {
            uid,
            offset,
            documents,
        } = page;
        let end = offset + documents.len() as u64;
        let path = match self.primary_keys.get(&uid).cloned().flatten() {
            Some(pk) => miroir_proto::node_paths::documents_with_primary_key(&uid, &pk),
            None => format!("/indexes/{uid}/documents"),
        };
        let task = self
            .fleet
            .enqueue(http::Method::POST, &path, Value::Array(documents))
            .await?;
        self.in_flight.push_back((uid, end, task));
        Ok(())
    }

    /// Waits for the oldest pages until at most `keep` are in flight, recording each one
    /// the fleet indexed.
    async fn settle(&mut self, keep: usize) -> anyhow::Result<()> {
        while self.in_flight.len() > keep {
            let Some((uid, end, task)) = self.in_flight.pop_front() else {
                break;
            };
            let done = self.fleet.wait(task).await?;
            if done["status"] != "succeeded" {
                bail!(
                    "documents of index `{uid}` were refused (task {task}): {}",
                    done["error"]
                );
            }
            self.state.indexes.entry(uid.clone()).or_default().documents = end;
            self.state.save(&self.state_path)?;
            if let Some(progress) = self.progress.get_mut(&uid) {
                progress.report(&uid, end);
            }
        }
        Ok(())
    }

    /// Records index `uid` as imported.
    fn finish(&mut self, uid: &str) -> anyhow::Result<()> {
        let recorded = self.state.indexes.entry(uid.to_owned()).or_default();
        recorded.done = true;
        let documents = recorded.documents;
        self.state.save(&self.state_path)?;
        let elapsed = self
            .progress
            .get(uid)
            .map_or(0.0, |p| p.started.elapsed().as_secs_f64());
        println!("{uid}: {documents} documents imported in {elapsed:.1} s");
        Ok(())
    }
}

/// One index's progress, printed at most once a second.
struct Progress {
    started: Instant,
    from: u64,
    total: u64,
    printed: Option<Instant>,
}

impl Progress {
    fn new(from: u64, total: u64) -> Self {
        Self {
            started: Instant::now(),
            from,
            total,
            printed: None,
        }
    }

    fn report(&mut self, uid: &str, done: u64) {
        if self
            .printed
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
            && done < self.total
        {
            return;
        }
        self.printed = Some(Instant::now());
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (done - self.from.min(done)) as f64 / seconds;
        let left = self.total.saturating_sub(done);
        let eta = if rate > 0.0 {
            format!(", ETA {:.0} s", left as f64 / rate)
        } else {
            String::new()
        };
        let percent = if self.total > 0 {
            format!(" ({:.0} %)", done as f64 * 100.0 / self.total as f64)
        } else {
            String::new()
        };
        println!(
            "{uid}: {done} / {} documents{percent}, {rate:.0} documents/s{eta}",
            self.total
        );
    }
}
