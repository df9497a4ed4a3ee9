//! A chaos run (issue 24, point 1): a fleet of real processes on loopback, clients that
//! write and read through every gateway round-robin, faults injected at random from a
//! seed, then a checker against the model of what was acknowledged. `miroir-chaos` runs
//! it from the command line; the integration test `chaos` runs a short one in CI.

pub mod check;
pub mod clients;
pub mod faults;
pub mod fleet;

use crate::rng::Rng;
use faults::{Fault, FaultKind, KINDS};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How a run goes.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Picks the faults, their targets and timings, and the clients' requests.
    pub seed: u64,
    /// How long faults are injected (the clients run a little longer).
    pub duration: Duration,
    /// At most this many faults.
    pub max_faults: usize,
    /// Nodes in the fleet (one group, RF 2), besides the spare.
    pub nodes: usize,
    /// Gateways.
    pub gateways: usize,
    /// Writers and readers.
    pub writers: usize,
    /// Readers.
    pub readers: usize,
    /// Documents the writers choose from.
    pub documents: usize,
    /// The longest hang (`SIGSTOP`), to fit short runs.
    pub hang_cap: Duration,
    /// Keeps the processes' logs (their folder is printed) instead of deleting them.
    pub keep_logs: bool,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            duration: Duration::from_secs(120),
            max_faults: 1000,
            nodes: 4,
            gateways: 3,
            writers: 4,
            readers: 2,
            documents: 1000,
            hang_cap: Duration::from_secs(20),
            keep_logs: false,
        }
    }
}

/// What a run did and found.
#[derive(Debug)]
pub struct ChaosReport {
    /// The seed.
    pub seed: u64,
    /// Faults injected, in order.
    pub faults: Vec<Fault>,
    /// Writes acknowledged (202).
    pub writes_acknowledged: u64,
    /// Writes refused or not answered.
    pub writes_refused: u64,
    /// Reads answered.
    pub reads_ok: u64,
    /// Reads failed.
    pub reads_failed: u64,
    /// The longest stretch without an acknowledged write, per kind of the fault going on
    /// when it ended (`None`: no fault).
    pub write_gaps: BTreeMap<Option<FaultKind>, Duration>,
    /// The same for reads.
    pub read_gaps: BTreeMap<Option<FaultKind>, Duration>,
    /// How long the fleet took to be whole again after the last fault.
    pub healed_in: Option<Duration>,
    /// The checker's findings.
    pub findings: check::Findings,
    /// Refused writes by reason: how many, and the first one's message.
    pub refusals: BTreeMap<String, (u64, String)>,
}

impl ChaosReport {
    /// Whether the run kept every promise: nothing acknowledged lost, nothing deleted
    /// back, replicas and gateways equal to the model, every task truthful, the fleet
    /// whole again.
    pub fn passed(&self) -> bool {
        let f = &self.findings;
        f.lost.is_empty()
            && f.resurrected.is_empty()
            && f.replicas_differ.is_empty()
            && f.gateway_views_differ.is_empty()
            && f.untruthful_tasks.is_empty()
            && self.healed_in.is_some()
    }

    /// The longest write gap while a fault of `kind` went on.
    pub fn write_gap(&self, kind: Option<FaultKind>) -> Option<Duration> {
        self.write_gaps.get(&kind).copied()
    }
}

