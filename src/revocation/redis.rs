//! The Redis source: the shared store `jwtd revoke` writes to and every
//! replica reads. Owns the Redis key layout, the write (for the CLI) and the
//! source's task (subscribe, full load, apply updates, heartbeat,
//! reconnect). No other module talks to Redis.
//!
//! Layout, under `redis_prefix` (`jwtd:revocation` by default):
//! - one key per entry, `PREFIX:jti:HEX` or `PREFIX:sub:HEX`, where HEX is
//!   the SHA-256 of the issuer and the jti (or subject), each length-
//!   prefixed: fixed-length keys whatever a claim holds, and no separator a
//!   claim could forge. The value is the entry's JSON line
//!   ([`Entry::to_line`]), so `redis-cli GET` shows what it revokes;
//! - each key EXPIREs (`SET … EXAT`) when the entry stops mattering: a jti
//!   at the token's `exp` plus the issuer's leeway, a subject at
//!   `revoked_at + subject_ttl_seconds`;
//! - after each write, the same line is PUBLISHed on `PREFIX:events`.
//!
//! Decisions:
//! - **Subscribe first, then SCAN**: an entry written during the load
//!   arrives as a message after it, so none falls between the two. The
//!   load replaces the source's whole table as a difference
//!   ([`Source::replace`]), so a reconnect also drops entries deleted
//!   meanwhile; updates then apply one by one ([`Source::apply`]).
//! - **A heartbeat every [`HEARTBEAT_EVERY`] (1 s)**: a PING on the
//!   subscription's own connection, answered within [`TIMEOUT`] (2 s) or
//!   the connection is dropped and made again. A half-open connection
//!   would otherwise look like a quiet channel; each PONG is a sync, so
//!   `max_stale_seconds` measures how long revocations could have been
//!   missed.
//! - **A full reload every [`RESYNC_EVERY`] (5 min)**, on top of the one
//!   per reconnect: it picks up keys deleted by hand (an un-revocation) and
//!   anything a publisher wrote without publishing. SCAN with COUNT 1000
//!   and MGET per page: ~100 round trips for 100,000 entries.
//! - **Reconnects back off** from 100 ms to 5 s, so a restarted Redis is
//!   picked up within seconds and a dead one is not hammered.
//! - **Bounded**: a load reads at most `max_entries` keys; the rest are
//!   counted as refused, as for lists.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use redis::aio::MultiplexedConnection;
use tokio_stream::StreamExt as _;

use crate::config::settings::{RedisUrl, RevocationConfig};
use crate::observability::telemetry;
use crate::revocation::RevocationError;
use crate::revocation::entry::{Entry, parse_entry};
use crate::revocation::store::Source;
use crate::verifier::clock::Clock;
use crate::verifier::policy::MAX_LEEWAY_SECONDS;
use crate::verifier::verify::UnixTime;

/// How often the subscription is pinged.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a connect, a command or a PING may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How often the whole store is read again while connected.
pub const RESYNC_EVERY: Duration = Duration::from_secs(300);
/// Keys asked for per SCAN page.
const SCAN_COUNT: usize = 1000;
/// First and longest wait between reconnects.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// A Redis store of revocations under one key prefix.
#[derive(Debug, Clone)]
pub struct Redis {
    client: redis::Client,
    location: String,
    prefix: String,
}

impl Redis {
    /// A client for `url` (no connection is made yet).
    pub fn new(url: &RedisUrl, prefix: &str) -> Result<Self, RevocationError> {
        let location = url.redacted();
        let client = redis::Client::open(url.expose()).map_err(|e| RevocationError::Redis {
            location: location.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            client,
            location,
            prefix: prefix.to_owned(),
        })
    }

