//! The server as the client sees it: where it is, who to log in as,
//! and the connection, opened when first needed.
//!
//! Every new connection goes through [`Remote::open`], which retries a
//! few times with backoff when the server answers `BUSY` (PROTOCOL.md: the
//! reply to the first request on a fresh connection, then a close). A
//! connection that broke, timed out or was left in the middle of a body is
//! dropped, and the next command opens a new one and logs in again.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::exit::{Coded, Exit};
use super::output::{clean, Plain};
use crate::client::{Client, ClientError, Security};
use crate::commands::ping;
use crate::error::ErrorCode;
use crate::protocol::Password;
use crate::tls::client::Trust;

/// Attempts at a new connection while the server is busy.
const BUSY_TRIES: u32 = 4;
/// Wait before the first retry; doubled before each later one.
const BUSY_BACKOFF: Duration = Duration::from_millis(200);

/// A user name and password to log in with.
#[derive(Clone, Debug)]
pub struct Account {
    pub user: String,
    pub password: Password,
}

/// Connection state shared by one-shot commands and the shell.
pub struct Remote {
    /// `host:port` of the server.
    pub addr: String,
    /// TLS or not, and whom to trust.
    security: Security,
    /// No progress bars or notes.
    pub quiet: bool,
    /// The folder paths are relative to (the shell's `cd`); `""`, the
    /// top folder, for one-shot commands.
    pub cwd: String,
    /// Who new connections log in as; `None` until someone logs in.
    account: Option<Account>,
    client: Option<Client>,
}

impl Remote {
    /// A session without a connection yet.
    pub fn new(addr: &str, security: Security, quiet: bool) -> Remote {
        Remote {
            addr: addr.to_string(),
            security,
            quiet,
            cwd: String::new(),
            account: None,
            client: None,
        }
    }

    /// The password of the account logged in as, if any.
    pub fn password(&self) -> Option<&str> {
        self.account.as_ref().map(|a| a.password.expose())
    }

    /// Logs in as `account` on the first connection (for one-shot
    /// commands: no round trip until one is needed).
    pub fn set_account(&mut self, account: Account) {
        self.account = Some(account);
    }

