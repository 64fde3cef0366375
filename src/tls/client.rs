//! The client's trust: a certificate that the system's roots vouch for,
//! or a fingerprint pinned on first use in `known_servers`, as ssh's
//! `known_hosts` does.
//!
//! The file holds one `host:port sha256:<hex>` line per server. A
//! handshake with an unknown server fails with [`Trust::Unknown`] (the
//! caller may ask the user and [`KnownServers::add`]); a pinned server
//! whose fingerprint changed fails with [`Trust::Changed`], naming the
//! line to remove. Whatever decides the certificate, the handshake's
//! signatures are still checked against it, or anyone could replay a
//! certificate they do not hold the key of.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{fingerprint, provider, ALPN_NETDISK};

/// The pinned fingerprints.
#[derive(Debug, Clone)]
pub struct KnownServers {
    /// The file they live in.
    pub path: PathBuf,
}

/// One pin: where it is and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// 1-based line number in the file.
    pub line: usize,
    pub fingerprint: String,
}

impl KnownServers {
    /// The default place: `$NETDISK_KNOWN_SERVERS`, else
    /// `$XDG_CONFIG_HOME/netdisk/known_servers`, else
    /// `~/.config/netdisk/known_servers`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("NETDISK_KNOWN_SERVERS").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        config_dir().join("netdisk").join("known_servers")
    }

    /// The pin for `server` (`host:port`), if any.
    ///
    /// # Errors
    /// If the file exists but cannot be read.
    pub fn find(&self, server: &str) -> io::Result<Option<Pin>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        for (i, line) in text.lines().enumerate() {
            let mut words = line.split_whitespace();
            if let (Some(host), Some(fp)) = (words.next(), words.next()) {
                if host == server && !host.starts_with('#') {
                    return Ok(Some(Pin {
                        line: i + 1,
                        fingerprint: fp.to_string(),
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Pins `fingerprint` for `server`, creating the file (and its folder)
    /// if needed.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn add(&self, server: &str, fingerprint: &str) -> io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(format!("{server} {fingerprint}\n").as_bytes())?;
        f.sync_all()
    }

    /// Every pin, `(server, fingerprint)`, in the file's order; none if
    /// there is no file.
    ///
    /// # Errors
    /// If the file exists but cannot be read.
    pub fn list(&self) -> io::Result<Vec<(String, String)>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some(host), Some(fp)) if !host.starts_with('#') => {
                        Some((host.to_string(), fp.to_string()))
                    }
                    _ => None,
                }
            })
            .collect())
    }

    /// Drops every pin of `server`, keeping the other lines as they were
    /// (the file is replaced whole: a temporary file, fsync, rename).
    /// Returns how many pins went.
    ///
    /// # Errors
    /// If the file cannot be read or replaced.
    pub fn forget(&self, server: &str) -> io::Result<usize> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut kept = String::with_capacity(text.len());
        let mut removed = 0;
        for line in text.lines() {
            if line.split_whitespace().next() == Some(server) {
                removed += 1;
            } else {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        if removed > 0 {
            let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
            let mut tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))?;
            tmp.write_all(kept.as_bytes())?;
            tmp.as_file().sync_all()?;
            tmp.persist(&self.path).map_err(|e| e.error)?;
        }
        Ok(removed)
    }
}

fn config_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(x);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".config")
}

/// What a failed handshake learned about the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Neither a known CA nor a pin vouches for it.
    Unknown { fingerprint: String },
    /// A pin exists and says something else.
    Changed {
        fingerprint: String,
        pinned: Pin,
        file: PathBuf,
    },
    /// `--trust` named another fingerprint.
    NotTheTrusted {
        fingerprint: String,
        trusted: String,
    },
}

/// How the client decides whom to trust for one connection.
#[derive(Debug)]
pub struct Verifier {
    /// `host:port` as the user wrote it: the key of the pin.
    server: String,
    known: KnownServers,
    /// A fingerprint the user vouched for (`--trust`).
    trusted: Option<String>,
    /// The system's roots, if any could be loaded.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    /// Why the last handshake was refused, for the caller.
    refused: Mutex<Option<Trust>>,
    /// Set when the server was accepted through `--trust`: pin it then.
    to_pin: Mutex<Option<String>>,
}