    /// The URL without credentials.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn error(&self, reason: impl std::fmt::Display) -> RevocationError {
        RevocationError::Redis {
            location: self.location.clone(),
            reason: reason.to_string(),
        }
    }

    /// The channel updates are published on.
    pub fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// The key that holds `entry`.
    pub fn key(&self, entry: &Entry) -> String {
        let (kind, iss, id) = match entry {
            Entry::Jti { iss, jti, .. } => ("jti", iss, jti),
            Entry::Subject { iss, sub, .. } => ("sub", iss, sub),
        };
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in [iss.as_bytes(), id.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let hex: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}:{kind}:{hex}", self.prefix)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RevocationError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(e))
    }

    /// Writes `entry`, expiring at `until` (seconds since the epoch), and
    /// publishes it, in one transaction.
    pub async fn write(&self, entry: &Entry, until: i64) -> Result<(), RevocationError> {
        let mut conn = self.connection().await?;
        let line = entry.to_line();
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.key(entry))
            .arg(&line)
            .arg("EXAT")
            .arg(until)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.channel())
            .arg(&line)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.error(e))
    }

    /// Reads every entry under the prefix, at most `max` of them. Returns
    /// the entries, how many values were not entries, and whether `max`
    /// stopped the read.
    async fn load(
        &self,
        conn: &mut MultiplexedConnection,
        max: usize,
    ) -> Result<(Vec<Entry>, usize, bool), RevocationError> {
        let pattern = format!("{}:*", self.prefix);
        let (jti, sub) = (
            format!("{}:jti:", self.prefix),
            format!("{}:sub:", self.prefix),
        );
        let mut entries = Vec::new();
        let mut invalid = 0;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(conn)
                .await
                .map_err(|e| self.error(e))?;
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|k| k.starts_with(&jti) || k.starts_with(&sub))
                .collect();
            if !keys.is_empty() {
                let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(conn)
                    .await
                    .map_err(|e| self.error(e))?;
                // A key that expired between SCAN and MGET reads as nil.
                for value in values.into_iter().flatten() {
                    match parse_entry(&value) {
                        Ok(entry) if entries.len() < max => entries.push(entry),
                        Ok(_) => return Ok((entries, invalid, true)),
                        Err(_) => invalid += 1,
                    }
                }
            }
            if next == 0 {
                return Ok((entries, invalid, false));
            }
            cursor = next;
        }
    }

    /// PINGs the server (for `check-config`).
    pub async fn ping(&self) -> Result<(), RevocationError> {
        let mut conn = self.connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }
}

/// When an entry's Redis key should expire: a jti at `exp` plus `leeway`,
/// a subject at `revoked_at + subject_ttl_seconds`.
pub fn expiry(entry: &Entry, leeway: i64, subject_ttl_seconds: i64) -> i64 {
    match entry {
        Entry::Jti { exp, .. } => exp.saturating_add(leeway),
        Entry::Subject { revoked_at, .. } => revoked_at.saturating_add(subject_ttl_seconds),
    }
}

/// `jwtd revoke`: writes `entry` to the Redis of `config` and publishes it.
/// `leeway` is the entry's issuer's (the largest, 3600, for an issuer the
/// config does not name, as the store keeps it). Returns when the key
/// expires.
pub async fn revoke(
    config: &RevocationConfig,
    entry: &Entry,
    leeway: Option<i64>,
    now: UnixTime,
) -> Result<i64, RevocationError> {
    let Some(url) = &config.redis_url else {
        return Err(RevocationError::NoRedis);
    };
    let until = expiry(
        entry,
        leeway.unwrap_or(MAX_LEEWAY_SECONDS),
        config.subject_ttl_seconds,
    );
    if until <= now.0 {
        return Err(RevocationError::AlreadyExpired { until, now: now.0 });
    }
    let redis = Redis::new(url, &config.redis_prefix)?;
    tokio::time::timeout(TIMEOUT * 3, redis.write(entry, until))
        .await
        .map_err(|_| redis.error("timed out"))??;
    Ok(until)
}

/// The Redis source's task: connect, subscribe, load, apply updates, and
/// start again when the connection is lost.
pub(crate) async fn run(source: Arc<Source>, redis: Redis, max: usize, clock: Arc<dyn Clock>) {
    let mut failures = 0u32;
    loop {
        let error = session(&source, &redis, max, clock.as_ref(), &mut failures).await;
        failures = failures.saturating_add(1);
        source.failed();
        if failures.is_power_of_two() {
            tracing::warn!(
                source = "redis",
                location = redis.location(),
                failures,
                "revocation store unreachable, keeping the last entries; reconnecting: {error}"
            );
        }
        let wait = BACKOFF
            .0
            .saturating_mul(1 << failures.min(6))
            .min(BACKOFF.1);
        tokio::time::sleep(wait).await;
    }
}

