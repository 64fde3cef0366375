//! A protocol client: one connection, one method per command.
//!
//! It speaks only PROTOCOL.md, builds requests from the commands' shared
//! `Args`, and turns error frames into [`ClientError::Server`] in one place
//! ([`Client::call`]). Every read is bounded: connect and read timeouts,
//! and reply headers of at most 16 MiB.

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::commands::{self, delete, get, login, ls, put, register, rename, whoami};
use crate::error::ErrorCode;
use crate::protocol::{encode_frame, read_header, FrameError, Header, Timed, MAX_RESPONSE_HEADER};
use crate::storage::FileInfo;
use crate::users::Password;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client waits for the server to say or take anything.
/// Generous: resuming a large upload makes the server re-hash its prefix.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the address.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// The server answered with an error frame.
    #[error("{message}")]
    Server {
        /// The wire code; `None` if this client does not know it.
        code: Option<ErrorCode>,
        /// The code as sent.
        raw: String,
        message: String,
    },
    /// The server did not answer in time.
    #[error("the server did not answer in time")]
    Timeout,
    /// The connection broke.
    #[error("connection to the server was lost: {0}")]
    Io(io::Error),
    /// The server sent something PROTOCOL.md does not allow.
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => *code,
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io(e),
        }
    }
}

/// Shorthand for client results.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// One connection to a server.
pub struct Client {
    reader: BufReader<Timed>,
    writer: TcpStream,
    /// How long a reply header, or any single read or write, may take.
    timeout: Duration,
}

