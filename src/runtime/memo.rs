//! The memo of verification results: the expensive, time-independent work
//! for a token (structure, signature, parsed claims: an [`Authenticated`]),
//! keyed by the token itself ([`TokenKey`]), so a token seen before costs
//! one fast hash, one lookup and one compare. Bounded by entries and by
//! bytes. Owns no policy: the caller runs the cheap checks
//! (`verify::admit`) on every hit.
//!
//! [`Authenticated`]: crate::verifier::verify::Authenticated
//!
//! Decisions, and the numbers behind them (BENCHMARKS.md has the runs):
//! - **Keyed by the token's exact bytes**, found through a keyed fast hash
//!   ([`crate::runtime::token_key`] has the security argument). Until issue
//!   14 the key was the token's SHA-256 (~0.58 µs for a 650-byte token, most
//!   of a hit); now a hit is a foldhash pass and a memcmp, and no collision
//!   of any hash can make one token another's hit. The entry holds the
//!   token (shared with its eviction-queue slot), accounted in the byte
//!   bound.
//! - **papaya for the table.** Its reads are lock-free and write nothing
//!   shared (seize epochs are per thread), so hits scale across cores. A
//!   dashmap read takes a shard read-lock whose counter is a shared cache
//!   line (0.87× with two threads for key lookup in benches/snapshot.rs;
//!   the issue measured 0.39× for a hot set). Hits also must not clone the
//!   entry's `Arc` (its count is a shared line): callers get a borrow inside
//!   [`Memo::with_hit`].
//! - **CLOCK eviction** (second chance): inserts append the key to a FIFO
//!   under a mutex (inserts follow a signature check worth ≥ 15 µs, so the
//!   lock is cheap by comparison); a hit sets the entry's `referenced` flag
//!   only when it is clear, so a hot entry's line is written once, not per
//!   hit. When over a bound, the hand pops the oldest key: referenced
//!   entries get their flag cleared and go to the back; others (and expired
//!   ones) are removed. Each insert does a bounded amount of eviction work
//!   ([`EVICTION_STEPS`]); when every entry the hand passed was referenced,
//!   the *newcomer* yields (the entry just inserted is dropped) rather than
//!   the oldest hot entry: a memo full of entries hit since the hand last
//!   passed keeps them, and new tokens are memoized again once the hand has
//!   cleared the flags (a few inserts later). Dropping the oldest instead
//!   evicted hot entries whenever more than 16 of them stood together at the
//!   head of the queue (the load driver's overload scenario saw hot tokens
//!   miss).
//!   Measured: an insert that evicts costs 0.19 µs on one thread and 0.78 µs
//!   with two threads inserting at once (the queue mutex and papaya's writes
//!   contend), against the ≥ 15 µs signature check that precedes every
//!   insert; hits never take the mutex.
//! - **An exact entry count of our own.** papaya's `len()` sums per-thread
//!   shards without a snapshot, so under concurrent inserts and removals it
//!   can read several entries high or low (CI once saw it read past the
//!   bound by more than the number of inserting threads). The bound is
//!   enforced on one `AtomicUsize` kept beside the byte count, on the
//!   insert path only; hits never touch it.
//! - **Expiry**: an entry never outlives its token's `exp` plus leeway, nor
//!   `memo_max_ttl_seconds`; an expired entry is a miss.
//!
//! Decision record: `docs/adr/0001-snapshots-and-papaya-on-the-read-path.md`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::runtime::sync::lock;
use crate::runtime::token_key::{KeyedHasher, TokenKey, TokenRef};
use crate::verifier::verify::UnixTime;

struct Entry<V> {
    value: V,
    /// The entry is a miss from this time on (seconds since the epoch).
    valid_until: i64,
    referenced: AtomicBool,
    bytes: usize,
}

type MapRef<'a, V> =
    papaya::HashMapRef<'a, TokenKey, Entry<V>, KeyedHasher, papaya::LocalGuard<'a>>;

