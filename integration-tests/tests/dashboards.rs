//! The Grafana dashboard (`deploy/grafana/miroir.json`) queries only metrics the control
//! plane and the gateways export: a renamed or removed metric fails here, not on an
//! operator's screen.

use miroir_integration_tests::{Meili, RedisServer};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Every `expr` of the dashboard's panels.
fn expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                match (key.as_str(), member) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => expressions(member, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| expressions(item, out)),
        _ => {}
    }
}

/// The `miroir_…` series names an expression reads (not label values, which are quoted).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut quoted = false;
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !quoted && word.starts_with("miroir_") {
            names.push(std::mem::take(&mut word));
        }
        word.clear();
        if c == '"' {
            quoted = !quoted;
        }
    }
    names
}

/// The series names a Prometheus text exposition offers (from its `# TYPE` lines: a
/// counter `x` is `x_total`, a histogram `x` is `x_bucket`, `x_sum`, `x_count`).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(declared) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = declared.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/miroir.json");
    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("the dashboard")).expect("JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let wanted: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();

    // A fleet with every optional part on: Redis, the result cache.
    let redis = RedisServer::start().await;
    let args = ["--redis-url", redis.url.as_str(), "--result-cache"];
    let (_dir, cp, _nodes, gateway) = crate::gateway_indexes::fleet_with_gateway(1, &args).await;
    let meili = Meili::new(&gateway.url);
    meili
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "d", "primaryKey": "id"}),
        )
        .await;
    meili.post("/indexes/d/search", json!({"q": "x"})).await;
    let mut offered = exported(&cp.metrics_text().await);
    offered.extend(exported(&gateway.metrics_text().await));
    let missing: Vec<&String> = wanted.iter().filter(|m| !offered.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics nobody exports: {missing:?}\nexported: {offered:?}"
    );
    // The request metrics have samples once a request was answered.
    let text = gateway.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("miroir_gateway_requests_total{")
                && l.contains("route=\"/indexes/{uid}/search\"")),
        "{text}"
    );
}

#[test]
fn metric_names_are_read_from_expressions() {
    assert_eq!(
        metric_names(
            "sum(rate(miroir_a_total[5m])) / clamp_min(miroir_b_bucket{x=\"miroir_no_quorum\"}, 1)"
        ),
        ["miroir_a_total", "miroir_b_bucket"]
    );
}
