//! Revocation lists end to end (issue 13 §3): a file source reloaded when
//! rewritten, a URL polled with ETags, stale sources in both `on_stale`
//! modes, and readiness waiting for the first load, on a real server over
//! the wall clock; cold tokens and memo hits alike. The Redis source is in
//! tests/revocation_redis.rs. Waits are bounded polls.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use jwtd::clock::{Clock, SystemClock};
use jwtd::config::Config;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status as S, VerifyRequest, VerifyResult};
use jwtd::registry::Registry;
use serde_json::json;
use support::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A jwtd over the wall clock with the config's `[revocation]` started.
struct Jwtd {
    server: Server,
    client: VerifierServiceClient<tonic::transport::Channel>,
    _store: Arc<jwtd::revocation::Revocations>,
}

impl Jwtd {
    async fn start(revocation: &str) -> Jwtd {
        let jwks = data("keys/jwks.json");
        let toml = format!(
            "startup = \"wait\"\n[revocation]\n{revocation}\n\
             [[issuers]]\nissuer = {ISS:?}\njwks_file = {jwks:?}\naudiences = [\"api\"]\n"
        );
        let config = Config::from_toml(&toml, std::path::Path::new("/")).expect("test config");
        let (registry, _) = Registry::start(&config).await.expect("registry starts");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = jwtd::revocation::start(
            config.revocation.as_ref().expect("section"),
            &config.issuers,
            config.startup,
            config.fetch,
            Arc::clone(&clock),
        )
        .expect("revocation starts");
        let engine = jwtd::engine::Engine::new(registry, clock, config.cache)
            .expect("engine")
            .with_revocations(Arc::clone(&store));
        let server = Server::start_engine(Arc::new(engine)).await;
        let client = VerifierServiceClient::new(server.channel().await);
        Jwtd {
            server,
            client,
            _store: store,
        }
    }

    async fn result(&self, token: &str) -> VerifyResult {
        self.client
            .clone()
            .verify(VerifyRequest {
                tokens: vec![token.to_owned()],
                ..VerifyRequest::default()
            })
            .await
            .expect("verify call")
            .into_inner()
            .results
            .remove(0)
    }

    async fn status(&self, token: &str) -> S {
        S::try_from(self.result(token).await.status).unwrap()
    }

