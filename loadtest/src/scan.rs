//! Reads the per-token `status` and `cached` fields of an encoded
//! `VerifyResponse` without decoding claims: a walk over protobuf tags that
//! skips every length-delimited field it does not need. About 20 ns per
//! result where a full prost decode allocates every claim string. It also
//! notes each result's [`Shape`] (claims or not, payload or not: the
//! request's view) and whether it has a reason, walking the claims' tags
//! without reading their values.

/// Why a response could not be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The bytes end inside a field.
    #[error("truncated protobuf")]
    Truncated,
    /// A wire type protobuf does not define (or groups, which proto3 lacks).
    #[error("unsupported wire type {0}")]
    WireType(u64),
}

/// What a result carries besides its status (see `jwtd.v1.View`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// No `claims`.
    #[default]
    Bare,
    /// `claims` without `payload_json`.
    Registered,
    /// `claims` with `payload_json`.
    Full,
}

impl Shape {
    /// How a message names the shape.
    pub fn describe(self) -> &'static str {
        match self {
            Shape::Bare => "no claims",
            Shape::Registered => "claims without payload",
            Shape::Full => "claims with payload",
        }
    }
}

/// One result's fields that the driver tallies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scanned {
    /// `VerifyResult.status` (0 when absent).
    pub status: i32,
    /// `VerifyResult.cached`.
    pub cached: bool,
    /// Claims, and a payload in them, or neither.
    pub shape: Shape,
    /// A non-empty `VerifyResult.reason`.
    pub has_reason: bool,
}

fn varint(buf: &mut &[u8]) -> Result<u64, ScanError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or(ScanError::Truncated)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ScanError::Truncated)
}

fn take<'a>(buf: &mut &'a [u8], len: u64) -> Result<&'a [u8], ScanError> {
    let len = usize::try_from(len).map_err(|_| ScanError::Truncated)?;
    if buf.len() < len {
        return Err(ScanError::Truncated);
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

/// Skips a field of `wire` type; returns its varint value when it has one.
fn skip(buf: &mut &[u8], wire: u64) -> Result<Option<u64>, ScanError> {
    match wire {
        0 => varint(buf).map(Some),
        1 => take(buf, 8).map(|_| None),
        2 => {
            let len = varint(buf)?;
            take(buf, len).map(|_| None)
        }
        5 => take(buf, 4).map(|_| None),
        other => Err(ScanError::WireType(other)),
    }
}

/// The shape of an encoded `Claims`: `payload_json` (field 10) present or
/// not. proto3 leaves empty bytes out, so present means non-empty.
fn claims_shape(mut claims: &[u8]) -> Result<Shape, ScanError> {
    while !claims.is_empty() {
        let tag = varint(&mut claims)?;
        if tag >> 3 == 10 && tag & 7 == 2 {
            return Ok(Shape::Full);
        }
        skip(&mut claims, tag & 7)?;
    }
    Ok(Shape::Registered)
}

/// Calls `each` for every result of the encoded `VerifyResponse` in `buf`,
/// in order; returns how many there were.
pub fn results(mut buf: &[u8], mut each: impl FnMut(Scanned)) -> Result<usize, ScanError> {
    let mut count = 0;
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        if tag >> 3 == 1 && tag & 7 == 2 {
            let len = varint(&mut buf)?;
            let mut result = take(&mut buf, len)?;
            let mut scanned = Scanned::default();
            while !result.is_empty() {
                let tag = varint(&mut result)?;
                if tag & 7 == 2 && matches!(tag >> 3, 2 | 3) {
                    let len = varint(&mut result)?;
                    let field = take(&mut result, len)?;
                    if tag >> 3 == 3 {
                        scanned.shape = claims_shape(field)?;
                    } else {
                        scanned.has_reason = !field.is_empty();
                    }
                    continue;
                }
                let value = skip(&mut result, tag & 7)?;
                match (tag >> 3, value) {
                    // Out-of-range enum values are kept as-is, like prost does.
                    (1, Some(v)) => scanned.status = v as i32,
                    (4, Some(v)) => scanned.cached = v != 0,
                    _ => {}
                }
            }
            each(scanned);
            count += 1;
        } else {
            skip(&mut buf, tag & 7)?;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtd::pb;
    use prost::Message as _;

    #[test]
    fn agrees_with_prost() {
        let response = pb::VerifyResponse {
            results: vec![
                pb::VerifyResult {
                    status: pb::Status::Valid as i32,
                    reason: String::new(),
                    claims: Some(pb::Claims {
                        issuer: "https://i".into(),
                        subject: "alice".into(),
                        audiences: vec!["a".into(), "b".into()],
                        expires_at: 1_900_000_000,
                        payload_json: b"{\"x\":1}".to_vec(),
                        ..Default::default()
                    }),
                    cached: true,
                },
                pb::VerifyResult {
                    status: pb::Status::Malformed as i32,
                    reason: "a compact JWS has 3 dot-separated parts".into(),
                    claims: None,
                    cached: false,
                },
                pb::VerifyResult::default(),
            ],
        };
        let bytes = response.encode_to_vec();
        let mut seen = Vec::new();
        assert_eq!(results(&bytes, |s| seen.push(s)), Ok(3));
        assert_eq!(
            seen,
            vec![
                Scanned {
                    status: 1,
                    cached: true,
                    shape: Shape::Full,
                    has_reason: false,
                },
                Scanned {
                    status: 2,
                    cached: false,
                    shape: Shape::Bare,
                    has_reason: true,
                },
                Scanned {
                    status: 0,
                    cached: false,
                    shape: Shape::Bare,
                    has_reason: false,
                },
            ]
        );
        assert_eq!(results(&[], |_| {}), Ok(0));

        // Claims without a payload (VIEW_REGISTERED), and a claims message
        // that is present but empty.
        let registered = pb::VerifyResponse {
            results: vec![
                pb::VerifyResult {
                    status: 1,
                    claims: Some(pb::Claims {
                        issuer: "https://i".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                pb::VerifyResult {
                    status: 1,
                    claims: Some(pb::Claims::default()),
                    ..Default::default()
                },
            ],
        }
        .encode_to_vec();
        let mut shapes = Vec::new();
        assert_eq!(results(&registered, |s| shapes.push(s.shape)), Ok(2));
        assert_eq!(shapes, [Shape::Registered, Shape::Registered]);
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let bytes = pb::VerifyResponse {
            results: vec![pb::VerifyResult {
                status: 6,
                reason: "bad".into(),
                claims: None,
                cached: false,
            }],
        }
        .encode_to_vec();
        for cut in 0..bytes.len() {
            // Every proper prefix is either a shorter valid message or an error.
            let _ = results(&bytes[..cut], |_| {});
        }
        assert_eq!(
            results(&bytes[..bytes.len() - 1], |_| {}),
            Err(ScanError::Truncated)
        );
        assert_eq!(results(&[0x0b], |_| {}), Err(ScanError::WireType(3)));
    }
}
