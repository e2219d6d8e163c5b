//! A few values kept by the exact text they were computed from: the memo
//! of parsed protected headers (`jose`), one per thread, so a header seen
//! again costs a compare and a reference count instead of a decode and a
//! parse.
//!
//! Decisions (issue 14, the fixed cost per token; numbers in BENCHMARKS.md,
//! "Parsed headers, per thread"):
//! - **Why it pays.** A signer writes the same header for every token it
//!   signs with one key (`alg`, `kid`, `typ`, in its own order and
//!   spacing), so the tokens of an issuer, new ones included, share a few
//!   header texts. Decoding, parsing and moving one cost ~1,350 of the
//!   7,879 instructions jwtd spent beside an HS256 MAC (6,536 with this
//!   memo; callgrind, `examples/instructions HS256 cold`).
//! - **The value is shared, not copied** (`Rc<Header>`): a 152-byte header
//!   copied out of its slot and moved on to the verifier cost ~280
//!   instructions more per token than a reference count.
//! - **Exact text decides.** A slot answers only a text byte for byte equal
//!   to the one its value was computed from, and the computation (the
//!   header's decode and parse) is a pure function of that text, so a hit
//!   is the answer a computation would give. No hash is involved, so no
//!   collision can hand one token another's header. Only successes are
//!   kept: a malformed header is decoded and refused every time, with the
//!   same reason.
//! - **Per thread, [`SLOTS`] slots, replaced in turn, no locks.** A shared
//!   table would put a shared cache line on every token's path; the
//!   verification pool has one thread per core, and each learns its
//!   issuers' headers within a few tokens; eight slots hold a few issuers'
//!   keys through a rotation. A thread that sees more distinct headers than
//!   slots, in turn, misses every time, and pays for the search, the `Rc`
//!   and the slot's copy: `examples/instructions HS256 cold_new_headers`,
//!   sixteen header texts of one length in turn (so every slot's bytes are
//!   compared), counts 8,239 instructions beside the MAC where the same
//!   tokens cost 7,819 without this memo (+5%), against 1,344 saved by
//!   every hit. Texts longer than [`MAX_TEXT`] are not kept: no common
//!   header is that long.

/// Values kept, per memo.
pub(crate) const SLOTS: usize = 8;

/// The longest text kept, in bytes: 128 base64url characters are 96
/// decoded bytes, room for `alg`, a 43-character thumbprint `kid` and
/// `typ`.
pub(crate) const MAX_TEXT: usize = 128;

struct Slot<T> {
    len: u8,
    text: [u8; MAX_TEXT],
    value: T,
}

/// Up to [`SLOTS`] values, each with the text it was computed from.
pub(crate) struct Recent<T> {
    slots: [Option<Slot<T>>; SLOTS],
    /// The slot the next miss replaces.
    next: usize,
}

impl<T: Clone> Recent<T> {
    /// An empty memo (`const`, for a `thread_local!`).
    pub(crate) const fn new() -> Self {
        Self {
            slots: [const { None }; SLOTS],
            next: 0,
        }
    }

    /// A copy of the value kept for exactly `text`, or what `compute`
    /// answers (kept when it is a value and `text` is short enough).
    pub(crate) fn get_or_try<E>(
        &mut self,
        text: &str,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(len) = u8::try_from(text.len())
            .ok()
            .filter(|len| usize::from(*len) <= MAX_TEXT)
        else {
            return compute();
        };
        let found = self
            .slots
            .iter()
            .flatten()
            .find(|slot| slot.len == len && slot.text[..usize::from(len)] == *text.as_bytes());
        if let Some(slot) = found {
            return Ok(slot.value.clone());
        }
        let value = compute()?;
        let mut kept = [0; MAX_TEXT];
        kept[..usize::from(len)].copy_from_slice(text.as_bytes());
        self.slots[self.next] = Some(Slot {
            len,
            text: kept,
            value: value.clone(),
        });
        self.next = (self.next + 1) % SLOTS;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a computation from `text` gives: the text itself, owned.
    fn computed(text: &str) -> Result<String, ()> {
        Ok(text.to_owned())
    }

    #[test]
    fn a_kept_value_answers_only_its_own_text() {
        // More texts than slots, all of one length and differing in one
        // byte, each asked for in turn, three times over: every answer is
        // its own text's.
        let texts: Vec<String> = (0..SLOTS * 2 + 1)
            .map(|i| format!("header-{i:02}"))
            .collect();
        let mut recent = Recent::new();
        for round in 0..3 {
            for text in &texts {
                assert_eq!(recent.get_or_try(text, || computed(text)), Ok(text.clone()));
            }
            // The last SLOTS again: kept, and still each its own.
            for text in texts.iter().rev().take(SLOTS) {
                let answer = recent.get_or_try(text, || panic!("round {round}: {text} again"));
                assert_eq!(answer, Ok::<_, ()>(text.clone()));
            }
        }
        // A prefix, an extension and a text of the same length that differs
        // in its last byte are other texts.
        for other in ["header-0", "header-088", "header-0x"] {
            assert_eq!(
                recent.get_or_try(other, || computed(other)),
                Ok(other.to_owned())
            );
        }
    }

    #[test]
    fn a_text_is_computed_once_while_kept() {
        let mut recent = Recent::new();
        let mut computations = 0;
        for _ in 0..5 {
            let answer = recent.get_or_try("eyJhbGciOiJFUzI1NiJ9", || {
                computations += 1;
                computed("value")
            });
            assert_eq!(answer, Ok("value".to_owned()));
        }
        assert_eq!(computations, 1);
    }

    #[test]
    fn failures_are_not_kept_and_long_texts_are_computed_each_time() {
        let mut recent = Recent::<String>::new();
        for _ in 0..3 {
            let mut computations = 0;
            let answer = recent.get_or_try("bad", || {
                computations += 1;
                Err("refused")
            });
            assert_eq!((answer, computations), (Err("refused"), 1));
        }
        let long = "h".repeat(MAX_TEXT + 1);
        for _ in 0..3 {
            let mut computations = 0;
            let answer = recent.get_or_try(&long, || {
                computations += 1;
                computed(&long)
            });
            assert_eq!((answer, computations), (Ok(long.clone()), 1));
        }
        // The longest text kept is kept.
        let longest = "h".repeat(MAX_TEXT);
        let _ = recent.get_or_try(&longest, || computed(&longest));
        let again = recent.get_or_try(&longest, || panic!("computed again"));
        assert_eq!(again, Ok::<_, ()>(longest));
    }
}
