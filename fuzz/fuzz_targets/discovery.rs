//! Feeds arbitrary bytes, as an OpenID discovery document, to
//! `jwtd::keys::fetch::parse_discovery`.
//!
//! Asserts: no panic; when it returns `(issuer, jwks_uri)` and the input
//! parses as a `serde_json::Value` too, that value is an object whose
//! `issuer` and `jwks_uri` members are those strings. (An early run found
//! arrays accepted, as serde's derived struct reads a sequence in field
//! order; jwtd now refuses anything but an object.)
#![no_main]

use jwtd::keys::fetch::parse_discovery;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok((issuer, jwks_uri)) = parse_discovery(data) else {
        return;
    };
    // serde_json skips unknown members without building them, so it accepts
    // there what a `Value` refuses (a number beyond f64, say): no oracle then.
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match &doc {
        Value::Object(members) => {
            assert_eq!(members.get("issuer"), Some(&Value::String(issuer)));
            assert_eq!(members.get("jwks_uri"), Some(&Value::String(jwks_uri)));
        }
        other => panic!("accepted a document that is not an object: {other}"),
    }
});
