//! WebDAV (RFC 4918, classes 1 and 2) under `/dav/`, the root of the
//! signed-in user's disk, on the server's one port (docs/HTTP.md,
//! "WebDAV").
//!
//! Each method runs the same commands as protocol v1 and the page
//! (`put`, `get`, `delete`, `mkdir`, `rename`), so that paths, quotas,
//! staging, verified atomic uploads, `LOCKED` and the jail follow one set
//! of rules; WebDAV adds what only it has: properties, locks ([`crate::locks`],
//! which the other front ends honour too) and copies.
//!
//! - [`auth`]: HTTP Basic through the login limiter, cached per connection.
//! - [`props`]: `PROPFIND`; [`patch`]: `PROPPATCH`.
//! - [`read`]: `GET` and `HEAD`.
//! - [`write`]: `PUT`, `DELETE` and `MKCOL`; [`copy`]: `COPY` and `MOVE`.
//! - [`lock`]: `LOCK`, `UNLOCK` and the `If` header.
//! - [`xml`]: request bodies in, escaping out.

use std::sync::Arc;
use std::time::Instant;

use super::api::{self, Front};
use super::request::Request;
use super::response::Response;
use crate::commands::{lookup, Ctx, Then};
use crate::error::Error;
use crate::protocol::{Header, Reply};
use crate::server::conn::{Conn, Stream};
use crate::server::link::SessionState;
use crate::state::Shared;
use crate::users::User;

mod answer;
mod auth;
mod copy;
mod lock;
mod patch;
mod props;
mod read;
mod urls;
mod write;
pub mod xml;

pub use auth::{Remembered, Verified};

use answer::error_response;
use answer::{empty, refuse, text, xml_response};
use urls::{decode, href, parent, url_path};

/// Where the disk is mounted in the URL space.
pub const PREFIX: &str = "/dav";

/// The methods served, for `Allow`.
const ALLOW: &str =
    "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, COPY, MOVE, PROPFIND, PROPPATCH, LOCK, UNLOCK";

/// Whether a request path is WebDAV's.
pub fn is_dav(path: &str) -> bool {
    path == PREFIX || path.starts_with("/dav/")
}

/// A request in progress.
pub(super) struct Dav<'a> {
    shared: &'a Shared,
    front: &'a Front,
    req: &'a Request,
    user: Arc<User>,
    /// The path the request URL names (`""`: the root).
    path: String,
    /// Body bytes not read yet.
    body_left: u64,
    /// Whether the body comes in chunks (a `PUT` that declared its length
    /// in `X-Expected-Entity-Length`, as macOS Finder sends them).
    chunked: bool,
    /// Lock tokens the `If` header submitted.
    tokens: Vec<String>,
    log_name: Option<String>,
    bytes: u64,
}

/// What a method did.
pub(super) enum Answer {
    Send(Response),
    /// A response already sent, with its status.
    Sent(u16),
}

/// Why a method stopped.
pub(super) enum Fail {
    /// Answer this, and close after it if `.1`.
    Reply(Response, bool),
    /// The connection is broken: close without a word.
    Close,
}

pub(super) type Result<T> = std::result::Result<T, Fail>;

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        match e {
            Error::Disconnected(_) => Fail::Close,
            e => {
                let close = e.code().closes_connection();
                Fail::Reply(error_response(&e), close)
            }
        }
    }
}

impl Dav<'_> {
    /// Runs command `cmd` with `fields` as this user, with the request's
    /// lock tokens: its reply and what follows.
    fn run(
        &mut self,
        cmd: &str,
        mut fields: Header,
    ) -> std::result::Result<(Reply, Option<Then>), Error> {
        let command = lookup(cmd).ok_or_else(|| Error::UnknownCommand(cmd.into()))?;
        fields.insert("cmd".into(), serde_json::Value::from(cmd));
        let mut user = Some(Arc::clone(&self.user));
        let mut ctx = Ctx::new(self.shared, &mut user, &self.front.peer_ip);
        ctx.lock_tokens = self.tokens.clone();
        let reply = command.run(&mut ctx, &fields);
        let then = ctx.then.take();
        Ok((reply?, then))
    }

    /// The user's key.
    fn key(&self) -> &str {
        &self.user.key
    }

    /// Whether `path` may be changed (with `subtree`, all under it too)
    /// with the tokens this request submitted.
    fn unlocked(&self, path: &str, subtree: bool) -> std::result::Result<(), Error> {
        self.shared
            .locks
            .check(self.key(), path, subtree, &self.tokens)
    }

    /// Reads the request's XML body, if it has one.
    fn xml_body<S: Stream>(&mut self, conn: &mut Conn<S>) -> Result<Option<xml::Elem>> {
        if self.body_left == 0 {
            return Ok(None);
        }
        if self.body_left > xml::MAX_XML {
            return Err(Fail::Reply(text(413, "the XML body is too large"), true));
        }
        let mut buf = vec![0u8; self.body_left as usize];
        conn.admit(self.body_left)?;
        conn.begin_body()?;
        let (_, read) = conn.read_body(&mut buf);
        read?;
        self.body_left = 0;
        Ok(xml::parse(&buf)?)
    }
}

