//! Remote paths as the user types them, turned into the paths the
//! protocol takes (PROTOCOL.md, "Names" and "Folders").
//!
//! The shell has a current folder; a path typed there is relative to it
//! unless it starts with `/`. `.` and `..` are resolved here, on the
//! client, and never sent: the server accepts neither. A trailing `/`
//! (what completion leaves after a folder) is allowed. What comes out is
//! checked with [`crate::names::check_path`], so the rules live in one
//! place. The one-shot commands resolve against the root.

use anyhow::anyhow;

use super::output::clean;

/// The root, as a protocol path.
pub const ROOT: &str = "";

/// Resolves `typed` against the folder `cwd` (a checked path, `""` for the
/// root). Returns a checked path, `""` for the root itself.
///
/// # Errors
/// An empty component (`a//b`), a `..` above the root, or a path that
/// breaks PROTOCOL.md's rules, in words that name the typed path.
pub fn resolve(cwd: &str, typed: &str) -> anyhow::Result<String> {
    let shown = || clean(typed).into_owned();
    let (mut parts, rest): (Vec<&str>, &str) = match typed.strip_prefix('/') {
        Some(rest) => (Vec::new(), rest),
        None if cwd.is_empty() => (Vec::new(), typed),
        None => (cwd.split('/').collect(), typed),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if !rest.is_empty() {
        for part in rest.split('/') {
            match part {
                "" => return Err(anyhow!("{}: a path has no empty part ('//')", shown())),
                "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(anyhow!(
                            "{}: '..' goes above the top folder of the disk",
                            shown()
                        ));
                    }
                }
                name => parts.push(name),
            }
        }
    }
    let path = parts.join("/");
    if !path.is_empty() {
        crate::names::check_path(&path).map_err(|e| anyhow!("{}: {e}", shown()))?;
    }
    Ok(path)
}

/// [`resolve`], for commands that need a file or folder, not the root.
///
/// # Errors
/// As [`resolve`], and for the root.
pub fn resolve_entry(cwd: &str, typed: &str, what: &str) -> anyhow::Result<String> {
    let path = resolve(cwd, typed)?;
    if path.is_empty() {
        return Err(anyhow!("{what} the top folder of the disk is not possible"));
    }
    Ok(path)
}

/// `folder/name`, or `name` in the root.
pub fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_string()
    } else if name.is_empty() {
        folder.to_string()
    } else {
        format!("{folder}/{name}")
    }
}

/// The last component of a path (the path itself at the top).
pub fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The folder a path is in (`""` at the top).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(ROOT, |(p, _)| p)
}

/// A path as the user reads it: as the server has it, `/` for the top.
pub fn shown(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        clean(path).into_owned()
    }
}

/// A folder as `pwd` and the prompt show it: from the top, `/a/b`.
pub fn absolute(path: &str) -> String {
    format!("/{}", clean(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_absolute_dot_and_dot_dot() {
        assert_eq!(resolve("", "a/b").unwrap(), "a/b");
        assert_eq!(resolve("", "a/b/").unwrap(), "a/b");
        assert_eq!(resolve("x/y", "a").unwrap(), "x/y/a");
        assert_eq!(resolve("x/y", "/a").unwrap(), "a");
        assert_eq!(resolve("x/y", "..").unwrap(), "x");
        assert_eq!(resolve("x/y", "../..").unwrap(), "");
        assert_eq!(resolve("x/y", "./../z/./w").unwrap(), "x/z/w");
        assert_eq!(resolve("x", "/").unwrap(), "");
        assert_eq!(resolve("x", ".").unwrap(), "x");
        assert_eq!(resolve("", "").unwrap(), "");
        assert_eq!(resolve("报告", "2024/😀.png").unwrap(), "报告/2024/😀.png");
    }

    #[test]
    fn bad_paths_say_what_is_wrong() {
        let err = |cwd: &str, p: &str| format!("{:#}", resolve(cwd, p).unwrap_err());
        assert!(err("", "..").contains("above the top folder"));
        assert!(err("a", "../../b").contains("above the top folder"));
        assert!(err("", "a//b").contains("empty part"));
        assert!(err("", ".hidden/x").contains("starts with '.'"));
        assert!(err("", "a\\b").contains("'\\'"));
        let deep = vec!["d"; 33].join("/");
        assert!(err("", &deep).contains("32 components"));
        let long = "x".repeat(256);
        assert!(err("", &long).contains("255 bytes"));
        assert!(resolve_entry("", "/", "removing").is_err());
        assert_eq!(resolve_entry("a", "b", "removing").unwrap(), "a/b");
    }

    #[test]
    fn joins_and_splits() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", "b"), "a/b");
        assert_eq!(join("a", ""), "a");
        assert_eq!(base("a/b/c"), "c");
        assert_eq!(base("c"), "c");
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("c"), "");
        assert_eq!(shown(""), "/");
        assert_eq!(shown("a/b"), "a/b");
        assert_eq!(absolute(""), "/");
        assert_eq!(absolute("a/b"), "/a/b");
    }
}
