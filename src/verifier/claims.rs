//! The JWT claims set (RFC 7519 §4): the registered claims typed, every other
//! member checked for duplicates and remembered by name, for `required_claims`.
//! Parses; decides nothing about time, issuers or audiences.
//!
//! NumericDate values must be JSON numbers (a string is malformed). Fractional
//! seconds are allowed by RFC 7519 and truncated toward negative infinity;
//! values outside the i64 range are malformed. `null` for a registered claim is
//! malformed too, and a custom claim whose value is `null` counts as absent.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::verifier::jose::{Malformed, Part};
use crate::verifier::json::{self, Checked, Name, Seen};

/// The claims of a token, parsed from its (not yet verified) payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `iss`.
    pub iss: Option<String>,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud`, always as a list; `None` when the claim is absent.
    pub aud: Option<Vec<String>>,
    /// `exp`, seconds since the epoch.
    pub exp: Option<i64>,
    /// `nbf`, seconds since the epoch.
    pub nbf: Option<i64>,
    /// `iat`, seconds since the epoch.
    pub iat: Option<i64>,
    /// `jti`.
    pub jti: Option<String>,
    /// The scopes granted, space-separated: `scope` (a space-separated
    /// string, RFC 8693 and RFC 9068) and `scp` (the same, or an array of
    /// strings, as some identity providers send it), together; `None` when
    /// neither is there. One string, not a list: one allocation on the cold
    /// path (a scope-token has no spaces, RFC 6749 §3.3); see [`Claims::grants`].
    pub scopes: Option<String>,
    /// `azp`, the party the token was issued to (OpenID Connect).
    pub azp: Option<String>,
    /// `client_id`, the same for access tokens (RFC 9068).
    pub client_id: Option<String>,
    /// Names of every top-level member whose value is not `null`, each as a
    /// 4-byte little-endian length and its bytes (one allocation for all;
    /// a separator could be forged inside an escaped name, a length cannot).
    present: Vec<u8>,
}

impl Claims {
    /// Parses a payload strictly: a JSON object, no duplicate names at any depth.
    pub fn parse(payload: &[u8]) -> Result<Claims, Malformed> {
        let problem = Cell::new(None);
        let duplicate = json::DuplicateFlag::default();
        let mut de = serde_json::Deserializer::from_slice(payload);
        let parsed = ClaimsSeed {
            problem: &problem,
            duplicate: &duplicate,
        }
        .deserialize(&mut de)
        .and_then(|claims| de.end().map(|()| claims));
        parsed.map_err(|_| {
            problem.get().unwrap_or(if duplicate.get() {
                Malformed::DuplicateMember(Part::Payload)
            } else {
                Malformed::NotObject(Part::Payload)
            })
        })
    }

    /// The granted scopes, one by one.
    pub fn grants(&self) -> impl Iterator<Item = &str> {
        self.scopes
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    /// True when `scope` is granted.
    pub fn grants_scope(&self, scope: &str) -> bool {
        self.grants().any(|s| s == scope)
    }

    /// Heap bytes held by the remembered member names.
    pub fn heap_bytes_of_names(&self) -> usize {
        self.present.capacity()
    }

    /// True when the payload has a top-level member `name` that is not `null`.
    pub fn has(&self, name: &str) -> bool {
        let mut rest = &self.present[..];
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            let Some((member, tail)) = tail.split_at_checked(len) else {
                return false;
            };
            if member == name.as_bytes() {
                return true;
            }
            rest = tail;
        }
        false
    }

    fn remember(&mut self, name: &str) {
        // Payloads are bounded by max_token_bytes, so a name fits in u32.
        let len = u32::try_from(name.len()).unwrap_or(u32::MAX);
        if self.present.is_empty() {
            self.present.reserve(128);
        }
        self.present.extend_from_slice(&len.to_le_bytes());
        self.present.extend_from_slice(name.as_bytes());
    }
}

struct ClaimsSeed<'f> {
    problem: &'f Cell<Option<Malformed>>,
    duplicate: &'f json::DuplicateFlag,
}

impl ClaimsSeed<'_> {
    fn wrong_type<E: de::Error>(&self, claim: &'static str) -> E {
        let why = Malformed::ClaimType(claim);
        self.problem.set(Some(why));
        E::custom(why)
    }
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Claims, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims set object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        let mut claims = Claims::default();
        let mut seen = Seen::default();
        while let Some(Name(name)) = map.next_key()? {
            let present = match &*name {
                "iss" => string(&mut map, &mut claims.iss, || self.wrong_type("iss"))?,
                "sub" => string(&mut map, &mut claims.sub, || self.wrong_type("sub"))?,
                "jti" => string(&mut map, &mut claims.jti, || self.wrong_type("jti"))?,
                "azp" => string(&mut map, &mut claims.azp, || self.wrong_type("azp"))?,
                "client_id" => string(&mut map, &mut claims.client_id, || {
                    self.wrong_type("client_id")
                })?,
                "scope" | "scp" => {
                    let claim = if &*name == "scope" { "scope" } else { "scp" };
                    let Scopes(granted) = map
                        .next_value::<Scopes>()
                        .map_err(|_: A::Error| self.wrong_type(claim))?;
                    // `null` is absent, as for every other claim.
                    let present = granted.is_some();
                    if let Some(granted) = granted {
                        match &mut claims.scopes {
                            Some(all) if !granted.is_empty() => {
                                all.push(' ');
                                all.push_str(&granted);
                            }
                            Some(_) => {}
                            None => claims.scopes = Some(granted),
                        }
                    }
                    present
                }
                "aud" => {
                    let aud = map
                        .next_value::<Audiences>()
                        .map_err(|_: A::Error| self.wrong_type("aud"))?;
                    claims.aud = Some(aud.0);
                    true
                }
                "exp" => date(&mut map, &mut claims.exp, || self.wrong_type("exp"))?,
                "nbf" => date(&mut map, &mut claims.nbf, || self.wrong_type("nbf"))?,
                "iat" => date(&mut map, &mut claims.iat, || self.wrong_type("iat"))?,
                _ => !map.next_value_seed(Checked(self.duplicate))?,
            };
            if present {
                claims.remember(&name);
            }
            if !seen.insert(name) {
                return Err(json::duplicate(self.duplicate));
            }
        }
        Ok(claims)
    }
}

fn string<'de, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<String>,
    wrong: impl FnOnce() -> A::Error,
) -> Result<bool, A::Error> {
    *slot = Some(map.next_value::<String>().map_err(|_| wrong())?);
    Ok(true)
}

fn date<'de, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<i64>,
    wrong: impl FnOnce() -> A::Error,
) -> Result<bool, A::Error> {
    *slot = Some(map.next_value::<NumericDate>().map_err(|_| wrong())?.0);
    Ok(true)
}

/// A NumericDate: a JSON number of seconds, truncated to whole seconds.
struct NumericDate(i64);

impl<'de> de::Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DateVisitor;
        impl Visitor<'_> for DateVisitor {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                i64::try_from(v)
                    .map(NumericDate)
                    .map_err(|_| E::custom("NumericDate out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                // i64::MAX as f64 rounds up to 2^63, so the bound is exclusive.
                const LIMIT: f64 = 9_223_372_036_854_775_808.0;
                let whole = v.floor();
                if whole.is_finite() && (-LIMIT..LIMIT).contains(&whole) {
                    #[allow(clippy::cast_possible_truncation)] // Range checked above.
                    Ok(NumericDate(whole as i64))
                } else {
                    Err(E::custom("NumericDate out of range"))
                }
            }
        }
        deserializer.deserialize_any(DateVisitor)
    }
}

/// `scope` / `scp`: a space-separated string, or an array of strings (each
/// one scope), kept space-separated; `null` is no claim.
struct Scopes(Option<String>);

impl<'de> de::Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScopesVisitor;
        impl<'de> Visitor<'de> for ScopesVisitor {
            type Value = Scopes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a space-separated string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scopes, E> {
                Ok(Scopes(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scopes, E> {
                Ok(Scopes(Some(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scopes, E> {
                Ok(Scopes(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scopes, A::Error> {
                let mut out = String::new();
                while let Some(scope) = seq.next_element::<String>()? {
                    // A scope-token has no spaces (RFC 6749 §3.3): an element
                    // with one would read as two scopes once joined.
                    if scope.is_empty() || scope.contains(' ') {
                        return Err(de::Error::custom(
                            "a scope in an array is empty or has a space",
                        ));
                    }
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(&scope);
                }
                Ok(Scopes(Some(out)))
            }
        }
        deserializer.deserialize_any(ScopesVisitor)
    }
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
struct Audiences(Vec<String>);

impl<'de> de::Deserialize<'de> for Audiences {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudVisitor;
        impl<'de> Visitor<'de> for AudVisitor {
            type Value = Audiences;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audiences, E> {
                Ok(Audiences(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audiences, A::Error> {
                let mut out = Vec::new();
                while let Some(aud) = seq.next_element::<String>()? {
                    out.push(aud);
                }
                Ok(Audiences(out))
            }
        }
        deserializer.deserialize_any(AudVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registered_claims() {
        let c = Claims::parse(
            br#"{"iss":"https://i","sub":"alice","aud":"api","exp":2000,"nbf":1000,"iat":999,"jti":"j1","scope":"read"}"#,
        )
        .expect("valid claims");
        assert_eq!(c.iss.as_deref(), Some("https://i"));
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.aud, Some(vec!["api".to_owned()]));
        assert_eq!((c.exp, c.nbf, c.iat), (Some(2000), Some(1000), Some(999)));
        assert_eq!(c.jti.as_deref(), Some("j1"));
        assert!(c.has("scope") && c.has("iss") && !c.has("roles"));
    }

    #[test]
    fn scopes_come_from_scope_and_scp_as_strings_or_arrays() {
        let grants = |c: &Claims| c.grants().map(str::to_owned).collect::<Vec<_>>();
        let c = Claims::parse(br#"{"scope":"read  write"}"#).expect("valid");
        assert_eq!(grants(&c), ["read", "write"]);
        let c = Claims::parse(br#"{"scp":["orders.read","orders.write"]}"#).expect("valid");
        assert_eq!(grants(&c), ["orders.read", "orders.write"]);
        assert!(c.grants_scope("orders.write") && !c.grants_scope("orders"));
        let c = Claims::parse(br#"{"scope":"a","scp":"b c"}"#).expect("valid");
        assert_eq!(grants(&c), ["a", "b", "c"]);
        let c = Claims::parse(br#"{"scope":"","scp":[]}"#).expect("valid");
        assert_eq!(grants(&c), Vec::<String>::new());
        assert_eq!(
            Claims::parse(br#"{"sub":"x"}"#).expect("valid").scopes,
            None
        );
        let c = Claims::parse(br#"{"scope":null}"#).expect("null is absent");
        assert!(c.scopes.is_none() && !c.has("scope"));
        let c = Claims::parse(br#"{"azp":"web","client_id":"cli"}"#).expect("valid");
        assert_eq!(
            (c.azp.as_deref(), c.client_id.as_deref()),
            (Some("web"), Some("cli"))
        );
    }

    #[test]
    fn aud_may_be_an_array() {
        let c = Claims::parse(br#"{"aud":["a","b"]}"#).expect("valid");
        assert_eq!(c.aud, Some(vec!["a".to_owned(), "b".to_owned()]));
        let c = Claims::parse(br#"{"aud":[]}"#).expect("valid");
        assert_eq!(c.aud, Some(vec![]));
    }

    #[test]
    fn numeric_dates_must_be_numbers() {
        assert_eq!(
            Claims::parse(br#"{"exp":"2000"}"#).unwrap_err(),
            Malformed::ClaimType("exp")
        );
        assert_eq!(
            Claims::parse(br#"{"nbf":null}"#).unwrap_err(),
            Malformed::ClaimType("nbf")
        );
        assert_eq!(
            Claims::parse(br#"{"iat":1e300}"#).unwrap_err(),
            Malformed::ClaimType("iat")
        );
        assert_eq!(
            Claims::parse(br#"{"exp":18446744073709551615}"#).unwrap_err(),
            Malformed::ClaimType("exp")
        );
        let c = Claims::parse(br#"{"exp":1500.9,"nbf":-1.5}"#).expect("fractions are allowed");
        assert_eq!((c.exp, c.nbf), (Some(1500), Some(-2)));
    }

    #[test]
    fn registered_strings_must_be_strings() {
        for (doc, claim) in [
            (&br#"{"iss":1}"#[..], "iss"),
            (br#"{"sub":["a"]}"#, "sub"),
            (br#"{"jti":{}}"#, "jti"),
            (br#"{"azp":1}"#, "azp"),
            (br#"{"client_id":true}"#, "client_id"),
            (br#"{"scope":7}"#, "scope"),
            (br#"{"scp":{"a":1}}"#, "scp"),
            (br#"{"scp":["a",1]}"#, "scp"),
            (br#"{"aud":["a",1]}"#, "aud"),
            (br#"{"aud":{"a":1}}"#, "aud"),
        ] {
            assert_eq!(Claims::parse(doc).unwrap_err(), Malformed::ClaimType(claim));
        }
    }

    #[test]
    fn payload_must_be_one_object_without_duplicates() {
        for doc in [&b"[]"[..], b"\"x\"", b"", b"{}{}", b"\xff", b"foo"] {
            assert_eq!(
                Claims::parse(doc).unwrap_err(),
                Malformed::NotObject(Part::Payload)
            );
        }
        for doc in [
            &br#"{"iss":"a","iss":"b"}"#[..],
            br#"{"exp":1,"exp":2}"#,
            br#"{"x":1,"x":1}"#,
            br#"{"x":{"y":1,"y":2}}"#,
        ] {
            assert_eq!(
                Claims::parse(doc).unwrap_err(),
                Malformed::DuplicateMember(Part::Payload)
            );
        }
    }

    #[test]
    fn null_custom_claims_count_as_absent() {
        let c = Claims::parse(br#"{"scope":null,"roles":[]}"#).expect("valid");
        assert!(!c.has("scope"));
        assert!(c.has("roles"));
    }
}
