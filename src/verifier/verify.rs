//! The verifier: one token against a [`Trust`] snapshot at a given time, with
//! no clock, no I/O and no async. Everything else in jwtd adapts to this.
//!
//! The order is fixed and each step only runs when the previous passed:
//! size, structure (three canonical base64url parts, JSON object header and
//! payload), algorithm (a supported name), issuer (the still-unverified `iss`
//! only selects which trusted issuer's keys and policy apply), the issuer's
//! algorithm allowlist, key, signature, and only then the claims (`exp`,
//! `nbf`, audiences, required claims). A token whose signature fails is
//! `BadSignature` whatever its claims say.
//!
//! A token without `kid` is tried against at most [`MAX_KIDLESS_CANDIDATES`]
//! keys that fit its algorithm, in JWK Set order, so a kid-less flood costs a
//! bounded number of signature checks per token.
//!
//! Decisions: an [`Authenticated`] result holds the claims, which own the
//! payload and point into it, and not the header's `kid` (the key chosen by
//! kid has exactly that kid, so [`Authenticated::kid`] reads the key's). A
//! cold verification allocates twice, the payload and the shared result (10
//! times before for the token of `tests/allocations.rs`, issue 14); per
//! HS256 token, the work beside the MAC fell from 20.0k to 16.0k
//! instructions (BENCHMARKS.md).
//!
//! Decision record: `docs/adr/0005-verification-order.md`.

use std::sync::Arc;

use crate::keys::{Key, KeySet};
use crate::verifier::claims::Claims;
use crate::verifier::jose::{self, AlgName, Algorithm, Malformed};
use crate::verifier::policy::{AudienceRule, IssuerPolicy, KeyState, Narrowing, Trust};

/// Kid-less tokens are checked against at most this many fitting keys.
pub const MAX_KIDLESS_CANDIDATES: usize = 4;

/// Seconds since the Unix epoch: the verifier's only notion of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime(pub i64);

/// Why a token was not accepted. Every variant maps to one wire status in
/// `grpc::status_of`; the `Display` text is the short reason sent to callers
/// and never contains the token, a signature or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Longer than the configured limit; not decoded.
    #[error("token is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// The token's length.
        len: usize,
        /// The configured `max_token_bytes`.
        max: usize,
    },
    /// Not a well-formed compact JWS carrying a JWT claims set.
    #[error("{0}")]
    Malformed(#[from] Malformed),
    /// `alg` is `none`.
    #[error("alg none is never accepted")]
    AlgNone,
    /// `alg` is not a supported algorithm name (case-sensitive).
    #[error("algorithm is not supported")]
    UnknownAlgorithm,
    /// `alg` is supported but not in the issuer's allowlist.
    #[error("{0} is not allowed for this issuer")]
    AlgorithmNotAllowed(Algorithm),
    /// No `iss` claim, so no issuer's keys can apply.
    #[error("missing claim iss")]
    MissingIssuer,
    /// `iss` is not a configured issuer.
    #[error("issuer is not trusted")]
    IssuerNotTrusted,
    /// `iss` is trusted but not the issuer this call asked for.
    #[error("issuer is not the one requested")]
    IssuerNotRequested,
    /// The issuer has no key set loaded yet.
    #[error("keys for issuer {0} are not available yet")]
    KeysUnavailable(String),
    /// The `kid` is not in the issuer's key set.
    #[error("kid not found in the key set of {issuer}")]
    UnknownKid {
        /// The (configured) issuer whose set lacks the kid: the adapter
        /// refreshes that issuer's keys and tries once more.
        issuer: String,
    },
    /// The key named by `kid` cannot verify this algorithm.
    #[error("key {kid} does not verify {alg}")]
    KeyAlgorithmMismatch {
        /// The kid (a configured key's, so safe to show).
        kid: String,
        /// The token's algorithm.
        alg: Algorithm,
    },
    /// No `kid`, and no key of the issuer fits the algorithm.
    #[error("no key of the issuer verifies {0}")]
    NoKeyForAlgorithm(Algorithm),
    /// The signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` is absent and the issuer requires it.
    #[error("missing claim exp")]
    MissingExp,
    /// `exp` is in the past beyond the leeway.
    #[error("token expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired {
        /// The token's exp.
        exp: i64,
        /// The time of the check.
        now: i64,
        /// The issuer's leeway.
        leeway: i64,
    },
    /// `nbf` is in the future beyond the leeway.
    #[error("token not valid before {nbf} (now {now}, leeway {leeway}s)")]
    NotYetValid {
        /// The token's nbf.
        nbf: i64,
        /// The time of the check.
        now: i64,
        /// The issuer's leeway.
        leeway: i64,
    },
    /// Audiences are required and the token has no `aud`.
    #[error("missing claim aud")]
    MissingAudience,
    /// None of the token's audiences is acceptable.
    #[error("no acceptable audience ({0})")]
    AudienceMismatch(AudienceSide),
    /// A configured required claim is absent.
    #[error("missing required claim {0}")]
    MissingClaim(String),
    /// The token passed every check but is on a revocation list. The
    /// reason says which kind of entry matched, never the token or its
    /// claims' values.
    #[error("token revoked: {by}")]
    Revoked {
        /// The kind of entry that matched.
        by: RevokedBy,
    },
    /// A revocation source covering the token's issuer has not synced
    /// within its `max_stale_seconds` (or not yet at all), and
    /// `on_stale = "unavailable"`: whether the token is revoked cannot be
    /// told, so it is not VALID. Maps to KEYS_UNAVAILABLE.
    #[error("revocation source {list} is not current: cannot tell whether the token is revoked")]
    RevocationStale {
        /// The source's kind (`file`, `url` or `redis`), never its location.
        list: &'static str,
    },
    /// The header's `typ` is not one the issuer accepts (its value, when
    /// short and printable, else `None`; absent is `Some("")`).
    #[error("token type {} is not accepted", shown_type(.0.as_deref()))]
    TypeNotAllowed(Option<String>),
    /// A required scope (the issuer's or the call's) is not granted.
    #[error("missing scope {0}")]
    InsufficientScope(String),
    /// A required role is not held.
    #[error("missing role {0}")]
    MissingRole(String),
    /// The token's `azp` (or `client_id`) is not an authorized party.
    #[error("the token's client (azp or client_id) is not authorized for this issuer")]
    ClientNotAllowed,
    /// Issued (`iat`) longer ago than the issuer's maximum age.
    #[error("token issued at {iat}, over the maximum age of {max_age}s (now {now})")]
    TooOld {
        /// The token's iat.
        iat: i64,
        /// The issuer's `max_age_seconds`.
        max_age: i64,
        /// The time of the check.
        now: i64,
    },
}

