//! Strict JSON for JOSE headers, JWT claims and JWK Sets: a hand-written
//! pull scanner that accepts exactly RFC 8259 JSON, as serde_json does, and
//! refuses a member name that appears twice in any object, at any depth.
//!
//! serde_json keeps the last of two equal member names, so `{"iss":"a","iss":"b"}`
//! would mean different things to jwtd and to a library that keeps the first.
//! RFC 7515 §4 and RFC 7519 §4 let a parser either reject such input or take the
//! last member; jwtd rejects it. The check runs during the one pass over the
//! text, names without escapes are borrowed from it, and objects with many
//! members switch from a linear scan to a hash set so a crafted 8 KiB payload
//! cannot make the check quadratic.
//!
//! Decisions (issue 14, the fixed cost per token; numbers in BENCHMARKS.md):
//! - A scanner of our own instead of serde_json's visitor for the header and
//!   the claims: the two parses cost 2.4k and 6k instructions per typical
//!   token through serde's `Deserializer` (its `MapAccess` and `Visitor`
//!   calls, an error value built and dropped for every type check), about
//!   two thirds of jwtd's fixed cost beside the signature. The callers read
//!   the registered members directly from the [`Scanner`] and skip the rest
//!   in the same pass. Measured with `examples/instructions.rs` under
//!   callgrind (HS256 bench token, cold minus raw): 12,790 instructions with
//!   serde_json, 11,122 with this scanner, of which the scanner is about
//!   6.3k (2.9k of it in [`Scanner::string`], some 110 per string). The
//!   gain is smaller than serde's share suggested: serde_json's walk was
//!   already lean, and what it cost was spread over the call tree.
//! - Member names of at most seven bytes without escapes (every registered
//!   header and claim name but `client_id`) are read from one 8-byte word
//!   and handed to the caller with a [`Name::key`], their bytes and length
//!   as one integer, so headers and claims match their known names with
//!   integer comparisons instead of a string scan and `memcmp`s. An escaped
//!   name gets its key from its decoded text, so `"\u0069ss"` is still
//!   `iss`, and the length in the key keeps `"a\u0000"` apart from `"a"`.
//!   NumericDates of up to 18 digits are read as integers in the same pass
//!   ([`Scanner::small_integer`]), eight digits at a time. With the hot
//!   methods inlined into the two readers, these took the fixed cost per
//!   HS256 bench token from 10,785 to 8,738 instructions (2026-12-06);
//!   [`Scanner::peek`] trying one compare before its whitespace loop took
//!   another ~500 (it is inlined into every read, some 40 per token).
//! - It accepts the same texts as serde_json, so a JWK Set checked here and
//!   then read by serde_json means one thing to both: the grammar of RFC 8259
//!   (no trailing commas, no leading zeros, no `+`, no bare `.`), strings
//!   without raw control characters, `\u` escapes with surrogates in valid
//!   pairs only, numbers that fit an `f64`, containers nested at most
//!   [`MAX_DEPTH`] deep (serde_json's recursion limit, so recursion here is
//!   bounded too), whitespace of the four JSON kinds around one value. The
//!   `json_scanner` fuzz target and the differential tests below compare it
//!   with serde_json (with `float_roundtrip`, which reads numbers exactly as
//!   `str::parse::<f64>` does here).
//! - The text must be UTF-8 as a whole, checked once by the caller's `&str`:
//!   JSON outside strings is ASCII, so this accepts exactly what a byte parse
//!   that checked every string accepts.
//!
//! Decision record: `docs/adr/0007-strict-json.md`.

use std::borrow::Cow;
use std::collections::HashSet;

/// Objects with more members than this check duplicates through a hash set.
const LINEAR_SCAN_LIMIT: usize = 16;

/// Containers may nest this deep, less one (serde_json's limit: it refuses
/// the 128th level).
pub(crate) const MAX_DEPTH: usize = 128;

/// Why a JSON document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonProblem {
    /// Not valid JSON, or not of the expected shape.
    Invalid,
    /// A member name appears twice in one object.
    Duplicate,
}

use JsonProblem::{Duplicate, Invalid};

