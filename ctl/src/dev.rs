//! `miroir-ctl dev`: a whole local fleet in one command — a control plane on SQLite, N
//! Meilisearch nodes and a gateway — stopped together on Ctrl-C.

use anyhow::{Context, bail};
use miroir_proto::pb::{self, admin_service_client::AdminServiceClient};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Flags of `miroir-ctl dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Number of Meilisearch nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Replica groups (nodes are spread over them).
    #[arg(long, default_value_t = 1)]
    groups: u32,
    /// Default replication factor of new indexes.
    #[arg(long, default_value_t = 1)]
    replication_factor: u32,
    /// Default shard count of new indexes.
    #[arg(long, default_value_t = 16)]
    shards: u32,
    /// Where the gateway (the Meilisearch API) listens.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: String,
    /// Master key of the nodes and the gateway.
    #[arg(
        long,
        env = "MIROIR_MASTER_KEY",
        default_value = "miroir-dev-master-key"
    )]
    master_key: String,
    /// Meilisearch binary; defaults to MEILISEARCH_BIN, then `meilisearch` on PATH, then the
    /// test node (not a search engine).
    #[arg(long)]
    meilisearch: Option<PathBuf>,
    /// Directory for data and logs; a temporary one when unset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("no directory for miroir-ctl")?
        .join(name);
    if !path.exists() {
        bail!(
            "{} not found next to miroir-ctl (build the workspace: cargo build --release)",
            path.display()
        );
    }
    Ok(path)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn spawn(program: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::File::create(log)?;
    Command::new(program)
        .args(args)
        .stdout(file.try_clone()?)
        .stderr(file)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))
}

async fn wait_http(url: &str, what: &str, children: &mut [Child]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for child in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("a process exited ({status}) while waiting for {what}; see the logs");
            }
        }
        if let Ok(stream) = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await
        {
            drop(stream);
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not start within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the fleet until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.groups == 0 || args.nodes < args.groups {
        bail!("--nodes must be at least --groups, and both at least 1");
    }
    let temp;
    let dir = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = std::env::temp_dir().join(format!("miroir-dev-{}", std::process::id()));
            std::fs::create_dir_all(&temp)?;
            temp.clone()
        }
    };
    let meilisearch = args
        .meilisearch
        .clone()
        .or_else(|| std::env::var_os("MEILISEARCH_BIN").map(PathBuf::from))
        .or_else(|| which("meilisearch"));
    let mut children = Vec::new();

    let cp_port = free_port()?;
    let control_plane = format!("http://127.0.0.1:{cp_port}");
    children.push(spawn(
        &sibling("miroir-control-plane")?,
        &[
            "--listen".into(),
            format!("127.0.0.1:{cp_port}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", free_port()?),
            "--store".into(),
            format!("sqlite://{}/miroir.db", dir.display()),
            "--master-key".into(),
            args.master_key.clone(),
            "--default-shards".into(),
            args.shards.to_string(),
            "--default-replication-factor".into(),
            args.replication_factor.to_string(),
            "--health-interval".into(),
            "1s".into(),
        ],
        &dir.join("control-plane.log"),
    )?);
    wait_http(&control_plane, "the control plane", &mut children).await?;

    let mut node_urls = Vec::new();
    for i in 0..args.nodes {
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log = dir.join(format!("meili-{i}.log"));
        let child = match &meilisearch {
            Some(bin) => spawn(
                bin,
                &[
                    "--http-addr".into(),
                    format!("127.0.0.1:{port}"),
                    "--master-key".into(),
                    args.master_key.clone(),
                    "--db-path".into(),
                    dir.join(format!("meili-{i}.ms")).display().to_string(),
                    "--dump-dir".into(),
                    dir.join(format!("meili-{i}-dumps")).display().to_string(),
                    "--snapshot-dir".into(),
                    dir.join(format!("meili-{i}-snapshots"))
                        .display()
                        .to_string(),
                    "--no-analytics".into(),
                    // Several nodes share one machine: Meilisearch's default (2/3 of its
                    // memory) costs every batch CPU time in proportion (operations.md).
                    "--max-indexing-memory".into(),
                    "1GiB".into(),
                ],
                &log,
            )?,
            None => spawn(
                &sibling("miroir-test-node")?,
                &[
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--master-key".into(),
                    args.master_key.clone(),
                ],
                &log,
            )?,
        };
        children.push(child);
        wait_http(&url, &format!("node meili-{i}"), &mut children).await?;
        node_urls.push(url);
    }

    let mut admin = AdminServiceClient::connect(control_plane.clone()).await?;
    for (i, url) in node_urls.iter().enumerate() {
        admin
            .add_node(pb::AddNodeRequest {
                id: format!("meili-{i}"),
                address: url.clone(),
                group_id: i as u32 % args.groups,
            })
            .await
            .map_err(crate::client::status_error)?;
    }

    // Reads use active nodes only: wait for the health checks to clear every node.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = admin
            .list_nodes(pb::ListNodesRequest {})
            .await
            .map_err(crate::client::status_error)?
            .into_inner()
            .nodes;
        if nodes
            .iter()
            .all(|n| n.state == pb::NodeState::Active as i32)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes did not pass their health checks within 60 s; see the logs in {}",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let gateway_url = format!("http://{}", args.listen);
    children.push(spawn(
        &sibling("miroir-gateway")?,
        &[
            "--listen".into(),
            args.listen.clone(),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", free_port()?),
            "--control-plane".into(),
            control_plane.clone(),
            "--master-key".into(),
            args.master_key.clone(),
        ],
        &dir.join("gateway.log"),
    )?);
    wait_http(&gateway_url, "the gateway", &mut children).await?;

    match &meilisearch {
        Some(bin) => println!("nodes:          {} × {}", args.nodes, bin.display()),
        None => println!(
            "nodes:          {} × miroir-test-node — NOTE: no meilisearch binary was found, so these are Miroir's test nodes, not a search engine (exact words only); pass --meilisearch PATH or set MEILISEARCH_BIN for real Meilisearch",
            args.nodes
        ),
    }
    println!(
        "control plane:  {control_plane}  (miroir-ctl --control-plane {control_plane} status)"
    );
    println!("data and logs:  {}", dir.display());
    println!("Meilisearch API: {gateway_url}");
    println!("master key:     {}", args.master_key);
    println!("ready — Ctrl-C stops everything");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate.recv() => {},
    }
    println!("stopping…");
    for child in children.iter_mut().rev() {
        let _ = child.kill().await;
    }
    Ok(())
}
