//! Ctrl-C in the shell: it cancels the transfer in progress, not the shell.
//!
//! The shell on a terminal installs a SIGINT handler ([`install`]) that,
//! while a `put` or `get` runs ([`Transfer`]), only raises a flag; the
//! transfer loops look at it between chunks ([`check`]) and stop with
//! [`Cancelled`], keeping what they moved for a later resume. Outside a
//! transfer the signal ends the client as it would without the handler
//! (at the prompt the line editor reads Ctrl-C as a key, so it never gets
//! here). One-shot commands install nothing: Ctrl-C ends them as before.
//!
//! The handler also gets SIGTERM and SIGHUP (ctrlc's `termination`
//! feature, which the server's shutdown needs, cannot tell them apart):
//! during a transfer they cancel it like Ctrl-C, otherwise they end the
//! shell. A transfer stalled inside a read notices the flag when the next
//! bytes arrive or the read times out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::Context;

/// Exit status of a process ended by SIGINT, as shells report it.
const SIGINT_EXIT: i32 = 130;

/// A transfer is running and may be cancelled.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Ctrl-C was pressed during the transfer.
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The command line of the transfer, as typed: what to run again.
static TYPED: Mutex<String> = Mutex::new(String::new());

/// Installs the handler (once per process).
///
/// # Errors
/// If a handler cannot be installed.
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if ACTIVE.load(Ordering::SeqCst) {
            REQUESTED.store(true, Ordering::SeqCst);
            // Says at once that the key was seen; the transfer stops at its
            // next chunk.
            eprintln!("\ncancelling the transfer…");
        } else {
            std::process::exit(SIGINT_EXIT);
        }
    })
    .context("cannot install the Ctrl-C handler")
}

/// While alive, Ctrl-C cancels instead of ending the process.
pub struct Transfer(());

impl Transfer {
    /// Starts a cancellable transfer, typed as `line`.
    pub fn begin(line: &str) -> Transfer {
        *TYPED.lock().unwrap_or_else(|p| p.into_inner()) = line.trim().to_string();
        REQUESTED.store(false, Ordering::SeqCst);
        ACTIVE.store(true, Ordering::SeqCst);
        Transfer(())
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        ACTIVE.store(false, Ordering::SeqCst);
        REQUESTED.store(false, Ordering::SeqCst);
        TYPED.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A transfer stopped by Ctrl-C; says what was kept for a resume.
#[derive(Debug, thiserror::Error)]
#[error("cancelled; {kept}")]
pub struct Cancelled {
    /// What is left for the next `put` or `get` to continue.
    pub kept: String,
}

/// `Err` once Ctrl-C was pressed during the current transfer.
///
/// # Errors
/// [`Cancelled`], to be given its `kept` by the caller that knows it.
pub fn check() -> Result<(), Cancelled> {
    if REQUESTED.load(Ordering::SeqCst) {
        return Err(Cancelled {
            kept: String::new(),
        });
    }
    Ok(())
}

/// The command line of the transfer in progress as typed, cleaned for
/// the terminal; `None` outside a cancellable one.
pub fn typed() -> Option<String> {
    let line = TYPED.lock().unwrap_or_else(|p| p.into_inner());
    (!line.is_empty()).then(|| super::output::clean(&line).into_owned())
}

/// Whether `e` is a cancellation.
pub fn is_cancelled(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Cancelled>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_lives_as_long_as_the_transfer() {
        assert!(check().is_ok());
        assert_eq!(typed(), None);
        let t = Transfer::begin(" get a -o d\n");
        assert_eq!(typed().as_deref(), Some("get a -o d"));
        REQUESTED.store(true, Ordering::SeqCst);
        assert!(check().is_err());
        drop(t);
        assert!(check().is_ok(), "a new command starts uncancelled");
        assert_eq!(typed(), None);
        let e = anyhow::Error::new(Cancelled { kept: "x".into() }).context("get a");
        assert!(is_cancelled(&e));
        assert!(!is_cancelled(&anyhow::anyhow!("other")));
    }
}
