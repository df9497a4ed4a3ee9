//! The Kubernetes manifests in `deploy/kubernetes/` parse and keep the deployment's
//! invariants (checked by `python/check_manifests.py`, which needs PyYAML; .ci/run
//! installs it).

#[tokio::test]
async fn kubernetes_manifests_keep_the_deployment_invariants() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/check_manifests.py");
    let bin_dir = miroir_integration_tests::binary("miroir-gateway")
        .parent()
        .expect("bin dir")
        .to_owned();
    let output =
        tokio::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(script)
            .arg(root)
            .arg(&bin_dir)
            .output()
            .await
            .expect("python3 on PATH");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "manifest check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
