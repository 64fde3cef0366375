//! The command-line client (placeholder: one-shot `whoami` only).

use clap::{Args, Subcommand};

use crate::client::Client;
use crate::users::Password;

/// Options every client subcommand accepts.
#[derive(Args, Debug)]
pub struct Global {
    /// Server address.
    #[arg(
        long,
        global = true,
        env = "NETDISK_SERVER",
        default_value = "127.0.0.1:9000"
    )]
    pub server: String,
    /// User name.
    #[arg(long, global = true, env = "NETDISK_USER")]
    pub user: Option<String>,
    /// No progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Client subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Who am I.
    Whoami,
}

/// Runs a client subcommand.
///
/// # Errors
/// Any failure, as a message for the user.
pub fn run(global: &Global, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Whoami => {
            let mut c = Client::connect(&global.server)?;
            let user = global.user.clone().unwrap_or_default();
            let pw = Password::new(std::env::var("NETDISK_PASSWORD").unwrap_or_default());
            c.login(&user, &pw)?;
            let w = c.whoami()?;
            println!("{} {} {}", w.user, w.files, w.used);
            Ok(())
        }
    }
}
