//! One connection while a worker serves it: frames and bodies over any
//! [`Stream`], each read bounded in size and time.
//!
//! A worker gets a connection from the event loop with at least one whole
//! request header already read ([`Conn::new`] takes those bytes), and
//! gives it back with whatever it read beyond the requests it served
//! ([`Conn::into_parts`]). Frames inside an exchange (`put`'s step 4) must
//! arrive whole within the header timeout; body reads and writes fail
//! after the idle timeout without progress, or below the rate floor.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};

use super::bodies::{Bodies, Meter, Ticket};
use crate::commands::Body;
use crate::disk::Source;
use crate::error::Error;
use crate::protocol::{
    encode_frame, read_header, FrameError, Header, Timed, MAX_REQUEST_HEADER, MAX_RESPONSE_HEADER,
};

/// Largest chunk a TLS download reads from its file at once.
const TLS_COPY: usize = 256 * 1024;

/// A byte stream a connection runs over: plaintext or TLS, with the time
/// limits on the socket beneath.
pub trait Stream: Read + Write {
    /// The socket and its deadline.
    fn timed(&mut self) -> &mut Timed;

    /// Sends `len` bytes of `file` from `offset`.
    ///
    /// # Errors
    /// A read or write error, a stall, or a cut body.
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64>;
}

impl Stream for Timed {
    fn timed(&mut self) -> &mut Timed {
        self
    }

    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        self.sendfile(file, offset, len)
    }
}

impl Stream for StreamOwned<ServerConnection, Timed> {
    fn timed(&mut self) -> &mut Timed {
        &mut self.sock
    }

    fn send_file(&mut self, mut file: &File, offset: u64, len: u64) -> io::Result<u64> {
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(offset))?;
        send_reader(self, &mut file, len)
    }
}

/// Copies up to `len` bytes of `from` to `to`; returns how many there were.
fn send_reader(to: &mut impl Write, from: &mut dyn Read, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; TLS_COPY.min(usize::try_from(len).unwrap_or(TLS_COPY))];
    let mut sent = 0;
    while sent < len {
        let want = (len - sent).min(buf.len() as u64) as usize;
        let n = from.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])?;
        sent += n as u64;
    }
    to.flush()?;
    Ok(sent)
}

/// Time limits of a served connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A frame inside an exchange must arrive whole within this.
    pub header: Duration,
    /// Longest wait for any progress of a body.
    pub stall: Duration,
    /// The rate floor of bodies (bytes a second, over `window`).
    pub min_rate: u64,
    pub window: Duration,
}

impl Limits {
    /// The longest a body (or a reply) may go without progress: a window
    /// without one byte is below any floor.
    pub fn per_op(&self) -> Duration {
        if self.min_rate == 0 {
            self.stall
        } else {
            self.window.min(self.stall)
        }
    }
}

/// Where a connection's bodies take their place among those in flight.
struct Guard {
    bodies: Arc<Bodies>,
    ip: IpAddr,
}

/// A connection being served.
pub struct Conn<S: Stream> {
    stream: S,
    /// Bytes read but not yet consumed: `buf[pos..filled]`.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    limits: Limits,
    guard: Option<Guard>,
    /// The body in flight, if any.
    ticket: Option<Ticket>,
    /// Bytes the last download put on the socket (for the log of one
    /// that broke off).
    sent: u64,
}

/// Read-ahead buffer of a served connection.
const BUF: usize = 64 * 1024;

impl<S: Stream> Conn<S> {
    /// A connection over `stream` (blocking, with its write timeout set
    /// to [`Limits::per_op`]) whose first bytes, already read, are `pending`.
    pub fn new(stream: S, pending: &[u8], limits: Limits) -> Conn<S> {
        let mut buf = vec![0u8; BUF.max(pending.len())];
        buf[..pending.len()].copy_from_slice(pending);
        Conn {
            stream,
            buf,
            pos: 0,
            filled: pending.len(),
            limits,
            guard: None,
            ticket: None,
            sent: 0,
        }
    }

    /// Its bodies take a place among `bodies`, as from `ip`.
    pub fn with_bodies(mut self, bodies: Arc<Bodies>, ip: IpAddr) -> Conn<S> {
        self.guard = Some(Guard { bodies, ip });
        self
    }

    /// Takes a place for a body of `len` bytes before it is announced, so that a refusal can still be answered.
    /// The place is held until the next request is read, or the download
    /// is sent.
    ///
    /// # Errors
    /// `BUSY` if every place this body may take is held by bodies that
    /// move.
    pub fn admit(&mut self, len: u64) -> Result<(), Error> {
        if self.ticket.is_some() {
            return Ok(());
        }
        if let Some(g) = &self.guard {
            let socket = self.stream.timed().get_ref().try_clone().ok();
            self.ticket = Some(g.bodies.admit_on(g.ip, len, socket)?);
        }
        Ok(())
    }

