//! What a shed call is: a Verify answered at once with RESOURCE_EXHAUSTED
//! and a `grpc-retry-pushback-ms` trailer (gRFC A6), told apart from a
//! failed call. Pure: reads a `tonic::Status`, sends nothing.
//!
//! Decisions:
//! - **Shedding is an outcome only when the run allows it** (`--allow-shed`).
//!   Without it, RESOURCE_EXHAUSTED is a failed call as any other code is,
//!   so the standard scenarios keep their zero-error gate.
//! - **No valid pushback, no shed.** jwtd's admission control always sends
//!   the trailer; RESOURCE_EXHAUSTED without it comes from somewhere else
//!   (a proxy, tonic's own message limits) and is counted as an error.
//!   "Valid" is gRFC A6's: a non-negative decimal integer of milliseconds,
//!   one value. A6 says a client must not retry on a negative or unparsable
//!   value; gRPC's implementations read it as a 32-bit signed integer (Java's
//!   `Integer.parseInt`, grpc-go's `strconv.Atoi` on a 32-bit field), so
//!   values above 2^31 - 1 are refused here too, and so are a sign, spaces
//!   or a second value, which some of them would read differently.
//! - **A hot call is never shed.** Its tokens are all memo hits (the corpus
//!   marks such calls and the driver primes them), which jwtd's admission
//!   control must always serve: a shed hot call is an error.
//! - **The reason comes from the message.** jwtd names the bound it hit:
//!   `max_pending_tokens` for the pending-token bound, the deadline for a
//!   call whose `grpc-timeout` would expire before its work could start.
//!   Anything else is still a shed (the trailer says so), of reason unknown.

use std::fmt;

use tonic::Code;
use tonic::metadata::MetadataMap;

/// The trailer of a shed answer (gRFC A6).
pub const PUSHBACK_TRAILER: &str = "grpc-retry-pushback-ms";

/// Why jwtd shed a call, as its message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The call's cold tokens would exceed `max_pending_tokens`.
    Pending,
    /// The call's deadline would expire before its cold work could start.
    Deadline,
    /// The message names neither.
    Unknown,
}

impl Reason {
    /// The report's name of the reason.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Pending => "pending",
            Reason::Deadline => "deadline",
            Reason::Unknown => "unknown",
        }
    }

    /// The reason named by a shed answer's `message`.
    pub fn of(message: &str) -> Reason {
        let message = message.to_ascii_lowercase();
        // The pending bound first: its message names the setting, and may
        // mention a deadline in passing; the deadline message has no reason
        // to name max_pending_tokens (it may well say "pending", so that
        // word alone decides nothing).
        if message.contains("max_pending_tokens") {
            Reason::Pending
        } else if message.contains("deadline") || message.contains("timeout") {
            Reason::Deadline
        } else {
            Reason::Unknown
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A shed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    /// Which bound refused it.
    pub reason: Reason,
    /// The pushback it asked for, in milliseconds.
    pub pushback_ms: u32,
}

/// Why a `grpc-retry-pushback-ms` trailer is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushbackError {
    /// The answer has no such trailer.
    #[error("no grpc-retry-pushback-ms trailer")]
    Missing,
    /// The trailer appears more than once.
    #[error("{0} grpc-retry-pushback-ms trailers")]
    Repeated(usize),
    /// The value is not a non-negative decimal integer of at most 2^31 - 1.
    #[error("grpc-retry-pushback-ms {0:?} is not a non-negative integer of milliseconds")]
    Invalid(String),
}

/// Why an error answer is not a shed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotShed {
    /// The run does not allow shedding (no `--allow-shed`).
    #[error("shedding not allowed in this run")]
    NotAllowed,
    /// The code is not RESOURCE_EXHAUSTED.
    #[error("code {0:?}")]
    OtherCode(Code),
    /// RESOURCE_EXHAUSTED without a valid pushback trailer.
    #[error("RESOURCE_EXHAUSTED with {0}")]
    Pushback(PushbackError),
    /// A call of memo hits only was shed; hits must never be.
    #[error("a hot call (memo hits only) was shed")]
    HotCall,
}

impl NotShed {
    /// Whether the answer looked like a shed but broke a rule (as opposed to
    /// an ordinary error, or a shed in a run that does not allow them).
    pub fn breaks_a_rule(&self) -> bool {
        matches!(self, NotShed::Pushback(_) | NotShed::HotCall)
    }
}

/// The milliseconds of one `grpc-retry-pushback-ms` value.
pub fn parse_pushback(value: &[u8]) -> Result<u32, PushbackError> {
    let invalid = || PushbackError::Invalid(String::from_utf8_lossy(value).into_owned());
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    // At most 10 ASCII digits: fits a u64 without overflow.
    let ms = value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    u32::try_from(ms)
        .ok()
        .filter(|ms| i32::try_from(*ms).is_ok())
        .ok_or_else(invalid)
}

