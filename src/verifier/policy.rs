//! What jwtd accepts: each configured issuer's policy, the per-call narrowing
//! a caller may add, and [`Trust`], the immutable snapshot of every issuer with
//! its current keys that the verifier reads. Holds values; does no I/O.
//!
//! The values with rules ([`Leeway`], [`IssuerPolicy`]) can only be built
//! through constructors that check them, so an invalid policy cannot exist
//! past the config loader.

use std::collections::HashMap;
use std::sync::Arc;

use crate::keys::KeySet;
use crate::verifier::jose::AlgorithmSet;

/// The largest clock-skew allowance an issuer may configure.
pub const MAX_LEEWAY_SECONDS: i64 = 3600;

/// Why a policy value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Leeway outside `0..=MAX_LEEWAY_SECONDS`.
    #[error("{0} is outside 0..={MAX_LEEWAY_SECONDS} seconds")]
    Leeway(i64),
    /// An empty issuer, audience or claim name.
    #[error("must not be empty")]
    Empty,
    /// The allowlist names no algorithm.
    #[error("must name at least one algorithm")]
    NoAlgorithm,
    /// A list that must name something is empty.
    #[error("must name at least one")]
    EmptyList,
    /// A scope or role with whitespace (scopes are space-separated).
    #[error("{0:?} contains whitespace")]
    Whitespace(String),
    /// A maximum token age outside its range.
    #[error("{0} is outside 1..=31622400 seconds")]
    MaxAge(i64),
    /// A claim path with an empty segment.
    #[error("{0:?} is not a dot-separated claim path")]
    ClaimPath(String),
}

/// How an issuer's audiences are checked. There is no silent default: a
/// config says `audiences` or `allow_any_audience = true`; an issuer that
/// says neither accepts a token only for audiences its caller names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AudienceRule {
    /// Nothing configured: only the audiences a call names can admit a
    /// token (a call naming none gets AUDIENCE_MISMATCH).
    #[default]
    Unset,
    /// Any audience, written out by the operator.
    Any,
    /// The token must carry one of these (non-empty).
    OneOf(Vec<String>),
}

/// Roles that must be granted, read from a (possibly nested) claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolesRule {
    /// The claim's path, split at dots: `["realm_access", "roles"]`.
    pub path: Vec<String>,
    /// Every one of these must be in the claim's array (or string).
    pub required: Vec<String>,
}

/// Allowed clock skew, in seconds, for `exp` and `nbf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leeway(i64);

impl Leeway {
    /// A leeway of `seconds`, which must be within `0..=MAX_LEEWAY_SECONDS`.
    pub fn try_new(seconds: i64) -> Result<Self, PolicyError> {
        if (0..=MAX_LEEWAY_SECONDS).contains(&seconds) {
            Ok(Self(seconds))
        } else {
            Err(PolicyError::Leeway(seconds))
        }
    }

    /// The leeway in seconds.
    pub fn seconds(self) -> i64 {
        self.0
    }
}

impl Default for Leeway {
    fn default() -> Self {
        Self(60)
    }
}

/// What one trusted issuer's tokens must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerPolicy {
    issuer: String,
    audiences: AudienceRule,
    algorithms: AlgorithmSet,
    leeway: Leeway,
    required_claims: Vec<String>,
    require_exp: bool,
    /// Normalized (`jose::normalized_type`); `""` lets an absent `typ` in.
    types: Option<Vec<String>>,
    required_scopes: Vec<String>,
    authorized_parties: Vec<String>,
    max_age: Option<i64>,
    roles: Option<RolesRule>,
}

impl IssuerPolicy {
    /// A policy for tokens whose `iss` is exactly `issuer`, accepting every
    /// supported algorithm, the default leeway, requiring `exp`, and no
    /// audience rule ([`AudienceRule::Unset`]: only audiences a call names
    /// admit a token) until [`Self::with_audiences`] or
    /// [`Self::allowing_any_audience`] says otherwise.
    pub fn new(issuer: impl Into<String>) -> Result<Self, PolicyError> {
        let issuer = issuer.into();
        if issuer.is_empty() {
            return Err(PolicyError::Empty);
        }
        Ok(Self {
            issuer,
            audiences: AudienceRule::Unset,
            algorithms: AlgorithmSet::all(),
            leeway: Leeway::default(),
            required_claims: Vec::new(),
            require_exp: true,
            types: None,
            required_scopes: Vec::new(),
            authorized_parties: Vec::new(),
            max_age: None,
            roles: None,
        })
    }

