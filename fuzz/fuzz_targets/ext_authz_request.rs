//! Feeds an Envoy `CheckRequest` built from the input by `arbitrary` to
//! `jwtd::ext_authz::read_check`, under three `ExtAuthzConfig`s: the
//! default (`authorization`, `Bearer `), an empty prefix (the whole value
//! is the token) and another header (`x-token`, prefix `JWT `). The request
//! has the header map Envoy fills by default
//! (`attributes.request.http.headers`), the raw list it sends with
//! `encode_raw_headers` (`header_map`, with `value` and `raw_value`) and the
//! route's `context_extensions`; names are drawn mostly from the ones jwtd
//! reads, so the fuzzer spends its time on values.
//!
//! Asserts: no panic; a token read is non-empty and has no leading or
//! trailing whitespace; no audience or scope is empty or untrimmed (nor has
//! a comma, or whitespace); the only errors are a `jwtd.allow_missing`
//! other than "true" or "false", and a `jwtd.audiences` or `jwtd.scopes`
//! that names nothing, each exactly when the route says so; without
//! `jwtd.allow_missing` the config's `allow_missing` applies; the token reads as
//! `Missing` exactly when no header has the configured name (in the map as
//! it is, in the raw list in any case).
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use jwtd::ext_authz::{BearerToken, ExtAuthzConfig, RouteError, read_check};
use libfuzzer_sys::fuzz_target;

/// A header name: one jwtd may read, in some case, or any other.
#[derive(Arbitrary, Debug)]
enum Name {
    Authorization,
    AuthorizationUpper,
    XToken,
    XTokenMixed,
    Other(String),
}

impl Name {
    fn text(&self) -> &str {
        match self {
            Name::Authorization => "authorization",
            Name::AuthorizationUpper => "AUTHORIZATION",
            Name::XToken => "x-token",
            Name::XTokenMixed => "X-Token",
            Name::Other(name) => name,
        }
    }
}

/// A header value: a scheme the configs use, in some case, then any text;
/// or any text alone.
#[derive(Arbitrary, Debug)]
enum Value {
    Bearer(String),
    BearerLower(String),
    Jwt(String),
    Raw(String),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Bearer(rest) => format!("Bearer {rest}"),
            Value::BearerLower(rest) => format!("bearer {rest}"),
            Value::Jwt(rest) => format!("JWT {rest}"),
            Value::Raw(text) => text.clone(),
        }
    }
}

/// One entry of the raw header list: `raw_value` wins when non-empty.
#[derive(Arbitrary, Debug)]
struct RawHeader {
    name: Name,
    value: Value,
    raw_value: Vec<u8>,
}

/// A `context_extensions` key: the two jwtd reads, or any other.
#[derive(Arbitrary, Debug)]
enum Extension {
    AllowMissing,
    Audiences,
    Scopes,
    Other(String),
}

/// A `context_extensions` value.
#[derive(Arbitrary, Debug)]
enum Setting {
    True,
    False,
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// None: a request without `http` attributes.
    headers: Option<Vec<(Name, Value)>>,
    raw: Option<Vec<RawHeader>>,
    extensions: Vec<(Extension, Setting)>,
}

impl Input {
    fn request(&self) -> CheckRequest {
        let context_extensions = self
            .extensions
            .iter()
            .map(|(key, setting)| {
                let key = match key {
                    Extension::AllowMissing => "jwtd.allow_missing",
                    Extension::Audiences => "jwtd.audiences",
                    Extension::Scopes => "jwtd.scopes",
                    Extension::Other(key) => key,
                };
                let setting = match setting {
                    Setting::True => "true",
                    Setting::False => "false",
                    Setting::Text(text) => text,
                };
                (key.to_owned(), setting.to_owned())
            })
            .collect();
        let http = self.headers.as_ref().map(|headers| HttpRequest {
            headers: headers
                .iter()
                .map(|(name, value)| (name.text().to_owned(), value.text()))
                .collect(),
            header_map: self.raw.as_ref().map(|raw| HeaderMap {
                headers: raw
                    .iter()
                    .map(|h| HeaderValue {
                        key: h.name.text().to_owned(),
                        value: h.value.text(),
                        raw_value: h.raw_value.clone(),
                    })
                    .collect(),
            }),
            ..HttpRequest::default()
        });
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http,
                    ..Request::default()
                }),
                context_extensions,
                ..AttributeContext::default()
            }),
        }
    }
}

