//! Feeds arbitrary bytes to the verifier and the key-set parser: neither may
//! panic, and nothing the fuzzer makes may verify.
#![no_main]

use std::sync::{Arc, OnceLock};

use jwtd::keys::{KeySet, Origin};
use jwtd::policy::{IssuerPolicy, KeyState, Narrowing, Trust, TrustedIssuer};
use jwtd::verify::{UnixTime, verify};
use libfuzzer_sys::fuzz_target;

fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let jwks = include_bytes!("../../tests/data/keys/jwks.json");
        let (keys, _) = KeySet::from_jwks(jwks, Origin::LocalFile).expect("fixture keys load");
        let policy = IssuerPolicy::new("https://issuer.test").expect("valid issuer");
        Trust::new(
            [TrustedIssuer {
                policy: Arc::new(policy),
                keys: KeyState::Loaded(Arc::new(keys)),
            }],
            8192,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = KeySet::from_jwks(data, Origin::Remote);
    if let Ok(token) = std::str::from_utf8(data) {
        let outcome = verify(token, trust(), &Narrowing::default(), UnixTime(1_700_000_000));
        assert!(outcome.is_err(), "a fuzzed token verified: {token:?}");
    }
});
