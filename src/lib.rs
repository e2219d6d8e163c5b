//! jwtd verifies JSON Web Tokens (compact JWS) for other services over gRPC.
//!
//! The centre is [`verify::verify`], a pure, synchronous function of a token,
//! a [`policy::Trust`] snapshot and the time. Around it: [`jose`] and
//! [`claims`] parse, [`keys`] turns JWK Sets into aws-lc-rs keys, [`config`]
//! reads and validates the TOML, [`registry`] keeps every issuer's keys fresh
//! and publishes snapshots, [`grpc`] maps results to the wire (and
//! [`ext_authz`] to Envoy's Check), [`server`]
//! assembles the tonic server, [`telemetry`] and [`otel`] count and trace it,
//! and [`mint`] signs development tokens.
//!
//! The folders are the layers, each importing only those below it:
//! - [`verifier`]: the pure core (no I/O, no clock, no async);
//! - [`config`]: the TOML loader, and at its bottom the typed settings that
//!   every other layer reads ([`config::settings`]);
//! - [`keys`]: JWK Sets, their fetches and the registry that keeps them fresh;
//! - [`revocation`]: revocation lists (file, URL, Redis) and the store the
//!   engine checks every VALID answer against, last;
//! - [`runtime`]: the batch engine, the memo and the bounds on accepted work;
//! - [`transport`]: the gRPC adapters, the server and TLS;
//! - [`observability`]: metrics, traces and the audit trail.

pub mod config;
pub mod keys;
pub mod observability;
pub mod revocation;
pub mod runtime;
pub mod transport;
pub mod verifier;

// The layers are folders; each module is also named at the crate root, so
// callers write `jwtd::verify`, `jwtd::engine`, whatever folder holds it.
/// The version and the commit jwtd was built from, as `jwtd --version`
/// prints them and the start-up log records them: `0.1.0 (commit 1a2b…)`.
/// The commit is `unknown` in a build from neither a git checkout nor the
/// Dockerfile (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("JWTD_COMMIT"),
    ")"
);

pub use keys::registry;
pub use observability::{audit, otel, telemetry};
pub use runtime::{engine, memo};
pub use transport::{ext_authz, grpc, server, tls};
pub use verifier::{claims, clock, jose, mint, policy, verify};

/// The generated protobuf types and tonic service of `proto/jwtd/v1/jwtd.proto`.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("jwtd.v1");

    /// The encoded file descriptor set of the jwtd API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/jwtd_descriptor.bin"));
}
