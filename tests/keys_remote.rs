//! Keys from URLs, discovery and files, against a real HTTP server on loopback
//! that each test changes: rotation, unknown-kid refresh, the single-flight and
//! rate limit under a flood, outages, KEYS_UNAVAILABLE before the first load,
//! discovery with a wrong issuer, Cache-Control, size caps, file reload, and
//! config reload. Intervals are configured short; waits are bounded polls.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jwtd::config::Config;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status as S, VerifyRequest};
use jwtd::registry::Registry;
use serde_json::{Value, json};
use support::*;

/// A fake identity provider: serves a JWK Set and a discovery document.
struct Idp {
    base: String,
    jwks: Mutex<Value>,
    status: AtomicU16,
    cache_control: Mutex<Option<String>>,
    discovery_issuer: Mutex<String>,
    oversize: AtomicBool,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    loop_hits: AtomicUsize,
    user_agent: Mutex<Option<String>>,
}

impl Idp {
    async fn start(kids: &[&str]) -> Arc<Idp> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let idp = Arc::new(Idp {
            base,
            jwks: Mutex::new(Value::Null),
            status: AtomicU16::new(200),
            cache_control: Mutex::new(None),
            discovery_issuer: Mutex::new(ISS.to_owned()),
            oversize: AtomicBool::new(false),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            loop_hits: AtomicUsize::new(0),
            user_agent: Mutex::new(None),
        });
        idp.publish(kids);
        let app = axum::Router::new()
            .route("/jwks", axum::routing::get(jwks))
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(discovery),
            )
            .route("/loop", axum::routing::get(redirect_loop))
            .with_state(Arc::clone(&idp));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        idp
    }

    fn publish(&self, kids: &[&str]) {
        let keys: Vec<Value> = kids.iter().map(|kid| jwk(kid)).collect();
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    fn fail_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn jwks(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> Response {
    idp.jwks_hits.fetch_add(1, Ordering::SeqCst);
    *idp.user_agent.lock().unwrap() = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = idp.status.load(Ordering::SeqCst);
    if status != 200 {
        return (StatusCode::from_u16(status).unwrap(), "down").into_response();
    }
    if idp.oversize.load(Ordering::SeqCst) {
        return (StatusCode::OK, vec![b' '; 2 * 1024 * 1024]).into_response();
    }
    let body = idp.jwks.lock().unwrap().to_string();
    let mut response = (StatusCode::OK, body).into_response();
    if let Some(cc) = idp.cache_control.lock().unwrap().clone() {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, cc.parse().unwrap());
    }
    response
}

async fn redirect_loop(State(idp): State<Arc<Idp>>) -> Response {
    idp.loop_hits.fetch_add(1, Ordering::SeqCst);
    axum::response::Redirect::temporary("/loop").into_response()
}

async fn discovery(State(idp): State<Arc<Idp>>) -> Response {
    idp.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let issuer = idp.discovery_issuer.lock().unwrap().clone();
    let doc = json!({ "issuer": issuer, "jwks_uri": format!("{}/jwks", idp.base) });
    (StatusCode::OK, doc.to_string()).into_response()
}

/// A jwtd serving `config` (TOML) over a live registry.
struct Jwtd {
    registry: Arc<Registry>,
    server: Server,
    client: VerifierServiceClient<tonic::transport::Channel>,
}

impl Jwtd {
    async fn start(toml: &str) -> Jwtd {
        let config = Config::from_toml(toml, std::path::Path::new("/")).expect("test config");
        let (registry, _) = Registry::start(&config).await.expect("registry starts");
        let server = Server::start_registry(Arc::clone(&registry)).await;
        let client = VerifierServiceClient::new(server.channel().await);
        Jwtd {
            registry,
            server,
            client,
        }
    }

    async fn verify(&self, tokens: &[&String]) -> Vec<S> {
        let tokens = tokens.iter().map(|t| (*t).clone()).collect();
        self.client
            .clone()
            .verify(VerifyRequest {
                tokens,
                ..VerifyRequest::default()
            })
            .await
            .expect("verify call")
            .into_inner()
            .results
            .iter()
            .map(|r| S::try_from(r.status).unwrap())
            .collect()
    }

    async fn one(&self, token: &String) -> S {
        self.verify(&[token]).await[0]
    }
}

fn issuer_toml(source: &str, extra: &str) -> String {
    format!(
        "startup = \"wait\"\n[[issuers]]\nissuer = \"{ISS}\"\n{source}\nallow_insecure_http = true\nrequire_exp = true\nallow_any_audience = true\n{extra}\n"
    )
}

/// A fake IdP serving `kids`, and a jwtd fetching from it with `extra` settings.
async fn with_idp(kids: &[&str], extra: &str) -> (Arc<Idp>, Jwtd) {
    let idp = Idp::start(kids).await;
    let jwtd = Jwtd::start(&issuer_toml(&jwks_source(&idp), extra)).await;
    (idp, jwtd)
}

fn jwks_source(idp: &Idp) -> String {
    format!("jwks_uri = \"{}/jwks\"", idp.base)
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_ready(registry: &Registry) {
    let mut ready = registry.ready();
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .expect("ready in time")
        .expect("registry alive");
}

fn token(alg: &str) -> String {
    independent_token(alg, &claims(ISS))
}

#[tokio::test]
async fn an_unknown_kid_refreshes_and_verifies_within_the_call() {
    let (idp, jwtd) = with_idp(&["rsa2048"], "refresh_seconds = 300").await;
    wait_ready(&jwtd.registry).await;
    assert_eq!(jwtd.one(&token("RS256")).await, S::Valid);
    let before = idp.hits();

    idp.publish(&["rsa2048", "p256"]);
    assert_eq!(
        jwtd.one(&token("ES256")).await,
        S::Valid,
        "fetched on the miss"
    );
    assert_eq!(idp.hits(), before + 1);
    assert!(
        idp.user_agent
            .lock()
            .unwrap()
            .as_deref()
            .unwrap()
            .starts_with("jwtd/"),
        "User-Agent names jwtd"
    );
    jwtd.server.stop().await;
}

#[tokio::test]
async fn a_flood_of_random_kids_causes_one_fetch_per_interval() {
    let (idp, jwtd) = with_idp(
        &["rsa2048"],
        "refresh_seconds = 300\nmin_refresh_seconds = 60\nkid_miss_wait_ms = 300",
    )
    .await;
    wait_ready(&jwtd.registry).await;
    let before = idp.hits();

    let valid = token("RS256");
    let (_, rest) = valid.split_once('.').unwrap();
    let forged: Vec<String> = (0..64)
        .map(|i| {
            let header = json!({ "alg": "RS256", "kid": format!("random-{i}") }).to_string();
            format!("{}.{rest}", base64url(header.as_bytes()))
        })
        .collect();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut client = jwtd.client.clone();
        let tokens = forged.clone();
        calls.spawn(async move {
            client
                .verify(VerifyRequest {
                    tokens,
                    ..VerifyRequest::default()
                })
                .await
                .unwrap()
                .into_inner()
                .results
        });
    }
    while let Some(results) = calls.join_next().await {
        let results = results.unwrap();
        assert!(results.iter().all(|r| r.status == S::UnknownKey as i32));
    }
    // A second wave inside the interval fetches nothing.
    let statuses = jwtd.verify(&forged.iter().collect::<Vec<_>>()).await;
    assert!(statuses.iter().all(|s| *s == S::UnknownKey));
    assert_eq!(idp.hits(), before + 1, "512+64 unknown kids, one fetch");
    assert_eq!(jwtd.one(&valid).await, S::Valid);
    jwtd.server.stop().await;
}

#[tokio::test]
async fn rotation_under_load_gives_no_wrong_answer() {
    let (idp, jwtd) = with_idp(
        &["rsa2048"],
        "refresh_seconds = 0.2\nmin_refresh_seconds = 0.1\nmax_refresh_seconds = 1",
    )
    .await;
    wait_ready(&jwtd.registry).await;
    let old = token("RS256");
    let new = token("ES256");

    // Hammer both tokens while the keys rotate; record every answer.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let mut client = jwtd.client.clone();
        let (old, new, stop, answers) = (
            old.clone(),
            new.clone(),
            Arc::clone(&stop),
            Arc::clone(&answers),
        );
        load.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let results = client
                    .verify(VerifyRequest {
                        tokens: vec![old.clone(), new.clone()],
                        ..VerifyRequest::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .results;
                let s = |i: usize| S::try_from(results[i].status).unwrap();
                answers.lock().unwrap().push((s(0), s(1)));
            }
        });
    }

    // Overlap: both keys published; the new token becomes valid.
    idp.publish(&["rsa2048", "p256"]);
    eventually("the new key", || async { jwtd.one(&new).await == S::Valid }).await;
    let overlap_seen = answers.lock().unwrap().len();
    // Removal: only the new key; the old token must stop verifying.
    idp.publish(&["p256"]);
    eventually("the old key to leave", || async {
        jwtd.one(&old).await == S::UnknownKey
    })
    .await;
    let removal_seen = answers.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    while load.join_next().await.is_some() {}

    let answers = answers.lock().unwrap().clone();
    assert!(
        answers.len() > removal_seen,
        "load kept running after the removal"
    );
    for (i, (old_status, new_status)) in answers.iter().enumerate() {
        assert!(
            matches!(old_status, S::Valid | S::UnknownKey),
            "answer {i}: old token {old_status:?}"
        );
        assert!(
            matches!(new_status, S::Valid | S::UnknownKey),
            "answer {i}: new token {new_status:?}"
        );
    }
    // Once the overlap was observed by the test, the new key never vanished;
    // once the removal was observed, the old key never came back.
    let after_overlap = &answers[overlap_seen..];
    let published_new = after_overlap.iter().position(|(_, n)| *n == S::Valid);
    if let Some(first) = published_new {
        assert!(
            after_overlap[first..].iter().all(|(_, n)| *n == S::Valid),
            "the published new key was reported UNKNOWN_KEY"
        );
    }
    assert!(
        answers[removal_seen..]
            .iter()
            .all(|(o, _)| *o == S::UnknownKey),
        "the removed key verified again"
    );
    jwtd.server.stop().await;
}

