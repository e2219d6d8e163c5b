//! JWK Sets (RFC 7517) parsed once into aws-lc-rs verification keys, and the
//! immutable [`KeySet`] snapshot the verifier reads. Reading a local file is
//! the only I/O here; the verify path never parses a key.
//!
//! A key is refused at load, with its kid and the reason, when it is unfit for
//! verifying signatures: `use` other than `sig`, `key_ops` without `verify`,
//! private key material in an asymmetric key (a published private key is a
//! compromised key), an unknown or mismatched `alg`, RSA under 2048 or over
//! 8192 bits, an RSA exponent under 65537 or even (NIST SP 800-56B; small
//! exponents are what make sloppy PKCS#1 v1.5 verifiers forgeable), a modulus
//! with the ROCA fingerprint (CVE-2017-15361), EC points off their curve or
//! with coordinates of the wrong length, HMAC secrets shorter than their hash
//! (RFC 7518 §3.2), and every key sharing a kid with another (ambiguous).
//! The rest of the set still loads.
//!
//! A whole set is refused when it is not JSON `{"keys": [...]}`, when it mixes
//! `oct` secrets with public keys (one issuer is either symmetric or not), or
//! when no key survives: the caller keeps what it had.
//!
//! Every key is parsed for each algorithm it may verify (an RSA key without
//! `alg` gets six aws-lc-rs keys, one per RS/PS variant), so verification is a
//! table lookup and one aws-lc-rs call.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::verifier::jose::{Algorithm, B64};
use crate::verifier::json;

pub mod fetch;
pub mod registry;
pub(crate) mod stamp;

/// Upper bound on the number of keys in one set, so a hostile or broken JWKS
/// cannot make jwtd parse (and hold) an unbounded number of keys.
pub const MAX_KEYS_PER_SET: usize = 256;

/// Where a key set came from, which decides whether secrets may be in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A file on this machine: `oct` (HMAC) keys are allowed.
    LocalFile,
    /// Fetched over the network: `oct` keys are ignored with a warning.
    Remote,
}

/// Why one key of a set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The JWK is not a JSON object.
    #[error("not a JSON object")]
    NotObject,
    /// `kty` is missing or not one of RSA, EC, OKP, oct.
    #[error("unsupported kty {0:?}")]
    Kty(String),
    /// A required member is missing or not a string.
    #[error("member {0} is missing or not a string")]
    Missing(&'static str),
    /// A member is not canonical base64url.
    #[error("member {0} is not canonical base64url")]
    Base64(&'static str),
    /// A member has the wrong JSON type.
    #[error("member {0} has the wrong type")]
    Type(&'static str),
    /// `use` is present and is not `sig`.
    #[error("use is {0:?}, not \"sig\"")]
    Use(String),
    /// `key_ops` is present and lacks `verify`.
    #[error("key_ops does not include \"verify\"")]
    KeyOps,
    /// The key carries private material (`d`, `p`, `q`, ...).
    #[error("the key carries private key material ({0})")]
    Private(&'static str),
    /// `alg` names no algorithm jwtd supports.
    #[error("unsupported alg {0:?}")]
    UnknownAlg(String),
    /// `alg` does not fit the key type or curve.
    #[error("alg {alg} does not fit this {kind} key")]
    AlgMismatch {
        /// The JWK's alg.
        alg: Algorithm,
        /// The key type and curve.
        kind: &'static str,
    },
    /// RSA modulus size outside 2048..=8192 bits.
    #[error("RSA modulus of {0} bits is outside 2048..=8192")]
    RsaSize(usize),
    /// RSA public exponent too small, even, or too large.
    #[error("RSA public exponent must be odd and between 65537 and 2^32")]
    RsaExponent,
    /// The modulus has the ROCA fingerprint (CVE-2017-15361).
    #[error("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")]
    Roca,
    /// `crv` is missing or not supported for this kty.
    #[error("unsupported curve {0:?}")]
    Curve(String),
    /// EC coordinates of the wrong length for the curve.
    #[error("coordinates are not {0} bytes each")]
    CoordinateLength(usize),
    /// aws-lc-rs refused the key material (point off the curve, bad modulus).
    #[error("key material rejected: {0}")]
    Rejected(String),
    /// An HMAC secret shorter than the hash output of its algorithms.
    #[error("HMAC secret of {len} bytes is shorter than the {need} bytes its algorithm needs")]
    HmacTooShort {
        /// The secret's length.
        len: usize,
        /// The shortest length any allowed HMAC algorithm accepts.
        need: usize,
    },
    /// An `oct` key in a set that came over the network.
    #[error("oct (symmetric) keys are accepted only from local files")]
    RemoteSecret,
    /// Another key in the set has the same kid.
    #[error("another key in the set has the same kid")]
    DuplicateKid,
}

/// Why a whole key set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// Not a JSON object with a `keys` array, or duplicate member names.
    #[error("not a JWK Set: expected a JSON object {{\"keys\": [...]}} without duplicate names")]
    NotJwks,
    /// More keys than [`MAX_KEYS_PER_SET`].
    #[error("{0} keys is more than the limit of {MAX_KEYS_PER_SET}")]
    TooManyKeys(usize),
    /// Symmetric and asymmetric keys in one set.
    #[error("the set mixes oct (symmetric) keys with public keys")]
    MixedSymmetric,
    /// Every key was refused (or the set is empty).
    #[error("no usable key in the set{}", list_refused(.0))]
    NoUsableKey(Vec<Refused>),
}

fn list_refused(refused: &[Refused]) -> String {
    refused.iter().map(|r| format!("; {r}")).collect()
}

/// A key refused while loading a set, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Position in the `keys` array.
    pub index: usize,
    /// The key's kid, when it had a string one.
    pub kid: Option<String>,
    /// Why it was refused.
    pub error: KeyError,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key {} (kid {kid:?}): {}", self.index, self.error),
            None => write!(f, "key {} (no kid): {}", self.index, self.error),
        }
    }
}