/// The names seen so far in one object: up to [`LINEAR_SCAN_LIMIT`] names
/// borrowed from the text in an inline array (no allocation and nothing to
/// drop for ordinary headers and claims); past that, or from the first name
/// that had escapes, every name in a hash set.
#[derive(Default)]
pub(crate) struct Seen<'a> {
    inline: [&'a str; LINEAR_SCAN_LIMIT],
    len: usize,
    set: Option<HashSet<Cow<'a, str>>>,
}

impl<'a> Seen<'a> {
    /// Records `name`; false when the object already had it.
    pub(crate) fn insert(&mut self, name: Cow<'a, str>) -> bool {
        if let Some(set) = &mut self.set {
            return set.insert(name);
        }
        match name {
            Cow::Borrowed(name) if self.len < LINEAR_SCAN_LIMIT => {
                if self.inline[..self.len].contains(&name) {
                    return false;
                }
                self.inline[self.len] = name;
                self.len += 1;
                true
            }
            name => {
                let mut set: HashSet<Cow<'a, str>> = self.inline[..self.len]
                    .iter()
                    .map(|n| Cow::Borrowed(*n))
                    .collect();
                let fresh = set.insert(name);
                self.set = Some(set);
                fresh
            }
        }
    }
}

/// A JSON number as it appears in the text, its grammar already checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Number<'a> {
    text: &'a str,
    /// No fraction and no exponent.
    integer: bool,
}

impl Number<'_> {
    /// The value read as an `f64`, correctly rounded; `None` when it is
    /// beyond the `f64` range (serde_json refuses such a number).
    pub(crate) fn to_f64(self) -> Option<f64> {
        self.text.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    /// The value when it is an integer that fits an `i64`.
    pub(crate) fn to_i64(self) -> Option<i64> {
        if !self.integer {
            return None;
        }
        let (negative, digits) = match self.text.strip_prefix('-') {
            Some(digits) => (true, digits),
            None => (false, self.text),
        };
        if digits.len() > 18 {
            // May not fit: let core check.
            return self.text.parse().ok();
        }
        // At most 18 digits: below 10^18, no overflow.
        let value = digits
            .bytes()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
        Some(if negative { -value } else { value })
    }

    /// Whether serde_json would read it: every number short enough to be an
    /// `i64` or `u64` is; a longer one must fit an `f64`.
    fn in_range(self) -> bool {
        (self.integer && self.text.len() <= 19) || self.to_f64().is_some()
    }
}

/// A member name as [`Scanner::next_name`] read it: its text, and for a
/// name of at most seven bytes the same as one integer ([`Name::key`]), so
/// a caller matches its known names with integer comparisons.
#[derive(Debug)]
pub(crate) struct Name<'a> {
    key: u64,
    /// The name, unescaped.
    pub(crate) text: Cow<'a, str>,
}

/// The [`Name::key`] of every name longer than seven bytes.
const LONG_NAME: u64 = u64::MAX;

impl<'a> Name<'a> {
    fn new(text: Cow<'a, str>) -> Self {
        Self {
            key: short_key(text.as_bytes()),
            text,
        }
    }

    /// The name's bytes little-endian with its length in the top byte
    /// ([`short_key`]), or a value no short name has.
    pub(crate) fn key(&self) -> u64 {
        self.key
    }
}

/// The key of a name of at most seven bytes: its bytes little-endian, its
/// length in the top byte (so `"a"` and `"a\u0000"` differ); longer names
/// all get [`LONG_NAME`], whose top byte no short name has.
pub(crate) const fn short_key(name: &[u8]) -> u64 {
    if name.len() > 7 {
        return LONG_NAME;
    }
    let mut word = 0;
    let mut i = 0;
    while i < name.len() {
        word |= (name[i] as u64) << (8 * i);
        i += 1;
    }
    word_key(word, name.len())
}

/// The [`short_key`] of the `len` (at most seven) bytes at the low end of
/// `word`, little-endian; the bytes above them are ignored.
const fn word_key(word: u64, len: usize) -> u64 {
    (word & ((1u64 << (8 * len)) - 1)) | (len as u64) << 56
}