#[tokio::test]
async fn an_outage_keeps_the_last_good_set_and_recovers() {
    let (idp, jwtd) = with_idp(
        &["rsa2048"],
        "refresh_seconds = 0.1\nmin_refresh_seconds = 0.05\nmax_refresh_seconds = 0.2",
    )
    .await;
    wait_ready(&jwtd.registry).await;
    let old = token("RS256");

    idp.fail_with(500);
    let failed_from = idp.hits();
    eventually("a few failed fetches", || async {
        idp.hits() >= failed_from + 3
    })
    .await;
    assert_eq!(jwtd.one(&old).await, S::Valid, "stale keys keep serving");

    idp.fail_with(200);
    idp.publish(&["rsa2048", "ed25519"]);
    let new = token("EdDSA");
    eventually("recovery", || async { jwtd.one(&new).await == S::Valid }).await;
    assert_eq!(jwtd.one(&old).await, S::Valid);
    jwtd.server.stop().await;
}

#[tokio::test]
async fn keys_go_unavailable_after_max_stale() {
    let (idp, jwtd) = with_idp(&["rsa2048"], "refresh_seconds = 0.1\nmin_refresh_seconds = 0.05\nmax_refresh_seconds = 0.1\nmax_stale_seconds = 0.5").await;
    wait_ready(&jwtd.registry).await;
    let t = token("RS256");
    assert_eq!(jwtd.one(&t).await, S::Valid);
    idp.fail_with(503);
    eventually("staleness", || async {
        jwtd.one(&t).await == S::KeysUnavailable
    })
    .await;
    idp.fail_with(200);
    eventually("recovery", || async { jwtd.one(&t).await == S::Valid }).await;
    jwtd.server.stop().await;
}

