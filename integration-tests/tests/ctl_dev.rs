//! `miroir-ctl dev`: one command starts a usable fleet and stops it.

use miroir_integration_tests::{Meili, binary, free_port, wait_for};
use reqwest::Method;
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn dev_starts_a_fleet_that_serves_the_api_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = tokio::process::Command::new(binary("miroir-ctl"))
        .args([
            "dev",
            "--nodes",
            "2",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--master-key",
            miroir_integration_tests::MASTER_KEY,
            "--data-dir",
        ])
        .arg(dir.path())
        // Real Meilisearch when the tests have it, else the test node.
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await
    {
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("ready") {
            break;
        }
    }
    assert!(
        printed.contains(&format!("Meilisearch API: http://127.0.0.1:{port}")),
        "{printed}"
    );
    let real = std::env::var_os("MEILISEARCH_BIN").is_some();
    assert_eq!(
        printed.contains("not a search engine"),
        !real,
        "says which nodes these are: {printed}"
    );

    let url = format!("http://127.0.0.1:{port}");
    wait_for(
        "the dev fleet to be ready",
        Duration::from_secs(20),
        || async {
            reqwest::get(format!("{url}/_miroir/ready"))
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;
    let meili = Meili::new(&url);
    meili
        .ok(
            Method::POST,
            "/indexes/movies/documents",
            json!([{"id": 1, "title": "Dark Water"}, {"id": 2, "title": "Knight"}]),
        )
        .await;
    let (_, result) = meili
        .post("/indexes/movies/search", json!({"q": "dark"}))
        .await;
    assert_eq!(result["hits"][0]["id"], 1, "{result}");

    let pid = child.id().unwrap().to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");
    wait_for(
        "the gateway port to close",
        Duration::from_secs(10),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}
