//! Strict JSON for JOSE headers, JWT claims and JWK Sets: a member name may
//! appear only once in any object, at any depth.
//!
//! serde_json keeps the last of two equal member names, so `{"iss":"a","iss":"b"}`
//! would mean different things to jwtd and to a library that keeps the first.
//! RFC 7515 §4 and RFC 7519 §4 let a parser either reject such input or take the
//! last member; jwtd rejects it. The check runs during the one parse of each
//! object (no second pass), names without escapes are borrowed from the input,
//! and objects with many members switch from a linear scan to a hash set so a
//! crafted 8 KiB payload cannot make the check quadratic.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Objects with more members than this check duplicates through a hash set.
const LINEAR_SCAN_LIMIT: usize = 16;

/// A member name, borrowed from the input when it contains no escapes.
pub(crate) struct Name<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// The names seen so far in one object: the first [`LINEAR_SCAN_LIMIT`] in
/// an inline array (no allocation for ordinary headers and claims), the rest
/// in a hash set.
#[derive(Default)]
pub(crate) struct Seen<'de> {
    inline: [Cow<'de, str>; LINEAR_SCAN_LIMIT],
    len: usize,
    set: Option<HashSet<Cow<'de, str>>>,
}

impl<'de> Seen<'de> {
    /// Records `name`; false when the object already had it.
    pub(crate) fn insert(&mut self, name: Cow<'de, str>) -> bool {
        if let Some(set) = &mut self.set {
            return set.insert(name);
        }
        if self.inline[..self.len].contains(&name) {
            return false;
        }
        if self.len < LINEAR_SCAN_LIMIT {
            self.inline[self.len] = name;
            self.len += 1;
        } else {
            let mut set: HashSet<Cow<'de, str>> =
                self.inline.iter_mut().map(std::mem::take).collect();
            set.insert(name);
            self.set = Some(set);
        }
        true
    }
}

/// Where a duplicate member name was found, reported through a [`Cell`] so the
/// caller can tell it from any other JSON error.
pub(crate) type DuplicateFlag = Cell<bool>;

/// Deserializes any JSON value and discards it, failing on a duplicate member
/// name anywhere inside. Reports whether the value was `null`.
pub(crate) struct Checked<'f>(pub(crate) &'f DuplicateFlag);

impl<'de> DeserializeSeed<'de> for Checked<'_> {
    /// True when the value was JSON `null`.
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element_seed(Checked(self.0))?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut seen = Seen::default();
        while let Some(Name(name)) = map.next_key()? {
            if !seen.insert(name) {
                return Err(duplicate(self.0));
            }
            map.next_value_seed(Checked(self.0))?;
        }
        Ok(false)
    }
}

/// Marks the flag and returns the error that stops the parse.
pub(crate) fn duplicate<E: de::Error>(flag: &DuplicateFlag) -> E {
    flag.set(true);
    E::custom("duplicate member name")
}

/// Checks that `bytes` is one JSON value with no duplicate member names and
/// nothing after it.
pub(crate) fn check_no_duplicates(bytes: &[u8]) -> Result<(), JsonProblem> {
    let flag = DuplicateFlag::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Checked(&flag).deserialize(&mut de).and_then(|_| de.end());
    match parsed {
        Ok(()) => Ok(()),
        Err(_) if flag.get() => Err(JsonProblem::Duplicate),
        Err(_) => Err(JsonProblem::Invalid),
    }
}

/// Why a JSON document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonProblem {
    /// Not valid JSON, or not of the expected shape.
    Invalid,
    /// A member name appears twice in one object.
    Duplicate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_distinct_names_at_every_depth() {
        let doc = br#"{"a":1,"b":{"a":2,"c":[{"a":3},{"a":4}]},"d":null}"#;
        assert_eq!(check_no_duplicates(doc), Ok(()));
    }

    #[test]
    fn rejects_duplicates_at_top_level_and_nested() {
        assert_eq!(
            check_no_duplicates(br#"{"a":1,"a":2}"#),
            Err(JsonProblem::Duplicate)
        );
        assert_eq!(
            check_no_duplicates(br#"{"x":[{"a":1,"b":2,"a":3}]}"#),
            Err(JsonProblem::Duplicate)
        );
    }

    #[test]
    fn escaped_names_that_decode_equal_are_duplicates() {
        assert_eq!(
            check_no_duplicates(br#"{"iss":1,"\u0069ss":2}"#),
            Err(JsonProblem::Duplicate)
        );
    }

    #[test]
    fn many_members_switch_to_the_hash_set_and_still_catch_repeats() {
        let mut doc = String::from("{");
        for i in 0..100 {
            doc.push_str(&format!("\"m{i}\":{i},"));
        }
        doc.push_str("\"m7\":0}");
        assert_eq!(
            check_no_duplicates(doc.as_bytes()),
            Err(JsonProblem::Duplicate)
        );
        let distinct = doc.replace("\"m7\":0}", "\"m100\":0}");
        assert_eq!(check_no_duplicates(distinct.as_bytes()), Ok(()));
    }

    #[test]
    fn trailing_bytes_and_bad_json_are_invalid() {
        assert_eq!(check_no_duplicates(b"{} x"), Err(JsonProblem::Invalid));
        assert_eq!(check_no_duplicates(b"{\"a\":}"), Err(JsonProblem::Invalid));
        assert_eq!(check_no_duplicates(b""), Err(JsonProblem::Invalid));
    }
}
