//! The pure core: compact JWS parsing, claims, issuer policy and the
//! verifier itself. No I/O, no clock reads, no async; everything else in
//! jwtd adapts to this layer. Its one piece of state, the headers each
//! thread parsed last (`jose`, with `recent`), is a memo of a pure
//! function, and invisible from outside.

pub mod claims;
pub mod clock;
pub mod jose;
pub(crate) mod json;
pub mod mint;
pub mod policy;
pub(crate) mod recent;
pub mod verify;