/// How a token's `typ` reads in a reason: quoted when short and printable.
fn shown_type(typ: Option<&str>) -> String {
    match typ {
        Some("") => "(none)".to_owned(),
        Some(t) => format!("{t:?}"),
        None => "(not printable)".to_owned(),
    }
}

/// A token's `typ` as a rejection keeps it: `""` when absent, the value when
/// at most 32 printable ASCII characters, `None` otherwise (reasons reach
/// callers and logs; a header is the sender's text).
fn type_for_reason(typ: Option<&str>) -> Option<String> {
    match typ {
        None => Some(String::new()),
        Some(t) if t.len() <= 32 && t.bytes().all(|b| (b' '..=b'~').contains(&b)) => {
            Some(t.to_owned())
        }
        Some(_) => None,
    }
}

/// Which revocation entry matched a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBy {
    /// An entry for the token's issuer and `jti`.
    Jti,
    /// An entry for the token's issuer and `sub`, revoking every token
    /// issued before `revoked_at` (or without `iat`).
    Subject {
        /// The entry's time, seconds since the epoch.
        revoked_at: i64,
    },
}

impl std::fmt::Display for RevokedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokedBy::Jti => f.write_str("its jti is revoked"),
            RevokedBy::Subject { revoked_at } => {
                write!(
                    f,
                    "its subject is revoked for tokens issued before {revoked_at}"
                )
            }
        }
    }
}

/// Which audience list a token failed to meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceSide {
    /// The issuer's configured audiences.
    Configured,
    /// The audiences the call asked for.
    Requested,
    /// The issuer has no audience rule and the call named no audience.
    Unconfigured,
}

impl std::fmt::Display for AudienceSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AudienceSide::Configured => "configured audiences",
            AudienceSide::Requested => "requested audiences",
            AudienceSide::Unconfigured => {
                "the issuer has no audiences configured and the call named none"
            }
        })
    }
}

/// The expensive, time-independent part of a verification: a token whose
/// structure, algorithm, issuer, key and signature checked out, with its
/// parsed claims. Only this module builds one; the memo stores them. It says
/// nothing about time or audiences: [`admit`] checks those, on every use.
#[derive(Debug)]
pub struct Authenticated {
    claims: Claims,
    algorithm: Algorithm,
    chosen: KeyChoice,
    /// The header's `typ`, kept only when the policy checks it.
    typ: Option<String>,
    /// The roles at the issuer's roles path, when it has one.
    roles: Option<Vec<String>>,
    policy: Arc<IssuerPolicy>,
    key: Arc<Key>,
}

impl Authenticated {
    /// The parsed claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
    /// The algorithm that verified.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// The header's kid, if any.
    pub fn kid(&self) -> Option<&str> {
        self.chosen.kid(&self.key)
    }
    /// The header's typ, if any.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }
    /// The payload bytes exactly as signed.
    pub fn payload(&self) -> &[u8] {
        self.claims.payload()
    }
    /// The issuer policy the token was checked under.
    pub fn policy(&self) -> &Arc<IssuerPolicy> {
        &self.policy
    }

    /// True while `trust` still vouches for this result: the issuer is still
    /// trusted under the very same policy, and the key that verified the
    /// signature is still in its current key set. A refresh that keeps a key
    /// keeps its identity (`KeySet::adopt`), so memoized results survive
    /// routine refreshes but not a removed key or a changed config.
    pub fn is_current(&self, trust: &Trust) -> bool {
        let Some(issuer) = trust.issuer(self.policy.issuer()) else {
            return false;
        };
        if !Arc::ptr_eq(&issuer.policy, &self.policy) {
            return false;
        }
        let KeyState::Loaded(keys) = &issuer.keys else {
            return false;
        };
        match self.kid() {
            Some(kid) => keys.by_kid(kid).is_some_and(|k| Arc::ptr_eq(k, &self.key)),
            None => keys.keys().iter().any(|k| Arc::ptr_eq(k, &self.key)),
        }
    }

    /// Heap bytes this result holds (for the memo's byte bound).
    pub fn heap_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        let list = |l: &Option<Vec<String>>| {
            l.as_ref().map_or(0, |a| {
                a.capacity() * std::mem::size_of::<String>()
                    + a.iter().map(String::capacity).sum::<usize>()
            })
        };
        self.claims.heap_bytes() + opt(&self.typ) + list(&self.roles)
    }
}

/// How the key that verified was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyChoice {
    /// By the header's `kid`: the key's kid is exactly that (`KeySet::by_kid`
    /// matched it), so it is not kept apart.
    ByKid,
    /// The header had no `kid`; the key was one of the first that fit.
    WithoutKid,
}

impl KeyChoice {
    /// The header's kid, read from the key it chose.
    fn kid(self, key: &Key) -> Option<&str> {
        match self {
            KeyChoice::ByKid => key.kid(),
            KeyChoice::WithoutKid => None,
        }
    }
}

/// Proof that a token passed every check, borrowed from its [`Authenticated`]
/// result. Only [`admit`] builds one.
#[derive(Debug, Clone, Copy)]
pub struct Verified<'a> {
    auth: &'a Authenticated,
}

impl<'a> Verified<'a> {
    /// The authenticated result behind the proof.
    pub fn authenticated(&self) -> &'a Authenticated {
        self.auth
    }
    /// The parsed claims.
    pub fn claims(&self) -> &'a Claims {
        &self.auth.claims
    }
    /// The algorithm that verified.
    pub fn algorithm(&self) -> Algorithm {
        self.auth.algorithm
    }
    /// The header's kid, if any.
    pub fn kid(&self) -> Option<&'a str> {
        self.auth.kid()
    }
    /// The payload bytes exactly as signed.
    pub fn payload(&self) -> &'a [u8] {
        self.auth.claims.payload()
    }
}

