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

/// Loads a certificate chain and its private key from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot parse certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("unusable private key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "{} does not belong to {}: {e}",
            key.display(),
            cert.display()
        )
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
    pub fn new(cert: &Path, key: &Path) -> Result<Self, String> {
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
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let resolver = FileCertResolver::new(cert, key)?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
