//! Who is calling, and whether they may (`[callers]`): each call's identity
//! (the peer's address, its client certificate, or a header a trusted
//! sidecar sets), the allowlist, and a token bucket per caller. Every token
//! of a Verify counts against its caller's bucket, one per Check. Holds no
//! wire types: the adapters map a [`Refusal`] to gRPC and HTTP.
//!
//! Decisions:
//! - **governor** for the buckets: the field's rate limiter (GCRA, one
//!   atomic per bucket, no background task). A listed caller has a bucket
//!   of its own; callers not listed share the defaults, one bucket per
//!   identity, in a dashmap of our own (governor's keyed limiter cannot say
//!   whether it tracks a key, which the bound below needs).
//! - **Bounded identities.** At most [`MAX_TRACKED_CALLERS`] unlisted
//!   identities get a bucket of their own. When the table is full, the ones
//!   idle long enough for their bucket to be full again are dropped (at most
//!   once per [`CLEAN_EVERY`]: it scans the table); an identity that still
//!   finds no room shares one overflow bucket of the default size. Tracked
//!   identities keep their own buckets throughout, and listed callers are
//!   never affected: a flood of spoofed identities costs a bounded table and
//!   one shared bucket.
//! - **IPv6 peers are known by their /64**, which one host commonly holds
//!   whole: keyed by full address, a single client could mint 10,000
//!   identities in a moment. (IPv4-mapped addresses count as IPv4.)
//! - **A batch bigger than the caller's burst** can never pass its bucket:
//!   that is its own refusal, with a pushback telling clients not to retry
//!   (gRFC A6: a negative value), rather than an endless retry loop.
//! - **Bounded labels**: a caller's metric label is its configured id, or
//!   `other` for every caller not listed.
//! - The identity is read per call. For `mtls` that decodes the client
//!   certificate's SANs (x509-cert; a few µs, beside the ~100 µs a call
//!   costs the server); a header identity is only as trustworthy as the
//!   proxy that sets it, which the README says.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tonic::Request;

use crate::config::settings::{CallersConfig, IdentityKind, MAX_CALLER_ID_BYTES, RateLimit};

/// Most unlisted identities with a bucket of their own.
pub const MAX_TRACKED_CALLERS: usize = 10_000;

/// An instant of governor's clock.
type Moment = <DefaultClock as governor::clock::Clock>::Instant;

/// Least time between two cleans of a full identity table.
pub const CLEAN_EVERY: Duration = Duration::from_secs(1);

/// The metric label of every caller not listed in `[callers]`.
pub const OTHER_CALLER: &str = "other";

/// Why a caller's call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not listed, and `allow_unlisted = false`.
    #[error("caller {} is not allowed to call jwtd (callers.allow_unlisted = false)", shown(.identity))]
    NotAllowed {
        /// The identity the call carried, if any.
        identity: Option<String>,
    },
    /// Its bucket has too few tokens now.
    #[error(
        "caller {caller:?} is over its limit of {rate} tokens per second (burst {burst}); \
         retry after the pushback"
    )]
    OverLimit {
        /// The caller's label (a configured id, or `other`).
        caller: Arc<str>,
        /// Tokens per second.
        rate: u32,
        /// Bucket size.
        burst: u32,
        /// When its bucket holds enough.
        retry_after: Duration,
    },
    /// The call has more tokens than the caller's bucket can ever hold.
    #[error(
        "a batch of {tokens} tokens is over caller {caller:?}'s burst of {burst}: it can never \
         pass; split the batch"
    )]
    OverBurst {
        /// The caller's label.
        caller: Arc<str>,
        /// Tokens in the call.
        tokens: usize,
        /// Bucket size.
        burst: u32,
    },
}

fn shown(identity: &Option<String>) -> String {
    match identity {
        Some(id) => format!("{id:?}"),
        None => "without an identity".to_owned(),
    }
}

