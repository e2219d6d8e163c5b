//! The only HTTP I/O in jwtd: fetching JWK Sets and OpenID Connect discovery
//! documents from the URLs in the configuration, never from a token.
//!
//! reqwest (on hyper, with rustls over aws-lc-rs; no OpenSSL) was chosen as
//! the well-kept client of the field. Every fetch is bounded: a connect
//! timeout, a total timeout, a response-size cap enforced while streaming (a
//! lying or absent Content-Length cannot get past it), at most a few
//! redirects, and never a redirect from https to http unless the issuer set
//! `allow_insecure_http`. Requests name jwtd and its version in User-Agent.
//! Revocation lists are fetched here too ([`Fetcher::get_if_none_match`]),
//! under the same bounds, with their own size cap.

use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};

use crate::verifier::json;

/// Bounds on every fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// TCP and TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, body included.
    pub timeout: Duration,
    /// Largest accepted response body.
    pub max_bytes: usize,
    /// Most redirects followed.
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_bytes: 1024 * 1024,
            max_redirects: 3,
        }
    }
}

/// The User-Agent jwtd sends.
pub const USER_AGENT: &str = concat!("jwtd/", env!("CARGO_PKG_VERSION"));

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// Connection, TLS, timeout, redirect or body error.
    #[error("{0}")]
    Transport(String),
    /// A non-success HTTP status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body was larger than the cap.
    #[error("response is larger than {0} bytes")]
    TooLarge(usize),
    /// The discovery document is not JSON with a string `issuer` and `jwks_uri`.
    #[error("discovery document lacks a string issuer and jwks_uri")]
    Discovery,
    /// The discovery document names another issuer.
    #[error("discovery document names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// What the document says.
        found: String,
    },
    /// A URL that is not https (and the issuer does not allow http).
    #[error("{0} is not an https URL (set allow_insecure_http to allow http)")]
    Insecure(String),
}

/// A fetched body and how long the server says it may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The response body.
    pub body: Vec<u8>,
    /// `Cache-Control: max-age`, when the response had one.
    pub max_age: Option<Duration>,
}

/// What a conditional GET found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// 304: the copy named by the ETag sent is still current.
    NotModified,
    /// A new body, with its ETag when the response had one.
    Fetched {
        /// The response body.
        body: Vec<u8>,
        /// The `ETag` to send next time.
        etag: Option<String>,
    },
}

/// The Accept header of JWKS and discovery fetches.
const JSON_ACCEPT: &str = "application/json, application/jwk-set+json";

/// An HTTP client for one issuer's key source.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_bytes: usize,
    allow_http: bool,
}

impl Fetcher {
    /// A client with `limits`; `allow_http` permits plain http URLs and
    /// redirects to them.
    pub fn new(limits: FetchLimits, allow_http: bool) -> Result<Self, FetchError> {
        let max_redirects = limits.max_redirects;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                attempt.error("too many redirects")
            } else if attempt.url().scheme() != "https" && !allow_http {
                attempt.error("redirect to a non-https URL")
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.timeout)
            .redirect(redirects)
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Self {
            client,
            max_bytes: limits.max_bytes,
            allow_http,
        })
    }

    /// Checks that `url` may be fetched by this client.
    pub fn check_scheme(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.allow_http => Ok(()),
            _ => Err(FetchError::Insecure(url.to_string())),
        }
    }

    /// GETs `url` with the size cap.
    pub async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        let response = self.send(url, JSON_ACCEPT, None).await?;
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(cache_max_age);
        let body = self.body(response).await?;
        Ok(Fetched { body, max_age })
    }

    /// GETs `url` with `accept` and, when `etag` is set, `If-None-Match:
    /// etag`; a 304 is [`Conditional::NotModified`]. The size cap applies.
    pub async fn get_if_none_match(
        &self,
        url: &Url,
        accept: &str,
        etag: Option<&str>,
    ) -> Result<Conditional, FetchError> {
        // An ETag that cannot be a header value again is not sent.
        let etag = etag.and_then(|e| HeaderValue::from_str(e).ok());
        let conditional = etag.is_some();
        let response = self.send(url, accept, etag).await?;
        if conditional && response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Conditional::NotModified);
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self.body(response).await?;
        Ok(Conditional::Fetched { body, etag })
    }

    /// Sends a GET; a status other than 2xx (or a 304 answering an
    /// `If-None-Match`) is an error.
    async fn send(
        &self,
        url: &Url,
        accept: &str,
        if_none_match: Option<HeaderValue>,
    ) -> Result<reqwest::Response, FetchError> {
        self.check_scheme(url)?;
        let mut request = self.client.get(url.clone()).header(ACCEPT, accept);
        let conditional = if_none_match.is_some();
        if let Some(etag) = if_none_match {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| FetchError::Transport(error_chain(&e)))?;
        let status = response.status();
        if !(status.is_success() || (conditional && status == StatusCode::NOT_MODIFIED)) {
            return Err(FetchError::Status(status.as_u16()));
        }
        Ok(response)
    }

    /// Reads the body under the size cap, enforced while streaming.
    async fn body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
        let transport = |e: reqwest::Error| FetchError::Transport(error_chain(&e));
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads an OpenID discovery document and returns its `jwks_uri`, after
    /// checking that its `issuer` is exactly `issuer` (OpenID Connect
    /// Discovery §4.3) and that the URI may be fetched.
    pub async fn discover(&self, url: &Url, issuer: &str) -> Result<Url, FetchError> {
        let doc = self.get(url).await?;
        let (found, jwks_uri) = parse_discovery(&doc.body)?;
        if found != issuer {
            return Err(FetchError::IssuerMismatch {
                expected: issuer.to_owned(),
                found,
            });
        }
        let jwks_uri = Url::parse(&jwks_uri).map_err(|_| FetchError::Discovery)?;
        self.check_scheme(&jwks_uri)?;
        Ok(jwks_uri)
    }
}

