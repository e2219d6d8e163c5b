//! Compact JWS structure: the three base64url parts, the protected header and
//! the JWS algorithm names. Knows nothing of keys, issuers or claims.
//!
//! Strictness, each a decision:
//! - exactly three parts; five parts (a JWE) and the JSON serialization are
//!   refused, since a token verifier has no use for either;
//! - base64url without padding, without whitespace and with zero trailing
//!   bits, so each token has one encoding and a memo keyed by the token text
//!   cannot be split by re-encodings;
//! - the header is a JSON object without duplicate member names; `alg` is a
//!   case-sensitive string; `crit` is refused whatever it lists (jwtd
//!   implements no extension that may be critical) and so is `b64: false`;
//! - `jku`, `x5u`, `jwk` and `x5c` are read past and never used: a token never
//!   chooses its own key or where jwtd connects.
//!
//! Decisions (issue 14, the fixed cost per token; numbers in BENCHMARKS.md):
//! - header and signature decode into stack buffers and `kid` and `typ` are
//!   kept inline ([`HeaderText`], up to 64 bytes), so the only allocation
//!   here is the payload, which a verified token keeps;
//! - the dots are found with `memchr` (SIMD): 250 instructions for a
//!   430-character HS256 token where core's char search cost 900. Only the
//!   first and the last are looked for (`memrchr` reads back over the short
//!   signature): a dot between them is in the payload, which then fails to
//!   decode, and every failure looks for one before answering, so a token of
//!   four or five parts gets the same reason as before without a valid
//!   token's payload being searched for dots (~220 instructions fewer);
//! - the token's parts are decoded by `base64-simd` (runtime-detected
//!   AVX2/SSE4.1, scalar elsewhere): 79–86 ns for 640 characters where the
//!   `base64` crate took 264–314 ns in the same run (a scratch bench on this
//!   machine, 2026-12-01), and just as strict: it refuses padding,
//!   whitespace, the standard alphabet's `+` and `/` and non-zero trailing
//!   bits (`base64_must_be_canonical_unpadded_url_safe` below holds it to
//!   that). JWK members, read once per key-set load, keep the `base64`
//!   crate's strict engine ([`B64`]), which also encodes;
//! - a header text this thread parsed successfully before is answered from
//!   a few per-thread slots, by exact text (`verifier::recent` has the
//!   argument): every token a key signs carries the same header.

use std::cell::RefCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::rc::Rc;

use crate::verifier::json::{JsonProblem, Scanner, Seen, short_key};
use crate::verifier::recent::Recent;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// base64url as RFC 7515 §2 requires: no padding, canonical trailing bits.
pub(crate) const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// A JWS algorithm jwtd verifies (RFC 7518 §3, RFC 8037 for EdDSA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // The names are the RFC 7518 registry names.
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    /// Every algorithm jwtd supports, in a fixed order.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// The algorithm with exactly this registered name (case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The registered name, as it appears in a header's `alg`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// A distinct bit per algorithm, for [`AlgorithmSet`].
    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of algorithms, as an issuer's allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// Every supported algorithm.
    pub fn all() -> Self {
        Self::from_iter(Algorithm::ALL)
    }

    /// True when `alg` is in the set.
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }
}

impl FromIterator<Algorithm> for AlgorithmSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, alg| bits | alg.bit()))
    }
}

