//! Name rules of PROTOCOL.md ("Names"): user names, file names, passwords.
//!
//! Every name a client sends passes through here before it touches the
//! filesystem; the storage layer then only ever joins a checked file name
//! to a user's own folder.

use unicode_normalization::UnicodeNormalization;

use crate::error::Error;

/// Longest user name, in characters.
pub const MAX_USER_CHARS: usize = 32;
/// Longest file name, in UTF-8 bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Most components in a path (PROTOCOL.md, "Names").
pub const MAX_PATH_COMPONENTS: usize = 32;
/// Longest path, in UTF-8 bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Shortest and longest password, in bytes.
pub const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=1024;

/// Checks a user name and returns its canonical form: NFC, then full
/// lowercase. Two names with the same canonical form are the same user.
///
/// The length limit counts characters of the NFC form, so a name typed with
/// combining accents is not penalised for its decomposition.
///
/// # Errors
/// [`Error::InvalidName`] if the name breaks the rules.
pub fn canonical_user(name: &str) -> Result<String, Error> {
    let nfc: String = name.nfc().collect();
    let count = nfc.chars().count();
    if count == 0 {
        return Err(Error::InvalidName("user name is empty"));
    }
    if count > MAX_USER_CHARS {
        return Err(Error::InvalidName("user name is longer than 32 characters"));
    }
    if nfc.starts_with(['.', '-']) {
        return Err(Error::InvalidName("user name starts with '.' or '-'"));
    }
    if !nfc
        .chars()
        .all(|c| c.is_alphabetic() || c.is_numeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(Error::InvalidName(
            "user names use letters, digits, '_', '.' and '-' only",
        ));
    }
    Ok(nfc.to_lowercase())
}

/// Checks a file name against PROTOCOL.md's rules.
///
/// # Errors
/// [`Error::InvalidName`] with the rule that was broken.
pub fn check_file_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::InvalidName("file name is empty"));
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(Error::InvalidName("file name is longer than 255 bytes"));
    }
    if name.starts_with('.') {
        // Also covers "." and "..".
        return Err(Error::InvalidName("file name starts with '.'"));
    }
    if name.contains(['/', '\\']) {
        return Err(Error::InvalidName("file name contains '/' or '\\'"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidName("file name contains a control character"));
    }
    Ok(())
}

/// Checks a path against PROTOCOL.md's rules: 1 to 32 components joined by
/// single `/`s, at most 1024 bytes, each component a valid file name. A
/// path that passes has no empty, `.` or `..` component and no leading or
/// trailing `/`, so joining it to a folder never leaves that folder.
///
/// # Errors
/// [`Error::InvalidName`] with the rule that was broken.
pub fn check_path(path: &str) -> Result<(), Error> {
    if path.len() > MAX_PATH_BYTES {
        return Err(Error::InvalidName("path is longer than 1024 bytes"));
    }
    if path.starts_with('/') || path.ends_with('/') {
        return Err(Error::InvalidName("path starts or ends with '/'"));
    }
    let mut count = 0;
    for part in path.split('/') {
        count += 1;
        if count > MAX_PATH_COMPONENTS {
            return Err(Error::InvalidName("path has more than 32 components"));
        }
        if part.is_empty() {
            return Err(Error::InvalidName("path has an empty component ('//')"));
        }
        check_file_name(part)?;
    }
    Ok(())
}

/// Checks an optional folder path: absent or `""` is the root.
///
/// # Errors
/// [`Error::InvalidName`] as [`check_path`].
pub fn check_folder(path: Option<&str>) -> Result<&str, Error> {
    match path {
        None | Some("") => Ok(""),
        Some(p) => check_path(p).map(|()| p),
    }
}

/// Checks a password's length.
///
/// # Errors
/// [`Error::WeakPassword`] outside 8–1024 bytes.
pub fn check_password(password: &str) -> Result<(), Error> {
    if PASSWORD_BYTES.contains(&password.len()) {
        Ok(())
    } else {
        Err(Error::WeakPassword)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_file_names_are_rejected() {
        let long = "a".repeat(256);
        let bad = [
            "",
            ".",
            "..",
            ".hidden",
            "../etc/passwd",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "..\\x",
            "nul\0byte",
            "new\nline",
            "tab\tname",
            "del\u{7f}",
            "c1\u{85}",
            "esc\u{1b}[31m",
            &long,
        ];
        for name in bad {
            assert!(check_file_name(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn ordinary_and_unicode_file_names_pass() {
        let max = "é".repeat(127) + "a"; // 255 bytes
        assert_eq!(max.len(), 255);
        for name in [
            "a",
            "报告.pdf",
            "my file (1).txt",
            "😀.png",
            "-dash",
            "users.xlsx",
            &max,
        ] {
            assert!(check_file_name(name).is_ok(), "{name:?} rejected");
        }
    }

    #[test]
    fn paths_follow_the_rules() {
        let comp = "é".repeat(127) + "a"; // 255 bytes
        let deep = vec!["d"; 32].join("/");
        let long = vec!["x".repeat(100); 10].join("/") + "/" + &"y".repeat(14); // 1024
        assert_eq!(long.len(), 1024);
        for p in ["a", "a/b", "报告/2024/😀.png", &deep, &long, &comp] {
            assert!(check_path(p).is_ok(), "{p:?} rejected");
        }
        let too_deep = vec!["d"; 33].join("/");
        let too_long = long.clone() + "z";
        let big_comp = "a/".to_string() + &"b".repeat(256);
        for p in [
            "", "/", "/a", "a/", "a//b", "a/./b", "a/../b", ".a/b", "a/.b", "..", "a/b\\c",
            "a/\u{0}", &too_deep, &too_long, &big_comp,
        ] {
            assert!(check_path(p).is_err(), "{p:?} accepted");
        }
        assert_eq!(check_folder(None).unwrap(), "");
        assert_eq!(check_folder(Some("")).unwrap(), "");
        assert!(check_folder(Some("a/")).is_err());
    }

    #[test]
    fn user_names_fold_case_and_normalisation() {
        assert_eq!(canonical_user("Alice").unwrap(), "alice");
        // "é" precomposed and decomposed are one user.
        assert_eq!(
            canonical_user("Jos\u{e9}").unwrap(),
            canonical_user("JOSE\u{301}").unwrap()
        );
        assert_eq!(canonical_user("用户_1.x-y").unwrap(), "用户_1.x-y");
        assert_eq!(canonical_user(&"ä".repeat(32)).unwrap().chars().count(), 32);
    }

    #[test]
    fn bad_user_names_are_rejected() {
        let long = "a".repeat(33);
        for name in ["", ".a", "-a", "a b", "a/b", "a\0", "a@b", "😀", &long] {
            assert!(canonical_user(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn password_lengths() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"x".repeat(1024)).is_ok());
        assert!(check_password(&"x".repeat(1025)).is_err());
    }
}
