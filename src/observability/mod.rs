//! What operators see: Prometheus metrics and OpenTelemetry traces.

pub mod audit;
pub mod otel;
pub mod telemetry;

/// The hex of the first 8 bytes of `token`'s SHA-256: how traces and the
/// audit trail name a token without carrying it. A cryptographic digest, so
/// the name reveals nothing of the token and no other token shares it by
/// design (the memo finds tokens differently: `runtime::token_key`).
pub fn token_fingerprint(token: &str) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .fold(String::with_capacity(16), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fingerprint_is_the_sha256_prefix() {
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(super::token_fingerprint("abc"), "ba7816bf8f01cfea");
    }
}
