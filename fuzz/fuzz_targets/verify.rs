//! Feeds arbitrary bytes, as a token, to `jwtd::verify::verify` against two
//! trusted issuers: `https://issuer.test` with the public keys of
//! `tests/data/keys/jwks.json` (RSA 2048/3072, P-256/384/521, Ed25519) and
//! `https://hmac.test` with the secret of `tests/data/keys/jwks-hmac.json`,
//! at the fixed time 1 700 000 000.
//!
//! Asserts: `verify` never panics, and nothing the fuzzer makes verifies.
//! The seeds include correctly signed tokens that expired before that time,
//! so mutations reach the claim checks, but a mutation that verified would
//! be a forged signature. Input that is not UTF-8 is not a `&str` and skipped.
#![no_main]

use std::sync::{Arc, OnceLock};

use jwtd::keys::{KeySet, Origin};
use jwtd::policy::{IssuerPolicy, KeyState, Narrowing, Trust, TrustedIssuer};
use jwtd::verify::{UnixTime, verify};
use libfuzzer_sys::fuzz_target;

/// The time of every check: after the seeds' `exp`.
const NOW: UnixTime = UnixTime(1_700_000_000);

fn issuer(name: &str, jwks: &[u8]) -> TrustedIssuer {
    let (keys, refused) = KeySet::from_jwks(jwks, Origin::LocalFile).expect("fixture keys load");
    assert!(refused.is_empty(), "fixture keys refused: {refused:?}");
    TrustedIssuer {
        policy: Arc::new(IssuerPolicy::new(name).expect("valid issuer")),
        keys: KeyState::Loaded(Arc::new(keys)),
    }
}

fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        Trust::new(
            [
                issuer(
                    "https://issuer.test",
                    include_bytes!("../../tests/data/keys/jwks.json"),
                ),
                issuer(
                    "https://hmac.test",
                    include_bytes!("../../tests/data/keys/jwks-hmac.json"),
                ),
            ],
            8192,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let outcome = verify(token, trust(), &Narrowing::default(), NOW);
        assert!(outcome.is_err(), "a fuzzed token verified: {token:?}");
    }
});