/// Which of the three parts of a compact JWS a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The protected header.
    Header,
    /// The payload (the JWT claims set).
    Payload,
    /// The signature.
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// Why a token is not a well-formed compact JWS carrying a JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// Five dot-separated parts: an encrypted token.
    #[error("JWE (encrypted) tokens are not supported")]
    Jwe,
    /// Not three dot-separated parts.
    #[error("a compact JWS has 3 dot-separated parts, this token has {0}")]
    Parts(usize),
    /// A part is not canonical unpadded base64url.
    #[error("{0} is not canonical base64url")]
    Base64(Part),
    /// A part is not a JSON object.
    #[error("{0} is not a JSON object")]
    NotObject(Part),
    /// A member name appears twice in one object.
    #[error("duplicate member name in {0}")]
    DuplicateMember(Part),
    /// The header has no `alg`, or it is not a string.
    #[error("header alg is missing or not a string")]
    Alg,
    /// The header's `typ` is not a string.
    #[error("header typ is not a string")]
    Typ,
    /// The header's `kid` is not a string.
    #[error("header kid is not a string")]
    Kid,
    /// The header has a `crit` member.
    #[error("header crit names an extension jwtd does not implement")]
    Crit,
    /// The header has `b64` other than `true` (RFC 7797 unencoded payload).
    #[error("unencoded payloads (b64) are not supported")]
    UnencodedPayload,
    /// A registered claim has the wrong JSON type.
    #[error("claim {0} has the wrong type")]
    ClaimType(&'static str),
    /// The signature is longer than any supported key's signatures.
    #[error("signature is longer than {MAX_SIGNATURE_BYTES} bytes")]
    SignatureTooLong,
}

impl Malformed {
    /// Why `part` was refused, from the JSON scanner's answer.
    pub(crate) fn json(problem: JsonProblem, part: Part) -> Malformed {
        match problem {
            JsonProblem::Invalid => Malformed::NotObject(part),
            JsonProblem::Duplicate => Malformed::DuplicateMember(part),
        }
    }
}

/// The longest signature of a supported key (RSA-8192).
pub const MAX_SIGNATURE_BYTES: usize = 1024;

/// The header's `alg`, classified while parsing (no string is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgName {
    /// A supported algorithm, named exactly.
    Known(Algorithm),
    /// `none` in any letter case.
    None,
    /// Anything else.
    Unknown,
}

impl AlgName {
    /// Classifies an `alg` value, as the header parser does.
    pub fn classify(name: &str) -> Self {
        match Algorithm::from_name(name) {
            Some(alg) => AlgName::Known(alg),
            None if name.eq_ignore_ascii_case("none") => AlgName::None,
            None => AlgName::Unknown,
        }
    }
}

/// Room for a token's decoded signature, on the caller's stack:
/// [`parse_compact`] decodes into it and [`Compact::signature`] borrows it,
/// so a signature is never allocated, zeroed first or moved.
pub struct SignatureBuf([MaybeUninit<u8>; MAX_SIGNATURE_BYTES]);

impl SignatureBuf {
    /// Room for the longest signature (not zeroed: only what a decode wrote
    /// is ever read).
    pub const fn new() -> Self {
        Self([MaybeUninit::uninit(); MAX_SIGNATURE_BYTES])
    }
}

impl Default for SignatureBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// The protected header, reduced to what verification reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The `alg` member, classified.
    pub alg: AlgName,
    /// The `kid` member, when present.
    pub kid: Option<HeaderText>,
    /// The `typ` member, when present (compared as [`normalized_type`] says).
    pub typ: Option<HeaderText>,
}

/// Header strings up to this many bytes are kept inline: every kid in
/// common use (a JWK thumbprint is 43 characters, a UUID 36) and every `typ`.
const INLINE_HEADER_TEXT: usize = 64;

/// A header string (`kid`, `typ`): inline when short, so the header of a
/// typical token costs no allocation; on the heap beyond
/// [`INLINE_HEADER_TEXT`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderText(HeaderTextRepr);

#[derive(Clone, PartialEq, Eq)]
enum HeaderTextRepr {
    Inline {
        len: u8,
        bytes: [u8; INLINE_HEADER_TEXT],
    },
    Heap(Box<str>),
}

impl HeaderText {
    fn new(text: &str) -> Self {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE_HEADER_TEXT => {
                let mut bytes = [0; INLINE_HEADER_TEXT];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Self(HeaderTextRepr::Inline { len, bytes })
            }
            _ => Self(HeaderTextRepr::Heap(text.into())),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied whole from a `&str`, so always UTF-8.
            HeaderTextRepr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            HeaderTextRepr::Heap(text) => text,
        }
    }
}

