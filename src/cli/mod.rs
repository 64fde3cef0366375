//! The command-line client: what a person types. It speaks only
//! PROTOCOL.md (through [`crate::client`]), so it works against any
//! conforming server.
//!
//! - this file: the options and subcommands (clap), [`run`] for one-shot
//!   commands, and [`execute`], the one code path every command takes, from
//!   the command line or from the shell;
//! - `remote`: the server as the client sees it: its connection, login,
//!   trust on first use, and retries while it is busy;
//! - `pipeline`, `runner`: small files pipelined on one connection, large
//!   ones resumable over several;
//! - `paths`: remote paths as typed (relative to the shell's folder, `.`
//!   and `..`) into the protocol's; `files`: `ls`, `mkdir`, `rm`, `mv`,
//!   `discard`, `cd`, `pwd`;
//! - `transfer`, `upload`, `download`: `put` and `get`, resumable and
//!   MD5-checked, several files in parallel; `folder`: whole folders
//!   (`put -r`, `get -r`);
//! - `progress`: progress bars on stderr, `overall` the line under several;
//!   `prompt`: questions on a terminal;
//! - `output`: tables, sizes, times, plain-word errors, cleaning of names;
//! - `shell`: the interactive session; `editor`: its line editing,
//!   history and completion; `local`: its `lls`, `lcd`, `lpwd`;
//!   `cancel`: Ctrl-C during a transfer in the shell;
//! - `profile`: the saved server and user (`netdisk login`);
//! - `exit`: the exit code of each kind of failure.

mod cancel;
mod download;
mod durable;
mod editor;
pub mod exit;
mod files;
mod folder;
mod known;
mod local;
mod output;
mod overall;
mod paths;
mod pipeline;
mod profile;
mod progress;
mod prompt;
mod remote;
mod runner;
mod shell;
mod transfer;
mod upload;

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};

use crate::error::ErrorCode;
use exit::{Coded, Exit};
use output::clean;
pub use output::{human_size, utc_time};
pub use prompt::password as ask_password;
use remote::{Account, Remote};

/// Options every client subcommand accepts, before or after it.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Server address, HOST:PORT [default: the profile's, else
    /// 127.0.0.1:9000].
    #[arg(
        long,
        global = true,
        display_order = 100,
        value_name = "ADDR",
        env = "NETDISK_SERVER",
        hide_env_values = true
    )]
    pub server: Option<String>,
    /// User name to log in as (default: the profile's). The password comes
    /// from NETDISK_PASSWORD, or is asked for on a terminal.
    #[arg(
        long,
        global = true,
        display_order = 101,
        value_name = "NAME",
        env = "NETDISK_USER",
        hide_env_values = true
    )]
    pub user: Option<String>,
    /// No progress bars, notes or confirmations; errors are still shown.
    #[arg(short, long, global = true, display_order = 102)]
    pub quiet: bool,
    /// Use TLS even to a loopback address (default: TLS for every other
    /// address). NETDISK_TLS=on|off sets the default.
    #[arg(long, global = true, display_order = 103, conflicts_with = "plaintext")]
    pub tls: bool,
    /// Use plaintext even to a remote address (the server must allow it:
    /// passwords then cross the network in clear).
    #[arg(long, global = true, display_order = 104)]
    pub plaintext: bool,
    /// Trust the server whose certificate has this SPKI fingerprint
    /// (sha256:…, as the server prints at start) and pin it in
    /// known_servers. Needed once, without a terminal to ask on.
    #[arg(
        long,
        global = true,
        display_order = 105,
        value_name = "FINGERPRINT",
        env = "NETDISK_TRUST",
        hide_env_values = true
    )]
    pub trust: Option<String>,
}