    /// Tokens must carry at least one of these audiences (at least one).
    pub fn with_audiences(mut self, audiences: Vec<String>) -> Result<Self, PolicyError> {
        if audiences.is_empty() {
            return Err(PolicyError::EmptyList);
        }
        if audiences.iter().any(String::is_empty) {
            return Err(PolicyError::Empty);
        }
        self.audiences = AudienceRule::OneOf(audiences);
        Ok(self)
    }

    /// Tokens may carry any audience, or none.
    pub fn allowing_any_audience(mut self) -> Self {
        self.audiences = AudienceRule::Any;
        self
    }

    /// The header's `typ` must be one of these (compared as RFC 7515 says);
    /// `""` in the list lets a token without `typ` in.
    pub fn with_types(mut self, types: Vec<String>) -> Result<Self, PolicyError> {
        if types.is_empty() {
            return Err(PolicyError::EmptyList);
        }
        self.types = Some(
            types
                .iter()
                .map(|t| crate::verifier::jose::normalized_type(t))
                .collect(),
        );
        Ok(self)
    }

    /// Every token must grant all of these scopes.
    pub fn with_required_scopes(mut self, scopes: Vec<String>) -> Result<Self, PolicyError> {
        check_names(&scopes)?;
        self.required_scopes = scopes;
        Ok(self)
    }

    /// The token's `azp` (or, without one, its `client_id`) must be one of
    /// these.
    pub fn with_authorized_parties(mut self, parties: Vec<String>) -> Result<Self, PolicyError> {
        if parties.is_empty() {
            return Err(PolicyError::EmptyList);
        }
        if parties.iter().any(String::is_empty) {
            return Err(PolicyError::Empty);
        }
        self.authorized_parties = parties;
        Ok(self)
    }

    /// Tokens issued (`iat`) longer ago than this, beyond the leeway, are
    /// refused, whatever their `exp`; a token without `iat` is then refused.
    pub fn with_max_age(mut self, seconds: i64) -> Result<Self, PolicyError> {
        if !(1..=366 * 86_400).contains(&seconds) {
            return Err(PolicyError::MaxAge(seconds));
        }
        self.max_age = Some(seconds);
        Ok(self)
    }

    /// Every token must hold all of `required` in the claim at `path`
    /// (dot-separated, e.g. `realm_access.roles`).
    pub fn with_roles(mut self, path: &str, required: Vec<String>) -> Result<Self, PolicyError> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(PolicyError::ClaimPath(path.to_owned()));
        }
        check_names(&required)?;
        self.roles = Some(RolesRule {
            path: segments,
            required,
        });
        Ok(self)
    }

    /// Only these algorithms are accepted.
    pub fn with_algorithms(mut self, algorithms: AlgorithmSet) -> Result<Self, PolicyError> {
        if algorithms == AlgorithmSet::from_iter([]) {
            return Err(PolicyError::NoAlgorithm);
        }
        self.algorithms = algorithms;
        Ok(self)
    }

    /// The clock-skew allowance.
    pub fn with_leeway(mut self, leeway: Leeway) -> Self {
        self.leeway = leeway;
        self
    }

    /// Claims that must be present (and not `null`).
    pub fn with_required_claims(mut self, claims: Vec<String>) -> Result<Self, PolicyError> {
        if claims.iter().any(String::is_empty) {
            return Err(PolicyError::Empty);
        }
        self.required_claims = claims;
        Ok(self)
    }

    /// Whether `exp` must be present.
    pub fn with_require_exp(mut self, require: bool) -> Self {
        self.require_exp = require;
        self
    }

    /// The issuer identifier (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The audiences a token must carry one of; empty when the rule is not
    /// a list ([`Self::audience_rule`]).
    pub fn audiences(&self) -> &[String] {
        match &self.audiences {
            AudienceRule::OneOf(list) => list,
            AudienceRule::Unset | AudienceRule::Any => &[],
        }
    }
    /// How audiences are checked.
    pub fn audience_rule(&self) -> &AudienceRule {
        &self.audiences
    }
    /// The accepted `typ` values, normalized; `None` accepts any.
    pub fn types(&self) -> Option<&[String]> {
        self.types.as_deref()
    }
    /// Scopes every token must grant.
    pub fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }
    /// Accepted `azp` / `client_id` values; empty accepts any.
    pub fn authorized_parties(&self) -> &[String] {
        &self.authorized_parties
    }
    /// The oldest a token may be, by its `iat`, in seconds.
    pub fn max_age(&self) -> Option<i64> {
        self.max_age
    }
    /// Roles every token must hold.
    pub fn roles(&self) -> Option<&RolesRule> {
        self.roles.as_ref()
    }
    /// The algorithm allowlist.
    pub fn algorithms(&self) -> AlgorithmSet {
        self.algorithms
    }
    /// The clock-skew allowance.
    pub fn leeway(&self) -> Leeway {
        self.leeway
    }
    /// Claims that must be present.
    pub fn required_claims(&self) -> &[String] {
        &self.required_claims
    }
    /// Whether `exp` must be present.
    pub fn require_exp(&self) -> bool {
        self.require_exp
    }
}

