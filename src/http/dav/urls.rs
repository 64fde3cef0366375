//! URLs and paths: what a request URL or a header's URL names in the
//! user's tree, and the URL of a path.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{is_dav, refuse, Dav, Result};
use crate::error::Error;
use crate::http::api::paths;

/// The URL of `path` (a folder's ends in `/`), each component encoded.
pub(super) fn href(path: &str, folder: bool) -> String {
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut s = String::from("/dav/");
    for (i, part) in path.split('/').filter(|p| !p.is_empty()).enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.extend(utf8_percent_encode(part, COMPONENT));
    }
    if folder && !path.is_empty() {
        s.push('/');
    }
    s
}

/// The path a URL path names: `/dav/a/b` and `/dav/a/b/` are `a/b`,
/// `/dav` and `/dav/` the root.
///
/// # Errors
/// `INVALID_NAME` for a path outside the rules (`..`, `%2F`, ...), as the
/// page's URLs ([`paths::decode_path`]).
pub(super) fn decode(url_path: &str) -> std::result::Result<String, Error> {
    let tail = url_path
        .strip_prefix("/dav")
        .ok_or(Error::InvalidName("outside /dav/"))?;
    if tail.is_empty() || tail == "/" {
        return Ok(String::new());
    }
    let tail = tail
        .strip_prefix('/')
        .ok_or(Error::InvalidName("outside /dav/"))?;
    paths::decode_path(tail.strip_suffix('/').unwrap_or(tail))
}

/// The path a URL in a header names (`Destination`, an `If` tag): an
/// absolute URL of this host or an absolute path, under `/dav/`.
///
/// # Errors
/// `502` for another host, `403` for anything outside `/dav/` or outside
/// the path rules.
pub(super) fn url_path(d: &Dav<'_>, value: &str) -> Result<String> {
    let value = value.trim();
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    let path = match rest {
        Some(r) => {
            let (authority, path) = r.split_at(r.find('/').unwrap_or(r.len()));
            let host = d.req.header("host").unwrap_or("");
            if !authority.eq_ignore_ascii_case(host) {
                return Err(refuse(502, "the destination is on another server"));
            }
            path
        }
        None => value,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    if !is_dav(path) {
        return Err(refuse(403, "the destination is outside /dav/"));
    }
    decode(path).map_err(|e| refuse(403, &e.public_message()))
}

/// The parent folder of `path` (`""` for the root's children).
pub(super) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_decode_once_and_encode_back() {
        assert_eq!(decode("/dav").unwrap(), "");
        assert_eq!(decode("/dav/").unwrap(), "");
        assert_eq!(decode("/dav/a/b%20c/").unwrap(), "a/b c");
        assert_eq!(decode("/dav/%E6%8A%A5").unwrap(), "报");
        assert!(decode("/dav/a%2Fb").is_err());
        assert!(decode("/dav/%2e%2e/x").is_err());
        assert!(decode("/dav/../x").is_err());
        assert!(decode("/dav//x").is_err());
        assert!(decode("/davx").is_err());
        assert_eq!(href("", true), "/dav/");
        assert_eq!(href("a b/报&%", true), "/dav/a%20b/%E6%8A%A5%26%25/");
        assert_eq!(href("x.txt", false), "/dav/x.txt");
        assert_eq!(decode(&href("a b/报&%", true)).unwrap(), "a b/报&%");
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
    }
}
