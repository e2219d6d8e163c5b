//! Runs one verification path N times, for instruction counting under
//! callgrind (deterministic where wall-clock benches on a shared machine are
//! not): `valgrind --tool=callgrind target/release/examples/instructions ALG PATH N`
//! with PATH one of raw, cold, jsonwebtoken. Subtract a run with N = 0.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use jwtd::jose::Algorithm;
use jwtd::keys::{KeySet, Origin};
use jwtd::mint::Signer;
use jwtd::policy::{IssuerPolicy, KeyState, Narrowing, Trust, TrustedIssuer};
use jwtd::verify::{UnixTime, verify};
use serde_json::{Value, json};

const ISS: &str = "https://issuer.test";

fn data(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (alg, path, n): (&str, &str, usize) = (&args[1], &args[2], args[3].parse().unwrap());
    let kid = match alg {
        "RS256" => "rsa2048",
        "ES256" => "p256",
        _ => "ed25519",
    };
    let jwks: Value = serde_json::from_slice(&data("keys/jwks.json")).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone();
    let pem = String::from_utf8(data(&format!("keys/{kid}.pem"))).unwrap();
    let signer = Signer::from_pkcs8_pem(&pem, Algorithm::from_name(alg)).unwrap();
    let claims = json!({
        "iss": ISS, "sub": "user-1", "aud": ["api", "billing"],
        "exp": 4_000_000_000i64, "nbf": 1_600_000_000, "iat": 1_700_000_000,
        "jti": "jti-00000001", "scope": "orders:read orders:write profile",
        "roles": ["admin", "support"], "tenant": "acme-corp",
    });
    let token = signer.sign(Some(kid), claims.as_object().unwrap()).unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = b64d(sig);
    let s = |m: &str| jwk[m].as_str().unwrap().to_owned();
    match path {
        "raw" => {
            let key = match alg {
                "RS256" => RsaPublicKeyComponents {
                    n: &b64d(&s("n"))[..],
                    e: &b64d(&s("e"))[..],
                }
                .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
                .unwrap(),
                "ES256" => {
                    let mut p = vec![4];
                    p.extend(b64d(&s("x")));
                    p.extend(b64d(&s("y")));
                    ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p).unwrap()
                }
                _ => ParsedPublicKey::new(&signature::ED25519, b64d(&s("x"))).unwrap(),
            };
            for _ in 0..n {
                key.verify_sig(black_box(input.as_bytes()), black_box(&sig))
                    .unwrap();
            }
        }
        "cold" => {
            let (keys, _) =
                KeySet::from_jwks(jwks.to_string().as_bytes(), Origin::LocalFile).unwrap();
            let policy = IssuerPolicy::new(ISS)
                .and_then(|p| p.with_audiences(vec!["api".into()]))
                .unwrap();
            let trust = Trust::new(
                [TrustedIssuer {
                    policy: Arc::new(policy),
                    keys: KeyState::Loaded(Arc::new(keys)),
                }],
                8192,
            );
            let narrowing = Narrowing::default();
            for _ in 0..n {
                verify(
                    black_box(&token),
                    &trust,
                    &narrowing,
                    UnixTime(1_700_000_000),
                )
                .unwrap();
            }
        }
        _ => {
            use jsonwebtoken::{Algorithm as A, DecodingKey, Validation};
            let (key, a) = match alg {
                "RS256" => (
                    DecodingKey::from_rsa_components(&s("n"), &s("e")).unwrap(),
                    A::RS256,
                ),
                "ES256" => (
                    DecodingKey::from_ec_components(&s("x"), &s("y")).unwrap(),
                    A::ES256,
                ),
                _ => (DecodingKey::from_ed_components(&s("x")).unwrap(), A::EdDSA),
            };
            let mut validation = Validation::new(a);
            validation.set_audience(&["api"]);
            validation.set_issuer(&[ISS]);
            for _ in 0..n {
                jsonwebtoken::decode::<Value>(black_box(&token), &key, &validation).unwrap();
            }
        }
    }
}
