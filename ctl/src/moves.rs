//! Operations and their shard moves: `miroir-ctl moves …` and the `--wait` of commands
//! that start an operation. On a terminal, progress redraws in place with a bar per
//! moving shard; otherwise it prints a plain line whenever something changed.

use crate::client::status_error;
use crate::output::{self, Format};
use miroir_proto::pb::{self, admin_service_client::AdminServiceClient};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::Duration;
use tonic::transport::Channel;

#[derive(Debug, clap::Subcommand)]
pub enum MovesCommand {
    /// Operations (running first) and every shard move in progress.
    List,
    /// Follow an operation until it finishes, with per-shard progress.
    Wait {
        /// Operation id.
        id: u64,
    },
    /// Stop an operation's moves from starting new phases (cutovers under way finish).
    Pause {
        /// Operation id.
        id: u64,
    },
    /// Let a paused operation go on.
    Resume {
        /// Operation id.
        id: u64,
    },
    /// Roll back the moves not yet cut over; those that cut over stay.
    Cancel {
        /// Operation id.
        id: u64,
    },
}

/// An operation as printed.
#[derive(Serialize)]
pub struct OperationView {
    id: u64,
    description: String,
    state: &'static str,
    moves_done: u32,
    moves_total: u32,
    documents_copied: u64,
    blocked_ms_max: u64,
    moves: Vec<MoveView>,
}

/// A shard move as printed.
#[derive(Serialize)]
pub struct MoveView {
    index: String,
    group: u32,
    shard: u32,
    from: Vec<String>,
    to: Vec<String>,
    phase: &'static str,
    documents_copied: u64,
    documents_total: u64,
    documents_per_second: f64,
    eta_seconds: Option<u64>,
    last_error: String,
}

impl From<&pb::ShardMove> for MoveView {
    fn from(m: &pb::ShardMove) -> Self {
        let eta_seconds = m.eta_seconds().map(|s| s.ceil() as u64);
        Self {
            index: m.index_uid.clone(),
            group: m.group_id,
            shard: m.shard,
            from: m.old_owners.clone(),
            to: m.new_owners.clone(),
            phase: m.phase().name(),
            documents_copied: m.documents_copied,
            documents_total: m.documents_total,
            documents_per_second: m.documents_per_second,
            eta_seconds,
            last_error: m.last_error.clone(),
        }
    }
}

impl OperationView {
    fn new(op: &pb::Operation, moves: &[pb::ShardMove]) -> Self {
        Self {
            id: op.id,
            description: op.description.clone(),
            state: op.state().name(),
            moves_done: op.moves_done,
            moves_total: op.moves_total,
            documents_copied: op.documents_copied,
            blocked_ms_max: op.blocked_ms.iter().copied().max().unwrap_or(0),
            moves: moves
                .iter()
                .filter(|m| m.operation_id == op.id)
                .map(MoveView::from)
                .collect(),
        }
    }

    fn finished(&self) -> bool {
        matches!(self.state, "succeeded" | "cancelled")
    }
}

fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((done.min(total) as f64 / total as f64) * width as f64) as usize
    };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// One operation and its moves as text lines; `bars` draws a progress bar per move.
fn operation_text(op: &OperationView, bars: bool) -> String {
    let mut out = format!(
        "operation {} ({}): {}, {}/{} moves done, {} documents copied",
        op.id, op.description, op.state, op.moves_done, op.moves_total, op.documents_copied
    );
    if op.blocked_ms_max > 0 {
        out.push_str(&format!(", longest write hold {} ms", op.blocked_ms_max));
    }
    for m in &op.moves {
        let mut line = format!(
            "\n  {}/g{}/s{:<4} {} -> {}  {:<9}",
            m.index,
            m.group,
            m.shard,
            if m.from.is_empty() {
                "-".to_owned()
            } else {
                m.from.join(",")
            },
            m.to.join(","),
            m.phase
        );
        if bars && m.phase == "copying" {
            line.push_str(&format!(
                " {}",
                bar(m.documents_copied, m.documents_total, 20)
            ));
        }
        if m.documents_total > 0 || m.documents_copied > 0 {
            line.push_str(&format!(
                " {}/{} docs",
                m.documents_copied, m.documents_total
            ));
        }
        if m.documents_per_second > 0.0 {
            line.push_str(&format!(" {:.0} docs/s", m.documents_per_second));
        }
        if let Some(eta) = m.eta_seconds {
            line.push_str(&format!(" eta {eta}s"));
        }
        if !m.last_error.is_empty() {
            line.push_str(&format!("  retrying: {}", m.last_error));
        }
        out.push_str(&line);
    }
    out
}

