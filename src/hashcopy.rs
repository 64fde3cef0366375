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

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Condvar, Mutex};
use std::thread;

use md5::{Digest, Md5};

/// Bytes `step` moves at a time: a file being written grows by this much
/// at once.
pub const CHUNK: usize = 256 * 1024;
/// Chunks per hand-off to the hashing thread. Each hand-off may wake the
/// other thread; fewer, larger ones keep that cost (two futex calls at
/// most) small next to the hashing.
const CHUNKS_PER_HANDOFF: usize = 2;
/// Bytes per hand-off.
const HANDOFF: usize = CHUNK * CHUNKS_PER_HANDOFF;
/// Buffers in flight: one being filled, the rest queued for or in hashing.
const DEPTH: usize = 3;
/// Bytes written between background flushes.
const FLUSH_EVERY: u64 = 32 << 20;

/// A queue between two threads whose waits block at once. A channel that
/// spins and yields before it sleeps (crossbeam's backoff) costs a
/// `sched_yield` per hand-off on a machine whose cores are all busy, and
/// gives the core away to whoever else wants it; a condition variable
/// sleeps in the kernel until the other side has something.
struct Queue<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Threads waiting in `pop`: only then does a push pay for a wake-up
    /// (a `futex` call).
    sleepers: usize,
}

impl<T> Queue<T> {
    fn new() -> Queue<T> {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(DEPTH),
                closed: false,
                sleepers: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // Each update is one push or pop: nothing half-done to see.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an item; `false` if the queue is closed.
    fn push(&self, item: T) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        s.items.push_back(item);
        let wake = s.sleepers > 0;
        drop(s);
        if wake {
            self.changed.notify_one();
        }
        true
    }

    /// The next item, waiting for one; `None` once closed and empty.
    fn pop(&self) -> Option<T> {
        let mut s = self.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s.sleepers += 1;
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
            s.sleepers -= 1;
        }
    }

    /// Whether nothing is queued.
    fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// No more pushes; a waiting `pop` returns what is left, then `None`.
    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// Closes a queue when dropped, also by a panic: the thread waiting on it
/// then stops waiting.
struct Closes<'a, T>(&'a Queue<T>);

impl<T> Drop for Closes<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Moves `len` bytes in chunks of at most [`CHUNK`] and hashes them into
/// `hasher`, in order. `step` must fill the whole slice it is given (read
/// it from somewhere) and may pass it on (write it somewhere); the bytes
/// are hashed after `step` returns, a few chunks at a time, while `step`
/// works on the next ones.
///
/// With `flush`, that file is `fdatasync`ed in the background whenever
/// [`FLUSH_EVERY`] more bytes have gone through; the caller still syncs it
/// at the end. A transfer of one chunk or less runs on the caller's thread
/// alone.
///
/// # Errors
/// The first error of `step`, which ends the copy (`hasher` then holds
/// exactly the chunks whose `step` succeeded), or of a background flush.
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
    let full = Queue::<(Vec<u8>, usize)>::new();
    let free = Queue::<Vec<u8>>::new();
    let dirty = Queue::<()>::new();
    thread::scope(|s| {
        let (full, free, dirty) = (&full, &free, &dirty);
        let hashing = s.spawn(move || {
            // If this thread ends (a panic), the mover stops waiting.
            let _done = Closes(free);
            while let Some((buf, n)) = full.pop() {
                hasher.update(&buf[..n]);
                free.push(buf);
            }
        });
        let flushing = flush.map(|file| {
            s.spawn(move || -> io::Result<()> {
                let _done = Closes(dirty);
                while dirty.pop().is_some() {
                    file.sync_data()?;
                }
                Ok(())
            })
        });
        let moved = {
            // However the loop ends, the helpers are told to finish.
            let _no_more = (Closes(full), Closes(dirty));
            move_all(len, full, free, dirty, &mut step)
        };
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

/// The caller's half of [`hashed_copy`]: fills buffers chunk by chunk and
/// hands each to the hashing thread when full.
fn move_all<E>(
    len: u64,
    full: &Queue<(Vec<u8>, usize)>,
    free: &Queue<Vec<u8>>,
    dirty: &Queue<()>,
    step: &mut impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut fresh = DEPTH;
    let mut left = len;
    let mut unflushed = 0;
    while left > 0 {
        let mut buf = if fresh > 0 {
            fresh -= 1;
            vec![0u8; HANDOFF.min(usize::try_from(len).unwrap_or(HANDOFF))]
        } else {
            match free.pop() {
                Some(b) => b,
                // The hashing thread ended early: it panicked, and the
                // caller re-raises that.
                None => return Ok(()),
            }
        };
        let n = left.min(buf.len() as u64) as usize;
        let mut done = 0;
        for chunk in buf[..n].chunks_mut(CHUNK) {
            let len = chunk.len();
            if let Err(e) = step(chunk) {
                // The chunks before the failed one are hashed: the digest
                // covers every step that succeeded (what a resume needs).
                if done > 0 {
                    full.push((buf, done));
                }
                return Err(e);
            }
            done += len;
        }
        if !full.push((buf, n)) {
            return Ok(());
        }
        left -= n as u64;
        unflushed += n as u64;
        if unflushed >= FLUSH_EVERY {
            unflushed = 0;
            // One pending flush covers these bytes too.
            if dirty.is_empty() {
                dirty.push(());
            }
        }
    }
    Ok(())
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

/// Hashes bytes `from..to` of `file` into `hasher`, without moving the
/// file's position.
///
/// # Errors
/// A read error, or a file shorter than `to`.
pub fn hash_range(file: &File, from: u64, to: u64, hasher: &mut Md5) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut at = from;
    hashed_copy(hasher, to.saturating_sub(from), None, |chunk| {
        file.read_exact_at(chunk, at)?;
        at += chunk.len() as u64;
        Ok(())
    })
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
    fn a_panic_in_step_reaches_the_caller_without_a_hang() {
        let caught = std::panic::catch_unwind(|| {
            let mut calls = 0;
            let mut hasher = Md5::new();
            let _ = hashed_copy::<io::Error>(&mut hasher, 20 * CHUNK as u64, None, |_| {
                calls += 1;
                assert!(calls < 7, "the step fails");
                Ok(())
            });
        });
        assert!(caught.is_err());
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
