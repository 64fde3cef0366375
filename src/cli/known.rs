//! `netdisk known-servers list|forget HOST:PORT`: the servers whose
//! certificate fingerprint this client pinned (trust on first use), without
//! editing the file by hand. The file is `KnownServers::default_path()`.

use std::io::{self, Write};

use anyhow::Context;
use clap::Subcommand;

use super::exit::{Coded, Exit};
use super::output::clean;
use crate::tls::client::KnownServers;

/// What to do with the pins.
#[derive(Subcommand, Debug)]
pub enum KnownOp {
    /// List the pinned servers and their fingerprints, and the file.
    #[command(after_help = "Example:\n  netdisk known-servers list")]
    List,
    /// Forget a server's pin; the next connection asks again (on a
    /// terminal) or needs --trust. For a server whose certificate changed
    /// on purpose.
    #[command(after_help = "Example:\n  netdisk known-servers forget disk.example.org:9000")]
    Forget {
        /// The server as it was pinned: HOST:PORT.
        #[arg(value_name = "HOST:PORT")]
        server: String,
    },
}

/// Runs `op` on the default file.
///
/// # Errors
/// If the file cannot be read or written; `forget` of a server that is not
/// pinned (exit 4).
pub fn run(op: &KnownOp) -> anyhow::Result<()> {
    let known = KnownServers {
        path: KnownServers::default_path(),
    };
    let shown = known.path.display().to_string();
    let mut out = io::stdout().lock();
    match op {
        KnownOp::List => {
            let pins = known
                .list()
                .with_context(|| format!("cannot read {}", clean(&shown)))?;
            if pins.is_empty() {
                writeln!(out, "no known servers (in {})", clean(&shown))?;
                return Ok(());
            }
            writeln!(out, "known servers (in {}):", clean(&shown))?;
            for (server, fingerprint) in pins {
                writeln!(out, "  {}  {}", clean(&server), clean(&fingerprint))?;
            }
        }
        KnownOp::Forget { server } => {
            let removed = known
                .forget(server)
                .with_context(|| format!("cannot change {}", clean(&shown)))?;
            if removed == 0 {
                return Err(Coded::new(
                    Exit::NotFound,
                    format!(
                        "{} is not a known server (in {})",
                        clean(server),
                        clean(&shown)
                    ),
                )
                .into());
            }
            writeln!(out, "forgot {} (in {})", clean(server), clean(&shown))?;
        }
    }
    Ok(())
}