impl Client {
    /// Connects to `addr` (`host:port`), trying each address it resolves to.
    ///
    /// # Errors
    /// [`ClientError::Connect`] naming the address if nothing answers.
    pub fn connect(addr: &str) -> Result<Client> {
        let fail = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "address resolves to nothing");
        for sa in addr.to_socket_addrs().map_err(fail)? {
            match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
                Ok(stream) => return Client::from_stream(stream).map_err(fail),
                Err(e) => last = e,
            }
        }
        Err(fail(last))
    }

    /// Wraps a connected stream.
    ///
    /// # Errors
    /// If socket options cannot be set.
    pub fn from_stream(stream: TcpStream) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Client {
            writer: stream.try_clone()?,
            reader: BufReader::with_capacity(256 * 1024, Timed::new(stream)),
            timeout: IO_TIMEOUT,
        })
    }

    /// Changes the timeout (by default [`IO_TIMEOUT`]).
    ///
    /// # Errors
    /// If the socket options cannot be set.
    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeout = timeout;
        self.writer.set_write_timeout(Some(timeout))?;
        self.reader.get_mut().clear_deadline(timeout)
    }

    /// Sends one request header and reads its reply header.
    ///
    /// # Errors
    /// [`ClientError::Server`] for an error frame; I/O and protocol errors.
    pub fn call(&mut self, request: &Header) -> Result<Header> {
        self.send(request)?;
        self.reply()
    }

    /// Sends a header frame without waiting for a reply.
    ///
    /// # Errors
    /// I/O errors.
    pub fn send(&mut self, header: &Header) -> Result<()> {
        self.writer.write_all(&encode_frame(header))?;
        Ok(())
    }

    /// Reads one reply header; error frames become [`ClientError::Server`].
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn reply(&mut self) -> Result<Header> {
        // The whole header within the timeout, however it trickles in; a
        // body after it only has to keep moving.
        self.reader
            .get_mut()
            .set_deadline(Instant::now() + self.timeout);
        let read = read_header(&mut self.reader, MAX_RESPONSE_HEADER);
        self.reader.get_mut().clear_deadline(self.timeout)?;
        let header = match read {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )))
            }
            Err(FrameError::Io(e)) => return Err(e.into()),
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        };
        match header.get("ok") {
            Some(Value::Bool(true)) => Ok(header),
            Some(Value::Bool(false)) => {
                let raw = header
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("UNKNOWN")
                    .to_string();
                let message = header
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                Err(ClientError::Server {
                    code: ErrorCode::parse(&raw),
                    raw,
                    message,
                })
            }
            _ => Err(ClientError::Protocol("reply without \"ok\"".into())),
        }
    }

    fn typed<A: Serialize, R: DeserializeOwned>(&mut self, cmd: &str, args: &A) -> Result<R> {
        let reply = self.call(&commands::request(cmd, args))?;
        decode(reply)
    }

    /// `register`.
    ///
    /// # Errors
    /// `INVALID_NAME`, `WEAK_PASSWORD`, `USER_EXISTS`, I/O.
    pub fn register(&mut self, user: &str, password: &Password) -> Result<()> {
        let args = register::Args {
            user: user.to_string(),
            password: password.clone(),
        };
        self.call(&commands::request("register", &args)).map(drop)
    }

    /// `login`; returns the user name as registered.
    ///
    /// # Errors
    /// `AUTH_FAILED`, `RATE_LIMITED`, I/O.
    pub fn login(&mut self, user: &str, password: &Password) -> Result<String> {
        let args = register::Args {
            user: user.to_string(),
            password: password.clone(),
        };
        let answer: login::Answer = self.typed("login", &args)?;
        Ok(answer.user)
    }

    /// `ls`.
    ///
    /// # Errors
    /// `NOT_LOGGED_IN`, I/O.
    pub fn ls(&mut self) -> Result<Vec<FileInfo>> {
        let answer: ls::Answer = self.typed("ls", &serde_json::Map::new())?;
        Ok(answer.files)
    }

    /// `whoami`.
    ///
    /// # Errors
    /// `NOT_LOGGED_IN`, I/O.
    pub fn whoami(&mut self) -> Result<whoami::Answer> {
        self.typed("whoami", &serde_json::Map::new())
    }

    /// `delete`.
    ///
    /// # Errors
    /// `NOT_FOUND`, `INVALID_NAME`, I/O.
    pub fn delete(&mut self, name: &str) -> Result<()> {
        let args = delete::Args { name: name.into() };
        self.call(&commands::request("delete", &args)).map(drop)
    }

    /// `discard`: drops the unfinished upload of `name`.
    ///
    /// # Errors
    /// `NOT_FOUND`, `LOCKED`, `INVALID_NAME`, I/O.
    pub fn discard(&mut self, name: &str) -> Result<()> {
        let args = delete::Args { name: name.into() };
        self.call(&commands::request("discard", &args)).map(drop)
    }

    /// `rename`.
    ///
    /// # Errors
    /// `NOT_FOUND`, `EXISTS`, `INVALID_NAME`, I/O.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let args = rename::Args {
            from: from.into(),
            to: to.into(),
        };
        self.call(&commands::request("rename", &args)).map(drop)
    }

    /// `quit`.
    ///
    /// # Errors
    /// I/O.
    pub fn quit(&mut self) -> Result<()> {
        self.call(&commands::request("quit", &serde_json::Map::new()))
            .map(drop)
    }

    /// `put` steps 1–2: returns the offset the body starts at.
    ///
    /// # Errors
    /// `INVALID_NAME`, `LOCKED`, `QUOTA_EXCEEDED`, I/O.
    pub fn put_begin(&mut self, name: &str, size: u64) -> Result<u64> {
        let args = put::Args {
            name: name.into(),
            size,
        };
        let ready: put::Ready = self.typed("put", &args)?;
        if ready.offset > size {
            return Err(ClientError::Protocol(format!(
                "offset {} past size {size}",
                ready.offset
            )));
        }
        Ok(ready.offset)
    }

    /// Writes body bytes (`put` step 3), in as many calls as the caller likes.
    ///
    /// # Errors
    /// I/O.
    pub fn write_body(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes)?;
        Ok(())
    }

    /// `put` steps 4–5: sends the whole file's MD5 and waits for the verdict.
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH`, `BAD_REQUEST`, I/O.
    pub fn put_end(&mut self, md5: &str) -> Result<put::Answer> {
        let digest = put::Digest { md5: md5.into() };
        let mut h = Header::new();
        h.extend(commands::reply(&digest));
        let reply = self.call(&h)?;
        decode(reply)
    }

    /// `get` steps 1–2: returns the reply; `answer.size - answer.offset`
    /// body bytes follow, to be read with [`Client::read_body_exact`].
    ///
    /// # Errors
    /// `NOT_FOUND`, `INVALID_NAME`, `BAD_REQUEST`, I/O.
    pub fn get_begin(&mut self, name: &str, offset: u64) -> Result<get::Answer> {
        let args = get::Args {
            name: name.into(),
            offset: Some(offset),
        };
        let answer: get::Answer = self.typed("get", &args)?;
        if answer.offset != offset || answer.offset > answer.size {
            return Err(ClientError::Protocol(
                "get reply with a wrong offset".into(),
            ));
        }
        if !crate::protocol::is_md5_hex(&answer.md5) {
            return Err(ClientError::Protocol(
                "get reply with an ill-typed md5".into(),
            ));
        }
        Ok(answer)
    }

    /// Reads exactly `buf.len()` body bytes.
    ///
    /// # Errors
    /// I/O, including an early close.
    pub fn read_body_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.reader.read_exact(buf)?;
        Ok(())
    }

    /// Whether this idle connection can no longer carry a request: the
    /// server closed it, or sent something nobody asked for (a `TIMEOUT`
    /// before closing an idle connection). Looks without waiting.
    pub fn is_stale(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref().get_ref();
        if stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        // Data or end of stream (Ok of any length) both mean stale.
        let stale =
            !matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        stream.set_nonblocking(false).is_err() || stale
    }
}

fn decode<R: DeserializeOwned>(mut reply: Header) -> Result<R> {
    reply.remove("ok");
    serde_json::from_value(Value::Object(reply))
        .map_err(|e| ClientError::Protocol(format!("unexpected reply: {e}")))
}