/// The pushback of an answer's trailers (tonic puts a status's trailers,
/// other than `grpc-status` and `grpc-message`, in its metadata).
pub fn pushback(metadata: &MetadataMap) -> Result<u32, PushbackError> {
    let values: Vec<_> = metadata.get_all(PUSHBACK_TRAILER).iter().collect();
    match values.as_slice() {
        [] => Err(PushbackError::Missing),
        [one] => parse_pushback(one.as_bytes()),
        many => Err(PushbackError::Repeated(many.len())),
    }
}

/// Whether the error answer `status` of a call is a shed call: the rules of
/// the module doc, in order (code, run policy, trailer, hot call).
pub fn classify(status: &tonic::Status, hot: bool, allow_shed: bool) -> Result<Shed, NotShed> {
    if status.code() != Code::ResourceExhausted {
        return Err(NotShed::OtherCode(status.code()));
    }
    if !allow_shed {
        return Err(NotShed::NotAllowed);
    }
    let pushback_ms = pushback(status.metadata()).map_err(NotShed::Pushback)?;
    if hot {
        return Err(NotShed::HotCall);
    }
    Ok(Shed {
        reason: Reason::of(status.message()),
        pushback_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn exhausted(message: &str, pushback: &[&'static str]) -> tonic::Status {
        let mut metadata = MetadataMap::new();
        for value in pushback {
            metadata.append(PUSHBACK_TRAILER, MetadataValue::from_static(value));
        }
        tonic::Status::with_metadata(Code::ResourceExhausted, message, metadata)
    }

    #[test]
    fn pushback_values() {
        assert_eq!(parse_pushback(b"0"), Ok(0));
        assert_eq!(parse_pushback(b"25"), Ok(25));
        assert_eq!(parse_pushback(b"007"), Ok(7));
        assert_eq!(parse_pushback(b"2147483647"), Ok(i32::MAX as u32));
        for bad in [
            &b""[..],
            b"-1",
            b"+5",
            b" 5",
            b"5 ",
            b"1.5",
            b"5ms",
            b"2147483648",
            b"99999999999",
            b"\xff",
        ] {
            assert!(
                matches!(parse_pushback(bad), Err(PushbackError::Invalid(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn pushback_trailer_must_be_there_once() {
        assert_eq!(
            pushback(exhausted("x", &["40"]).metadata()),
            Ok(40),
            "one value"
        );
        assert_eq!(
            pushback(exhausted("x", &[]).metadata()),
            Err(PushbackError::Missing)
        );
        assert_eq!(
            pushback(exhausted("x", &["1", "2"]).metadata()),
            Err(PushbackError::Repeated(2))
        );
    }

    #[test]
    fn shed_versus_error() {
        let pending = exhausted(
            "12 cold tokens would exceed max_pending_tokens = 64",
            &["3"],
        );
        assert_eq!(
            classify(&pending, false, true),
            Ok(Shed {
                reason: Reason::Pending,
                pushback_ms: 3
            })
        );
        // Without --allow-shed it is a failed call.
        assert_eq!(classify(&pending, false, false), Err(NotShed::NotAllowed));
        // A hot call must never be shed, whatever the trailer says.
        assert_eq!(classify(&pending, true, true), Err(NotShed::HotCall));
        assert!(NotShed::HotCall.breaks_a_rule());
        // No trailer, or a bad one: an error, not a shed.
        let bare = exhausted("max_pending_tokens", &[]);
        assert_eq!(
            classify(&bare, false, true),
            Err(NotShed::Pushback(PushbackError::Missing))
        );
        let negative = exhausted("max_pending_tokens", &["-1"]);
        let refused = classify(&negative, false, true);
        assert!(
            matches!(&refused, Err(e @ NotShed::Pushback(PushbackError::Invalid(_))) if e.breaks_a_rule()),
            "{refused:?}"
        );
        // Another code is never a shed, trailer or not.
        let mut metadata = MetadataMap::new();
        metadata.insert(PUSHBACK_TRAILER, MetadataValue::from_static("5"));
        let unavailable = tonic::Status::with_metadata(Code::Unavailable, "busy", metadata);
        assert_eq!(
            classify(&unavailable, false, true),
            Err(NotShed::OtherCode(Code::Unavailable))
        );
        assert!(!NotShed::OtherCode(Code::Unavailable).breaks_a_rule());
    }

    #[test]
    fn reasons_from_messages() {
        assert_eq!(
            Reason::of("8 cold tokens would exceed max_pending_tokens (256)"),
            Reason::Pending
        );
        assert_eq!(
            Reason::of("deadline would expire before the signature checks could start"),
            Reason::Deadline
        );
        assert_eq!(
            Reason::of("grpc-timeout of 5 ms is shorter than the queue"),
            Reason::Deadline
        );
        assert_eq!(
            Reason::of("deadline would pass while 40 tokens are pending"),
            Reason::Deadline
        );
        assert_eq!(Reason::of("overloaded"), Reason::Unknown);
        let deadline = exhausted("Deadline too short for the queue", &["0"]);
        assert_eq!(
            classify(&deadline, false, true).map(|s| s.reason),
            Ok(Reason::Deadline)
        );
    }
}