/// A bounded, concurrent map from token to `V`.
pub struct Memo<V> {
    map: papaya::HashMap<TokenKey, Entry<V>, KeyedHasher>,
    /// Insertion order for the CLOCK hand; each slot shares its entry's
    /// token.
    queue: Mutex<VecDeque<TokenKey>>,
    max_entries: usize,
    max_bytes: usize,
    /// Entries in `map`, exact (see the module docs).
    entries: AtomicUsize,
    bytes: AtomicUsize,
    evictions: AtomicUsize,
}

/// Per-entry bytes beyond the value's own heap and the token's: the key,
/// the entry, and the table and queue slots (papaya allocates each entry
/// separately).
pub const ENTRY_OVERHEAD: usize = 24 + 64 + 16 + 24;

/// Most eviction steps one insert performs.
const EVICTION_STEPS: usize = 16;

impl<V: Send + Sync> Memo<V> {
    /// A memo of at most `max_entries` entries and about `max_bytes` bytes.
    /// `max_entries = 0` makes every lookup miss and every insert a no-op.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            map: papaya::HashMap::builder()
                .hasher(KeyedHasher::default())
                .capacity(max_entries.min(1 << 16))
                .build(),
            queue: Mutex::new(VecDeque::new()),
            max_entries,
            max_bytes,
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            evictions: AtomicUsize::new(0),
        }
    }

    /// True when the memo can hold anything.
    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    /// Calls `f` with the entry for `key` when it exists and has not
    /// expired at `now`; the borrow lasts only for the call.
    pub fn with_hit<R>(
        &self,
        key: &TokenRef<'_>,
        now: UnixTime,
        f: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        if !self.enabled() {
            return None;
        }
        let map = self.map.pin();
        let entry = map.get(key)?;
        if now.0 >= entry.valid_until {
            return None;
        }
        if !entry.referenced.load(Ordering::Relaxed) {
            entry.referenced.store(true, Ordering::Relaxed);
        }
        Some(f(&entry.value))
    }

    /// Stores `value` for `key` until `valid_until` (seconds since the
    /// epoch), the value holding about `heap_bytes` bytes of heap, then
    /// evicts while over a bound (expired entries first, as the hand passes
    /// them).
    pub fn insert(
        &self,
        key: &TokenKey,
        value: V,
        now: UnixTime,
        valid_until: i64,
        heap_bytes: usize,
    ) {
        if !self.enabled() {
            return;
        }
        let bytes = heap_bytes + key.heap_bytes() + ENTRY_OVERHEAD + std::mem::size_of::<V>();
        let entry = Entry {
            value,
            valid_until,
            referenced: AtomicBool::new(false),
            bytes,
        };
        let map = self.map.pin();
        match map.insert(key.clone(), entry) {
            Some(old) => {
                self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
            }
            None => {
                self.entries.fetch_add(1, Ordering::Relaxed);
                lock(&self.queue).push_back(key.clone());
            }
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.evict(now, key);
    }

    /// Evicts while over a bound (at most a bounded number of steps), and
    /// removes entries that have expired at `now` when the hand passes them.
    /// `newcomer` is the entry just inserted.
    fn evict(&self, now: UnixTime, newcomer: &TokenKey) {
        let map = self.map.pin();
        let mut queue = lock(&self.queue);
        for _ in 0..EVICTION_STEPS {
            if !self.over() {
                return;
            }
            let Some(key) = queue.pop_front() else {
                return;
            };
            let Some(entry) = map.get(&key) else {
                continue;
            };
            if entry.referenced.load(Ordering::Relaxed) && now.0 < entry.valid_until {
                entry.referenced.store(false, Ordering::Relaxed);
                queue.push_back(key);
                continue;
            }
            self.remove(&map, &key);
        }
        // Still over after the bounded steps: every entry the hand passed was
        // hit since it last passed. The newcomer, not yet hit, yields (its
        // queue slot goes stale and is skipped when the hand reaches it).
        if self.over()
            && map
                .get(newcomer)
                .is_some_and(|e| !e.referenced.load(Ordering::Relaxed))
        {
            self.remove(&map, newcomer);
        }
        // Still over (the newcomer was hit already, or a concurrent insert
        // overtook it): drop the oldest outright so the bound holds.
        while self.over() {
            let Some(key) = queue.pop_front() else {
                return;
            };
            self.remove(&map, &key);
        }
    }

    fn over(&self) -> bool {
        self.len() > self.max_entries || self.bytes.load(Ordering::Relaxed) > self.max_bytes
    }

    /// Evicts `key`; called with the queue locked.
    fn remove(&self, map: &MapRef<'_, V>, key: &TokenKey) {
        if let Some(old) = map.remove(key) {
            self.entries.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many entries the memo holds.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// True when the memo holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About how many bytes the entries hold.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// How many entries were evicted to stay within the bounds.
    pub fn evictions(&self) -> usize {
        self.evictions.load(Ordering::Relaxed)
    }
}

/// A memo entry's lifetime: until the token's `exp` plus leeway, and no
/// longer than `max_ttl` seconds from `now`.
pub fn valid_until(now: UnixTime, exp: Option<i64>, leeway: i64, max_ttl: i64) -> i64 {
    let ttl_end = now.0.saturating_add(max_ttl);
    match exp {
        Some(exp) => exp.saturating_add(leeway).min(ttl_end),
        None => ttl_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::token_key::TokenHasher;

    const NOW: UnixTime = UnixTime(1_000);

    fn d(n: u32) -> TokenKey {
        static HASHER: std::sync::OnceLock<TokenHasher> = std::sync::OnceLock::new();
        let hasher = HASHER.get_or_init(TokenHasher::new);
        hasher.key(&n.to_string()).to_owned_key()
    }

    #[test]
    fn a_token_whose_hash_collides_is_not_a_hit() {
        let memo = Memo::new(10, 1 << 20);
        let genuine = TokenRef::with_hash(7, "header.payload.signature");
        memo.insert(&genuine.to_owned_key(), "valid", NOW, 2_000, 0);
        assert_eq!(memo.with_hit(&genuine, NOW, |v| *v), Some("valid"));
        // Same hash, other bytes (a forgery that found a collision): a miss.
        let forged = TokenRef::with_hash(7, "header.payload.signaturf");
        assert_eq!(memo.with_hit(&forged, NOW, |v| *v), None);
        // Inserting it is a separate entry, not a replacement.
        memo.insert(&forged.to_owned_key(), "other", NOW, 2_000, 0);
        assert_eq!(memo.len(), 2);
        assert_eq!(memo.with_hit(&genuine, NOW, |v| *v), Some("valid"));
    }

    #[test]
    fn an_entry_accounts_for_its_token() {
        let memo = Memo::new(10, 1 << 20);
        let short = TokenRef::with_hash(1, "a.b.c");
        let long = "x".repeat(1000);
        let long = TokenRef::with_hash(2, &long);
        memo.insert(&short.to_owned_key(), 0u32, NOW, 2_000, 0);
        let one = memo.bytes();
        memo.insert(&long.to_owned_key(), 0u32, NOW, 2_000, 0);
        assert_eq!(memo.bytes() - one, one + 995);
    }

    #[test]
    fn hits_and_expiry() {
        let memo = Memo::new(10, 1 << 20);
        memo.insert(&d(1), "one", NOW, 1_010, 0);
        assert_eq!(memo.with_hit(&d(1).borrowed(), NOW, |v| *v), Some("one"));
        assert_eq!(
            memo.with_hit(&d(1).borrowed(), UnixTime(1_009), |v| *v),
            Some("one")
        );
        assert_eq!(
            memo.with_hit(&d(1).borrowed(), UnixTime(1_010), |v| *v),
            None,
            "expired"
        );
        assert_eq!(memo.with_hit(&d(2).borrowed(), NOW, |v| *v), None);
    }

    #[test]
    fn a_disabled_memo_holds_nothing() {
        let memo = Memo::new(0, 1 << 20);
        memo.insert(&d(1), 1, NOW, 2_000, 0);
        assert!(memo.is_empty());
        assert_eq!(memo.with_hit(&d(1).borrowed(), NOW, |v| *v), None);
    }

    #[test]
    fn entry_bound_holds_and_referenced_entries_get_a_second_chance() {
        let memo = Memo::new(4, 1 << 20);
        for n in 0..4 {
            memo.insert(&d(n), n, NOW, 2_000, 0);
        }
        // Touch 0 and 1: they survive the next two inserts, 2 and 3 do not.
        memo.with_hit(&d(0).borrowed(), NOW, |_| ());
        memo.with_hit(&d(1).borrowed(), NOW, |_| ());
        memo.insert(&d(4), 4, NOW, 2_000, 0);
        memo.insert(&d(5), 5, NOW, 2_000, 0);
        assert_eq!(memo.len(), 4);
        let alive: Vec<u32> = (0..6)
            .filter(|n| memo.with_hit(&d(*n).borrowed(), NOW, |_| ()).is_some())
            .collect();
        assert_eq!(alive, [0, 1, 4, 5]);
        assert_eq!(memo.evictions(), 2);
    }

    #[test]
    fn byte_bound_holds() {
        let per = ENTRY_OVERHEAD + std::mem::size_of::<u32>() + 1000 + d(0).heap_bytes();
        let memo = Memo::new(1000, per * 3);
        for n in 0..10 {
            memo.insert(&d(n), n, NOW, 2_000, 1000);
            assert!(memo.bytes() <= per * 3, "{} > {}", memo.bytes(), per * 3);
        }
        assert_eq!(memo.len(), 3);
    }

    #[test]
    fn reinserting_replaces_and_keeps_accounting() {
        let memo = Memo::new(10, 1 << 20);
        memo.insert(&d(1), 1, NOW, 2_000, 100);
        let bytes = memo.bytes();
        memo.insert(&d(1), 2, NOW, 2_000, 100);
        assert_eq!(memo.bytes(), bytes);
        assert_eq!(memo.with_hit(&d(1).borrowed(), NOW, |v| *v), Some(2));
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn lifetime_is_bounded_by_exp_and_max_ttl() {
        assert_eq!(valid_until(NOW, Some(1_100), 60, 300), 1_160);
        assert_eq!(valid_until(NOW, Some(5_000), 60, 300), 1_300);
        assert_eq!(valid_until(NOW, None, 60, 300), 1_300);
        assert_eq!(valid_until(NOW, Some(i64::MAX), 60, 300), 1_300);
    }

    #[test]
    fn a_hot_set_longer_than_the_hands_steps_survives_a_stream_of_cold_inserts() {
        let memo: Memo<u32> = Memo::new(1000, usize::MAX);
        let hot: Vec<_> = (0..100).map(d).collect();
        for (n, digest) in hot.iter().enumerate() {
            memo.insert(digest, n as u32, NOW, i64::MAX, 0);
        }
        for n in 100..1000 {
            memo.insert(&d(n), n, NOW, i64::MAX, 0);
        }
        let mut next = 1000;
        for _ in 0..100 {
            for digest in &hot {
                assert!(
                    memo.with_hit(&digest.borrowed(), NOW, |_| ()).is_some(),
                    "a hot entry was evicted"
                );
            }
            for _ in 0..50 {
                memo.insert(&d(next), next, NOW, i64::MAX, 0);
                next += 1;
            }
            assert!(memo.len() <= 1000);
        }
        // Cold entries were still memoized and evicted in turn, not refused.
        assert!(memo.evictions() > 4000, "{}", memo.evictions());
        assert!(
            memo.with_hit(&d(next - 1).borrowed(), NOW, |_| ())
                .is_some(),
            "the newest cold entry is kept"
        );
    }

    #[test]
    fn concurrent_hammering_stays_within_the_bound() {
        let memo = std::sync::Arc::new(Memo::new(256, 1 << 30));
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let memo = std::sync::Arc::clone(&memo);
                s.spawn(move || {
                    for n in 0..5_000u32 {
                        let key = d(t * 100_000 + n % 700);
                        if memo.with_hit(&key.borrowed(), NOW, |_| ()).is_none() {
                            memo.insert(&key, n, NOW, 2_000, 64);
                        }
                        // Each other thread may be between its insert and
                        // its eviction.
                        let len = memo.len();
                        assert!(len <= 256 + 3, "bound exceeded: {len}");
                    }
                });
            }
        });
        assert!(memo.len() <= 256);
        // The counts match the table once the threads are done.
        let map = memo.map.pin();
        assert_eq!(memo.len(), map.len());
        assert_eq!(memo.bytes(), map.values().map(|e| e.bytes).sum::<usize>());
    }
}
