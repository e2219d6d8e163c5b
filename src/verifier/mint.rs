//! Development tokens: signs a JWT with a local PKCS#8 private key (RSA, EC
//! P-256/384/521, Ed25519) through aws-lc-rs. For `jwtd mint`, tests and load
//! corpora; the verify path never uses it.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::verifier::jose::{Algorithm, B64};

/// Why a signer could not be built or could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// Not a PEM `PRIVATE KEY` (PKCS#8) block.
    #[error("expected a PEM \"PRIVATE KEY\" (PKCS#8) block")]
    Pem,
    /// The key is not RSA, EC P-256/384/521 or Ed25519 PKCS#8.
    #[error("unsupported or invalid PKCS#8 private key")]
    Key,
    /// The requested algorithm does not fit the key.
    #[error("{0} does not fit this key")]
    Algorithm(Algorithm),
    /// The HMAC secret is shorter than the algorithm's hash.
    #[error("HMAC secret is shorter than {0} bytes")]
    ShortSecret(usize),
    /// The crypto library failed to sign.
    #[error("signing failed")]
    Sign,
}

enum Kind {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Hmac(Box<aws_lc_rs::hmac::Key>),
}

/// A private key ready to sign tokens with one algorithm.
pub struct Signer {
    alg: Algorithm,
    kind: Kind,
}

impl Signer {
    /// A signer from a PKCS#8 PEM private key. `alg` defaults to RS256 for
    /// RSA, the curve's ES algorithm for EC, and EdDSA for Ed25519.
    pub fn from_pkcs8_pem(pem: &str, alg: Option<Algorithm>) -> Result<Signer, MintError> {
        let der = pem_private_key(pem)?;
        Self::from_pkcs8_der(&der, alg)
    }

