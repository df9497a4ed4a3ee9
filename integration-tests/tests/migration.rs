//! Migration in and out, on real Meilisearch nodes: `miroir-ctl import` copies a running
//! Meilisearch (interrupted and resumed) and a dump into a 3-node fleet (RF 2), and `POST
//! /export` on a gateway sends the fleet to a new Meilisearch, each document once; each time the copy must
//! equal the source, document for document and on the merge oracle's queries.

use crate::merge_oracle::{SETTINGS, compare_within, dataset_of, queries};
use miroir_integration_tests::{ControlPlaneOptions, MASTER_KEY, Meili, TestNode, binary};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

const DOCUMENTS: usize = 30_000;

/// The settings clients read.
async fn settings(meili: &Meili) -> Value {
    let (status, settings) = meili.get("/indexes/movies/settings").await;
    assert_eq!(status, 200, "{settings}");
    settings
}

/// `copy` equals `source`: documents, settings, and 40 of the merge oracle's queries.
async fn assert_equal(source: &Meili, copy: &Meili, label: &str) {
    let (expected, held) = (
        source.documents_by_id("movies").await,
        copy.documents_by_id("movies").await,
    );
    assert_eq!(held.len(), DOCUMENTS, "{label}");
    assert!(held == expected, "{label}: the documents differ");
    assert_eq!(
        settings(copy).await,
        settings(source).await,
        "{label}: settings"
    );
    for query in queries(40) {
        compare_within(source, copy, &query, label, DOCUMENTS).await;
    }
}

/// Runs `miroir-ctl import ARGS…` to its end; its output.
async fn import(args: &[&str]) -> String {
    let out = miroir_integration_tests::ctl("http://127.0.0.1:1", args).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out.stdout
}

#[tokio::test]
async fn a_meilisearch_is_imported_resumed_and_exported_back_equal() {
    // The source: one real Meilisearch with 30 000 documents.
    let source_node = TestNode::start().await;
    let source = Meili::new(&source_node.url);
    source
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "movies", "primaryKey": "id"}),
        )
        .await;
    let mut source_settings: Value = serde_json::from_str(SETTINGS).unwrap();
    source_settings["pagination"] = json!({"maxTotalHits": 50_000});
    source_settings["synonyms"] = json!({"film": ["movie"]});
    source
        .ok(Method::PATCH, "/indexes/movies/settings", source_settings)
        .await;
    for chunk in dataset_of(DOCUMENTS).chunks(10_000) {
        source
            .ok(Method::POST, "/indexes/movies/documents", json!(chunk))
            .await;
    }

    // RF 2: every shard has two copies, and the export must still send each document
    // once.
    let options = ControlPlaneOptions {
        extra_args: [
            "--export-to-private-networks",
            "--default-replication-factor",
            "2",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let (dir, _cp, _nodes, gateway) = crate::gateway_indexes::fleet_with(3, options).await;
    let fleet = Meili::new(&gateway.url);
    let state = dir.path().join("import.json");
    let state_arg = state.to_str().unwrap();
    let common = [
        "import",
        "--from",
        &source_node.url,
        "--api-key",
        MASTER_KEY,
        "--gateway",
        &gateway.url,
        "--master-key",
        MASTER_KEY,
        "--state",
        state_arg,
        "--page-size",
        "1000",
    ];

    // Interrupted (kill -9) once the first pages are in.
    let mut child = tokio::process::Command::new(binary("miroir-ctl"))
        .args(common)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start miroir-ctl import");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push(line.clone());
        if line.starts_with("movies: ") && line.contains(" / 30000 documents") {
            break;
        }
    }
    child.kill().await.unwrap();
    assert!(
        seen.iter()
            .any(|l| l == "movies: created, settings applied"),
        "{seen:?}"
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let interrupted_at = saved["indexes"]["movies"]["documents"].as_u64().unwrap();
    assert!(
        interrupted_at > 0 && interrupted_at < DOCUMENTS as u64,
        "{saved}"
    );

    // Run again: it resumes there and finishes.
    let resumed = import(&common).await;
    assert!(
        resumed.contains(&format!("movies: resuming at document {interrupted_at}")),
        "{resumed}"
    );
    assert!(
        resumed.contains("movies: 30000 documents imported"),
        "{resumed}"
    );
    assert!(resumed.contains("import finished"), "{resumed}");
    println!("{resumed}");
    assert_equal(&source, &fleet, "imported").await;
    // Once more: nothing left to do.
    let again = import(&common).await;
    assert!(
        again.contains("movies: already imported (30000 documents)"),
        "{again}"
    );

    // Out: POST /export to a new Meilisearch, each shard read once.
    let target_node = TestNode::start().await;
    let target = Meili::new(&target_node.url);
    let (status, task) = fleet
        .post(
            "/export",
            json!({"url": target_node.url, "apiKey": MASTER_KEY, "payloadSize": "1 MiB"}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(task["type"], "export");
    let done = fleet.wait_task(&task).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    println!("export: {}", done["duration"]);
    assert_eq!(
        done["details"]["apiKey"],
        format!("{}XXXX...", &MASTER_KEY[..2])
    );
    assert_equal(&source, &target, "exported").await;
    let (_, sent) = target
        .get("/tasks?types=documentAdditionOrUpdate&indexUids=movies&limit=1000")
        .await;
    let received: u64 = sent["results"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["details"]["receivedDocuments"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        received, DOCUMENTS as u64,
        "each document sent once: {sent}"
    );

    // A dump of the source imports the same way.
    let (status, dumping) = source.send(Method::POST, "/dumps", None, None).await;
    assert_eq!(status, 202, "{dumping}");
    let dumped = source.wait_task(&dumping).await;
    assert_eq!(dumped["status"], "succeeded", "{dumped}");
    let dump_uid = dumped["details"]["dumpUid"].as_str().expect("dump uid");
    let dump = source_node
        .dump_dir()
        .expect("a real node")
        .join(format!("{dump_uid}.dump"));
    let (status, task) = fleet.delete("/indexes/movies").await;
    assert_eq!(status, 202, "{task}");
    fleet.wait_task(&task).await;
    let from_dump = import(&[
        "import",
        "--dump",
        dump.to_str().unwrap(),
        "--gateway",
        &gateway.url,
        "--master-key",
        MASTER_KEY,
        "--state",
        dir.path().join("dump-import.json").to_str().unwrap(),
    ])
    .await;
    assert!(
        from_dump.contains("movies: 30000 documents imported"),
        "{from_dump}"
    );
    println!("{from_dump}");
    assert_equal(&source, &fleet, "imported from a dump").await;
}