impl std::ops::Deref for HeaderText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A compact JWS split into its parts, with header and signature decoded.
/// The payload is decoded but not yet parsed.
#[derive(Debug)]
pub struct Compact<'t, 's> {
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes that were signed.
    pub signing_input: &'t [u8],
    /// The decoded protected header, shared with this thread's memo of
    /// parsed headers.
    pub header: Rc<Header>,
    /// The decoded payload bytes, exactly as signed.
    pub payload: Vec<u8>,
    /// The decoded signature, in the caller's [`SignatureBuf`].
    pub signature: &'s [u8],
}

/// A media type as RFC 7515 §4.1.9 says `typ` compares: without regard to
/// case, and with an omitted `application/` prefix equal to a present one
/// (`at+jwt` is `application/at+jwt`).
pub fn normalized_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) if !rest.contains('/') => rest.to_owned(),
        _ => lower,
    }
}

/// Splits and decodes a compact JWS. Does no cryptography.
/// The signature is decoded into `signature`.
pub fn parse_compact<'t, 's>(
    token: &'t str,
    signature: &'s mut SignatureBuf,
) -> Result<Compact<'t, 's>, Malformed> {
    let bytes = token.as_bytes();
    // The first and the last dot; a dot between them would be in the
    // payload, which then fails to decode ('.' is not base64url), and
    // every failure below looks for one before it answers, so such a token
    // is still refused for its count of parts, without a scan of the
    // payload for dots on the way to a valid token.
    let (Some(first), Some(second)) = (memchr::memchr(b'.', bytes), memchr::memrchr(b'.', bytes))
    else {
        return Err(parts_of(token));
    };
    if first == second {
        return Err(parts_of(token));
    }
    // A '.' is ASCII, so these are character boundaries.
    let (h, p, s) = (
        &token[..first],
        &token[first + 1..second],
        &token[second + 1..],
    );
    split_parts(token, h, p, s, signature).map_err(|malformed| {
        if memchr::memchr(b'.', p.as_bytes()).is_some() {
            parts_of(token)
        } else {
            malformed
        }
    })
}

/// Why a token that is not three parts is refused: five is a JWE.
fn parts_of(token: &str) -> Malformed {
    let count = memchr::memchr_iter(b'.', token.as_bytes()).count() + 1;
    if count == 5 {
        Malformed::Jwe
    } else {
        Malformed::Parts(count)
    }
}

/// [`parse_compact`] once the parts are split at their dots.
fn split_parts<'t, 's>(
    token: &'t str,
    h: &str,
    p: &str,
    s: &str,
    signature: &'s mut SignatureBuf,
) -> Result<Compact<'t, 's>, Malformed> {
    // Header and signature decode into stack buffers, neither zeroed: only
    // the payload, which a verified token keeps, is allocated. A header
    // text this thread parsed before is not decoded again (`HEADERS`).
    let header = HEADERS.with_borrow_mut(|recent| {
        recent.get_or_try(h, || {
            let mut buf = [MaybeUninit::uninit(); 512];
            let header = match decode_into(h, &mut buf, Part::Header)? {
                Some(header) => parse_header(header),
                None => parse_header(&decode(h, Part::Header)?),
            };
            header.map(Rc::new)
        })
    })?;
    let payload = decode(p, Part::Payload)?;
    let Some(signature) = decode_into(s, &mut signature.0, Part::Signature)? else {
        return Err(Malformed::SignatureTooLong);
    };
    Ok(Compact {
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        header,
        payload,
        signature,
    })
}

thread_local! {
    /// The headers this thread parsed last, by their exact base64url text
    /// (`verifier::recent` has the argument).
    static HEADERS: RefCell<Recent<Rc<Header>>> = const { RefCell::new(Recent::new()) };
}

