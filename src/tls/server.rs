//! The server's certificate and rustls configuration.
//!
//! Without `--tls-cert`, the server makes a self-signed certificate and key
//! on first start (`<data>/tls/cert.pem`, `<data>/tls/key.pem`, the key
//! readable by its owner only) and reuses them from then on, so that the
//! fingerprint clients pinned stays valid.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use super::{fingerprint, provider, ALPN_NETDISK};

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// Made on first start under this folder, then reused.
    Generated(PathBuf),
    /// An admin's PEM chain (leaf first) and key.
    Files { cert: PathBuf, key: PathBuf },
}

/// A loaded certificate chain and its key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The leaf's SPKI fingerprint.
    pub fingerprint: String,
}

impl Identity {
    /// Loads the certificate, making it first if it is generated and absent.
    ///
    /// # Errors
    /// Unreadable or malformed PEM, a chain without a certificate, or a
    /// folder that cannot be written.
    pub fn load(source: &CertSource) -> anyhow::Result<Identity> {
        let (cert, key) = match source {
            CertSource::Generated(dir) => ensure_generated(dir)?,
            CertSource::Files { cert, key } => (cert.clone(), key.clone()),
        };
        let chain = CertificateDer::pem_file_iter(&cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow!("cannot read the certificate chain {}: {e}", cert.display()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| anyhow!("{} holds no certificate", cert.display()))?;
        let fingerprint = fingerprint(leaf)
            .map_err(|e| anyhow!("cannot parse the certificate in {}: {e}", cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&key)
            .map_err(|e| anyhow!("cannot read the private key {}: {e}", key.display()))?;
        Ok(Identity {
            chain,
            key,
            fingerprint,
        })
    }

    /// The rustls configuration: TLS 1.3 and 1.2, no client certificates,
    /// ALPN `netdisk/1` (a client that offers none gets it too) and
    /// `http/1.1` for the web front end.
    ///
    /// # Errors
    /// If the key does not match the certificate or is of an unsupported kind.
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .context("the private key does not fit the certificate")?;
        config.alpn_protocols = vec![ALPN_NETDISK.to_vec(), crate::http::ALPN_HTTP.to_vec()];
        Ok(Arc::new(config))
    }
}

/// The first certificate of a PEM chain.
///
/// # Errors
/// If the text holds no readable certificate.
pub fn first_certificate(pem: &[u8]) -> anyhow::Result<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| anyhow!("no certificate"))?
        .map_err(|e| anyhow!("{e}"))
}

/// The paths of the generated certificate and key in `dir`, made now if
/// absent. The key is written to a private temp file first and renamed, so
/// that it is never readable by others, not even for a moment.
fn ensure_generated(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    // Names a client that checks certificates (rclone given the
    // certificate with `--ca-cert`, a file manager) can reach it by.
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if !host.is_empty() && !names.contains(&host) {
        names.push(host);
    }
    let made = rcgen::generate_simple_self_signed(names).context("cannot make a certificate")?;
    // tempfile creates its files readable by the owner only.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(made.signing_key.serialize_pem().as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&key)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(made.cert.pem().as_bytes())?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(&cert)?;
    crate::storage::sync_dir(dir)?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_kept_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let source = CertSource::Generated(dir.path().join("tls"));
        let first = Identity::load(&source).unwrap();
        let again = Identity::load(&source).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        let mode = fs::metadata(dir.path().join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key mode {mode:o}");
        first.server_config().unwrap();
    }
}
