//! What tracing costs a Verify call, side by side in one run:
//! `cargo bench --bench tracing`. Results are in BENCHMARKS.md.
//!
//! Each iteration is one Verify RPC of 64 RS256 tokens over loopback gRPC
//! to an in-process jwtd:
//! - `tracing/off/hot`, `tracing/off/cold`: no trace pipeline (the default,
//!   no endpoint configured); `hot` answers from the memo, `cold` has the
//!   memo off so every token is a signature check;
//! - `tracing/on/hot`, `tracing/on/cold`: the same calls with a caller's
//!   sampled `traceparent`, every span recorded and exported by OTLP/gRPC
//!   to a collector in this process that discards what it receives (its
//!   decoding runs on the same two cores, so this is an upper bound).
//!
//! `off` runs first: a `tracing` subscriber, once installed, is global.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod common;

use std::time::Duration;

use common::rpc;
use criterion::{Criterion, criterion_group, criterion_main};
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use tokio::runtime::Runtime;
use tonic::transport::Channel;

fn calls(
    c: &mut Criterion,
    rt: &Runtime,
    mode: &str,
    clients: &[(&str, VerifierServiceClient<Channel>)],
    tokens: &[String],
) {
    let mut group = c.benchmark_group(format!("tracing/{mode}"));
    for (name, client) in clients {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut client = client.clone();
                let response = rt.block_on(client.verify(rpc::request(tokens))).unwrap();
                assert_eq!(response.get_ref().results.len(), rpc::BATCH);
            });
        });
    }
    group.finish();
}

fn tracing_cost(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tokens = rpc::tokens();
    let clients = rt.block_on(async {
        [
            ("hot", rpc::jwtd(true).await),
            ("cold", rpc::jwtd(false).await),
        ]
    });

    calls(c, &rt, "off", &clients, &tokens);

    let tracing = rt.block_on(rpc::start_tracing());
    calls(c, &rt, "on", &clients, &tokens);
    rt.block_on(rt.spawn_blocking(move || tracing.shutdown()))
        .unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = tracing_cost
}
criterion_main!(benches);