    /// Counts the body on its meter (admitting it first, as one of
    /// unknown size, if [`Conn::admit`] was not called).
    fn start_body(&mut self) -> Result<(), Error> {
        self.admit(u64::MAX)?;
        let meter = match &self.ticket {
            Some(t) => Arc::clone(t.meter()),
            None => Arc::new(Meter::default()),
        };
        self.stream
            .timed()
            .start_body(meter)
            .map_err(Error::Disconnected)
    }

    /// The stream and the bytes read beyond what was consumed.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let rest = self.buf[self.pos..self.filled].to_vec();
        (self.stream, rest)
    }

    /// Whether a whole request header (or a frame too broken to wait for)
    /// is already buffered, so that it can be served without waiting.
    pub fn has_request(&self) -> bool {
        frame_ready(&self.buf[self.pos..self.filled])
    }

    /// The bytes read ahead and not yet consumed (a front end that parses
    /// its own request heads looks at them without reading the socket;
    /// [`BufRead::consume`] takes them).
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// Bytes the last download put on the socket, also when it broke off
    /// (under TLS, with the records' overhead).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Sends raw bytes and flushes them.
    ///
    /// # Errors
    /// `TIMEOUT` or a lost connection.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes).map_err(net_error)?;
        self.stream.flush().map_err(net_error)
    }

    /// Whether a whole request is buffered, after taking what the socket
    /// already holds without waiting for more: a client that pipelines has
    /// usually sent the next request already, and it is served on this
    /// worker rather than after a trip through the event loop.
    pub fn request_ready(&mut self) -> bool {
        if self.has_request() {
            return true;
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == self.buf.len() {
            return false;
        }
        if self.stream.timed().set_nonblocking(true).is_err() {
            return false;
        }
        let read = self.stream.read(&mut self.buf[self.filled..]);
        if self.stream.timed().set_nonblocking(false).is_err() {
            // A socket that cannot block again cannot be served here; the
            // event loop makes it non-blocking anyway.
            return false;
        }
        // Nothing there yet (WouldBlock), or an end or error that the next
        // read meets again.
        if let Ok(n) = read {
            self.filled += n;
        }
        self.has_request()
    }

    /// Reads one request header, which must arrive whole within the
    /// header timeout. `Ok(None)` on a clean close.
    ///
    /// # Errors
    /// `BAD_FRAME`, `TIMEOUT`, or a lost connection.
    pub fn read_request(&mut self) -> Result<Option<Header>, Error> {
        let deadline = Instant::now() + self.limits.header;
        self.stream.timed().set_deadline(deadline);
        self.ticket = None;
        match read_header(self, MAX_REQUEST_HEADER) {
            Ok(h) => Ok(h),
            Err(FrameError::Io(e)) => Err(net_error(e)),
            Err(e) => Err(Error::BadFrame(e.to_string())),
        }
    }

    /// Sends one header frame.
    ///
    /// # Errors
    /// As [`Conn::send_encoded`].
    pub fn send(&mut self, header: &Header) -> Result<(), Error> {
        self.send_encoded(&encode_frame(header))
    }

    /// Sends a frame already encoded (length prefix and header).
    ///
    /// # Errors
    /// `INTERNAL` for a header over the protocol's reply cap (nothing is
    /// sent), `TIMEOUT` or a lost connection.
    pub fn send_encoded(&mut self, frame: &[u8]) -> Result<(), Error> {
        let len = frame.len().saturating_sub(4);
        if len > MAX_RESPONSE_HEADER as usize {
            // PROTOCOL.md caps reply headers at 16 MiB and clients treat
            // more as a broken server; only an `ls` of a huge folder gets
            // here. Nothing was sent, so an error reply can follow.
            return Err(Error::Internal(format!(
                "reply of {len} bytes is over the {MAX_RESPONSE_HEADER}-byte limit \
                 (too many files to list)"
            )));
        }
        self.stream.write_all(frame).map_err(net_error)?;
        self.stream.flush().map_err(net_error)
    }

    /// Prepares to read a body: from here on reads fail after the stall
    /// timeout without progress, or when the body is cut (below the rate
    /// floor, or giving way to another).
    ///
    /// # Errors
    /// `BUSY` (see [`Conn::admit`]), or a lost connection.
    pub fn begin_body(&mut self) -> Result<(), Error> {
        self.start_body()
    }

    /// Reads body bytes into `buf` until it is full (after
    /// [`Conn::begin_body`]). Returns how many arrived, also when the read
    /// then failed, so that the caller can keep them.
    ///
    /// # Errors
    /// `TIMEOUT` if the body stalls or trickles, or a lost connection.
    pub fn read_body(&mut self, buf: &mut [u8]) -> (usize, Result<(), Error>) {
        let mut got = 0;
        while got < buf.len() {
            match self.read(&mut buf[got..]) {
                Ok(0) => {
                    let eof = io::ErrorKind::UnexpectedEof.into();
                    return (got, Err(Error::Disconnected(eof)));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (got, Err(net_error(e))),
            }
        }
        (got, Ok(()))
    }

    /// Reads and drops `len` body bytes, so that the next frame can be
    /// read after a body the server could not keep.
    ///
    /// # Errors
    /// `TIMEOUT` if the body stalls, or a lost connection.
    pub fn discard_body(&mut self, len: u64) -> Result<(), Error> {
        let mut chunk = vec![0u8; BUF];
        let mut left = len;
        while left > 0 {
            let want = left.min(chunk.len() as u64) as usize;
            let (got, read) = self.read_body(&mut chunk[..want]);
            read?;
            left -= got as u64;
        }
        Ok(())
    }

    /// Streams a file body.
    ///
    /// # Errors
    /// A read error, a short file (changed under us), `TIMEOUT` or a lost
    /// connection. The connection must close after any of them.
    pub fn send_body(&mut self, body: Body) -> Result<u64, Error> {
        self.start_body()?;
        if let Some(t) = &self.ticket {
            t.sends();
        }
        let sent = match body.source {
            Source::File(file) => self.stream.send_file(&file, body.offset, body.len),
            remote => {
                let mut from = remote.reader(body.offset)?;
                send_reader(&mut self.stream, &mut from, body.len)
            }
        }
        .map_err(net_error);
        self.sent = self.ticket.take().map_or(0, |t| t.meter().moved());
        let sent = sent?;
        if sent != body.len {
            return Err(Error::Internal(format!(
                "file shrank while sending: {sent} of {} bytes",
                body.len
            )));
        }
        Ok(sent)
    }
}

impl<S: Stream> Read for Conn<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Large reads of an empty buffer go straight to the stream.
        if self.pos == self.filled && out.len() >= self.buf.len() {
            return self.stream.read(out);
        }
        let n = {
            let mut available = self.fill_buf()?;
            available.read(out)?
        };
        self.consume(n);
        Ok(n)
    }
}

