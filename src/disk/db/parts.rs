//! An upload's bytes on their way to S3 (`serve --blobs`).
//!
//! A file of at most [`SINGLE_MAX`] bytes is kept in memory and sent with
//! one `PutObject` (with its `Content-MD5`) when it commits. A larger one
//! is a multipart upload: each part (at least 8 MiB, larger for files past
//! 80 GiB so that 10,000 parts hold them) is sent once it is whole, and
//! then its number, ETag and size and the MD5 state after it are recorded
//! in the upload's row. An upload that stops (a cut connection, the end of
//! a web page's piece) keeps the bytes after its last part in its row with
//! the MD5 state after them. Any server resumes it from there without
//! reading a byte back from the store, whose part list is never asked for.
//!
//! A part goes up on a thread of its own while the next one arrives, so
//! that receiving and sending overlap. One part at a time is in flight; its
//! thread records it in the row once the store has it, and the next part
//! leaves only after that. A part that fails comes back to the bytes after
//! the last part recorded, so nothing received is lost.

use md5::digest::common::hazmat::SerializableState;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::db::Pool;
use crate::disk::s3::S3;
use crate::error::Error;

/// Files up to this size go up in one request.
pub const SINGLE_MAX: u64 = 8 << 20;
/// The smallest part.
const PART_MIN: u64 = 8 << 20;
/// S3's limit of parts in one upload (with room to spare).
const PARTS_MAX: u64 = 9_000;

/// The parts an upload of `size` bytes is cut into: the same on every
/// server, so that one resumes what another began.
pub fn part_size(size: u64) -> u64 {
    size.div_ceil(PARTS_MAX)
        .max(PART_MIN)
        .next_multiple_of(1 << 20)
}

/// One part sent, as the row records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub number: u16,
    pub etag: String,
    pub size: u64,
}

/// Where an upload's row is (its claim included).
pub struct Row<'a> {
    pub account: i64,
    pub path: &'a str,
    pub holder: &'a str,
}

/// What a part's thread hands back: the part as recorded, and its bytes.
type Sent = (Result<Part, Error>, Vec<u8>);

/// A part on its way to the store.
struct InFlight {
    size: u64,
    thread: std::thread::JoinHandle<Sent>,
}

/// What a part's thread needs: where to send it and where to record it.
struct Job {
    s3: S3,
    blob: String,
    upload_id: String,
    number: u16,
    /// The parts before it.
    sent: Vec<Part>,
    /// The MD5 state after its last byte.
    state: Vec<u8>,
    pool: Pool,
    account: i64,
    path: String,
    holder: String,
}

impl Job {
    /// Sends the part, then records it and the MD5 state after it.
    fn run(mut self, bytes: &[u8]) -> Result<Part, Error> {
        let etag = self
            .s3
            .upload_part(&self.blob, &self.upload_id, self.number, bytes)?;
        let part = Part {
            number: self.number,
            etag,
            size: bytes.len() as u64,
        };
        self.sent.push(part.clone());
        let hashed: u64 = self.sent.iter().map(|p| p.size).sum();
        let hashed = i64::try_from(hashed).unwrap_or(i64::MAX);
        let parts = serde_json::to_value(&self.sent).map_err(|e| Error::Internal(e.to_string()))?;
        let n = self.pool.get()?.execute(
            "UPDATE staged SET upload_id = $4, parts = $5, hashed = $6, hash_state = $7, tail = NULL
             WHERE account = $1 AND path = $2 AND holder = $3",
            &[
                &self.account,
                &self.path,
                &self.holder,
                &self.upload_id,
                &parts,
                &hashed,
                &self.state,
            ],
        )?;
        if n == 0 {
            return Err(Error::Internal("the upload's claim lapsed".into()));
        }
        Ok(part)
    }
}

/// The bytes of one upload being sent.
pub struct Parts {
    s3: S3,
    blob: String,
    size: u64,
    upload_id: Option<String>,
    sent: Vec<Part>,
    flying: Option<InFlight>,
    /// Bytes after the part in flight (or the last part sent).
    buf: Vec<u8>,
    /// Bytes the row accounts for (parts and kept tail).
    kept: u64,
    /// A part's thread died with its bytes: the row's record is all that
    /// is left to resume from.
    broken: bool,
}

