//! How a server reaches PostgreSQL: the rows hold password hashes, session
//! hashes and the TLS key, so they never cross a network in clear.
//!
//! - A database on this host (a Unix socket, `localhost`, a loopback
//!   address) is reached in plaintext, unless the URL asks for
//!   `sslmode=require`.
//! - Any other host needs TLS: `sslmode=prefer` (the default, which a
//!   network attacker could downgrade) becomes `require`, and
//!   `sslmode=disable` is refused. The server's certificate is verified,
//!   with its host name, against `sslrootcert=FILE` (a PEM file, as libpq
//!   names it) or else the system's roots.

use std::path::Path;

use anyhow::{bail, Context};
use postgres::config::{Host, SslMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connection settings of `url` and the TLS connector they need.
///
/// # Errors
/// A malformed URL, a refused `sslmode`, or roots that cannot be read.
pub fn settings(url: &str, shown: &str) -> anyhow::Result<(postgres::Config, MakeRustlsConnect)> {
    let (url, root_file) = take_param(url, "sslrootcert");
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("--db {shown}: not a PostgreSQL URL: {e}"))?;
    if !is_local(&config) {
        match config.get_ssl_mode() {
            SslMode::Disable => bail!(
                "--db {shown}: sslmode=disable would send the accounts over the network in \
                 clear; use TLS (sslmode=require) or a database on this host"
            ),
            _ => {
                config.ssl_mode(SslMode::Require);
            }
        }
    } else if config.get_ssl_mode() == SslMode::Prefer {
        // Nothing to protect on loopback, and no certificate to check.
        config.ssl_mode(SslMode::Disable);
    }
    let roots = match root_file {
        Some(file) => roots_from(Path::new(&file))?,
        None => system_roots(),
    };
    let tls = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .context("TLS for the database")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(tls)))
}

/// Whether every host of `config` is this machine.
fn is_local(config: &postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                let bare = name.trim_start_matches('[').trim_end_matches(']');
                name.eq_ignore_ascii_case("localhost")
                    || bare
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
}

/// `url` without its query parameter `name`, and that parameter's value
/// (the driver knows no `sslrootcert`).
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(percent_decode(v));
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_string(), value)
    } else {
        (format!("{base}?{}", kept.join("&")), value)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn roots_from(file: &Path) -> anyhow::Result<RootCertStore> {
    let pem = std::fs::read(file)
        .with_context(|| format!("sslrootcert: cannot read {}", file.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("sslrootcert: {} is not PEM", file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("sslrootcert: a certificate in {}", file.display()))?;
    }
    if roots.is_empty() {
        bail!("sslrootcert: no certificate in {}", file.display());
    }
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> Result<SslMode, String> {
        settings(url, "x")
            .map(|(c, _)| c.get_ssl_mode())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn loopback_is_plaintext_and_any_other_host_needs_tls() {
        assert_eq!(
            mode("postgres://nd@127.0.0.1:5432/db"),
            Ok(SslMode::Disable)
        );
        assert_eq!(mode("postgres://nd@localhost/db"), Ok(SslMode::Disable));
        assert_eq!(mode("postgres://nd@[::1]:5432/db"), Ok(SslMode::Disable));
        assert_eq!(
            mode("postgres://nd@%2Frun%2Fpostgresql/db"),
            Ok(SslMode::Disable)
        );
        assert_eq!(
            mode("postgres://nd@127.0.0.1/db?sslmode=require"),
            Ok(SslMode::Require)
        );
        assert_eq!(mode("postgres://nd@db.example/db"), Ok(SslMode::Require));
        assert_eq!(
            mode("postgres://nd@10.0.0.5/db?sslmode=prefer"),
            Ok(SslMode::Require)
        );
        assert_eq!(
            mode("postgres://nd@127.0.0.1,db.example/db"),
            Ok(SslMode::Require)
        );
        let refused = mode("postgres://nd@db.example/db?sslmode=disable").unwrap_err();
        assert!(refused.contains("in clear"), "{refused}");
    }

    #[test]
    fn sslrootcert_is_taken_out_of_the_url_and_read() {
        assert_eq!(
            take_param(
                "postgres://h/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem",
                "sslrootcert"
            ),
            (
                "postgres://h/db?sslmode=require".into(),
                Some("/tmp/ca.pem".into())
            )
        );
        assert_eq!(
            take_param("postgres://h/db?sslrootcert=a.pem", "sslrootcert"),
            ("postgres://h/db".into(), Some("a.pem".into()))
        );
        assert_eq!(
            take_param("postgres://h/db", "sslrootcert"),
            ("postgres://h/db".into(), None)
        );
        let Err(missing) = settings("postgres://db.example/d?sslrootcert=/nonexistent.pem", "x")
        else {
            panic!("a missing sslrootcert file was accepted");
        };
        assert!(
            format!("{missing:#}").contains("cannot read /nonexistent.pem"),
            "{missing:#}"
        );
    }
}
