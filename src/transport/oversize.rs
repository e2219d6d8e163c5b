//! A request over its method's decode cap is answered RESOURCE_EXHAUSTED,
//! as the gRPC spec says for a message over the receiver's limit, with a
//! message naming the setting that sizes the cap. tonic refuses such a
//! request as soon as it reads the message's length prefix (nothing is
//! allocated for the message) but answers OUT_OF_RANGE, in the response's
//! trailers; this layer rewrites that one answer on its way out (in the
//! trailers, or in the headers of a trailers-only response), adds a
//! pushback of `-1` (gRFC A6: do not retry; the same request never fits),
//! and counts it. Every other response and frame passes untouched.
//!
//! Decisions:
//! - **Rewrite the answer, not the decoder.** tonic's decode cap is the
//!   only check that runs before the body is read; reimplementing it in a
//!   body-peeking layer would read the length prefix twice. Matching its
//!   message is brittle across tonic versions, so `tests/overload.rs`
//!   checks the code on the wire.
//! - **One boxed future per call** (~50 ns) for every method, health
//!   included: cheaper than routing the layer around them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::http::{self, HeaderValue};

use crate::observability::telemetry;

/// The start of tonic's message for a request over the decode cap
/// (`tonic::codec::decode`); `tests/overload.rs` notices if it changes.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// Wraps a service so oversize requests get RESOURCE_EXHAUSTED.
#[derive(Debug, Clone, Copy, Default)]
pub struct OversizeLayer;

impl<S> tower::Layer<S> for OversizeLayer {
    type Service = Oversize<S>;
    fn layer(&self, inner: S) -> Oversize<S> {
        Oversize(inner)
    }
}

/// See [`OversizeLayer`].
#[derive(Debug, Clone)]
pub struct Oversize<S>(S);

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Oversize<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Rewritten<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let answer = self.0.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            rewrite(response.headers_mut(), method);
            Ok(response.map(|inner| Rewritten { inner, method }))
        })
    }
}

/// A response body whose trailers go through [`rewrite`].
#[derive(Debug)]
pub struct Rewritten<B> {
    inner: B,
    method: &'static str,
}

impl<B: Body + Unpin> Body for Rewritten<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let method = self.method;
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(match frame.into_trailers() {
                Ok(mut trailers) => {
                    rewrite(&mut trailers, method);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            }))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The metric label of a path: one of jwtd's two methods, or `other`.
fn method_label(path: &str) -> &'static str {
    use crate::transport::{ext_authz::CHECK_METHOD, grpc::VERIFY_METHOD};
    match path.strip_prefix('/') {
        Some(VERIFY_METHOD) => VERIFY_METHOD,
        Some(CHECK_METHOD) => CHECK_METHOD,
        _ => "other",
    }
}

/// Turns tonic's OUT_OF_RANGE for an oversize request into
/// RESOURCE_EXHAUSTED naming the cap's settings; leaves anything else.
fn rewrite(headers: &mut http::HeaderMap, method: &'static str) {
    let is_out_of_range = headers.get("grpc-status").is_some_and(|s| s == "11");
    if !is_out_of_range {
        return;
    }
    // grpc-message is percent-encoded (tonic encodes its spaces).
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(|m| percent_encoding::percent_decode_str(m).decode_utf8_lossy());
    let Some(sizes) = message
        .as_deref()
        .and_then(|m| m.strip_prefix(TONIC_TOO_LARGE))
        .map(str::to_owned)
    else {
        return;
    };
    // "{found} bytes, the limit is: {limit} bytes"
    let number = |s: &str| {
        s.split(|c: char| !c.is_ascii_digit())
            .next()
            .map(str::to_owned)
    };
    let found = number(&sizes).unwrap_or_default();
    let limit = sizes
        .split_once("limit is: ")
        .and_then(|(_, rest)| number(rest))
        .unwrap_or_default();
    let setting = match method {
        crate::transport::grpc::VERIFY_METHOD => {
            " (set by limits.max_batch tokens of limits.max_token_bytes)"
        }
        crate::transport::ext_authz::CHECK_METHOD => " (set by ext_authz.max_request_bytes)",
        _ => "",
    };
    let message =
        format!("request of {found} bytes is over this method's limit of {limit} bytes{setting}");
    if let Ok(message) = HeaderValue::from_str(&message) {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert("grpc-message", message);
        // The same request will never fit: gRFC A6's "do not retry".
        headers.insert(
            crate::transport::grpc::PUSHBACK_TRAILER,
            HeaderValue::from_static("-1"),
        );
        telemetry::refused(
            method,
            "too_large",
            crate::transport::callers::OTHER_CALLER,
            0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &'static str, message: &'static str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static(status));
        h.insert("grpc-message", HeaderValue::from_static(message));
        h
    }

    #[test]
    fn tonics_oversize_answer_becomes_resource_exhausted() {
        let mut h = headers(
            "11",
            "Error, decoded message length too large: found 9000000 bytes, the limit is: 8667136 bytes",
        );
        rewrite(&mut h, crate::transport::grpc::VERIFY_METHOD);
        assert_eq!(h["grpc-status"], "8");
        assert_eq!(h["grpc-retry-pushback-ms"], "-1", "never retried");
        assert_eq!(
            h["grpc-message"],
            "request of 9000000 bytes is over this method's limit of 8667136 bytes \
             (set by limits.max_batch tokens of limits.max_token_bytes)"
        );
    }

    #[test]
    fn a_percent_encoded_message_is_read_too() {
        let mut h = headers(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%205000%20bytes,\
             %20the%20limit%20is:%204096%20bytes",
        );
        rewrite(&mut h, crate::transport::ext_authz::CHECK_METHOD);
        assert_eq!(h["grpc-status"], "8");
        assert_eq!(
            h["grpc-message"],
            "request of 5000 bytes is over this method's limit of 4096 bytes \
             (set by ext_authz.max_request_bytes)"
        );
    }

    #[test]
    fn other_answers_pass_untouched() {
        for (status, message) in [
            ("11", "some other range"),
            (
                "3",
                "Error, decoded message length too large: found 1 bytes",
            ),
            ("0", ""),
        ] {
            let mut h = headers(status, message);
            rewrite(&mut h, crate::transport::grpc::VERIFY_METHOD);
            assert_eq!(h, headers(status, message), "{status} {message}");
        }
    }
}
