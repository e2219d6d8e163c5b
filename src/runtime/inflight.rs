//! One signature check for a token that several calls bring at once: the
//! table of tokens being checked right now, keyed by the token
//! ([`TokenKey`]). The first call
//! to miss the memo on a token *leads* (it checks); calls that miss on the
//! same token while it is being checked *follow* and are handed the
//! leader's outcome. After a user logs in, the burst of fan-out requests
//! carrying the new token costs one check, not one per request.
//!
//! Decisions:
//! - **dashmap** for the table: every use is a write (join inserts, settle
//!   removes) and entries live for one check (~25 µs), the workload dashmap's
//!   sharded locks suit; the hit path never touches it (memo hits stay on
//!   papaya's lock-free reads). A join and a settle cost one shard lock each,
//!   measured beside the check they save in `benches/verify.rs`
//!   (`inflight/*`).
//! - **A leader that goes away releases its followers.** [`Lead`] removes
//!   its entry when dropped; if it never settled (its call was cancelled or
//!   shed before the check ran), followers see the channel close with no
//!   outcome and check the token themselves. Nobody waits on a check that
//!   will not happen.
//! - **Only what a memo could hold is shared**: the authentication of a
//!   genuine token, or a rejection that depends only on the bytes and the
//!   key set (MALFORMED, BAD_SIGNATURE). Followers still run their own cheap
//!   checks (their call's audiences and issuer filter, the time) on it, as a
//!   memo hit does; anything else (an unknown kid, keys unavailable) is not
//!   shared, and followers check for themselves.
//! - **Bounded by the work in flight**: an entry exists only while its
//!   leader's check is pending, which admission control bounds.

use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::watch;

use crate::runtime::token_key::{KeyedHasher, TokenKey};

/// The tokens being checked now. An entry gets a channel only when a second
/// call joins: most cold tokens are brought by one call, and for them a
/// lead costs one insert and one remove (the channel's allocation would
/// have doubled that; measured in `benches/verify.rs`).
#[derive(Debug)]
pub struct InFlight<T> {
    map: DashMap<TokenKey, Option<watch::Sender<Option<T>>>, KeyedHasher>,
}

/// What a call does about a token it missed the memo on.
#[derive(Debug)]
pub enum Join<T> {
    /// Nobody is checking it: this call does, and settles the outcome.
    Lead(Lead<T>),
    /// Another call is checking it: wait for its outcome.
    Follow(Follower<T>),
}

/// The right, and duty, to check one token and publish the outcome.
#[derive(Debug)]
pub struct Lead<T> {
    table: Arc<InFlight<T>>,
    key: TokenKey,
    /// The entry is gone already (settled with an outcome).
    removed: bool,
}

/// A wait for another call's check.
#[derive(Debug)]
pub struct Follower<T>(watch::Receiver<Option<T>>);

impl<T: Clone + Send + Sync> InFlight<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            map: DashMap::with_hasher(KeyedHasher::default()),
        }
    }

    /// Tokens being checked now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no token is being checked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Leads the check of `key`, or follows the call already leading it.
    pub fn join(self: &Arc<Self>, key: &TokenKey) -> Join<T> {
        match self.map.entry(key.clone()) {
            Entry::Occupied(mut led) => {
                let follower = match led.get() {
                    Some(tx) => tx.subscribe(),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        led.insert(Some(tx));
                        rx
                    }
                };
                Join::Follow(Follower(follower))
            }
            Entry::Vacant(slot) => {
                slot.insert(None);
                Join::Lead(Lead {
                    table: Arc::clone(self),
                    key: key.clone(),
                    removed: false,
                })
            }
        }
    }
}

impl<T: Clone + Send + Sync> Default for InFlight<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Lead<T> {
    /// Publishes the outcome to every follower (`None`: nothing they can
    /// use, they check for themselves) and ends the lead.
    pub fn settle(mut self, outcome: Option<T>) {
        let Some(outcome) = outcome else {
            return; // dropping `self` closes the channel, with no value
        };
        self.removed = true;
        if let Some((_, Some(tx))) = self.table.map.remove(&self.key) {
            // Taken out with the entry, so no follower can join after this:
            // a call that misses the memo now leads a check of its own.
            tx.send_replace(Some(outcome));
        }
    }
}

impl<T> Drop for Lead<T> {
    fn drop(&mut self) {
        // A channel removed here closes with no value: followers that
        // joined see it and check for themselves.
        if !self.removed {
            self.table.map.remove(&self.key);
        }
    }
}

impl<T: Clone> Follower<T> {
    /// The leader's outcome; `None` when the leader ended without one.
    pub async fn outcome(mut self) -> Option<T> {
        match self.0.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> TokenKey {
        let token = format!("token-{n}");
        crate::runtime::token_key::TokenRef::with_hash(u64::from(n % 2), &token).to_owned_key()
    }

    #[tokio::test]
    async fn the_first_leads_and_the_others_get_its_outcome() {
        let table = Arc::new(InFlight::<u32>::new());
        let Join::Lead(lead) = table.join(&digest(1)) else {
            panic!("the first call leads");
        };
        let followers: Vec<_> = (0..3)
            .map(|_| match table.join(&digest(1)) {
                Join::Follow(f) => f,
                Join::Lead(_) => panic!("a second call follows"),
            })
            .collect();
        assert!(
            matches!(table.join(&digest(2)), Join::Lead(_)),
            "another token is led separately"
        );
        assert!(
            matches!(table.join(&digest(3)), Join::Lead(_)),
            "a token whose hash collides with token 1's is led separately"
        );
        assert_eq!(table.len(), 1, "the dropped leads left no entry");
        let waits = tokio::spawn(async move {
            let mut got = Vec::new();
            for f in followers {
                got.push(f.outcome().await);
            }
            got
        });
        lead.settle(Some(7));
        assert_eq!(waits.await.expect("joins"), [Some(7); 3]);
        assert!(table.is_empty(), "a settled lead leaves no entry");
        assert!(
            matches!(table.join(&digest(1)), Join::Lead(_)),
            "after the check, the next miss leads again"
        );
    }

    #[tokio::test]
    async fn a_lead_dropped_without_an_outcome_releases_its_followers() {
        let table = Arc::new(InFlight::<u32>::new());
        let Join::Lead(lead) = table.join(&digest(9)) else {
            panic!("leads");
        };
        let Join::Follow(follower) = table.join(&digest(9)) else {
            panic!("follows");
        };
        let wait = tokio::spawn(follower.outcome());
        drop(lead);
        assert_eq!(wait.await.expect("joins"), None);
        assert!(table.is_empty());

        let Join::Lead(lead) = table.join(&digest(9)) else {
            panic!("leads");
        };
        let Join::Follow(follower) = table.join(&digest(9)) else {
            panic!("follows");
        };
        lead.settle(None);
        assert_eq!(follower.outcome().await, None, "nothing to share");
    }
}
