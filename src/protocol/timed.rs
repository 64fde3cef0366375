//! Time limits under the protocol, and under TLS: a socket whose reads
//! share one deadline, and a floor under the rate of a body.
//!
//! A per-read timeout bounds silence, not slowness: a peer that sends one
//! byte just before each timeout could make a 16 MiB header last for
//! years. A frame header must therefore arrive whole before a deadline;
//! bodies, which may take long but must keep moving, use a per-read
//! timeout and [`RateFloor`] instead. [`Timed`] sits directly on the
//! socket, so that a TLS session over it keeps the same limits.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A [`TcpStream`] with an optional deadline for all reads.
pub struct Timed {
    stream: TcpStream,
    deadline: Option<Instant>,
}

impl Timed {
    /// Wraps a stream; reads use the stream's own timeout until
    /// [`Timed::set_deadline`].
    pub fn new(stream: TcpStream) -> Timed {
        Timed {
            stream,
            deadline: None,
        }
    }

    /// Every read from now on fails with `TimedOut` once `deadline` passes.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// Drops the deadline: from now on each read may wait `per_read`.
    ///
    /// # Errors
    /// If the socket option cannot be set.
    pub fn clear_deadline(&mut self, per_read: Duration) -> io::Result<()> {
        self.deadline = None;
        self.stream.set_read_timeout(Some(per_read))
    }

    /// The stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// The stream, for writes that must reach the socket itself
    /// (`sendfile`).
    pub fn get_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The stream, without the deadline.
    pub fn into_inner(self) -> TcpStream {
        self.stream
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
        }
        self.stream.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A floor under a body's average rate: fewer than `min_rate` bytes a
/// second over a whole window is a stall (PROTOCOL.md, "Limits"), so that
/// a trickle cannot hold a worker for ever.
#[derive(Debug, Clone)]
pub struct RateFloor {
    min_rate: u64,
    window: Duration,
    start: Instant,
    moved: u64,
}

impl RateFloor {
    /// A floor of `min_rate` bytes a second, averaged over `window`; a
    /// `min_rate` of 0 never trips.
    pub fn new(min_rate: u64, window: Duration) -> RateFloor {
        RateFloor {
            min_rate,
            window,
            start: Instant::now(),
            moved: 0,
        }
    }

    /// Starts a new body.
    pub fn restart(&mut self) {
        self.start = Instant::now();
        self.moved = 0;
    }

    /// The longest a single read or write may wait: a window without one
    /// byte is below any floor.
    pub fn per_op(&self, otherwise: Duration) -> Duration {
        if self.min_rate == 0 {
            otherwise
        } else {
            self.window.min(otherwise)
        }
    }

    /// Counts `n` bytes moved.
    ///
    /// # Errors
    /// `TimedOut` when a whole window has passed below the floor.
    pub fn moved(&mut self, n: u64) -> io::Result<()> {
        self.moved = self.moved.saturating_add(n);
        let elapsed = self.start.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        let floor = (self.min_rate as f64 * elapsed.as_secs_f64()) as u64;
        if self.moved < floor {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} bytes in {:.0} s is below the floor of {} bytes/s",
                    self.moved,
                    elapsed.as_secs_f64(),
                    self.min_rate
                ),
            ));
        }
        self.restart();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_trips_only_after_a_slow_window() {
        let window = Duration::from_secs(30);
        let mut slow = RateFloor::new(1000, window);
        assert!(slow.moved(10).is_ok(), "the window has not passed");
        slow.start -= window;
        assert!(slow.moved(10).is_err(), "20 bytes in 30 s is too slow");
        let mut fast = RateFloor::new(1000, window);
        fast.start -= window;
        assert!(fast.moved(40_000).is_ok());
        assert_eq!(fast.moved, 0, "a new window begins");
        let mut none = RateFloor::new(0, window);
        none.start -= window;
        assert!(none.moved(0).is_ok(), "no floor");
    }
}
