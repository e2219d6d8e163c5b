//! TLS and mTLS on the gRPC port: a client without the right certificate is
//! refused, with it calls pass, and rotated files are picked up.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jwtd::config::{ServerConfig, TlsConfig};
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status, VerifyRequest};
use jwtd::server::ServeOptions;
use support::pki::Ca;
use support::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A fresh directory, removed when dropped.
fn dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("jwtd-tls-{name}-"))
        .tempdir()
        .unwrap()
}

/// Writes the server's files (atomically, as a rotation would) into `dir`.
fn write_server_files(dir: &Path, ca: &Ca, client_ca: Option<&Ca>) -> TlsConfig {
    write_files(dir, ca.issue("localhost", true), client_ca)
}

/// Writes a server certificate and key, and the client CA, into `dir`.
fn write_files(dir: &Path, (cert, key): (String, String), client_ca: Option<&Ca>) -> TlsConfig {
    let put = |name: &str, text: &str| {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
        dir.join(name)
    };
    TlsConfig {
        cert_file: put("tls.crt", &cert),
        key_file: put("tls.key", &key),
        client_ca_file: client_ca.map(|ca| put("ca.crt", &ca.pem)),
        reload: Duration::from_millis(100),
    }
}

async fn start(tls: TlsConfig) -> Server {
    let registry = jwtd::registry::Registry::fixed(
        trust(),
        jwtd::config::Limits {
            max_batch: 16,
            max_token_bytes: 8192,
            max_pending_tokens: None,
        },
    );
    let engine = jwtd::engine::Engine::new(
        registry,
        Arc::new(jwtd::clock::FixedClock(now())),
        jwtd::engine::EngineConfig::default(),
    )
    .unwrap();
    let options = ServeOptions {
        server: ServerConfig {
            drain: Duration::ZERO,
            ..ServerConfig::default()
        },
        tls: Some(tls),
        ..ServeOptions::default()
    };
    Server::start_with(Arc::new(engine), options).await
}

/// Verifies one valid token over TLS trusting `ca`, presenting `identity`.
async fn call(
    server: &Server,
    ca: &Ca,
    identity: Option<(String, String)>,
) -> Result<Status, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel: Channel = Endpoint::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let token = independent_token("RS256", &claims(ISS));
    let response = VerifierServiceClient::new(channel)
        .verify(VerifyRequest {
            tokens: vec![token],
            ..VerifyRequest::default()
        })
        .await
        .map_err(|e| format!("call: {e:?}"))?;
    Ok(Status::try_from(response.into_inner().results[0].status).unwrap())
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_certificate_and_refuses_plaintext() {
    let ca = Ca::new("server CA");
    let folder = dir("tls");
    let server = start(write_server_files(folder.path(), &ca, None)).await;
    assert_eq!(call(&server, &ca, None).await, Ok(Status::Valid));

    let stranger = Ca::new("another CA");
    assert!(
        call(&server, &stranger, None).await.is_err(),
        "an untrusted server certificate passed"
    );

    let plaintext = VerifierServiceClient::connect(format!("http://{}", server.addr)).await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(mut client) => client.verify(VerifyRequest::default()).await.is_err(),
    };
    assert!(refused, "a plaintext call was served on the TLS port");
    server.stop().await;
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_from_the_client_ca() {
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let folder = dir("mtls");
    let server = start(write_server_files(folder.path(), &ca, Some(&clients))).await;

    let good = clients.issue("orders-service", false);
    assert_eq!(call(&server, &ca, Some(good)).await, Ok(Status::Valid));

    let none = call(&server, &ca, None).await;
    assert!(none.is_err(), "no client certificate passed: {none:?}");

    let forged = Ca::new("client CA").issue("orders-service", false);
    let forged = call(&server, &ca, Some(forged)).await;
    assert!(
        forged.is_err(),
        "a certificate from another CA passed: {forged:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn rotated_certificates_are_picked_up_without_a_restart() {
    let folder = dir("rotate");
    let (ca1, clients1) = (Ca::new("CA 1"), Ca::new("clients 1"));
    let server = start(write_server_files(folder.path(), &ca1, Some(&clients1))).await;
    assert_eq!(
        call(&server, &ca1, Some(clients1.issue("svc", false))).await,
        Ok(Status::Valid)
    );

    // Rotate everything: a new server certificate and a new client CA.
    let (ca2, clients2) = (Ca::new("CA 2"), Ca::new("clients 2"));
    write_server_files(folder.path(), &ca2, Some(&clients2));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if call(&server, &ca2, Some(clients2.issue("svc", false))).await == Ok(Status::Valid) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificates were never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old client CA no longer lets anyone in.
    assert!(
        call(&server, &ca2, Some(clients1.issue("svc", false)))
            .await
            .is_err()
    );

    // A broken rotation keeps the running certificates.
    std::fs::write(folder.path().join("tls.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        call(&server, &ca2, Some(clients2.issue("svc", false))).await,
        Ok(Status::Valid)
    );
    server.stop().await;
}

/// The running certificate's expiry is on /metrics and follows a rotation
/// (the `JwtdCertificateExpiringSoon` alert of deploy/prometheus reads it).
/// The only test of this file that installs the metrics recorder, which is
/// one per process.
#[tokio::test]
async fn the_certificate_expiry_is_published_and_follows_a_rotation() {
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    jwtd::telemetry::serve_metrics(metrics).unwrap();
    let expiry = || async move {
        let text = scrape_metrics(metrics).await;
        sample(&text, "jwtd_tls_certificate_expiry_timestamp_seconds")
    };
    let folder = dir("expiry");
    let ca = Ca::new("CA");
    let config = write_files(
        folder.path(),
        ca.issue_server_until("localhost", 2031),
        None,
    );
    let server = start(config).await;
    // 2031-01-01T00:00:00Z.
    assert_eq!(expiry().await, 1_924_992_000.0);

    write_files(
        folder.path(),
        ca.issue_server_until("localhost", 2032),
        None,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // 2032-01-01T00:00:00Z, once the rotation is read.
    while expiry().await != 1_956_528_000.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expiry did not follow the rotation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

/// The reloader may first run long after the certificates were read (here:
/// not before this test's next await). A rotation in between must still be
/// picked up, so the files' stamps are the ones taken at that read.
#[tokio::test]
async fn certificates_rotated_before_the_reloader_first_runs_are_picked_up() {
    let folder = dir("early-rotate");
    let (ca1, ca2) = (Ca::new("CA 1"), Ca::new("CA 2"));
    let config = write_server_files(folder.path(), &ca1, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A current-thread runtime: nothing spawned runs until this task awaits.
    let _incoming = jwtd::tls::incoming(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        config,
    )
    .unwrap();
    write_server_files(folder.path(), &ca2, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = handshake(addr, &ca2).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated certificate was never served: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TLS handshake with `addr` trusting only `ca`.
async fn handshake(addr: std::net::SocketAddr, ca: &Ca) -> Result<(), String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
