//! Writes `proto/envoy/ext_authz_descriptors.bin`: the file descriptors of
//! `envoy/service/auth/v3/external_auth.proto` and everything it imports,
//! pruned from the full set the envoy-types crate ships (3.3 MB), so server
//! reflection can describe Check. Rerun when envoy-types is upgraded:
//!
//! `cargo run --example envoy_descriptors -- ~/.cargo/registry/src/*/envoy-types-<VERSION>/src/generated/types.bin`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeSet, HashMap};

use prost::Message as _;
use prost_types::FileDescriptorSet;

const ROOT: &str = "envoy/service/auth/v3/external_auth.proto";
const OUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proto/envoy/ext_authz_descriptors.bin"
);

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("the path of envoy-types' types.bin");
    let all = FileDescriptorSet::decode(&*std::fs::read(&path).expect("readable"))
        .expect("a FileDescriptorSet");
    let by_name: HashMap<&str, _> = all.file.iter().map(|f| (f.name(), f)).collect();
    let mut keep = BTreeSet::new();
    let mut todo = vec![ROOT];
    while let Some(name) = todo.pop() {
        if keep.insert(name) {
            let file = by_name
                .get(name)
                .unwrap_or_else(|| panic!("{name} is not in the set"));
            todo.extend(file.dependency.iter().map(String::as_str));
        }
    }
    // Dependencies first, as protoc writes them.
    let pruned = FileDescriptorSet {
        file: all
            .file
            .iter()
            .filter(|f| keep.contains(f.name()))
            .cloned()
            .collect(),
    };
    std::fs::write(OUT, pruned.encode_to_vec()).expect("writable");
    println!(
        "{} of {} files, {} bytes -> {OUT}",
        pruned.file.len(),
        all.file.len(),
        pruned.encoded_len()
    );
}