impl Refusal {
    /// The metric label of the reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotAllowed { .. } => "not_allowed",
            Refusal::OverLimit { .. } => "rate_limited",
            Refusal::OverBurst { .. } => "over_burst",
        }
    }

    /// The caller's metric label.
    pub fn caller(&self) -> &str {
        match self {
            Refusal::NotAllowed { .. } => OTHER_CALLER,
            Refusal::OverLimit { caller, .. } | Refusal::OverBurst { caller, .. } => caller,
        }
    }
}

/// A bucket and its settings, for messages.
#[derive(Debug)]
struct Bucket {
    limiter: DefaultDirectRateLimiter,
    limit: RateLimit,
}

impl Bucket {
    fn new(limit: RateLimit) -> Self {
        Self {
            limiter: RateLimiter::direct(quota(limit)),
            limit,
        }
    }
}

fn quota(limit: RateLimit) -> Quota {
    Quota::per_second(limit.tokens_per_second).allow_burst(limit.burst)
}

/// A listed caller.
#[derive(Debug)]
struct Listed {
    label: Arc<str>,
    bucket: Option<Bucket>,
}

/// The callers' identities, allowlist and buckets.
#[derive(Debug)]
pub struct Callers {
    identity: IdentityKind,
    allow_unlisted: bool,
    open: bool,
    listed: HashMap<String, Listed>,
    /// The defaults, for unlisted callers.
    unlisted: Option<Unlisted>,
    other: Arc<str>,
}

/// Unlisted callers under a default limit: a bucket per identity, bounded.
#[derive(Debug)]
struct Unlisted {
    limit: RateLimit,
    table: DashMap<String, Tracked>,
    /// Shared by identities that find no room, and by calls without one.
    overflow: Bucket,
    /// How long an identity must be idle for its bucket to be full again.
    idle: Duration,
    /// Timestamps in the table count from here.
    epoch: Instant,
    /// When the table was last cleaned.
    last_clean: Mutex<Instant>,
}

/// One unlisted identity's bucket.
#[derive(Debug)]
struct Tracked {
    limiter: DefaultDirectRateLimiter,
    /// Milliseconds since `epoch` of its last call.
    last_used: AtomicU64,
}

impl Callers {
    /// The callers `config` describes.
    pub fn new(config: &CallersConfig) -> Self {
        let listed = config
            .callers
            .iter()
            .map(|c| {
                let listed = Listed {
                    label: Arc::from(c.id.as_str()),
                    bucket: c.limit.map(Bucket::new),
                };
                (c.id.clone(), listed)
            })
            .collect();
        Self {
            identity: config.identity.clone(),
            allow_unlisted: config.allow_unlisted,
            open: config.is_open(),
            listed,
            unlisted: config.default_limit.map(|limit| Unlisted {
                limit,
                table: DashMap::new(),
                overflow: Bucket::new(limit),
                idle: Duration::from_secs_f64(
                    f64::from(limit.burst.get()) / f64::from(limit.tokens_per_second.get()),
                ),
                epoch: Instant::now(),
                last_clean: Mutex::new(Instant::now()),
            }),
            other: Arc::from(OTHER_CALLER),
        }
    }

    /// True when nobody is refused or limited: identities need not be read.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Unlisted identities with a bucket now.
    pub fn tracked(&self) -> usize {
        self.unlisted.as_ref().map_or(0, |u| u.table.len())
    }