impl Global {
    /// TLS or not, and whom to trust, from the flags and environment.
    ///
    /// # Errors
    /// A malformed `--trust` or `NETDISK_TLS`.
    pub fn security(&self) -> anyhow::Result<crate::client::Security> {
        let tls = if self.tls {
            Some(true)
        } else if self.plaintext {
            Some(false)
        } else {
            match std::env::var("NETDISK_TLS").ok().as_deref() {
                None | Some("") | Some("auto") => None,
                Some("on" | "1" | "yes" | "true") => Some(true),
                Some("off" | "0" | "no" | "false") => Some(false),
                Some(other) => {
                    return Err(anyhow!(
                        "NETDISK_TLS must be on, off or auto, not {:?}",
                        clean(other)
                    ))
                }
            }
        };
        if let Some(fp) = &self.trust {
            if !crate::tls::is_fingerprint(fp) {
                return Err(anyhow!(
                    "--trust takes a fingerprint like sha256: and 64 lowercase hex digits, \
                     as `netdisk fingerprint` prints on the server"
                ));
            }
        }
        Ok(crate::client::Security {
            tls,
            known: crate::tls::client::KnownServers {
                path: crate::tls::client::KnownServers::default_path(),
            },
            trust: self.trust.clone(),
        })
    }
}

/// Client subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Action(Action),
    /// Run commands interactively over one connection.
    #[command(after_help = SHELL_HELP)]
    Shell,
    /// Check a server, user and password, and save the server and user as
    /// the profile that later commands use (never the password).
    #[command(after_help = LOGIN_HELP)]
    Login,
    /// List or forget the servers whose certificate this client trusts by
    /// its fingerprint (pinned at the first connection).
    #[command(subcommand)]
    KnownServers(known::KnownOp),
}

/// The commands the command line and the shell share.
#[derive(Subcommand, Debug)]
pub enum Action {
    /// Create an account (asks for the password twice on a terminal).
    #[command(after_help = "Example:\n  NETDISK_PASSWORD=s3cret-pw netdisk register alice")]
    Register(AccountArgs),
    /// List a folder: its folders (ending in /), then its files.
    #[command(after_help = "\
Paths on the server are folders and names joined by /, like 报告/2024/q1.pdf;
without PATH, the top folder (in the shell: the current folder).

Examples:
  netdisk ls
  netdisk ls photos/2024
  netdisk ls -r --json")]
    Ls(LsArgs),
    /// Make a folder on the server, and any missing parents.
    #[command(after_help = "Example:\n  netdisk mkdir 报告/2024")]
    Mkdir(MkdirArgs),
    /// Upload files, or whole folders with -r, replacing files of the same
    /// path.
    #[command(after_help = "\
An interrupted upload continues where it stopped the next time the same
file is put. With -r, each folder goes up whole, empty folders too; run
again, it skips the files the server already holds with the same MD5.

Examples:
  netdisk put report.pdf
  netdisk put notes.txt --as 2024/notes.txt
  netdisk put *.jpg --as photos -j 8
  netdisk put -r Camera --as photos/2024")]
    Put(PutArgs),
    /// Download files, or whole folders with -r, and check their MD5.
    #[command(after_help = "\
With -r, the folder is made again under -o DIR with all it holds; an
interrupted download continues, and a file already there with the same MD5
is skipped.

Examples:
  netdisk get report.pdf
  netdisk get 2024/report.pdf -o ~/Desktop/r.pdf
  netdisk get a.jpg photos/b.jpg -o photos/
  netdisk get big.iso --resume
  netdisk get -r photos/2024 -o ~/Pictures")]
    Get(GetArgs),
    /// Delete files, or folders (a full one only with -r).
    #[command(
        after_help = "Examples:\n  netdisk rm old-report.pdf draft.txt\n  netdisk rm -r photos/2019"
    )]
    Rm(RmArgs),
    /// Move or rename a file or folder; into TO if TO is a folder.
    #[command(after_help = "\
Fails if TO is taken by a file. A folder moves with all it holds.

Examples:
  netdisk mv draft.txt final.txt
  netdisk mv final.txt 报告/2024/
  netdisk mv photos/2024 archive/photos-2024")]
    Mv(MvArgs),
    /// Drop an unfinished upload, and the space it holds.
    #[command(after_help = "\