/// Answers one WebDAV request whose head was read; returns whether the
/// connection stays open.
pub fn handle<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    req: &Request,
    front: &Front,
    session: &mut SessionState,
) -> bool {
    let started = Instant::now();
    let chunked = write::is_chunked(req);
    let length = if chunked {
        write::expected_length(req)
    } else {
        req.content_length()
    };
    let body_left = match length {
        Ok(n) => n,
        Err(e) => {
            let r = error_response(&e);
            let _ = conn.send_raw(&r.to_bytes(true));
            api::log(
                shared,
                front,
                None,
                &api::what(req),
                None,
                r.status,
                0,
                started,
            );
            return false;
        }
    };
    let mut user_name = None;
    let mut log_name = None;
    let mut bytes = 0;
    let mut left = body_left;
    let outcome = match auth::authenticate(shared, front, req, session) {
        Err(e) if req.method == "OPTIONS" && matches!(e, Error::NotLoggedIn) => {
            Ok(Answer::Send(options()))
        }
        Err(e) => Err(Fail::from(e)),
        Ok(user) => {
            user_name = Some(user.name.clone());
            session.user = Some(Arc::clone(&user));
            continue_if_asked(conn, req, body_left);
            match decode(&req.path) {
                Err(e) => Err(Fail::from(e)),
                Ok(path) => {
                    let mut d = Dav {
                        shared,
                        front,
                        req,
                        user,
                        path,
                        body_left,
                        chunked,
                        tokens: Vec::new(),
                        log_name: None,
                        bytes: 0,
                    };
                    d.log_name = Some(d.path.clone());
                    let out = route(&mut d, conn);
                    log_name = d.log_name.take();
                    bytes = d.bytes;
                    left = d.body_left;
                    out
                }
            }
        }
    };
    let mut open = req.keep_alive();
    // A client still waiting for `100 Continue` sends no body: answer and
    // close rather than wait for it (RFC 9110 §10.1.1).
    if left > 0 && (chunked || expects_continue(req) && user_name.is_none()) {
        open = false;
    }
    let status = match outcome {
        Ok(Answer::Sent(status)) => status,
        Ok(Answer::Send(r)) => {
            open = open && api::drain_body(conn, left);
            open &= conn.send_raw(&api::bytes_of(req, &r, !open)).is_ok();
            r.status
        }
        Err(Fail::Reply(r, close)) => {
            open = open && !close && api::drain_body(conn, left);
            open &= conn.send_raw(&api::bytes_of(req, &r, !open)).is_ok();
            r.status
        }
        Err(Fail::Close) => {
            open = false;
            0
        }
    };
    api::log(
        shared,
        front,
        user_name.as_deref(),
        &api::what(req),
        log_name.as_deref(),
        status,
        bytes,
        started,
    );
    // The same run-of-errors cut as v1's and the page's.
    session.count_reply(shared, &front.peer, status >= 400) && open
}

fn expects_continue(req: &Request) -> bool {
    req.header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
}

fn continue_if_asked<S: Stream>(conn: &mut Conn<S>, req: &Request, body_left: u64) {
    if body_left > 0 && expects_continue(req) {
        let _ = conn.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}

fn options() -> Response {
    empty(200)
        .with("DAV", "1, 2")
        .with("MS-Author-Via", "DAV")
        .with("Allow", ALLOW)
        .with("Accept-Ranges", "bytes")
}

fn route<S: Stream>(d: &mut Dav<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    if d.req.method != "OPTIONS" {
        lock::check_if(d)?;
    }
    match d.req.method.as_str() {
        "OPTIONS" => Ok(Answer::Send(options())),
        "PROPFIND" => props::propfind(d, conn),
        "PROPPATCH" => patch::proppatch(d, conn),
        "GET" | "HEAD" => read::get(d, conn),
        "PUT" => write::put(d, conn),
        "DELETE" => write::delete(d),
        "MKCOL" => write::mkcol(d),
        "COPY" => copy::copy_or_move(d, false),
        "MOVE" => copy::copy_or_move(d, true),
        "LOCK" => lock::lock(d, conn),
        "UNLOCK" => lock::unlock(d),
        _ => Err(Fail::Reply(
            text(405, "method not allowed").with("Allow", ALLOW),
            false,
        )),
    }
}
