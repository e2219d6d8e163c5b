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

pub mod claims;
pub mod clock;
pub mod config;
pub mod engine;
pub mod ext_authz;
pub mod grpc;
pub mod jose;
mod json;
pub mod keys;
pub mod memo;
pub mod mint;
pub mod otel;
pub mod policy;
pub mod registry;
pub mod server;
mod stamp;
mod sync;
pub mod telemetry;
pub mod tls;
pub mod verify;

/// The generated protobuf types and tonic service of `proto/jwtd/v1/jwtd.proto`.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("jwtd.v1");

    /// The encoded file descriptor set of the jwtd API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/jwtd_descriptor.bin"));
}
