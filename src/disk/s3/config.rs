//! Where the store is: `--blobs s3://BUCKET[/PREFIX]` and the usual AWS_*
//! variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`).

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context};
use url::Url;

use super::Backoff;

/// The region when `AWS_REGION` (and `AWS_DEFAULT_REGION`) is unset.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How long one read or one write of a request may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A store's place, credentials and request bounds. Its `Debug` leaves the
/// secret out.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Keys are `PREFIX/ID`; empty for none (no slash at either end).
    pub prefix: String,
    /// `AWS_ENDPOINT_URL`, or AWS's own endpoint for the region.
    pub endpoint: Url,
    /// `host/bucket/key` rather than `bucket.host/key`: so whenever an
    /// endpoint is given (MinIO, Ceph, moto...).
    pub path_style: bool,
    pub region: String,
    pub access_key: String,
    pub(super) secret: String,
    pub(super) session_token: Option<String>,
    /// Bound of a connection's setup.
    pub connect_timeout: Duration,
    /// Bound of each socket read or write, response bodies included: a
    /// store that stops answering mid-stream fails the read.
    pub io_timeout: Duration,
    pub backoff: Backoff,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint.as_str())
            .field("path_style", &self.path_style)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret", &"<hidden>")
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// The store named by `url` (`s3://BUCKET[/PREFIX]`), with the endpoint
    /// and credentials of the environment.
    ///
    /// # Errors
    /// A malformed URL or endpoint, or missing credentials.
    pub fn from_env(url: &str) -> anyhow::Result<S3Config> {
        S3Config::from_vars(url, |name| std::env::var(name).ok())
    }

    /// [`S3Config::from_env`] with the variables looked up by `var`.
    ///
    /// # Errors
    /// As [`S3Config::from_env`].
    pub fn from_vars(url: &str, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<S3Config> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let (bucket, prefix) = parse_url(url)?;
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        if !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("AWS_REGION {region:?} is not a region name");
        }
        let (endpoint, path_style) = match var("AWS_ENDPOINT_URL") {
            Some(e) => (parse_endpoint(e.trim())?, true),
            None => {
                let aws = format!("https://s3.{region}.amazonaws.com");
                // A dotted name breaks the wildcard certificate of
                // BUCKET.s3.REGION.amazonaws.com.
                (
                    Url::parse(&aws).context("AWS_REGION")?,
                    bucket.contains('.'),
                )
            }
        };
        let Some(access_key) = var("AWS_ACCESS_KEY_ID") else {
            bail!("--blobs {url}: AWS_ACCESS_KEY_ID is not set");
        };
        let Some(secret) = var("AWS_SECRET_ACCESS_KEY") else {
            bail!("--blobs {url}: AWS_SECRET_ACCESS_KEY is not set");
        };
        Ok(S3Config {
            bucket,
            prefix,
            endpoint,
            path_style,
            region,
            access_key: access_key.trim().to_string(),
            secret: secret.trim().to_string(),
            session_token: var("AWS_SESSION_TOKEN").map(|t| t.trim().to_string()),
            connect_timeout: Duration::from_secs(10),
            io_timeout: IO_TIMEOUT,
            backoff: Backoff::default(),
        })
    }

    /// The store, for messages: `bucket B at ENDPOINT`.
    pub fn place(&self) -> String {
        format!("bucket {} at {}", self.bucket, self.endpoint)
    }
}

/// `s3://BUCKET[/PREFIX]` → (bucket, prefix without slashes at its ends).
fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = url.strip_prefix("s3://") else {
        bail!("--blobs {url:?}: expected s3://BUCKET[/PREFIX]");
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let name_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !name_ok {
        bail!(
            "--blobs {url:?}: {bucket:?} is not a bucket name \
             (3 to 63 lowercase letters, digits, '-' and '.')"
        );
    }
    let prefix = prefix.trim_matches('/');
    let segments_ok = prefix.is_empty()
        || prefix.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '?' | '#' | '\\' | '%'))
        });
    if !segments_ok {
        bail!("--blobs {url:?}: the prefix {prefix:?} is not a plain path");
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

fn parse_endpoint(endpoint: &str) -> anyhow::Result<Url> {
    let url = Url::parse(endpoint)
        .with_context(|| format!("AWS_ENDPOINT_URL {endpoint:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("AWS_ENDPOINT_URL {endpoint:?}: expected http://HOST[:PORT] or https://...");
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        bail!("AWS_ENDPOINT_URL {endpoint:?}: no query or user name in the endpoint");
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
    ];

    #[test]
    fn a_bucket_and_prefix_with_an_endpoint_go_path_style() {
        let mut env = KEYS.to_vec();
        env.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"));
        env.push(("AWS_REGION", "eu-west-3"));
        let c = S3Config::from_vars("s3://disk-1/net/disk/", vars(&env)).unwrap();
        assert_eq!(c.bucket, "disk-1");
        assert_eq!(c.prefix, "net/disk");
        assert_eq!(c.endpoint.as_str(), "http://127.0.0.1:9000/");
        assert!(c.path_style);
        assert_eq!(c.region, "eu-west-3");
        assert_eq!(c.access_key, "AKIDEXAMPLE");
        assert_eq!(c.session_token, None);
        assert_eq!(c.place(), "bucket disk-1 at http://127.0.0.1:9000/");
    }

    #[test]
    fn without_an_endpoint_it_is_aws_in_the_default_region() {
        let c = S3Config::from_vars("s3://disk", vars(&KEYS)).unwrap();
        assert_eq!(c.prefix, "");
        assert_eq!(c.region, DEFAULT_REGION);
        assert_eq!(c.endpoint.as_str(), "https://s3.us-east-1.amazonaws.com/");
        assert!(!c.path_style);
        let dotted = S3Config::from_vars("s3://my.disk", vars(&KEYS)).unwrap();
        assert!(dotted.path_style);
    }

    #[test]
    fn missing_credentials_are_named() {
        let e = S3Config::from_vars("s3://disk", vars(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--blobs s3://disk: AWS_ACCESS_KEY_ID is not set"
        );
        let only_id = [KEYS[0], ("AWS_SECRET_ACCESS_KEY", " ")];
        let e = S3Config::from_vars("s3://disk", vars(&only_id)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--blobs s3://disk: AWS_SECRET_ACCESS_KEY is not set"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "disk",
            "http://disk",
            "s3://",
            "s3://ab",
            "s3://Disk",
            "s3://disk_1",
            "s3://-disk",
            "s3://disk/a//b",
            "s3://disk/a/../b",
            "s3://disk/a?b",
            "s3://disk/a%2fb",
            "s3://disk/a b",
        ] {
            assert!(S3Config::from_vars(url, vars(&KEYS)).is_err(), "{url}");
        }
        for endpoint in ["localhost:9000", "ftp://h", "http://u:p@h", "http://h/?x=1"] {
            let mut env = KEYS.to_vec();
            env.push(("AWS_ENDPOINT_URL", endpoint));
            let e = S3Config::from_vars("s3://disk", vars(&env)).unwrap_err();
            assert!(
                e.to_string().contains("AWS_ENDPOINT_URL"),
                "{endpoint}: {e}"
            );
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = S3Config::from_vars("s3://disk", vars(&KEYS)).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("EXAMPLEKEY"), "{shown}");
    }
}
