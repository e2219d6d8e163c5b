//! Helpers shared by the integration tests: the fixture keys, tokens signed by
//! independent implementations (the jsonwebtoken crate, RustCrypto's p521),
//! and a real jwtd server on an ephemeral port.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a subset.

pub mod pki;
pub mod process;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use jwtd::clock::FixedClock;
use jwtd::config::Limits;
use jwtd::keys::{KeySet, Origin};
use jwtd::policy::{IssuerPolicy, KeyState, Trust, TrustedIssuer};
use jwtd::verify::UnixTime;
use serde_json::{Value, json};

pub const ISS: &str = "https://issuer.test";
pub const NOW: i64 = 1_700_000_000;

pub fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

/// A file written into a fresh temporary directory; both are removed when
/// this is dropped. Derefs to the file's path.
pub struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

pub fn scratch(name: &str, contents: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix("jwtd-test-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write temp file");
    Scratch { _dir: dir, path }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// A config for the real binary: an ephemeral port, ISS with the fixture
/// keys, `/metrics` off unless `extra` sets `metrics_listen`. `extra` comes
/// before `[[issuers]]`, so it may hold top-level keys and other tables.
pub fn binary_config(extra: &str) -> Scratch {
    let jwks = data("keys/jwks.json");
    let metrics = if extra.contains("metrics_listen") {
        ""
    } else {
        "metrics_listen = \"\"\n"
    };
    scratch(
        "jwtd.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\n{metrics}{extra}\n\
             [[issuers]]\nissuer = {ISS:?}\njwks_file = {jwks:?}\naudiences = [\"api\"]\n"
        ),
    )
}

/// A loopback port free a moment ago (for a listener that does not report
/// the ephemeral port it got, such as /metrics).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Prometheus text page at `http://{addr}/metrics`.
pub async fn scrape_metrics(addr: impl std::fmt::Display) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample in a Prometheus text page whose line starts
/// with `series` (name and labels); 0 when there is none.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(data(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The public test keys plus the HMAC secret, as one JSON array of JWKs.
pub fn all_jwks() -> Vec<Value> {
    let public: Value = serde_json::from_slice(&read("keys/jwks.json")).expect("json");
    public["keys"].as_array().expect("keys").clone()
}

pub fn hmac_jwks() -> Value {
    serde_json::from_slice(&read("keys/jwks-hmac.json")).expect("json")
}

pub fn hmac_secret() -> Vec<u8> {
    let k = hmac_jwks()["keys"][0]["k"].as_str().expect("k").to_owned();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(k)
        .expect("base64url")
}

pub fn jwk(kid: &str) -> Value {
    all_jwks()
        .into_iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no test key {kid}"))
}

pub fn key_set(jwks: &Value) -> KeySet {
    let (set, refused) =
        KeySet::from_jwks(&serde_json::to_vec(jwks).expect("json"), Origin::LocalFile)
            .expect("test key set loads");
    assert!(refused.is_empty(), "{refused:?}");
    set
}

/// Trust in two issuers: ISS with the public test keys, and
/// `https://hmac.test` with the HMAC secret.
pub fn trust_with(policy: IssuerPolicy) -> Trust {
    let public = key_set(&json!({ "keys": all_jwks() }));
    let hmac = key_set(&hmac_jwks());
    Trust::new(
        [
            TrustedIssuer {
                policy: Arc::new(policy),
                keys: KeyState::Loaded(Arc::new(public)),
            },
            TrustedIssuer {
                policy: Arc::new(
                    IssuerPolicy::new(HMAC_ISS)
                        .expect("valid")
                        .allowing_any_audience(),
                ),
                keys: KeyState::Loaded(Arc::new(hmac)),
            },
        ],
        8192,
    )
}

pub const HMAC_ISS: &str = "https://hmac.test";

pub fn trust() -> Trust {
    trust_with(
        IssuerPolicy::new(ISS)
            .expect("valid")
            .allowing_any_audience(),
    )
}

pub fn claims(iss: &str) -> Value {
    json!({ "iss": iss, "sub": "alice", "aud": "api", "exp": NOW + 600, "iat": NOW, "scope": "read" })
}

/// The issuer whose keys verify `alg`: HMAC keys live apart from public keys.
pub fn iss_for(alg: &str) -> &'static str {
    if alg.starts_with("HS") { HMAC_ISS } else { ISS }
}

/// The fixture key that signs `alg` (kid = file name).
pub fn key_for(alg: &str) -> &'static str {
    match alg {
        "RS256" | "RS384" | "RS512" => "rsa2048",
        "PS256" | "PS384" | "PS512" => "rsa3072",
        "ES256" => "p256",
        "ES384" => "p384",
        "ES512" => "p521",
        "EdDSA" => "ed25519",
        _ => "hs",
    }
}

