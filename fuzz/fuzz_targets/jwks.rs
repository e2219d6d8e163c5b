//! Feeds arbitrary bytes, as a JWK Set document, to
//! `jwtd::keys::KeySet::from_jwks`, once as fetched (`Origin::Remote`) and
//! once as read from a file (`Origin::LocalFile`).
//!
//! Asserts, for both origins: no panic; a loaded set is non-empty, within
//! `MAX_KEYS_PER_SET`, every key verifies at least one algorithm, `by_kid`
//! finds each key that has a kid (and no two keys share one), and symmetric
//! keys (the only ones that verify HS256/384/512) never sit beside public
//! keys; refusals are listed in set order. From `Remote`: no key verifies an
//! HS algorithm, i.e. no `oct` key was loaded (a `Key` shows only its kid and
//! the algorithms it fits, so that is what can be observed). Between the
//! two: when the `Remote` load succeeds, the `LocalFile` load of the same
//! bytes gives the same keys and refusals (only `oct` keys may differ, and a
//! set with any public key cannot hold one); when the `LocalFile` set has no
//! HS key, the `Remote` load gives the same set.
#![no_main]

use std::collections::HashSet;
use std::sync::Arc;

use jwtd::jose::Algorithm;
use jwtd::keys::{Key, KeySet, MAX_KEYS_PER_SET, Origin, Refused};
use libfuzzer_sys::fuzz_target;

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// True for a key that verifies an HS algorithm: an `oct` key.
fn is_secret(key: &Key) -> bool {
    HMAC.iter().any(|&a| key.fits(a))
}

fn has_secret(set: &KeySet) -> bool {
    set.keys().iter().any(|k| is_secret(k))
}

/// What can be compared between two loads, as text: each key's kid and
/// algorithms, and the refusals.
fn shape(set: &KeySet, refused: &[Refused]) -> String {
    let keys: Vec<_> = set
        .keys()
        .iter()
        .map(|k| {
            let algs = Algorithm::ALL.iter().copied().filter(|&a| k.fits(a));
            (k.kid(), algs.collect::<Vec<_>>())
        })
        .collect();
    format!("{keys:?} {refused:?}")
}

fn check(set: &KeySet, refused: &[Refused]) {
    assert!(!set.is_empty() && set.len() == set.keys().len());
    assert!(set.len() <= MAX_KEYS_PER_SET);
    assert!(refused.windows(2).all(|w| w[0].index < w[1].index));
    let mut kids = HashSet::new();
    for key in set.keys() {
        assert!(
            Algorithm::ALL.iter().any(|&a| key.fits(a)),
            "a loaded key verifies nothing: {key:?}"
        );
        if let Some(kid) = key.kid() {
            assert!(kids.insert(kid), "two loaded keys share kid {kid:?}");
            let found = set.by_kid(kid).expect("by_kid finds a loaded kid");
            assert!(Arc::ptr_eq(found, key), "by_kid({kid:?}) is another key");
        }
    }
    let secrets = set.keys().iter().filter(|k| is_secret(k)).count();
    assert!(
        secrets == 0 || secrets == set.len(),
        "symmetric and public keys in one set: {set:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let remote = KeySet::from_jwks(data, Origin::Remote);
    let local = KeySet::from_jwks(data, Origin::LocalFile);
    if let Ok((set, refused)) = &remote {
        check(set, refused);
        assert!(!has_secret(set), "an oct key loaded from Remote: {set:?}");
    }
    if let Ok((set, refused)) = &local {
        check(set, refused);
    }
    match (&remote, &local) {
        (Ok((r, r_refused)), Ok((l, l_refused))) => {
            assert_eq!(shape(r, r_refused), shape(l, l_refused));
        }
        (Ok(_), Err(e)) => panic!("loads from Remote but not from a file: {e}"),
        (Err(e), Ok((l, _))) => {
            assert!(has_secret(l), "loads from a file, not from Remote ({e})");
        }
        (Err(_), Err(_)) => {}
    }
});
