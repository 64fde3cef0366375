//! Questions for the person at the terminal: the password, a server or
//! user name for `netdisk login`, and what to do with a local file that is
//! in the way.
//!
//! Nothing here ever waits on a stdin that is not a terminal: scripts and
//! tests get a clear error instead of a hang.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};

use super::exit::{Coded, Exit};
use crate::protocol::Password;

/// The environment variable the password is read from.
pub const PASSWORD_ENV: &str = "NETDISK_PASSWORD";

/// Whether questions can be asked: stdin and stderr are both terminals.
pub fn interactive() -> bool {
    io::stdin().is_terminal() && io::stderr().is_terminal()
}

/// The password: `NETDISK_PASSWORD`, else asked without echo on a
/// terminal (twice when `confirm`, for a new account).
///
/// # Errors
/// With neither a variable nor a terminal, if the terminal fails, or if
/// the two answers differ.
pub fn password(user: &str, confirm: bool) -> anyhow::Result<Password> {
    if let Ok(pw) = std::env::var(PASSWORD_ENV) {
        return Ok(Password::new(pw));
    }
    if !io::stdin().is_terminal() {
        return Err(Coded::new(
            Exit::Auth,
            format!("no password: set {PASSWORD_ENV}, or run on a terminal to be asked for it"),
        )
        .into());
    }
    let user = super::output::clean(user);
    let first = rpassword::prompt_password(format!("Password for {user}: "))
        .context("cannot read the password")?;
    if confirm {
        let again = rpassword::prompt_password("Repeat the password: ")
            .context("cannot read the password")?;
        if again != first {
            bail!(MISMATCH);
        }
    }
    Ok(Password::new(first))
}

/// How many times a typed password is asked for before giving up.
pub const TRIES: usize = 3;

/// Runs `attempt` with the password (see [`password`]). Typed on a
/// terminal, it is asked again after a refusal that `again` accepts (a
/// wrong password, a weak one, two answers that differ), up to [`TRIES`]
/// times, saying why first; from the environment, once.
///
/// # Errors
/// As [`password`], or the last refusal.
pub fn with_password<T>(
    user: &str,
    confirm: bool,
    again: impl Fn(&anyhow::Error) -> bool,
    mut attempt: impl FnMut(Password) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let typed = std::env::var_os(PASSWORD_ENV).is_none() && io::stdin().is_terminal();
    let mut tries = 1;
    loop {
        let result = password(user, confirm).and_then(&mut attempt);
        match result {
            Err(e) if typed && tries < TRIES && (again(&e) || is_mismatch(&e)) => {
                let left = TRIES - tries;
                let mut err = io::stderr().lock();
                writeln!(err, "{e:#}; try again ({left} left)")?;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Whether `e` is the server refusing the password as wrong.
pub fn wrong_password(e: &anyhow::Error) -> bool {
    super::exit::refusal(e) == Some(crate::error::ErrorCode::AuthFailed)
}

/// What [`password`] says when the two answers differ.
const MISMATCH: &str = "the two passwords differ";

fn is_mismatch(e: &anyhow::Error) -> bool {
    e.chain().count() == 1 && e.to_string() == MISMATCH
}

/// Asks for one line on the terminal, offering `default` (taken on an
/// empty answer). Only call when [`interactive`].
///
/// # Errors
/// If the terminal cannot be read, at the end of input, or with neither
/// an answer nor a default.
pub fn ask(question: &str, default: Option<&str>) -> anyhow::Result<String> {
    let mut err = io::stderr().lock();
    match default {
        Some(d) => write!(err, "{question} [{}]: ", super::output::clean(d))?,
        None => write!(err, "{question}: ")?,
    }
    err.flush()?;
    let mut answer = String::new();
    if io::stdin().lock().read_line(&mut answer)? == 0 {
        bail!("no answer for {}", question.to_lowercase());
    }
    match (answer.trim(), default) {
        ("", Some(d)) => Ok(d.to_string()),
        ("", None) => bail!("no answer for {}", question.to_lowercase()),
        (a, _) => Ok(a.to_string()),
    }
}

/// What to do with a local file that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Continue it from its length.
    Resume,
    /// Download the whole file again and replace it.
    Overwrite,
    /// Leave it alone and skip this download.
    Cancel,
}

/// Asks what to do with `path` (`have` bytes long). Only call when
/// [`interactive`].
///
/// # Errors
/// If the terminal cannot be read (end of input counts as cancel).
pub fn existing(path: &Path, have: u64) -> anyhow::Result<Existing> {
    let shown = super::output::clean_path(path);
    let size = super::output::human_size(have);
    let mut err = io::stderr().lock();
    loop {
        write!(
            err,
            "{shown} exists ({size}). [r]esume, [s]tart over or [c]ancel? "
        )?;
        err.flush()?;
        let mut answer = String::new();
        if io::stdin().lock().read_line(&mut answer)? == 0 {
            writeln!(err)?;
            return Ok(Existing::Cancel);
        }
        match parse_choice(&answer) {
            Some(choice) => return Ok(choice),
            None => writeln!(err, "please answer r, s or c")?,
        }
    }
}

/// Asks whether to trust a server met for the first time. Only call
/// when [`interactive`].
///
/// # Errors
/// If the terminal cannot be read (end of input counts as no).
pub fn trust(server: &str, fingerprint: &str) -> anyhow::Result<bool> {
    let server = super::output::clean(server);
    let mut err = io::stderr().lock();
    writeln!(
        err,
        "The server at {server} is not known yet. Its certificate's fingerprint is\n  \
         {fingerprint}\nCompare it with the one the server printed at start (or run \
         `netdisk fingerprint` there)."
    )?;
    loop {
        write!(err, "Trust this server and connect? [y/N] ")?;
        err.flush()?;
        let mut answer = String::new();
        if io::stdin().lock().read_line(&mut answer)? == 0 {
            writeln!(err)?;
            return Ok(false);
        }
        match answer.trim().to_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "n" | "no" | "" => return Ok(false),
            _ => writeln!(err, "please answer y or n")?,
        }
    }
}

fn parse_choice(answer: &str) -> Option<Existing> {
    match answer.trim().to_lowercase().as_str() {
        "r" | "resume" => Some(Existing::Resume),
        "s" | "start over" | "o" | "overwrite" => Some(Existing::Overwrite),
        "c" | "cancel" | "n" | "no" | "" => Some(Existing::Cancel),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices() {
        assert_eq!(parse_choice("r\n"), Some(Existing::Resume));
        assert_eq!(parse_choice(" Start over "), Some(Existing::Overwrite));
        assert_eq!(parse_choice("\n"), Some(Existing::Cancel));
        assert_eq!(parse_choice("maybe"), None);
    }
}
