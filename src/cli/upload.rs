//! One upload over one connection (PROTOCOL.md, "Upload").
//!
//! The server says where to continue (`offset` K in its `put` reply). The
//! client hashes the local prefix `[0, K)` and then hashes the bytes
//! `[K, S)` as it sends them, so the file is read once. If a resumed upload
//! ends in `CHECKSUM_MISMATCH` (the server's staged prefix and the local
//! file differ), it is retried once; the server then answers K = 0.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use md5::{Digest, Md5};

use super::cancel::{self, Cancelled};
use super::output::{clean, clean_path, human_size, io_words, Plain};
use super::paths;
use super::progress::{Bar, Progress};
use crate::client::{Client, ClientError};
use crate::error::ErrorCode;
use crate::hashcopy::{hash_prefix, hashed_copy};

/// One file to upload.
#[derive(Debug, Clone)]
pub struct PutJob {
    /// The local file.
    pub path: PathBuf,
    /// Its path on the server (checked with `names::check_path`).
    pub name: String,
}

/// What an upload did.
#[derive(Debug)]
pub struct Uploaded {
    pub size: u64,
    /// Where the upload continued, if the server held part of it.
    pub resumed_at: Option<u64>,
}

/// Uploads `job` over `client`, replacing any file of that name.
///
/// # Errors
/// Local read errors, the server's refusal, a second checksum mismatch, or
/// a lost connection (then the connection is not reusable).
pub fn upload(
    client: &mut Client,
    job: &PutJob,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<Uploaded> {
    let shown = clean(&job.name).into_owned();
    let mut file = open(&job.path)?;
    let size = file.metadata()?.len();
    let (mut offset, mut verdict) = attempt(client, &mut file, size, job, bar, progress)?;
    if offset > 0
        && verdict
            .as_ref()
            .is_err_and(|e| e.code() == Some(ErrorCode::ChecksumMismatch))
    {
        progress.note(&format!(
            "{shown}: the part the server kept does not match the local file; \
             uploading it again from the start"
        ));
        (offset, verdict) = attempt(client, &mut file, size, job, bar, progress)?;
    }
    verdict.map_err(Plain)?;
    bar.finish();
    Ok(Uploaded {
        size,
        resumed_at: (offset > 0).then_some(offset),
    })
}

fn open(path: &Path) -> anyhow::Result<File> {
    let shown = clean_path(path);
    let file = File::open(path).map_err(|e| anyhow!("{shown}: {}", io_words(&e)))?;
    if !file.metadata()?.is_file() {
        bail!("{shown}: not a regular file");
    }
    Ok(file)
}

/// One `put` exchange: steps 1 to 5. Returns the server's offset and its
/// verdict; errors before the verdict are returned as `Err`.
fn attempt(
    client: &mut Client,
    file: &mut File,
    size: u64,
    job: &PutJob,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<(u64, Result<(), ClientError>)> {
    let offset = client.put_begin(&job.name, size).map_err(Plain)?;
    let mut hasher = Md5::new();
    if offset > 0 && offset == size {
        progress.note(&format!(
            "{}: the server already holds all {} of the upload; checking its MD5",
            clean(&job.name),
            human_size(size)
        ));
    } else if offset > 0 {
        progress.note(&format!(
            "{}: resuming the upload at {} of {}",
            clean(&job.name),
            human_size(offset),
            human_size(size)
        ));
        hash_prefix(file, offset, &mut hasher).map_err(|e| changed(job, e))?;
    }
    file.seek(SeekFrom::Start(offset))?;
    // The whole file, the staged part filled; the rate counts what moves.
    bar.resume(size, offset);
    let mut sent = offset;
    hashed_copy(&mut hasher, size - offset, None, |chunk| {
        if cancel::check().is_err() {
            return Err(cancelled(job, sent, size));
        }
        file.read_exact(chunk).map_err(|e| changed(job, e))?;
        client.write_body(chunk).map_err(Plain)?;
        bar.add(chunk.len() as u64);
        sent += chunk.len() as u64;
        Ok::<_, anyhow::Error>(())
    })?;
    let md5 = crate::protocol::md5_hex(hasher.finalize());
    let verdict = client.put_end(&md5).and_then(|answer| {
        if answer.md5 == md5 && answer.size == size {
            Ok(())
        } else {
            Err(ClientError::Protocol(
                "put reply does not match the upload".into(),
            ))
        }
    });
    Ok((offset, verdict))
}

/// Ctrl-C after `sent` of `size` bytes: the server keeps what reached it
/// (PROTOCOL.md: a connection closed mid-body leaves the upload staged).
fn cancelled(job: &PutJob, sent: u64, size: u64) -> anyhow::Error {
    let path = clean_path(&job.path);
    let again = cancel::typed().map_or("the same `put`".to_string(), |t| format!("`{t}`"));
    Cancelled {
        kept: format!(
            "{} of {} of {path} sent; the server keeps what arrived, and {again} continues it",
            human_size(sent),
            human_size(size)
        ),
    }
    .into()
}

fn changed(job: &PutJob, e: io::Error) -> anyhow::Error {
    let shown = clean_path(&job.path);
    if e.kind() == io::ErrorKind::UnexpectedEof {
        anyhow!("{shown} shrank while it was being uploaded")
    } else {
        anyhow::Error::new(e).context(format!("cannot read {shown}"))
    }
}

/// The upload of each of `files`, in order: its job, or what is wrong with
/// that file alone (missing, a folder, not regular, a name the protocol
/// does not allow), which the others do not wait for, as with `cp`.
/// Names are the files' own inside `as_name` (a folder) or `cwd`, or
/// `as_name` itself for one file.
///
/// # Errors
/// A bad `--as`, or two files with one path: nothing is uploaded then.
pub fn plan(
    files: &[PathBuf],
    as_name: Option<&str>,
    cwd: &str,
) -> anyhow::Result<Vec<anyhow::Result<PutJob>>> {
    let (folder, exact) = match as_name {
        Some(p) if files.len() == 1 && !p.ends_with('/') => {
            (None, Some(paths::resolve_entry(cwd, p, "uploading as")?))
        }
        Some(p) => (Some(paths::resolve(cwd, p)?), None),
        None => (Some(cwd.to_string()), None),
    };
    let mut planned: Vec<anyhow::Result<PutJob>> = Vec::with_capacity(files.len());
    for path in files {
        let job = plan_one(path, exact.as_deref(), folder.as_deref());
        if let Ok(job) = &job {
            if planned.iter().flatten().any(|j| j.name == job.name) {
                bail!("two files would be uploaded as {}", paths::shown(&job.name));
            }
        }
        planned.push(job);
    }
    Ok(planned)
}

/// The job for `path`: named `exact`, or its own name inside `folder`.
/// Errors say what is wrong, not which file (the caller names it).
fn plan_one(path: &Path, exact: Option<&str>, folder: Option<&str>) -> anyhow::Result<PutJob> {
    let meta = std::fs::metadata(path).map_err(|e| anyhow!("{}", io_words(&e)))?;
    if meta.is_dir() {
        bail!("it is a folder; `put -r` uploads a folder whole");
    }
    if !meta.is_file() {
        bail!("not a regular file");
    }
    let name = match (exact, folder) {
        (Some(p), _) => p.to_string(),
        (None, Some(folder)) => {
            let own = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("the file name is not UTF-8; use --as PATH")?;
            crate::names::check_file_name(own)
                .map_err(|e| anyhow!("as {:?}: {e}; use --as PATH", clean(own)))?;
            let name = paths::join(folder, own);
            crate::names::check_path(&name)
                .map_err(|e| anyhow!("as {}: {e}", paths::shown(&name)))?;
            name
        }
        (None, None) => unreachable!("a folder or an exact path"),
    };
    Ok(PutJob {
        path: path.to_path_buf(),
        name,
    })
}