fn configs() -> [ExtAuthzConfig; 3] {
    [
        ExtAuthzConfig::default(),
        ExtAuthzConfig {
            prefix: String::new(),
            allow_missing: true,
            ..ExtAuthzConfig::default()
        },
        ExtAuthzConfig {
            header: "x-token".into(),
            prefix: "JWT ".into(),
            ..ExtAuthzConfig::default()
        },
    ]
}

/// True when the request has a header named `name`, in the map (exactly)
/// or in the raw list (in any case).
fn has_header(request: &CheckRequest, name: &str) -> bool {
    let http = request
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    http.is_some_and(|http| {
        http.headers.contains_key(name)
            || http
                .header_map
                .as_ref()
                .is_some_and(|m| m.headers.iter().any(|h| h.key.eq_ignore_ascii_case(name)))
    })
}

fuzz_target!(|input: Input| {
    let request = input.request();
    let extensions: &HashMap<String, String> = &request
        .attributes
        .as_ref()
        .expect("always built")
        .context_extensions;
    for config in configs() {
        let read = read_check(&config, &request);
        let allow_missing = extensions.get("jwtd.allow_missing").map(String::as_str);
        let bad_allow_missing = !matches!(allow_missing, None | Some("true" | "false"));
        // A list extension that is present but names nothing.
        let blank = |name: &str, separator: fn(char) -> bool| {
            extensions
                .get(name)
                .is_some_and(|v| v.split(separator).all(|item| item.trim().is_empty()))
        };
        let blank_audiences = blank("jwtd.audiences", |c| c == ',');
        let blank_scopes = blank("jwtd.scopes", char::is_whitespace);
        let input = match read {
            Ok(input) => {
                assert!(
                    !bad_allow_missing && !blank_audiences && !blank_scopes,
                    "accepted a bad route: {extensions:?}"
                );
                input
            }
            Err(RouteError::AllowMissing(_)) => {
                assert!(bad_allow_missing, "refused a valid jwtd.allow_missing");
                continue;
            }
            Err(RouteError::Blank(name)) => {
                assert!(!bad_allow_missing, "allow_missing is read first");
                match name {
                    "jwtd.audiences" => assert!(blank_audiences, "refused audiences"),
                    "jwtd.scopes" => assert!(blank_scopes && !blank_audiences, "refused scopes"),
                    other => panic!("blank {other}?"),
                }
                continue;
            }
            Err(other) => panic!("an undocumented route error: {other}"),
        };
        match allow_missing {
            Some("true") => assert!(input.allow_missing),
            Some("false") => assert!(!input.allow_missing),
            None => assert_eq!(input.allow_missing, config.allow_missing),
            Some(other) => panic!("accepted jwtd.allow_missing = {other:?}"),
        }
        for audience in &input.audiences {
            assert!(!audience.is_empty(), "an empty audience");
            assert_eq!(audience.trim(), audience, "an untrimmed audience");
            assert!(!audience.contains(','), "an audience with a comma");
        }
        for scope in &input.scopes {
            assert!(!scope.is_empty(), "an empty scope");
            assert!(!scope.contains(char::is_whitespace), "a scope with whitespace");
        }
        match &input.token {
            BearerToken::Present(token) => {
                assert!(!token.is_empty(), "an empty token");
                assert_eq!(token.trim(), token, "an untrimmed token: {token:?}");
            }
            BearerToken::Missing | BearerToken::NotBearer => {}
        }
        assert_eq!(
            input.token == BearerToken::Missing,
            !has_header(&request, &config.header),
            "Missing is not the same as no {:?} header",
            config.header
        );
    }
});