#[tokio::test]
async fn before_the_first_load_tokens_are_keys_unavailable_and_health_waits() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let idp = Idp::start(&["rsa2048"]).await;
    idp.fail_with(503);
    let jwtd = Jwtd::start(&issuer_toml(
        &jwks_source(&idp),
        "min_refresh_seconds = 0.05\nmax_refresh_seconds = 0.2",
    ))
    .await;
    let health = HealthClient::new(jwtd.server.channel().await);
    let status = |service: &'static str| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    let t = token("RS256");
    eventually("a failed first fetch", || async { idp.hits() >= 1 }).await;
    assert_eq!(jwtd.one(&t).await, S::KeysUnavailable);
    assert_eq!(
        status("jwtd.v1.VerifierService").await,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        status("").await,
        ServingStatus::Serving as i32,
        "the process is live"
    );

    idp.fail_with(200);
    eventually("health to flip", || async {
        status("jwtd.v1.VerifierService").await == ServingStatus::Serving as i32
    })
    .await;
    assert_eq!(jwtd.one(&t).await, S::Valid);
    jwtd.server.stop().await;
}

#[tokio::test]
async fn startup_serve_reports_healthy_at_once() {
    let idp = Idp::start(&["rsa2048"]).await;
    idp.fail_with(503);
    let toml =
        issuer_toml(&jwks_source(&idp), "").replace("startup = \"wait\"", "startup = \"serve\"");
    let jwtd = Jwtd::start(&toml).await;
    assert!(*jwtd.registry.ready().borrow());
    jwtd.server.stop().await;
}

