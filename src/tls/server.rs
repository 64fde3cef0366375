//! The server's certificate and rustls configuration.
//!
//! Without `--tls-cert`, the server makes a self-signed certificate and key
//! on first start (`<data>/tls/cert.pem`, `<data>/tls/key.pem`, the key
//! readable by its owner only) and reuses them from then on, so that the
//! fingerprint clients pinned stays valid.
//!
//! With `--db`, the generated certificate and key live in the database's
//! `settings` instead (`tls.cert_pem`, `tls.key_pem`): the first server to
//! start makes them, every other reads them back, so all present the same
//! fingerprint. `--tls-cert` and `--tls-key` still win.

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
use crate::db::Pool;

/// The `settings` rows of a generated certificate and its key (`--db`).
const CERT_SETTING: &str = "tls.cert_pem";
const KEY_SETTING: &str = "tls.key_pem";

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
        Identity::load_shared(source, None)
    }

    /// [`Identity::load`], with a generated certificate kept in the
    /// database of `db` if given (made there by the first server).
    ///
    /// # Errors
    /// As [`Identity::load`], or a database error.
    pub fn load_shared(source: &CertSource, db: Option<&Pool>) -> anyhow::Result<Identity> {
        if let (CertSource::Generated(_), Some(pool)) = (source, db) {
            let (cert, key) = ensure_in_db(pool)?;
            return Identity::from_pem(cert.as_bytes(), key.as_bytes(), "the database's settings");
        }
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

    /// A certificate chain and key from PEM text kept in `place`.
    fn from_pem(cert: &[u8], key: &[u8], place: &str) -> anyhow::Result<Identity> {
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("cannot read the certificate in {place}: {e}"))?;
        let leaf = chain
            .first()
            .ok_or_else(|| anyhow!("{place} hold no certificate"))?;
        let fingerprint = fingerprint(leaf)
            .map_err(|e| anyhow!("cannot parse the certificate in {place}: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| anyhow!("cannot read the private key in {place}: {e}"))?;
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
    let (cert_pem, key_pem) = generate()?;
    // tempfile creates its files readable by the owner only.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(key_pem.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&key)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(cert_pem.as_bytes())?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(&cert)?;
    crate::storage::sync_dir(dir)?;
    Ok((cert, key))
}

/// The certificate and key PEM kept in the database, made now if absent.
/// Servers starting together each make one; each inserts its pair `ON
/// CONFLICT DO NOTHING` in one transaction and reads back whichever pair
/// won, so a certificate is never paired with another's key.
fn ensure_in_db(pool: &Pool) -> anyhow::Result<(String, String)> {
    let mut conn = pool
        .get()
        .context("no database connection for the certificate")?;
    if let Some(pair) = read_from_db(&mut conn)? {
        return Ok(pair);
    }
    let (cert, key) = generate()?;
    let mut tx = conn.transaction()?;
    for (name, value) in [(CERT_SETTING, &cert), (KEY_SETTING, &key)] {
        tx.execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &value.as_bytes()],
        )?;
    }
    tx.commit()?;
    read_from_db(&mut conn)?.ok_or_else(|| anyhow!("the certificate settings are incomplete"))
}

fn read_from_db(conn: &mut postgres::Client) -> anyhow::Result<Option<(String, String)>> {
    let rows = conn.query(
        "SELECT name, value FROM settings WHERE name = $1 OR name = $2",
        &[&CERT_SETTING, &KEY_SETTING],
    )?;
    let (mut cert, mut key) = (None, None);
    for row in rows {
        let name: String = row.get(0);
        let value: Vec<u8> = row.get(1);
        let text = String::from_utf8(value).context("a certificate setting is not text")?;
        if name == CERT_SETTING {
            cert = Some(text);
        } else {
            key = Some(text);
        }
    }
    Ok(cert.zip(key))
}

/// A new self-signed certificate and its key, as PEM.
fn generate() -> anyhow::Result<(String, String)> {
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
    Ok((made.cert.pem(), made.signing_key.serialize_pem()))
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
    #[test]
    fn with_a_database_every_server_presents_one_generated_certificate() {
        let Some(db) = crate::db::testing::TestDb::create("one_generated_certificate") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let source = CertSource::Generated(dir.path().join("tls"));
        let pools = [db.pool(), db.pool(), db.pool()];
        let go = std::sync::Barrier::new(pools.len());
        let prints: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = pools
                .iter()
                .map(|pool| {
                    let (go, source) = (&go, &source);
                    s.spawn(move || {
                        go.wait();
                        let id = Identity::load_shared(source, Some(pool)).unwrap();
                        id.server_config().unwrap();
                        id.fingerprint
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(prints.iter().all(|p| *p == prints[0]), "{prints:?}");
        assert!(!dir.path().join("tls").exists(), "nothing on disk");
        let again = Identity::load_shared(&source, Some(&pools[0])).unwrap();
        assert_eq!(again.fingerprint, prints[0]);

        // An admin's certificate still wins.
        let other = tempfile::tempdir().unwrap();
        let own = Identity::load(&CertSource::Generated(other.path().join("tls"))).unwrap();
        let files = CertSource::Files {
            cert: other.path().join("tls/cert.pem"),
            key: other.path().join("tls/key.pem"),
        };
        let given = Identity::load_shared(&files, Some(&pools[0])).unwrap();
        assert_eq!(given.fingerprint, own.fingerprint);
        assert_ne!(given.fingerprint, prints[0]);
    }
}
