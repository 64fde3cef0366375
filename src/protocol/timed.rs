//! Time limits under the protocol, and under TLS: a socket whose reads
//! share one deadline, and bodies whose bytes are counted and that can be
//! cut from another thread.
//!
//! A per-read timeout bounds silence, not slowness: a peer that sends one
//! byte just before each timeout could make a 16 MiB header last for
//! years. A frame header must therefore arrive whole before a deadline.
//! Bodies, which may take long but must keep moving, count their bytes on
//! a [`Meter`] that the server's rate floor watches on a clock of its own;
//! reads and writes wait in [`TICK`]s, so that a body the floor (or a
//! busier body) cut stops within one, whatever it was blocked in.
//! [`Timed`] sits directly on the socket, so that a TLS session over it
//! keeps the same limits.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a body read or write blocks before it looks whether the
/// body was cut.
pub const TICK: Duration = Duration::from_millis(500);
/// The least a `sendfile` call asks for: what a reader at 4 KiB/s (the
/// default floor) takes in 16 s, half the default window.
const SLICE_MIN: usize = 64 * 1024;
/// The most a `sendfile` call asks for.
const SLICE_MAX: usize = 8 << 20;

/// Why a body was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// It moved slower than the rate floor over a whole window.
    Floor,
    /// It gave way to another body.
    Displaced,
    /// A small body over its borrowed time.
    Borrowed,
}

impl Cut {
    const ALL: [Cut; 3] = [Cut::Floor, Cut::Displaced, Cut::Borrowed];

    /// What the error says.
    pub fn reason(self) -> &'static str {
        match self {
            Cut::Floor => "the body moved slower than the rate floor",
            Cut::Displaced => "a slow body gave way to another; it resumes later",
            Cut::Borrowed => "a small body took longer than it may",
        }
    }
}

/// A body's byte count and its cut, shared by the thread moving it and
/// the one watching it.
#[derive(Debug, Default)]
pub struct Meter {
    moved: AtomicU64,
    /// 0, or 1 + the index of the [`Cut`].
    cut: AtomicU8,
}

impl Meter {
    /// Counts `n` bytes moved.
    pub fn add(&self, n: usize) {
        self.moved.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes moved so far.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Whether (and why) the body was cut.
    pub fn cut(&self) -> Option<Cut> {
        let v = self.cut.load(Ordering::Relaxed);
        Cut::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }

    /// Cuts the body (the first reason given stays).
    pub fn set_cut(&self, why: Cut) {
        let v = Cut::ALL.iter().position(|c| *c == why).unwrap_or(0) as u8 + 1;
        let _ = self
            .cut
            .compare_exchange(0, v, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn check(&self) -> io::Result<()> {
        match self.cut() {
            Some(why) => Err(io::Error::new(io::ErrorKind::TimedOut, why.reason())),
            None => Ok(()),
        }
    }
}

/// A [`TcpStream`] with an optional deadline for all reads, or a body
/// [`Meter`].
pub struct Timed {
    stream: TcpStream,
    deadline: Option<Instant>,
    meter: Option<Arc<Meter>>,
    /// How long a write (and a body read) may go without progress; zero:
    /// the socket's own timeout alone.
    patience: Duration,
    /// The socket is non-blocking for a moment: a read that would block
    /// says so at once.
    nonblocking: bool,
}

impl Timed {
    /// Wraps a stream; reads and writes use the stream's own timeouts
    /// until [`Timed::set_deadline`] or [`Timed::start_body`].
    pub fn new(stream: TcpStream) -> Timed {
        Timed {
            stream,
            deadline: None,
            meter: None,
            patience: Duration::ZERO,
            nonblocking: false,
        }
    }

    /// Every read from now on fails with `TimedOut` once `deadline` passes.
    /// Ends a body begun with [`Timed::start_body`].
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        self.meter = None;
    }

    /// Drops the deadline: from now on each read may wait `per_read`.
    ///
    /// # Errors
    /// If the socket option cannot be set.
    pub fn clear_deadline(&mut self, per_read: Duration) -> io::Result<()> {
        self.deadline = None;
        self.stream.set_read_timeout(Some(per_read))
    }

    /// Writes that make no progress give up after `patience`; the socket's
    /// write timeout must be [`TICK`] (or shorter).
    pub fn set_patience(&mut self, patience: Duration) {
        self.patience = patience;
    }

    /// Begins a body: bytes read and written count on `meter`, a read or
    /// write gives up after the patience without progress, and either
    /// stops within a [`TICK`] once the meter is cut.
    ///
    /// # Errors
    /// If the socket option cannot be set.
    pub fn start_body(&mut self, meter: Arc<Meter>) -> io::Result<()> {
        self.deadline = None;
        self.meter = Some(meter);
        self.stream.set_read_timeout(Some(TICK))
    }

    /// Makes the socket (non-)blocking; while it is non-blocking, reads
    /// and writes that would block fail at once.
    ///
    /// # Errors
    /// If the socket option cannot be set.
    pub fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        self.stream.set_nonblocking(nonblocking)?;
        self.nonblocking = nonblocking;
        Ok(())
    }

    /// The stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// The stream, for writes that must reach the socket itself.
    pub fn get_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The stream, without the deadline.
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }

