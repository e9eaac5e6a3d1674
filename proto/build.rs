//! Compiles proto/netwait.proto with protox (pure Rust): no system `protoc` needed.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["netwait.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // The descriptor set also feeds the gRPC reflection service.
    std::fs::write(
        out.join("netwait_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