impl Verifier {
    /// A verifier for `server` (`host:port`).
    pub fn new(server: &str, known: KnownServers, trusted: Option<String>) -> Arc<Verifier> {
        let provider = provider();
        Arc::new(Verifier {
            server: server.to_string(),
            known,
            trusted,
            webpki: system_verifier(&provider),
            provider,
            refused: Mutex::new(None),
            to_pin: Mutex::new(None),
        })
    }

    /// The rustls configuration that uses this verifier and offers ALPN
    /// `netdisk/1`.
    ///
    /// # Errors
    /// If the provider supports no protocol version (never with *ring*).
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>, rustls::Error> {
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(self) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_NETDISK.to_vec()];
        Ok(Arc::new(config))
    }

    /// Why the last handshake was refused, if this verifier refused it.
    pub fn refusal(&self) -> Option<Trust> {
        lock(&self.refused).clone()
    }

    /// After a successful handshake: pins a fingerprint accepted through
    /// `--trust`, so that later connections need no flag.
    ///
    /// # Errors
    /// If `known_servers` cannot be written.
    pub fn pin_if_trusted(&self) -> io::Result<()> {
        match lock(&self.to_pin).take() {
            Some(fp) => self.known.add(&self.server, &fp),
            None => Ok(()),
        }
    }

    fn refuse(&self, why: Trust) -> rustls::Error {
        let text = match &why {
            Trust::Unknown { .. } => "unknown server certificate",
            Trust::Changed { .. } => "the server's certificate changed",
            Trust::NotTheTrusted { .. } => "not the trusted certificate",
        };
        *lock(&self.refused) = Some(why);
        rustls::Error::General(text.into())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(v) = &self.webpki {
            if v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .is_ok()
            {
                return Ok(ServerCertVerified::assertion());
            }
        }
        let fp = fingerprint(end_entity)?;
        let pin = self
            .known
            .find(&self.server)
            .map_err(|e| rustls::Error::General(format!("cannot read known servers: {e}")))?;
        match pin {
            Some(pin) if pin.fingerprint == fp => Ok(ServerCertVerified::assertion()),
            Some(pinned) => Err(self.refuse(Trust::Changed {
                fingerprint: fp,
                pinned,
                file: self.known.path.clone(),
            })),
            None => match &self.trusted {
                Some(t) if *t == fp => {
                    *lock(&self.to_pin) = Some(fp);
                    Ok(ServerCertVerified::assertion())
                }
                Some(t) => Err(self.refuse(Trust::NotTheTrusted {
                    fingerprint: fp,
                    trusted: t.clone(),
                })),
                None => Err(self.refuse(Trust::Unknown { fingerprint: fp })),
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A verifier over the system's roots (`/etc/ssl/certs` and the like),
/// or `None` if there are none. `SSL_CERT_FILE` / `SSL_CERT_DIR` apply.
fn system_verifier(provider: &Arc<CryptoProvider>) -> Option<Arc<WebPkiServerVerifier>> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return None;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A plain value behind it: nothing is left half-updated by a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether every address `host` names is a loopback address, where the
/// client speaks plaintext by default.
pub fn is_loopback(addrs: &[std::net::SocketAddr]) -> bool {
    !addrs.is_empty() && addrs.iter().all(|a| a.ip().to_canonical().is_loopback())
}

/// The name rustls is told to expect: the host part of `host:port`.
pub fn server_name(server: &str) -> Result<ServerName<'static>, String> {
    let host = match server.rsplit_once(':') {
        Some((h, _)) => h,
        None => server,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_found_by_server_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownServers {
            path: dir.path().join("sub/known_servers"),
        };
        assert_eq!(known.find("a:1").unwrap(), None);
        known.add("a:1", "sha256:aa").unwrap();
        known.add("b:2", "sha256:bb").unwrap();
        assert_eq!(
            known.find("b:2").unwrap(),
            Some(Pin {
                line: 2,
                fingerprint: "sha256:bb".into()
            })
        );
        assert_eq!(known.find("b:3").unwrap(), None);
    }

    #[test]
    fn server_names_from_addresses() {
        assert!(server_name("example.com:9000").is_ok());
        assert!(server_name("127.0.0.1:9000").is_ok());
        assert!(server_name("[::1]:9000").is_ok());
    }
}
