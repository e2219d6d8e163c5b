//! The JWT claims set (RFC 7519 §4): the registered claims typed, every other
//! member checked for duplicates and remembered by name, for `required_claims`.
//! Parses; decides nothing about time, issuers or audiences.
//!
//! NumericDate values must be JSON numbers (a string is malformed). Fractional
//! seconds are allowed by RFC 7519 and truncated toward negative infinity;
//! values outside the i64 range are malformed. `null` for a registered claim is
//! malformed too, and a custom claim whose value is `null` counts as absent.
//!
//! Decisions:
//! - [`Claims`] owns the decoded payload (the bytes a verified token must keep
//!   anyway) and holds every string claim, audience, scope and custom member
//!   name as a span into it: one parse, no allocation per claim. A JSON
//!   string with escapes has no span that reads as its value, so only such a
//!   string is kept decoded, on the heap; so are lists longer than
//!   [`INLINE`]. Before, the typical bench token cost eight allocations here
//!   (`iss`, `sub`, `jti`, `scope`, `aud` and its two members, the names
//!   buffer); now none, and this step fell from 9.8k to 7.0k instructions
//!   per HS256 bench token (issue 14; BENCHMARKS.md).
//! - The payload is read by [`Scanner`] in one pass, the registered
//!   claims typed as they come and every other member skipped (checked for
//!   duplicates inside); `json`'s module docs say why that scanner and not
//!   serde_json, and how it is held to accept what serde_json accepts.
//! - The payload must be UTF-8 as a whole, checked once before the parse.
//!   JSON text outside strings is ASCII, so this accepts exactly what a
//!   byte-slice parse that checked every string accepted.
//! - Duplicate registered claims are caught by one bit each; only custom
//!   names go through [`Seen`]'s comparisons.

use std::borrow::Cow;

use crate::verifier::jose::{Malformed, Part};
use crate::verifier::json::{JsonProblem, Scanner, Seen, short_key};

/// Entries a [`Texts`] list holds without a heap allocation: a typical
/// token's audiences, scopes and custom claims fit.
const INLINE: usize = 6;

/// The registered claims, each with a bit in [`Claims::present`].
const REGISTERED: [&str; 11] = [
    "iss",
    "sub",
    "jti",
    "azp",
    "client_id",
    "scope",
    "scp",
    "aud",
    "exp",
    "nbf",
    "iat",
];

/// Where a string is in the payload (byte offsets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn get(self, payload: &str) -> &str {
        // In bounds and on character boundaries: `Text::new` checked.
        payload
            .get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// A JSON string from the payload: a span when its text is its value, the
/// decoded value when it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Text {
    Span(Span),
    Decoded(Box<str>),
}

impl Text {
    /// The text of a string the parser read from `payload`.
    #[inline]
    fn new(payload: &str, value: Cow<'_, str>) -> Text {
        if let Cow::Borrowed(borrowed) = &value {
            // A borrowed string is a slice of the payload (the scanner borrows
            // only from its input), so the address difference is its offset,
            // and its ends are character boundaries. Only the bounds are
            // checked here; `Span::get` reads through `str::get` anyway.
            let start = borrowed
                .as_ptr()
                .addr()
                .wrapping_sub(payload.as_ptr().addr());
            if let Some(end) = start.checked_add(borrowed.len())
                && end <= payload.len()
                && let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(end))
            {
                return Text::Span(Span { start, end });
            }
        }
        Text::Decoded(value.into_owned().into_boxed_str())
    }

    fn get<'a>(&'a self, payload: &'a str) -> &'a str {
        match self {
            // In bounds and on character boundaries: `Text::new` checked.
            Text::Span(s) => s.get(payload),
            Text::Decoded(d) => d,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Text::Span(_) => 0,
            Text::Decoded(d) => d.len(),
        }
    }
}

/// A list of [`Text`]s in document order: spans inline up to [`INLINE`];
/// past that, or from the first decoded entry, every entry on the heap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Texts {
    inline: [Span; INLINE],
    len: u8,
    /// Every entry once the list spilled (then `inline` is unused).
    spilled: Vec<Text>,
}