/// An owned [`Verified`]: what [`verify`] returns.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    auth: Arc<Authenticated>,
}

impl PartialEq for VerifiedToken {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.auth, &other.auth);
        a.claims == b.claims
            && a.algorithm == b.algorithm
            && a.kid() == b.kid()
            && Arc::ptr_eq(&a.policy, &b.policy)
            && Arc::ptr_eq(&a.key, &b.key)
    }
}

impl VerifiedToken {
    /// The proof, borrowed.
    pub fn get(&self) -> Verified<'_> {
        Verified { auth: &self.auth }
    }
    /// The shared authenticated result (to memoize it).
    pub fn authenticated(&self) -> &Arc<Authenticated> {
        &self.auth
    }
    /// The parsed claims.
    pub fn claims(&self) -> &Claims {
        &self.auth.claims
    }
    /// The algorithm that verified.
    pub fn algorithm(&self) -> Algorithm {
        self.auth.algorithm
    }
    /// The header's kid, if any.
    pub fn kid(&self) -> Option<&str> {
        self.auth.kid()
    }
    /// The payload bytes exactly as signed.
    pub fn payload(&self) -> &[u8] {
        self.auth.claims.payload()
    }
}

/// Verifies one token. See the module docs for the order of the checks.
pub fn verify(
    token: &str,
    trust: &Trust,
    narrowing: &Narrowing,
    now: UnixTime,
) -> Result<VerifiedToken, Rejection> {
    let auth = authenticate(token, trust, narrowing)?;
    admit(&auth, narrowing, now)?;
    Ok(VerifiedToken { auth })
}

/// The expensive part of [`verify`]: size, structure, algorithm, issuer (and
/// the call's issuer filter), allowlist, key and signature.
#[inline]
pub fn authenticate(
    token: &str,
    trust: &Trust,
    narrowing: &Narrowing,
) -> Result<Arc<Authenticated>, Rejection> {
    authenticate_with_context(token, trust, narrowing).map_err(|f| f.rejection)
}

/// A rejection from [`authenticate_with_context`], with what it depended on.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Why the token was rejected.
    pub rejection: Rejection,
    /// For BAD_SIGNATURE: the policy and key set it was checked against.
    backing: Option<(Arc<IssuerPolicy>, Arc<KeySet>)>,
}

impl Failure {
    /// The memoizable form of this rejection, when it cannot change while
    /// what it depended on stays: MALFORMED always, BAD_SIGNATURE while the
    /// issuer's policy and key set stay the same. Never UNKNOWN_KEY or
    /// KEYS_UNAVAILABLE, which a refresh can change at any moment.
    pub fn into_negative(self) -> Option<Negative> {
        match (&self.rejection, self.backing) {
            (Rejection::Malformed(_), _) => Some(Negative {
                rejection: self.rejection,
                backing: None,
            }),
            (Rejection::BadSignature, Some(backing)) => Some(Negative {
                rejection: self.rejection,
                backing: Some(backing),
            }),
            _ => None,
        }
    }
}

/// A memoized rejection (see [`Failure::into_negative`]).
#[derive(Debug)]
pub struct Negative {
    rejection: Rejection,
    backing: Option<(Arc<IssuerPolicy>, Arc<KeySet>)>,
}

impl Negative {
    /// The rejection this token gets now, or `None` when what it depended on
    /// changed (the token must be checked again).
    pub fn recheck(&self, trust: &Trust, narrowing: &Narrowing) -> Option<Rejection> {
        let Some((policy, set)) = &self.backing else {
            return Some(self.rejection.clone());
        };
        let issuer = trust.issuer(policy.issuer())?;
        if !Arc::ptr_eq(&issuer.policy, policy) {
            return None;
        }
        match &issuer.keys {
            KeyState::Loaded(current) if Arc::ptr_eq(current, set) => {}
            _ => return None,
        }
        Some(match check_requested_issuer(narrowing, policy.issuer()) {
            Err(rejection) => rejection,
            Ok(()) => self.rejection.clone(),
        })
    }
}

/// [`authenticate`], reporting for a rejection what it depended on. The
/// result is built in its `Arc`, ready to share (with the memo, the
/// in-flight table, the caller): moved there once, not through a `Result`
/// first (each move of the 512-byte result is ~75 instructions).
pub fn authenticate_with_context(
    token: &str,
    trust: &Trust,
    narrowing: &Narrowing,
) -> Result<Arc<Authenticated>, Failure> {
    let plain = |rejection| Failure {
        rejection,
        backing: None,
    };

    if token.len() > trust.max_token_bytes() {
        return Err(plain(Rejection::TooLarge {
            len: token.len(),
            max: trust.max_token_bytes(),
        }));
    }
    let mut signature = jose::SignatureBuf::new();
    let jose::Compact {
        signing_input,
        header,
        payload,
        signature,
    } = jose::parse_compact(token, &mut signature).map_err(|m| plain(m.into()))?;
    let claims = Claims::from_payload(payload).map_err(|m| plain(m.into()))?;
    let alg = algorithm(header.alg).map_err(plain)?;

    let iss = claims
        .iss()
        .ok_or(Rejection::MissingIssuer)
        .map_err(plain)?;
    let issuer = trust
        .issuer(iss)
        .ok_or(Rejection::IssuerNotTrusted)
        .map_err(plain)?;
    check_requested_issuer(narrowing, iss).map_err(plain)?;
    let policy = &issuer.policy;
    if !policy.algorithms().contains(alg) {
        return Err(plain(Rejection::AlgorithmNotAllowed(alg)));
    }

    let KeyState::Loaded(keys) = &issuer.keys else {
        return Err(plain(Rejection::KeysUnavailable(
            policy.issuer().to_owned(),
        )));
    };
    let key =
        check_signature(signing_input, &header, signature, alg, keys).map_err(|r| match r {
            Rejection::UnknownKid { .. } => plain(Rejection::UnknownKid {
                issuer: policy.issuer().to_owned(),
            }),
            Rejection::BadSignature => Failure {
                rejection: Rejection::BadSignature,
                backing: Some((Arc::clone(policy), Arc::clone(keys))),
            },
            other => plain(other),
        })?;
    let roles = policy
        .roles()
        .map(|rule| roles_at(claims.payload(), &rule.path));
    Ok(Arc::new(Authenticated {
        claims,
        algorithm: alg,
        chosen: if header.kid.is_some() {
            KeyChoice::ByKid
        } else {
            KeyChoice::WithoutKid
        },
        // Kept only when the policy checks it: no allocation otherwise.
        typ: header
            .typ
            .as_ref()
            .filter(|_| policy.types().is_some())
            .map(|typ| typ.as_str().to_owned()),
        roles,
        policy: Arc::clone(policy),
        key: Arc::clone(key),
    }))
}

