//! The wire commands: one file per `cmd`, and the table that maps names to
//! them.
//!
//! Adding a command means one new file here, its `pub mod` line, and one
//! line in [`REGISTRY`].
//! Each file defines the command's `Args` (shared with the client, which
//! builds requests from them) and a unit struct implementing [`Command`].
//! Handlers return `Result<Reply, Error>`; the session turns errors into
//! error frames and logs the request.
//!
//! Handlers never see a socket: a command whose exchange goes on after its
//! first reply leaves a [`Then`] in its [`Ctx`] (a file to send, or a
//! [`put::Receive`] or [`put::OneGo`] phase to feed), and whichever front end carries the
//! request drives it. Handlers can thus be run without a connection.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::protocol::{Header, Reply};
use crate::state::Shared;
use crate::users::User;

pub mod delete;
pub mod discard;
pub mod get;
pub mod login;
pub mod ls;
pub mod mkdir;
pub mod ping;
pub mod put;
pub mod quit;
pub mod register;
pub mod rename;
pub mod whoami;

#[cfg(test)]
pub(crate) mod testing;

/// A wire command.
pub trait Command: Sync {
    /// The `cmd` string, exactly as on the wire.
    fn name(&self) -> &'static str;

    /// Whether an anonymous connection gets `NOT_LOGGED_IN`.
    fn requires_auth(&self) -> bool {
        true
    }

    /// Runs the command; the session writes the reply.
    ///
    /// # Errors
    /// Any [`Error`]; its code goes to the client.
    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error>;
}

/// Every command, looked up by [`lookup`].
pub static REGISTRY: &[&dyn Command] = &[
    &register::Register,
    &login::Login,
    &ls::Ls,
    &mkdir::Mkdir,
    &put::Put,
    &get::Get,
    &delete::Delete,
    &rename::Rename,
    &whoami::Whoami,
    &ping::Ping,
    &discard::Discard,
    &quit::Quit,
];

/// Finds the command called `name`.
pub fn lookup(name: &str) -> Option<&'static dyn Command> {
    REGISTRY.iter().copied().find(|c| c.name() == name)
}

/// What a handler can reach: the server's state, this connection's
/// session, and the fields of the request's log line.
pub struct Ctx<'a> {
    /// Users, storage and configuration.
    pub shared: &'a Shared,
    /// The logged-in user, if any.
    pub user: &'a mut Option<Arc<User>>,
    /// The peer's address, for rate limiting.
    pub peer: &'a str,
    /// Set by `quit`: close after the reply.
    pub close: bool,
    /// File name for the log line.
    pub log_name: Option<String>,
    /// Body bytes moved, for the log line.
    pub log_bytes: u64,
    /// What follows a successful reply.
    pub then: Option<Then>,
    /// A whole reply frame, already encoded, sent instead of the fields
    /// the handler returns (`ls`: a large reply is written once, straight
    /// into its frame, and may be shared between connections).
    pub frame: Option<Arc<Vec<u8>>>,
    /// The WebDAV lock tokens the request submitted (none for v1 and the
    /// page): a change to a locked path needs its lock's token.
    pub lock_tokens: Vec<String>,
}

/// The rest of an exchange after a command's first reply.
pub enum Then {
    /// Stream a file's bytes (`get`).
    Send(Body),
    /// Take an upload's bytes and then its digest (`put`).
    Receive(Box<put::Receive>),
    /// Take the body of an upload in one go, whatever its fate, with no
    /// reply before it; then answer once (`put` with `md5`).
    Absorb(Box<put::OneGo>),
}

/// A file body to stream after a reply.
pub struct Body {
    pub source: crate::disk::Source,
    pub offset: u64,
    pub len: u64,
    /// The file's modification time, Unix seconds (HTTP's Last-Modified).
    pub mtime: u64,
}