/// A verifier for one algorithm.
enum Verifier {
    Public(ParsedPublicKey),
    // Boxed: an aws-lc-rs HMAC key is over 1 KiB, the public keys are pointers.
    Hmac(Box<hmac::Key>),
}

/// One usable key: its kid and a verifier per algorithm it may verify.
pub struct Key {
    kid: Option<String>,
    verifiers: Vec<(Algorithm, Verifier)>,
    /// SHA-256 of the JWK's JSON, so a refresh can tell an unchanged key.
    fingerprint: [u8; 32],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<_> = self.verifiers.iter().map(|(alg, _)| alg.name()).collect();
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &algs)
            .finish()
    }
}

/// The signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

impl Key {
    /// The kid from the JWK, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// True when this key may verify `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    /// Verifies `signature` over `message` with `alg`. A key that does not fit
    /// `alg` never verifies.
    pub fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), BadSignature> {
        let Some((_, verifier)) = self.verifiers.iter().find(|(a, _)| *a == alg) else {
            return Err(BadSignature);
        };
        let ok = match verifier {
            Verifier::Public(key) => key.verify_sig(message, signature).is_ok(),
            Verifier::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
        };
        if ok { Ok(()) } else { Err(BadSignature) }
    }
}

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

/// An immutable set of usable keys, indexed by kid. A refresh builds a new set
/// and replaces the old one whole.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Arc<Key>>,
    /// foldhash, not SipHash: looked up on every cold token and memo hit,
    /// and its keys come from the issuer's JWK Set, not from tokens.
    by_kid: HashMap<String, usize, foldhash::fast::RandomState>,
    version: u64,
}