/// The token's base64url: unpadded, URL-safe alphabet, canonical trailing
/// bits (see the module docs).
const TOKEN_B64: base64_simd::Base64 = base64_simd::URL_SAFE_NO_PAD;

/// Decodes `part` into `out` when its decoded length fits; `None` when it
/// does not (nothing decoded).
fn decode_into<'o>(
    part: &str,
    out: &'o mut [MaybeUninit<u8>],
    which: Part,
) -> Result<Option<&'o [u8]>, Malformed> {
    let bad = |_| Malformed::Base64(which);
    let len = TOKEN_B64.decoded_length(part.as_bytes()).map_err(bad)?;
    let Some(out) = out.get_mut(..len) else {
        return Ok(None);
    };
    let decoded = TOKEN_B64
        .decode(part.as_bytes(), base64_simd::Out::from_uninit_slice(out))
        .map_err(bad)?;
    Ok(Some(decoded))
}

fn decode(part: &str, which: Part) -> Result<Vec<u8>, Malformed> {
    TOKEN_B64
        .decode_to_vec(part.as_bytes())
        .map_err(|_| Malformed::Base64(which))
}

/// Parses the protected header strictly (see the module docs).
pub fn parse_header(bytes: &[u8]) -> Result<Header, Malformed> {
    let syntax = |problem| Malformed::json(problem, Part::Header);
    let text = std::str::from_utf8(bytes).map_err(|_| syntax(JsonProblem::Invalid))?;
    let mut scan = Scanner::new(text);
    // The members read here are caught twice by one bit each, the others
    // by `Seen`.
    let mut known = 0u8;
    let mut seen = Seen::default();
    let (mut alg, mut kid, mut typ) = (None, None, None);
    scan.begin_object().map_err(syntax)?;
    let mut first = true;
    while let Some(name) = scan.next_name(&mut first).map_err(syntax)? {
        const ALG: u64 = short_key(b"alg");
        const KID: u64 = short_key(b"kid");
        const TYP: u64 = short_key(b"typ");
        const CRIT: u64 = short_key(b"crit");
        const B64: u64 = short_key(b"b64");
        let bit = match name.key() {
            ALG => {
                let value = scan.string().map_err(|_| Malformed::Alg)?;
                alg = Some(AlgName::classify(&value));
                1
            }
            KID => {
                let value = scan.string().map_err(|_| Malformed::Kid)?;
                kid = Some(HeaderText::new(&value));
                2
            }
            TYP => {
                let value = scan.string().map_err(|_| Malformed::Typ)?;
                typ = Some(HeaderText::new(&value));
                4
            }
            CRIT => return Err(Malformed::Crit),
            B64 => {
                if !scan.literal_true() {
                    return Err(Malformed::UnencodedPayload);
                }
                8
            }
            _ => {
                scan.skip_value().map_err(syntax)?;
                if !seen.insert(name.text) {
                    return Err(syntax(JsonProblem::Duplicate));
                }
                continue;
            }
        };
        if known & bit != 0 {
            return Err(syntax(JsonProblem::Duplicate));
        }
        known |= bit;
    }
    let alg = alg.ok_or(Malformed::Alg)?;
    scan.end().map_err(syntax)?;
    Ok(Header { alg, kid, typ })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn enc(s: &str) -> String {
        B64.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", enc(header), enc(payload), enc("sig"))
    }

    #[test]
    fn algorithm_names_round_trip_and_are_case_sensitive() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
        assert_eq!(Algorithm::from_name("rs256"), None);
        assert_eq!(Algorithm::from_name("none"), None);
        assert_eq!(Algorithm::from_name("ES256K"), None);
    }

    #[test]
    fn algorithm_set_holds_exactly_its_members() {
        let set: AlgorithmSet = [Algorithm::RS256, Algorithm::EdDSA].into_iter().collect();
        for alg in Algorithm::ALL {
            assert_eq!(
                set.contains(alg),
                matches!(alg, Algorithm::RS256 | Algorithm::EdDSA)
            );
        }
        assert!(
            Algorithm::ALL
                .iter()
                .all(|a| AlgorithmSet::all().contains(*a))
        );
    }

    #[test]
    fn every_token_gets_its_own_header_however_many_this_thread_keeps() {
        // Headers that differ in one character of their kid, more of them
        // than a thread keeps, with different payloads, in turn and over
        // again: each token's header is its own, as a fresh parse gives it.
        let kids: Vec<String> = (0..crate::verifier::recent::SLOTS * 3)
            .map(|i| format!("key-{i:02}"))
            .collect();
        for round in 0..3 {
            for (i, kid) in kids.iter().enumerate() {
                let header = format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#);
                let t = token(&header, &format!(r#"{{"n":{round}{i}}}"#));
                let mut signature = SignatureBuf::new();
                let c = parse_compact(&t, &mut signature).expect("valid structure");
                assert_eq!(c.header.kid.as_deref(), Some(kid.as_str()), "round {round}");
                assert_eq!(*c.header, parse_header(header.as_bytes()).unwrap());
                assert_eq!(c.payload, format!(r#"{{"n":{round}{i}}}"#).as_bytes());
            }
        }
    }

    #[test]
    fn splits_a_compact_jws() {
        let t = token(r#"{"alg":"RS256","kid":"k1"}"#, r#"{"sub":"a"}"#);
        let mut signature = SignatureBuf::new();
        let c = parse_compact(&t, &mut signature).expect("valid structure");
        assert_eq!(c.header.alg, AlgName::Known(Algorithm::RS256));
        assert_eq!(c.header.kid.as_deref(), Some("k1"));
        assert_eq!(c.payload, br#"{"sub":"a"}"#);
        assert_eq!(c.signature, b"sig");
        let dot2 = t.rfind('.').expect("has dots");
        assert_eq!(c.signing_input, &t.as_bytes()[..dot2]);
    }

    #[test]
    fn short_header_strings_stay_inline_and_long_ones_are_kept_whole() {
        for kid in ["", "k", &"x".repeat(64), &"é".repeat(40), &"y".repeat(300)] {
            let t = token(&format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#), "{}");
            let mut signature = SignatureBuf::new();
            let c = parse_compact(&t, &mut signature).expect("valid");
            assert_eq!(c.header.kid.as_deref(), Some(kid));
        }
        let t = token(r#"{"alg":"RS256","typ":"a\u0074+jwt"}"#, "{}");
        let mut signature = SignatureBuf::new();
        let c = parse_compact(&t, &mut signature).expect("valid");
        assert_eq!(c.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(format!("{:?}", c.header.typ), r#"Some("at+jwt")"#);
    }

    #[test]
    fn wrong_part_counts_are_malformed() {
        assert_eq!(
            parse_compact("", &mut SignatureBuf::new()).unwrap_err(),
            Malformed::Parts(1)
        );
        assert_eq!(
            parse_compact("a.b", &mut SignatureBuf::new()).unwrap_err(),
            Malformed::Parts(2)
        );
        assert_eq!(
            parse_compact("a.b.c.d", &mut SignatureBuf::new()).unwrap_err(),
            Malformed::Parts(4)
        );
        assert_eq!(
            parse_compact("a.b.c.d.e", &mut SignatureBuf::new()).unwrap_err(),
            Malformed::Jwe
        );
        // The count decides even when every part decodes, or the header is
        // fine and only a later part fails, or the header fails as JSON.
        let (h, p, sig) = (enc(r#"{"alg":"HS256"}"#), enc(r#"{"sub":"a"}"#), enc("sig"));
        for (token, why) in [
            (format!("{h}.{p}.{p}.{sig}"), Malformed::Parts(4)),
            (format!("{h}.{p}.{p}.{p}.{sig}"), Malformed::Jwe),
            (format!("{h}.{p}..{sig}"), Malformed::Parts(4)),
            (format!("{h}.{p}.{sig}."), Malformed::Parts(4)),
            (format!(".{h}.{p}.{sig}"), Malformed::Parts(4)),
            (
                format!("{}.{p}.{p}.{sig}", enc("not json")),
                Malformed::Parts(4),
            ),
            (format!("{h}.{p}.!.{sig}"), Malformed::Parts(4)),
        ] {
            assert_eq!(
                parse_compact(&token, &mut SignatureBuf::new()).unwrap_err(),
                why,
                "{token}"
            );
        }
    }

    #[test]
    fn base64_must_be_canonical_unpadded_url_safe() {
        let h = enc(r#"{"alg":"HS256"}"#);
        let p = enc("{}");
        // Padding.
        let padded = format!("{h}.{p}=.AA");
        assert_eq!(
            parse_compact(&padded, &mut SignatureBuf::new()).unwrap_err(),
            Malformed::Base64(Part::Payload)
        );
        // Standard alphabet instead of URL-safe.
        let std_alpha = format!("{h}.{p}.ab+/");
        assert_eq!(
            parse_compact(&std_alpha, &mut SignatureBuf::new()).unwrap_err(),
            Malformed::Base64(Part::Signature)
        );
        // Whitespace.
        let spaced = format!("{h} .{p}.AA");
        assert_eq!(
            parse_compact(&spaced, &mut SignatureBuf::new()).unwrap_err(),
            Malformed::Base64(Part::Header)
        );
        // Non-zero trailing bits: "AB" decodes to one byte with bits left over.
        let trailing = format!("{h}.{p}.AB");
        assert_eq!(
            parse_compact(&trailing, &mut SignatureBuf::new()).unwrap_err(),
            Malformed::Base64(Part::Signature)
        );
        assert!(parse_compact(&format!("{h}.{p}.AA"), &mut SignatureBuf::new()).is_ok());
    }

    #[test]
    fn header_must_be_an_object_with_a_string_alg() {
        for (header, why) in [
            ("[]", Malformed::NotObject(Part::Header)),
            ("\"RS256\"", Malformed::NotObject(Part::Header)),
            ("{}", Malformed::Alg),
            (r#"{"alg":1}"#, Malformed::Alg),
            (r#"{"alg":"HS256","kid":7}"#, Malformed::Kid),
            (r#"{"alg":"HS256","typ":["JWT"]}"#, Malformed::Typ),
            (r#"{"alg":"HS256"} {}"#, Malformed::NotObject(Part::Header)),
            (
                r#"{"alg":"HS256","alg":"none"}"#,
                Malformed::DuplicateMember(Part::Header),
            ),
            (
                r#"{"alg":"HS256","x":{"a":1,"a":2}}"#,
                Malformed::DuplicateMember(Part::Header),
            ),
            (
                r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
                Malformed::DuplicateMember(Part::Header),
            ),
            (
                r#"{"typ":"JWT","alg":"HS256","typ":"JWT"}"#,
                Malformed::DuplicateMember(Part::Header),
            ),
            (
                r#"{"alg":"HS256","b64":true,"b64":true}"#,
                Malformed::DuplicateMember(Part::Header),
            ),
            (
                r#"{"alg":"HS256","\u0061lg":"HS256"}"#,
                Malformed::DuplicateMember(Part::Header),
            ),
            (
                r#"{"alg":"HS256","x":1,"\u0078":2}"#,
                Malformed::DuplicateMember(Part::Header),
            ),
        ] {
            assert_eq!(
                parse_compact(&token(header, "{}"), &mut SignatureBuf::new()).unwrap_err(),
                why,
                "{header}"
            );
        }
    }

    #[test]
    fn alg_names_are_classified_exactly() {
        let alg = |a: &str| {
            let t = token(&format!(r#"{{"alg":"{a}"}}"#), "{}");
            parse_compact(&t, &mut SignatureBuf::new())
                .expect("structure")
                .header
                .alg
        };
        assert_eq!(alg("ES256"), AlgName::Known(Algorithm::ES256));
        assert_eq!(alg("none"), AlgName::None);
        assert_eq!(alg("nOnE"), AlgName::None);
        assert_eq!(alg("es256"), AlgName::Unknown);
        assert_eq!(
            alg(r"ES256"),
            AlgName::Known(Algorithm::ES256),
            "escapes decode"
        );
    }

    #[test]
    fn oversized_headers_and_signatures() {
        let long_header = format!(r#"{{"alg":"HS256","x":"{}"}}"#, "a".repeat(2000));
        let t = token(&long_header, "{}");
        assert!(
            parse_compact(&t, &mut SignatureBuf::new()).is_ok(),
            "long headers still parse"
        );
        let h = enc(r#"{"alg":"HS256"}"#);
        let sig = B64.encode([1u8; MAX_SIGNATURE_BYTES + 1]);
        assert_eq!(
            parse_compact(
                &format!("{h}.{}.{sig}", enc("{}")),
                &mut SignatureBuf::new()
            )
            .unwrap_err(),
            Malformed::SignatureTooLong
        );
        let sig = B64.encode([1u8; MAX_SIGNATURE_BYTES]);
        assert!(
            parse_compact(
                &format!("{h}.{}.{sig}", enc("{}")),
                &mut SignatureBuf::new()
            )
            .is_ok()
        );
    }

    #[test]
    fn crit_and_unencoded_payload_are_refused() {
        for header in [
            r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
            r#"{"alg":"HS256","crit":[]}"#,
        ] {
            assert_eq!(
                parse_compact(&token(header, "{}"), &mut SignatureBuf::new()).unwrap_err(),
                Malformed::Crit
            );
        }
        for header in [
            r#"{"alg":"HS256","b64":false}"#,
            r#"{"alg":"HS256","b64":"no"}"#,
        ] {
            assert_eq!(
                parse_compact(&token(header, "{}"), &mut SignatureBuf::new()).unwrap_err(),
                Malformed::UnencodedPayload
            );
        }
        assert!(
            parse_compact(
                &token(r#"{"alg":"HS256","b64":true}"#, "{}"),
                &mut SignatureBuf::new()
            )
            .is_ok()
        );
    }

    #[test]
    fn key_carrying_headers_are_read_past() {
        let header = r#"{"alg":"RS256","jku":"https://evil.example/jwks","jwk":{"kty":"oct","k":"AA"},"x5u":"https://evil.example","x5c":["AA"]}"#;
        let t = token(header, "{}");
        let mut signature = SignatureBuf::new();
        let c = parse_compact(&t, &mut signature).expect("structure is fine");
        assert_eq!(c.header.kid, None);
        assert_eq!(c.header.alg, AlgName::Known(Algorithm::RS256));
    }

    #[test]
    fn types_compare_without_case_and_with_an_implied_application_prefix() {
        let same_type = |a: &str, b: &str| normalized_type(a) == normalized_type(b);
        assert!(same_type("at+jwt", "AT+JWT"));
        assert!(same_type("at+jwt", "application/at+jwt"));
        assert!(same_type("Application/AT+JWT", "at+jwt"));
        assert!(same_type("JWT", "jwt"));
        assert!(!same_type("at+jwt", "jwt"));
        assert!(
            !same_type("text/jwt", "jwt"),
            "another top-level type stays apart"
        );
        assert!(!same_type("", "jwt"));
        let t = token(r#"{"alg":"RS256","typ":"at+jwt"}"#, "{}");
        let mut signature = SignatureBuf::new();
        let c = parse_compact(&t, &mut signature).expect("valid");
        assert_eq!(c.header.typ.as_deref(), Some("at+jwt"));
    }
}