impl<'a> Ctx<'a> {
    /// A context for one request.
    pub fn new(shared: &'a Shared, user: &'a mut Option<Arc<User>>, peer: &'a str) -> Ctx<'a> {
        Ctx {
            shared,
            user,
            peer,
            close: false,
            log_name: None,
            log_bytes: 0,
            then: None,
            frame: None,
            lock_tokens: Vec::new(),
        }
    }
}

impl Ctx<'_> {
    /// The logged-in user. The session only runs commands that
    /// [`Command::requires_auth`] on logged-in connections.
    ///
    /// # Errors
    /// `NOT_LOGGED_IN` on an anonymous connection.
    pub fn user(&self) -> Result<Arc<User>, Error> {
        self.user.clone().ok_or(Error::NotLoggedIn)
    }

    /// The quota that applies to `user`: their own, else the server's.
    pub fn quota(&self, user: &User) -> Option<u64> {
        user.quota.or(self.shared.config.quota)
    }

    /// Checks that `user` may change `path` (and with `subtree`, what is
    /// inside it) under the WebDAV locks held.
    ///
    /// # Errors
    /// `LOCKED` when a lock whose token the request did not submit covers
    /// it.
    pub fn unlocked(&self, user: &User, path: &str, subtree: bool) -> Result<(), Error> {
        self.shared
            .locks
            .check(&user.key, path, subtree, &self.lock_tokens)
    }
}

/// Decodes a request's fields. Unknown fields, `cmd` among them, are
/// ignored (PROTOCOL.md: forward compatibility).
///
/// # Errors
/// `BAD_REQUEST` for a missing or ill-typed field.
pub fn parse<T: DeserializeOwned>(header: &Header) -> Result<T, Error> {
    serde_json::from_value(Value::Object(header.clone())).map_err(Error::bad_request)
}

/// The fields of a struct as a JSON object: a reply's fields, or a
/// request's (see [`request`]).
///
/// # Panics
/// If `T` does not serialise to a JSON object: a bug in a command.
pub fn fields<T: Serialize>(value: T) -> Reply {
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) => m,
        other => panic!("fields are not an object: {other:?}"),
    }
}

/// A request header for `cmd` with the fields of `args`, as clients send it.
///
/// # Panics
/// If `A` does not serialise to a JSON object: a bug in a command's `Args`.
pub fn request<A: Serialize>(cmd: &str, args: &A) -> Header {
    let mut h = Header::new();
    h.insert("cmd".into(), Value::from(cmd));
    h.extend(fields(args));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// PROTOCOL.md's command table.
    const SPEC: [&str; 12] = [
        "register", "login", "ls", "put", "get", "delete", "rename", "whoami", "discard", "ping",
        "quit", "mkdir",
    ];

    #[test]
    fn names_are_unique_lowercase_and_cover_the_spec() {
        let names: HashSet<_> = REGISTRY.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), REGISTRY.len(), "duplicate command name");
        for n in &names {
            assert_eq!(n.to_lowercase(), *n);
        }
        assert_eq!(names, SPEC.into_iter().collect());
    }

    #[test]
    fn only_register_login_ping_and_quit_are_anonymous() {
        let anon: HashSet<_> = REGISTRY
            .iter()
            .filter(|c| !c.requires_auth())
            .map(|c| c.name())
            .collect();
        assert_eq!(
            anon,
            ["register", "login", "ping", "quit"].into_iter().collect()
        );
    }

    #[test]
    fn lookup_finds_each_and_nothing_else() {
        for n in SPEC {
            assert_eq!(lookup(n).map(|c| c.name()), Some(n));
        }
        assert!(lookup("LS").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn parse_rejects_ill_typed_integers() {
        let h: Header = serde_json::from_str(r#"{"cmd":"put","name":"a","size":5.0}"#).unwrap();
        assert!(matches!(parse::<put::Args>(&h), Err(Error::BadRequest(_))));
        let h: Header = serde_json::from_str(r#"{"cmd":"put","name":"a","size":-1}"#).unwrap();
        assert!(matches!(parse::<put::Args>(&h), Err(Error::BadRequest(_))));
        let h: Header =
            serde_json::from_str(r#"{"cmd":"put","name":"a","size":18446744073709551615,"x":1}"#)
                .unwrap();
        assert_eq!(parse::<put::Args>(&h).unwrap().size, u64::MAX);
    }
}
