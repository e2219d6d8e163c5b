//! Bytes per memo entry for a typical 800-byte token, at 100k and 1M
//! entries: `cargo bench --bench memory`. Prints the resident-set growth per
//! entry (what the process really pays) and the memo's own accounting.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use jwtd::jose::Algorithm;
use jwtd::keys::{KeySet, Origin};
use jwtd::memo::{Memo, valid_until};
use jwtd::mint::Signer;
use jwtd::policy::{IssuerPolicy, KeyState, Narrowing, Trust, TrustedIssuer};
use jwtd::runtime::token_key::TokenHasher;
use jwtd::verify::{Authenticated, UnixTime, authenticate};
use serde_json::json;

const ISS: &str = "https://issuer.test";
const SECRET: [u8; 32] = [0x5a; 32];

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and criterion-style listing: nothing to run.
    }
    let k = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, SECRET);
    let jwks = format!(r#"{{"keys":[{{"kty":"oct","kid":"k1","k":"{k}"}}]}}"#);
    let (keys, _) = KeySet::from_jwks(jwks.as_bytes(), Origin::LocalFile).unwrap();
    let trust = Trust::new(
        [TrustedIssuer {
            policy: Arc::new(IssuerPolicy::new(ISS).unwrap().allowing_any_audience()),
            keys: KeyState::Loaded(Arc::new(keys)),
        }],
        8192,
    );
    let signer = Signer::hmac(&SECRET, Algorithm::HS256).unwrap();
    let narrowing = Narrowing::default();
    let now = UnixTime(1_700_000_000);
    let token = |n: usize| {
        let claims = json!({
            "iss": ISS, "sub": format!("user-{n:010}"), "aud": ["orders-api", "billing-api"],
            "exp": 1_700_003_600, "iat": 1_700_000_000, "jti": format!("{n:032x}"),
            "scope": "orders:read orders:write profile:read billing:read",
            "roles": ["customer", "beta-tester"], "tenant": "acme-corporation-eu-west",
            "session": "x".repeat(220),
        });
        signer
            .sign(Some("k1"), claims.as_object().unwrap())
            .unwrap()
    };
    println!("token length: {} bytes", token(0).len());
    let hasher = TokenHasher::new();
    for n in [100_000usize, 1_000_000] {
        let memo: Memo<Arc<Authenticated>> = Memo::new(n, usize::MAX);
        let before = resident_bytes();
        for i in 0..n {
            let t = token(i);
            let auth = authenticate(&t, &trust, &narrowing).unwrap();
            let until = valid_until(now, auth.claims().exp(), 60, 300);
            let heap = auth.heap_bytes();
            memo.insert(&hasher.key(&t).to_owned_key(), auth, now, until, heap);
        }
        let after = resident_bytes();
        println!(
            "memo/bytes_per_entry/{n}: resident {} B/entry, accounted {} B/entry ({} entries)",
            (after.saturating_sub(before)) / n,
            memo.bytes() / n,
            memo.len()
        );
    }
}
