//! A socket whose reads can share one deadline.
//!
//! A per-read timeout bounds silence, not slowness: a peer that sends one
//! byte just before each timeout could make a 16 MiB header last for
//! years. A frame header must therefore arrive whole before a deadline;
//! bodies, which may take long but must keep moving, use a per-read
//! timeout instead.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A [`TcpStream`] reader with an optional deadline for all reads.
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
