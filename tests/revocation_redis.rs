//! The Redis revocation source against a real redis-server (started here
//! on an ephemeral port, no persistence) and the real binary: `jwtd revoke`
//! on one replica's config is answered REVOKED by another within a second,
//! for cold tokens and memo hits, and a restarted Redis is reconnected and
//! read again. CI installs redis-server from Debian's packages and sets
//! JWTD_REQUIRE_REDIS=1; elsewhere, without it, the tests say they skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status as S, VerifyRequest, VerifyResult};
use serde_json::json;
use support::process::{Running, Served, jwtd};
use support::*;

fn redis_server() -> Option<PathBuf> {
    let found = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("JWTD_REQUIRE_REDIS").is_none(),
            "JWTD_REQUIRE_REDIS is set but redis-server is not installed"
        );
        eprintln!("skipped: redis-server is not installed (CI installs it)");
    }
    found
}

/// A redis-server on `port`, its files in `dir`, killed when dropped.
struct Redis {
    _child: Running,
    port: u16,
}

impl Redis {
    fn start(bin: &Path, port: u16, dir: &Path) -> Redis {
        let child = Command::new(bin)
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis {
            _child: Running(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.query(&["PING"]).is_err() {
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn query(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }
}

/// A jwtd config using `redis`, with the fixture issuer.
fn config(redis_url: &str) -> Scratch {
    binary_config(&format!(
        "startup = \"wait\"\n[revocation]\nredis_url = {redis_url:?}\nmax_stale_seconds = 60\n"
    ))
}

/// A running jwtd binary and a client to it.
struct Replica {
    served: Served,
    client: VerifierServiceClient<tonic::transport::Channel>,
}

impl Replica {
    async fn start(config: &Path) -> Replica {
        let mut served = Served::start(config);
        let addr = served.address();
        served.wait_for("revocation store loaded");
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connects");
        Replica {
            served,
            client: VerifierServiceClient::new(channel),
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
            .expect("verify")
            .into_inner()
            .results
            .remove(0)
    }

    async fn status(&self, token: &str) -> S {
        S::try_from(self.result(token).await.status).unwrap()
    }

    /// Polls until `token` gets `want`; returns how long that took.
    async fn eventually(&self, token: &str, want: S, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let got = self.status(token).await;
            if got == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "still {got:?} after {within:?}, waited for {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn token(jti: &str, sub: &str, iat: i64) -> String {
    let claims = json!({ "iss": ISS, "sub": sub, "jti": jti, "aud": "api", "iat": iat, "exp": wall_now() + 600 });
    independent_token("ES256", &claims)
}

/// Runs `jwtd revoke --config CONFIG ARGS…`; returns its stdout, or its
/// stderr on failure.
fn revoke(config: &Path, args: &[&str]) -> Result<String, String> {
    let out = jwtd()
        .arg("revoke")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("jwtd revoke runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8(out.stderr).unwrap())
    }
}

#[tokio::test]
async fn jwtd_revoke_on_one_replica_is_answered_revoked_by_another_within_a_second() {
    let Some(bin) = redis_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(&bin, free_port(), dir.path());
    let config = config(&redis.url());
    let a = Replica::start(&config).await;
    let b = Replica::start(&config).await;
    let now = wall_now();
    let hot = token("r-hot", "alice", now - 5);
    let cold = token("r-cold", "alice", now - 5);
    let dave_before = token("d-1", "dave", now - 30);
    let dave_after = token("d-2", "dave", now + 5);

    // Memoized on B while VALID.
    for t in [&hot, &dave_before] {
        assert_eq!(b.status(t).await, S::Valid);
        assert!(b.result(t).await.cached);
    }
    let exp = (now + 600).to_string();
    let line = revoke(&config, &["--iss", ISS, "--jti", "r-hot", "--exp", &exp]).unwrap();
    assert_eq!(
        line,
        format!("{{\"iss\":\"{ISS}\",\"jti\":\"r-hot\",\"exp\":{exp}}}\n")
    );
    let took = b.eventually(&hot, S::Revoked, Duration::from_secs(1)).await;
    eprintln!("replica B answered REVOKED {took:?} after jwtd revoke returned");
    assert!(b.result(&hot).await.cached, "a memo hit, revoked");
    assert_eq!(a.status(&hot).await, S::Revoked);
    assert_eq!(b.status(&cold).await, S::Valid);

    // A subject, as of a time: earlier tokens only.
    let at = (now - 10).to_string();
    let line = revoke(&config, &["--iss", ISS, "--sub", "dave", "--at", &at]).unwrap();
    assert!(line.contains("\"revoked_at\""), "{line}");
    b.eventually(&dave_before, S::Revoked, Duration::from_secs(1))
        .await;
    assert_eq!(b.status(&dave_after).await, S::Valid);
    assert_eq!(a.status(&dave_before).await, S::Revoked);

    // The keys expire with what they revoke: exp plus the issuer's leeway
    // (60 s by default), revoked_at plus subject_ttl_seconds (90,000).
    let redis::Value::Array(keys) = redis.query(&["KEYS", "jwtd:revocation:*"]).unwrap() else {
        panic!("KEYS answers an array");
    };
    let mut expiries: Vec<(String, i64)> = keys
        .iter()
        .map(|k| {
            let redis::Value::BulkString(k) = k else {
                panic!("{k:?}")
            };
            let k = String::from_utf8(k.clone()).unwrap();
            let Ok(redis::Value::Int(at)) = redis.query(&["EXPIRETIME", &k]) else {
                panic!("EXPIRETIME {k}")
            };
            (k.split(':').nth(2).unwrap().to_owned(), at)
        })
        .collect();
    expiries.sort();
    assert_eq!(
        expiries,
        [
            ("jti".to_owned(), now + 600 + 60),
            ("sub".to_owned(), now - 10 + 90_000)
        ]
    );

    // A replica started now loads both from Redis.
    let c = Replica::start(&config).await;
    assert_eq!(c.status(&hot).await, S::Revoked);
    assert_eq!(c.status(&dave_before).await, S::Revoked);
    assert_eq!(c.status(&cold).await, S::Valid);
    // One connection each all along: no heartbeat failed, no reconnect.
    for mut replica in [a, b, c] {
        let log = replica.served.log_so_far();
        let lost: Vec<_> = log.iter().filter(|l| l.contains("unreachable")).collect();
        assert!(lost.is_empty(), "{lost:#?}");
    }
}

#[tokio::test]
async fn jwtd_revoke_fails_clearly_without_a_reachable_redis() {
    let no_section = binary_config("");
    let err = revoke(&no_section, &["--iss", ISS, "--jti", "x"]).unwrap_err();
    assert!(err.contains("redis_url"), "{err}");
    // Nothing listens on this port (it was free a moment ago).
    let unreachable = config(&format!("redis://127.0.0.1:{}/0", free_port()));
    let err = revoke(&unreachable, &["--iss", ISS, "--jti", "x"]).unwrap_err();
    assert!(err.contains("redis redis://127.0.0.1"), "{err}");
    let err = revoke(&unreachable, &["--iss", ISS]).unwrap_err();
    assert!(err.contains("--jti") && err.contains("--sub"), "{err}");
    let err = revoke(&unreachable, &["--iss", ISS, "--jti", "x", "--exp", "1000"]).unwrap_err();
    assert!(err.contains("nothing to revoke"), "{err}");
}

#[tokio::test]
async fn a_restarted_redis_is_reconnected_and_read_again() {
    let Some(bin) = redis_server() else { return };
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(&bin, port, dir.path());
    let config = config(&redis.url());
    let mut a = Replica::start(&config).await;
    let now = wall_now();
    let before = token("before-restart", "erin", now - 5);
    let seeded = token("seeded", "erin", now - 5);
    let after = token("after-restart", "erin", now - 5);
    let exp = (now + 600).to_string();
    revoke(
        &config,
        &["--iss", ISS, "--jti", "before-restart", "--exp", &exp],
    )
    .unwrap();
    a.eventually(&before, S::Revoked, Duration::from_secs(1))
        .await;
    assert_eq!(a.status(&seeded).await, S::Valid);

    // While it is down, another Redis writes the store the restarted one
    // will load at start (a dump in its --dir): an entry no one published.
    drop(redis);
    let seed_dir = tempfile::tempdir().unwrap();
    let seed_port = std::iter::repeat_with(free_port)
        .find(|p| *p != port)
        .unwrap();
    let seed = Redis::start(&bin, seed_port, seed_dir.path());
    revoke(
        &config_for(&seed),
        &["--iss", ISS, "--jti", "seeded", "--exp", &exp],
    )
    .unwrap();
    seed.query(&["SAVE"]).unwrap();
    drop(seed);
    std::fs::copy(
        seed_dir.path().join("dump.rdb"),
        dir.path().join("dump.rdb"),
    )
    .unwrap();
    a.served.wait_for("revocation store unreachable");
    assert_eq!(a.status(&before).await, S::Revoked, "the last entries stay");

    let restarted = Redis::start(&bin, port, dir.path());
    a.served.wait_for("revocation store reachable again");
    // Read again from the restarted store: its entry applies, and the one
    // it lost (no persistence) no longer does.
    a.eventually(&seeded, S::Revoked, Duration::from_secs(10))
        .await;
    a.eventually(&before, S::Valid, Duration::from_secs(10))
        .await;
    // And subscribed again.
    revoke(
        &config,
        &["--iss", ISS, "--jti", "after-restart", "--exp", &exp],
    )
    .unwrap();
    a.eventually(&after, S::Revoked, Duration::from_secs(1))
        .await;
    drop(restarted);
}

fn config_for(redis: &Redis) -> Scratch {
    config(&redis.url())
}
