//! Compiles `proto/` with protox (pure Rust, so no system `protoc` is needed)
//! and generates the tonic service code plus an encoded descriptor set for
//! server reflection.
//!
//! Decision record: `docs/adr/0006-protox-instead-of-protoc.md`.

use std::{env, fs, path::PathBuf};

use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/jwtd/v1/jwtd.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    fs::write(out.join("jwtd_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
