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
    audiences: Vec<String>,
    algorithms: AlgorithmSet,
    leeway: Leeway,
    required_claims: Vec<String>,
    require_exp: bool,
}

impl IssuerPolicy {
    /// A policy for tokens whose `iss` is exactly `issuer`, accepting every
    /// supported algorithm, any audience, the default leeway, requiring `exp`.
    pub fn new(issuer: impl Into<String>) -> Result<Self, PolicyError> {
        let issuer = issuer.into();
        if issuer.is_empty() {
            return Err(PolicyError::Empty);
        }
        Ok(Self {
            issuer,
            audiences: Vec::new(),
            algorithms: AlgorithmSet::all(),
            leeway: Leeway::default(),
            required_claims: Vec::new(),
            require_exp: true,
        })
    }

    /// Tokens must carry at least one of these audiences (none: any).
    pub fn with_audiences(mut self, audiences: Vec<String>) -> Result<Self, PolicyError> {
        if audiences.iter().any(String::is_empty) {
            return Err(PolicyError::Empty);
        }
        self.audiences = audiences;
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
    /// Accepted audiences; empty means any.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
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
    issuers: HashMap<String, TrustedIssuer>,
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

/// What one call adds to the configured policy: it can only narrow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// When non-empty, tokens must also carry one of these audiences.
    pub audiences: Vec<String>,
    /// When set, only tokens from this issuer are acceptable.
    pub issuer: Option<String>,
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
