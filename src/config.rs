//! The TOML configuration: raw serde structs that refuse unknown keys, turned
//! into typed, validated values. Errors name the key and the bad value. Reads
//! the config file; reads no key material (see `keys` and `server`).
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! [limits]
//! max_batch = 1024
//! max_token_bytes = 8192
//! [[issuers]]
//! issuer = "https://issuer.example"
//! jwks_file = "keys/jwks.json"   # relative to this file
//! audiences = ["orders-api"]
//! algorithms = ["RS256", "ES256"]
//! leeway_seconds = 60
//! required_claims = ["sub"]
//! require_exp = true
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::jose::{Algorithm, AlgorithmSet};
use crate::keys::KeySetError;
use crate::policy::{IssuerPolicy, Leeway, PolicyError};

/// Default listen address: loopback only, so a bare start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default and bounds of `limits.max_batch`.
pub const DEFAULT_MAX_BATCH: usize = 1024;
/// Largest accepted `limits.max_batch`.
pub const MAX_MAX_BATCH: usize = 100_000;
/// Default `limits.max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Bounds of `limits.max_token_bytes`.
pub const MAX_TOKEN_BYTES_RANGE: std::ops::RangeInclusive<usize> = 256..=1024 * 1024;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {reason}")]
    Read {
        /// The config file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: String,
        /// The TOML parser's message (it names the line and the key).
        message: String,
    },
    /// A value breaks a rule.
    #[error("{key}: {problem}")]
    Invalid {
        /// The key, e.g. `issuers[0].algorithms`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An issuer's key set could not be loaded.
    #[error("issuers[{index}] ({issuer}): {error}")]
    Keys {
        /// Position in `[[issuers]]`.
        index: usize,
        /// The issuer.
        issuer: String,
        /// Why the set was refused.
        error: KeySetError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_batch: Option<usize>,
    max_token_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: String,
    jwks_file: Option<PathBuf>,
    audiences: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    leeway_seconds: Option<i64>,
    required_claims: Option<Vec<String>>,
    require_exp: Option<bool>,
}

/// Request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tokens in one Verify call.
    pub max_batch: usize,
    /// Longest token decoded.
    pub max_token_bytes: usize,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A local JWK Set file (absolute, or resolved against the config's folder).
    File(PathBuf),
}

/// One `[[issuers]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// What the issuer's tokens must satisfy.
    pub policy: IssuerPolicy,
    /// Where its keys come from.
    pub source: KeySource,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The gRPC listen address.
    pub listen: SocketAddr,
    /// Request limits.
    pub limits: Limits,
    /// Trusted issuers, in file order.
    pub issuers: Vec<IssuerConfig>,
}

impl Config {
    /// Reads and validates a config file. Relative paths inside it are
    /// resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text; `base` resolves relative paths.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<config>".into(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        build_and_validate(raw, base)
    }
}

fn invalid(key: impl Into<String>, problem: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.to_string(),
    }
}

fn build_and_validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().map_err(|_| {
        invalid(
            "listen",
            format!("{listen_text:?} is not an address like \"127.0.0.1:50051\""),
        )
    })?;

    let max_batch = raw.limits.max_batch.unwrap_or(DEFAULT_MAX_BATCH);
    if !(1..=MAX_MAX_BATCH).contains(&max_batch) {
        return Err(invalid(
            "limits.max_batch",
            format!("{max_batch} is outside 1..={MAX_MAX_BATCH}"),
        ));
    }
    let max_token_bytes = raw
        .limits
        .max_token_bytes
        .unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !MAX_TOKEN_BYTES_RANGE.contains(&max_token_bytes) {
        return Err(invalid(
            "limits.max_token_bytes",
            format!(
                "{max_token_bytes} is outside {}..={}",
                MAX_TOKEN_BYTES_RANGE.start(),
                MAX_TOKEN_BYTES_RANGE.end()
            ),
        ));
    }

    if raw.issuers.is_empty() {
        return Err(invalid(
            "issuers",
            "at least one [[issuers]] entry is required",
        ));
    }
    let mut seen = HashSet::new();
    let mut issuers = Vec::with_capacity(raw.issuers.len());
    for (i, raw) in raw.issuers.into_iter().enumerate() {
        let at = |field: &str| format!("issuers[{i}].{field}");
        if !seen.insert(raw.issuer.clone()) {
            return Err(invalid(
                at("issuer"),
                format!("{:?} is configured more than once", raw.issuer),
            ));
        }
        let mut policy = IssuerPolicy::new(raw.issuer).map_err(|e| invalid(at("issuer"), e))?;
        if let Some(audiences) = raw.audiences {
            policy = policy
                .with_audiences(audiences)
                .map_err(|e| invalid(at("audiences"), format!("an audience {e}")))?;
        }
        if let Some(names) = raw.algorithms {
            let algorithms = parse_algorithms(&names).map_err(|e| invalid(at("algorithms"), e))?;
            policy = policy
                .with_algorithms(algorithms)
                .map_err(|e| invalid(at("algorithms"), e))?;
        }
        if let Some(seconds) = raw.leeway_seconds {
            let leeway = Leeway::try_new(seconds).map_err(|e| invalid(at("leeway_seconds"), e))?;
            policy = policy.with_leeway(leeway);
        }
        if let Some(claims) = raw.required_claims {
            policy = policy
                .with_required_claims(claims)
                .map_err(|e: PolicyError| {
                    invalid(at("required_claims"), format!("a claim name {e}"))
                })?;
        }
        if let Some(require) = raw.require_exp {
            policy = policy.with_require_exp(require);
        }
        let source = match raw.jwks_file {
            Some(path) => KeySource::File(base.join(path)),
            None => {
                return Err(invalid(
                    at("jwks_file"),
                    "a key source is required (jwks_file = \"path/to/jwks.json\")",
                ));
            }
        };
        issuers.push(IssuerConfig { policy, source });
    }

    Ok(Config {
        listen,
        limits: Limits {
            max_batch,
            max_token_bytes,
        },
        issuers,
    })
}