impl Texts {
    #[inline]
    fn push(&mut self, text: Text) {
        let len = usize::from(self.len);
        match text {
            Text::Span(span) if self.spilled.is_empty() && len < INLINE => {
                self.inline[len] = span;
                self.len += 1;
            }
            text => {
                if self.spilled.is_empty() {
                    self.spilled.reserve(len + 1);
                    self.spilled
                        .extend(self.inline[..len].iter().map(|s| Text::Span(*s)));
                }
                self.spilled.push(text);
            }
        }
    }

    fn iter<'a>(&'a self, payload: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let spilled = !self.spilled.is_empty();
        let inline = if spilled {
            &[][..]
        } else {
            &self.inline[..usize::from(self.len)]
        };
        inline
            .iter()
            .map(move |s| s.get(payload))
            .chain(self.spilled.iter().map(move |t| t.get(payload)))
    }

    fn heap_bytes(&self) -> usize {
        self.spilled.capacity() * std::mem::size_of::<Text>()
            + self.spilled.iter().map(Text::heap_bytes).sum::<usize>()
    }
}

/// The claims of a token, parsed from its (not yet verified) payload, which
/// they own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The decoded payload, exactly as signed.
    payload: String,
    iss: Option<Text>,
    sub: Option<Text>,
    jti: Option<Text>,
    azp: Option<Text>,
    client_id: Option<Text>,
    /// `aud`, always as a list.
    aud: Option<Texts>,
    /// `scope` (a space-separated string, RFC 8693 and RFC 9068) and `scp`
    /// (the same, or an array of strings, as some identity providers send
    /// it), in document order: each entry a space-separated string or one
    /// array member (a scope-token has no spaces, RFC 6749 §3.3).
    scopes: Texts,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    /// A bit per [`REGISTERED`] claim present with a value other than `null`.
    present: u16,
    /// Names of every other top-level member whose value is not `null`.
    custom: Texts,
}

impl Claims {
    /// Parses a payload strictly: a JSON object, no duplicate names at any
    /// depth. Copies `payload`; [`Claims::from_payload`] takes it.
    pub fn parse(payload: &[u8]) -> Result<Claims, Malformed> {
        Self::from_payload(payload.to_vec())
    }

    /// Parses a decoded payload strictly (see [`Claims::parse`]) and keeps it.
    /// Inlined into the verifier, its one hot caller, so the 440-byte claims
    /// are not copied out of a `Result` on the way (~70 instructions).
    #[inline]
    pub fn from_payload(payload: Vec<u8>) -> Result<Claims, Malformed> {
        let not_object = Malformed::NotObject(Part::Payload);
        let payload = String::from_utf8(payload).map_err(|_| not_object)?;
        if u32::try_from(payload.len()).is_err() {
            return Err(not_object);
        }
        let mut claims = Claims {
            payload,
            ..Claims::default()
        };
        read(&mut claims)?;
        Ok(claims)
    }

    /// The payload bytes exactly as signed.
    pub fn payload(&self) -> &[u8] {
        self.payload.as_bytes()
    }
    /// `iss`.
    pub fn iss(&self) -> Option<&str> {
        self.text(&self.iss)
    }
    /// `sub`.
    pub fn sub(&self) -> Option<&str> {
        self.text(&self.sub)
    }
    /// `jti`.
    pub fn jti(&self) -> Option<&str> {
        self.text(&self.jti)
    }
    /// `azp`, the party the token was issued to (OpenID Connect).
    pub fn azp(&self) -> Option<&str> {
        self.text(&self.azp)
    }
    /// `client_id`, the same for access tokens (RFC 9068).
    pub fn client_id(&self) -> Option<&str> {
        self.text(&self.client_id)
    }
    /// `aud`, always as a list (one string is a list of one); `None` when
    /// the claim is absent.
    pub fn aud(&self) -> Option<impl Iterator<Item = &str>> {
        self.aud.as_ref().map(|list| list.iter(&self.payload))
    }
    /// `exp`, seconds since the epoch.
    pub fn exp(&self) -> Option<i64> {
        self.exp
    }
    /// `nbf`, seconds since the epoch.
    pub fn nbf(&self) -> Option<i64> {
        self.nbf
    }
    /// `iat`, seconds since the epoch.
    pub fn iat(&self) -> Option<i64> {
        self.iat
    }