/// `issuer` and `jwks_uri` of a discovery document (pure; fuzzed by
/// `fuzz/fuzz_targets/discovery.rs`): a JSON object (OpenID Connect
/// Discovery §4.2; serde alone would also read a two-element array) with no
/// duplicate member names, like every other JSON jwtd reads.
pub fn parse_discovery(body: &[u8]) -> Result<(String, String), FetchError> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    json::check_no_duplicates(body).map_err(|_| FetchError::Discovery)?;
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|_| FetchError::Discovery)?;
    if !doc.is_object() {
        return Err(FetchError::Discovery);
    }
    let doc: Discovery = serde_json::from_value(doc).map_err(|_| FetchError::Discovery)?;
    Ok((doc.issuer, doc.jwks_uri))
}

/// The `max-age` of a Cache-Control value; `no-store` and `no-cache` count
/// as zero (the caller's lower bound then applies).
pub fn cache_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "no-store" | "no-cache" => return Some(Duration::ZERO),
            "max-age" => {
                max_age = arg
                    .trim()
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs);
            }
            _ => {}
        }
    }
    max_age
}

/// An error with its sources, for a log line that says what really failed
/// (reqwest's own message is often just "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let s = |v| cache_max_age(v).map(|d| d.as_secs());
        assert_eq!(s("max-age=600"), Some(600));
        assert_eq!(s("public, Max-Age=120, must-revalidate"), Some(120));
        assert_eq!(s("max-age=\"30\""), Some(30));
        assert_eq!(s("no-cache"), Some(0));
        assert_eq!(s("max-age=600, no-store"), Some(0));
        assert_eq!(s("public"), None);
        assert_eq!(s("max-age=soon"), None);
        assert_eq!(s(""), None);
    }

    #[test]
    fn discovery_needs_issuer_and_jwks_uri() {
        assert_eq!(
            parse_discovery(br#"{"issuer":"https://i","jwks_uri":"https://i/k","x":1}"#),
            Ok(("https://i".into(), "https://i/k".into()))
        );
        assert_eq!(
            parse_discovery(br#"{"issuer":"https://i"}"#),
            Err(FetchError::Discovery)
        );
        assert_eq!(
            parse_discovery(br#"{"issuer":1,"jwks_uri":"x"}"#),
            Err(FetchError::Discovery)
        );
        assert_eq!(
            parse_discovery(br#"["https://i","https://i/k"]"#),
            Err(FetchError::Discovery),
            "an array is not a discovery document"
        );
        assert_eq!(
            parse_discovery(br#"{"issuer":"https://i","jwks_uri":"https://i/k","x":1,"x":2}"#),
            Err(FetchError::Discovery),
            "duplicate member names"
        );
    }

    #[test]
    fn only_https_unless_allowed() {
        let strict = Fetcher::new(FetchLimits::default(), false).expect("client");
        let lax = Fetcher::new(FetchLimits::default(), true).expect("client");
        let http = Url::parse("http://127.0.0.1/jwks").expect("url");
        let https = Url::parse("https://idp.example/jwks").expect("url");
        let file = Url::parse("file:///etc/passwd").expect("url");
        assert!(matches!(
            strict.check_scheme(&http),
            Err(FetchError::Insecure(_))
        ));
        assert!(strict.check_scheme(&https).is_ok());
        assert!(lax.check_scheme(&http).is_ok());
        assert!(matches!(
            lax.check_scheme(&file),
            Err(FetchError::Insecure(_))
        ));
    }
}