/// A token signed by an implementation other than jwtd's: the jsonwebtoken
/// crate for every algorithm it has, RustCrypto's p521 for ES512.
pub fn independent_token(alg: &str, claims: &Value) -> String {
    use jsonwebtoken::{Algorithm as A, EncodingKey, Header};
    let kid = key_for(alg);
    if alg == "ES512" {
        return es512_token(kid, claims);
    }
    let pem = || read(&format!("keys/{kid}.pem"));
    let (algorithm, key) = match alg {
        "RS256" => (A::RS256, EncodingKey::from_rsa_pem(&pem())),
        "RS384" => (A::RS384, EncodingKey::from_rsa_pem(&pem())),
        "RS512" => (A::RS512, EncodingKey::from_rsa_pem(&pem())),
        "PS256" => (A::PS256, EncodingKey::from_rsa_pem(&pem())),
        "PS384" => (A::PS384, EncodingKey::from_rsa_pem(&pem())),
        "PS512" => (A::PS512, EncodingKey::from_rsa_pem(&pem())),
        "ES256" => (A::ES256, EncodingKey::from_ec_pem(&pem())),
        "ES384" => (A::ES384, EncodingKey::from_ec_pem(&pem())),
        "EdDSA" => (A::EdDSA, EncodingKey::from_ed_pem(&pem())),
        "HS256" => (A::HS256, EncodingKey::from_secret(&hmac_secret())),
        "HS384" => (A::HS384, EncodingKey::from_secret(&hmac_secret())),
        "HS512" => (A::HS512, EncodingKey::from_secret(&hmac_secret())),
        other => panic!("no independent signer for {other}"),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.expect("fixture key loads")).expect("signs")
}

/// ES512 with RustCrypto's p521 (jsonwebtoken has no ES512).
fn es512_token(kid: &str, claims: &Value) -> String {
    use p521::ecdsa::signature::Signer as _;
    use p521::pkcs8::DecodePrivateKey as _;
    let pem = String::from_utf8(read(&format!("keys/{kid}.pem"))).expect("utf8");
    let secret = p521::SecretKey::from_pkcs8_pem(&pem).expect("p521 key");
    let signing = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes()).expect("signing key");
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = json!({ "alg": "ES512", "kid": kid, "typ": "JWT" });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature: p521::ecdsa::Signature = signing.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

/// Seconds since the epoch now, for tokens sent to a jwtd on the system clock.
pub fn wall_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.expect("clock after 1970").as_secs() as i64
}

pub fn now() -> UnixTime {
    UnixTime(NOW)
}

/// A running jwtd on 127.0.0.1:0, stopped when dropped.
pub struct Server {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(trust: Trust, limits: Limits) -> Server {
        Self::start_registry(jwtd::registry::Registry::fixed(trust, limits)).await
    }

    pub async fn start_registry(registry: Arc<jwtd::registry::Registry>) -> Server {
        let engine = jwtd::engine::Engine::new(
            registry,
            Arc::new(FixedClock(now())),
            jwtd::engine::EngineConfig::default(),
        )
        .expect("engine");
        Self::start_engine(Arc::new(engine)).await
    }

    pub async fn start_engine(engine: Arc<jwtd::engine::Engine>) -> Server {
        let options = jwtd::server::ServeOptions {
            server: jwtd::config::ServerConfig {
                drain: std::time::Duration::ZERO,
                ..Default::default()
            },
            ..Default::default()
        };
        Self::start_with(engine, options).await
    }

    pub async fn start_with(
        engine: Arc<jwtd::engine::Engine>,
        options: jwtd::server::ServeOptions,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind ephemeral port");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            jwtd::server::serve_with(listener, engine, options, async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connects to the freshly bound listener")
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task ends cleanly");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An Envoy CheckRequest carrying `headers`, on a route with `route` as its
/// context extensions.
pub fn check_request(
    headers: &[(&str, &str)],
    route: &[(&str, &str)],
) -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/orders".into(),
                    headers: pairs(headers),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            context_extensions: pairs(route),
            ..AttributeContext::default()
        }),
    }
}

/// Distinct ES256 tokens with made-up signatures: each costs a full ECDSA
/// verification before it is rejected.
pub fn expensive_distinct_tokens(n: u32) -> Vec<String> {
    expensive_tokens(0..n)
}

/// The tokens of [`expensive_distinct_tokens`] numbered `range`: the same
/// number is the same token.
pub fn expensive_tokens(range: std::ops::Range<u32>) -> Vec<String> {
    static INPUT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let input = INPUT.get_or_init(|| {
        let good = independent_token("ES256", &claims(ISS));
        let (input, _) = good.rsplit_once('.').expect("three parts");
        input.to_owned()
    });
    range
        .map(|i| {
            let mut sig = [0u8; 64];
            sig[..4].copy_from_slice(&i.to_be_bytes());
            sig[4] = 1;
            sig[36] = 1;
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
            format!("{input}.{sig}")
        })
        .collect()
}