    fn text<'a>(&'a self, text: &'a Option<Text>) -> Option<&'a str> {
        text.as_ref().map(|t| t.get(&self.payload))
    }

    /// The granted scopes, one by one: `scope` and `scp` together.
    pub fn grants(&self) -> impl Iterator<Item = &str> {
        self.scopes
            .iter(&self.payload)
            .flat_map(|entry| entry.split(' '))
            .filter(|s| !s.is_empty())
    }

    /// True when `scope` is granted.
    pub fn grants_scope(&self, scope: &str) -> bool {
        self.grants().any(|s| s == scope)
    }

    /// Heap bytes these claims hold, the payload included.
    pub fn heap_bytes(&self) -> usize {
        let text = |t: &Option<Text>| t.as_ref().map_or(0, Text::heap_bytes);
        let list = |l: &Option<Texts>| l.as_ref().map_or(0, Texts::heap_bytes);
        self.payload.capacity()
            + text(&self.iss)
            + text(&self.sub)
            + text(&self.jti)
            + text(&self.azp)
            + text(&self.client_id)
            + list(&self.aud)
            + self.scopes.heap_bytes()
            + self.custom.heap_bytes()
    }

    /// True when the payload has a top-level member `name` that is not `null`.
    pub fn has(&self, name: &str) -> bool {
        match REGISTERED.iter().position(|r| *r == name) {
            Some(bit) => self.present & (1 << bit) != 0,
            None => self.custom.iter(&self.payload).any(|n| n == name),
        }
    }
}

/// A malformed payload, as [`Malformed`] names it.
fn syntax(problem: JsonProblem) -> Malformed {
    Malformed::json(problem, Part::Payload)
}

/// Reads the claims from their payload in one pass, in place (a `Claims`
/// is 440 bytes: built where it will be returned, not moved in).
fn read(claims: &mut Claims) -> Result<(), Malformed> {
    let payload: &str = &claims.payload;
    let mut scan = Scanner::new(payload);
    // Registered claims seen (even as `null`): one bit each, in `REGISTERED`
    // order; other names go through `Seen`.
    let mut registered = 0u16;
    let mut seen = Seen::default();
    scan.begin_object().map_err(syntax)?;
    let mut first = true;
    while let Some(name) = scan.next_name(&mut first).map_err(syntax)? {
        const ISS: u64 = short_key(b"iss");
        const SUB: u64 = short_key(b"sub");
        const JTI: u64 = short_key(b"jti");
        const AZP: u64 = short_key(b"azp");
        const SCOPE: u64 = short_key(b"scope");
        const SCP: u64 = short_key(b"scp");
        const AUD: u64 = short_key(b"aud");
        const EXP: u64 = short_key(b"exp");
        const NBF: u64 = short_key(b"nbf");
        const IAT: u64 = short_key(b"iat");
        let wrong = |claim: &'static str| move |_: JsonProblem| Malformed::ClaimType(claim);
        let text = |scan: &mut Scanner<'_>, claim| {
            let value = scan.string().map_err(wrong(claim))?;
            Ok::<_, Malformed>(Some(Text::new(payload, value)))
        };
        // Which registered claim, and whether it counts as present.
        let (bit, present) = match name.key() {
            ISS => {
                claims.iss = text(&mut scan, "iss")?;
                (0, true)
            }
            SUB => {
                claims.sub = text(&mut scan, "sub")?;
                (1, true)
            }
            JTI => {
                claims.jti = text(&mut scan, "jti")?;
                (2, true)
            }
            AZP => {
                claims.azp = text(&mut scan, "azp")?;
                (3, true)
            }
            // `null` is absent, as for every other claim.
            SCOPE => (
                5,
                scopes(&mut scan, payload, &mut claims.scopes).map_err(wrong("scope"))?,
            ),
            SCP => (
                6,
                scopes(&mut scan, payload, &mut claims.scopes).map_err(wrong("scp"))?,
            ),
            AUD => {
                claims.aud = Some(audiences(&mut scan, payload).map_err(wrong("aud"))?);
                (7, true)
            }
            EXP => {
                claims.exp = Some(numeric_date(&mut scan).map_err(wrong("exp"))?);
                (8, true)
            }
            NBF => {
                claims.nbf = Some(numeric_date(&mut scan).map_err(wrong("nbf"))?);
                (9, true)
            }
            IAT => {
                claims.iat = Some(numeric_date(&mut scan).map_err(wrong("iat"))?);
                (10, true)
            }
            // The one registered name longer than seven bytes.
            _ if name.text == "client_id" => {
                claims.client_id = text(&mut scan, "client_id")?;
                (4, true)
            }
            _ => {
                let null = scan.skip_value().map_err(syntax)?;
                if !null {
                    claims.custom.push(Text::new(payload, name.text.clone()));
                }
                if !seen.insert(name.text) {
                    return Err(syntax(JsonProblem::Duplicate));
                }
                continue;
            }
        };
        let bit = 1u16 << bit;
        if registered & bit != 0 {
            return Err(syntax(JsonProblem::Duplicate));
        }
        registered |= bit;
        if present {
            claims.present |= bit;
        }
    }
    scan.end().map_err(syntax)?;
    Ok(())
}

