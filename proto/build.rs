//! Compiles the `.proto` files with `protox` (pure Rust), so no system `protoc` is needed,
//! and keeps the encoded descriptor set for gRPC server reflection.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/miroir/v1/topology.proto",
        "proto/miroir/v1/admin.proto",
        "proto/miroir/v1/task.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("miroir_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // Ordered, so a topology encodes to the same bytes every time.
        .btree_map(".")
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