/// One connection's life: returns why it ended. Resets `failures` once
/// loaded.
async fn session(
    source: &Source,
    redis: &Redis,
    max: usize,
    clock: &dyn Clock,
    failures: &mut u32,
) -> RevocationError {
    let connected = tokio::time::timeout(TIMEOUT, async {
        let mut pubsub = redis
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| redis.error(e))?;
        pubsub
            .subscribe(redis.channel())
            .await
            .map_err(|e| redis.error(e))?;
        let conn = redis.connection().await?;
        Ok::<_, RevocationError>((pubsub, conn))
    })
    .await;
    let (pubsub, mut conn) = match connected {
        Ok(Ok(both)) => both,
        Ok(Err(e)) => return e,
        Err(_) => return redis.error("connect timed out"),
    };
    if let Err(e) = full_load(source, redis, &mut conn, max, clock).await {
        return e;
    }
    if *failures > 0 {
        tracing::info!(
            source = "redis",
            location = redis.location(),
            entries = source.len(),
            "revocation store reachable again: reloaded"
        );
    }
    *failures = 0;
    let (mut sink, mut stream) = pubsub.split();
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resync =
        tokio::time::interval_at(tokio::time::Instant::now() + RESYNC_EVERY, RESYNC_EVERY);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return redis.error("subscription closed");
                };
                apply_message(source, message.get_payload_bytes(), clock.now());
            }
            _ = heartbeat.tick() => {
                match tokio::time::timeout(TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => source.synced(),
                    Ok(Err(e)) => return redis.error(e),
                    Err(_) => return redis.error("no PONG within 2 s"),
                }
            }
            _ = resync.tick() => {
                if let Err(e) = full_load(source, redis, &mut conn, max, clock).await {
                    return e;
                }
            }
        }
    }
}

/// Reads the whole store into the source.
async fn full_load(
    source: &Source,
    redis: &Redis,
    conn: &mut MultiplexedConnection,
    max: usize,
    clock: &dyn Clock,
) -> Result<(), RevocationError> {
    let (entries, invalid, capped) = redis.load(conn, max).await?;
    telemetry::revocation_refused("redis", "invalid", invalid);
    let applied = source.replace(entries, clock.now());
    if capped {
        tracing::warn!(
            source = "redis",
            location = redis.location(),
            max,
            "the revocation store holds more than revocation.max_entries entries: the rest are \
             not applied"
        );
        telemetry::revocation_refused("redis", "over_cap", 1);
    }
    tracing::info!(
        source = "redis",
        location = redis.location(),
        entries = applied.kept,
        invalid,
        "revocation store loaded"
    );
    source.synced();
    Ok(())
}

/// Applies one published entry.
fn apply_message(source: &Source, payload: &[u8], now: UnixTime) {
    let entry = match parse_entry(payload) {
        Ok(entry) => entry,
        Err(e) => {
            telemetry::revocation_refused("redis", "invalid", 1);
            tracing::warn!(source = "redis", "published revocation skipped: {e}");
            return;
        }
    };
    let (kind, issuer) = match &entry {
        Entry::Jti { iss, .. } => ("jti", iss.clone()),
        Entry::Subject { iss, .. } => ("subject", iss.clone()),
    };
    match source.apply(entry, now) {
        Ok(true) => tracing::info!(source = "redis", kind, %issuer, "revocation applied"),
        Ok(false) => {}
        Err(e) => tracing::warn!(source = "redis", kind, %issuer, "revocation not applied: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis() -> Redis {
        let url = RedisUrl::try_new(
            reqwest::Url::parse("redis://:secret@127.0.0.1:6379/0").expect("url"),
        )
        .expect("redis url");
        Redis::new(&url, "jwtd:revocation").expect("client")
    }

    #[test]
    fn keys_are_fixed_length_and_do_not_collide() {
        let r = redis();
        let jti = |iss: &str, jti: &str| Entry::Jti {
            iss: iss.into(),
            jti: jti.into(),
            exp: 1,
        };
        let a = r.key(&jti("a", "bc"));
        let b = r.key(&jti("ab", "c"));
        assert_ne!(a, b);
        assert!(
            a.starts_with("jwtd:revocation:jti:") && a.len() == 20 + 64,
            "{a}"
        );
        let sub = r.key(&Entry::Subject {
            iss: "a".into(),
            sub: "bc".into(),
            revoked_at: 1,
        });
        assert!(sub.starts_with("jwtd:revocation:sub:"), "{sub}");
        assert_eq!(a[20..], sub[20..], "same digest, told apart by kind");
        assert_eq!(r.key(&jti("a", "bc")), r.key(&jti("a", "bc")));
        assert_eq!(r.location(), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn keys_expire_with_what_they_revoke() {
        let jti = Entry::Jti {
            iss: "i".into(),
            jti: "j".into(),
            exp: 1000,
        };
        let sub = Entry::Subject {
            iss: "i".into(),
            sub: "s".into(),
            revoked_at: 1000,
        };
        assert_eq!(expiry(&jti, 60, 90_000), 1060);
        assert_eq!(expiry(&sub, 60, 90_000), 91_000);
    }
}