/// The roles at `path` in a payload: an array of strings (other items
/// skipped) or one string; nothing at the path, or another type, is no
/// roles. Read once, when the token is authenticated (the payload was
/// already parsed strictly by `Claims::parse`).
fn roles_at(payload: &[u8], path: &[String]) -> Vec<String> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Vec::new();
    };
    let mut at = &doc;
    for segment in path {
        match at.get(segment) {
            Some(next) => at = next,
            None => return Vec::new(),
        }
    }
    match at {
        serde_json::Value::String(one) => vec![one.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The cheap part of [`verify`], run on every use of an [`Authenticated`]
/// result, fresh or memoized: the call's issuer filter, `exp`, `nbf`, the
/// maximum age, the configured and requested audiences, the required
/// claims, then the grants: `typ`, the authorized party, scopes and roles.
pub fn admit<'a>(
    auth: &'a Authenticated,
    narrowing: &Narrowing,
    now: UnixTime,
) -> Result<Verified<'a>, Rejection> {
    check_requested_issuer(narrowing, auth.policy.issuer())?;
    check_claims(&auth.claims, &auth.policy, narrowing, now)?;
    check_grants(auth, narrowing)?;
    Ok(Verified { auth })
}

/// What the token is for and what it may do: its `typ`, the client it was
/// issued to, its scopes and its roles.
fn check_grants(auth: &Authenticated, narrowing: &Narrowing) -> Result<(), Rejection> {
    let policy = &auth.policy;
    if let Some(types) = policy.types() {
        let typ = auth.typ.as_deref().map(jose::normalized_type);
        let accepted = types.iter().any(|t| match &typ {
            None => t.is_empty(),
            Some(typ) => typ == t,
        });
        if !accepted {
            return Err(Rejection::TypeNotAllowed(type_for_reason(
                auth.typ.as_deref(),
            )));
        }
    }
    let parties = policy.authorized_parties();
    if !parties.is_empty() {
        let claims = &auth.claims;
        let client = claims.azp().or(claims.client_id());
        if !client.is_some_and(|c| parties.iter().any(|p| p == c)) {
            return Err(Rejection::ClientNotAllowed);
        }
    }
    if let Some(missing) = policy
        .required_scopes()
        .iter()
        .chain(&narrowing.scopes)
        .find(|s| !auth.claims.grants_scope(s))
    {
        return Err(Rejection::InsufficientScope(missing.clone()));
    }
    if let Some(rule) = policy.roles() {
        let held = auth.roles.as_deref().unwrap_or_default();
        if let Some(missing) = rule.required.iter().find(|r| !held.contains(r)) {
            return Err(Rejection::MissingRole(missing.clone()));
        }
    }
    Ok(())
}

fn check_requested_issuer(narrowing: &Narrowing, iss: &str) -> Result<(), Rejection> {
    if narrowing.issuer.as_deref().is_some_and(|want| want != iss) {
        return Err(Rejection::IssuerNotRequested);
    }
    Ok(())
}

/// The JWS layer alone, for a payload that need not be a JWT: structure, a
/// supported algorithm, a key of `keys` that fits it, and the signature.
/// [`verify`] runs the same steps with the issuer's checks in between.
/// The signature is decoded into `signature`.
pub fn verify_jws<'t, 's>(
    token: &'t str,
    signature: &'s mut jose::SignatureBuf,
    keys: &KeySet,
) -> Result<jose::Compact<'t, 's>, Rejection> {
    let compact = jose::parse_compact(token, signature)?;
    let alg = algorithm(compact.header.alg)?;
    check_signature(
        compact.signing_input,
        &compact.header,
        compact.signature,
        alg,
        keys,
    )?;
    Ok(compact)
}

/// A supported algorithm from the header's `alg` (case-sensitive).
fn algorithm(name: AlgName) -> Result<Algorithm, Rejection> {
    match name {
        AlgName::Known(alg) => Ok(alg),
        AlgName::None => Err(Rejection::AlgNone),
        AlgName::Unknown => Err(Rejection::UnknownAlgorithm),
    }
}

/// Finds the key (by kid, or among the first fitting keys when there is no
/// kid) and checks the signature.
fn check_signature<'k>(
    signing_input: &[u8],
    header: &jose::Header,
    signature: &[u8],
    alg: Algorithm,
    keys: &'k KeySet,
) -> Result<&'k Arc<Key>, Rejection> {
    let check = |key: &Key| key.verify(alg, signing_input, signature).is_ok();
    match header.kid.as_deref() {
        Some(kid) => {
            let key = keys.by_kid(kid).ok_or_else(|| Rejection::UnknownKid {
                issuer: String::new(),
            })?;
            if !key.fits(alg) {
                return Err(Rejection::KeyAlgorithmMismatch {
                    kid: kid.to_owned(),
                    alg,
                });
            }
            if !check(key) {
                return Err(Rejection::BadSignature);
            }
            Ok(key)
        }
        None => {
            let mut candidates = keys
                .keys()
                .iter()
                .filter(|key| key.fits(alg))
                .take(MAX_KIDLESS_CANDIDATES)
                .peekable();
            if candidates.peek().is_none() {
                return Err(Rejection::NoKeyForAlgorithm(alg));
            }
            candidates
                .find(|key| check(key))
                .ok_or(Rejection::BadSignature)
        }
    }
}

