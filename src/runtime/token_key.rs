//! How the engine's tables know a token: its exact bytes, found through a
//! keyed hash computed once per token. The memo, the negative memo, the
//! in-flight table and a batch's duplicate detection all use it.
//!
//! Decisions:
//! - **Exact bytes decide, the hash only finds the bucket.** Two keys are
//!   equal only when their tokens are byte for byte the same, so no hash
//!   collision, however it is found, can turn one token into another's
//!   memoized answer. That is a stronger guarantee than the SHA-256 digest
//!   these tables were keyed by before (collision resistance is a
//!   computational assumption; equality is not), and cheaper: foldhash over
//!   a 650-byte token plus a full compare on a hit cost a fraction of the
//!   ~0.58 µs SHA-256 of the same bytes (BENCHMARKS.md, "Memo hit and
//!   batch engine").
//! - **foldhash, keyed per engine from the OS's random source.** The hash
//!   only spreads keys over buckets, so speed matters and cryptographic
//!   strength does not; foldhash (already built for hashbrown) is among the
//!   fastest for long strings. Its own global seed comes from address-space
//!   randomness, so the 128 bits of seed are taken instead from std's
//!   `RandomState` (SipHash keyed from `getrandom`, a PRF of OS randomness)
//!   and never leave the process. Not aws-lc-rs's `rand`: its first call
//!   initialises a jitter-entropy source, 418 M instructions (callgrind),
//!   which every process start would pay. What an attacker who somehow
//!   learned them could do is bounded: only tokens that verified enter the
//!   positive memo, the negative memo and the in-flight table are bounded
//!   in entries, and a batch in length, so colliding keys could slow their
//!   own lookups within those bounds, never change an answer.
//! - **The owned key holds the token as `Arc<str>`**: the memo's entry and
//!   its eviction queue share one copy (the queue slot is a pointer, not a
//!   second token), and lookups borrow ([`TokenRef`]), so a hit neither
//!   allocates nor touches a reference count. The price is the token's
//!   bytes in every entry, accounted in the memo's byte bound.
//!
//! Decision record: `docs/adr/0003-memo-key-and-negative-memo.md`.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use foldhash::SharedSeed;
use foldhash::quality::FoldHasher;

/// The keyed hash of tokens for one engine's tables.
#[derive(Clone)]
pub struct TokenHasher {
    seed: u64,
    shared: SharedSeed,
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHasher { .. }") // the seed stays private
    }
}

impl TokenHasher {
    /// A hasher with a fresh 128-bit seed from the operating system's
    /// random source (see the module docs).
    pub fn new() -> Self {
        let keys = std::collections::hash_map::RandomState::new();
        Self {
            seed: keys.hash_one(0_u8),
            shared: SharedSeed::from_u64(keys.hash_one(1_u8)),
        }
    }

    /// `token` with its hash under this hasher's seed.
    pub fn key<'a>(&self, token: &'a str) -> TokenRef<'a> {
        let mut hasher = FoldHasher::with_seed(self.seed, &self.shared);
        hasher.write(token.as_bytes());
        TokenRef {
            hash: hasher.finish(),
            token,
        }
    }
}

impl Default for TokenHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// A token and its hash, borrowed: what lookups and a batch's duplicate
/// detection use.
#[derive(Debug, Clone, Copy)]
pub struct TokenRef<'a> {
    hash: u64,
    token: &'a str,
}

impl<'a> TokenRef<'a> {
    /// The token.
    pub fn token(&self) -> &'a str {
        self.token
    }

    /// An owned copy, for a table entry.
    pub fn to_owned_key(&self) -> TokenKey {
        TokenKey {
            hash: self.hash,
            token: Arc::from(self.token),
        }
    }

    /// A key with a chosen hash: for tests that need colliding keys.
    #[cfg(test)]
    pub(crate) fn with_hash(hash: u64, token: &'a str) -> Self {
        Self { hash, token }
    }
}

impl PartialEq for TokenRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.token == other.token
    }
}

impl Eq for TokenRef<'_> {}

impl Hash for TokenRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A token and its hash, owned by a table entry.
#[derive(Debug, Clone)]
pub struct TokenKey {
    hash: u64,
    token: Arc<str>,
}

impl TokenKey {
    /// The borrowed form.
    pub fn borrowed(&self) -> TokenRef<'_> {
        TokenRef {
            hash: self.hash,
            token: &self.token,
        }
    }

    /// Heap bytes this key holds beyond its own size (the shared token).
    pub fn heap_bytes(&self) -> usize {
        // Arc's two counts, then the bytes.
        2 * std::mem::size_of::<usize>() + self.token.len()
    }
}

impl PartialEq for TokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.borrowed() == other.borrowed()
    }
}

impl Eq for TokenKey {}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.borrowed().hash(state);
    }
}

impl papaya::Equivalent<TokenKey> for TokenRef<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        *self == key.borrowed()
    }
}

/// Bucket hashing for keys that carry their hash already: passes it on.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyedHasher(u64);

impl Hasher for KeyedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Keys write only their u64; fold anything else in rather than
        // trust that no caller ever does.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).rotate_left(29);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

impl BuildHasher for KeyedHasher {
    type Hasher = KeyedHasher;
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_tokens_hash_alike_and_different_tokens_do_not_compare_equal() {
        let hasher = TokenHasher::new();
        let a = hasher.key("header.payload.signature");
        let copy = String::from("header.payload.signature");
        let b = hasher.key(&copy);
        assert_eq!(a, b);
        assert_eq!(a.hash, b.hash);
        let c = hasher.key("header.payload.signaturf");
        assert_ne!(a, c);
        // A collision forced on the hash still leaves them different keys.
        let forced = TokenRef::with_hash(a.hash, c.token());
        assert_ne!(a, forced);
        assert!(!papaya::Equivalent::equivalent(&forced, &a.to_owned_key()));
        assert!(papaya::Equivalent::equivalent(&b, &a.to_owned_key()));
    }

    #[test]
    fn each_hasher_has_its_own_seed() {
        let (one, two) = (TokenHasher::new(), TokenHasher::new());
        let token = "eyJhbGciOiJIUzI1NiJ9.e30.sig";
        assert_ne!(
            one.key(token).hash,
            two.key(token).hash,
            "two fresh seeds gave the same hash (1 in 2^64)"
        );
    }
}
