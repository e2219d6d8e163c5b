//! The `--view` of a run (`jwtd.v1.View`, issue 14): what each request asks
//! jwtd to send back, and the shape each answered result must then have.
//!
//! Decisions:
//! - Without `--view` nothing is sent (the field stays unset, so requests
//!   are byte-for-byte those of earlier runs) and no shape is checked; with
//!   `--view full` the field is sent, so a FULL run and a STATUS_ONLY run
//!   send requests of the same size and differ only in their answers.
//! - A shape is checked only on tokens whose status is the expected one
//!   (a wrong status is already counted); a rejection must carry its reason
//!   and no claims in every view.

use std::fmt;
use std::str::FromStr;

use jwtd::pb;

use crate::scan::Shape;

/// What a run asks of each result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Status, reason, registered claims and the payload.
    Full,
    /// Registered claims without `payload_json`.
    Registered,
    /// Status, `cached` and a rejection's reason; no claims.
    StatusOnly,
}

impl View {
    /// Every view, in the order tables list them.
    pub const ALL: [View; 3] = [View::Full, View::Registered, View::StatusOnly];

    /// The `--view` spelling.
    pub fn name(self) -> &'static str {
        match self {
            View::Full => "full",
            View::Registered => "registered",
            View::StatusOnly => "status-only",
        }
    }

    /// The wire value.
    pub fn wire(self) -> pb::View {
        match self {
            View::Full => pb::View::Full,
            View::Registered => pb::View::Registered,
            View::StatusOnly => pb::View::StatusOnly,
        }
    }

    /// The view a request's `view` number asks for (`0` is FULL); `None`
    /// for a number `jwtd.v1.View` does not define.
    pub fn of_wire(view: i32) -> Option<View> {
        match pb::View::try_from(view).ok()? {
            pb::View::Unspecified | pb::View::Full => Some(View::Full),
            pb::View::Registered => Some(View::Registered),
            pb::View::StatusOnly => Some(View::StatusOnly),
        }
    }

    /// The shape of a VALID token's result in this view.
    pub fn valid_shape(self) -> Shape {
        match self {
            View::Full => Shape::Full,
            View::Registered => Shape::Registered,
            View::StatusOnly => Shape::Bare,
        }
    }

    /// Whether `shape` (with a reason or not) is right for a token answered
    /// `status` in this view.
    pub fn fits(self, status: i32, shape: Shape, has_reason: bool) -> bool {
        if status == pb::Status::Valid as i32 {
            shape == self.valid_shape() && !has_reason
        } else {
            shape == Shape::Bare && has_reason
        }
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for View {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        View::ALL
            .into_iter()
            .find(|v| v.name() == text)
            .ok_or_else(|| format!("unknown view {text:?}; one of full, registered, status-only"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_wire_values_round_trip() {
        for view in View::ALL {
            assert_eq!(view.name().parse::<View>(), Ok(view));
            assert_eq!(View::of_wire(view.wire() as i32), Some(view));
        }
        assert_eq!(View::of_wire(0), Some(View::Full));
        assert_eq!(View::of_wire(9), None);
        assert!("status_only".parse::<View>().is_err());
    }

    #[test]
    fn shapes_per_status() {
        let valid = pb::Status::Valid as i32;
        let expired = pb::Status::Expired as i32;
        assert!(View::Full.fits(valid, Shape::Full, false));
        assert!(!View::Full.fits(valid, Shape::Registered, false));
        assert!(View::Registered.fits(valid, Shape::Registered, false));
        assert!(!View::Registered.fits(valid, Shape::Full, false));
        assert!(View::StatusOnly.fits(valid, Shape::Bare, false));
        assert!(!View::StatusOnly.fits(valid, Shape::Registered, false));
        for view in View::ALL {
            assert!(view.fits(expired, Shape::Bare, true));
            assert!(!view.fits(expired, Shape::Bare, false), "reason kept");
            assert!(!view.fits(expired, Shape::Full, true));
        }
    }
}