    /// A signer from a DER PKCS#8 private key (see [`Signer::from_pkcs8_pem`]).
    pub fn from_pkcs8_der(der: &[u8], alg: Option<Algorithm>) -> Result<Signer, MintError> {
        use Algorithm::*;
        let (kind, default) = if let Ok(key) = RsaKeyPair::from_pkcs8(der) {
            (Kind::Rsa(key), RS256)
        } else if let Ok(key) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            (Kind::Ed25519(key), EdDSA)
        } else {
            let curves = [
                (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, ES256),
                (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, ES384),
                (&signature::ECDSA_P521_SHA512_FIXED_SIGNING, ES512),
            ];
            curves
                .into_iter()
                .find_map(|(curve, alg)| {
                    EcdsaKeyPair::from_pkcs8(curve, der)
                        .ok()
                        .map(|k| (Kind::Ecdsa(k), alg))
                })
                .ok_or(MintError::Key)?
        };
        let alg = alg.unwrap_or(default);
        let fits = match &kind {
            Kind::Rsa(_) => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            _ => alg == default,
        };
        if !fits {
            return Err(MintError::Algorithm(alg));
        }
        Ok(Signer { alg, kind })
    }

    /// An HMAC signer (HS256/384/512) over `secret`.
    pub fn hmac(secret: &[u8], alg: Algorithm) -> Result<Signer, MintError> {
        use aws_lc_rs::hmac;
        let (algorithm, need) = match alg {
            Algorithm::HS256 => (hmac::HMAC_SHA256, 32),
            Algorithm::HS384 => (hmac::HMAC_SHA384, 48),
            Algorithm::HS512 => (hmac::HMAC_SHA512, 64),
            other => return Err(MintError::Algorithm(other)),
        };
        if secret.len() < need {
            return Err(MintError::ShortSecret(need));
        }
        Ok(Signer {
            alg,
            kind: Kind::Hmac(Box::new(hmac::Key::new(algorithm, secret))),
        })
    }

    /// The algorithm this signer uses.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public key as a JWK (no kid), for a matching JWK Set. `None` for
    /// HMAC signers, whose key is secret.
    pub fn public_jwk(&self) -> Option<Value> {
        let b64 = |bytes: &[u8]| Value::String(B64.encode(bytes));
        let mut jwk = Map::new();
        match &self.kind {
            Kind::Rsa(key) => {
                let public = key.public_key();
                let components: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = public.into();
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), b64(&components.n));
                jwk.insert("e".into(), b64(&components.e));
            }
            Kind::Ecdsa(key) => {
                let point = key.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let crv = match len {
                    32 => "P-256",
                    48 => "P-384",
                    _ => "P-521",
                };
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), crv.into());
                jwk.insert("x".into(), b64(&point[1..=len]));
                jwk.insert("y".into(), b64(&point[1 + len..]));
            }
            Kind::Ed25519(key) => {
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                jwk.insert("x".into(), b64(key.public_key().as_ref()));
            }
            Kind::Hmac(_) => return None,
        }
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), self.alg.name().into());
        Some(Value::Object(jwk))
    }

    /// Signs `claims` (a JSON object) with a header of `alg`, `typ: JWT` and
    /// `kid` when given.
    pub fn sign(
        &self,
        kid: Option<&str>,
        claims: &Map<String, Value>,
    ) -> Result<String, MintError> {
        let mut header = Map::new();
        header.insert("alg".into(), self.alg.name().into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = kid {
            header.insert("kid".into(), kid.into());
        }
        let header = Value::Object(header).to_string();
        let payload = Value::Object(claims.clone()).to_string();
        self.sign_raw(header.as_bytes(), payload.as_bytes())
    }

    /// Signs arbitrary header and payload bytes (for tests of odd tokens).
    pub fn sign_raw(&self, header: &[u8], payload: &[u8]) -> Result<String, MintError> {
        use Algorithm::*;
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let rng = SystemRandom::new();
        let signature = match &self.kind {
            Kind::Rsa(key) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    RS256 => &signature::RSA_PKCS1_SHA256,
                    RS384 => &signature::RSA_PKCS1_SHA384,
                    RS512 => &signature::RSA_PKCS1_SHA512,
                    PS256 => &signature::RSA_PSS_SHA256,
                    PS384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(padding, &rng, input.as_bytes(), &mut sig)
                    .map_err(|_| MintError::Sign)?;
                sig
            }
            Kind::Ecdsa(key) => key
                .sign(&rng, input.as_bytes())
                .map_err(|_| MintError::Sign)?
                .as_ref()
                .to_vec(),
            Kind::Ed25519(key) => key.sign(input.as_bytes()).as_ref().to_vec(),
            Kind::Hmac(key) => aws_lc_rs::hmac::sign(key, input.as_bytes())
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", B64.encode(signature)))
    }
}

/// The DER bytes of the first `PRIVATE KEY` block of a PEM document.
fn pem_private_key(pem: &str) -> Result<Vec<u8>, MintError> {
    let start = pem
        .find("-----BEGIN PRIVATE KEY-----")
        .ok_or(MintError::Pem)?;
    let body = &pem[start + "-----BEGIN PRIVATE KEY-----".len()..];
    let end = body
        .find("-----END PRIVATE KEY-----")
        .ok_or(MintError::Pem)?;
    let b64: String = body[..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| MintError::Pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_requires_a_private_key_block() {
        assert_eq!(pem_private_key("nothing").unwrap_err(), MintError::Pem);
        assert_eq!(
            pem_private_key("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----")
                .unwrap_err(),
            MintError::Pem
        );
        assert_eq!(
            pem_private_key("-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----"),
            Ok(vec![0, 1, 2])
        );
    }

    #[test]
    fn hmac_signer_checks_the_secret_length() {
        assert_eq!(
            Signer::hmac(&[0; 31], Algorithm::HS256).err(),
            Some(MintError::ShortSecret(32))
        );
        assert_eq!(
            Signer::hmac(&[0; 64], Algorithm::RS256).err(),
            Some(MintError::Algorithm(Algorithm::RS256))
        );
        let signer = Signer::hmac(&[0; 64], Algorithm::HS512).expect("valid");
        assert!(signer.public_jwk().is_none());
        let token = signer.sign(Some("k"), &Map::new()).expect("signs");
        assert_eq!(token.split('.').count(), 3);
    }
}