/// A pull scanner over one JSON text. Each method reads one piece of the
/// grammar at the current position, after any whitespace, and fails with
/// [`JsonProblem::Invalid`] on anything else; callers walk an object with
/// [`Scanner::begin_object`] and [`Scanner::next_name`] and read or skip
/// each value.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    /// Containers open around the position.
    depth: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            depth: 0,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        // Compact JSON, as tokens carry it, has no whitespace: one compare.
        if let Some(&b) = bytes.get(self.pos)
            && b > b' '
        {
            return Some(b);
        }
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.pos) {
            self.pos += 1;
        }
        bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Result<(), JsonProblem> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    fn enter(&mut self, open: u8) -> Result<(), JsonProblem> {
        self.eat(open)?;
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(Invalid);
        }
        Ok(())
    }

    /// Reads the `,` before the next member or element, or the closing
    /// `close`: true when another one follows.
    #[inline(always)]
    fn more(&mut self, close: u8, first: &mut bool) -> Result<bool, JsonProblem> {
        match self.peek() {
            Some(b) if b == close => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(false);
            }
            Some(b',') if !*first => self.pos += 1,
            _ if *first => {}
            _ => return Err(Invalid),
        }
        *first = false;
        Ok(true)
    }

    /// Reads the `{` that opens an object.
    pub(crate) fn begin_object(&mut self) -> Result<(), JsonProblem> {
        self.enter(b'{')
    }

    /// Reads the next member's name and its `:`, or the object's closing
    /// `}` (then `None`). `first` starts true for each object.
    #[inline(always)]
    pub(crate) fn next_name(&mut self, first: &mut bool) -> Result<Option<Name<'a>>, JsonProblem> {
        if !self.more(b'}', first)? {
            return Ok(None);
        }
        let name = match self.short_plain_name() {
            Some(name) => name,
            None => Name::new(self.string()?),
        };
        self.eat(b':')?;
        Ok(Some(name))
    }

    /// The name at the position when it is plain (no escape) and at most
    /// seven bytes long, read from one word; `None` (nothing read) for
    /// every other string, which [`Scanner::string`] reads instead. Most
    /// member names of headers and claims are such names: this spares them
    /// the string scan and lets callers match them as one integer.
    #[inline(always)]
    fn short_plain_name(&mut self) -> Option<Name<'a>> {
        let at = self.pos;
        let bytes = self.bytes();
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let word = le_word(bytes.get(at + 1..at + 9)?);
        let len = (stops(word).trailing_zeros() / 8) as usize;
        // Eight plain bytes (len 8), or a stop that is not the closing quote.
        if bytes.get(at + 1 + len) != Some(&b'"') || len > 7 {
            return None;
        }
        let text = self.text.get(at + 1..at + 1 + len)?;
        self.pos = at + 2 + len;
        Some(Name {
            key: word_key(word, len),
            text: Cow::Borrowed(text),
        })
    }

    /// Reads the `[` that opens an array.
    pub(crate) fn begin_array(&mut self) -> Result<(), JsonProblem> {
        self.enter(b'[')
    }

    /// Reads the `,` before the next element (true), or the array's
    /// closing `]` (false). `first` starts true for each array.
    pub(crate) fn next_element(&mut self, first: &mut bool) -> Result<bool, JsonProblem> {
        self.more(b']', first)
    }

    /// Reads `null` when it is next; false (nothing read) otherwise.
    pub(crate) fn null(&mut self) -> bool {
        self.literal(b"null")
    }

    /// Reads `true` when it is next; false (nothing read) otherwise.
    pub(crate) fn literal_true(&mut self) -> bool {
        self.literal(b"true")
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        self.peek();
        let found = self.bytes()[self.pos..].starts_with(word);
        if found {
            self.pos += word.len();
        }
        found
    }

    /// Reads a string: borrowed from the text when it has no escapes,
    /// decoded otherwise.
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>, JsonProblem> {
        self.eat(b'"')?;
        let start = self.pos;
        let rest = self.bytes().get(start..).unwrap_or_default();
        let run = plain_run(rest);
        if rest.get(run) == Some(&b'"') {
            self.pos = start + run + 1;
            // Both ends are next to ASCII bytes: character boundaries.
            return self
                .text
                .get(start..start + run)
                .map(Cow::Borrowed)
                .ok_or(Invalid);
        }
        self.escaped_string(start, start + run)
    }

    /// The rest of a string whose plain text from `start` stopped at `at`
    /// on something other than its closing quote: an escape, a control
    /// character or the end of the text. Out of line, so the plain strings
    /// of every header and payload pay nothing for it.
    #[cold]
    #[inline(never)]
    fn escaped_string(&mut self, start: usize, mut at: usize) -> Result<Cow<'a, str>, JsonProblem> {
        let bytes = self.bytes();
        if bytes.get(at) != Some(&b'\\') {
            return Err(Invalid);
        }
        let mut out = String::with_capacity(at - start + 16);
        out.push_str(self.text.get(start..at).ok_or(Invalid)?);
        loop {
            match bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    let (c, next) = escape(bytes, at + 1).ok_or(Invalid)?;
                    out.push(c);
                    at = next;
                }
                Some(_) => {
                    let run = at + plain_run(bytes.get(at..).unwrap_or_default());
                    if run == at {
                        // A control character.
                        return Err(Invalid);
                    }
                    out.push_str(self.text.get(at..run).ok_or(Invalid)?);
                    at = run;
                }
                None => return Err(Invalid),
            }
        }
    }

    /// Reads an integer of at most 18 digits, without fraction or exponent,
    /// when one is next; `None` (nothing read) for every other number and
    /// every other value, which [`Scanner::number`] reads or refuses. The
    /// NumericDates of every token are such integers: this reads them in
    /// one pass, with no text to parse again.
    #[inline(always)]
    pub(crate) fn small_integer(&mut self) -> Option<i64> {
        self.peek();
        let bytes = self.bytes();
        let negative = bytes.get(self.pos) == Some(&b'-');
        let start = self.pos + usize::from(negative);
        let mut at = start;
        let mut value = 0i64;
        // At most 18 digits: below 10^18, no overflow. Eight at a time
        // while they last (a NumericDate has ten), then one by one.
        while at - start <= 10
            && let Some(eight) = bytes.get(at..at + 8).and_then(eight_digits)
        {
            value = value * 100_000_000 + i64::from(eight);
            at += 8;
        }
        while at - start < 18
            && let Some(&digit @ b'0'..=b'9') = bytes.get(at)
        {
            value = value * 10 + i64::from(digit - b'0');
            at += 1;
        }
        let digits = at - start;
        let leading_zero = digits > 1 && bytes.get(start) == Some(&b'0');
        if digits == 0
            || leading_zero
            || matches!(bytes.get(at), Some(b'0'..=b'9' | b'.' | b'e' | b'E'))
        {
            return None;
        }
        self.pos = at;
        Some(if negative { -value } else { value })
    }

    /// Reads a number, checking its grammar (RFC 8259 §6).
    pub(crate) fn number(&mut self) -> Result<Number<'a>, JsonProblem> {
        self.peek();
        let bytes = self.bytes();
        let start = self.pos;
        let mut at = start;
        let digits = |at: &mut usize| {
            let from = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > from
        };
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        match bytes.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                digits(&mut at);
            }
            _ => return Err(Invalid),
        }
        let mut integer = true;
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            integer = false;
            if !digits(&mut at) {
                return Err(Invalid);
            }
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            integer = false;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            if !digits(&mut at) {
                return Err(Invalid);
            }
        }
        self.pos = at;
        let text = self.text.get(start..at).ok_or(Invalid)?;
        Ok(Number { text, integer })
    }

    /// Reads any value and discards it, failing on a duplicate member name
    /// anywhere inside. True when the value was `null`.
    pub(crate) fn skip_value(&mut self) -> Result<bool, JsonProblem> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| false),
            Some(b'{') => {
                self.begin_object()?;
                let mut seen = Seen::default();
                let mut first = true;
                while let Some(name) = self.next_name(&mut first)? {
                    if !seen.insert(name.text) {
                        return Err(Duplicate);
                    }
                    self.skip_value()?;
                }
                Ok(false)
            }
            Some(b'[') => {
                self.begin_array()?;
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.skip_value()?;
                }
                Ok(false)
            }
            Some(b'-' | b'0'..=b'9') => {
                if self.number()?.in_range() {
                    Ok(false)
                } else {
                    Err(Invalid)
                }
            }
            _ if self.null() => Ok(true),
            _ if self.literal_true() || self.literal(b"false") => Ok(false),
            _ => Err(Invalid),
        }
    }

    /// Checks that nothing but whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), JsonProblem> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Invalid),
        }
    }
}