    /// Reads the identity of `request` as configured; `None` when it
    /// carries none (no such header, no client certificate), or one over
    /// [`MAX_CALLER_ID_BYTES`].
    pub fn identity_of<T>(&self, request: &Request<T>) -> Option<String> {
        if self.open {
            return None;
        }
        let identity = match &self.identity {
            IdentityKind::Peer => request.remote_addr().map(|a| peer_identity(a.ip())),
            IdentityKind::Mtls => request
                .peer_certs()
                .and_then(|certs| certs.first().and_then(|c| certificate_identity(c))),
            IdentityKind::Header(name) => request
                .metadata()
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        identity.filter(|id| !id.is_empty() && id.len() <= MAX_CALLER_ID_BYTES)
    }

    /// Refuses a caller that is not allowed at all, before anything else of
    /// its call is looked at.
    pub fn allowed(&self, identity: Option<&str>) -> Result<(), Refusal> {
        if self.allow_unlisted || identity.is_some_and(|id| self.listed.contains_key(id)) {
            return Ok(());
        }
        Err(Refusal::NotAllowed {
            identity: identity.map(str::to_owned),
        })
    }

    /// Lets a call of `tokens` tokens from `identity` through, or says why
    /// not. Returns the caller's metric label.
    pub fn admit(&self, identity: Option<&str>, tokens: usize) -> Result<Arc<str>, Refusal> {
        self.admit_at(identity, tokens, Instant::now())
    }

    /// [`Callers::admit`] at `now` (the identity table's clock; the buckets
    /// keep governor's).
    fn admit_at(
        &self,
        identity: Option<&str>,
        tokens: usize,
        now: Instant,
    ) -> Result<Arc<str>, Refusal> {
        if self.open {
            return Ok(Arc::clone(&self.other));
        }
        self.allowed(identity)?;
        let listed = identity.and_then(|id| self.listed.get(id));
        let label = listed.map_or(&self.other, |l| &l.label);
        let Some(n) = NonZeroU32::new(u32::try_from(tokens).unwrap_or(u32::MAX)) else {
            return Ok(Arc::clone(label)); // an empty call costs nothing
        };
        let outcome = match (listed, &self.unlisted) {
            (Some(Listed { bucket: None, .. }), _) | (None, None) => Ok(()),
            (
                Some(Listed {
                    bucket: Some(b), ..
                }),
                _,
            ) => take(&b.limiter, b.limit, n, label),
            (None, Some(unlisted)) => unlisted.take(identity, n, now, label),
        };
        outcome.map(|()| Arc::clone(label))
    }
}

impl Unlisted {
    /// Takes `n` tokens from `identity`'s own bucket, made if there is room,
    /// else from the shared overflow bucket.
    fn take(
        &self,
        identity: Option<&str>,
        n: NonZeroU32,
        now: Instant,
        caller: &Arc<str>,
    ) -> Result<(), Refusal> {
        let since = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let Some(id) = identity else {
            return take(&self.overflow.limiter, self.limit, n, caller);
        };
        if let Some(tracked) = self.table.get(id) {
            tracked.last_used.store(since, Ordering::Relaxed);
            return take(&tracked.limiter, self.limit, n, caller);
        }
        if !self.has_room(now) {
            return take(&self.overflow.limiter, self.limit, n, caller);
        }
        let tracked = self.table.entry(id.to_owned()).or_insert_with(|| Tracked {
            limiter: RateLimiter::direct(quota(self.limit)),
            last_used: AtomicU64::new(since),
        });
        take(&tracked.limiter, self.limit, n, caller)
    }

