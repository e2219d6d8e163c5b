//! Revocation entries as lists, Redis values and `jwtd revoke` carry them:
//! one JSON object per line, either `{"iss", "jti", "exp"}` or `{"iss",
//! "sub", "revoked_at"}`. Parses and prints; keeps nothing and reads no
//! clock.
//!
//! Decisions:
//! - **Strict shapes, other members ignored.** An object with both `jti`
//!   and `sub` is refused rather than guessed at (one line, one meaning); a
//!   number that is not an integer, an empty string or a string over
//!   [`MAX_FIELD_BYTES`] (4 KiB; no token jwtd accepts by default carries a
//!   longer claim, and it bounds what a hostile list can make jwtd hold) is
//!   a bad line. Duplicate member names are refused, as everywhere jwtd
//!   reads JSON.
//! - **A bad line is skipped, the rest loads**: a list is many independent
//!   revocations, and refusing all of them for one typo would un-revoke the
//!   others. Each bad line is reported with its 1-based line number.
//! - **One printed form** ([`Entry::to_line`]): members in a fixed order,
//!   the same bytes in a file, a Redis value and `jwtd revoke`'s output.

use serde_json::{Map, Value};

use crate::verifier::json;

/// Longest `iss`, `jti` or `sub` an entry may carry, in bytes.
pub const MAX_FIELD_BYTES: usize = 4096;

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The token of issuer `iss` with this `jti`; pointless after its `exp`
    /// plus the issuer's leeway.
    Jti {
        /// The issuer the token belongs to.
        iss: String,
        /// The token's `jti`.
        jti: String,
        /// The token's `exp` (or later), seconds since the epoch.
        exp: i64,
    },
    /// Every token of issuer `iss` and subject `sub` issued before
    /// `revoked_at` (a token without `iat` counts as issued before).
    Subject {
        /// The issuer.
        iss: String,
        /// The subject.
        sub: String,
        /// Seconds since the epoch.
        revoked_at: i64,
    },
}

impl Entry {
    /// The issuer the entry belongs to.
    pub fn issuer(&self) -> &str {
        match self {
            Entry::Jti { iss, .. } | Entry::Subject { iss, .. } => iss,
        }
    }

    /// The entry as one JSON line (no newline), members in the order the
    /// format is written in: `iss` first, the time last.
    pub fn to_line(&self) -> String {
        // `Value`'s Display escapes a string as JSON and cannot fail.
        let quote = |s: &str| Value::String(s.to_owned()).to_string();
        match self {
            Entry::Jti { iss, jti, exp } => {
                format!(
                    r#"{{"iss":{},"jti":{},"exp":{exp}}}"#,
                    quote(iss),
                    quote(jti)
                )
            }
            Entry::Subject {
                iss,
                sub,
                revoked_at,
            } => format!(
                r#"{{"iss":{},"sub":{},"revoked_at":{revoked_at}}}"#,
                quote(iss),
                quote(sub)
            ),
        }
    }
}

/// Why a line is not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// Not JSON, not an object, or an object with a member name twice.
    #[error("not a JSON object without duplicate members")]
    NotObject,
    /// Has neither `jti` nor `sub`.
    #[error("has neither jti (with exp) nor sub (with revoked_at)")]
    NoShape,
    /// Has both `jti` and `sub`.
    #[error("has both jti and sub: one entry revokes one or the other")]
    BothShapes,
    /// A member the shape needs is absent.
    #[error("lacks {0}")]
    Missing(&'static str),
    /// A string member that is not a string, or is empty or too long.
    #[error("{0} is not a string of 1 to {MAX_FIELD_BYTES} bytes")]
    BadString(&'static str),
    /// A time member that is not an integer number of seconds.
    #[error("{0} is not an integer (seconds since the epoch)")]
    BadTime(&'static str),
}

/// A line of a list that is not an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why it was skipped.
    pub error: EntryError,
}

/// What a list held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedList {
    /// The entries, in list order.
    pub entries: Vec<Entry>,
    /// The lines skipped, in list order.
    pub bad: Vec<BadLine>,
}

/// Parses one entry from the bytes of one JSON object.
pub fn parse_entry(bytes: &[u8]) -> Result<Entry, EntryError> {
    json::check_no_duplicates(bytes).map_err(|_| EntryError::NotObject)?;
    let value: Value = serde_json::from_slice(bytes).map_err(|_| EntryError::NotObject)?;
    let Value::Object(object) = value else {
        return Err(EntryError::NotObject);
    };
    let iss = || string(&object, "iss");
    match (object.get("jti"), object.get("sub")) {
        (Some(_), Some(_)) => Err(EntryError::BothShapes),
        (Some(_), None) => Ok(Entry::Jti {
            iss: iss()?,
            jti: string(&object, "jti")?,
            exp: time(&object, "exp")?,
        }),
        (None, Some(_)) => Ok(Entry::Subject {
            iss: iss()?,
            sub: string(&object, "sub")?,
            revoked_at: time(&object, "revoked_at")?,
        }),
        (None, None) => Err(EntryError::NoShape),
    }
}

fn string(object: &Map<String, Value>, name: &'static str) -> Result<String, EntryError> {
    match object.get(name) {
        None => Err(EntryError::Missing(name)),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_FIELD_BYTES => Ok(s.clone()),
        Some(_) => Err(EntryError::BadString(name)),
    }
}

