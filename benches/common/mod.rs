//! Fixtures shared by the benches and `examples/instructions.rs`: the test
//! keys, a typical token, a `Trust` over them, the aws-lc-rs floor and the
//! jsonwebtoken crate set up for the same key. Included with `#[path]` (a
//! subdirectory, so cargo does not take it for a bench of its own).

#![allow(dead_code, unreachable_pub)] // Each including binary uses a subset.

pub mod rpc;

use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use jwtd::keys::{KeySet, Origin};
use jwtd::mint::Signer;
use jwtd::policy::{IssuerPolicy, KeyState, Trust, TrustedIssuer};
use serde_json::{Map, Value, json};

pub const ISS: &str = "https://issuer.test";
/// HMAC keys may not share a set with public keys: a second issuer.
pub const HMAC_ISS: &str = "https://hmac.test";

pub fn iss_for(alg: &str) -> &'static str {
    if alg == "HS256" { HMAC_ISS } else { ISS }
}

pub fn data(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

pub fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

pub fn jwks() -> Value {
    serde_json::from_slice(&data("keys/jwks.json")).unwrap()
}

pub fn hmac_jwks() -> Value {
    serde_json::from_slice(&data("keys/jwks-hmac.json")).unwrap()
}

pub fn jwk(kid: &str) -> Value {
    let all = [jwks(), hmac_jwks()];
    all.iter()
        .flat_map(|set| set["keys"].as_array().unwrap().clone())
        .find(|k| k["kid"] == kid)
        .unwrap()
}

pub fn kid_for(alg: &str) -> &'static str {
    match alg {
        "RS256" => "rsa2048",
        "PS256" => "rsa3072",
        "ES256" => "p256",
        "EdDSA" => "ed25519",
        _ => "hs",
    }
}

pub fn signer(alg: &str) -> Signer {
    let algorithm = jwtd::jose::Algorithm::from_name(alg).unwrap();
    if alg == "HS256" {
        let k = jwk("hs")["k"].as_str().unwrap().to_owned();
        return Signer::hmac(&b64d(&k), algorithm).unwrap();
    }
    let pem = String::from_utf8(data(&format!("keys/{}.pem", kid_for(alg)))).unwrap();
    Signer::from_pkcs8_pem(&pem, Some(algorithm)).unwrap()
}

/// A typical access token: registered claims, scopes, roles.
pub fn claims(iss: &str, n: usize) -> Map<String, Value> {
    json!({
        "iss": iss, "sub": format!("user-{n}"), "aud": ["api", "billing"],
        "exp": 4_000_000_000i64, "nbf": 1_600_000_000, "iat": 1_700_000_000,
        "jti": format!("jti-{n:08}"), "scope": "orders:read orders:write profile",
        "roles": ["admin", "support"], "tenant": "acme-corp",
    })
    .as_object()
    .unwrap()
    .clone()
}

/// Limits roomy enough for every bench batch.
pub const LIMITS: jwtd::config::Limits = jwtd::config::Limits {
    max_batch: 4096,
    max_token_bytes: 8192,
    max_pending_tokens: None,
};

/// Verifies `token` once through `engine`, so the memo holds it.
pub fn memoize(engine: &Arc<jwtd::engine::Engine>, token: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(engine.verify_batch(
        Arc::new(vec![token.to_owned()]),
        Arc::new(jwtd::policy::Narrowing::default()),
        jwtd::engine::CancelToken::default(),
        jwtd::grpc::result_of,
    ))
    .unwrap();
}

/// The engine's defaults, or with both memos off (every token a full check).
pub fn engine_config(memo: bool) -> jwtd::engine::EngineConfig {
    let defaults = jwtd::engine::EngineConfig::default();
    if memo {
        defaults
    } else {
        jwtd::engine::EngineConfig {
            memo_entries: 0,
            negative_entries: 0,
            ..defaults
        }
    }
}

pub fn trust() -> Trust {
    let issuer = |iss: &str, jwks: Value| {
        let (keys, _) = KeySet::from_jwks(jwks.to_string().as_bytes(), Origin::LocalFile).unwrap();
        let policy = IssuerPolicy::new(iss)
            .and_then(|p| p.with_audiences(vec!["api".into()]))
            .unwrap();
        TrustedIssuer {
            policy: Arc::new(policy),
            keys: KeyState::Loaded(Arc::new(keys)),
        }
    };
    Trust::new([issuer(ISS, jwks()), issuer(HMAC_ISS, hmac_jwks())], 8192)
}

/// The floor: aws-lc-rs with a key parsed once.
pub enum Raw {
    Public(ParsedPublicKey),
    Hmac(Box<aws_lc_rs::hmac::Key>),
}

pub fn raw_key(alg: &str) -> Raw {
    let jwk = jwk(kid_for(alg));
    let s = |m: &str| b64d(jwk[m].as_str().unwrap());
    match alg {
        "RS256" | "PS256" => {
            let params = if alg == "RS256" {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PSS_2048_8192_SHA256
            };
            let (n, e) = (s("n"), s("e"));
            Raw::Public(
                RsaPublicKeyComponents {
                    n: &n[..],
                    e: &e[..],
                }
                .to_parsed_public_key(params)
                .unwrap(),
            )
        }
        "ES256" => {
            let mut point = vec![4];
            point.extend(s("x"));
            point.extend(s("y"));
            Raw::Public(ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).unwrap())
        }
        "EdDSA" => Raw::Public(ParsedPublicKey::new(&signature::ED25519, s("x")).unwrap()),
        _ => Raw::Hmac(Box::new(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            &s("k"),
        ))),
    }
}

impl Raw {
    /// Verifies `signature` over `input`; panics when it does not verify.
    pub fn verify(&self, input: &[u8], signature: &[u8]) {
        match self {
            Raw::Public(key) => key.verify_sig(input, signature).unwrap(),
            Raw::Hmac(key) => aws_lc_rs::hmac::verify(key, input, signature).unwrap(),
        }
    }
}

pub fn jsonwebtoken_key(alg: &str) -> (jsonwebtoken::DecodingKey, jsonwebtoken::Validation) {
    let iss = iss_for(alg);
    use jsonwebtoken::{Algorithm as A, DecodingKey, Validation};
    let jwk = jwk(kid_for(alg));
    let s = |m: &str| jwk[m].as_str().unwrap().to_owned();
    let (key, algorithm) = match alg {
        "RS256" => (
            DecodingKey::from_rsa_components(&s("n"), &s("e")).unwrap(),
            A::RS256,
        ),
        "PS256" => (
            DecodingKey::from_rsa_components(&s("n"), &s("e")).unwrap(),
            A::PS256,
        ),
        "ES256" => (
            DecodingKey::from_ec_components(&s("x"), &s("y")).unwrap(),
            A::ES256,
        ),
        "EdDSA" => (DecodingKey::from_ed_components(&s("x")).unwrap(), A::EdDSA),
        _ => (DecodingKey::from_secret(&b64d(&s("k"))).unwrap(), A::HS256),
    };
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&["api"]);
    validation.set_issuer(&[iss]);
    validation.leeway = 60;
    (key, validation)
}
