//! The `jwtd` binary as an operator runs it: --help, check-config, mint, and
//! serving the bundled dev config until SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status, VerifyRequest};

/// Kills the child if the test fails before it stopped it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn jwtd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwtd"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("JWTD_CONFIG");
    cmd
}

fn scratch(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jwtd-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write temp file");
    path
}

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

#[test]
fn check_config_names_the_bad_key() {
    let path = scratch(
        "bad.toml",
        "[[issuers]]\nissuer = \"https://i\"\njwks_file = \"x.json\"\nalgorithms = [\"RS256\", \"HS1\"]\n",
    );
    let out = jwtd()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).expect("utf8");
    assert!(stderr.contains("issuers[0].algorithms"), "{stderr}");
    assert!(stderr.contains("\"HS1\""), "{stderr}");
}

#[test]
fn check_config_reports_a_missing_key_file() {
    let path = scratch(
        "nokeys.toml",
        "[[issuers]]\nissuer = \"https://i\"\njwks_file = \"missing.json\"\n",
    );
    let out = jwtd()
        .arg("check-config")
        .env("JWTD_CONFIG", &path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).expect("utf8");
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

#[tokio::test]
async fn serves_the_dev_config_and_stops_on_sigterm() {
    let dev = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dev/jwtd.dev.toml"))
        .expect("dev config");
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/dev/jwks.dev.json");
    let config = dev
        .replace("127.0.0.1:50051", "127.0.0.1:0")
        .replace("\"jwks.dev.json\"", &format!("{jwks:?}"));
    let path = scratch("serve.toml", &config);
    let mut child = Running(
        jwtd()
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts"),
    );
    let child = &mut child.0;

    // The ready line names the address; wait for it (bounded by the child
    // exiting, which closes stderr).
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("jwtd exited before it was ready")
            .expect("utf8 log line");
        if line.contains("jwtd ready") {
            let at = line.find("addr=").expect("ready line names the address") + 5;
            break line[at..]
                .split_whitespace()
                .next()
                .expect("addr")
                .to_owned();
        }
    };

    let token = mint_dev_token(&["--claim", "scope=\"read\""]);
    let mut client = VerifierServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connects");
    let results = client
        .verify(VerifyRequest {
            tokens: vec![token, mint_dev_token(&["--ttl", "-3600"])],
            ..VerifyRequest::default()
        })
        .await
        .expect("verifies")
        .into_inner()
        .results;
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
    drop(client);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    // Bounded wait for the exit.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jwtd did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("jwtd stopped")), "{rest:?}");
}