#[tokio::test]
async fn discovery_finds_the_jwks_and_refuses_a_mismatched_issuer() {
    let idp = Idp::start(&["p384"]).await;
    let discovery = format!(
        "discovery_uri = \"{}/.well-known/openid-configuration\"",
        idp.base
    );
    let jwtd = Jwtd::start(&issuer_toml(&discovery, "refresh_seconds = 300")).await;
    wait_ready(&jwtd.registry).await;
    assert_eq!(jwtd.one(&token("ES384")).await, S::Valid);
    assert_eq!(idp.discovery_hits.load(Ordering::SeqCst), 1);
    jwtd.server.stop().await;

    let evil = Idp::start(&["p384"]).await;
    *evil.discovery_issuer.lock().unwrap() = "https://evil.example".into();
    let discovery = format!(
        "discovery_uri = \"{}/.well-known/openid-configuration\"",
        evil.base
    );
    let jwtd = Jwtd::start(&issuer_toml(
        &discovery,
        "min_refresh_seconds = 0.05\nmax_refresh_seconds = 0.1",
    ))
    .await;
    eventually("discovery attempts", || async {
        evil.discovery_hits.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(jwtd.one(&token("ES384")).await, S::KeysUnavailable);
    assert_eq!(
        evil.hits(),
        0,
        "the JWKS of a mismatched issuer is never fetched"
    );
    assert!(!*jwtd.registry.ready().borrow());
    jwtd.server.stop().await;
}

#[tokio::test]
async fn cache_control_max_age_sets_the_refresh_interval() {
    let idp = Idp::start(&["rsa2048"]).await;
    *idp.cache_control.lock().unwrap() = Some("public, max-age=1".into());
    let jwtd = Jwtd::start(&issuer_toml(
        &jwks_source(&idp),
        "refresh_seconds = 300\nmin_refresh_seconds = 0.5\nmax_refresh_seconds = 600",
    ))
    .await;
    wait_ready(&jwtd.registry).await;
    // refresh_seconds alone would wait 300 s; max-age=1 refetches within ~1.2 s.
    eventually("a refetch driven by max-age", || async { idp.hits() >= 3 }).await;
    jwtd.server.stop().await;

    let slow = Idp::start(&["rsa2048"]).await;
    *slow.cache_control.lock().unwrap() = Some("max-age=86400".into());
    let jwtd = Jwtd::start(&issuer_toml(
        &jwks_source(&slow),
        "refresh_seconds = 300\nmin_refresh_seconds = 0.1\nmax_refresh_seconds = 0.3",
    ))
    .await;
    wait_ready(&jwtd.registry).await;
    // A day of max-age is clamped to max_refresh_seconds.
    eventually("the clamp to max_refresh_seconds", || async {
        slow.hits() >= 3
    })
    .await;
    jwtd.server.stop().await;
}

#[tokio::test]
async fn an_oversized_jwks_is_refused_and_the_old_set_stays() {
    let (idp, jwtd) = with_idp(
        &["rsa2048"],
        "refresh_seconds = 0.1\nmin_refresh_seconds = 0.05\nmax_refresh_seconds = 0.1",
    )
    .await;
    wait_ready(&jwtd.registry).await;
    idp.oversize.store(true, Ordering::SeqCst);
    let from = idp.hits();
    eventually("oversized fetches", || async { idp.hits() >= from + 2 }).await;
    assert_eq!(jwtd.one(&token("RS256")).await, S::Valid);
    jwtd.server.stop().await;
}

#[tokio::test]
async fn a_changed_key_file_is_reloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("jwks.json");
    let write = |kids: &[&str]| {
        let keys: Vec<Value> = kids.iter().map(|k| jwk(k)).collect();
        let tmp = dir.join("jwks.json.tmp");
        std::fs::write(&tmp, json!({ "keys": keys }).to_string()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write(&["rsa2048"]);
    let jwtd = Jwtd::start(&issuer_toml(
        &format!("jwks_file = {:?}", path.display().to_string()),
        "refresh_seconds = 0.05\nmin_refresh_seconds = 60",
    ))
    .await;
    let old = token("RS256");
    let new = token("PS256");
    assert_eq!(jwtd.one(&old).await, S::Valid);
    // Kid misses are rate-limited (60 s) after this one: the change below
    // must be found by the file check, not by a miss.
    assert_eq!(jwtd.one(&new).await, S::UnknownKey);
    write(&["rsa3072"]);
    eventually("the file change", || async {
        jwtd.one(&new).await == S::Valid
    })
    .await;
    assert_eq!(jwtd.one(&old).await, S::UnknownKey);
    jwtd.server.stop().await;
}

/// The refresh task may first run long after the keys were read at start
/// (here: not before the test's next await). A change in between must still
/// be seen, so the file's stamp is the one taken at that read.
#[tokio::test]
async fn a_key_file_changed_before_its_refresh_task_runs_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let write = |kids: &[&str]| {
        let keys: Vec<Value> = kids.iter().map(|k| jwk(k)).collect();
        let tmp = dir.path().join("jwks.json.tmp");
        std::fs::write(&tmp, json!({ "keys": keys }).to_string()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write(&["rsa2048"]);
    let config = Config::from_toml(
        &issuer_toml(
            &format!("jwks_file = {:?}", path.display().to_string()),
            "refresh_seconds = 0.05",
        ),
        std::path::Path::new("/"),
    )
    .unwrap();
    // A current-thread runtime: nothing spawned runs until this task awaits.
    let (registry, _) = Registry::start(&config).await.unwrap();
    let before = registry.snapshot();
    write(&["rsa2048", "p256"]);
    eventually("the change made before the first refresh", || async {
        !Arc::ptr_eq(&before, &registry.snapshot())
    })
    .await;
}

#[tokio::test]
async fn a_reload_adds_removes_and_changes_issuers() {
    let idp = Idp::start(&["rsa2048"]).await;
    let hmac_path = support::data("keys/jwks-hmac.json");
    let first = issuer_toml(&jwks_source(&idp), "refresh_seconds = 300");
    let jwtd = Jwtd::start(&first).await;
    wait_ready(&jwtd.registry).await;
    let rs = token("RS256");
    let hs = independent_token("HS256", &claims(HMAC_ISS));
    assert_eq!(
        jwtd.verify(&[&rs, &hs]).await,
        [S::Valid, S::IssuerNotTrusted]
    );
    let hits = idp.hits();

    // Add an issuer; narrow the first one's audiences. Its source is
    // unchanged, so it keeps its keys (the reload asks it to look again).
    let second = format!(
        "{}[[issuers]]\nissuer = \"{HMAC_ISS}\"\njwks_file = {:?}\nallow_any_audience = true\n",
        first.replace("allow_any_audience = true", "audiences = [\"other\"]"),
        hmac_path.display().to_string()
    );
    let config = Config::from_toml(&second, std::path::Path::new("/")).unwrap();
    jwtd.registry.reload(&config).await.expect("reload");
    assert_eq!(
        jwtd.verify(&[&rs, &hs]).await,
        [S::AudienceMismatch, S::Valid]
    );
    eventually("the kick on reload", || async { idp.hits() > hits }).await;

    // A reload whose new key file is missing is rejected whole.
    let broken = second.replace("jwks-hmac.json", "missing.json");
    let config = Config::from_toml(&broken, std::path::Path::new("/")).unwrap();
    assert!(jwtd.registry.reload(&config).await.is_err());
    assert_eq!(
        jwtd.verify(&[&rs, &hs]).await,
        [S::AudienceMismatch, S::Valid]
    );

    // Remove the first issuer.
    let third = format!(
        "[[issuers]]\nissuer = \"{HMAC_ISS}\"\njwks_file = {:?}\nallow_any_audience = true\n",
        hmac_path.display().to_string()
    );
    let config = Config::from_toml(&third, std::path::Path::new("/")).unwrap();
    jwtd.registry.reload(&config).await.expect("reload");
    assert_eq!(
        jwtd.verify(&[&rs, &hs]).await,
        [S::IssuerNotTrusted, S::Valid]
    );
    jwtd.server.stop().await;
}

#[tokio::test]
async fn redirects_are_limited() {
    let idp = Idp::start(&["rsa2048"]).await;
    let toml = format!(
        "{}\n[fetch]\nmax_redirects = 2\n",
        issuer_toml(&format!("jwks_uri = \"{}/loop\"", idp.base), "")
    );
    let jwtd = Jwtd::start(&toml).await;
    eventually("the first attempt", || async {
        idp.loop_hits.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert_eq!(jwtd.one(&token("RS256")).await, S::KeysUnavailable);
    // The first retry waits about a second (backoff): the first attempt
    // stopped after the request and its 2 allowed redirects.
    assert_eq!(idp.loop_hits.load(Ordering::SeqCst), 3);
    jwtd.server.stop().await;
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