fn time(object: &Map<String, Value>, name: &'static str) -> Result<i64, EntryError> {
    match object.get(name) {
        None => Err(EntryError::Missing(name)),
        Some(v) => v.as_i64().ok_or(EntryError::BadTime(name)),
    }
}

/// Parses a JSON Lines list: one entry per line; blank lines are skipped,
/// a trailing `\r` is ignored, every other line is an entry or a
/// [`BadLine`].
pub fn parse_list(text: &[u8]) -> ParsedList {
    let mut list = ParsedList::default();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_entry(line) {
            Ok(entry) => list.entries.push(entry),
            Err(error) => list.bad.push(BadLine { line: i + 1, error }),
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jti(iss: &str, jti: &str, exp: i64) -> Entry {
        Entry::Jti {
            iss: iss.into(),
            jti: jti.into(),
            exp,
        }
    }

    #[test]
    fn both_shapes_parse_and_other_members_are_ignored() {
        assert_eq!(
            parse_entry(br#"{"iss": "https://i", "jti": "j1", "exp": 1767225600}"#),
            Ok(jti("https://i", "j1", 1_767_225_600))
        );
        assert_eq!(
            parse_entry(
                br#"{"iss":"https://i","sub":"alice","revoked_at":1767225600,"note":"laptop stolen","by":{"x":1}}"#
            ),
            Ok(Entry::Subject {
                iss: "https://i".into(),
                sub: "alice".into(),
                revoked_at: 1_767_225_600
            })
        );
        // `exp` beside a subject entry is another member, ignored.
        assert!(matches!(
            parse_entry(br#"{"iss":"i","sub":"s","revoked_at":1,"exp":2}"#),
            Ok(Entry::Subject { .. })
        ));
    }

    #[test]
    fn bad_entries_say_why() {
        for (line, want) in [
            (&b"not json"[..], EntryError::NotObject),
            (b"[1,2]", EntryError::NotObject),
            (
                b"{\"iss\":\"i\",\"jti\":\"j\",\"exp\":1,\"exp\":2}",
                EntryError::NotObject,
            ),
            (b"{\"iss\":\"i\"}", EntryError::NoShape),
            (
                b"{\"iss\":\"i\",\"jti\":\"j\",\"sub\":\"s\",\"exp\":1}",
                EntryError::BothShapes,
            ),
            (b"{\"jti\":\"j\",\"exp\":1}", EntryError::Missing("iss")),
            (b"{\"iss\":\"i\",\"jti\":\"j\"}", EntryError::Missing("exp")),
            (
                b"{\"iss\":\"i\",\"sub\":\"s\"}",
                EntryError::Missing("revoked_at"),
            ),
            (
                b"{\"iss\":\"i\",\"jti\":\"\",\"exp\":1}",
                EntryError::BadString("jti"),
            ),
            (
                b"{\"iss\":7,\"jti\":\"j\",\"exp\":1}",
                EntryError::BadString("iss"),
            ),
            (
                b"{\"iss\":\"i\",\"jti\":\"j\",\"exp\":\"1767225600\"}",
                EntryError::BadTime("exp"),
            ),
            (
                b"{\"iss\":\"i\",\"sub\":\"s\",\"revoked_at\":1.5}",
                EntryError::BadTime("revoked_at"),
            ),
        ] {
            assert_eq!(
                parse_entry(line),
                Err(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let long = format!(
            r#"{{"iss":"i","jti":"{}","exp":1}}"#,
            "x".repeat(MAX_FIELD_BYTES + 1)
        );
        assert_eq!(
            parse_entry(long.as_bytes()),
            Err(EntryError::BadString("jti"))
        );
        let longest = format!(
            r#"{{"iss":"i","jti":"{}","exp":1}}"#,
            "x".repeat(MAX_FIELD_BYTES)
        );
        assert!(parse_entry(longest.as_bytes()).is_ok());
    }

    #[test]
    fn a_list_keeps_its_good_lines_and_numbers_its_bad_ones() {
        let text = b"{\"iss\":\"i\",\"jti\":\"a\",\"exp\":10}\r\n\
                     \n\
                     {\"iss\":\"i\",\"jti\":\"b\"}\n\
                     garbage\n   \n\
                     {\"iss\":\"i\",\"sub\":\"s\",\"revoked_at\":5}";
        let list = parse_list(text);
        assert_eq!(
            list.entries,
            [
                jti("i", "a", 10),
                Entry::Subject {
                    iss: "i".into(),
                    sub: "s".into(),
                    revoked_at: 5
                }
            ]
        );
        assert_eq!(
            list.bad,
            [
                BadLine {
                    line: 3,
                    error: EntryError::Missing("exp")
                },
                BadLine {
                    line: 4,
                    error: EntryError::NotObject
                }
            ]
        );
        assert_eq!(parse_list(b""), ParsedList::default());
    }

    #[test]
    fn the_printed_line_parses_back_to_the_same_entry() {
        for entry in [
            jti("https://i\n\"x\"", "j:1*?", -5),
            Entry::Subject {
                iss: "i".into(),
                sub: "ü".into(),
                revoked_at: 1_767_225_600,
            },
        ] {
            let line = entry.to_line();
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(parse_entry(line.as_bytes()), Ok(entry));
        }
        assert_eq!(
            jti("https://i", "j1", 7).to_line(),
            r#"{"iss":"https://i","jti":"j1","exp":7}"#
        );
    }
}
