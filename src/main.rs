//! The `netdisk` command: `serve` runs the server; every other subcommand
//! is the client (see `netdisk::cli`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use netdisk::cli;
use netdisk::server::{Config, Server};

/// A small self-hosted network disk: file server and client.
#[derive(Parser)]
#[command(name = "netdisk", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: cli::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the file server.
    #[command(after_help = "Example:\n  netdisk serve --addr 0.0.0.0:9000 --data /srv/netdisk")]
    Serve(ServeArgs),
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:9000")]
    addr: String,
    /// Data directory: users.xlsx and every user's files.
    #[arg(long, default_value = "./netdisk-data")]
    data: PathBuf,
    /// Worker threads: the number of connections served at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    workers: u32,
    /// Connections that may wait for a worker; beyond that they get BUSY.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    queue: u32,
    /// Seconds a connection may stay idle, or a transfer make no progress,
    /// before it gets TIMEOUT and is closed.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
    idle_timeout: u64,
    /// Default storage quota per user in bytes (users.xlsx's quota_bytes
    /// column overrides it per user). Unlimited if absent.
    #[arg(long, value_name = "BYTES")]
    quota: Option<u64>,
    /// Seconds a shutdown (SIGINT/SIGTERM) waits for requests in flight.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    grace: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Client(cmd) => cli::run(&cli.global, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // The one mapping from a failure to its documented exit code.
            ExitCode::from(cli::exit::code(&e).status())
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config {
        addr: args.addr,
        data: args.data,
        workers: args.workers as usize,
        queue: args.queue as usize,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        quota: args.quota,
        grace: Duration::from_secs(args.grace),
    };
    let server = Server::bind(config)?;
    let stopper = server.stopper()?;
    ctrlc::set_handler(move || {
        eprintln!("shutting down");
        stopper.stop();
    })
    .context("cannot install the signal handler")?;
    let addr = server.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    drop(out);
    server.run()?;
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
