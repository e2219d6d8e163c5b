//! Properties over many generated inputs: no single-byte change to a valid
//! token is ever VALID, and the verifier never panics, whatever it is fed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use base64::Engine as _;
use jwtd::policy::Narrowing;
use jwtd::verify::verify;
use std::sync::OnceLock;

use jwtd::policy::Trust;
use proptest::prelude::*;
use support::*;

/// Characters a tamperer would try: the base64url alphabet, the separator,
/// padding, the standard-alphabet extras, whitespace.
const REPLACEMENTS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \t";

fn valid_tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        ["HS256", "RS256", "ES256", "EdDSA", "PS256"]
            .into_iter()
            .map(|alg| independent_token(alg, &claims(iss_for(alg))))
            .collect()
    })
}

fn shared_trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(trust)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_single_byte_change_is_valid(
        which in 0usize..5,
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(REPLACEMENTS),
    ) {
        let token = &valid_tokens()[which];
        let trust = shared_trust();
        prop_assert!(verify(token, trust, &Narrowing::default(), now()).is_ok());
        let mut bytes = token.clone().into_bytes();
        let i = position.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let tampered = String::from_utf8(bytes).expect("ASCII stays UTF-8");
        prop_assert!(verify(&tampered, trust, &Narrowing::default(), now()).is_err(),
            "tampered token verified: position {i}");
    }

    #[test]
    fn never_panics_on_arbitrary_strings(input in ".{0,300}") {
        let _ = verify(&input, shared_trust(), &Narrowing::default(), now());
    }

    #[test]
    fn never_panics_on_arbitrary_json_parts(
        header in prop::collection::vec(any::<u8>(), 0..120),
        payload in prop::collection::vec(any::<u8>(), 0..200),
        signature in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let token = format!("{}.{}.{}", b64(&header), b64(&payload), b64(&signature));
        prop_assert!(verify(&token, shared_trust(), &Narrowing::default(), now()).is_err());
    }

    #[test]
    fn never_panics_on_structured_headers(
        alg in prop::sample::select(vec!["RS256", "ES256", "EdDSA", "HS256", "none", "", "PS512", "ES512"]),
        kid in prop::option::of("[a-z0-9]{0,8}"),
        exp in any::<i64>(),
        iss in prop::sample::select(vec![ISS, HMAC_ISS, "other"]),
        signature in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let mut header = serde_json::json!({ "alg": alg });
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let payload = serde_json::json!({ "iss": iss, "exp": exp, "aud": ["api"] });
        let token = format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes()),
            b64(&signature)
        );
        prop_assert!(verify(&token, shared_trust(), &Narrowing::default(), now()).is_err());
    }
}
