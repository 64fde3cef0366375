//! File bytes in an S3-compatible object store (`serve --blobs
//! s3://BUCKET[/PREFIX]`), under the same 32-hex keys as [`super::blobs`]:
//! object `PREFIX/KEY`.
//!
//! Requests are signed by `rusty-s3` (SigV4 in the query string, so a
//! retried request is signed anew) and sent by `ureq` on blocking sockets:
//! connect and every read and write are bounded ([`S3Config::io_timeout`]),
//! streamed bodies included, so a hung store fails a worker's request
//! instead of holding it. Passing faults are retried ([`Backoff`]); errors
//! are [`Error::Internal`] naming the operation, the key, the status and
//! the store, never a credential or a signed URL. Multipart uploads are
//! driven by the caller, who keeps the part list itself.

mod body;
mod config;
#[cfg(test)]
mod fault_tests;
mod multipart;
mod request;
mod retry;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::error::Error;
use retry::Attempt;

pub use config::{S3Config, DEFAULT_REGION, IO_TIMEOUT};
pub use retry::Backoff;

/// How long a signed request stays valid: enough for the slowest send.
const SIGNED_FOR: Duration = Duration::from_secs(60 * 60);

/// A streamed object body.
pub type Body = Box<dyn Read + Send + Sync>;

/// One bucket (and prefix) of a store; cheap to share in an `Arc`.
#[derive(Clone)]
pub struct S3 {
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    agent: ureq::Agent,
    backoff: Backoff,
    place: String,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3({}, prefix {:?})", self.place, self.prefix)
    }
}

impl S3 {
    /// A client of the store, once its bucket answers (HeadBucket).
    ///
    /// # Errors
    /// [`Error::Internal`] naming the endpoint and bucket if the store is
    /// unreachable, refuses the credentials, or has no such bucket.
    pub fn open(config: S3Config) -> Result<S3, Error> {
        let place = config.place();
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            config.endpoint.clone(),
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| Error::Internal(format!("S3: {place}: {e}")))?;
        let credentials = match config.session_token {
            Some(token) => Credentials::new_with_token(config.access_key, config.secret, token),
            None => Credentials::new(config.access_key, config.secret),
        };
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("S3: TLS: {e}")))?
            .with_root_certificates(system_roots())
            .with_no_client_auth();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(config.connect_timeout)
            .timeout_read(config.io_timeout)
            .timeout_write(config.io_timeout)
            .redirects(0)
            .user_agent(concat!("netdisk/", env!("CARGO_PKG_VERSION")))
            .tls_config(Arc::new(tls))
            .build();
        let s3 = S3 {
            bucket,
            credentials,
            prefix: config.prefix,
            agent,
            backoff: config.backoff,
            place,
        };
        s3.call(
            "open",
            "",
            None,
            || {
                let url = s3
                    .bucket
                    .head_bucket(Some(&s3.credentials))
                    .sign(SIGNED_FOR);
                s3.agent.request_url("HEAD", &url)
            },
            |status, answer| match status {
                200..=299 => Attempt::Done(()),
                404 => Attempt::Fail(s3.fault("open", "", "404: no such bucket".into())),
                403 => Attempt::Fail(s3.fault(
                    "open",
                    "",
                    "403: access denied (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
                )),
                _ => Attempt::Fail(s3.refused("open", "", status, answer)),
            },
        )?;
        Ok(s3)
    }

    /// The object name of blob `id`: `PREFIX/ID`.
    ///
    /// # Errors
    /// If `id` is not 32 lowercase hex digits.
    pub fn key(&self, id: &str) -> Result<String, Error> {
        let ok = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(Error::Internal(format!("S3: {id:?} is not a blob key")));
        }
        Ok(if self.prefix.is_empty() {
            id.to_string()
        } else {
            format!("{}/{id}", self.prefix)
        })
    }

    /// Stores `bytes` as blob `id` in one request; the store checks them
    /// against `md5_b64` (the base64 `Content-MD5`).
    ///
    /// # Errors
    /// A store fault, or a refusal (`BadDigest` when the bytes do not match).
    pub fn put_object(&self, id: &str, bytes: &[u8], md5_b64: &str) -> Result<(), Error> {
        let key = self.key(id)?;
        self.call(
            "put",
            &key,
            Some(bytes),
            || {
                let mut action = self.bucket.put_object(Some(&self.credentials), &key);
                action.headers_mut().insert("content-md5", md5_b64);
                let url = action.sign(SIGNED_FOR);
                self.agent
                    .request_url("PUT", &url)
                    .set("Content-MD5", md5_b64)
            },
            |status, answer| self.expect_2xx("put", &key, status, answer),
        )
    }

    /// Blob `id`'s bytes from `offset` on, streamed as they arrive (each
    /// read bounded by the I/O timeout); nothing at or past its end. A
    /// body cut short (a reset, an early close) is asked for again from
    /// where it stopped, of the same object (`If-Match` its ETag), within
    /// the retry bound; a read that times out fails at once.
    ///
    /// # Errors
    /// [`Error::NotFound`] for no such blob; a store fault or refusal.
    pub fn get_range(&self, id: &str, offset: u64) -> Result<Body, Error> {
        let key = self.key(id)?;
        let (body, etag) = self.get_from(&key, offset, None)?;
        Ok(Box::new(body::Resuming::new(
            self.clone(),
            key,
            offset,
            etag,
            body,
        )))
    }

    /// Blob `id`'s size in bytes.
    ///
    /// # Errors
    /// [`Error::NotFound`] for no such blob; a store fault or refusal.
    pub fn head(&self, id: &str) -> Result<u64, Error> {
        let key = self.key(id)?;
        self.call(
            "head",
            &key,
            None,
            || {
                let url = self
                    .bucket
                    .head_object(Some(&self.credentials), &key)
                    .sign(SIGNED_FOR);
                self.agent.request_url("HEAD", &url)
            },
            |status, answer| match status {
                200..=299 => match answer.header("content-length").and_then(|l| l.parse().ok()) {
                    Some(size) => Attempt::Done(size),
                    None => Attempt::Fail(self.fault("head", &key, "no Content-Length".into())),
                },
                404 => Attempt::Fail(Error::NotFound),
                _ => Attempt::Fail(self.refused("head", &key, status, answer)),
            },
        )
    }

    /// Removes blob `id`; one that is not there is fine.
    ///
    /// # Errors
    /// A store fault or refusal.
    pub fn delete_object(&self, id: &str) -> Result<(), Error> {
        let key = self.key(id)?;
        self.call(
            "delete",
            &key,
            None,
            || {
                let url = self
                    .bucket
                    .delete_object(Some(&self.credentials), &key)
                    .sign(SIGNED_FOR);
                self.agent.request_url("DELETE", &url)
            },
            |status, answer| match status {
                200..=299 | 404 => Attempt::Done(()),
                _ => Attempt::Fail(self.refused("delete", &key, status, answer)),
            },
        )
    }
}

fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}