/// The keys of one issuer as the verifier sees them.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// A set is loaded.
    Loaded(Arc<KeySet>),
    /// No set has loaded yet: tokens get `KEYS_UNAVAILABLE`.
    Unavailable,
}

/// One trusted issuer: its policy and its current keys.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The policy.
    pub policy: Arc<IssuerPolicy>,
    /// The current keys.
    pub keys: KeyState,
}

/// Every trusted issuer, by exact issuer identifier, and the token size limit:
/// an immutable snapshot, replaced whole when keys or config change.
#[derive(Debug, Clone)]
pub struct Trust {
    /// foldhash, not SipHash: looked up on every cold token and memo hit
    /// (a third of a hit's lookups, measured with callgrind), and its keys
    /// come from the config, not from tokens.
    issuers: HashMap<String, TrustedIssuer, foldhash::fast::RandomState>,
    max_token_bytes: usize,
}

impl Trust {
    /// A snapshot of `issuers` (later duplicates replace earlier ones; the
    /// config loader refuses duplicates before this).
    pub fn new(issuers: impl IntoIterator<Item = TrustedIssuer>, max_token_bytes: usize) -> Self {
        let issuers = issuers
            .into_iter()
            .map(|i| (i.policy.issuer().to_owned(), i))
            .collect();
        Self {
            issuers,
            max_token_bytes,
        }
    }

    /// The issuer whose identifier is exactly `iss`.
    pub fn issuer(&self, iss: &str) -> Option<&TrustedIssuer> {
        self.issuers.get(iss)
    }

    /// Tokens longer than this are refused undecoded.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Every trusted issuer.
    pub fn issuers(&self) -> impl Iterator<Item = &TrustedIssuer> {
        self.issuers.values()
    }

    /// A copy with `iss`'s keys replaced; unchanged when `iss` is not trusted.
    pub fn with_keys(&self, iss: &str, keys: KeyState) -> Trust {
        let mut next = self.clone();
        if let Some(issuer) = next.issuers.get_mut(iss) {
            issuer.keys = keys;
        }
        next
    }
}

/// Scope and role names: non-empty, without whitespace.
fn check_names(names: &[String]) -> Result<(), PolicyError> {
    for name in names {
        if name.is_empty() {
            return Err(PolicyError::Empty);
        }
        if name.chars().any(char::is_whitespace) {
            return Err(PolicyError::Whitespace(name.clone()));
        }
    }
    Ok(())
}

/// What one call adds to the configured policy: it can only narrow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// When non-empty, tokens must also carry one of these audiences.
    pub audiences: Vec<String>,
    /// When set, only tokens from this issuer are acceptable.
    pub issuer: Option<String>,
    /// Scopes every token must grant, beyond the issuer's own.
    pub scopes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifier::jose::Algorithm;

    #[test]
    fn leeway_bounds() {
        assert_eq!(Leeway::try_new(0).map(Leeway::seconds), Ok(0));
        assert_eq!(Leeway::try_new(3600).map(Leeway::seconds), Ok(3600));
        assert_eq!(Leeway::try_new(-1), Err(PolicyError::Leeway(-1)));
        assert_eq!(Leeway::try_new(3601), Err(PolicyError::Leeway(3601)));
        assert_eq!(Leeway::default().seconds(), 60);
    }

    #[test]
    fn policy_refuses_empty_values() {
        assert_eq!(IssuerPolicy::new(""), Err(PolicyError::Empty));
        let p = IssuerPolicy::new("https://i").expect("valid");
        assert_eq!(
            p.clone().with_audiences(vec![String::new()]),
            Err(PolicyError::Empty)
        );
        assert_eq!(
            p.clone().with_required_claims(vec![String::new()]),
            Err(PolicyError::Empty)
        );
        assert_eq!(
            p.clone().with_algorithms(AlgorithmSet::from_iter([])),
            Err(PolicyError::NoAlgorithm)
        );
        let p = p
            .with_algorithms([Algorithm::ES256].into_iter().collect())
            .expect("valid");
        assert!(p.algorithms().contains(Algorithm::ES256));
        assert!(!p.algorithms().contains(Algorithm::RS256));
        assert!(p.require_exp());
    }
}
