//! One client connection: frames and bodies, each read bounded in size and
//! time.
//!
//! Waiting for a request is bounded by the idle timeout and checks the
//! server's stop flag a few times a second; once a frame has begun, the
//! whole header must arrive within the idle timeout too, so a client
//! dribbling bytes cannot hold a worker. Body reads and writes fail after
//! the stall timeout without progress.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::protocol::{
    encode_frame, read_header, FrameError, Header, Timed, MAX_REQUEST_HEADER, MAX_RESPONSE_HEADER,
};

/// How often an idle connection looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);

/// A file body to stream after a reply.
pub struct Body {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

/// A server-side connection.
pub struct Conn {
    reader: BufReader<Timed>,
    writer: TcpStream,
    idle: Duration,
    stall: Duration,
    stop: Arc<AtomicBool>,
}

impl Conn {
    /// Wraps an accepted stream.
    ///
    /// # Errors
    /// If the socket options cannot be set.
    pub fn new(
        stream: TcpStream,
        idle: Duration,
        stall: Duration,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(stall))?;
        let writer = stream.try_clone()?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 * 1024, Timed::new(stream)),
            writer,
            idle,
            stall,
            stop,
        })
    }

    /// Waits for the next request. `Ok(None)` when the peer closed cleanly
    /// or the server is stopping.
    ///
    /// # Errors
    /// `TIMEOUT` when idle too long, `BAD_FRAME`, or a lost connection.
    pub fn wait_request(&mut self) -> Result<Option<Header>, Error> {
        let idle_until = Instant::now() + self.idle;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= idle_until {
                return Err(Error::Timeout);
            }
            self.reader
                .get_mut()
                .set_deadline((now + STOP_POLL).min(idle_until));
            match self.reader.fill_buf() {
                Ok([]) => return Ok(None),
                Ok(_) => break,
                Err(e) if is_timeout(&e) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Disconnected(e)),
            }
        }
        self.read_request()
    }

    /// Reads one request header that must arrive within the idle timeout.
    /// `Ok(None)` on a clean close.
    ///
    /// # Errors
    /// `BAD_FRAME`, `TIMEOUT`, or a lost connection.
    pub fn read_request(&mut self) -> Result<Option<Header>, Error> {
        self.reader
            .get_mut()
            .set_deadline(Instant::now() + self.idle);
        match read_header(&mut self.reader, MAX_REQUEST_HEADER) {
            Ok(h) => Ok(h),
            Err(FrameError::Io(e)) => Err(net_error(e)),
            Err(e) => Err(Error::BadFrame(e.to_string())),
        }
    }

    /// Sends one header frame.
    ///
    /// # Errors
    /// `INTERNAL` for a header over the protocol's reply cap (nothing is
    /// sent), `TIMEOUT` or a lost connection.
    pub fn send(&mut self, header: &Header) -> Result<(), Error> {
        let frame = encode_frame(header);
        let len = frame.len() - 4;
        if len > MAX_RESPONSE_HEADER as usize {
            // PROTOCOL.md caps reply headers at 16 MiB and clients treat
            // more as a broken server; only an `ls` of a huge folder gets
            // here. Nothing was sent, so an error reply can follow.
            return Err(Error::Internal(format!(
                "reply of {len} bytes is over the {MAX_RESPONSE_HEADER}-byte limit \
                 (too many files to list)"
            )));
        }
        self.writer.write_all(&frame).map_err(net_error)
    }

    /// Sends a frame encoded by a command (length prefix and header).
    ///
    /// # Errors
    /// `INTERNAL` for a header over the protocol's reply cap (nothing is
    /// sent), `TIMEOUT` or a lost connection.
    pub fn send_encoded(&mut self, frame: &[u8]) -> Result<(), Error> {
        let len = frame.len().saturating_sub(4);
        if len > MAX_RESPONSE_HEADER as usize {
            return Err(Error::Internal(format!(
                "reply of {len} bytes is over the {MAX_RESPONSE_HEADER}-byte limit"
            )));
        }
        self.writer.write_all(frame).map_err(net_error)
    }

    /// Prepares to read a body: from here on reads fail after the stall
    /// timeout without progress, rather than at a header's deadline.
    ///
    /// # Errors
    /// A lost connection.
    pub fn begin_body(&mut self) -> Result<(), Error> {
        self.reader
            .get_mut()
            .clear_deadline(self.stall)
            .map_err(Error::Disconnected)
    }

    /// Reads body bytes into `buf` until it is full (after
    /// [`Conn::begin_body`]). Returns how many arrived, also when the read
    /// then failed, so that the caller can keep them.
    ///
    /// # Errors
    /// `TIMEOUT` if the body stalls, or a lost connection.
    pub fn read_body(&mut self, buf: &mut [u8]) -> (usize, Result<(), Error>) {
        let mut got = 0;
        while got < buf.len() {
            match self.reader.read(&mut buf[got..]) {
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
        let copied =
            io::copy(&mut (&mut self.reader).take(len), &mut io::sink()).map_err(net_error)?;
        if copied < len {
            return Err(Error::Disconnected(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    /// Streams a file body. `io::copy` from a file to a socket uses the
    /// kernel's zero-copy path (`sendfile`/`splice`) on Linux.
    ///
    /// # Errors
    /// A read error, a short file (changed under us), `TIMEOUT` or a lost
    /// connection. The connection must close after any of them.
    pub fn send_body(&mut self, body: Body) -> Result<u64, Error> {
        use std::io::Seek;
        let mut file = body.file;
        file.seek(io::SeekFrom::Start(body.offset))?;
        let sent = io::copy(&mut (&file).take(body.len), &mut self.writer).map_err(net_error)?;
        if sent != body.len {
            return Err(Error::Internal(format!(
                "file shrank while sending: {sent} of {} bytes",
                body.len
            )));
        }
        Ok(sent)
    }
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
    use crate::protocol::ok_header;
    use crate::storage::FileInfo;
    use std::net::TcpListener;

    /// 60,000 files with 255-byte names list to about 20 MB of JSON.
    #[test]
    fn a_reply_over_16_mib_is_refused_and_the_next_one_goes_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let second = Duration::from_secs(1);
        let mut conn = Conn::new(stream, second, second, stop).unwrap();
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
}