An upload that was interrupted keeps its bytes on the server, so that the
next put of the same file continues; they count against your quota
(whoami shows them as staged) until then.

Example:
  netdisk discard big.iso")]
    Discard(DiscardArgs),
    /// Show who you are, how many files you have, and the space used.
    #[command(after_help = "Example:\n  netdisk whoami")]
    Whoami,
    /// Check the server: round-trip time, version, MESSAGE echoed (no login).
    #[command(after_help = "Examples:\n  netdisk ping\n  netdisk ping hello")]
    Ping(PingArgs),
}

const SHELL_HELP: &str = "\
Commands: register, login, ls, mkdir, put, get, rm, mv, discard, whoami,
ping, cd, pwd, lls, lcd, lpwd, help, quit. They take the same options as the
one-shot commands. Paths on the server are relative to the current folder
(cd, pwd; the prompt shows it) unless they start with /; .. is the folder
above. Lines are split into words like a shell does: quote names with spaces
(\"my file.txt\"). On a terminal: line editing, history (kept in
$XDG_STATE_HOME/netdisk/history), Tab completes commands, paths on the
server through their folders, and local paths; Ctrl-C cancels a transfer
(kept for a later resume) or clears the line, Ctrl-D ends. Reads commands
from stdin, so it can be scripted; then it exits with an error if any
command failed.

Example:
  printf 'mkdir docs\\ncd docs\\nput a.txt\\nls\\n' | netdisk shell --user alice";

const LOGIN_HELP: &str = "\
Asks for what --server, --user, NETDISK_SERVER, NETDISK_USER and the
profile do not say (on a terminal), logs in, and writes server and user to
$XDG_CONFIG_HOME/netdisk/config.toml (else ~/.config/netdisk/config.toml).

Example:
  netdisk login
  netdisk ls";

/// `register [NAME]` and the shell's `login [NAME]`.
#[derive(Args, Debug)]
pub struct AccountArgs {
    /// User name (default: --user or NETDISK_USER).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

/// `ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// The folder to list (default: the top one, or the shell's current).
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
    /// Everything under the folder, names as paths below it.
    #[arg(short, long)]
    pub recursive: bool,
    /// Print JSON for scripts: {folders: [{name, mtime}], files: [{name,
    /// size, mtime, md5}]}.
    #[arg(long)]
    pub json: bool,
}

/// `mkdir`.
#[derive(Args, Debug)]
pub struct MkdirArgs {
    /// The folder to make, like a/b/c.
    #[arg(value_name = "PATH")]
    pub path: String,
}

/// `put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// Local files to upload (with -r: folders too).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Path on the server: for one FILE (or folder) its new path, like
    /// a/b.txt; for several, the folder they go into. Default: their own
    /// names, in the top (or the shell's current) folder.
    #[arg(long = "as", value_name = "PATH")]
    pub as_name: Option<String>,
    /// Upload folders whole: every file and folder under them.
    #[arg(short, long)]
    pub recursive: bool,
    /// How many files go up at once, each over its own connection.
    #[arg(short, long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

/// `get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// Files to download (with -r: a folder).
    #[arg(required = true, value_name = "PATH")]
    pub names: Vec<String>,
    /// Where to save: a file (or an existing folder) for one PATH, a folder
    /// for several or with -r. Default: the current folder.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// If the local file exists, continue it from its length.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// If the local file exists, download it whole and replace it.
    #[arg(long)]
    pub overwrite: bool,
    /// Download folders whole, made again under the -o folder.
    #[arg(short, long)]
    pub recursive: bool,
    /// How many files come down at once, each over its own connection.
    #[arg(short, long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

/// `ping`.
#[derive(Args, Debug)]
pub struct PingArgs {
    /// Text for the server to echo (at most 1024 bytes).
    #[arg(value_name = "MESSAGE")]
    pub message: Option<String>,
}

/// `rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// The files or folders to delete.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Delete folders with all they hold.
    #[arg(short, long)]
    pub recursive: bool,
}

