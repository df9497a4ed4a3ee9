//! The Kubernetes manifests in `deploy/kubernetes/` parse and keep the deployment's
//! invariants (checked by `python/check_manifests.py`, which needs PyYAML; .ci/run
//! installs it).

#[tokio::test]
async fn kubernetes_manifests_keep_the_deployment_invariants() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bin_dir = miroir_integration_tests::binary("miroir-gateway")
        .parent()
        .expect("bin dir")
        .to_owned();
    miroir_integration_tests::run_python_check(
        "check_manifests.py",
        &[root.as_ref(), bin_dir.as_os_str()],
    )
    .await;
}
