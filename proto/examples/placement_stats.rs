//! Prints how balanced placement is and how much moves when a node joins a group.
//!
//! `cargo run -p miroir-proto --example placement_stats --release [trials]`
use miroir_proto::NodeId;
use miroir_proto::placement::{assign_owners, owners_after_adding};
use std::collections::{BTreeMap, BTreeSet};

fn main() {
    let trials: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let shards = 64u32;
    println!("S={shards}, {trials} random node-id sets per row");
    println!(
        "nodes rf | worst share vs even | recompute on add: mean moved/optimal, worst, strays | transition on add: worst moved/optimal, worst share"
    );
    for rf in 1u32..=3 {
        for n in 2usize..=8 {
            if n < rf as usize {
                continue;
            }
            let mut worst_dev = 0f64;
            let (mut moved_sum, mut worst_ratio, mut stray_sum) = (0f64, 0f64, 0f64);
            let (mut trans_ratio, mut trans_dev) = (0f64, 0f64);
            for t in 0..trials {
                let nodes: Vec<NodeId> = (0..n)
                    .map(|i| NodeId(format!("node-{t}-{i}-{}", t * 31 + i as u64)))
                    .collect();
                let owners = assign_owners(shards, rf, &nodes);
                let mut loads: BTreeMap<&NodeId, usize> = BTreeMap::new();
                for list in &owners {
                    for node in list {
                        *loads.entry(node).or_default() += 1;
                    }
                }
                let even = f64::from(shards * rf) / n as f64;
                for node in &nodes {
                    let dev = (*loads.get(node).unwrap_or(&0) as f64 - even).abs() / even;
                    worst_dev = worst_dev.max(dev);
                }
                let new = NodeId(format!("joiner-{t}"));
                let mut after_nodes = nodes.clone();
                after_nodes.push(new.clone());
                let after = assign_owners(shards, rf, &after_nodes);
                let (mut moved, mut stray) = (0usize, 0usize);
                for (b, a) in owners.iter().zip(&after) {
                    let b: BTreeSet<_> = b.iter().collect();
                    let a: BTreeSet<_> = a.iter().collect();
                    let gained = a.difference(&b).count();
                    moved += gained;
                    if gained > 0 && !a.contains(&new) {
                        stray += 1;
                    }
                }
                let optimal = f64::from(shards * rf) / (n + 1) as f64;
                moved_sum += moved as f64 / optimal;
                worst_ratio = worst_ratio.max(moved as f64 / optimal);
                stray_sum += stray as f64;
                let planned = owners_after_adding(&owners, &new);
                let mut moved_planned = 0usize;
                let mut planned_loads: BTreeMap<&NodeId, usize> = BTreeMap::new();
                for (b, a) in owners.iter().zip(&planned) {
                    let b: BTreeSet<_> = b.iter().collect();
                    let a_set: BTreeSet<_> = a.iter().collect();
                    moved_planned += a_set.difference(&b).count();
                    for node in a {
                        *planned_loads.entry(node).or_default() += 1;
                    }
                }
                trans_ratio = trans_ratio.max(moved_planned as f64 / optimal);
                let even_after = f64::from(shards * rf) / (n + 1) as f64;
                for load in planned_loads.values() {
                    trans_dev = trans_dev.max((*load as f64 - even_after).abs() / even_after);
                }
            }
            println!(
                "{n:>5} {rf:>2} | {:>6.1}% | {:>5.2} {:>5.2} {:>5.2} | {:>5.2} {:>6.1}%",
                worst_dev * 100.0,
                moved_sum / trials as f64,
                worst_ratio,
                stray_sum / trials as f64,
                trans_ratio,
                trans_dev * 100.0
            );
        }
    }
}
