//! Webhook authentication: HTTP basic or bearer, with credentials read from
//! files (a mounted Secret) and read again whenever the files change.
//!
//! Comparison is constant-time and leaks no length: both sides are hashed first
//! and the digests compared with `subtle`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::config::{AuthConfig, AuthType};

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials")]
    Missing,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("wrong credentials")]
    Wrong,
    /// The credentials file cannot be read: Karo's own misconfiguration.
    #[error("cannot read credentials file {path}: {message}")]
    Unavailable { path: String, message: String },
}

impl AuthError {
    /// Short name for the metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::Wrong => "wrong",
            AuthError::Unavailable { .. } => "unavailable",
        }
    }
}

/// What identifies a file's current content without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows symlinks, so a Secret volume's `..data` swap is a new file.
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// Credential digests, cached per file until the file changes.
#[derive(Default)]
pub struct Authenticator {
    cache: Mutex<HashMap<PathBuf, (Stamp, [u8; 32])>>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

impl Authenticator {
    /// The digest of a credentials file's content, without its trailing newline.
    fn secret(&self, path: &Path) -> Result<[u8; 32], AuthError> {
        let unavailable = |e: std::io::Error| AuthError::Unavailable {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let now = stamp(path).map_err(unavailable)?;
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((seen, d)) = cache.get(path) {
            if *seen == now {
                return Ok(*d);
            }
        }
        let content = std::fs::read(path).map_err(unavailable)?;
        let trimmed = content
            .strip_suffix(b"\r\n")
            .or_else(|| content.strip_suffix(b"\n"))
            .unwrap_or(&content);
        // An empty file is one being rewritten in place (truncated, not yet
        // written): Karo's trouble, not the sender's wrong credentials.
        if trimmed.is_empty() {
            return Err(AuthError::Unavailable {
                path: path.display().to_string(),
                message: "the file is empty".into(),
            });
        }
        let d = digest(trimmed);
        cache.insert(path.to_path_buf(), (now, d));
        Ok(d)
    }

    /// Checks the `Authorization` header against the configuration.
    pub fn check(&self, auth: &AuthConfig, header: Option<&[u8]>) -> Result<(), AuthError> {
        match auth.kind {
            AuthType::None => Ok(()),
            AuthType::Basic => {
                let (Some(username), Some(password_file)) = (&auth.username, &auth.password_file)
                else {
                    return Err(AuthError::Unavailable {
                        path: String::new(),
                        message: "webhook.auth.username and passwordFile must be set".into(),
                    });
                };
                let expected_password = self.secret(password_file)?;
                let header = header.ok_or(AuthError::Missing)?;
                let encoded = strip_scheme(header, b"basic").ok_or(AuthError::Malformed)?;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim_ascii())
                    .map_err(|_| AuthError::Malformed)?;
                let colon = decoded
                    .iter()
                    .position(|b| *b == b':')
                    .ok_or(AuthError::Malformed)?;
                let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
                // Both compared, whatever the first result, so timing says nothing.
                let user_ok = equal(&digest(user), &digest(username.as_bytes()));
                let password_ok = equal(&digest(password), &expected_password);
                if user_ok & password_ok {
                    Ok(())
                } else {
                    Err(AuthError::Wrong)
                }
            }
            AuthType::Bearer => {
                let Some(token_file) = &auth.token_file else {
                    return Err(AuthError::Unavailable {
                        path: String::new(),
                        message: "webhook.auth.tokenFile must be set".into(),
                    });
                };
                let expected = self.secret(token_file)?;
                let header = header.ok_or(AuthError::Missing)?;
                let token = strip_scheme(header, b"bearer").ok_or(AuthError::Malformed)?;
                if equal(&digest(token.trim_ascii()), &expected) {
                    Ok(())
                } else {
                    Err(AuthError::Wrong)
                }
            }
        }
    }
}

/// `Basic xyz` -> `xyz`, with the scheme matched case-insensitively.
fn strip_scheme<'a>(header: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let header = header.trim_ascii_start();
    if header.len() > scheme.len()
        && header[..scheme.len()].eq_ignore_ascii_case(scheme)
        && header[scheme.len()] == b' '
    {
        Some(&header[scheme.len() + 1..])
    } else {
        None
    }
}

/// The `WWW-Authenticate` challenge for a 401.
pub fn challenge(kind: AuthType) -> &'static str {
    match kind {
        AuthType::Bearer => "Bearer realm=\"karo\"",
        _ => "Basic realm=\"karo\", charset=\"UTF-8\"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
        .into_bytes()
    }

    #[test]
    fn basic_auth_reads_the_file_and_notices_changes() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "secret\n").expect("write");
        let cfg = AuthConfig {
            kind: AuthType::Basic,
            username: Some("alertmanager".into()),
            password_file: Some(file.clone()),
            token_file: None,
        };
        let a = Authenticator::default();
        assert_eq!(
            a.check(&cfg, Some(&basic("alertmanager", "secret"))),
            Ok(())
        );
        assert_eq!(
            a.check(&cfg, Some(&basic("alertmanager", "wrong"))),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            a.check(&cfg, Some(&basic("someone", "secret"))),
            Err(AuthError::Wrong)
        );
        assert_eq!(a.check(&cfg, None), Err(AuthError::Missing));
        assert_eq!(a.check(&cfg, Some(b"Basic !!!")), Err(AuthError::Malformed));
        assert_eq!(
            a.check(&cfg, Some(b"Bearer secret")),
            Err(AuthError::Malformed)
        );
        // A new file in its place (as a Secret update does): new password only.
        let tmp = dir.path().join("password.new");
        std::fs::write(&tmp, "rotated").expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        assert_eq!(
            a.check(&cfg, Some(&basic("alertmanager", "rotated"))),
            Ok(())
        );
        assert_eq!(
            a.check(&cfg, Some(&basic("alertmanager", "secret"))),
            Err(AuthError::Wrong)
        );
    }

    #[test]
    fn bearer_tokens() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "t0ken").expect("write");
        let cfg = AuthConfig {
            kind: AuthType::Bearer,
            username: None,
            password_file: None,
            token_file: Some(file),
        };
        let a = Authenticator::default();
        assert_eq!(a.check(&cfg, Some(b"Bearer t0ken")), Ok(()));
        assert_eq!(a.check(&cfg, Some(b"bearer t0ken")), Ok(()));
        assert_eq!(a.check(&cfg, Some(b"Bearer t0ke")), Err(AuthError::Wrong));
        assert_eq!(a.check(&cfg, Some(b"Bearer t0kenX")), Err(AuthError::Wrong));
        assert_eq!(a.check(&cfg, None), Err(AuthError::Missing));
    }

    #[test]
    fn missing_file_is_unavailable() {
        let cfg = AuthConfig {
            kind: AuthType::Bearer,
            username: None,
            password_file: None,
            token_file: Some("/nonexistent/token".into()),
        };
        let err = Authenticator::default()
            .check(&cfg, Some(b"Bearer x"))
            .err()
            .map(|e| e.kind());
        assert_eq!(err, Some("unavailable"));
    }
}