/// The length of the plain text at the start of a string's remainder: up
/// to the first `"`, `\` or control character, or the end.
///
/// Eight bytes at a time (SWAR): for each word, a byte that equals `"` or
/// `\` becomes zero under XOR, and the borrow trick of "Bit Twiddling
/// Hacks" (`hasless`) marks the bytes below a bound; a borrow can only mark
/// bytes above a true hit, so the lowest mark is exact. 3.7k of the 12k
/// instructions of jwtd's fixed cost per bench token went to a byte-at-a-time
/// loop here.
fn plain_run(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let hits = stops(le_word(chunk));
        if hits != 0 {
            return at + (hits.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let rest = chunks.remainder();
    at + rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(rest.len())
}

/// The eight bytes of `eight` (which must be eight long) as one word,
/// little-endian: the first byte lowest, as the SWAR readers count.
#[inline(always)]
fn le_word(eight: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(eight);
    u64::from_le_bytes(word)
}

/// The high bit of each byte of `word` (little-endian) that ends a string's
/// plain text, `"`, `\` or a control character, and possibly of bytes above
/// the first such byte; the lowest set bit is exact.
fn stops(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let below = |word: u64, bound: u8| word.wrapping_sub(ONES * u64::from(bound)) & !word & HIGH;
    below(word ^ (ONES * u64::from(b'"')), 1)
        | below(word ^ (ONES * u64::from(b'\\')), 1)
        | below(word, 0x20)
}

/// The value of eight ASCII digits, or `None` when one of the bytes is not
/// a digit. SWAR, as simdjson's `parse_eight_digits_unrolled`: a byte is a
/// digit when its high nibble is 3 and adding 6 does not carry out of its
/// low nibble; then pairs, quads and the two halves are combined with one
/// multiplication each.
fn eight_digits(bytes: &[u8]) -> Option<u32> {
    const NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    let word = le_word(bytes);
    let digits = (word & NIBBLES) | ((word.wrapping_add(0x0606_0606_0606_0606) & NIBBLES) >> 4);
    if digits != 0x3333_3333_3333_3333 {
        return None;
    }
    let pairs = ((word & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561)) >> 8;
    let quads = ((pairs & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601)) >> 16;
    let value = ((quads & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001)) >> 32;
    // Below 10^8 by construction.
    u32::try_from(value & 0xFFFF_FFFF).ok()
}

/// Decodes the escape whose letter is at `at` (just past the `\`): the
/// character and the position after the escape.
fn escape(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let c = match *bytes.get(at)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let high = hex4(bytes, at + 1)?;
            return match high {
                0xD800..=0xDBFF => {
                    // A surrogate pair: the low half must follow at once.
                    if bytes.get(at + 5..at + 7)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(bytes, at + 7)?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return None;
                    }
                    let code =
                        0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    Some((char::from_u32(code)?, at + 11))
                }
                0xDC00..=0xDFFF => None,
                _ => Some((char::from_u32(u32::from(high))?, at + 5)),
            };
        }
        _ => return None,
    };
    Some((c, at + 1))
}

