//! The `jwtd` binary as an operator runs it: --help, check-config, mint, and
//! serving the bundled dev config until SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

mod support;

use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status, VerifyRequest};
use support::process::{Running, Served, jwtd};
use support::{free_port, sample, scrape_metrics, scratch};

fn mint_dev_token(extra: &[&str]) -> String {
    let out = jwtd()
        .args([
            "mint",
            "--key",
            "dev/dev-rs256.key.pem",
            "--kid",
            "dev-rs256",
            "--iss",
            "https://dev.jwtd.local",
            "--aud",
            "dev-api",
            "--sub",
            "alice",
        ])
        .args(extra)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

#[test]
fn help_documents_the_commands() {
    let out = jwtd().arg("--help").output().expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf8");
    for word in ["check-config", "mint", "--config", "JWTD_CONFIG"] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}

/// `jwtd --version` names the commit it was built from (build.rs): this
/// checkout's HEAD, or `unknown` outside a git checkout.
#[test]
fn version_names_the_commit() {
    let out = jwtd().arg("--version").output().expect("runs");
    assert!(out.status.success());
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_owned(), |o| {
            String::from_utf8(o.stdout).unwrap().trim().to_owned()
        });
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("jwtd {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_the_dev_config() {
    let out = jwtd()
        .args(["check-config", "--config", "dev/jwtd.dev.toml"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        stdout.contains("config ok: 1 issuer(s), 1 usable key(s)"),
        "{stdout}"
    );
}

/// Runs `jwtd check-config` on a scratch config that must fail; its stderr.
fn failing_check_config(name: &str, config: &str, via_env: bool) -> String {
    let path = scratch(name, config);
    let mut cmd = jwtd();
    cmd.arg("check-config");
    if via_env {
        cmd.env("JWTD_CONFIG", &path);
    } else {
        cmd.arg("--config").arg(&path);
    }
    let out = cmd.output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr).expect("utf8")
}

#[test]
fn check_config_names_the_bad_key() {
    let stderr = failing_check_config(
        "bad.toml",
        "[[issuers]]\nissuer = \"https://i\"\njwks_file = \"x.json\"\nalgorithms = [\"RS256\", \"HS1\"]\n",
        false,
    );
    assert!(stderr.contains("issuers[0].algorithms"), "{stderr}");
    assert!(stderr.contains("\"HS1\""), "{stderr}");
}

#[test]
fn check_config_reports_a_missing_key_file() {
    let stderr = failing_check_config(
        "nokeys.toml",
        "[[issuers]]\nissuer = \"https://i\"\njwks_file = \"missing.json\"\n",
        true,
    );
    assert!(stderr.contains("missing.json"), "{stderr}");
}

#[test]
fn serving_without_a_config_explains_what_to_pass() {
    let out = jwtd().output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).expect("utf8");
    assert!(stderr.contains("--config"), "{stderr}");
}

