//! The wire: the gRPC adapters of Verify and Envoy's Check (the one place
//! outcomes become wire values), the server that assembles them, and TLS.

pub mod callers;
pub mod ext_authz;
pub mod grpc;
pub mod oversize;
pub mod server;
pub mod tls;
