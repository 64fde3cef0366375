//! Starting `netdisk serve` and knowing when it is ready: shared by the
//! integration tests and the benchmark (`benches/transfer.rs` includes
//! this file).

use std::io::BufRead;
use std::path::Path;
use std::process::Command;

/// Adds `serve` on an ephemeral loopback port over `data` to `command`.
pub fn serve_args<'a>(command: &'a mut Command, data: &Path) -> &'a mut Command {
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
}

/// Reads a server's first stdout line, which says it is ready and where:
/// the address, or the line it printed instead.
pub fn ready(stdout: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    stdout.read_line(&mut line).map_err(|e| e.to_string())?;
    match line.trim().strip_prefix("listening on ") {
        Some(a) => Ok(a.to_string()),
        None => Err(line),
    }
}