impl Parts {
    /// An upload resumed after the parts `sent` of the multipart upload
    /// `upload_id` (none for a new one) and the bytes `tail` after them.
    pub fn new(
        s3: S3,
        blob: &str,
        size: u64,
        upload_id: Option<String>,
        sent: Vec<Part>,
        tail: Vec<u8>,
    ) -> Parts {
        let kept = sent.iter().map(|p| p.size).sum::<u64>() + tail.len() as u64;
        Parts {
            s3,
            blob: blob.to_string(),
            size,
            upload_id,
            sent,
            flying: None,
            buf: tail,
            kept,
            broken: false,
        }
    }

    /// Bytes in the parts sent and recorded.
    pub fn sent_bytes(&self) -> u64 {
        self.sent.iter().map(|p| p.size).sum()
    }

    /// Whether a multipart upload was begun.
    pub fn has_upload(&self) -> bool {
        self.upload_id.is_some()
    }

    /// Bytes held: the parts sent or in flight and those after them.
    pub fn held(&self) -> u64 {
        self.sent_bytes() + self.flying.as_ref().map_or(0, |f| f.size) + self.buf.len() as u64
    }

    /// Keeps the bytes after the last part in the row, with `hasher`'s
    /// state (which covers them), so that the upload resumes after them.
    ///
    /// # Errors
    /// A database fault (the upload then resumes after its last part).
    pub fn keep_tail(&mut self, pool: &Pool, row: &Row<'_>, hasher: &Md5) -> Result<(), Error> {
        // A part in flight that fails is back in the tail.
        let _ = self.settle();
        if self.broken {
            return Err(Error::Internal("an upload part's thread failed".into()));
        }
        let hashed = i64::try_from(self.held()).unwrap_or(i64::MAX);
        let state = hasher.serialize().to_vec();
        pool.get()?.execute(
            "UPDATE staged SET tail = $4, hashed = $5, hash_state = $6
             WHERE account = $1 AND path = $2 AND holder = $3",
            &[
                &row.account,
                &row.path,
                &row.holder,
                &self.buf,
                &hashed,
                &state,
            ],
        )?;
        self.kept = self.held();
        Ok(())
    }

    /// Whether it holds bytes its row does not account for.
    pub fn unkept(&self) -> bool {
        !self.broken && self.held() > self.kept
    }

    /// How many of the next bytes belong to the part being filled.
    pub fn room(&self) -> usize {
        if self.size <= SINGLE_MAX {
            return usize::MAX;
        }
        let part = part_size(self.size);
        usize::try_from(part.saturating_sub(self.buf.len() as u64)).unwrap_or(usize::MAX)
    }

    /// Takes bytes that `hasher` has hashed, in order; sends the part they
    /// complete (all but the last one) once the one before it is recorded
    /// with its MD5 state in the row (a connection of `pool`).
    ///
    /// # Errors
    /// A store or database fault of the part before: it counts as not
    /// sent, its bytes are back in the tail.
    pub fn push(
        &mut self,
        bytes: &[u8],
        hasher: &Md5,
        pool: &Pool,
        row: &Row<'_>,
    ) -> Result<(), Error> {
        self.buf.extend_from_slice(bytes);
        let last = self.held() >= self.size;
        if self.size > SINGLE_MAX && !last && self.buf.len() as u64 >= part_size(self.size) {
            self.launch(pool, row, hasher)?;
        }
        Ok(())
    }

