//! `miroir-ctl anti-entropy status|run`: the leader's comparison of every shard's copies.

use crate::client::status_error;
use crate::output::{self, Format};
use miroir_proto::pb::{self, admin_service_client::AdminServiceClient};
use serde::Serialize;
use std::time::Duration;
use tonic::transport::Channel;

#[derive(Debug, clap::Subcommand)]
pub enum AntiEntropyCommand {
    /// The pass running, the last one finished, the schedule and the totals.
    Status,
    /// Start a pass now (after the one running, if any).
    Run {
        /// Follow the pass until it finishes, printing its progress.
        #[arg(long)]
        wait: bool,
    },
}

/// One pass as printed.
#[derive(Serialize)]
struct PassView {
    number: u64,
    trigger: String,
    started_at_ms: u64,
    finished_at_ms: Option<u64>,
    shards_total: u32,
    shards_checked: u32,
    shards_skipped: u32,
    documents_compared: u64,
    differences: u64,
    repaired: u64,
    errors: Vec<String>,
}

impl From<&pb::AntiEntropyPass> for PassView {
    fn from(p: &pb::AntiEntropyPass) -> Self {
        Self {
            number: p.number,
            trigger: p.trigger.clone(),
            started_at_ms: p.started_at_ms,
            finished_at_ms: (p.finished_at_ms != 0).then_some(p.finished_at_ms),
            shards_total: p.shards_total,
            shards_checked: p.shards_checked,
            shards_skipped: p.shards_skipped,
            documents_compared: p.documents_compared,
            differences: p.differences,
            repaired: p.repaired,
            errors: p.errors.clone(),
        }
    }
}

/// The status as printed.
#[derive(Serialize)]
struct StatusView {
    leader: String,
    interval_ms: u64,
    documents_per_second: u64,
    next_pass_at_ms: Option<u64>,
    requested_pass: Option<u64>,
    running: Option<PassView>,
    last: Option<PassView>,
    passes: u64,
    differences: u64,
    repaired: u64,
}

impl From<&pb::AntiEntropyStatus> for StatusView {
    fn from(s: &pb::AntiEntropyStatus) -> Self {
        Self {
            leader: s.leader_id.clone(),
            interval_ms: s.interval_ms,
            documents_per_second: s.documents_per_second,
            next_pass_at_ms: (s.next_pass_at_ms != 0).then_some(s.next_pass_at_ms),
            requested_pass: (s.requested_pass != 0).then_some(s.requested_pass),
            running: s.running.as_ref().map(PassView::from),
            last: s.last.as_ref().map(PassView::from),
            passes: s.passes,
            differences: s.differences,
            repaired: s.repaired,
        }
    }
}

fn pass_text(label: &str, p: &PassView) -> String {
    let mut text = format!(
        "{label} pass {} ({}): {}/{} shards compared, {} skipped, {} documents read, {} differed, {} repaired",
        p.number,
        p.trigger,
        p.shards_checked,
        p.shards_total,
        p.shards_skipped,
        p.documents_compared,
        p.differences,
        p.repaired
    );
    if let Some(finished) = p.finished_at_ms {
        let seconds = finished.saturating_sub(p.started_at_ms) as f64 / 1000.0;
        text.push_str(&format!(", in {seconds:.1} s"));
    }
    for error in &p.errors {
        text.push_str(&format!("\n  not compared: {error}"));
    }
    text
}

fn status_text(s: &StatusView) -> String {
    let schedule = if s.interval_ms == 0 {
        "passes only when asked (miroir-ctl anti-entropy run)".to_owned()
    } else {
        let next = s.next_pass_at_ms.map_or(String::new(), |at| {
            let seconds = at.saturating_sub(miroir_proto::time::now_ms()) / 1000;
            format!(", next in {seconds} s")
        });
        format!(
            "a pass every {}{next}",
            humantime::format_duration(Duration::from_millis(s.interval_ms))
        )
    };
    let mut lines = vec![
        format!(
            "anti-entropy on leader {}: {schedule}, at most {} documents/s",
            s.leader, s.documents_per_second
        ),
        format!(
            "since it leads: {} passes, {} documents differed, {} repaired",
            s.passes, s.differences, s.repaired
        ),
    ];
    if let Some(pass) = s.requested_pass {
        lines.push(format!("pass {pass} asked for by an operator"));
    }
    if let Some(running) = &s.running {
        lines.push(pass_text("running:", running));
    }
    if let Some(last) = &s.last {
        lines.push(pass_text("last:", last));
    }
    lines.join("\n")
}

async fn status(admin: &mut AdminServiceClient<Channel>) -> anyhow::Result<pb::AntiEntropyStatus> {
    Ok(admin
        .get_anti_entropy_status(pb::GetAntiEntropyStatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner())
}

pub async fn run(
    admin: &mut AdminServiceClient<Channel>,
    command: AntiEntropyCommand,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        AntiEntropyCommand::Status => {
            let status = status(admin).await?;
            output::print(format, &StatusView::from(&status), status_text)
        }
        AntiEntropyCommand::Run { wait } => {
            let asked = admin
                .run_anti_entropy(pb::RunAntiEntropyRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            let number = asked.requested_pass;
            if !wait {
                if format == Format::Text {
                    println!("anti-entropy pass {number} asked for");
                }
                return output::print(format, &StatusView::from(&asked), status_text);
            }
            let mut last_line = String::new();
            loop {
                let now = status(admin).await?;
                if let Some(done) = now.last.as_ref().filter(|p| p.number >= number) {
                    let view = PassView::from(done);
                    return output::print(format, &view, |p| pass_text("finished:", p));
                }
                if format == Format::Text
                    && let Some(running) = now.running.as_ref().filter(|p| p.number >= number)
                {
                    let line = pass_text("running:", &PassView::from(running));
                    if line != last_line {
                        eprintln!("{line}");
                        last_line = line;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
