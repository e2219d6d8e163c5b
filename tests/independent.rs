//! Tokens minted by independent implementations (the jsonwebtoken crate; for
//! ES512, RustCrypto's p521) verify in jwtd for every algorithm, and jwtd's own
//! dev signer produces tokens that jsonwebtoken accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use jwtd::jose::Algorithm;
use jwtd::mint::Signer;
use jwtd::policy::Narrowing;
use jwtd::verify::{Rejection, verify};
use support::*;

#[test]
fn every_algorithm_from_an_independent_signer_verifies() {
    let trust = trust();
    for alg in Algorithm::ALL {
        let iss = iss_for(alg.name());
        let claims = claims(iss);
        let token = independent_token(alg.name(), &claims);
        let verified = verify(&token, &trust, &Narrowing::default(), now())
            .unwrap_or_else(|r| panic!("{alg}: {r}"));
        assert_eq!(verified.algorithm(), alg);
        assert_eq!(verified.kid(), Some(key_for(alg.name())));
        assert_eq!(verified.claims().sub(), Some("alice"));
        let payload: serde_json::Value =
            serde_json::from_slice(verified.payload()).expect("payload is JSON");
        assert_eq!(payload, claims, "{alg}: payload as sent");
    }
}

#[test]
fn independent_tokens_with_one_flipped_signature_bit_fail() {
    let trust = trust();
    for alg in Algorithm::ALL {
        let iss = iss_for(alg.name());
        let token = independent_token(alg.name(), &claims(iss));
        let (input, sig) = token.rsplit_once('.').expect("three parts");
        let mut sig = jwtd_b64_decode(sig);
        let mid = sig.len() / 2;
        sig[mid] ^= 0x01;
        let forged = format!("{input}.{}", jwtd_b64_encode(&sig));
        assert_eq!(
            verify(&forged, &trust, &Narrowing::default(), now()),
            Err(Rejection::BadSignature),
            "{alg}"
        );
    }
}

#[test]
fn the_wrong_key_of_the_right_type_fails() {
    // An RS256 token signed with rsa2048 but naming rsa3072 as its kid.
    let token = independent_token("RS256", &claims(ISS));
    let (header, rest) = token.split_once('.').expect("parts");
    let decoded = jwtd_b64_decode(header);
    let swapped = String::from_utf8(decoded)
        .expect("utf8")
        .replace("rsa2048", "rsa3072");
    let forged = format!("{}.{rest}", jwtd_b64_encode(swapped.as_bytes()));
    assert_eq!(
        verify(&forged, &trust(), &Narrowing::default(), now()),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn jwtd_dev_signer_is_accepted_by_jsonwebtoken() {
    use jsonwebtoken::{Algorithm as A, DecodingKey, Validation, decode};
    for (pem, alg, kid) in [
        ("rsa2048", A::RS256, "rsa2048"),
        ("rsa3072", A::PS256, "rsa3072"),
        ("p256", A::ES256, "p256"),
        ("p384", A::ES384, "p384"),
        ("ed25519", A::EdDSA, "ed25519"),
    ] {
        let pem_text = String::from_utf8(read(&format!("keys/{pem}.pem"))).expect("utf8");
        let ours = Algorithm::from_name(&format!("{alg:?}")).expect("same names");
        let signer = Signer::from_pkcs8_pem(&pem_text, Some(ours)).expect("loads");
        let claims = claims(ISS);
        let token = signer
            .sign(Some(kid), claims.as_object().expect("object"))
            .expect("signs");
        let jwk = jwk(kid);
        let s = |name: &str| jwk[name].as_str().expect("member").to_owned();
        let key = match jwk["kty"].as_str() {
            Some("RSA") => DecodingKey::from_rsa_components(&s("n"), &s("e")),
            Some("EC") => DecodingKey::from_ec_components(&s("x"), &s("y")),
            _ => DecodingKey::from_ed_components(&s("x")),
        }
        .expect("decoding key");
        let mut validation = Validation::new(alg);
        validation.set_audience(&["api"]);
        validation.validate_exp = false;
        let decoded = decode::<serde_json::Value>(&token, &key, &validation)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(decoded.claims, claims);
        // ... and jwtd agrees with itself on the same token.
        assert!(verify(&token, &trust(), &Narrowing::default(), now()).is_ok());
    }
}

#[test]
fn public_jwk_of_the_dev_signer_matches_the_independent_jwks() {
    for kid in ["rsa2048", "p256", "p384", "p521", "ed25519"] {
        let pem = String::from_utf8(read(&format!("keys/{kid}.pem"))).expect("utf8");
        let ours = Signer::from_pkcs8_pem(&pem, None)
            .expect("loads")
            .public_jwk()
            .expect("public");
        let theirs = jwk(kid);
        for member in ["kty", "crv", "n", "e", "x", "y"] {
            assert_eq!(ours.get(member), theirs.get(member), "{kid}.{member}");
        }
    }
}

fn jwtd_b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

fn jwtd_b64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
