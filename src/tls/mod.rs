//! TLS for both ends (rustls with the *ring* provider; no OpenSSL).
//!
//! - [`server`]: the server's certificate (made on first start, or an
//!   admin's own chain) and its rustls configuration;
//! - [`client`]: trust on first use: pinned SPKI fingerprints in a
//!   `known_servers` file, or a certificate the system's roots vouch for.
//!
//! A fingerprint is `sha256:` and the 64 lowercase hex digits of the
//! SHA-256 of a certificate's SubjectPublicKeyInfo (PROTOCOL.md,
//! "Transport"): it survives a renewal that keeps the key.

pub mod client;
pub mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;

/// The ALPN name of protocol v1 (PROTOCOL.md, "Transport").
pub const ALPN_NETDISK: &[u8] = b"netdisk/1";

/// The crypto provider both ends use.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SPKI fingerprint of a DER certificate, `sha256:<64 hex>`.
///
/// # Errors
/// If the certificate cannot be parsed.
pub fn fingerprint(cert: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let spki = parsed.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    Ok(format!("sha256:{}", hex(digest.as_ref())))
}

/// Whether `s` is written as a fingerprint: `sha256:` and 64 lowercase hex digits.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_of_the_key_not_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let one = rcgen::CertificateParams::new(vec!["a".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let two = rcgen::CertificateParams::new(vec!["b".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let fp = fingerprint(one.der()).unwrap();
        assert!(is_fingerprint(&fp), "{fp}");
        assert_eq!(fp, fingerprint(two.der()).unwrap());
        let spki = ring::digest::digest(
            &ring::digest::SHA256,
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        );
        assert_eq!(fp, format!("sha256:{}", hex(spki.as_ref())));
        let other = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        assert_ne!(fp, fingerprint(other.cert.der()).unwrap());
        assert!(!is_fingerprint("sha256:ABC"));
    }
}