/// A NumericDate: a JSON number of seconds, truncated to whole seconds.
fn numeric_date(scan: &mut Scanner<'_>) -> Result<i64, JsonProblem> {
    // i64::MAX as f64 rounds up to 2^63, so the bound is exclusive.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if let Some(seconds) = scan.small_integer() {
        return Ok(seconds);
    }
    let number = scan.number()?;
    if let Some(seconds) = number.to_i64() {
        return Ok(seconds);
    }
    let whole = number.to_f64().ok_or(JsonProblem::Invalid)?.floor();
    if (-LIMIT..LIMIT).contains(&whole) {
        #[allow(clippy::cast_possible_truncation)] // Range checked above.
        Ok(whole as i64)
    } else {
        Err(JsonProblem::Invalid)
    }
}

/// `scope` / `scp`: a space-separated string, or an array of strings (each
/// one scope), appended to `scopes`; `null` is no claim. True unless the
/// claim was `null`.
fn scopes(scan: &mut Scanner<'_>, payload: &str, scopes: &mut Texts) -> Result<bool, JsonProblem> {
    if scan.null() {
        return Ok(false);
    }
    if scan.peek() != Some(b'[') {
        scopes.push(Text::new(payload, scan.string()?));
        return Ok(true);
    }
    scan.begin_array()?;
    let mut first = true;
    while scan.next_element(&mut first)? {
        let scope = scan.string()?;
        // A scope-token has no spaces (RFC 6749 §3.3): an element with one
        // would read as two scopes.
        if scope.is_empty() || scope.contains(' ') {
            return Err(JsonProblem::Invalid);
        }
        scopes.push(Text::new(payload, scope));
    }
    Ok(true)
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
fn audiences(scan: &mut Scanner<'_>, payload: &str) -> Result<Texts, JsonProblem> {
    let mut aud = Texts::default();
    if scan.peek() != Some(b'[') {
        aud.push(Text::new(payload, scan.string()?));
        return Ok(aud);
    }
    scan.begin_array()?;
    let mut first = true;
    while scan.next_element(&mut first)? {
        aud.push(Text::new(payload, scan.string()?));
    }
    Ok(aud)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auds(c: &Claims) -> Option<Vec<&str>> {
        c.aud().map(Iterator::collect)
    }

    #[test]
    fn parses_registered_claims() {
        let c = Claims::parse(
            br#"{"iss":"https://i","sub":"alice","aud":"api","exp":2000,"nbf":1000,"iat":999,"jti":"j1","scope":"read"}"#,
        )
        .expect("valid claims");
        assert_eq!(c.iss(), Some("https://i"));
        assert_eq!(c.sub(), Some("alice"));
        assert_eq!(auds(&c), Some(vec!["api"]));
        assert_eq!(
            (c.exp(), c.nbf(), c.iat()),
            (Some(2000), Some(1000), Some(999))
        );
        assert_eq!(c.jti(), Some("j1"));
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
        let c = Claims::parse(br#"{"sub":"x"}"#).expect("valid");
        assert!(c.grants().next().is_none() && !c.has("scope") && !c.has("scp"));
        let c = Claims::parse(br#"{"scope":null}"#).expect("null is absent");
        assert!(c.grants().next().is_none() && !c.has("scope"));
        let c = Claims::parse(br#"{"azp":"web","client_id":"cli"}"#).expect("valid");
        assert_eq!((c.azp(), c.client_id()), (Some("web"), Some("cli")));
    }

    #[test]
    fn aud_may_be_an_array() {
        let c = Claims::parse(br#"{"aud":["a","b"]}"#).expect("valid");
        assert_eq!(auds(&c), Some(vec!["a", "b"]));
        let c = Claims::parse(br#"{"aud":[]}"#).expect("valid");
        assert_eq!(auds(&c), Some(vec![]));
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
        assert_eq!((c.exp(), c.nbf()), (Some(1500), Some(-2)));
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
    fn escaped_strings_are_kept_decoded_and_lists_keep_their_order() {
        let c = Claims::parse(
            br#"{"iss":"https:\/\/i","sub":"al\u0069ce","aud":["a","b\u0021","c"],"scope":"x\ty"}"#,
        )
        .expect("valid");
        assert_eq!(c.iss(), Some("https://i"));
        assert_eq!(c.sub(), Some("alice"));
        assert_eq!(auds(&c), Some(vec!["a", "b!", "c"]));
        assert!(c.grants_scope("x\ty") && !c.grants_scope("x"));
        let many: Vec<String> = (0..20).map(|i| format!("aud{i}")).collect();
        let doc = serde_json::json!({ "aud": many, "scp": many }).to_string();
        let c = Claims::parse(doc.as_bytes()).expect("valid");
        assert_eq!(auds(&c), Some(many.iter().map(String::as_str).collect()));
        assert_eq!(c.grants().collect::<Vec<_>>(), auds(&c).expect("aud"));
    }

    #[test]
    fn scope_and_scp_keep_document_order() {
        let c = Claims::parse(br#"{"scp":["b","c"],"other":1,"scope":"a"}"#).expect("valid");
        assert_eq!(c.grants().collect::<Vec<_>>(), ["b", "c", "a"]);
        assert!(c.has("scp") && c.has("scope") && c.has("other"));
        let c = Claims::parse(br#"{"scp":[]}"#).expect("valid");
        assert!(c.has("scp") && c.grants().next().is_none());
    }

    #[test]
    fn custom_names_are_remembered_past_the_inline_list_and_when_escaped() {
        let mut doc = serde_json::Map::new();
        for i in 0..40 {
            doc.insert(format!("claim{i}"), i.into());
        }
        doc.insert("gone".into(), serde_json::Value::Null);
        let doc = serde_json::Value::Object(doc).to_string();
        let c = Claims::parse(doc.as_bytes()).expect("valid");
        assert!((0..40).all(|i| c.has(&format!("claim{i}"))));
        assert!(!c.has("gone") && !c.has("claim40") && !c.has("iss"));
        let c = Claims::parse(br#"{"t\u0065nant":"acme","x":[]}"#).expect("valid");
        assert!(c.has("tenant") && c.has("x"));
    }

    #[test]
    fn registered_duplicates_are_caught_also_when_escaped_or_null() {
        for doc in [
            &br#"{"iss":"a","\u0069ss":"a"}"#[..],
            br#"{"scope":null,"scope":"a"}"#,
            br#"{"scp":"a","scp":null}"#,
            br#"{"aud":"a","sub":"s","aud":["a"]}"#,
            br#"{"x":null,"x":null}"#,
            br#"{"x":1,"y":2,"\u0078":3}"#,
        ] {
            assert_eq!(
                Claims::parse(doc).unwrap_err(),
                Malformed::DuplicateMember(Part::Payload),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn the_payload_must_be_utf8_and_is_kept_as_given() {
        assert_eq!(
            Claims::parse(b"{\"sub\":\"\xc3\x28\"}").unwrap_err(),
            Malformed::NotObject(Part::Payload)
        );
        let doc = br#" {"sub" : "a"} "#;
        let c = Claims::parse(doc).expect("valid");
        assert_eq!(c.payload(), doc);
        assert_eq!(c.heap_bytes(), doc.len());
    }

    #[test]
    fn null_custom_claims_count_as_absent() {
        let c = Claims::parse(br#"{"scope":null,"roles":[]}"#).expect("valid");
        assert!(!c.has("scope"));
        assert!(c.has("roles"));
    }
}