/// Four hex digits at `at`.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at + 4)?;
    digits.iter().try_fold(0u16, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc << 4 | v as u16)
    })
}

/// Checks that `bytes` is one JSON value with no duplicate member names and
/// nothing after it.
pub(crate) fn check_no_duplicates(bytes: &[u8]) -> Result<(), JsonProblem> {
    let text = std::str::from_utf8(bytes).map_err(|_| Invalid)?;
    let mut scan = Scanner::new(text);
    scan.skip_value()?;
    scan.end()
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
    fn escaped_names_move_the_check_to_the_hash_set_and_still_catch_repeats() {
        for doc in [
            r#"{"a":1,"\u0062":2,"b":3}"#,
            r#"{"\u0061":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"\u0061":1,"\u0061":2}"#,
        ] {
            assert_eq!(check_no_duplicates(doc.as_bytes()), Err(Duplicate), "{doc}");
        }
        assert_eq!(check_no_duplicates(br#"{"a":1,"\u0062":2,"c":3}"#), Ok(()));
    }

    #[test]
    fn trailing_bytes_and_bad_json_are_invalid() {
        assert_eq!(check_no_duplicates(b"{} x"), Err(JsonProblem::Invalid));
        assert_eq!(check_no_duplicates(b"{\"a\":}"), Err(JsonProblem::Invalid));
        assert_eq!(check_no_duplicates(b""), Err(JsonProblem::Invalid));
    }

    /// What serde_json says of `doc`: valid JSON or not (duplicates aside,
    /// which it does not see).
    fn serde_accepts(doc: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(doc).is_ok()
    }

    #[test]
    fn accepts_and_refuses_what_serde_json_does() {
        for doc in [
            "0",
            "-0",
            "-0.0",
            "1e5",
            "1E+5",
            "1e-5",
            "0.5",
            "12345678901234567890",
            "1e308",
            "1e309",
            "-1e309",
            "1e-400",
            "18446744073709551616",
            "01",
            "-",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "--1",
            "0x1",
            "NaN",
            "Infinity",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "truex",
            "[]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{}",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{1:2}"#,
            r#""\u00e9""#,
            r#""\uD83D\uDE00""#,
            r#""\uD83D""#,
            r#""\uDE00""#,
            r#""\uD83Dx""#,
            r#""\uD83D\u0041""#,
            r#""\uZZZZ""#,
            r#""\u12""#,
            r#""\x""#,
            "\"a\tb\"",
            "\"a\u{7f}b\"",
            "\"é\"",
            " \t\n\r[ ] \n",
            "\u{a0}[]",
            "[]\u{0c}",
            r#""\/\b\f\n\r\t\"\\""#,
            "\"",
            "\"\\",
            "[",
            "{",
            r#"{"a""#,
            r#"{"a":"#,
            "1 2",
            "[1e400]",
            "[-1e400]",
            "[0.0000001e-400]",
        ] {
            let ours = check_no_duplicates(doc.as_bytes()).is_ok();
            assert_eq!(ours, serde_accepts(doc), "{doc:?}");
        }
    }

    #[test]
    fn decodes_strings_as_serde_json_does() {
        for doc in [
            r#""plain""#,
            r#""\u00e9\u0041\/\"\\\b\f\n\r\t""#,
            r#""a\uD83D\uDE00b\u20ACc""#,
            "\"mixed é \\n ü\"",
        ] {
            let ours = Scanner::new(doc).string().expect("a string");
            let theirs: String = serde_json::from_str(doc).expect("serde_json reads it");
            assert_eq!(ours, theirs, "{doc:?}");
        }
        assert!(matches!(
            Scanner::new(r#""abc""#).string(),
            Ok(Cow::Borrowed("abc"))
        ));
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [1, 126, 127, 128, 129, 5000] {
            let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(
                check_no_duplicates(doc.as_bytes()).is_ok(),
                serde_accepts(&doc),
                "depth {depth}"
            );
            let doc = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
            assert_eq!(
                check_no_duplicates(doc.as_bytes()).is_ok(),
                serde_accepts(&doc),
                "object depth {depth}"
            );
        }
    }

    #[test]
    fn plain_runs_end_at_the_first_quote_backslash_or_control_character() {
        for len in 0..40 {
            for (end, stop) in [
                (len, b'"'),
                (len, b'\\'),
                (len, 0x1f),
                (len, 0),
                (len, b'\n'),
            ] {
                // Non-ASCII text and the bytes just above each bound before the stop.
                let mut text: Vec<u8> = "é!#]\u{7f} ".bytes().cycle().take(end).collect();
                text.push(stop);
                text.extend_from_slice(b"\"tail");
                assert_eq!(plain_run(&text), end, "{text:?}");
            }
            let plain: Vec<u8> = "ab ü".bytes().cycle().take(len).collect();
            assert_eq!(plain_run(&plain), len);
        }
    }

    #[test]
    fn a_name_has_one_key_however_it_is_written() {
        let doc = r#"{"iss":1, "\u0069ss":2,"a\u0000":3,"a":4,"":5,"abcdefg":6,"abcdefgh":7,"é":8,"i\"s":9}"#;
        let mut scan = Scanner::new(doc);
        scan.begin_object().expect("an object");
        let mut first = true;
        let mut names = Vec::new();
        while let Some(name) = scan.next_name(&mut first).expect("a name") {
            names.push((name.key(), name.text.into_owned()));
            scan.skip_value().expect("a value");
        }
        let expected: Vec<(u64, String)> = [
            "iss", "iss", "a\0", "a", "", "abcdefg", "abcdefgh", "é", "i\"s",
        ]
        .iter()
        .map(|n| (short_key(n.as_bytes()), (*n).to_owned()))
        .collect();
        assert_eq!(names, expected);
        assert_ne!(short_key(b"a\0"), short_key(b"a"));
        assert_eq!(short_key(b"abcdefgh"), LONG_NAME);
        assert_eq!(short_key(b"client_id"), LONG_NAME);
        assert_ne!(short_key(b"abcdefg"), LONG_NAME);
    }

    #[test]
    fn eight_digits_read_as_decimal_and_nothing_else_passes() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let text = format!("{:08}", x % 100_000_000);
            assert_eq!(eight_digits(text.as_bytes()), text.parse().ok(), "{text}");
            // One byte replaced by each byte value that is not a digit.
            let mut bytes = text.clone().into_bytes();
            let at = (x >> 40) as usize % 8;
            for b in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
                bytes[at] = b;
                assert_eq!(eight_digits(&bytes), None, "{bytes:?}");
            }
        }
        // Every length of every leading-digit count reads as `str::parse`.
        for digits in 1..=18 {
            let text: String = "9876543210123456789".chars().take(digits).collect();
            let mut scan = Scanner::new(&text);
            assert_eq!(scan.small_integer(), text.parse().ok(), "{text}");
            let negative = format!("-{text}");
            let mut scan = Scanner::new(&negative);
            assert_eq!(scan.small_integer(), negative.parse().ok(), "{negative}");
        }
    }

    #[test]
    fn small_integers_read_as_the_number_grammar_reads_them() {
        for doc in [
            "0",
            "-0",
            "7",
            "-7",
            "1700000000",
            " 42 ",
            "42,",
            "42}",
            "-42]",
            "999999999999999999",
            "-999999999999999999",
        ] {
            let mut fast = Scanner::new(doc);
            let mut full = Scanner::new(doc);
            let number = full.number().expect("a number");
            assert_eq!(fast.small_integer(), number.to_i64(), "{doc}");
            assert_eq!(fast.pos, full.pos, "{doc}");
        }
        // Left to `number`, with nothing read: longer integers, fractions,
        // exponents, leading zeros, and what is not a number at all.
        for doc in [
            "9999999999999999999",
            "1000000000000000000",
            "1.5",
            "1e3",
            "1E3",
            "-1.0",
            "01",
            "-01",
            "-",
            "",
            "\"1\"",
            "null",
            "+1",
            ".5",
        ] {
            let mut fast = Scanner::new(doc);
            assert_eq!(fast.small_integer(), None, "{doc}");
            assert_eq!(
                fast.bytes().get(fast.pos..),
                doc.trim_start().as_bytes().get(..),
                "{doc}"
            );
        }
    }

    #[test]
    fn numbers_read_as_written() {
        fn number(doc: &str) -> Number<'_> {
            Scanner::new(doc).number().expect("a number")
        }
        assert_eq!(number("-42").to_i64(), Some(-42));
        assert_eq!(number("9223372036854775807").to_i64(), Some(i64::MAX));
        assert_eq!(number("9223372036854775808").to_i64(), None);
        assert_eq!(number("-9223372036854775808").to_i64(), Some(i64::MIN));
        assert_eq!(
            number("999999999999999999").to_i64(),
            Some(999_999_999_999_999_999)
        );
        assert_eq!(number("-0").to_i64(), Some(0));
        assert_eq!(number("1.5").to_i64(), None);
        assert_eq!(number("1e3").to_i64(), None);
        assert_eq!(number("1e3").to_f64(), Some(1000.0));
        assert_eq!(number("1e400").to_f64(), None);
    }
}
