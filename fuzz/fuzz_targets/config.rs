//! Feeds arbitrary UTF-8 text, as a config file, to
//! `jwtd::config::Config::from_toml` with the base folder `/etc/jwtd`
//! (it only joins paths to it: the loader reads no file). Input that is not
//! UTF-8 is skipped: a config file is read as a `String` before parsing.
//!
//! Asserts: no panic; a refusal has a non-empty message; the same text
//! gives the same result twice; an accepted config keeps the loader's rules
//! (at least one issuer, `jwks_file` resolved to an absolute path, limits in
//! their documented ranges, a valid ext_authz header name).
#![no_main]

use std::path::Path;

use jwtd::config::{Config, KeySource, MAX_MAX_BATCH, MAX_TOKEN_BYTES_RANGE};
use jwtd::ext_authz::valid_header_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/etc/jwtd");
    let result = Config::from_toml(text, base);
    assert_eq!(result, Config::from_toml(text, base), "not deterministic");
    let config = match result {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "empty error message: {e:?}");
            return;
        }
    };
    assert!(!config.issuers.is_empty());
    for issuer in &config.issuers {
        if let KeySource::File(path) = &issuer.source {
            assert!(path.is_absolute(), "jwks_file not resolved: {path:?}");
        }
        assert!(issuer.refresh.min <= issuer.refresh.max);
    }
    assert!((1..=MAX_MAX_BATCH).contains(&config.limits.max_batch));
    assert!(MAX_TOKEN_BYTES_RANGE.contains(&config.limits.max_token_bytes));
    assert!(valid_header_name(&config.ext_authz.header));
});
