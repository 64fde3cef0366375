//! Exit codes: one per kind of failure, so that scripts can tell them
//! apart (as curl's and rsync's do). The README has the table.
//!
//! Errors reach `main` as `anyhow::Error`; the typed cause stays in the
//! chain ([`Plain`] for a [`ClientError`], [`Coded`] for the client's own
//! failures), and [`code`] is the one place that maps a cause to a code.

use std::fmt;

use super::output::Plain;
use crate::client::ClientError;
use crate::error::ErrorCode;

/// What a failed command exits with. Usage errors (2) are clap's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Anything else: a local file error, a request the server refused
    /// (name taken, quota, locked, ...), several failures of mixed kinds.
    Failure = 1,
    /// Bad options or arguments (clap).
    Usage = 2,
    /// No or wrong credentials, too many failed logins, not logged in; or
    /// the server's key is not trusted (unknown and not accepted, or
    /// changed).
    Auth = 3,
    /// No such file on the server.
    NotFound = 4,
    /// A transfer arrived damaged: MD5 mismatch.
    Checksum = 5,
    /// No connection, a lost connection, a timeout, a busy server.
    Network = 6,
    /// The server failed: an internal error, or a reply that breaks the
    /// protocol.
    Server = 7,
    /// The server takes plaintext only from its own host: use TLS.
    TlsRequired = 8,
}

impl Exit {
    /// Every code, in the README's table order.
    pub const ALL: [Exit; 8] = [
        Exit::Failure,
        Exit::Usage,
        Exit::Auth,
        Exit::NotFound,
        Exit::Checksum,
        Exit::Network,
        Exit::Server,
        Exit::TlsRequired,
    ];

    /// The process exit status.
    pub fn status(self) -> u8 {
        self as u8
    }
}

/// A failure of the client's own with the exit code it stands for.
#[derive(Debug)]
pub struct Coded {
    /// The code the process exits with.
    pub exit: Exit,
    message: String,
}

impl Coded {
    /// `message` for the user, exiting with `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Coded {
        Coded {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// The exit code for `e`: that of the outermost typed cause in its chain,
/// else [`Exit::Failure`].
pub fn code(e: &anyhow::Error) -> Exit {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.exit;
        }
        if let Some(p) = cause.downcast_ref::<Plain>() {
            return client_code(&p.0);
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return client_code(c);
        }
    }
    Exit::Failure
}

/// The server's error code in `e`'s chain, if the server refused.
pub fn refusal(e: &anyhow::Error) -> Option<ErrorCode> {
    e.chain().find_map(|cause| {
        let client = cause
            .downcast_ref::<Plain>()
            .map(|p| &p.0)
            .or_else(|| cause.downcast_ref::<ClientError>())?;
        client.code()
    })
}

/// The exit code for a client error.
pub fn client_code(e: &ClientError) -> Exit {
    match e {
        ClientError::Connect { .. }
        | ClientError::Timeout
        | ClientError::Io(_)
        | ClientError::Tls { .. } => Exit::Network,
        // The server failed to prove who it is.
        ClientError::Untrusted { .. } => Exit::Auth,
        ClientError::Protocol(_) => Exit::Server,
        ClientError::Server { code: None, .. } => Exit::Server,
        ClientError::Server {
            code: Some(code), ..
        } => server_code(*code),
    }
}

fn server_code(code: ErrorCode) -> Exit {
    match code {
        ErrorCode::AuthFailed | ErrorCode::RateLimited | ErrorCode::NotLoggedIn => Exit::Auth,
        ErrorCode::NotFound => Exit::NotFound,
        ErrorCode::ChecksumMismatch => Exit::Checksum,
        ErrorCode::Timeout | ErrorCode::Busy => Exit::Network,
        ErrorCode::TlsRequired => Exit::TlsRequired,
        ErrorCode::Internal
        | ErrorCode::BadFrame
        | ErrorCode::BadRequest
        | ErrorCode::UnknownCommand => Exit::Server,
        ErrorCode::UserExists
        | ErrorCode::InvalidName
        | ErrorCode::WeakPassword
        | ErrorCode::Exists
        | ErrorCode::NotAFolder
        | ErrorCode::IsAFolder
        | ErrorCode::NotEmpty
        | ErrorCode::Locked
        | ErrorCode::QuotaExceeded
        | ErrorCode::RegistrationClosed => Exit::Failure,
    }
}

/// The code for several failures: theirs if they agree, else
/// [`Exit::Failure`].
pub fn common(codes: impl IntoIterator<Item = Exit>) -> Exit {
    let mut codes = codes.into_iter();
    let Some(first) = codes.next() else {
        return Exit::Failure;
    };
    if codes.all(|c| c == first) {
        first
    } else {
        Exit::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use std::collections::HashSet;
    use std::io;

    fn server(code: ErrorCode) -> anyhow::Error {
        Plain(ClientError::Server {
            code: Some(code),
            raw: code.as_str().into(),
            message: String::new(),
        })
        .into()
    }

    #[test]
    fn codes_are_distinct() {
        let all: HashSet<u8> = Exit::ALL.iter().map(|e| e.status()).collect();
        assert_eq!(all.len(), Exit::ALL.len());
        assert!(!all.contains(&0));
    }

    #[test]
    fn typed_causes_survive_context() {
        let e = server(ErrorCode::NotFound).context("cannot download x");
        assert_eq!(code(&e), Exit::NotFound);
        let e = Err::<(), _>(server(ErrorCode::AuthFailed))
            .context("a")
            .context("b")
            .unwrap_err();
        assert_eq!(code(&e), Exit::Auth);
        let e = anyhow::Error::new(Coded::new(Exit::Checksum, "MD5")).context("x");
        assert_eq!(code(&e), Exit::Checksum);
        let e = anyhow::anyhow!("local trouble");
        assert_eq!(code(&e), Exit::Failure);
    }

    #[test]
    fn every_server_code_has_a_kind() {
        assert_eq!(code(&server(ErrorCode::ChecksumMismatch)), Exit::Checksum);
        assert_eq!(code(&server(ErrorCode::Busy)), Exit::Network);
        assert_eq!(code(&server(ErrorCode::Internal)), Exit::Server);
        assert_eq!(code(&server(ErrorCode::QuotaExceeded)), Exit::Failure);
        let lost = Plain(ClientError::Io(io::ErrorKind::ConnectionReset.into()));
        assert_eq!(code(&lost.into()), Exit::Network);
        let odd = Plain(ClientError::Protocol("x".into()));
        assert_eq!(code(&odd.into()), Exit::Server);
    }

    #[test]
    fn several_failures_share_a_code_only_if_they_agree() {
        assert_eq!(common([Exit::NotFound, Exit::NotFound]), Exit::NotFound);
        assert_eq!(common([Exit::NotFound, Exit::Network]), Exit::Failure);
        assert_eq!(common([]), Exit::Failure);
    }
}
