//! Compiles `proto/` with protox (pure Rust, so no system `protoc` is needed)
//! and generates the tonic service code plus an encoded descriptor set for
//! server reflection.
//!
//! Decision record: `docs/adr/0006-protox-instead-of-protoc.md`.
//!
//! It also sets `JWTD_COMMIT`, the commit `jwtd --version` prints: the
//! `JWTD_REVISION` environment variable when set (the Dockerfile passes its
//! `REVISION` build argument, because the image's build context has no
//! `.git`), else `git rev-parse HEAD` of the checkout, else `unknown`.

use std::{env, fs, path::Path, path::PathBuf, process::Command};

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
    println!("cargo:rustc-env=JWTD_COMMIT={}", commit());
    Ok(())
}

fn commit() -> String {
    println!("cargo:rerun-if-env-changed=JWTD_REVISION");
    if let Some(revision) = env::var("JWTD_REVISION").ok().filter(|r| !r.is_empty()) {
        return revision;
    }
    // Rerun when HEAD moves: HEAD itself (a checkout) and the branch it names
    // (a commit). Only paths that exist: cargo reruns on a missing one every
    // build. (A worktree's `.git` is a file: there the commit is asked for
    // but not watched, so it can be stale until the sources change.)
    let git = Path::new(".git");
    if git.is_dir() {
        watch_head(git);
    }
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|hash| hash.trim().to_owned())
        .filter(|hash| !hash.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn watch_head(git: &Path) {
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = fs::read_to_string(git.join("HEAD"))
        && let Some(branch) = head.trim().strip_prefix("ref: ")
        && git.join(branch).is_file()
    {
        println!("cargo:rerun-if-changed=.git/{branch}");
    }
    if git.join("packed-refs").is_file() {
        println!("cargo:rerun-if-changed=.git/packed-refs");
    }
}