    /// Polls until `token` gets `want` (10 s at most).
    async fn eventually(&self, token: &str, want: S) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.status(token).await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still {got:?}, waited for {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn health(&self) -> i32 {
        HealthClient::new(self.server.channel().await)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "jwtd.v1.VerifierService".into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status
    }
}

/// A token of ISS, signed by jsonwebtoken, valid for ten minutes of wall
/// time, with `jti`, `sub` and `iat` (none when `None`).
fn token(jti: &str, sub: &str, iat: Option<i64>) -> String {
    let now = wall_now();
    let mut claims = json!({ "iss": ISS, "sub": sub, "jti": jti, "aud": "api", "exp": now + 600 });
    if let Some(iat) = iat {
        claims["iat"] = iat.into();
    }
    independent_token("RS256", &claims)
}

fn jti_line(jti: &str) -> String {
    format!(
        "{{\"iss\":{ISS:?},\"jti\":{jti:?},\"exp\":{}}}\n",
        wall_now() + 600
    )
}

fn subject_line(sub: &str, revoked_at: i64) -> String {
    format!(
        "{{\"iss\":{ISS:?},\"sub\":{sub:?},\"revoked_at\":{revoked_at},\"note\":\"ignored\"}}\n"
    )
}

/// Rewrites `path` atomically (a temporary file renamed over it).
fn rewrite(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_file_revokes_cold_tokens_and_memo_hits_and_reloads_when_rewritten() {
    let now = wall_now();
    let list = scratch(
        "revoked.jsonl",
        &format!("{}not json\n", jti_line("cold-1")),
    );
    let jwtd = Jwtd::start(&format!(
        "file = {:?}\nrefresh_seconds = 0.05",
        list.display()
    ))
    .await;
    let cold = token("cold-1", "alice", Some(now - 5));
    let hot = token("hot-1", "bob", Some(now - 5));
    let carol_before = token("c-1", "carol", Some(now - 30));
    let carol_no_iat = token("c-2", "carol", None);
    let carol_after = token("c-3", "carol", Some(now - 1));

    // A cold token whose jti is listed: REVOKED at its first call.
    jwtd.eventually(&cold, S::Revoked).await;
    let revoked = jwtd.result(&cold).await;
    assert!(revoked.claims.is_none(), "a revoked token shows no claims");
    assert!(revoked.reason.contains("jti"), "{}", revoked.reason);
    // Memoized while VALID...
    assert_eq!(jwtd.status(&hot).await, S::Valid);
    let again = jwtd.result(&hot).await;
    assert_eq!((again.status, again.cached), (S::Valid as i32, true));
    for t in [&carol_before, &carol_no_iat, &carol_after] {
        assert_eq!(jwtd.status(t).await, S::Valid);
    }
    // ...then revoked by a rewrite of the file: the memo hit is REVOKED.
    rewrite(
        &list,
        &format!(
            "{}{}{}",
            jti_line("cold-1"),
            jti_line("hot-1"),
            subject_line("carol", now - 10)
        ),
    );
    jwtd.eventually(&hot, S::Revoked).await;
    assert!(jwtd.result(&hot).await.cached, "answered from the memo");
    assert_eq!(jwtd.status(&carol_before).await, S::Revoked);
    assert_eq!(
        jwtd.status(&carol_no_iat).await,
        S::Revoked,
        "no iat counts as before"
    );
    assert_eq!(
        jwtd.status(&carol_after).await,
        S::Valid,
        "issued after revoked_at"
    );

    // Envoy's Check answers 401 invalid_token for it.
    let denied = AuthorizationClient::new(jwtd.server.channel().await)
        .check(check_request(
            &[("authorization", &format!("Bearer {hot}"))],
            &[],
        ))
        .await
        .unwrap()
        .into_inner();
    let Some(HttpResponse::DeniedResponse(denied)) = denied.http_response else {
        panic!("a revoked token passed Check");
    };
    assert_eq!(denied.status.unwrap().code, 401);
    let www = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key.eq_ignore_ascii_case("www-authenticate"))
        .expect("a challenge");
    assert!(www.value.contains("invalid_token"), "{}", www.value);

    // An entry dropped from the file no longer applies.
    rewrite(&list, &jti_line("cold-1"));
    jwtd.eventually(&hot, S::Valid).await;
    assert_eq!(jwtd.status(&carol_before).await, S::Valid);
    assert_eq!(jwtd.status(&cold).await, S::Revoked);
}

/// A revocation list server: serves `list` with an ETag derived from its
/// version, answers 304 to a matching If-None-Match, or fails with
/// `status` when it is not 200.
struct Lists {
    base: String,
    list: Mutex<(u32, String)>,
    status: AtomicU16,
    fetches: AtomicUsize,
    not_modified: AtomicUsize,
}

impl Lists {
    async fn start(list: &str) -> Arc<Lists> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lists = Arc::new(Lists {
            base: format!("http://{}", listener.local_addr().unwrap()),
            list: Mutex::new((1, list.to_owned())),
            status: AtomicU16::new(200),
            fetches: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/revoked.jsonl", axum::routing::get(serve_list))
            .with_state(Arc::clone(&lists));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        lists
    }

    fn publish(&self, list: &str) {
        let mut current = self.list.lock().unwrap();
        *current = (current.0 + 1, list.to_owned());
    }

    fn url(&self) -> String {
        format!("{}/revoked.jsonl", self.base)
    }
}

async fn serve_list(State(lists): State<Arc<Lists>>, headers: HeaderMap) -> Response {
    lists.fetches.fetch_add(1, Ordering::SeqCst);
    let status = lists.status.load(Ordering::SeqCst);
    if status != 200 {
        return (StatusCode::from_u16(status).unwrap(), "down").into_response();
    }
    let (version, body) = lists.list.lock().unwrap().clone();
    let etag = format!("\"v{version}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        lists.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (StatusCode::OK, [(header::ETAG, etag)], body).into_response()
}

#[tokio::test]
async fn a_url_is_polled_with_etags_and_health_waits_for_its_first_load() {
    let lists = Lists::start(&jti_line("url-1")).await;
    lists.status.store(503, Ordering::SeqCst);
    let jwtd = Jwtd::start(&format!(
        "url = {:?}\nallow_insecure_http = true\nrefresh_seconds = 0.05",
        lists.url()
    ))
    .await;
    let listed = token("url-1", "alice", Some(wall_now()));
    let later = token("url-2", "alice", Some(wall_now()));

    // No list yet: readiness waits (startup = "wait").
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lists.fetches.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no poll");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(jwtd.health().await, ServingStatus::NotServing as i32);
    lists.status.store(200, Ordering::SeqCst);
    jwtd.eventually(&listed, S::Revoked).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while jwtd.health().await != ServingStatus::Serving as i32 {
        assert!(tokio::time::Instant::now() < deadline, "never SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Unchanged: every later poll is a 304.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lists.not_modified.load(Ordering::SeqCst) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no 304s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(jwtd.status(&later).await, S::Valid);
    assert_eq!(
        jwtd.status(&listed).await,
        S::Revoked,
        "a 304 keeps the list"
    );

    // Changed: a new ETag, a full body, the new list.
    lists.publish(&format!("{}{}", jti_line("url-1"), jti_line("url-2")));
    jwtd.eventually(&later, S::Revoked).await;
    assert_eq!(jwtd.status(&listed).await, S::Revoked);
}

#[tokio::test]
async fn a_stale_url_keeps_serving_its_last_list_by_default() {
    let lists = Lists::start(&jti_line("stale-1")).await;
    let jwtd = Jwtd::start(&format!(
        "url = {:?}\nallow_insecure_http = true\nrefresh_seconds = 0.05\nmax_stale_seconds = 0.3",
        lists.url()
    ))
    .await;
    let listed = token("stale-1", "alice", Some(wall_now()));
    let other = token("stale-2", "alice", Some(wall_now()));
    jwtd.eventually(&listed, S::Revoked).await;
    lists.status.store(500, Ordering::SeqCst);
    let fetched = lists.fetches.load(Ordering::SeqCst);
    // Well past max_stale_seconds of failed polls.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lists.fetches.load(Ordering::SeqCst) < fetched + 20 {
        assert!(tokio::time::Instant::now() < deadline, "no polls");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        jwtd.status(&listed).await,
        S::Revoked,
        "the last list still applies"
    );
    assert_eq!(jwtd.status(&other).await, S::Valid);
}

#[tokio::test]
async fn a_stale_url_makes_its_issuers_tokens_unavailable_when_configured() {
    let lists = Lists::start(&jti_line("stale-1")).await;
    let jwtd = Jwtd::start(&format!(
        "url = {:?}\nallow_insecure_http = true\nrefresh_seconds = 0.05\nmax_stale_seconds = 0.3\n\
         on_stale = \"unavailable\"",
        lists.url()
    ))
    .await;
    let listed = token("stale-1", "alice", Some(wall_now()));
    let other = token("stale-2", "alice", Some(wall_now()));
    jwtd.eventually(&listed, S::Revoked).await;
    assert_eq!(jwtd.status(&other).await, S::Valid);
    lists.status.store(500, Ordering::SeqCst);
    jwtd.eventually(&other, S::KeysUnavailable).await;
    let result = jwtd.result(&other).await;
    assert!(
        result.reason.contains("revocation source url"),
        "{}",
        result.reason
    );
    assert_eq!(
        jwtd.status(&listed).await,
        S::Revoked,
        "a revocation still wins"
    );
    // The list comes back: so does VALID.
    lists.status.store(200, Ordering::SeqCst);
    jwtd.eventually(&other, S::Valid).await;
}
