//! The profile: a server and a user name saved by `netdisk login`, so that
//! a new terminal needs no `NETDISK_SERVER` / `NETDISK_USER`.
//!
//! It lives in `$XDG_CONFIG_HOME/netdisk/config.toml` (else
//! `~/.config/netdisk/config.toml`) and holds at most
//!
//! ```toml
//! server = "disk.example.org:9000"
//! user = "alice"
//! ```
//!
//! Never a password. A flag or an environment variable wins over the
//! profile, and the profile over the built-in default server. `netdisk
//! login` ([`login`]) checks an account and writes the profile.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

use super::output::{clean, clean_path};
use super::remote::{Account, Remote};
use super::{confirm, prompt, user_name, Global};

/// The server when neither a flag, the environment nor the profile names one.
pub const DEFAULT_SERVER: &str = "127.0.0.1:9000";

/// What the profile holds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The user name to log in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `$XDG_CONFIG_HOME/netdisk/config.toml`, else under `$HOME/.config`;
/// `None` with neither set. A relative `XDG_CONFIG_HOME` is ignored, as
/// the XDG base directory spec says.
pub fn path() -> Option<PathBuf> {
    base_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("netdisk").join("config.toml"))
}

/// `$VAR` if it is an absolute path, else `$HOME/FALLBACK`.
pub fn base_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    std::env::var_os(var).and_then(absolute).or_else(|| {
        std::env::var_os("HOME")
            .and_then(absolute)
            .map(|h| h.join(fallback))
    })
}

/// The saved profile; empty if there is none.
///
/// # Errors
/// If the file exists but cannot be read or is not a valid profile.
pub fn load() -> anyhow::Result<Profile> {
    match path() {
        Some(p) => load_from(&p),
        None => Ok(Profile::default()),
    }
}

/// The profile at `path`; empty if there is no file.
///
/// # Errors
/// As [`load`].
pub fn load_from(path: &Path) -> anyhow::Result<Profile> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Profile::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", clean_path(path))),
    };
    toml::from_str(&text).map_err(|e| {
        anyhow!(
            "{} is not a valid profile ({}); fix it, or run `netdisk login` to write it again",
            clean_path(path),
            clean(e.message())
        )
    })
}

/// Saves `profile` (replacing the file whole) and returns where.
///
/// # Errors
/// With no place for it (neither `XDG_CONFIG_HOME` nor `HOME`), or if it
/// cannot be written.
pub fn save(profile: &Profile) -> anyhow::Result<PathBuf> {
    let path = path()
        .ok_or_else(|| anyhow!("nowhere to save the profile: set HOME or XDG_CONFIG_HOME"))?;
    save_to(&path, profile)?;
    Ok(path)
}

/// Writes `profile` to `path` through a temp file and a rename, so a
/// crash leaves the old profile or the new one.
///
/// # Errors
/// If the folder or the file cannot be written.
pub fn save_to(path: &Path, profile: &Profile) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", clean_path(dir)))?;
    // Plain strings in a flat table always serialise.
    let text = toml::to_string(profile).context("cannot write the profile")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.toml.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", clean_path(dir)))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", clean_path(path)))?;
    Ok(())
}

/// The options with the profile's server and user filled in where no flag
/// or environment variable gave one.
pub fn resolve(global: &Global, profile: Profile) -> Global {
    let mut g = global.clone();
    g.server = g.server.or(profile.server);
    g.user = g.user.or(profile.user);
    g
}

/// The server address after [`resolve`], else the default.
pub fn server(global: &Global) -> &str {
    global.server.as_deref().unwrap_or(DEFAULT_SERVER)
}

/// `netdisk login`: asks for what is missing, logs in, saves the profile.
///
/// # Errors
/// A failed login (nothing is saved then), or a profile that cannot be
/// written.
pub fn login(global: &Global) -> anyhow::Result<()> {
    // A broken profile is what `login` rewrites: start from what is
    // readable of it.
    let saved = load().unwrap_or_default();
    let known = resolve(global, saved);
    let ask = prompt::interactive();
    let server = match (&global.server, ask) {
        (Some(s), _) => s.clone(),
        (None, true) => prompt::ask("Server", Some(server(&known)))?,
        (None, false) => server(&known).to_string(),
    };
    let user = match (&global.user, ask) {
        (Some(u), _) => u.clone(),
        (None, true) => prompt::ask("User", known.user.as_deref())?,
        (None, false) => user_name(None, &known)?,
    };
    let mut remote = Remote::new(&server, global.security()?, global.quiet);
    let name = prompt::with_password(&user, false, prompt::wrong_password, |password| {
        remote
            .login(Account {
                user: user.clone(),
                password,
            })
            .with_context(|| format!("cannot log in at {}", clean(&server)))
    })?;
    remote.close();
    let path = save(&Profile {
        server: Some(server.clone()),
        user: Some(name.clone()),
    })?;
    confirm(
        &remote,
        &format!(
            "logged in as {} at {}; saved to {} (without the password)",
            clean(&name),
            clean(&server),
            clean(&path.display().to_string())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_never_has_more_than_server_and_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netdisk").join("config.toml");
        assert_eq!(load_from(&path).unwrap(), Profile::default());
        let p = Profile {
            server: Some("disk.example.org:9000".into()),
            user: Some("用户 \"q\"".into()),
        };
        save_to(&path, &p).unwrap();
        assert_eq!(load_from(&path).unwrap(), p);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("server = \"disk.example.org:9000\""),
            "{text}"
        );
        let only_user = Profile {
            server: None,
            user: Some("bob".into()),
        };
        save_to(&path, &only_user).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "user = \"bob\"\n");
    }

    #[test]
    fn unknown_keys_are_ignored_and_bad_files_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "user = \"a\"\ncolor = true\n").unwrap();
        assert_eq!(load_from(&path).unwrap().user.as_deref(), Some("a"));
        fs::write(&path, "user = [1, 2]\n").unwrap();
        let e = load_from(&path).unwrap_err().to_string();
        assert!(e.contains("config.toml is not a valid profile"), "{e}");
    }
}