/// The time, audience and required-claim checks, after the signature passed.
fn check_claims(
    claims: &Claims,
    policy: &IssuerPolicy,
    narrowing: &Narrowing,
    now: UnixTime,
) -> Result<(), Rejection> {
    let leeway = policy.leeway().seconds();
    let now = now.0;
    match claims.exp() {
        None if policy.require_exp() => return Err(Rejection::MissingExp),
        // RFC 7519 §4.1.4: the current time must be before exp.
        Some(exp) if now.saturating_sub(leeway) >= exp => {
            return Err(Rejection::Expired { exp, now, leeway });
        }
        _ => {}
    }
    if let Some(nbf) = claims.nbf()
        && now.saturating_add(leeway) < nbf
    {
        return Err(Rejection::NotYetValid { nbf, now, leeway });
    }
    if let Some(max_age) = policy.max_age() {
        let Some(iat) = claims.iat() else {
            return Err(Rejection::MissingClaim("iat".into()));
        };
        if now.saturating_sub(leeway).saturating_sub(max_age) > iat {
            return Err(Rejection::TooOld { iat, max_age, now });
        }
    }
    if *policy.audience_rule() == AudienceRule::Unset && narrowing.audiences.is_empty() {
        return Err(Rejection::AudienceMismatch(AudienceSide::Unconfigured));
    }
    for (wanted, side) in [
        (policy.audiences(), AudienceSide::Configured),
        (&narrowing.audiences[..], AudienceSide::Requested),
    ] {
        if wanted.is_empty() {
            continue;
        }
        let Some(mut aud) = claims.aud() else {
            return Err(Rejection::MissingAudience);
        };
        if !aud.any(|a| wanted.iter().any(|w| w == a)) {
            return Err(Rejection::AudienceMismatch(side));
        }
    }
    if let Some(missing) = policy.required_claims().iter().find(|c| !claims.has(c)) {
        return Err(Rejection::MissingClaim(missing.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! One test per rule, each with a token that breaks exactly that rule.
    //! Tokens are HS256 (cheap, deterministic) signed here with aws-lc-rs's
    //! HMAC directly; other algorithms are covered in `tests/`.

    use aws_lc_rs::hmac;
    use base64::Engine as _;

    use super::*;
    use crate::keys::{KeySet, Origin};
    use crate::verifier::jose::B64;
    use crate::verifier::policy::{IssuerPolicy, Leeway, TrustedIssuer};

    const ISS: &str = "https://issuer.test";
    const NOW: UnixTime = UnixTime(1_700_000_000);
    const SECRET: [u8; 32] = [0x42; 32];
    const OTHER_SECRET: [u8; 32] = [0x43; 32];

    fn jwks() -> String {
        let k = B64.encode(SECRET);
        let k2 = B64.encode([OTHER_SECRET, OTHER_SECRET].concat());
        format!(
            r#"{{"keys":[{{"kty":"oct","kid":"k1","k":"{k}"}},{{"kty":"oct","kid":"k2","alg":"HS384","k":"{k2}"}}]}}"#
        )
    }

    fn trust_with(policy: IssuerPolicy) -> Trust {
        let (keys, refused) =
            KeySet::from_jwks(jwks().as_bytes(), Origin::LocalFile).expect("test keys load");
        assert!(refused.is_empty(), "{refused:?}");
        Trust::new(
            [TrustedIssuer {
                policy: Arc::new(policy),
                keys: KeyState::Loaded(Arc::new(keys)),
            }],
            8192,
        )
    }

    fn any_audience() -> IssuerPolicy {
        IssuerPolicy::new(ISS)
            .expect("valid")
            .allowing_any_audience()
    }

    fn trust() -> Trust {
        trust_with(any_audience())
    }

    fn sign_with(secret: &[u8], alg: hmac::Algorithm, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let tag = hmac::sign(&hmac::Key::new(alg, secret), input.as_bytes());
        format!("{input}.{}", B64.encode(tag.as_ref()))
    }

    fn sign(header: &str, payload: &str) -> String {
        sign_with(&SECRET, hmac::HMAC_SHA256, header, payload)
    }

    fn claims(extra: &str) -> String {
        format!(
            r#"{{"iss":"{ISS}","sub":"alice","exp":{}{extra}}}"#,
            NOW.0 + 300
        )
    }

    fn good() -> String {
        sign(r#"{"alg":"HS256","kid":"k1"}"#, &claims(""))
    }

    fn check(token: &str) -> Result<VerifiedToken, Rejection> {
        verify(token, &trust(), &Narrowing::default(), NOW)
    }

    #[test]
    fn a_good_token_verifies_with_its_claims() {
        let payload = claims(r#","aud":["api"],"scope":"read""#);
        let token = sign(r#"{"alg":"HS256","kid":"k1"}"#, &payload);
        let v = check(&token).expect("valid");
        assert_eq!(v.algorithm(), Algorithm::HS256);
        assert_eq!(v.kid(), Some("k1"));
        assert_eq!(v.payload(), payload.as_bytes());
        assert_eq!(v.claims().sub(), Some("alice"));
        assert_eq!(
            v.claims().aud().map(Iterator::collect::<Vec<_>>),
            Some(vec!["api"])
        );
    }

    #[test]
    fn too_large() {
        let trust = Trust::new(trust().issuers().cloned().collect::<Vec<_>>(), 64);
        let token = good();
        assert_eq!(
            verify(&token, &trust, &Narrowing::default(), NOW),
            Err(Rejection::TooLarge {
                len: token.len(),
                max: 64
            })
        );
    }

    #[test]
    fn malformed_structure() {
        let token = good();
        let (head, _) = token.rsplit_once('.').expect("three parts");
        assert_eq!(check(head), Err(Rejection::Malformed(Malformed::Parts(2))));
        assert_eq!(
            check(&format!("{token}.x.y")),
            Err(Rejection::Malformed(Malformed::Jwe))
        );
        let not_object = sign(r#"{"alg":"HS256"}"#, r#"["iss"]"#);
        assert!(matches!(check(&not_object), Err(Rejection::Malformed(_))));
    }

    #[test]
    fn duplicate_claims_are_malformed_even_when_signed() {
        let token = sign(
            r#"{"alg":"HS256","kid":"k1"}"#,
            &claims(r#","iss":"https://other.test""#),
        );
        assert_eq!(
            check(&token),
            Err(Rejection::Malformed(Malformed::DuplicateMember(
                jose::Part::Payload
            )))
        );
    }

    #[test]
    fn string_dates_are_malformed() {
        let payload = format!(r#"{{"iss":"{ISS}","exp":"{}"}}"#, NOW.0 + 300);
        let token = sign(r#"{"alg":"HS256","kid":"k1"}"#, &payload);
        assert_eq!(
            check(&token),
            Err(Rejection::Malformed(Malformed::ClaimType("exp")))
        );
    }

    #[test]
    fn alg_none_and_unknown_names() {
        let input = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none"}"#),
            B64.encode(claims(""))
        );
        assert_eq!(check(&input), Err(Rejection::AlgNone));
        for alg in ["NONE", "nOnE"] {
            let t = sign(&format!(r#"{{"alg":"{alg}","kid":"k1"}}"#), &claims(""));
            assert_eq!(check(&t), Err(Rejection::AlgNone));
        }
        for alg in ["hs256", "HS257", "ES256K", ""] {
            let t = sign(&format!(r#"{{"alg":"{alg}","kid":"k1"}}"#), &claims(""));
            assert_eq!(check(&t), Err(Rejection::UnknownAlgorithm), "{alg}");
        }
    }

    #[test]
    fn algorithm_outside_the_allowlist() {
        let policy = IssuerPolicy::new(ISS)
            .and_then(|p| p.with_algorithms([Algorithm::HS384].into_iter().collect()))
            .expect("valid");
        assert_eq!(
            verify(&good(), &trust_with(policy), &Narrowing::default(), NOW),
            Err(Rejection::AlgorithmNotAllowed(Algorithm::HS256))
        );
    }

    #[test]
    fn issuer_rules() {
        let no_iss = sign(
            r#"{"alg":"HS256","kid":"k1"}"#,
            &format!(r#"{{"exp":{}}}"#, NOW.0 + 300),
        );
        assert_eq!(check(&no_iss), Err(Rejection::MissingIssuer));
        let other = sign(
            r#"{"alg":"HS256","kid":"k1"}"#,
            &format!(r#"{{"iss":"{ISS}/","exp":{}}}"#, NOW.0 + 300),
        );
        assert_eq!(check(&other), Err(Rejection::IssuerNotTrusted));
        let narrowing = Narrowing {
            issuer: Some("https://else.test".into()),
            ..Narrowing::default()
        };
        assert_eq!(
            verify(&good(), &trust(), &narrowing, NOW),
            Err(Rejection::IssuerNotRequested)
        );
        let narrowing = Narrowing {
            issuer: Some(ISS.into()),
            ..Narrowing::default()
        };
        assert!(verify(&good(), &trust(), &narrowing, NOW).is_ok());
    }

    #[test]
    fn keys_unavailable() {
        let trust = Trust::new(
            [TrustedIssuer {
                policy: Arc::new(any_audience()),
                keys: KeyState::Unavailable,
            }],
            8192,
        );
        assert_eq!(
            verify(&good(), &trust, &Narrowing::default(), NOW),
            Err(Rejection::KeysUnavailable(ISS.into()))
        );
    }

    #[test]
    fn unknown_kid_and_key_that_does_not_fit() {
        let t = sign(r#"{"alg":"HS256","kid":"nope"}"#, &claims(""));
        assert_eq!(check(&t), Err(Rejection::UnknownKid { issuer: ISS.into() }));
        // k2 is pinned to HS384.
        let t = sign(r#"{"alg":"HS256","kid":"k2"}"#, &claims(""));
        assert_eq!(
            check(&t),
            Err(Rejection::KeyAlgorithmMismatch {
                kid: "k2".into(),
                alg: Algorithm::HS256
            })
        );
        let t = sign(r#"{"alg":"RS256","kid":"k1"}"#, &claims(""));
        assert_eq!(
            check(&t),
            Err(Rejection::KeyAlgorithmMismatch {
                kid: "k1".into(),
                alg: Algorithm::RS256
            })
        );
    }

    #[test]
    fn kidless_tokens_try_fitting_keys() {
        let t = sign(r#"{"alg":"HS256"}"#, &claims(""));
        assert!(check(&t).is_ok());
        let k2 = [OTHER_SECRET, OTHER_SECRET].concat();
        let t = sign_with(&k2, hmac::HMAC_SHA384, r#"{"alg":"HS384"}"#, &claims(""));
        assert!(check(&t).is_ok(), "the second key fits HS384");
        let t = sign(r#"{"alg":"ES256"}"#, &claims(""));
        assert_eq!(
            check(&t),
            Err(Rejection::NoKeyForAlgorithm(Algorithm::ES256))
        );
        let t = sign_with(
            &OTHER_SECRET,
            hmac::HMAC_SHA256,
            r#"{"alg":"HS256"}"#,
            &claims(""),
        );
        assert_eq!(check(&t), Err(Rejection::BadSignature));
    }

    #[test]
    fn bad_signature_wins_over_bad_claims() {
        // Expired, wrong audience, and signed with the wrong key.
        let payload = format!(r#"{{"iss":"{ISS}","exp":1,"aud":"x"}}"#);
        let t = sign_with(
            &OTHER_SECRET,
            hmac::HMAC_SHA256,
            r#"{"alg":"HS256","kid":"k1"}"#,
            &payload,
        );
        assert_eq!(check(&t), Err(Rejection::BadSignature));
    }

    #[test]
    fn tampered_payload_and_header_fail_the_signature() {
        let token = good();
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = B64.encode(claims(r#","admin":true"#));
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(check(&forged), Err(Rejection::BadSignature));
        let forged_header = B64.encode(r#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#);
        let forged = format!("{forged_header}.{}.{}", parts[1], parts[2]);
        assert_eq!(check(&forged), Err(Rejection::BadSignature));
        let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);
        assert!(matches!(
            check(&truncated),
            Err(Rejection::BadSignature | Rejection::Malformed(_))
        ));
    }

    #[test]
    fn exp_rules() {
        let no_exp = sign(
            r#"{"alg":"HS256","kid":"k1"}"#,
            &format!(r#"{{"iss":"{ISS}"}}"#),
        );
        assert_eq!(check(&no_exp), Err(Rejection::MissingExp));
        let optional = IssuerPolicy::new(ISS)
            .map(IssuerPolicy::allowing_any_audience)
            .expect("valid")
            .with_require_exp(false);
        assert!(verify(&no_exp, &trust_with(optional), &Narrowing::default(), NOW).is_ok());

        // Leeway is 60 s: exp = now - 60 is expired, now - 59 is not.
        for (exp, ok) in [(NOW.0 - 60, false), (NOW.0 - 59, true)] {
            let t = sign(
                r#"{"alg":"HS256","kid":"k1"}"#,
                &format!(r#"{{"iss":"{ISS}","exp":{exp}}}"#),
            );
            let got = check(&t);
            if ok {
                assert!(got.is_ok(), "{exp}: {got:?}");
            } else {
                assert_eq!(
                    got,
                    Err(Rejection::Expired {
                        exp,
                        now: NOW.0,
                        leeway: 60
                    })
                );
            }
        }
        let strict = IssuerPolicy::new(ISS)
            .map(IssuerPolicy::allowing_any_audience)
            .expect("valid")
            .with_leeway(Leeway::try_new(0).expect("valid"));
        let t = sign(
            r#"{"alg":"HS256","kid":"k1"}"#,
            &format!(r#"{{"iss":"{ISS}","exp":{}}}"#, NOW.0),
        );
        assert!(matches!(
            verify(&t, &trust_with(strict), &Narrowing::default(), NOW),
            Err(Rejection::Expired { .. })
        ));
    }

    #[test]
    fn nbf_rules() {
        for (nbf, ok) in [(NOW.0 + 61, false), (NOW.0 + 60, true)] {
            let t = sign(
                r#"{"alg":"HS256","kid":"k1"}"#,
                &claims(&format!(r#","nbf":{nbf}"#)),
            );
            let got = check(&t);
            if ok {
                assert!(got.is_ok(), "{nbf}: {got:?}");
            } else {
                assert_eq!(
                    got,
                    Err(Rejection::NotYetValid {
                        nbf,
                        now: NOW.0,
                        leeway: 60
                    })
                );
            }
        }
    }

    #[test]
    fn audience_rules() {
        let policy = IssuerPolicy::new(ISS)
            .and_then(|p| p.with_audiences(vec!["orders".into(), "billing".into()]))
            .expect("valid");
        let trust = trust_with(policy);
        let token = |aud: &str| sign(r#"{"alg":"HS256","kid":"k1"}"#, &claims(aud));
        let none = Narrowing::default();
        assert!(verify(&token(r#","aud":"orders""#), &trust, &none, NOW).is_ok());
        assert!(verify(&token(r#","aud":["x","billing"]"#), &trust, &none, NOW).is_ok());
        assert_eq!(
            verify(&token(r#","aud":"x""#), &trust, &none, NOW),
            Err(Rejection::AudienceMismatch(AudienceSide::Configured))
        );
        assert_eq!(
            verify(&token(r#","aud":[]"#), &trust, &none, NOW),
            Err(Rejection::AudienceMismatch(AudienceSide::Configured))
        );
        assert_eq!(
            verify(&token(""), &trust, &none, NOW),
            Err(Rejection::MissingAudience)
        );

        // The caller narrows: the token must meet both lists.
        let narrow = Narrowing {
            audiences: vec!["billing".into()],
            issuer: None,
            ..Narrowing::default()
        };
        assert_eq!(
            verify(&token(r#","aud":"orders""#), &trust, &narrow, NOW),
            Err(Rejection::AudienceMismatch(AudienceSide::Requested))
        );
        assert!(
            verify(
                &token(r#","aud":["orders","billing"]"#),
                &trust,
                &narrow,
                NOW
            )
            .is_ok()
        );
        // ... and can never widen: a requested audience the issuer does not accept
        // does not make the token acceptable.
        let widen = Narrowing {
            audiences: vec!["x".into()],
            issuer: None,
            ..Narrowing::default()
        };
        assert_eq!(
            verify(&token(r#","aud":"x""#), &trust, &widen, NOW),
            Err(Rejection::AudienceMismatch(AudienceSide::Configured))
        );
        // Without configured audiences, the request alone decides.
        assert_eq!(
            verify(&token(r#","aud":"orders""#), &self::trust(), &narrow, NOW),
            Err(Rejection::AudienceMismatch(AudienceSide::Requested))
        );
    }

    #[test]
    fn required_claims() {
        let policy = IssuerPolicy::new(ISS)
            .map(IssuerPolicy::allowing_any_audience)
            .and_then(|p| p.with_required_claims(vec!["sub".into(), "scope".into()]))
            .expect("valid");
        let trust = trust_with(policy);
        let with_scope = sign(r#"{"alg":"HS256","kid":"k1"}"#, &claims(r#","scope":"a""#));
        assert!(verify(&with_scope, &trust, &Narrowing::default(), NOW).is_ok());
        assert_eq!(
            verify(&good(), &trust, &Narrowing::default(), NOW),
            Err(Rejection::MissingClaim("scope".into()))
        );
        let null_scope = sign(r#"{"alg":"HS256","kid":"k1"}"#, &claims(r#","scope":null"#));
        assert_eq!(
            verify(&null_scope, &trust, &Narrowing::default(), NOW),
            Err(Rejection::MissingClaim("scope".into()))
        );
    }

    #[test]
    fn reasons_never_echo_the_token() {
        let secret_kid = "kid-with-secret-text-0123456789";
        let t = sign(
            &format!(r#"{{"alg":"HS256","kid":"{secret_kid}"}}"#),
            &claims(""),
        );
        let reason = check(&t).expect_err("unknown kid").to_string();
        assert!(!reason.contains(secret_kid), "{reason}");
        assert!(!reason.contains(&t[..20]), "{reason}");
    }

    #[test]
    fn an_issuer_without_an_audience_rule_admits_only_requested_audiences() {
        let unset = trust_with(IssuerPolicy::new(ISS).expect("valid"));
        let token = sign(
            r#"{"alg":"HS256","kid":"k1"}"#,
            &claims(r#","aud":"orders""#),
        );
        assert_eq!(
            verify(&token, &unset, &Narrowing::default(), NOW),
            Err(Rejection::AudienceMismatch(AudienceSide::Unconfigured)),
            "fails closed when nobody said which audiences"
        );
        let asked = |aud: &str| Narrowing {
            audiences: vec![aud.into()],
            ..Narrowing::default()
        };
        assert!(verify(&token, &unset, &asked("orders"), NOW).is_ok());
        assert_eq!(
            verify(&token, &unset, &asked("billing"), NOW),
            Err(Rejection::AudienceMismatch(AudienceSide::Requested))
        );
        assert!(
            verify(&token, &trust(), &Narrowing::default(), NOW).is_ok(),
            "allowed any"
        );
    }

    #[test]
    fn types_are_compared_as_media_types_and_absent_needs_an_empty_entry() {
        let policy = |types: &[&str]| {
            trust_with(
                any_audience()
                    .with_types(types.iter().map(|t| (*t).to_owned()).collect())
                    .expect("valid"),
            )
        };
        let with = |typ: &str| {
            sign(
                &format!(r#"{{"alg":"HS256","kid":"k1","typ":"{typ}"}}"#),
                &claims(""),
            )
        };
        let access = policy(&["at+jwt"]);
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert!(
                verify(&with(typ), &access, &Narrowing::default(), NOW).is_ok(),
                "{typ}"
            );
        }
        assert_eq!(
            verify(&with("JWT"), &access, &Narrowing::default(), NOW),
            Err(Rejection::TypeNotAllowed(Some("JWT".into())))
        );
        assert_eq!(
            verify(&good(), &access, &Narrowing::default(), NOW),
            Err(Rejection::TypeNotAllowed(Some(String::new()))),
            "no typ: refused unless \"\" is listed"
        );
        let lenient = policy(&["at+jwt", ""]);
        assert!(verify(&good(), &lenient, &Narrowing::default(), NOW).is_ok());
        let odd = with("x\\u0007y");
        assert_eq!(
            verify(&odd, &access, &Narrowing::default(), NOW),
            Err(Rejection::TypeNotAllowed(None)),
            "an unprintable typ is not repeated in the reason"
        );
        assert!(
            Rejection::TypeNotAllowed(None)
                .to_string()
                .contains("not printable")
        );
    }

    #[test]
    fn scopes_from_the_issuer_and_the_call_must_all_be_granted() {
        let token = |scopes: &str| sign(r#"{"alg":"HS256","kid":"k1"}"#, &claims(scopes));
        let issuer = trust_with(
            any_audience()
                .with_required_scopes(vec!["read".into()])
                .expect("valid"),
        );
        let call = |scopes: &[&str]| Narrowing {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Narrowing::default()
        };
        assert!(verify(&token(r#","scope":"read write""#), &issuer, &call(&[]), NOW).is_ok());
        assert_eq!(
            verify(&token(r#","scope":"write""#), &issuer, &call(&[]), NOW),
            Err(Rejection::InsufficientScope("read".into()))
        );
        assert_eq!(
            verify(
                &token(r#","scp":["read"]"#),
                &issuer,
                &call(&["write"]),
                NOW
            ),
            Err(Rejection::InsufficientScope("write".into())),
            "the call's scopes add to the issuer's"
        );
        assert!(
            verify(
                &token(r#","scp":["read","write"]"#),
                &issuer,
                &call(&["write"]),
                NOW
            )
            .is_ok()
        );
        assert_eq!(
            verify(&good(), &trust(), &call(&["read"]), NOW),
            Err(Rejection::InsufficientScope("read".into())),
            "no scope claim grants nothing"
        );
    }

    #[test]
    fn the_client_must_be_an_authorized_party() {
        let trust = trust_with(
            any_audience()
                .with_authorized_parties(vec!["web".into()])
                .expect("valid"),
        );
        let token = |extra: &str| sign(r#"{"alg":"HS256","kid":"k1"}"#, &claims(extra));
        let none = Narrowing::default();
        assert!(verify(&token(r#","azp":"web""#), &trust, &none, NOW).is_ok());
        assert!(verify(&token(r#","client_id":"web""#), &trust, &none, NOW).is_ok());
        assert_eq!(
            verify(
                &token(r#","azp":"cli","client_id":"web""#),
                &trust,
                &none,
                NOW
            ),
            Err(Rejection::ClientNotAllowed),
            "azp decides when present"
        );
        assert_eq!(
            verify(&good(), &trust, &none, NOW),
            Err(Rejection::ClientNotAllowed)
        );
    }

    #[test]
    fn a_maximum_age_counts_from_iat_with_the_leeway() {
        let trust = trust_with(any_audience().with_max_age(600).expect("valid"));
        let issued = |iat: i64| {
            sign(
                r#"{"alg":"HS256","kid":"k1"}"#,
                &claims(&format!(r#","iat":{iat}"#)),
            )
        };
        let none = Narrowing::default();
        // 600 s of age plus the default 60 s of leeway.
        assert!(verify(&issued(NOW.0 - 660), &trust, &none, NOW).is_ok());
        assert_eq!(
            verify(&issued(NOW.0 - 661), &trust, &none, NOW),
            Err(Rejection::TooOld {
                iat: NOW.0 - 661,
                max_age: 600,
                now: NOW.0
            })
        );
        assert_eq!(
            verify(&good(), &trust, &none, NOW),
            Err(Rejection::MissingClaim("iat".into()))
        );
    }

    #[test]
    fn roles_are_read_from_a_nested_claim() {
        let trust = trust_with(
            any_audience()
                .with_roles("realm_access.roles", vec!["admin".into()])
                .expect("valid"),
        );
        let token = |extra: &str| sign(r#"{"alg":"HS256","kid":"k1"}"#, &claims(extra));
        let none = Narrowing::default();
        assert!(
            verify(
                &token(r#","realm_access":{"roles":["user","admin"]}"#),
                &trust,
                &none,
                NOW
            )
            .is_ok()
        );
        assert!(
            verify(
                &token(r#","realm_access":{"roles":"admin"}"#),
                &trust,
                &none,
                NOW
            )
            .is_ok()
        );
        for extra in [
            r#","realm_access":{"roles":["user"]}"#,
            r#","realm_access":{"roles":7}"#,
            r#","realm_access":["admin"]"#,
            r#","roles":["admin"]"#,
            "",
        ] {
            assert_eq!(
                verify(&token(extra), &trust, &none, NOW),
                Err(Rejection::MissingRole("admin".into())),
                "{extra}"
            );
        }
    }
}
