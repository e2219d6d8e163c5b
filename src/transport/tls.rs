//! TLS and mTLS on the gRPC port, for deployments without a sidecar: rustls
//! over aws-lc-rs, with certificates re-read when their files change.
//!
//! Decisions:
//! - **Our own acceptor** rather than tonic's `tls_config`, which is fixed at
//!   start: the current rustls config sits behind an `ArcSwap`, every new
//!   connection uses the latest one, and a checker re-reads the files every
//!   `reload_seconds` when their size or mtime changed. A bad new file is
//!   logged and the running config stays; connections already open keep
//!   theirs (as cert-manager rotations expect).
//! - **Handshakes off the accept loop**, each bounded by
//!   [`HANDSHAKE_TIMEOUT`], so one slow client cannot stall the others.
//! - ALPN `h2` only: gRPC needs HTTP/2.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::settings::TlsConfig;
use crate::keys::stamp::{Stamp, stamp};
use crate::observability::telemetry;

/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or held no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("TLS setup: {0}")]
    Rustls(String),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Builds the rustls config the files describe.
pub fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    build(config).map(|(server, _)| server)
}

/// The rustls config, and when its certificate (the first of the chain)
/// expires, in seconds since the epoch (`None` when it does not decode as
/// X.509, which rustls would then refuse anyway).
fn build(config: &TlsConfig) -> Result<(Arc<ServerConfig>, Option<u64>), TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = CertificateDer::pem_file_iter(&config.cert_file)
        .map_err(|e| file_error(&config.cert_file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(&config.cert_file, e))?;
    let Some(leaf) = certs.first() else {
        return Err(file_error(&config.cert_file, "no certificate in the file"));
    };
    let expires = not_after(leaf);
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| file_error(&config.key_file, e))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
                roots
                    .add(cert.map_err(|e| file_error(ca, e))?)
                    .map_err(|e| file_error(ca, e))?;
            }
            if roots.is_empty() {
                return Err(file_error(ca, "no CA certificate in the file"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(server), expires))
}

/// A certificate's `notAfter`, in seconds since the epoch.
fn not_after(der: &[u8]) -> Option<u64> {
    use x509_cert::Certificate;
    use x509_cert::der::Decode as _;

    let cert = Certificate::from_der(der).ok()?;
    Some(
        cert.tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs(),
    )
}

/// Publishes the running certificate's expiry
/// (`jwtd_tls_certificate_expiry_timestamp_seconds`, read by the
/// `JwtdCertificateExpiringSoon` alert).
fn publish_expiry(expires: Option<u64>) {
    if let Some(at) = expires {
        telemetry::tls_certificate_expiry(at);
    }
}

/// The stamp of each file, to notice a change.
fn stamps(config: &TlsConfig) -> Vec<Stamp> {
    let files: [Option<&PathBuf>; 3] = [
        Some(&config.cert_file),
        Some(&config.key_file),
        config.client_ca_file.as_ref(),
    ];
    files.into_iter().flatten().map(|p| stamp(p)).collect()
}

/// Accepted TCP connections, turned into TLS streams. Must run inside a
/// tokio runtime. Fails when the files do not make a config now.
pub fn incoming(
    tcp: impl Stream<Item = std::io::Result<TcpStream>> + Send + 'static,
    config: TlsConfig,
) -> Result<impl Stream<Item = std::io::Result<TlsStream<TcpStream>>>, TlsError> {
    // Stamped before the read: a change after it is seen at the first check.
    let seen = stamps(&config);
    let (server, expires) = build(&config)?;
    publish_expiry(expires);
    let current = Arc::new(ArcSwap::new(server));
    tokio::spawn(reload(config, seen, Arc::clone(&current)));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        use tokio_stream::StreamExt as _;
        let mut tcp = std::pin::pin!(tcp);
        loop {
            // Stops, closing the listener, once the server drops its end.
            let next = tokio::select! {
                () = tx.closed() => return,
                next = tcp.next() => next,
            };
            let Some(stream) = next else {
                return;
            };
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!("accept failed: {e}");
                    continue;
                }
            };
            let acceptor = TlsAcceptor::from(current.load_full());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// Re-reads the files when their stamps differ from `seen` (those of the
/// running config's files); keeps the running config when the new files do
/// not make one.
async fn reload(config: TlsConfig, mut seen: Vec<Stamp>, current: Arc<ArcSwap<ServerConfig>>) {
    loop {
        tokio::time::sleep(config.reload).await;
        if Arc::strong_count(&current) == 1 {
            return; // the acceptor is gone
        }
        let now = stamps(&config);
        if now == seen {
            continue;
        }
        match build(&config) {
            Ok((server, expires)) => {
                current.store(server);
                publish_expiry(expires);
                seen = now;
                tracing::info!(cert = %config.cert_file.display(), "TLS certificates reloaded");
            }
            Err(e) => {
                // Retried at the next check: a rotation may be half written.
                tracing::error!("TLS reload failed, keeping the running certificates: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_after_is_the_certificates_expiry() {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params =
            rcgen::CertificateParams::new(vec!["jwtd.test".to_owned()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let cert = params.self_signed(&key).expect("a certificate");
        // 2031-01-02T00:00:00Z.
        assert_eq!(not_after(cert.der()), Some(1_925_078_400));
        assert_eq!(not_after(b"not a certificate"), None);
    }
}