impl KeySet {
    /// Parses a JWK Set document. Returns the set and the keys it refused.
    pub fn from_jwks(bytes: &[u8], origin: Origin) -> Result<(KeySet, Vec<Refused>), KeySetError> {
        json::check_no_duplicates(bytes).map_err(|_| KeySetError::NotJwks)?;
        let doc: Value = serde_json::from_slice(bytes).map_err(|_| KeySetError::NotJwks)?;
        let Some(Value::Array(jwks)) = doc.as_object().and_then(|o| o.get("keys")) else {
            return Err(KeySetError::NotJwks);
        };
        if jwks.len() > MAX_KEYS_PER_SET {
            return Err(KeySetError::TooManyKeys(jwks.len()));
        }
        let is_oct = |jwk: &Value| jwk.get("kty").and_then(Value::as_str) == Some("oct");
        if jwks.iter().any(is_oct) && !jwks.iter().all(is_oct) {
            return Err(KeySetError::MixedSymmetric);
        }

        let mut refused = Vec::new();
        let mut parsed: Vec<(usize, Key)> = Vec::new();
        for (index, jwk) in jwks.iter().enumerate() {
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
            match parse_jwk(jwk, origin) {
                Ok(key) => parsed.push((index, key)),
                Err(error) => refused.push(Refused { index, kid, error }),
            }
        }

        // A kid that names two keys is ambiguous: refuse every key that has it.
        let mut kid_count: HashMap<&str, usize> = HashMap::new();
        for kid in jwks
            .iter()
            .filter_map(|k| k.get("kid").and_then(Value::as_str))
        {
            *kid_count.entry(kid).or_default() += 1;
        }
        let (dups, unique): (Vec<_>, Vec<_>) = parsed
            .into_iter()
            .partition(|(_, key)| key.kid().is_some_and(|kid| kid_count[kid] > 1));
        refused.extend(dups.into_iter().map(|(index, key)| Refused {
            index,
            kid: key.kid,
            error: KeyError::DuplicateKid,
        }));
        refused.sort_by_key(|r| r.index);

        if unique.is_empty() {
            return Err(KeySetError::NoUsableKey(refused));
        }
        let keys: Vec<Arc<Key>> = unique.into_iter().map(|(_, key)| Arc::new(key)).collect();
        let by_kid = keys
            .iter()
            .enumerate()
            .filter_map(|(i, key)| key.kid().map(|kid| (kid.to_owned(), i)))
            .collect();
        let set = KeySet {
            keys,
            by_kid,
            version: NEXT_VERSION.fetch_add(1, Ordering::Relaxed),
        };
        Ok((set, refused))
    }

    /// Reads and parses a JWK Set file (keys from a file may include secrets).
    pub fn load_file(path: &Path) -> Result<(KeySet, Vec<Refused>), KeySetError> {
        let bytes = std::fs::read(path).map_err(|e| KeySetError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_jwks(&bytes, Origin::LocalFile)
    }

    /// Keeps the identity of keys that did not change: each key of this set
    /// whose kid and JWK are the same as a key of `previous` is replaced by
    /// that key's `Arc`. Results memoized against an unchanged key then stay
    /// valid across a refresh; a changed or removed key invalidates them.
    pub fn adopt(&mut self, previous: &KeySet) {
        for key in &mut self.keys {
            let same = previous
                .keys
                .iter()
                .find(|old| old.kid == key.kid && old.fingerprint == key.fingerprint);
            if let Some(old) = same {
                *key = Arc::clone(old);
            }
        }
    }

    /// The key with this kid.
    pub fn by_kid(&self, kid: &str) -> Option<&Arc<Key>> {
        self.by_kid.get(kid).map(|&i| &self.keys[i])
    }

    /// Every key, in the order of the JWK Set.
    pub fn keys(&self) -> &[Arc<Key>] {
        &self.keys
    }

    /// A number unique to this loaded set (process-wide, increasing), so that
    /// caches can tell when the set they relied on was replaced.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set holds no key (never, for a set built by `from_jwks`).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Parses one JWK into a usable key.
fn parse_jwk(jwk: &Value, origin: Origin) -> Result<Key, KeyError> {
    let obj = jwk.as_object().ok_or(KeyError::NotObject)?;
    let kid = optional_str(obj, "kid")?.map(str::to_owned);
    if let Some(usage) = optional_str(obj, "use")?
        && usage != "sig"
    {
        return Err(KeyError::Use(usage.to_owned()));
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops.as_array().ok_or(KeyError::Type("key_ops"))?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err(KeyError::KeyOps);
        }
    }
    let pinned = match optional_str(obj, "alg")? {
        None => None,
        Some(name) => {
            Some(Algorithm::from_name(name).ok_or_else(|| KeyError::UnknownAlg(name.to_owned()))?)
        }
    };
    let kty = required_str(obj, "kty")?;
    let verifiers = match kty {
        "RSA" => rsa(obj, pinned)?,
        "EC" => ec(obj, pinned)?,
        "OKP" => okp(obj, pinned)?,
        "oct" if origin == Origin::Remote => return Err(KeyError::RemoteSecret),
        "oct" => oct(obj, pinned)?,
        other => return Err(KeyError::Kty(other.to_owned())),
    };
    let json = serde_json::to_vec(jwk).map_err(|_| KeyError::NotObject)?;
    let mut fingerprint = [0u8; 32];
    fingerprint
        .copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json).as_ref());
    Ok(Key {
        kid,
        verifiers,
        fingerprint,
    })
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, KeyError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyError::Type(name)),
    }
}