    /// True when the table has room for one more identity. When it is full,
    /// identities idle long enough for their bucket to be full again are
    /// dropped first, at most once per [`CLEAN_EVERY`] (the clean scans
    /// the whole table).
    fn has_room(&self, now: Instant) -> bool {
        if self.table.len() < MAX_TRACKED_CALLERS {
            return true;
        }
        if let Ok(mut last) = self.last_clean.try_lock()
            && now.saturating_duration_since(*last) >= CLEAN_EVERY
        {
            *last = now;
            let idle_since = now
                .checked_sub(self.idle)
                .map_or(0, |t| t.saturating_duration_since(self.epoch).as_millis());
            self.table
                .retain(|_, t| u128::from(t.last_used.load(Ordering::Relaxed)) > idle_since);
        }
        self.table.len() < MAX_TRACKED_CALLERS
    }
}

/// A peer address as an identity: IPv4 as it is, IPv6 by its /64 prefix
/// (IPv4-mapped IPv6 as IPv4).
pub fn peer_identity(ip: std::net::IpAddr) -> String {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                format!("{}/64", std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Takes `n` tokens from a direct bucket.
fn take(
    limiter: &DefaultDirectRateLimiter,
    limit: RateLimit,
    n: NonZeroU32,
    caller: &Arc<str>,
) -> Result<(), Refusal> {
    refusal(limiter.check_n(n), limit, n, caller)
}

/// governor's answer as a refusal.
fn refusal(
    outcome: Result<Result<(), governor::NotUntil<Moment>>, governor::InsufficientCapacity>,
    limit: RateLimit,
    n: NonZeroU32,
    caller: &Arc<str>,
) -> Result<(), Refusal> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => Err(Refusal::OverLimit {
            caller: Arc::clone(caller),
            rate: limit.tokens_per_second.get(),
            burst: limit.burst.get(),
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        }),
        Err(_) => Err(Refusal::OverBurst {
            caller: Arc::clone(caller),
            tokens: n.get() as usize,
            burst: limit.burst.get(),
        }),
    }
}

/// A client certificate's identity: its first URI SAN (a SPIFFE ID in a
/// mesh), else its first DNS SAN; `None` when it has neither or does not
/// decode.
pub fn certificate_identity(der: &[u8]) -> Option<String> {
    use x509_cert::Certificate;
    use x509_cert::der::Decode as _;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;

    let cert = Certificate::from_der(der).ok()?;
    let (_, SubjectAltName(names)) = cert.tbs_certificate.get::<SubjectAltName>().ok()??;
    let uri = names.iter().find_map(|n| match n {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
        _ => None,
    });
    uri.or_else(|| {
        names.iter().find_map(|n| match n {
            GeneralName::DnsName(dns) => Some(dns.to_string()),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::CallerConfig;

    fn limit(rate: u32, burst: u32) -> Option<RateLimit> {
        Some(RateLimit {
            tokens_per_second: NonZeroU32::new(rate).expect("non-zero"),
            burst: NonZeroU32::new(burst).expect("non-zero"),
        })
    }

    fn callers(default_limit: Option<RateLimit>, allow_unlisted: bool) -> Callers {
        Callers::new(&CallersConfig {
            identity: IdentityKind::Header("x-caller".into()),
            default_limit,
            allow_unlisted,
            callers: vec![
                CallerConfig {
                    id: "limited".into(),
                    limit: limit(1, 2),
                },
                CallerConfig {
                    id: "free".into(),
                    limit: None,
                },
            ],
        })
    }

    #[test]
    fn without_a_callers_section_everyone_passes_unread() {
        let open = Callers::new(&CallersConfig::default());
        assert!(open.is_open());
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("x-caller", "someone".parse().expect("ascii"));
        assert_eq!(open.identity_of(&request), None, "nothing is read");
        for _ in 0..1000 {
            assert_eq!(&*open.admit(None, 1000).expect("open"), OTHER_CALLER);
        }
    }

    #[test]
    fn the_allowlist_refuses_unlisted_callers_and_calls_without_identity() {
        let c = callers(None, false);
        assert!(c.allowed(Some("free")).is_ok());
        assert!(c.allowed(Some("limited")).is_ok());
        for id in [None, Some("stranger"), Some("Free")] {
            match c.allowed(id) {
                Err(Refusal::NotAllowed { identity }) => {
                    assert_eq!(identity.as_deref(), id);
                }
                other => panic!("{id:?}: {other:?}"),
            }
            assert!(matches!(c.admit(id, 1), Err(Refusal::NotAllowed { .. })));
        }
        let shown = c.allowed(None).expect_err("refused").to_string();
        assert!(shown.contains("without an identity"), "{shown}");
    }

    #[test]
    fn a_listed_callers_bucket_limits_only_that_caller() {
        let c = callers(None, true);
        assert_eq!(&*c.admit(Some("limited"), 2).expect("the burst"), "limited");
        match c.admit(Some("limited"), 1) {
            Err(Refusal::OverLimit {
                caller,
                rate: 1,
                burst: 2,
                retry_after,
            }) => {
                assert_eq!(&*caller, "limited");
                assert!(
                    retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1),
                    "{retry_after:?}"
                );
            }
            other => panic!("expected OverLimit, got {other:?}"),
        }
        assert!(matches!(
            c.admit(Some("limited"), 3),
            Err(Refusal::OverBurst {
                tokens: 3,
                burst: 2,
                ..
            })
        ));
        for _ in 0..100 {
            assert_eq!(&*c.admit(Some("free"), 1000).expect("no limit"), "free");
            assert_eq!(
                &*c.admit(Some("stranger"), 1000).expect("no default"),
                "other"
            );
        }
    }

    #[test]
    fn unlisted_callers_get_a_bucket_each_within_a_bounded_table() {
        let c = callers(limit(1, 2), true);
        let now = Instant::now();
        c.admit_at(Some("a"), 2, now).expect("a's burst");
        assert!(matches!(
            c.admit_at(Some("a"), 1, now),
            Err(Refusal::OverLimit { .. })
        ));
        c.admit_at(Some("b"), 2, now)
            .expect("b has a bucket of its own");
        assert_eq!(c.tracked(), 2);
        for n in 2..MAX_TRACKED_CALLERS {
            c.admit_at(Some(&format!("spoofed-{n}")), 1, now)
                .expect("a fresh bucket each");
        }
        assert_eq!(c.tracked(), MAX_TRACKED_CALLERS, "the table stops growing");
        // Full, and nobody idle long enough to drop: newcomers share one
        // overflow bucket, whose burst is the default's...
        c.admit_at(Some("new-1"), 1, now)
            .expect("the overflow bucket");
        c.admit_at(Some("new-2"), 1, now)
            .expect("the overflow bucket");
        match c.admit_at(Some("new-3"), 1, now) {
            Err(Refusal::OverLimit { caller, .. }) => assert_eq!(&*caller, OTHER_CALLER),
            other => panic!("expected the shared bucket to be empty, got {other:?}"),
        }
        // ...while tracked identities keep their own buckets.
        c.admit_at(Some("spoofed-7"), 1, now)
            .expect("its own bucket has a token left");
        assert!(matches!(
            c.admit_at(Some("a"), 1, now),
            Err(Refusal::OverLimit { .. })
        ));
        assert_eq!(c.tracked(), MAX_TRACKED_CALLERS);
        c.admit_at(Some("limited"), 2, now)
            .expect("listed callers are never affected");
        // Once identities have been idle for burst / rate (2 s here), a
        // full table drops them and newcomers get buckets again.
        let later = now + Duration::from_secs(3);
        c.admit_at(Some("new-4"), 1, later)
            .expect("a bucket of its own after the clean");
        assert_eq!(c.tracked(), 1);
    }

    #[test]
    fn ipv6_peers_are_known_by_their_64_prefix() {
        let id = |s: &str| peer_identity(s.parse().expect("an address"));
        assert_eq!(id("192.0.2.7"), "192.0.2.7");
        assert_eq!(id("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(id("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
        assert_eq!(id("2001:db8:1:2::1"), id("2001:db8:1:2:ffff::9"));
        assert_ne!(id("2001:db8:1:2::1"), id("2001:db8:1:3::1"));
    }

    #[test]
    fn a_certificate_is_known_by_its_uri_san_else_its_dns_san() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = |sans: Vec<rcgen::SanType>| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.subject_alt_names = sans;
            params.self_signed(&key).expect("signs").der().to_vec()
        };
        let uri = |u: &str| rcgen::SanType::URI(u.try_into().expect("ia5"));
        let dns = |d: &str| rcgen::SanType::DnsName(d.try_into().expect("ia5"));
        let spiffe = "spiffe://cluster.local/ns/shop/sa/checkout";
        assert_eq!(
            certificate_identity(&cert(vec![dns("checkout.shop"), uri(spiffe)])).as_deref(),
            Some(spiffe)
        );
        assert_eq!(
            certificate_identity(&cert(vec![dns("a.example"), dns("b.example")])).as_deref(),
            Some("a.example")
        );
        assert_eq!(certificate_identity(&cert(Vec::new())), None);
        assert_eq!(certificate_identity(b"not a certificate"), None);
    }
}
