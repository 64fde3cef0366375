//! Connections refused at accept (the table full with nobody anonymous to
//! close, or the address over its cap), answered in the words they speak.
//!
//! A client speaks first, so the refusal waits up to [`LISTEN`] for the
//! first bytes, in the event loop (a few are checked at every sweep and
//! when new ones come; none holds a worker): a letter is HTTP and gets
//! `503` with `Retry-After`, a zero byte is protocol v1 and gets its `BUSY`
//! frame, a TLS hello is closed (answering it would take a handshake), and
//! silence gets the v1 frame when the time is up. At most [`AT_ONCE`]
//! wait at a time: they hold descriptors beyond `--max-connections`, so
//! the oldest is answered early to make room. Once answered, a connection
//! lingers up to [`LISTEN`] for the peer to close, so that the answer is
//! read rather than lost to a reset.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::proxy::{self, Parsed};
use crate::error::ErrorCode;
use crate::protocol::{encode_frame, error_header};

/// Longest a refused connection waits for its first bytes, and then for
/// the peer to close after the answer.
pub const LISTEN: Duration = Duration::from_secs(1);
/// Refused connections waiting at once.
pub const AT_ONCE: usize = 32;

struct Waiting {
    tcp: TcpStream,
    why: &'static str,
    until: Instant,
    /// Answered: waiting for the peer to close.
    answered: bool,
    /// The first byte it sent, when it was read before (after a PROXY
    /// header).
    first: Option<u8>,
    /// From a peer of `--proxy-from`, its PROXY header not read yet: the
    /// client's first byte comes after it.
    proxied: bool,
}

/// The refused connections not answered or not closed yet.
#[derive(Default)]
pub struct Refused {
    waiting: VecDeque<Waiting>,
}

impl Refused {
    /// Takes a refused connection (non-blocking), answering it at once if
    /// it already spoke.
    pub fn add(&mut self, tcp: TcpStream, why: &'static str, now: Instant) {
        self.push(tcp, why, None, false, now);
    }

    /// [`Refused::add`] for a connection from a peer of `--proxy-from`,
    /// whose PROXY header comes before the client's first byte.
    pub fn add_proxied(&mut self, tcp: TcpStream, why: &'static str, now: Instant) {
        self.push(tcp, why, None, true, now);
    }

    /// [`Refused::add`] for a connection whose first bytes were read
    /// already (`first`, the first of them, if any came).
    pub fn add_after(
        &mut self,
        tcp: TcpStream,
        why: &'static str,
        first: Option<u8>,
        now: Instant,
    ) {
        self.push(tcp, why, first, false, now);
    }

    fn push(
        &mut self,
        tcp: TcpStream,
        why: &'static str,
        first: Option<u8>,
        proxied: bool,
        now: Instant,
    ) {
        if self.waiting.len() >= AT_ONCE {
            if let Some(mut oldest) = self.waiting.pop_front() {
                if !oldest.answered {
                    answer(&mut oldest.tcp, oldest.why, None);
                }
            }
        }
        let mut w = Waiting {
            tcp,
            why,
            until: now + LISTEN,
            answered: false,
            first,
            proxied,
        };
        if !step(&mut w, now) {
            self.waiting.push_back(w);
        }
    }

    /// Answers those that spoke or whose time is up, and drops those that
    /// are done.
    pub fn sweep(&mut self, now: Instant) {
        self.waiting.retain_mut(|w| !step(w, now));
    }
}

/// Moves a refused connection on; `true` once it is done with.
fn step(w: &mut Waiting, now: Instant) -> bool {
    let mut first = [0u8; 4096];
    let read = match (&w.tcp).read(&mut first) {
        Ok(0) => return true,
        Ok(n) if w.proxied && !w.answered => {
            // The header is expected whole in the first read (HAProxy
            // sends it in one write); a cut or bad one is just closed.
            let Parsed::Header { len, .. } = proxy::parse(&first[..n]) else {
                return true;
            };
            w.proxied = false;
            first[..n].get(len).copied()
        }
        Ok(_) => Some(first[0]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        Err(_) => return true,
    };
    let read = w.first.take().or(read);
    if w.answered {
        // Lingering: what it sends is dropped until it closes.
        return now >= w.until;
    }
    match read {
        Some(0x16) => true,
        Some(b) => {
            answer(&mut w.tcp, w.why, Some(b));
            w.answered = true;
            w.until = now + LISTEN;
            false
        }
        None if now >= w.until => {
            answer(&mut w.tcp, w.why, None);
            w.answered = true;
            w.until = now + LISTEN;
            false
        }
        None => false,
    }
}

/// Writes `BUSY` as HTTP `503` (a letter first) or as a v1 frame, and
/// shuts our side.
fn answer(tcp: &mut TcpStream, why: &str, first: Option<u8>) {
    let bytes = if first.is_some_and(|b| b.is_ascii_alphabetic()) {
        crate::http::response::refusal(ErrorCode::Busy, why)
    } else {
        encode_frame(&error_header(ErrorCode::Busy, why))
    };
    let _ = tcp.write(&bytes);
    let _ = tcp.shutdown(Shutdown::Write);
}
