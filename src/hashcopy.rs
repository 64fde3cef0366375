//! Copying with MD5 on the side: the I/O of a transfer on one thread, the
//! hashing of the bytes it moved on another.
//!
//! MD5 runs at well under a gigabyte a second on one core, slower than a
//! loopback socket or the page cache, so a transfer that reads, hashes and
//! writes in turn spends most of its time hashing while its I/O waits. Here
//! the caller's thread moves chunk *n + 1* while a second thread hashes
//! chunk *n*; the chunks cycle through a few fixed buffers, so nothing is
//! allocated per chunk.
//!
//! A large file being written can also be flushed in the background as it
//! grows, so that the `fsync` that makes it durable at the end finds little
//! left to write instead of stalling on the whole file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::thread;

use crossbeam_channel::bounded;
use md5::{Digest, Md5};

/// Bytes per chunk.
pub const CHUNK: usize = 256 * 1024;
/// Chunks in flight: one being moved, the rest queued for or in hashing.
const DEPTH: usize = 4;
/// Bytes written between background flushes.
const FLUSH_EVERY: u64 = 32 << 20;

/// Moves `len` bytes in chunks of at most [`CHUNK`] and hashes them into
/// `hasher`, in order. `step` must fill the whole slice it is given (read
/// it from somewhere) and may pass it on (write it somewhere); the slice is
/// hashed after `step` returns, while `step` works on the next one.
///
/// With `flush`, that file is `fdatasync`ed in the background whenever
/// [`FLUSH_EVERY`] more bytes have gone through; the caller still syncs it
/// at the end. A transfer of one chunk or less runs on the caller's thread
/// alone.
///
/// # Errors
/// The first error of `step`, which ends the copy (`hasher` then holds a
/// prefix of the bytes), or of a background flush.
pub fn hashed_copy<E: From<io::Error>>(
    hasher: &mut Md5,
    len: u64,
    flush: Option<&File>,
    mut step: impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    if len <= CHUNK as u64 {
        let mut buf = vec![0u8; len as usize];
        step(&mut buf)?;
        hasher.update(&buf);
        return Ok(());
    }
    // A file that never reaches the first flush needs no flusher.
    let flush = flush.filter(|_| len > FLUSH_EVERY);
    let (full_tx, full_rx) = bounded::<(Vec<u8>, usize)>(DEPTH);
    let (free_tx, free_rx) = bounded::<Vec<u8>>(DEPTH);
    let (dirty_tx, dirty_rx) = bounded::<()>(1);
    thread::scope(|s| {
        let hashing = s.spawn(move || {
            for (buf, n) in full_rx {
                hasher.update(&buf[..n]);
                // The receiver lives until the scope ends; an error here
                // only means the copy already stopped.
                let _ = free_tx.send(buf);
            }
        });
        let flushing = flush.map(|file| {
            s.spawn(move || -> io::Result<()> {
                for () in dirty_rx {
                    file.sync_data()?;
                }
                Ok(())
            })
        });
        let mut fresh = DEPTH;
        let mut left = len;
        let mut unflushed = 0;
        let moved = loop {
            if left == 0 {
                break Ok(());
            }
            let mut buf = if fresh > 0 {
                fresh -= 1;
                vec![0u8; CHUNK]
            } else {
                match free_rx.recv() {
                    Ok(b) => b,
                    // The hashing thread ended early: it panicked, and the
                    // scope re-raises that below.
                    Err(_) => break Ok(()),
                }
            };
            let n = left.min(CHUNK as u64) as usize;
            if let Err(e) = step(&mut buf[..n]) {
                break Err(e);
            }
            if full_tx.send((buf, n)).is_err() {
                break Ok(());
            }
            left -= n as u64;
            unflushed += n as u64;
            if unflushed >= FLUSH_EVERY {
                unflushed = 0;
                // Full: a flush already pending covers these bytes too.
                // Disconnected: the flusher stopped on an error, reported
                // below.
                let _ = dirty_tx.try_send(());
            }
        };
        drop(full_tx);
        drop(dirty_tx);
        // The hashing thread cannot fail; if it panicked, so do we.
        if let Err(p) = hashing.join() {
            std::panic::resume_unwind(p);
        }
        moved?;
        match flushing.map(|f| f.join()) {
            Some(Ok(Err(e))) => Err(e.into()),
            Some(Err(p)) => std::panic::resume_unwind(p),
            _ => Ok(()),
        }
    })
}

/// Hashes the first `len` bytes of `file` into `hasher`, leaving the file
/// position at `len`.
///
/// # Errors
/// If the file cannot be read or is shorter than `len`.
pub fn hash_prefix(file: &File, len: u64, hasher: &mut Md5) -> io::Result<()> {
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    hashed_copy(hasher, len, None, |chunk| reader.read_exact(chunk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn hashes_every_byte_in_order_whatever_the_length() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 7 * CHUNK + 5] {
            let data = pattern(len);
            let mut src = &data[..];
            let mut out = Vec::new();
            let mut hasher = Md5::new();
            hashed_copy::<io::Error>(&mut hasher, len as u64, None, |buf| {
                src.read_exact(buf)?;
                out.write_all(buf)
            })
            .unwrap();
            assert_eq!(out, data, "len {len}");
            assert_eq!(hasher.finalize(), Md5::digest(&data), "len {len}");
        }
    }

    #[test]
    fn the_first_error_stops_the_copy() {
        let mut calls = 0;
        let mut hasher = Md5::new();
        let r = hashed_copy(&mut hasher, 10 * CHUNK as u64, None, |_| {
            calls += 1;
            if calls == 3 {
                Err(io::Error::other("disk full"))
            } else {
                Ok(())
            }
        });
        assert_eq!(r.unwrap_err().to_string(), "disk full");
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_flushed_file_gets_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let len = FLUSH_EVERY as usize * 2 + 12345;
        let data = pattern(len);
        let mut src = &data[..];
        let mut hasher = Md5::new();
        hashed_copy::<io::Error>(&mut hasher, len as u64, Some(&file), |buf| {
            src.read_exact(buf)?;
            (&file).write_all(buf)
        })
        .unwrap();
        file.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(hasher.finalize(), Md5::digest(&data));
    }
}
