//! One download over one connection (PROTOCOL.md, "Download"), checked
//! against the server's MD5 of the whole file.
//!
//! A fresh download goes into a temporary file beside the target and is
//! renamed over it only once its MD5 matches, so the final name never holds
//! half a file. A resume appends to the existing target after hashing its
//! prefix; if the whole-file MD5 then differs (the local prefix or the
//! server's file changed), the target is cut back to its old length and the
//! file is downloaded once more from the start.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use md5::{Digest, Md5};

use super::output::{clean, human_size, Plain};
use super::progress::{Bar, Progress};
use crate::client::{Client, ClientError};
use crate::commands::get;
use crate::error::ErrorCode;
use crate::hashcopy::{hash_prefix, hashed_copy};
use crate::protocol::md5_hex;

/// How the local target is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Into a temporary file, renamed over the target after the check.
    Fresh,
    /// Appended to the existing target, from its length.
    Resume,
}

/// One file to download.
#[derive(Debug, Clone)]
pub struct GetJob {
    /// The name on the server.
    pub name: String,
    /// Where it goes.
    pub target: PathBuf,
    pub mode: Mode,
}

/// What a download did.
#[derive(Debug)]
pub struct Downloaded {
    pub size: u64,
    /// Bytes kept from the local file, if a resume succeeded.
    pub resumed_at: Option<u64>,
}

/// Downloads `job` over `client`.
///
/// # Errors
/// The server's refusal, a lost connection, a local write error, or an MD5
/// that still differs after downloading from the start.
pub fn download(
    client: &mut Client,
    job: &GetJob,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<Downloaded> {
    if job.mode == Mode::Resume {
        if let Some(done) = resume(client, job, bar, progress)? {
            bar.finish();
            return Ok(done);
        }
    }
    let size = fresh(client, job, bar)?;
    bar.finish();
    Ok(Downloaded {
        size,
        resumed_at: None,
    })
}

/// Continues the target from its length. `None` means "start over".
fn resume(
    client: &mut Client,
    job: &GetJob,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<Option<Downloaded>> {
    let shown = clean(&job.name).into_owned();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&job.target)
        .with_context(|| format!("cannot open {}", show(&job.target)))?;
    let have = file.metadata()?.len();
    let mut hasher = Md5::new();
    hash_prefix(&file, have, &mut hasher)?;
    let answer = match begin(client, &job.name, have) {
        Err(e) if have > 0 && e.code() == Some(ErrorCode::BadRequest) => {
            progress.note(&format!(
                "{shown}: the local file is longer than the server's; downloading it from the start"
            ));
            return Ok(None);
        }
        other => other.map_err(Plain)?,
    };
    progress.note(&format!(
        "{shown}: resuming the download at {} of {}",
        human_size(have),
        human_size(answer.size)
    ));
    // The bar counts what moves now, so that its rate and ETA are true.
    bar.set_total(answer.size - have);
    bar.set(0);
    receive(client, answer.size - have, &mut file, &mut hasher, bar)?;
    if md5_hex(&hasher.finalize()) == answer.md5 {
        file.sync_all()?;
        return Ok(Some(Downloaded {
            size: answer.size,
            resumed_at: Some(have),
        }));
    }
    // Put the local file back as it was before downloading it whole.
    file.set_len(have)?;
    progress.note(&format!(
        "{shown}: MD5 mismatch after resuming (the local part or the server's file \
         changed); downloading it again from the start"
    ));
    Ok(None)
}

/// Downloads the whole file into a temporary file and renames it over the
/// target once the MD5 matches. Returns the size.
fn fresh(client: &mut Client, job: &GetJob, bar: &mut Bar) -> anyhow::Result<u64> {
    let dir = match job.target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".netdisk-")
        .suffix(".part")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", show(dir)))?;
    let answer = begin(client, &job.name, 0).map_err(Plain)?;
    bar.set_total(answer.size);
    bar.set(0);
    let mut hasher = Md5::new();
    receive(client, answer.size, tmp.as_file_mut(), &mut hasher, bar)?;
    let md5 = md5_hex(&hasher.finalize());
    if md5 != answer.md5 {
        bail!(
            "MD5 mismatch: the server says {} but {md5} arrived; nothing was saved",
            answer.md5
        );
    }
    let file = tmp.as_file();
    file.sync_all()?;
    // Temporary files are private (0600); a download is an ordinary file.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(&job.target)
        .map_err(|e| anyhow!("cannot save {}: {}", show(&job.target), e.error))?;
    Ok(answer.size)
}

/// `get` steps 1–2, refusing a reply about another file.
fn begin(client: &mut Client, name: &str, offset: u64) -> Result<get::Answer, ClientError> {
    let answer = client.get_begin(name, offset)?;
    if answer.name != name {
        return Err(ClientError::Protocol(format!(
            "asked for {:?}, got {:?}",
            clean(name),
            clean(&answer.name)
        )));
    }
    Ok(answer)
}

/// Reads `len` body bytes into `out`, hashing them on a second thread
/// and flushing `out` in the background as it grows.
fn receive(
    client: &mut Client,
    len: u64,
    out: &mut File,
    hasher: &mut Md5,
    bar: &mut Bar,
) -> anyhow::Result<()> {
    let out: &File = out;
    hashed_copy(hasher, len, Some(out), |chunk| {
        client.read_body_exact(chunk).map_err(Plain)?;
        let mut w = out;
        w.write_all(chunk).context("cannot write the download")?;
        bar.add(chunk.len() as u64);
        Ok::<_, anyhow::Error>(())
    })
}

/// The local path for server file `name` inside `dir`. The name is checked
/// against PROTOCOL.md's rules first, so no name, whoever sent it, can
/// point outside `dir` (`..`, `/`, `\`, a leading `.`, control characters).
///
/// # Errors
/// If the name breaks the rules.
pub fn local_target(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    crate::names::check_file_name(name)
        .map_err(|e| anyhow!("refusing the file name {:?}: {e}", clean(name)))?;
    Ok(dir.join(name))
}

fn show(p: &Path) -> String {
    clean(&p.display().to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_the_folder_are_refused() {
        let dir = Path::new("/tmp/downloads");
        for name in [
            "../x",
            "..",
            ".",
            "/etc/passwd",
            "a/../../b",
            "sub/file",
            "..\\x",
            ".bashrc",
            "",
            "nul\0",
            "esc\x1b]0;t\x07",
        ] {
            assert!(local_target(dir, name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn ordinary_names_stay_inside() {
        let dir = Path::new("/tmp/downloads");
        for name in ["a.bin", "报告.pdf", "😀", "-rf", "my file"] {
            let p = local_target(dir, name).unwrap();
            assert_eq!(p.parent(), Some(dir));
            assert_eq!(p.file_name().and_then(|n| n.to_str()), Some(name));
        }
    }
}