impl std::fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut by_kind: BTreeMap<FaultKind, usize> = BTreeMap::new();
        for fault in &self.faults {
            *by_kind.entry(fault.kind).or_default() += 1;
        }
        let findings = &self.findings;
        writeln!(f, "chaos run, seed {}", self.seed)?;
        writeln!(f, "faults injected: {}", self.faults.len())?;
        for (kind, count) in &by_kind {
            writeln!(f, "  {count:>3} × {}", kind.name())?;
        }
        writeln!(f, "writes acknowledged: {}", self.writes_acknowledged)?;
        writeln!(f, "writes refused or unanswered: {}", self.writes_refused)?;
        for (reason, (count, message)) in &self.refusals {
            let message: String = message.chars().take(160).collect();
            writeln!(f, "  {count:>5} × {reason} (first: {message})")?;
        }
        writeln!(f, "writes lost: {}", findings.lost.len())?;
        writeln!(f, "deleted documents back: {}", findings.resurrected.len())?;
        writeln!(
            f,
            "shards whose replicas differ: {}",
            findings.replicas_differ.len()
        )?;
        writeln!(
            f,
            "gateways whose view differs from the model: {}",
            findings.gateway_views_differ.len()
        )?;
        let tasks: Vec<String> = findings
            .tasks
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(f, "tasks of acknowledged writes: {}", tasks.join(", "))?;
        writeln!(
            f,
            "reads ok: {}, reads failed: {}",
            self.reads_ok, self.reads_failed
        )?;
        let gap = |gaps: &BTreeMap<Option<FaultKind>, Duration>, kind| {
            gaps.get(&kind)
                .map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()))
        };
        let longest = |gaps: &BTreeMap<Option<FaultKind>, Duration>| {
            gaps.values().copied().max().unwrap_or_default().as_millis()
        };
        writeln!(
            f,
            "longest unavailability: writes {} ms, reads {} ms",
            longest(&self.write_gaps),
            longest(&self.read_gaps),
        )?;
        writeln!(
            f,
            "  with no fault going on           writes {:>8}, reads {:>8}",
            gap(&self.write_gaps, None),
            gap(&self.read_gaps, None)
        )?;
        for kind in KINDS {
            if by_kind.contains_key(&kind) {
                writeln!(
                    f,
                    "  during {:<34} writes {:>8}, reads {:>8}",
                    kind.name(),
                    gap(&self.write_gaps, Some(kind)),
                    gap(&self.read_gaps, Some(kind))
                )?;
            }
        }
        match self.healed_in {
            Some(d) => writeln!(
                f,
                "fleet whole again {} ms after the last fault",
                d.as_millis()
            )?,
            None => writeln!(f, "fleet NOT whole again after the last fault")?,
        }
        let mut details = String::new();
        for (what, items) in [
            ("lost", &findings.lost),
            ("back", &findings.resurrected),
            ("replicas differ", &findings.replicas_differ),
            ("gateway views", &findings.gateway_views_differ),
            ("tasks", &findings.untruthful_tasks),
        ] {
            for item in items.iter().take(10) {
                let _ = writeln!(details, "  {what}: {item}");
            }
        }
        if !details.is_empty() {
            write!(f, "problems:\n{details}")?;
        }
        writeln!(
            f,
            "verdict: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// The longest gaps between consecutive `successes` from `start` to `end`, per kind of
/// the fault each gap overlaps most (`None`: no fault).
fn gaps(
    mut successes: Vec<Instant>,
    start: Instant,
    end: Instant,
    faults: &[Fault],
) -> BTreeMap<Option<FaultKind>, Duration> {
    successes.sort();
    successes.push(end);
    let mut longest: BTreeMap<Option<FaultKind>, Duration> = BTreeMap::new();
    let mut last = start;
    for at in successes {
        let gap = at.saturating_duration_since(last);
        // A gap belongs to the fault it overlaps most (each with a second of settling
        // after it): faults follow each other closely, and the earlier one of two a gap
        // touches is often not the one that caused it.
        let overlap = |f: &Fault| {
            let (from, to) = (
                last.max(f.started),
                at.min(f.ended + Duration::from_secs(1)),
            );
            to.saturating_duration_since(from)
        };
        let during = faults
            .iter()
            .filter(|f| !overlap(f).is_zero())
            .max_by_key(|f| overlap(f))
            .map(|f| f.kind);
        let entry = longest.entry(during).or_default();
        *entry = (*entry).max(gap);
        last = at;
    }
    longest
}

/// Runs the fleet, the clients and the faults, then checks. Prints progress on stderr.
pub async fn run(config: &ChaosConfig) -> ChaosReport {
    let mut rng = Rng(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    eprintln!(
        "chaos: starting the fleet ({} nodes, 2 control planes on Postgres, {} gateways, Redis)",
        config.nodes, config.gateways
    );
    let mut fleet = fleet::ChaosFleet::start(config.nodes, config.gateways).await;
    let clients = clients::Clients::start(
        config.seed,
        fleet.gateway_urls.clone(),
        config.documents,
        config.writers,
        config.readers,
    );
    // Some history before the first fault.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let mut faults = Vec::new();
    while started.elapsed() < config.duration && faults.len() < config.max_faults {
        let kind = *rng.pick(&KINDS);
        let fault = faults::inject(&mut fleet, kind, &mut rng, config.hang_cap).await;
        eprintln!(
            "chaos: {:>6.1}s {} — {} ({} ms)",
            started.elapsed().as_secs_f64(),
            kind.name(),
            fault.detail,
            (fault.ended - fault.started).as_millis()
        );
        faults.push(fault);
        tokio::time::sleep(Duration::from_millis(500 + rng.next(1500) as u64)).await;
    }
    let healed_in = fleet.healed(Duration::from_secs(180)).await;
    if config.keep_logs {
        let kept = std::mem::replace(&mut fleet.dir, tempfile::tempdir().expect("temp dir"));
        eprintln!("chaos: logs kept in {}", kept.keep().display());
    }
    // Some history on the whole fleet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (record, clients_started, clients_stopped) = clients.stop().await;
    eprintln!("chaos: checking");
    let findings = check::check(&fleet, &record).await;
    let counters = &record.counters;
    let ordering = std::sync::atomic::Ordering::Relaxed;
    let write_successes = record
        .write_successes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let read_successes = record
        .read_successes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let write_gaps = gaps(write_successes, clients_started, clients_stopped, &faults);
    let read_gaps = gaps(read_successes, clients_started, clients_stopped, &faults);
    let refusals = record
        .refusals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    ChaosReport {
        seed: config.seed,
        faults,
        writes_acknowledged: counters.writes_acknowledged.load(ordering),
        writes_refused: counters.writes_refused.load(ordering),
        reads_ok: counters.reads_ok.load(ordering),
        reads_failed: counters.reads_failed.load(ordering),
        write_gaps,
        read_gaps,
        healed_in,
        findings,
        refusals,
    }
}
