//! HTTPS for the webhook: certificate and key from files (a `kubernetes.io/tls`
//! Secret, as cert-manager writes it). A renewed certificate is served to new
//! connections without a restart: each handshake checks whether the files changed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tracing::{info, warn};

type Stamp = (Option<SystemTime>, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len(), m.ino()))
}

/// Why the certificate or key cannot be served; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {}: {message}", .path.display())]
    ReadCertificate { path: PathBuf, message: String },
    #[error("no certificate in {}", .0.display())]
    NoCertificate(PathBuf),
    #[error("cannot read private key {}: {message}", .path.display())]
    ReadKey { path: PathBuf, message: String },
    #[error("unusable private key {}: {source}", .path.display())]
    UnusableKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{} does not belong to {}: {source}", .key.display(), .cert.display())]
    Mismatch {
        key: PathBuf,
        cert: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// Loads a certificate chain and its private key from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read_cert = |e: rustls::pki_types::pem::Error| TlsError::ReadCertificate {
        path: cert.to_path_buf(),
        message: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(read_cert)?
        .collect::<Result<_, _>>()
        .map_err(read_cert)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::ReadKey {
        path: key.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsError::UnusableKey {
            path: key.to_path_buf(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|source| TlsError::Mismatch {
            key: key.to_path_buf(),
            cert: cert.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(certified))
}

/// Serves the certificate currently in the files.
#[derive(Debug)]
pub struct FileCertResolver {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<(Option<Stamp>, Option<Stamp>, Arc<CertifiedKey>)>,
}

impl FileCertResolver {
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let loaded = load(cert, key)?;
        Ok(FileCertResolver {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: Mutex::new((stamp(cert), stamp(key), loaded)),
        })
    }

    fn certified(&self) -> Arc<CertifiedKey> {
        let mut current = match self.current.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let (cs, ks) = (stamp(&self.cert), stamp(&self.key));
        if (cs, ks) != (current.0, current.1) {
            // A half-written pair fails to load; keep serving the old one until
            // both files agree.
            match load(&self.cert, &self.key) {
                Ok(loaded) => {
                    info!(cert = %self.cert.display(), "serving the renewed TLS certificate");
                    *current = (cs, ks, loaded);
                }
                Err(e) => {
                    warn!(error = %e, "cannot load the changed TLS certificate; serving the previous one")
                }
            }
        }
        current.2.clone()
    }
}

impl ResolvesServerCert for FileCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified())
    }
}

/// The server configuration of the HTTPS listener.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = FileCertResolver::new(cert, key)?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
