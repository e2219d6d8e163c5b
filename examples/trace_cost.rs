//! Verify calls over loopback for instruction counting under callgrind, with
//! tracing off or on (every span exported to a discarding collector in this
//! process): `valgrind --tool=callgrind target/release/examples/trace_cost
//! MODE MEMO N`, MODE `off` or `on`, MEMO `hot` or `cold`. Each call is 64
//! RS256 tokens; subtract a run with N = 0. The setup is the tracing bench's
//! (`benches/common/rpc.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../benches/common/mod.rs"]
mod common;
use common::rpc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, memo, n): (&str, &str, usize) = (&args[1], &args[2], args[3].parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tokens = rpc::tokens();
    let tracing = (mode == "on").then(|| rt.block_on(rpc::start_tracing()));
    let mut client = rt.block_on(rpc::jwtd(memo == "hot"));
    // Connection set up and, for `hot`, the memo filled: not counted apart
    // from the N = 0 run, which does the same.
    rt.block_on(client.verify(rpc::request(&tokens))).unwrap();
    for _ in 0..n {
        let response = rt.block_on(client.verify(rpc::request(&tokens))).unwrap();
        assert_eq!(response.get_ref().results.len(), rpc::BATCH);
    }
    if let Some(tracing) = tracing {
        rt.block_on(rt.spawn_blocking(move || tracing.shutdown()))
            .unwrap();
    }
}