async fn get(admin: &mut AdminServiceClient<Channel>, id: u64) -> anyhow::Result<OperationView> {
    let response = admin
        .get_operation(pb::OperationRequest { id })
        .await
        .map_err(status_error)?
        .into_inner();
    let op = response
        .operation
        .ok_or_else(|| anyhow::anyhow!("the control plane answered without an operation"))?;
    Ok(OperationView::new(&op, &response.moves))
}

/// Follows operation `id` until it finishes; fails when it was cancelled.
pub async fn wait(
    admin: &mut AdminServiceClient<Channel>,
    id: u64,
    format: Format,
) -> anyhow::Result<()> {
    let terminal = format == Format::Text && std::io::stdout().is_terminal();
    let mut last_text = String::new();
    let mut drawn_lines = 0;
    let mut failing_since: Option<std::time::Instant> = None;
    let view = loop {
        // A control-plane failover interrupts answers for a few seconds: keep asking.
        let view = match get(admin, id).await {
            Ok(view) => {
                failing_since = None;
                view
            }
            Err(error) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(30) {
                    return Err(error);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if format == Format::Text {
            let text = operation_text(&view, terminal);
            if terminal {
                let mut stdout = std::io::stdout().lock();
                // Move up over the previous drawing and clear it.
                for _ in 0..drawn_lines {
                    let _ = write!(stdout, "\x1b[1A\x1b[2K");
                }
                let _ = writeln!(stdout, "{text}");
                let _ = stdout.flush();
                drawn_lines = text.lines().count();
            } else if text != last_text {
                println!("{text}");
                last_text = text;
            }
        }
        if view.finished() {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(if terminal { 250 } else { 1000 })).await;
    };
    if format == Format::Json {
        output::print(format, &view, |_| String::new())?;
    }
    if view.state == "cancelled" {
        anyhow::bail!("operation {id} was cancelled");
    }
    Ok(())
}

/// Runs a `moves` subcommand.
pub async fn run(
    admin: &mut AdminServiceClient<Channel>,
    command: MovesCommand,
    format: Format,
) -> anyhow::Result<()> {
    let controlled = match command {
        MovesCommand::List => {
            let response = admin
                .list_operations(pb::ListOperationsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            let views: Vec<OperationView> = response
                .operations
                .iter()
                .map(|op| OperationView::new(op, &response.moves))
                .collect();
            let live = response.live;
            return output::print(format, &views, |views| {
                if views.is_empty() {
                    return "no operation".to_owned();
                }
                let mut text: Vec<String> =
                    views.iter().map(|v| operation_text(v, false)).collect();
                if !live {
                    text.push(
                        "(answered by a follower: progress as of the last phase change)".into(),
                    );
                }
                text.join("\n")
            });
        }
        MovesCommand::Wait { id } => return wait(admin, id, format).await,
        MovesCommand::Pause { id } => admin.pause_operation(pb::OperationRequest { id }).await,
        MovesCommand::Resume { id } => admin.resume_operation(pb::OperationRequest { id }).await,
        MovesCommand::Cancel { id } => admin.cancel_operation(pb::OperationRequest { id }).await,
    };
    let response = controlled.map_err(status_error)?.into_inner();
    let op = response
        .operation
        .ok_or_else(|| anyhow::anyhow!("the control plane answered without an operation"))?;
    let view = OperationView::new(&op, &response.moves);
    output::print(format, &view, |v| operation_text(v, false))
}

/// After a command that may have started operation `id`: say so, and follow it with
/// `--wait`.
pub async fn started(
    admin: &mut AdminServiceClient<Channel>,
    id: Option<u64>,
    wait_for_it: bool,
    format: Format,
) -> anyhow::Result<()> {
    match id {
        Some(id) if wait_for_it => wait(admin, id, format).await,
        Some(id) => {
            if format == Format::Text {
                println!("operation {id} started; follow it with `miroir-ctl moves wait {id}`");
            }
            Ok(())
        }
        None => Ok(()),
    }
}