impl<S: Stream> BufRead for Conn<S> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = self.stream.read(&mut self.buf)?;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.filled);
    }
}

/// Whether `bytes` begin with a whole frame header, or with a length no
/// frame may have (which is answered at once, without waiting).
pub fn frame_ready(bytes: &[u8]) -> bool {
    let Some(len) = bytes.get(..4) else {
        return false;
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    len == 0 || len > MAX_REQUEST_HEADER || bytes.len() - 4 >= len as usize
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn net_error(e: io::Error) -> Error {
    if is_timeout(&e) {
        Error::Timeout
    } else {
        Error::Disconnected(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ok_header, FileInfo};
    use std::net::{TcpListener, TcpStream};

    fn limits() -> Limits {
        let second = Duration::from_secs(1);
        Limits {
            header: second,
            stall: second,
            min_rate: 0,
            window: second,
        }
    }

    /// 60,000 files with 255-byte names list to about 20 MB of JSON.
    #[test]
    fn a_reply_over_16_mib_is_refused_and_the_next_one_goes_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut conn = Conn::new(Timed::new(stream), &[], limits());
        let files: Vec<FileInfo> = (0..60_000)
            .map(|i| FileInfo {
                name: format!("{i:06}{}", "x".repeat(249)),
                size: u64::MAX,
                mtime: 1_700_000_000,
                md5: Some("5d41402abc4b2a76b9719d911017c592".into()),
            })
            .collect();
        let mut fields = Header::new();
        fields.insert("files".into(), serde_json::to_value(files).unwrap());
        match conn.send(&ok_header(fields)) {
            Err(Error::Internal(m)) => assert!(m.contains("too many files"), "{m}"),
            other => panic!("{other:?}"),
        }
        conn.send(&ok_header(Header::new())).unwrap();
        let got = read_header(&mut peer, MAX_RESPONSE_HEADER).unwrap();
        assert_eq!(got, Some(ok_header(Header::new())));
    }

    #[test]
    fn pending_bytes_are_read_first_and_the_rest_given_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut pending = encode_frame(&serde_json::json!({"cmd": "ls"}));
        pending.extend_from_slice(&encode_frame(&serde_json::json!({"cmd": "whoami"}))[..3]);
        let mut conn = Conn::new(Timed::new(stream), &pending, limits());
        assert!(conn.has_request());
        assert_eq!(conn.read_request().unwrap().unwrap()["cmd"], "ls");
        assert!(!conn.has_request(), "three bytes of the next frame");
        peer.write_all(&encode_frame(&serde_json::json!({"cmd": "whoami"}))[3..])
            .unwrap();
        assert_eq!(conn.read_request().unwrap().unwrap()["cmd"], "whoami");
        let (_, rest) = conn.into_parts();
        assert!(rest.is_empty());
    }

    #[test]
    fn frames_are_ready_when_whole_or_hopeless() {
        let f = encode_frame(&serde_json::json!({"cmd": "ls"}));
        assert!(frame_ready(&f));
        assert!(!frame_ready(&f[..f.len() - 1]));
        assert!(!frame_ready(&f[..3]));
        assert!(frame_ready(&[0, 0, 0, 0]));
        assert!(frame_ready(&[0, 1, 0, 1]));
    }
}
