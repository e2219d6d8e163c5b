//! The container image, run as a user would: built from the Dockerfile by
//! `deploy/image/build.sh`, then started with podman with the image's own
//! example config (its placeholder issuer's discovery swapped for a mounted
//! key file) on a read-only root filesystem. Runs when `JWTD_IMAGE` names
//! the image (`.ci/run` sets it after building); skipped, saying so,
//! otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;

use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status, VerifyRequest};
use serde_json::json;
use support::{data, free_port, independent_token, wall_now};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The image under test, or None (and a note on stderr) when unset.
fn image() -> Option<String> {
    let image = std::env::var("JWTD_IMAGE").ok().filter(|i| !i.is_empty());
    if image.is_none() {
        eprintln!("JWTD_IMAGE is not set: the image is not tested (deploy/image/build.sh)");
    }
    image
}

/// `podman ARGS` (with the environment's CONTAINERS_CONF: .ci/run sources
/// deploy/image/env.sh for this machine's settings).
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// The commit this test binary was built from, as build.rs found it.
fn commit() -> &'static str {
    let version = jwtd::VERSION;
    let commit = &version[version.find("(commit ").unwrap() + 8..version.len() - 1];
    assert!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "the tests are built outside a git checkout ({version}): nothing to compare the image with"
    );
    commit
}

#[test]
fn the_image_prints_its_version_and_commit_and_labels_them() {
    let Some(image) = image() else { return };
    let printed = podman_ok(&["run", "--rm", "--network", "none", &image, "--version"]);
    assert_eq!(printed, format!("jwtd {}", jwtd::VERSION));
    // The same commit as this checkout's (the build argument REVISION).
    assert!(printed.contains(commit()), "{printed}");
    let label = |name: &str| {
        podman_ok(&[
            "image",
            "inspect",
            "--format",
            &format!("{{{{index .Labels \"org.opencontainers.image.{name}\"}}}}"),
            &image,
        ])
    };
    assert_eq!(label("revision"), commit());
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(label("title"), "jwtd");
}

/// A started container, removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.0]);
    }
}

impl Container {
    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.0])
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.0]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

async fn health(addr: &str, service: &str) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .ok()?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    Some(reply.into_inner().status)
}

/// Readiness, as Kubernetes' grpc readiness probe asks for it
/// (deploy/kubernetes/deployment.yaml); liveness asks for `""`.
const READINESS: &str = "jwtd.v1.VerifierService";

/// Polls readiness until it is `want`; panics with the container's log
/// after 60 s.
async fn wait_ready(container: &Container, addr: &str, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while health(addr, READINESS).await != Some(want as i32) {
        assert!(
            Instant::now() < deadline,
            "readiness never answered {want:?}; log:\n{}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn verify(addr: &str, token: &str) -> jwtd::pb::VerifyResult {
    let mut client = VerifierServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connects");
    let reply = client
        .verify(VerifyRequest {
            tokens: vec![token.to_owned()],
            ..VerifyRequest::default()
        })
        .await
        .expect("verifies");
    reply.into_inner().results.remove(0)
}

#[tokio::test]
async fn the_image_serves_as_non_root_on_a_read_only_root_and_drains_on_sigterm() {
    let Some(image) = image() else { return };

    // The image's own example config, on loopback ports of the host
    // network, with the placeholder issuer's discovery replaced by a key file
    // mounted beside it (its audience and algorithms unchanged).
    let (grpc, metrics) = (free_port(), free_port());
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/jwtd.toml"
    ))
    .unwrap();
    let config = example
        .replace("0.0.0.0:50051", &format!("127.0.0.1:{grpc}"))
        .replace("0.0.0.0:9464", &format!("127.0.0.1:{metrics}"))
        .replace(
            "discovery_uri = \"https://issuer.example.com/.well-known/openid-configuration\"",
            "jwks_file = \"/etc/jwtd/jwks.json\"",
        );
    assert!(config.contains("/etc/jwtd/jwks.json") && config.contains("127.0.0.1:"));
    let dir = tempfile::Builder::new()
        .prefix("jwtd-image-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("jwtd.toml"), config).unwrap();
    std::fs::copy(data("keys/jwks.json"), dir.path().join("jwks.json")).unwrap();
    // Readable by the container's user 65532.
    for entry in ["", "jwtd.toml", "jwks.json"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = if entry.is_empty() { 0o755 } else { 0o644 };
        std::fs::set_permissions(
            dir.path().join(entry),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
    }

    // The image's own entrypoint, command and user.
    let name = format!("jwtd-image-test-{}", std::process::id());
    let mount = format!("{}:/etc/jwtd:ro", dir.path().display());
    podman_ok(&[
        "run",
        "--detach",
        "--name",
        &name,
        "--read-only",
        "--network",
        "host",
        "--env",
        "RUST_LOG=info",
        "--volume",
        &mount,
        &image,
    ]);
    let container = Container(name);
    let addr = format!("127.0.0.1:{grpc}");
    wait_ready(&container, &addr, ServingStatus::Serving).await;

    // Non-root: the image says so (runAsNonRoot needs the numeric user), and
    // the process really runs as 65532 (a rootful container's process is a
    // host process).
    assert_eq!(
        podman_ok(&["image", "inspect", "--format", "{{.Config.User}}", &image]),
        "65532:65532"
    );
    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect();
        assert_eq!(ids, ["65532"; 4], "{field} of the container's process");
    }
    assert_eq!(container.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");

    // A token signed by an independent implementation verifies.
    let claims = json!({
        "iss": "https://issuer.example.com", "sub": "alice", "aud": "orders-api",
        "iat": wall_now(), "exp": wall_now() + 600,
    });
    let token = independent_token("ES256", &claims);
    let result = verify(&addr, &token).await;
    assert_eq!(result.status, Status::Valid as i32, "{}", result.reason);
    let forged = format!("{}AAAA", &token[..token.len() - 4]);
    assert_eq!(
        verify(&addr, &forged).await.status,
        Status::BadSignature as i32
    );
    // /metrics answers on its port.
    let page = support::scrape_metrics(format!("127.0.0.1:{metrics}")).await;
    assert!(page.contains("jwtd_verifications_total"), "{page}");

    // SIGTERM to the container's PID 1: readiness flips to NOT_SERVING while
    // liveness stays SERVING and calls are still answered for drain_seconds
    // (5 in the example config), then jwtd exits 0.
    podman_ok(&["kill", "--signal", "TERM", &container.0]);
    wait_ready(&container, &addr, ServingStatus::NotServing).await;
    assert_eq!(health(&addr, "").await, Some(ServingStatus::Serving as i32));
    let during = verify(&addr, &token).await;
    assert_eq!(during.status, Status::Valid as i32, "{}", during.reason);
    let code = podman_ok(&["wait", &container.0]);
    let log = container.logs();
    assert_eq!(code, "0", "exit code; log:\n{log}");
    for line in [
        jwtd::VERSION,
        "shutdown signal received; draining in-flight calls",
        "jwtd stopped",
    ] {
        assert!(log.contains(line), "{line:?} missing from the log:\n{log}");
    }
}
