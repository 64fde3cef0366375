//! Errors and the wire error codes of PROTOCOL.md ("Errors").
//!
//! [`Error`] says *why* something failed; [`Error::code`] is the one place
//! that maps a cause to the [`ErrorCode`] a client sees. Internal causes go
//! out as `INTERNAL` with a generic message: paths and OS text stay in the log.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

use crate::cli::human_size;

/// The error codes of the protocol, spelled as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BadFrame,
    BadRequest,
    UnknownCommand,
    NotLoggedIn,
    AuthFailed,
    RateLimited,
    UserExists,
    InvalidName,
    WeakPassword,
    NotFound,
    Exists,
    NotAFolder,
    IsAFolder,
    NotEmpty,
    Locked,
    ChecksumMismatch,
    QuotaExceeded,
    TlsRequired,
    RegistrationClosed,
    Timeout,
    Busy,
    Internal,
}

impl ErrorCode {
    /// Every code, in PROTOCOL.md's table order.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::BadFrame,
        ErrorCode::BadRequest,
        ErrorCode::UnknownCommand,
        ErrorCode::NotLoggedIn,
        ErrorCode::AuthFailed,
        ErrorCode::RateLimited,
        ErrorCode::UserExists,
        ErrorCode::InvalidName,
        ErrorCode::WeakPassword,
        ErrorCode::NotFound,
        ErrorCode::Exists,
        ErrorCode::NotAFolder,
        ErrorCode::IsAFolder,
        ErrorCode::NotEmpty,
        ErrorCode::Locked,
        ErrorCode::ChecksumMismatch,
        ErrorCode::QuotaExceeded,
        ErrorCode::TlsRequired,
        ErrorCode::RegistrationClosed,
        ErrorCode::Timeout,
        ErrorCode::Busy,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire, e.g. `"NOT_FOUND"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UnknownCommand => "UNKNOWN_COMMAND",
            ErrorCode::NotLoggedIn => "NOT_LOGGED_IN",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::UserExists => "USER_EXISTS",
            ErrorCode::InvalidName => "INVALID_NAME",
            ErrorCode::WeakPassword => "WEAK_PASSWORD",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Exists => "EXISTS",
            ErrorCode::NotAFolder => "NOT_A_FOLDER",
            ErrorCode::IsAFolder => "IS_A_FOLDER",
            ErrorCode::NotEmpty => "NOT_EMPTY",
            ErrorCode::Locked => "LOCKED",
            ErrorCode::ChecksumMismatch => "CHECKSUM_MISMATCH",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::TlsRequired => "TLS_REQUIRED",
            ErrorCode::RegistrationClosed => "REGISTRATION_CLOSED",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Busy => "BUSY",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// Parses a wire code; `None` for a code this version does not know.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the server closes the connection after sending this code.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::BadFrame | ErrorCode::TlsRequired | ErrorCode::Timeout | ErrorCode::Busy
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request failed, by cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The frame itself is broken; the stream cannot be resynchronised.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// A field is missing or ill-typed, or an offset is out of range.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// `cmd` is a string that names no command.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("this command needs a login")]
    NotLoggedIn,
    #[error("wrong user name or password")]
    AuthFailed,
    /// Too many failed logins: the seconds until the limit that was hit
    /// starts over.
    #[error("too many failed logins; try again in {0} s")]
    RateLimited(u64),
    /// Logins that get in faster than the server's pace: the seconds until
    /// the next may.
    #[error("too many logins at once; try again in {0} s")]
    LoginsTooFast(u64),
    /// Too many accounts registered from one address lately.
    #[error("too many registrations from this address; try again later")]
    RegisterLimited,
    #[error("this server is closed to registration; ask its admin for an account")]
    RegistrationClosed,
    #[error("that user name is taken")]
    UserExists,
    /// A user or file name breaks PROTOCOL.md's naming rules.
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    #[error("password must be 8 to 1024 bytes")]
    WeakPassword,
    #[error("no such file or folder")]
    NotFound,
    /// `discard` of a name with no unfinished upload.
    #[error("there is no unfinished upload of that name")]
    NothingStaged,
    #[error("a file or folder with that name exists")]
    Exists,
    /// A path goes through a file (`a/b` where `a` is a file), or `ls` of
    /// a file.
    #[error("not a folder: {0}")]
    NotAFolder(String),
    /// `put`, `get` or `discard` of a path that is a folder.
    #[error("that is a folder")]
    IsAFolder,
    #[error("the folder is not empty; delete it with recursive to remove all it holds")]
    NotEmpty,
    #[error("another connection is uploading that name")]
    Locked,
    #[error("MD5 mismatch: the upload was discarded")]
    ChecksumMismatch,
    /// An upload that does not fit: its size, what is left of the quota
    /// (after the other unfinished uploads), and the quota.
    #[error(
        "quota exceeded: needs {}, {} left of {}",
        human_size(*needs),
        human_size(*left),
        human_size(*quota)
    )]
    QuotaExceeded { needs: u64, left: u64, quota: u64 },
    /// The user holds the most unfinished uploads allowed (the number).
    #[error(
        "quota exceeded: {0} unfinished uploads already; finish them, or drop one with `discard`"
    )]
    TooManyStaged(usize),
    /// The user holds the most files allowed (the number).
    #[error("quota exceeded: {0} files is the most one user may hold")]
    TooManyFiles(u64),
    #[error("idle or stalled for too long")]
    Timeout,
    /// The server has no room for this now (no transfer slot, say).
    #[error("{0}")]
    Busy(String),
    /// A server-side I/O failure (disk full, permissions, ...).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// Any other server-side failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// The peer closed or broke the connection mid-request: nobody to answer.
    #[error("connection lost: {0}")]
    Disconnected(io::Error),
}

impl Error {
    /// The wire code for this cause: the only such mapping in the crate.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadFrame(_) => ErrorCode::BadFrame,
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::UnknownCommand(_) => ErrorCode::UnknownCommand,
            Error::NotLoggedIn => ErrorCode::NotLoggedIn,
            Error::AuthFailed => ErrorCode::AuthFailed,
            Error::RateLimited(_) | Error::LoginsTooFast(_) | Error::RegisterLimited => {
                ErrorCode::RateLimited
            }
            Error::RegistrationClosed => ErrorCode::RegistrationClosed,
            Error::UserExists => ErrorCode::UserExists,
            Error::InvalidName(_) => ErrorCode::InvalidName,
            Error::WeakPassword => ErrorCode::WeakPassword,
            Error::NotFound | Error::NothingStaged => ErrorCode::NotFound,
            Error::Exists => ErrorCode::Exists,
            Error::NotAFolder(_) => ErrorCode::NotAFolder,
            Error::IsAFolder => ErrorCode::IsAFolder,
            Error::NotEmpty => ErrorCode::NotEmpty,
            Error::Locked => ErrorCode::Locked,
            Error::ChecksumMismatch => ErrorCode::ChecksumMismatch,
            Error::QuotaExceeded { .. } | Error::TooManyStaged(_) | Error::TooManyFiles(_) => {
                ErrorCode::QuotaExceeded
            }
            Error::Timeout => ErrorCode::Timeout,
            Error::Busy(_) => ErrorCode::Busy,
            Error::Io(_) | Error::Internal(_) | Error::Disconnected(_) => ErrorCode::Internal,
        }
    }

    /// The `message` sent to the client: never a path or OS text.
    pub fn public_message(&self) -> String {
        match self {
            Error::Io(e) if is_disk_full(e) => "server storage is full".to_string(),
            Error::Io(_) | Error::Internal(_) | Error::Disconnected(_) => {
                "internal server error".to_string()
            }
            other => other.to_string(),
        }
    }

    /// Shorthand for a [`Error::BadRequest`].
    pub fn bad_request(msg: impl fmt::Display) -> Error {
        Error::BadRequest(msg.to_string())
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_names() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ErrorCode::parse("NOPE"), None);
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = Error::Io(io::Error::other("/srv/data/alice/secret: EIO"));
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(!e.public_message().contains("/srv"));
        let full = Error::Io(io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(full.public_message(), "server storage is full");
    }

    #[test]
    fn only_frame_tls_timeout_and_busy_close() {
        let closing: Vec<_> = ErrorCode::ALL
            .into_iter()
            .filter(|c| c.closes_connection())
            .collect();
        assert_eq!(
            closing,
            [
                ErrorCode::BadFrame,
                ErrorCode::TlsRequired,
                ErrorCode::Timeout,
                ErrorCode::Busy
            ]
        );
    }
}