/// `discard`.
#[derive(Args, Debug)]
pub struct DiscardArgs {
    /// The path the unfinished upload was going to have on the server.
    #[arg(value_name = "PATH")]
    pub name: String,
}

/// `mv`.
#[derive(Args, Debug)]
pub struct MvArgs {
    /// The file's or folder's path.
    pub from: String,
    /// Its new path, or a folder to move it into.
    pub to: String,
}

/// Runs a one-shot client subcommand, or the shell.
///
/// # Errors
/// Any failure, as one line for the user.
pub fn run(global: &Global, cmd: Command) -> anyhow::Result<()> {
    match &cmd {
        Command::Login => return profile::login(global),
        Command::KnownServers(op) => return known::run(op),
        _ => {}
    }
    let global = &profile::resolve(global, profile::load()?);
    let mut remote = Remote::new(profile::server(global), global.security()?, global.quiet);
    let action = match cmd {
        Command::Shell => return shell::run(remote, global),
        Command::Login | Command::KnownServers(_) => unreachable!("handled above"),
        Command::Action(action) => action,
    };
    if !matches!(action, Action::Register(_) | Action::Ping(_)) {
        let user = user_name(None, global)?;
        let password = prompt::password(&user, false)?;
        remote.set_account(Account { user, password });
    }
    let result = execute(&mut remote, global, &action);
    remote.close();
    result
}

/// Runs one command against a remote: the one code path of the command line
/// and the shell.
///
/// # Errors
/// Any failure, as one line for the user.
pub(crate) fn execute(remote: &mut Remote, global: &Global, action: &Action) -> anyhow::Result<()> {
    match action {
        Action::Register(a) => {
            let user = user_name(a.name.as_deref(), global)?;
            let weak = |e: &anyhow::Error| exit::refusal(e) == Some(ErrorCode::WeakPassword);
            prompt::with_password(&user, true, weak, |password| {
                let account = Account {
                    user: user.clone(),
                    password,
                };
                remote
                    .register(&account)
                    .with_context(|| format!("cannot register {}", clean(&account.user)))
            })?;
            confirm(remote, &format!("registered {}", clean(&user)))
        }
        Action::Ls(a) => files::ls(remote, a),
        Action::Mkdir(a) => files::mkdir(remote, a),
        Action::Put(a) => transfer::put(remote, a),
        Action::Get(a) => transfer::get(remote, a),
        Action::Rm(a) => files::rm(remote, a),
        Action::Discard(a) => files::discard(remote, a),
        Action::Mv(a) => files::mv(remote, a),
        Action::Whoami => {
            let me = remote.call(|c| c.whoami())?;
            print(&output::whoami_text(&me))
        }
        Action::Ping(a) => {
            let (answer, rtt) = remote.ping(a.message.as_deref())?;
            print(&ping_text(&remote.addr, &answer, rtt))
        }
    }
}

/// What `ping` prints.
fn ping_text(addr: &str, answer: &crate::commands::ping::Answer, rtt: Duration) -> String {
    let mut text = format!(
        "server:  {}\nversion: {}\ntime:    {:.2} ms\n",
        clean(addr),
        clean(&answer.version),
        rtt.as_secs_f64() * 1000.0
    );
    if let Some(m) = &answer.message {
        text.push_str(&format!("message: {}\n", clean(m)));
    }
    text
}

/// The user name: the argument, else `--user` / `NETDISK_USER`.
fn user_name(arg: Option<&str>, global: &Global) -> anyhow::Result<String> {
    arg.or(global.user.as_deref())
        .map(str::to_string)
        .ok_or_else(|| {
            Coded::new(
                Exit::Auth,
                "no user name: pass --user NAME, set NETDISK_USER, or run `netdisk login`",
            )
            .into()
        })
}

/// Writes `text` to stdout. A closed pipe (`netdisk ls | head`) comes back
/// as an `io::Error`, which `main` treats as success.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Prints a confirmation line unless `-q`.
fn confirm(remote: &Remote, text: &str) -> anyhow::Result<()> {
    if remote.quiet {
        return Ok(());
    }
    print(&format!("{text}\n"))
}
