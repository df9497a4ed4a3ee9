//! The official Python SDK against a gateway on a 3-node fleet. Needs the `meilisearch`
//! package (`pip install meilisearch`, which .ci/run does).

use crate::gateway_indexes::fleet;
use miroir_integration_tests::MASTER_KEY;

#[tokio::test]
async fn the_python_sdk_works_unchanged() {
    let (_dir, _cp, _nodes, gateway) = fleet(3).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/sdk_gateway.py");
    let output =
        tokio::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(script)
            .arg(&gateway.url)
            .arg(MASTER_KEY)
            .output()
            .await
            .expect("python3 on PATH");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