    /// Sends the buffered bytes as the next part, on a thread that records
    /// it in the row, once the part in flight is recorded.
    fn launch(&mut self, pool: &Pool, row: &Row<'_>, hasher: &Md5) -> Result<(), Error> {
        let spare = self.settle()?;
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.s3.create_multipart(&self.blob)?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = u16::try_from(self.sent.len() + 1)
            .map_err(|_| Error::Internal("an upload of more than 65,535 parts".into()))?;
        let bytes = std::mem::replace(&mut self.buf, spare);
        let size = bytes.len() as u64;
        let job = Job {
            s3: self.s3.clone(),
            blob: self.blob.clone(),
            upload_id,
            number,
            sent: self.sent.clone(),
            state: hasher.serialize().to_vec(),
            pool: pool.clone(),
            account: row.account,
            path: row.path.to_string(),
            holder: row.holder.to_string(),
        };
        let thread = std::thread::Builder::new()
            .name("s3-part".into())
            .spawn(move || (job.run(&bytes), bytes));
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                // The part's bytes went with the thread that never began.
                self.broken = true;
                return Err(Error::Internal(format!(
                    "no thread for an upload part: {e}"
                )));
            }
        };
        self.flying = Some(InFlight { size, thread });
        Ok(())
    }

    /// Waits for the part in flight; hands back its buffer, emptied, for
    /// the next part.
    ///
    /// # Errors
    /// A store or database fault: the part's bytes are put back in front
    /// of the tail.
    fn settle(&mut self) -> Result<Vec<u8>, Error> {
        let Some(flying) = self.flying.take() else {
            return Ok(Vec::new());
        };
        let Ok((sent, mut bytes)) = flying.thread.join() else {
            self.broken = true;
            return Err(Error::Internal("an upload part's thread failed".into()));
        };
        match sent {
            Ok(part) => {
                debug_assert_eq!(part.size, flying.size);
                self.sent.push(part);
                self.kept = self.sent_bytes();
                bytes.clear();
                Ok(bytes)
            }
            Err(e) => {
                bytes.extend_from_slice(&self.buf);
                self.buf = bytes;
                Err(e)
            }
        }
    }

    /// Sends the buffered bytes as the next part, and records it.
    fn send_part(&mut self, pool: &Pool, row: &Row<'_>, hasher: &Md5) -> Result<(), Error> {
        self.launch(pool, row, hasher)?;
        self.settle().map(drop)
    }

    /// Makes the whole file the object `blob`: one `PutObject`, or the last
    /// part and the completion. A completion the store says it has no
    /// upload for, whose object is there with the file's size, had
    /// succeeded before (a commit cut short after it).
    ///
    /// # Errors
    /// A store fault: nothing is visible, the parts sent stay.
    pub fn finish(
        &mut self,
        md5_hex: &str,
        pool: &Pool,
        row: &Row<'_>,
        hasher: &Md5,
    ) -> Result<(), Error> {
        if self.size <= SINGLE_MAX {
            let digest = hex_bytes(md5_hex)?;
            let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest);
            return self.s3.put_object(&self.blob, &self.buf, &b64);
        }
        self.settle()?;
        if !self.buf.is_empty() || self.sent.is_empty() {
            self.send_part(pool, row, hasher)?;
        }
        let upload_id = self
            .upload_id
            .clone()
            .ok_or_else(|| Error::Internal("a multipart upload without its id".into()))?;
        let parts: Vec<(u16, String)> = self
            .sent
            .iter()
            .map(|p| (p.number, p.etag.clone()))
            .collect();
        match self.s3.complete_multipart(&self.blob, &upload_id, &parts) {
            Ok(()) => Ok(()),
            Err(e) => match self.s3.head(&self.blob) {
                Ok(len) if len == self.size => Ok(()),
                _ => Err(e),
            },
        }
    }
}

fn hex_bytes(hex: &str) -> Result<Vec<u8>, Error> {
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::Internal(format!("not an MD5: {hex:?}")))
        })
        .collect()
}

/// Hashes `bytes` into `hasher` and hands them to `parts`, cut where a part
/// ends, so that the state recorded with a part is that of its last byte.
///
/// # Errors
/// As [`Parts::push`].
pub fn feed(
    parts: &mut Parts,
    hasher: &mut Md5,
    mut bytes: &[u8],
    pool: &Pool,
    row: &Row<'_>,
) -> Result<(), Error> {
    while !bytes.is_empty() {
        let n = bytes.len().min(parts.room().max(1));
        let (now, rest) = bytes.split_at(n);
        hasher.update(now);
        parts.push(now, hasher, pool, row)?;
        bytes = rest;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_8_mib_and_grow_so_that_9000_hold_any_file() {
        assert_eq!(part_size(9 << 20), 8 << 20);
        assert_eq!(part_size(1 << 30), 8 << 20);
        assert_eq!(
            part_size(1 << 40),
            (1u64 << 40).div_ceil(9000).next_multiple_of(1 << 20)
        );
        assert!(part_size(5 << 40) * PARTS_MAX >= 5 << 40);
    }

    #[test]
    fn hex_digests_become_bytes() {
        assert_eq!(hex_bytes("00ff10").unwrap(), vec![0, 255, 16]);
        assert!(hex_bytes("zz").is_err());
    }
}