    /// Opens a connection whose first request is `first`, retrying while
    /// the server is busy.
    ///
    /// # Errors
    /// Connection refused (naming the address), still busy after
    /// [`BUSY_TRIES`], or `first`'s own error.
    pub fn open<T>(
        &self,
        mut first: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> anyhow::Result<(Client, T)> {
        let mut wait = BUSY_BACKOFF;
        for attempt in 1..=BUSY_TRIES {
            let mut client = self.connect()?;
            match first(&mut client) {
                Ok(v) => return Ok((client, v)),
                Err(e) if is_busy(&e) && attempt < BUSY_TRIES => {
                    thread::sleep(wait);
                    wait *= 2;
                }
                Err(e) if e.code() == Some(ErrorCode::Busy) => {
                    return Err(Coded::new(
                        Exit::Network,
                        format!(
                            "the server at {} is busy; gave up after {BUSY_TRIES} tries",
                            clean(&self.addr)
                        ),
                    )
                    .into())
                }
                Err(e) => return Err(Plain(e).into()),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// A new connection. A server met for the first time is shown to the
    /// user on a terminal, who may trust it (trust on first use).
    fn connect(&self) -> anyhow::Result<Client> {
        match Client::connect_with(&self.addr, &self.security) {
            Err(ClientError::Untrusted {
                server,
                trust: Trust::Unknown { fingerprint },
            }) if super::prompt::interactive() => {
                if !super::prompt::trust(&server, &fingerprint)? {
                    return Err(
                        Coded::new(Exit::Auth, "not connecting to an untrusted server").into(),
                    );
                }
                let known = &self.security.known;
                known
                    .add(&server, &fingerprint)
                    .map_err(|e| anyhow!("cannot save the fingerprint: {e}"))?;
                eprintln!(
                    "trusted; the fingerprint of {} is saved in {} \
                     (`netdisk known-servers` lists and forgets them)",
                    clean(&server),
                    known.path.display()
                );
                Client::connect_with(&self.addr, &self.security).map_err(|e| Plain(e).into())
            }
            other => other.map_err(|e| Plain(e).into()),
        }
    }

    /// A new connection logged in as the session's account.
    ///
    /// # Errors
    /// As [`Remote::open`]; "not logged in" without an account.
    pub fn connect_logged_in(&self) -> anyhow::Result<Client> {
        let account = self
            .account
            .clone()
            .ok_or_else(|| Coded::new(Exit::Auth, "not logged in (use `login NAME` first)"))?;
        let (client, _) = self.open(|c| c.login(&account.user, &account.password))?;
        Ok(client)
    }

    /// The open connection, logging in on a new one if needed.
    ///
    /// # Errors
    /// As [`Remote::connect_logged_in`].
    pub fn client(&mut self) -> anyhow::Result<&mut Client> {
        if self.live_client().is_none() {
            self.client = Some(self.connect_logged_in()?);
        }
        // Just set if it was empty.
        Ok(self.client.as_mut().expect("connection is open"))
    }

    /// Runs one request on the session's connection; drops the connection
    /// if the error left it unusable.
    ///
    /// # Errors
    /// The request's error, in plain words.
    pub fn call<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> anyhow::Result<T> {
        let result = f(self.client()?);
        if let Err(e) = &result {
            if is_broken(e) {
                self.client = None;
            }
        }
        result.map_err(|e| Plain(e).into())
    }

    /// `login`: on the open connection if there is one, else on a new one.
    /// On success the account is kept for later connections.
    ///
    /// # Errors
    /// `AUTH_FAILED` and the like, in plain words.
    pub fn login(&mut self, account: Account) -> anyhow::Result<String> {
        let name = self.anywhere(true, |c| c.login(&account.user, &account.password))?;
        self.account = Some(account);
        Ok(name)
    }

    /// `register`: on the open connection if there is one, else on a new
    /// one. Does not change who the session is logged in as.
    ///
    /// # Errors
    /// `USER_EXISTS`, `INVALID_NAME`, `WEAK_PASSWORD`, in plain words.
    pub fn register(&mut self, account: &Account) -> anyhow::Result<()> {
        self.anywhere(true, |c| c.register(&account.user, &account.password))
    }

    /// `ping`: on the open connection if there is one (logged in or not),
    /// else on a new anonymous one, kept while nobody is logged in. Returns the reply and
    /// the round-trip time of the request.
    ///
    /// # Errors
    /// `BAD_REQUEST` for a message too long, a connection failure, in
    /// plain words.
    pub fn ping(&mut self, message: Option<&str>) -> anyhow::Result<(ping::Answer, Duration)> {
        // Later commands take a kept connection as logged in.
        let keep = self.account.is_none();
        self.anywhere(keep, |c| {
            let start = Instant::now();
            c.ping(message).map(|a| (a, start.elapsed()))
        })
    }

    /// Runs `f` on the open connection if there is one (dropping it if `f`
    /// broke it), else on a new one, which is kept if `keep_new`.
    fn anywhere<T>(
        &mut self,
        keep_new: bool,
        mut f: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> anyhow::Result<T> {
        if let Some(c) = self.live_client() {
            let r = f(c);
            if r.as_ref().is_err_and(is_broken) {
                self.client = None;
            }
            return Ok(r.map_err(Plain)?);
        }
        let (mut c, v) = self.open(f)?;
        if keep_new {
            self.client = Some(c);
        } else {
            let _ = c.quit();
        }
        Ok(v)
    }

    /// The open connection, unless the server has closed it meanwhile (a
    /// shell left idle finds its connection timed out).
    fn live_client(&mut self) -> Option<&mut Client> {
        if self.client.as_mut().is_some_and(Client::is_stale) {
            self.client = None;
        }
        self.client.as_mut()
    }

    /// Takes the connection out (for a transfer pool), if one is open.
    pub fn take_client(&mut self) -> Option<Client> {
        self.live_client();
        self.client.take()
    }

    /// Gives a healthy connection back.
    pub fn return_client(&mut self, client: Client) {
        self.client = Some(client);
    }

    /// Drops the connection, e.g. after a transfer failed mid-body.
    pub fn drop_client(&mut self) {
        self.client = None;
    }

    /// Says `quit` politely and closes the connection.
    pub fn close(&mut self) {
        if let Some(mut c) = self.client.take() {
            let _ = c.quit();
        }
    }
}

/// `BUSY`, or a connection the server closed before answering the first
/// request: it may have sent `BUSY` and closed before the request arrived,
/// and the reset can then overtake the reply.
fn is_busy(e: &ClientError) -> bool {
    match e {
        ClientError::Server { code, .. } => *code == Some(ErrorCode::Busy),
        ClientError::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Whether the connection cannot carry another request after `e`.
pub fn is_broken(e: &ClientError) -> bool {
    match e {
        ClientError::Server { code, .. } => code.is_some_and(ErrorCode::closes_connection),
        ClientError::Connect { .. } | ClientError::Tls { .. } | ClientError::Untrusted { .. } => {
            false
        }
        ClientError::Timeout | ClientError::Io(_) | ClientError::Protocol(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: ErrorCode) -> ClientError {
        ClientError::Server {
            code: Some(code),
            raw: code.as_str().into(),
            message: String::new(),
        }
    }

    #[test]
    fn busy_and_early_close_are_retried_nothing_else() {
        assert!(is_busy(&server(ErrorCode::Busy)));
        assert!(is_busy(&ClientError::Io(
            io::ErrorKind::ConnectionReset.into()
        )));
        assert!(!is_busy(&server(ErrorCode::AuthFailed)));
        assert!(!is_busy(&ClientError::Timeout));
    }

    #[test]
    fn closing_codes_break_the_connection() {
        assert!(is_broken(&server(ErrorCode::Timeout)));
        assert!(is_broken(&ClientError::Timeout));
        assert!(!is_broken(&server(ErrorCode::NotFound)));
    }
}
