//! Paths in URLs: `/api/files/a/b/c.txt` names the path `a/b/c.txt`.
//!
//! The URL's own `/`s separate the components; each component is
//! percent-decoded exactly once and must then be a file name, so an
//! encoded `/` (`%2F`) or `\` never becomes a separator, and `%2E%2E` is
//! the name `..`, which no rule lets through. The joined path then passes
//! [`names::check_path`], the check every protocol command makes.

use percent_encoding::percent_decode_str;

use crate::error::Error;
use crate::names;

/// Decodes the path after an endpoint's prefix (`a/b%20c/d`), checked by
/// PROTOCOL.md's path rules.
///
/// # Errors
/// `INVALID_NAME` for a path that breaks them: empty, a leading, trailing
/// or doubled `/`, a component that does not decode to UTF-8, decodes to
/// one with a `/`, or is not a valid file name.
pub fn decode_path(tail: &str) -> Result<String, Error> {
    if tail.is_empty() {
        return Err(Error::InvalidName("the path is empty"));
    }
    if tail.len() > 3 * names::MAX_PATH_BYTES {
        return Err(Error::InvalidName("path is longer than 1024 bytes"));
    }
    let mut path = String::with_capacity(tail.len());
    for (i, segment) in tail.split('/').enumerate() {
        if i > 0 {
            path.push('/');
        }
        let part = percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| Error::InvalidName("a path component must be UTF-8 once decoded"))?;
        if part.contains('/') {
            return Err(Error::InvalidName(
                "an encoded '/' (%2F) is not a separator: write the path's '/'s as they are",
            ));
        }
        path.push_str(&part);
    }
    names::check_path(&path)?;
    Ok(path)
}

/// The folder a listing URL names: `""` (the root) for nothing or a lone
/// `/`, else a checked path.
///
/// # Errors
/// `INVALID_NAME` as [`decode_path`].
pub fn decode_folder(tail: &str) -> Result<String, Error> {
    if tail.is_empty() {
        return Ok(String::new());
    }
    decode_path(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_decoded_once_between_real_slashes() {
        assert_eq!(decode_path("a/b/c.txt").unwrap(), "a/b/c.txt");
        assert_eq!(
            decode_path("%E6%8A%A5%E5%91%8A/2024/a%20b").unwrap(),
            "报告/2024/a b"
        );
        assert_eq!(decode_path("%2541").unwrap(), "%41");
        assert_eq!(decode_folder("").unwrap(), "");
        assert_eq!(decode_folder("a/b").unwrap(), "a/b");
    }

    #[test]
    fn bad_paths_are_invalid_names() {
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/./b",
            "a/../b",
            "..",
            "%2e%2e",
            "a/%2E%2E/b",
            "a%2Fb",
            "a%2fb",
            "%2Fa",
            "a%5Cb",
            "%FF",
            "a/%00",
            ".a/b",
        ] {
            match decode_path(bad) {
                Err(Error::InvalidName(_)) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let deep = vec!["d"; 33].join("/");
        assert!(decode_path(&deep).is_err());
        let ok = vec!["d"; 32].join("/");
        assert_eq!(decode_path(&ok).unwrap(), ok);
    }
}