#[test]
fn mint_refuses_an_algorithm_that_does_not_fit_the_key() {
    let out = jwtd()
        .args([
            "mint",
            "--key",
            "dev/dev-rs256.key.pem",
            "--iss",
            "x",
            "--alg",
            "ES256",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ES256 does not fit"));
}

/// The dev config on an ephemeral port, with absolute key paths.
fn dev_config_text() -> String {
    let dev = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dev/jwtd.dev.toml"))
        .expect("dev config");
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/dev/jwks.dev.json");
    // Ephemeral ports for gRPC and /metrics: tests run side by side.
    dev.replace("127.0.0.1:50051", "127.0.0.1:0")
        .replace("127.0.0.1:9464", "127.0.0.1:0")
        .replace("\"jwks.dev.json\"", &format!("{jwks:?}"))
}

async fn verify(addr: &str, tokens: Vec<String>) -> Vec<jwtd::pb::VerifyResult> {
    let mut client = VerifierServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connects");
    client
        .verify(VerifyRequest {
            tokens,
            ..VerifyRequest::default()
        })
        .await
        .expect("verifies")
        .into_inner()
        .results
}

#[tokio::test]
async fn serves_the_dev_config_and_stops_on_sigterm() {
    let path = scratch("serve.toml", &dev_config_text());
    let mut served = Served::start(&path);
    let addr = served.address();

    let token = mint_dev_token(&["--claim", "scope=\"read\""]);
    let results = verify(&addr, vec![token, mint_dev_token(&["--ttl", "-3600"])]).await;
    assert_eq!(
        results[0].status,
        Status::Valid as i32,
        "{}",
        results[0].reason
    );
    let payload: serde_json::Value =
        serde_json::from_slice(&results[0].claims.as_ref().expect("claims").payload_json)
            .expect("json");
    assert_eq!(payload["scope"], "read");
    assert_eq!(results[1].status, Status::Expired as i32);

    served.signal("TERM");
    let status = served.wait_exit().await;
    assert!(status.success(), "exit status {status:?}");
    served.wait_for("jwtd stopped");
}

/// Key freshness: a key file found unchanged at a check is a success, so
/// `jwtd_jwks_last_success_timestamp_seconds` keeps moving for a healthy
/// issuer whose keys never change (the `JwtdKeysStale` alert of
/// deploy/prometheus reads it), and the fetch counter counts the checks.
#[tokio::test]
async fn an_unchanged_key_file_is_a_fresh_check() {
    let port = free_port();
    let config = dev_config_text()
        .replace(
            "metrics_listen = \"127.0.0.1:0\"",
            &format!("metrics_listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "issuer = \"https://dev.jwtd.local\"",
            "issuer = \"https://dev.jwtd.local\"\nrefresh_seconds = 1",
        );
    let path = scratch("fresh.toml", &config);
    let mut served = Served::start(&path);
    served.address();
    let scrape = || async {
        let text = scrape_metrics(format!("127.0.0.1:{port}")).await;
        let issuer = r#"{issuer="https://dev.jwtd.local""#;
        (
            sample(
                &text,
                &format!(r#"jwtd_jwks_fetches_total{issuer},result="ok"}}"#),
            ),
            sample(
                &text,
                &format!("jwtd_jwks_last_success_timestamp_seconds{issuer}}}"),
            ),
            sample(&text, &format!("jwtd_keys_loaded{issuer}}}")),
        )
    };
    let (checks, loaded_at, keys) = scrape().await;
    assert!(
        checks >= 1.0 && loaded_at > 0.0 && keys >= 1.0,
        "{checks} {loaded_at} {keys}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (later_checks, confirmed_at, later_keys) = scrape().await;
        if later_checks >= checks + 2.0 {
            assert!(confirmed_at > loaded_at, "{confirmed_at} after {loaded_at}");
            assert_eq!(later_keys, keys, "the same keys, confirmed");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the unchanged file was not counted as checked: {later_checks} checks"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // A load logs `keys loaded` with the set's version; none follows the
    // start for a file that never changes.
    let log = served.log_so_far();
    assert!(
        !log.iter()
            .any(|l| l.contains("keys loaded") && l.contains("version=")),
        "an unchanged file is not loaded again: {log:#?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let path = scratch("json.toml", &dev_config_text());
    let mut child = Running(
        jwtd()
            .args(["--log-format", "json", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let ready = loop {
        let line = lines.next().expect("a ready line").expect("utf8");
        let object: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if object["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("jwtd ready"))
        {
            break object;
        }
    };
    assert_eq!(ready["level"], "INFO");
    assert!(
        ready["fields"]["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
}

#[tokio::test]
async fn sighup_reloads_the_config_and_keeps_it_when_the_new_one_is_bad() {
    let path = scratch("reload.toml", &dev_config_text());
    let mut served = Served::start(&path);
    let addr = served.address();
    let hmac = independent_hmac_token();
    let dev = mint_dev_token(&[]);
    let statuses = |results: Vec<jwtd::pb::VerifyResult>| -> Vec<i32> {
        results.iter().map(|r| r.status).collect()
    };
    assert_eq!(
        statuses(verify(&addr, vec![dev.clone(), hmac.clone()]).await),
        [Status::Valid as i32, Status::IssuerNotTrusted as i32]
    );

    let hmac_jwks = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/keys/jwks-hmac.json"
    );
    // An issuer added (applied); the drain period and the batch size
    // changed (restart only: the batch size sizes the transport's cap).
    let added = format!(
        "{}\n[[issuers]]\nissuer = \"https://hmac.test\"\njwks_file = {hmac_jwks:?}\nrequire_exp = false\nallow_any_audience = true\n",
        dev_config_text()
            .replace("drain_seconds = 0", "drain_seconds = 1")
            .replace("max_batch = 1024", "max_batch = 1")
    );
    std::fs::write(&path, added).expect("rewrite config");
    served.signal("HUP");
    let warning = served.wait_for("takes a restart");
    assert!(
        warning.contains("limits.max_batch, [server] changed"),
        "{warning}"
    );
    served.wait_for("config reloaded");
    assert_eq!(
        statuses(verify(&addr, vec![dev.clone(), hmac.clone()]).await),
        [Status::Valid as i32, Status::Valid as i32],
        "the new issuer applies; a batch of 2 still passes the started max_batch"
    );

    std::fs::write(&path, "this is = not [valid toml").expect("rewrite config");
    served.signal("HUP");
    served.wait_for("config reload rejected");
    assert_eq!(
        statuses(verify(&addr, vec![dev, hmac]).await),
        [Status::Valid as i32, Status::Valid as i32],
        "the running config stays"
    );
    served.signal("TERM");
    assert!(served.wait_exit().await.success());
}

/// An HS256 token for https://hmac.test, signed with the jsonwebtoken crate.
fn independent_hmac_token() -> String {
    use base64::Engine as _;
    let jwks: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/keys/jwks-hmac.json"
        ))
        .expect("hmac jwks"),
    )
    .expect("json");
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["k"].as_str().expect("k"))
        .expect("base64url");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs".into());
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({ "iss": "https://hmac.test", "sub": "bob" }),
        &jsonwebtoken::EncodingKey::from_secret(&secret).expect("hmac key"),
    )
    .expect("signs")
}