fn parse_algorithms(names: &[String]) -> Result<AlgorithmSet, String> {
    let supported = || {
        Algorithm::ALL
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    names
        .iter()
        .map(|name| {
            Algorithm::from_name(name).ok_or_else(|| {
                format!(
                    "{name:?} is not a supported algorithm (supported: {})",
                    supported()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/jwtd"))
    }

    const MINIMAL: &str = r#"
        [[issuers]]
        issuer = "https://issuer.example"
        jwks_file = "jwks.json"
    "#;

    #[test]
    fn defaults_apply() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.listen, "127.0.0.1:50051".parse().expect("addr"));
        assert_eq!(
            c.limits,
            Limits {
                max_batch: 1024,
                max_token_bytes: 8192
            }
        );
        let issuer = &c.issuers[0];
        assert_eq!(
            issuer.source,
            KeySource::File(PathBuf::from("/etc/jwtd/jwks.json"))
        );
        assert_eq!(issuer.policy.leeway().seconds(), 60);
        assert!(issuer.policy.require_exp());
        assert_eq!(issuer.policy.algorithms(), AlgorithmSet::all());
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse(
            r#"
            listen = "0.0.0.0:9000"
            [limits]
            max_batch = 10
            max_token_bytes = 4096
            [[issuers]]
            issuer = "https://issuer.example"
            jwks_file = "/abs/jwks.json"
            audiences = ["orders-api"]
            algorithms = ["RS256", "ES256"]
            leeway_seconds = 5
            required_claims = ["sub"]
            require_exp = false
            "#,
        )
        .expect("valid");
        let p = &c.issuers[0].policy;
        assert_eq!(c.limits.max_batch, 10);
        assert_eq!(p.audiences(), ["orders-api"]);
        assert!(p.algorithms().contains(Algorithm::ES256));
        assert!(!p.algorithms().contains(Algorithm::HS256));
        assert_eq!(p.leeway().seconds(), 5);
        assert_eq!(p.required_claims(), ["sub"]);
        assert!(!p.require_exp());
        assert_eq!(
            c.issuers[0].source,
            KeySource::File(PathBuf::from("/abs/jwks.json"))
        );
    }

    fn invalid_key(text: &str) -> (String, String) {
        match parse(text) {
            Err(ConfigError::Invalid { key, problem }) => (key, problem),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_key_and_the_value() {
        let (key, problem) = invalid_key(&format!("listen = \"nowhere\"\n{MINIMAL}"));
        assert_eq!(key, "listen");
        assert!(problem.contains("\"nowhere\""), "{problem}");

        let (key, problem) = invalid_key(&format!("[limits]\nmax_batch = 0\n{MINIMAL}"));
        assert_eq!(key, "limits.max_batch");
        assert!(problem.contains('0'), "{problem}");

        let (key, _) = invalid_key(&format!("[limits]\nmax_token_bytes = 10\n{MINIMAL}"));
        assert_eq!(key, "limits.max_token_bytes");

        let (key, problem) = invalid_key(&format!("{MINIMAL}algorithms = [\"RS256\", \"none\"]"));
        assert_eq!(key, "issuers[0].algorithms");
        assert!(problem.contains("\"none\""), "{problem}");

        let (key, _) = invalid_key(&format!("{MINIMAL}algorithms = []"));
        assert_eq!(key, "issuers[0].algorithms");

        let (key, problem) = invalid_key(&format!("{MINIMAL}leeway_seconds = 86400"));
        assert_eq!(key, "issuers[0].leeway_seconds");
        assert!(problem.contains("86400"), "{problem}");

        let (key, _) = invalid_key(&format!("{MINIMAL}audiences = [\"\"]"));
        assert_eq!(key, "issuers[0].audiences");

        let (key, _) = invalid_key(&format!("{MINIMAL}{MINIMAL}"));
        assert_eq!(key, "issuers[1].issuer");

        let (key, _) = invalid_key("[[issuers]]\nissuer = \"https://i\"\n");
        assert_eq!(key, "issuers[0].jwks_file");

        let (key, _) = invalid_key("listen = \"127.0.0.1:1\"\n");
        assert_eq!(key, "issuers");
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        for text in [
            format!("{MINIMAL}leeway = 5"),
            format!("lisen = \"127.0.0.1:1\"\n{MINIMAL}"),
            format!("[limits]\nmax_batch = \"ten\"\n{MINIMAL}"),
        ] {
            match parse(&text) {
                Err(ConfigError::Parse { message, .. }) => {
                    assert!(message.contains("line"), "{message}");
                }
                other => panic!("expected a parse error, got {other:?}"),
            }
        }
    }
}
