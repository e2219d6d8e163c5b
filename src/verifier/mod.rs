//! The pure core: compact JWS parsing, claims, issuer policy and the
//! verifier itself. No I/O, no clock reads, no async; everything else in
//! jwtd adapts to this layer.

pub mod claims;
pub mod clock;
pub mod jose;
pub(crate) mod json;
pub mod mint;
pub mod policy;
pub mod verify;