fn required_str<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, KeyError> {
    optional_str(obj, name)?.ok_or(KeyError::Missing(name))
}

fn bytes(obj: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, KeyError> {
    B64.decode(required_str(obj, name)?)
        .map_err(|_| KeyError::Base64(name))
}

fn refuse_private(obj: &Map<String, Value>) -> Result<(), KeyError> {
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        if obj.contains_key(member) {
            return Err(KeyError::Private(member));
        }
    }
    Ok(())
}

/// The algorithms a key may verify: `pinned` when the JWK names one (which
/// must be among `fitting`), else every fitting one.
fn allowed(
    fitting: &[Algorithm],
    pinned: Option<Algorithm>,
    kind: &'static str,
) -> Result<Vec<Algorithm>, KeyError> {
    match pinned {
        None => Ok(fitting.to_vec()),
        Some(alg) if fitting.contains(&alg) => Ok(vec![alg]),
        Some(alg) => Err(KeyError::AlgMismatch { alg, kind }),
    }
}

fn rejected(e: aws_lc_rs::error::KeyRejected) -> KeyError {
    KeyError::Rejected(e.to_string())
}

fn rsa(
    obj: &Map<String, Value>,
    pinned: Option<Algorithm>,
) -> Result<Vec<(Algorithm, Verifier)>, KeyError> {
    use Algorithm::*;
    refuse_private(obj)?;
    let algs = allowed(&[RS256, RS384, RS512, PS256, PS384, PS512], pinned, "RSA")?;
    let n = bytes(obj, "n")?;
    let e = bytes(obj, "e")?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = bit_length(n);
    if !(2048..=8192).contains(&bits) {
        return Err(KeyError::RsaSize(bits));
    }
    if e.len() > 4 || e.last().is_none_or(|b| b & 1 == 0) {
        return Err(KeyError::RsaExponent);
    }
    let exponent = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if exponent < 65537 {
        return Err(KeyError::RsaExponent);
    }
    if roca_fingerprint(n) {
        return Err(KeyError::Roca);
    }
    let components = RsaPublicKeyComponents { n, e };
    algs.into_iter()
        .map(|alg| {
            let params = match alg {
                RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            let key = components.to_parsed_public_key(params).map_err(rejected)?;
            Ok((alg, Verifier::Public(key)))
        })
        .collect()
}

fn ec(
    obj: &Map<String, Value>,
    pinned: Option<Algorithm>,
) -> Result<Vec<(Algorithm, Verifier)>, KeyError> {
    refuse_private(obj)?;
    let crv = required_str(obj, "crv")?;
    let (alg, len, verification): (_, _, &'static signature::EcdsaVerificationAlgorithm) = match crv
    {
        "P-256" => (Algorithm::ES256, 32, &signature::ECDSA_P256_SHA256_FIXED),
        "P-384" => (Algorithm::ES384, 48, &signature::ECDSA_P384_SHA384_FIXED),
        "P-521" => (Algorithm::ES512, 66, &signature::ECDSA_P521_SHA512_FIXED),
        other => return Err(KeyError::Curve(other.to_owned())),
    };
    allowed(&[alg], pinned, crv_kind(crv))?;
    let x = bytes(obj, "x")?;
    let y = bytes(obj, "y")?;
    if x.len() != len || y.len() != len {
        return Err(KeyError::CoordinateLength(len));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let key = ParsedPublicKey::new(verification, &point).map_err(rejected)?;
    Ok(vec![(alg, Verifier::Public(key))])
}

fn crv_kind(crv: &str) -> &'static str {
    match crv {
        "P-256" => "EC P-256",
        "P-384" => "EC P-384",
        _ => "EC P-521",
    }
}

fn okp(
    obj: &Map<String, Value>,
    pinned: Option<Algorithm>,
) -> Result<Vec<(Algorithm, Verifier)>, KeyError> {
    refuse_private(obj)?;
    let crv = required_str(obj, "crv")?;
    if crv != "Ed25519" {
        return Err(KeyError::Curve(crv.to_owned()));
    }
    allowed(&[Algorithm::EdDSA], pinned, "OKP Ed25519")?;
    let x = bytes(obj, "x")?;
    if x.len() != 32 {
        return Err(KeyError::CoordinateLength(32));
    }
    let key = ParsedPublicKey::new(&signature::ED25519, &x).map_err(rejected)?;
    Ok(vec![(Algorithm::EdDSA, Verifier::Public(key))])
}

fn oct(
    obj: &Map<String, Value>,
    pinned: Option<Algorithm>,
) -> Result<Vec<(Algorithm, Verifier)>, KeyError> {
    use Algorithm::*;
    let algs = allowed(&[HS256, HS384, HS512], pinned, "oct")?;
    let secret = bytes(obj, "k")?;
    let need = |alg| match alg {
        HS256 => 32,
        HS384 => 48,
        _ => 64,
    };
    let usable: Vec<_> = algs
        .iter()
        .copied()
        .filter(|&a| secret.len() >= need(a))
        .collect();
    if usable.is_empty() {
        let need = algs.iter().map(|&a| need(a)).min().unwrap_or(32);
        return Err(KeyError::HmacTooShort {
            len: secret.len(),
            need,
        });
    }
    Ok(usable
        .into_iter()
        .map(|alg| {
            let algorithm = match alg {
                HS256 => hmac::HMAC_SHA256,
                HS384 => hmac::HMAC_SHA384,
                _ => hmac::HMAC_SHA512,
            };
            (
                alg,
                Verifier::Hmac(Box::new(hmac::Key::new(algorithm, &secret))),
            )
        })
        .collect())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn bit_length(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
    }
}

/// The ROCA test of Nemec et al. (CCS 2017): a modulus made by the flawed
/// Infineon generator is, modulo each small prime `p` below, a power of 65537.
/// These are the primes their detector uses, where the subgroup generated by
/// 65537 is small enough that honest keys pass with overwhelming probability.
fn roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 17] = [
        11, 13, 17, 19, 37, 53, 61, 71, 73, 79, 97, 103, 107, 109, 127, 151, 157,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n
            .iter()
            .fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % p);
        let generator = 65537 % p;
        let mut power = 1;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Public parts of keys from RFC 7515 A.2 (RSA), A.3 (P-256) and RFC 8037 A.2.
    const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn set(jwks: &str) -> Result<(KeySet, Vec<Refused>), KeySetError> {
        KeySet::from_jwks(jwks.as_bytes(), Origin::LocalFile)
    }

    fn one(jwk: &str) -> Result<Key, KeyError> {
        let value: Value = serde_json::from_str(jwk).expect("test JWK is JSON");
        parse_jwk(&value, Origin::LocalFile)
    }

    fn rsa_jwk(extra: &str) -> String {
        format!(r#"{{"kty":"RSA","n":"{RSA_N}","e":"AQAB"{extra}}}"#)
    }

    fn algs(key: &Key) -> Vec<Algorithm> {
        key.verifiers.iter().map(|(a, _)| *a).collect()
    }

    #[test]
    fn key_types_map_to_their_algorithms() {
        use Algorithm::*;
        let rsa = one(&rsa_jwk("")).expect("RSA loads");
        assert_eq!(algs(&rsa), [RS256, RS384, RS512, PS256, PS384, PS512]);
        let ec = one(&format!(
            r#"{{"kty":"EC","crv":"P-256","x":"{EC_X}","y":"{EC_Y}"}}"#
        ))
        .expect("EC loads");
        assert_eq!(algs(&ec), [ES256]);
        let ed = one(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}"}}"#))
            .expect("Ed25519 loads");
        assert_eq!(algs(&ed), [EdDSA]);
        let secret = B64.encode([7u8; 48]);
        let oct = one(&format!(r#"{{"kty":"oct","k":"{secret}"}}"#)).expect("oct loads");
        assert_eq!(
            algs(&oct),
            [HS256, HS384],
            "48 bytes is too short for HS512"
        );
    }

    #[test]
    fn jwk_alg_pins_the_key() {
        let rsa = one(&rsa_jwk(r#","alg":"PS384""#)).expect("loads");
        assert_eq!(algs(&rsa), [Algorithm::PS384]);
        assert!(!rsa.fits(Algorithm::RS256));
        assert_eq!(
            one(&rsa_jwk(r#","alg":"ES256""#)).unwrap_err(),
            KeyError::AlgMismatch {
                alg: Algorithm::ES256,
                kind: "RSA"
            }
        );
        assert_eq!(
            one(&rsa_jwk(r#","alg":"RSA1_5""#)).unwrap_err(),
            KeyError::UnknownAlg("RSA1_5".into())
        );
        assert_eq!(
            one(&format!(
                r#"{{"kty":"EC","crv":"P-256","alg":"ES384","x":"{EC_X}","y":"{EC_Y}"}}"#
            ))
            .unwrap_err(),
            KeyError::AlgMismatch {
                alg: Algorithm::ES384,
                kind: "EC P-256"
            }
        );
    }

    #[test]
    fn unfit_keys_are_refused_with_a_reason() {
        let short = B64.encode([1u8; 31]);
        let small_n = B64.encode(&B64.decode(RSA_N).expect("base64")[..128]);
        let cases: Vec<(String, KeyError)> = vec![
            (rsa_jwk(r#","use":"enc""#), KeyError::Use("enc".into())),
            (rsa_jwk(r#","key_ops":["encrypt"]"#), KeyError::KeyOps),
            (rsa_jwk(r#","d":"AQAB""#), KeyError::Private("d")),
            (
                format!(r#"{{"kty":"RSA","n":"{RSA_N}","e":"Aw"}}"#),
                KeyError::RsaExponent,
            ),
            (
                format!(r#"{{"kty":"RSA","n":"{RSA_N}","e":"AQAA"}}"#),
                KeyError::RsaExponent,
            ),
            (
                format!(r#"{{"kty":"RSA","n":"{small_n}","e":"AQAB"}}"#),
                KeyError::RsaSize(1024),
            ),
            (
                format!(r#"{{"kty":"EC","crv":"P-384","x":"{EC_X}","y":"{EC_Y}"}}"#),
                KeyError::CoordinateLength(48),
            ),
            (
                format!(r#"{{"kty":"EC","crv":"secp256k1","x":"{EC_X}","y":"{EC_Y}"}}"#),
                KeyError::Curve("secp256k1".into()),
            ),
            (
                format!(r#"{{"kty":"OKP","crv":"Ed448","x":"{ED_X}"}}"#),
                KeyError::Curve("Ed448".into()),
            ),
            (
                format!(r#"{{"kty":"oct","k":"{short}"}}"#),
                KeyError::HmacTooShort { len: 31, need: 32 },
            ),
            (
                r#"{"kty":"oct","k":""}"#.into(),
                KeyError::HmacTooShort { len: 0, need: 32 },
            ),
            (r#"{"kty":"RSA","e":"AQAB"}"#.into(), KeyError::Missing("n")),
            (r#"{"kty":"XYZ"}"#.into(), KeyError::Kty("XYZ".into())),
            (r#"{"n":"AQAB"}"#.into(), KeyError::Missing("kty")),
            (rsa_jwk(r#","kid":7"#), KeyError::Type("kid")),
        ];
        for (jwk, want) in cases {
            assert_eq!(one(&jwk).unwrap_err(), want, "{jwk}");
        }
    }

    #[test]
    fn points_off_the_curve_are_refused() {
        // Flip the lowest bit of y: the point leaves the curve.
        let mut y = B64.decode(EC_Y).expect("base64");
        y[31] ^= 1;
        let bad_y = B64.encode(&y);
        let err = one(&format!(
            r#"{{"kty":"EC","crv":"P-256","x":"{EC_X}","y":"{bad_y}"}}"#
        ))
        .unwrap_err();
        assert!(matches!(err, KeyError::Rejected(_)), "{err:?}");
    }

    #[test]
    fn duplicate_kids_refuse_every_holder_and_keep_the_rest() {
        let secret = B64.encode([9u8; 32]);
        let jwks = format!(
            r#"{{"keys":[{{"kty":"oct","kid":"a","k":"{secret}"}},{{"kty":"oct","kid":"b","k":"{secret}"}},{{"kty":"oct","kid":"a","k":"{secret}"}}]}}"#
        );
        let (set, refused) = set(&jwks).expect("b survives");
        assert_eq!(set.len(), 1);
        assert!(set.by_kid("b").is_some() && set.by_kid("a").is_none());
        assert_eq!(
            refused
                .iter()
                .map(|r| (r.index, r.error.clone()))
                .collect::<Vec<_>>(),
            [(0, KeyError::DuplicateKid), (2, KeyError::DuplicateKid)]
        );
    }

    #[test]
    fn whole_set_refusals() {
        let secret = B64.encode([9u8; 32]);
        assert_eq!(set("[]").unwrap_err(), KeySetError::NotJwks);
        assert_eq!(set(r#"{"keys":{}}"#).unwrap_err(), KeySetError::NotJwks);
        assert_eq!(
            set(r#"{"keys":[],"keys":[]}"#).unwrap_err(),
            KeySetError::NotJwks
        );
        assert_eq!(
            set(r#"{"keys":[]}"#).unwrap_err(),
            KeySetError::NoUsableKey(vec![])
        );
        assert_eq!(
            set(&format!(
                r#"{{"keys":[{{"kty":"oct","k":"{secret}"}},{}]}}"#,
                rsa_jwk("")
            ))
            .unwrap_err(),
            KeySetError::MixedSymmetric
        );
        let many = vec![rsa_jwk(""); MAX_KEYS_PER_SET + 1].join(",");
        assert_eq!(
            set(&format!(r#"{{"keys":[{many}]}}"#)).unwrap_err(),
            KeySetError::TooManyKeys(MAX_KEYS_PER_SET + 1)
        );
    }

    #[test]
    fn remote_sets_ignore_secrets() {
        let secret = B64.encode([9u8; 32]);
        let jwks = format!(r#"{{"keys":[{{"kty":"oct","kid":"s","k":"{secret}"}}]}}"#);
        let err = KeySet::from_jwks(jwks.as_bytes(), Origin::Remote).unwrap_err();
        assert_eq!(
            err,
            KeySetError::NoUsableKey(vec![Refused {
                index: 0,
                kid: Some("s".into()),
                error: KeyError::RemoteSecret
            }])
        );
        assert!(err.to_string().contains("kid \"s\""), "{err}");
    }

    #[test]
    fn adopt_keeps_unchanged_keys_and_replaces_changed_ones() {
        let secret = B64.encode([9u8; 32]);
        let other = B64.encode([8u8; 32]);
        let doc = |b: &str| {
            format!(
                r#"{{"keys":[{{"kty":"oct","kid":"a","k":"{secret}"}},{{"kty":"oct","kid":"b","k":"{b}"}}]}}"#
            )
        };
        let (old, _) = set(&doc(&secret)).expect("loads");
        let (mut new, _) = set(&doc(&other)).expect("loads");
        new.adopt(&old);
        let same = |kid| Arc::ptr_eq(old.by_kid(kid).expect("old"), new.by_kid(kid).expect("new"));
        assert!(same("a"), "unchanged key keeps its identity");
        assert!(!same("b"), "changed key is a new key");
    }

    #[test]
    fn versions_increase_with_every_load() {
        let jwks = format!(r#"{{"keys":[{}]}}"#, rsa_jwk(r#","kid":"r""#));
        let (a, _) = set(&jwks).expect("loads");
        let (b, _) = set(&jwks).expect("loads");
        assert!(b.version() > a.version());
    }

    #[test]
    fn roca_fingerprint_spots_only_flawed_moduli() {
        let honest = B64.decode(RSA_N).expect("base64");
        assert!(!roca_fingerprint(&honest));
        // 65537^k mod M has the fingerprint by construction: 65537^3 will do for
        // the test of the residues (the real attack needs the full structure).
        let flawed = 65537u128.pow(3).to_be_bytes();
        assert!(roca_fingerprint(&flawed));
    }

    #[test]
    fn hmac_verifies_and_refuses_other_algorithms() {
        let secret = B64.encode([3u8; 32]);
        let key = one(&format!(r#"{{"kty":"oct","k":"{secret}"}}"#)).expect("loads");
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[3u8; 32]), b"msg");
        assert_eq!(key.verify(Algorithm::HS256, b"msg", tag.as_ref()), Ok(()));
        assert_eq!(
            key.verify(Algorithm::HS256, b"msh", tag.as_ref()),
            Err(BadSignature)
        );
        assert_eq!(
            key.verify(Algorithm::RS256, b"msg", tag.as_ref()),
            Err(BadSignature)
        );
    }
}