    /// Sends `len` bytes of `file` from `offset` with `sendfile(2)`: the
    /// bytes never enter user space. Counted and cut like any write.
    ///
    /// One call blocks for as long as the peer keeps taking bytes, and its
    /// bytes are counted only when it returns; so each call asks for about
    /// a quarter of a second's worth at the rate the last one went
    /// ([`SLICE_MIN`] to [`SLICE_MAX`]): a slow reader's bytes are counted
    /// every few seconds, a fast one pays few system calls.
    ///
    /// # Errors
    /// A read or write error, no progress within the patience, or a cut.
    pub fn sendfile(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        let mut at = offset;
        let end = offset.saturating_add(len);
        let mut since = Instant::now();
        let mut slice = SLICE_MIN * 4;
        while at < end {
            self.check()?;
            let want = usize::try_from(end - at).unwrap_or(usize::MAX).min(slice);
            let began = Instant::now();
            match rustix::fs::sendfile(&self.stream, file, Some(&mut at), want) {
                Ok(0) => break,
                Ok(n) => {
                    self.count(n);
                    since = Instant::now();
                    let rate = n as f64 / began.elapsed().as_secs_f64().max(1e-6);
                    slice = ((rate / 4.0) as usize).clamp(SLICE_MIN, SLICE_MAX);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    let e = io::Error::from(e);
                    if !self.wait_more(&e, since) {
                        return Err(self.check().err().unwrap_or(e));
                    }
                }
            }
        }
        Ok(at - offset)
    }

    fn check(&self) -> io::Result<()> {
        self.meter.as_ref().map_or(Ok(()), |m| m.check())
    }

    fn count(&self, n: usize) {
        if let Some(m) = &self.meter {
            m.add(n);
        }
    }

    /// After `e`: whether to try again (a tick passed, and the patience
    /// has not run out).
    fn wait_more(&self, e: &io::Error, since: Instant) -> bool {
        if self.nonblocking && e.kind() == io::ErrorKind::WouldBlock {
            return false;
        }
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
        ) && (e.kind() == io::ErrorKind::Interrupted || since.elapsed() < self.patience)
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            return self.stream.read(buf);
        }
        if self.meter.is_none() {
            return self.stream.read(buf);
        }
        let since = Instant::now();
        loop {
            self.check()?;
            match self.stream.read(buf) {
                // The end a cut made (its socket shut down for reading).
                Ok(0) if !buf.is_empty() => {
                    self.check()?;
                    return Ok(0);
                }
                Ok(n) => {
                    self.count(n);
                    return Ok(n);
                }
                Err(e) if self.wait_more(&e, since) => {}
                // A cut body's socket is shut down: say why, not how.
                Err(e) => return Err(self.check().err().unwrap_or(e)),
            }
        }
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let since = Instant::now();
        loop {
            self.check()?;
            match self.stream.write(buf) {
                Ok(n) => {
                    self.count(n);
                    return Ok(n);
                }
                Err(e) if self.wait_more(&e, since) => {}
                // A cut body's socket is shut down: say why, not how.
                Err(e) => return Err(self.check().err().unwrap_or(e)),
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let since = Instant::now();
        loop {
            self.check()?;
            match self.stream.write_vectored(bufs) {
                Ok(n) => {
                    self.count(n);
                    return Ok(n);
                }
                Err(e) if self.wait_more(&e, since) => {}
                // A cut body's socket is shut down: say why, not how.
                Err(e) => return Err(self.check().err().unwrap_or(e)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn a_cut_stops_a_blocked_body_read_within_a_tick() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut timed = Timed::new(stream);
        timed.set_patience(Duration::from_secs(600));
        let meter = Arc::new(Meter::default());
        timed.start_body(Arc::clone(&meter)).unwrap();
        let cutter = Arc::clone(&meter);
        let cut = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            cutter.set_cut(Cut::Displaced);
        });
        let started = Instant::now();
        let err = timed.read(&mut [0u8; 16]).unwrap_err();
        cut.join().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), Cut::Displaced.reason());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not the patience"
        );
        meter.set_cut(Cut::Floor);
        assert_eq!(meter.cut(), Some(Cut::Displaced), "the first reason stays");
    }

    #[test]
    fn body_bytes_are_counted_both_ways_and_sendfile_sends_a_range() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut timed = Timed::new(stream);
        let meter = Arc::new(Meter::default());
        timed.start_body(Arc::clone(&meter)).unwrap();
        peer.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        timed.read_exact(&mut got).unwrap();
        let dir = std::env::temp_dir().join(format!("netdisk-timed-{}", std::process::id()));
        std::fs::write(&dir, b"0123456789").unwrap();
        let file = File::open(&dir).unwrap();
        assert_eq!(timed.sendfile(&file, 3, 4).unwrap(), 4);
        std::fs::remove_file(&dir).unwrap();
        let mut back = [0u8; 4];
        peer.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"3456");
        assert_eq!(meter.moved(), 9);
    }
}
