//! Feeds arbitrary bytes, as a decoded payload, to `Claims::parse`, and, as a
//! decoded protected header, to `jose::parse_header`; both read JSON with
//! jwtd's own scanner. The oracle is serde_json (with `float_roundtrip`, so
//! numbers read exactly), through a visitor that keeps every member, so
//! duplicate names stay visible.
//!
//! Asserts, for each: jwtd accepts exactly the documents the oracle reads as
//! one JSON object with no member name twice in any object and the
//! registered members of the right types; and an accepted one has the
//! values the oracle reads (every registered claim, audiences, scopes, the
//! custom names present; `alg`, `kid`, `typ`).
#![no_main]

use std::fmt;

use jwtd::claims::Claims;
use jwtd::jose::{AlgName, parse_header};
use libfuzzer_sys::fuzz_target;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value with every object member kept in order, duplicates too.
enum Doc {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

impl<'de> de::Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Doc, D::Error> {
        struct DocVisitor;
        impl<'de> Visitor<'de> for DocVisitor {
            type Value = Doc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Doc, E> {
                Ok(Doc::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Doc, E> {
                Ok(Doc::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Doc, E> {
                Ok(Doc::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Doc, E> {
                Ok(Doc::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Doc, E> {
                serde_json::Number::from_f64(v)
                    .map(Doc::Number)
                    .ok_or_else(|| E::custom("not finite"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Doc, E> {
                Ok(Doc::String(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Doc::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Doc>()? {
                    members.push(member);
                }
                Ok(Doc::Object(members))
            }
        }
        deserializer.deserialize_any(DocVisitor)
    }
}

impl Doc {
    /// True when no object at any depth has a name twice.
    fn distinct_names(&self) -> bool {
        match self {
            Doc::Array(items) => items.iter().all(Doc::distinct_names),
            Doc::Object(members) => {
                let mut names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
                names.sort_unstable();
                let count = names.len();
                names.dedup();
                names.len() == count && members.iter().all(|(_, v)| v.distinct_names())
            }
            _ => true,
        }
    }

    fn string(&self) -> Option<&str> {
        match self {
            Doc::String(s) => Some(s),
            _ => None,
        }
    }

    /// A list of strings: one string, or an array of strings.
    fn strings(&self) -> Option<Vec<&str>> {
        match self {
            Doc::String(s) => Some(vec![s]),
            Doc::Array(items) => items.iter().map(Doc::string).collect(),
            _ => None,
        }
    }
}

/// The top-level members when `bytes` is one object with distinct names.
fn object(bytes: &[u8]) -> Option<Vec<(String, Doc)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let doc: Doc = serde_json::from_str(text).ok()?;
    if !doc.distinct_names() {
        return None;
    }
    match doc {
        Doc::Object(members) => Some(members),
        _ => None,
    }
}

/// A NumericDate as RFC 7519 reads it: seconds, truncated toward negative
/// infinity, within `i64`.
fn numeric_date(value: &Doc) -> Option<i64> {
    let Doc::Number(n) = value else { return None };
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let whole = n.as_f64()?.floor();
    (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0)
        .contains(&whole)
        .then_some(whole as i64)
}

/// What `Claims::parse` must read from `bytes`, or `None` when it must refuse.
#[derive(Debug, PartialEq, Default)]
struct Expected {
    strings: [Option<String>; 5],
    aud: Option<Vec<String>>,
    dates: [Option<i64>; 3],
    grants: Vec<String>,
}

const STRINGS: [&str; 5] = ["iss", "sub", "jti", "azp", "client_id"];
const DATES: [&str; 3] = ["exp", "nbf", "iat"];

/// The claims, and the custom names with a value and with `null`.
type Custom = (Vec<String>, Vec<String>);

fn expected_claims(bytes: &[u8]) -> Option<(Expected, Custom)> {
    let mut want = Expected::default();
    let (mut present, mut null) = (Vec::new(), Vec::new());
    for (name, value) in object(bytes)? {
        if let Some(i) = STRINGS.iter().position(|s| *s == name) {
            want.strings[i] = Some(value.string()?.to_owned());
        } else if let Some(i) = DATES.iter().position(|s| *s == name) {
            want.dates[i] = Some(numeric_date(&value)?);
        } else if name == "aud" {
            want.aud = Some(value.strings()?.into_iter().map(str::to_owned).collect());
        } else if name == "scope" || name == "scp" {
            match &value {
                Doc::Null => {}
                Doc::String(s) => want
                    .grants
                    .extend(s.split(' ').filter(|g| !g.is_empty()).map(str::to_owned)),
                Doc::Array(_) => {
                    for scope in value.strings()? {
                        if scope.is_empty() || scope.contains(' ') {
                            return None;
                        }
                        want.grants.push(scope.to_owned());
                    }
                }
                _ => return None,
            }
        } else if matches!(value, Doc::Null) {
            null.push(name);
        } else {
            present.push(name);
        }
    }
    Some((want, (present, null)))
}

fn read_claims(claims: &Claims) -> Expected {
    Expected {
        strings: [
            claims.iss(),
            claims.sub(),
            claims.jti(),
            claims.azp(),
            claims.client_id(),
        ]
        .map(|s| s.map(str::to_owned)),
        aud: claims.aud().map(|a| a.map(str::to_owned).collect()),
        dates: [claims.exp(), claims.nbf(), claims.iat()],
        grants: claims.grants().map(str::to_owned).collect(),
    }
}

/// What `parse_header` must read: `alg`, `kid`, `typ`; `None` to refuse.
fn expected_header(bytes: &[u8]) -> Option<(AlgName, Option<String>, Option<String>)> {
    let (mut alg, mut kid, mut typ) = (None, None, None);
    for (name, value) in object(bytes)? {
        match name.as_str() {
            "alg" => alg = Some(AlgName::classify(value.string()?)),
            "kid" => kid = Some(value.string()?.to_owned()),
            "typ" => typ = Some(value.string()?.to_owned()),
            "crit" => return None,
            "b64" if !matches!(value, Doc::Bool(true)) => return None,
            _ => {}
        }
    }
    Some((alg?, kid, typ))
}

fuzz_target!(|bytes: &[u8]| {
    let got = Claims::parse(bytes);
    match (expected_claims(bytes), &got) {
        (Some((want, (present, null))), Ok(claims)) => {
            assert_eq!(read_claims(claims), want, "claims read differently");
            for name in &present {
                assert!(claims.has(name), "custom claim {name:?} not found");
            }
            for name in &null {
                assert!(!claims.has(name), "null claim {name:?} counted as present");
            }
            assert_eq!(claims.payload(), bytes);
        }
        (None, Err(_)) => {}
        (want, got) => panic!("claims: oracle {:?}, jwtd {got:?}", want.is_some()),
    }

    let got = parse_header(bytes);
    match (expected_header(bytes), got) {
        (Some((alg, kid, typ)), Ok(header)) => {
            assert_eq!(header.alg, alg);
            assert_eq!(header.kid.as_deref(), kid.as_deref());
            assert_eq!(header.typ.as_deref(), typ.as_deref());
        }
        (None, Err(_)) => {}
        (want, got) => panic!("header: oracle {:?}, jwtd {got:?}", want.is_some()),
    }
});
