//! The JSON API under `/api/` and the page's files: one function per
//! endpoint, each running the same command as protocol v1
//! (`commands::lookup(..).run`), so that paths, quotas, `LOCKED` and
//! staging follow one set of rules. Every endpoint and status is in
//! `docs/HTTP.md`.
//!
//! - [`account`]: the session, signing in and out, registering, `whoami`.
//! - [`files`]: listings, downloads, whole-file uploads, `delete`,
//!   `mkdir`, `rename`.
//! - [`uploads`]: resumable uploads in pieces.
//! - [`paths`]: how a URL names a path.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::assets;
use super::request::Request;
use super::response::{head, Response};
use super::sessions::{same_token, Session};
use crate::commands::{lookup, Ctx, Then};
use crate::error::Error;
use crate::protocol::{Header, Reply};
use crate::server::conn::{Conn, Stream};
use crate::server::link::{PendingLogin, SessionState};
use crate::state::Shared;
use crate::users::User;

mod account;

pub use account::answer_login;
pub(crate) mod files;
pub mod paths;
mod uploads;

/// The session cookie's name.
pub const COOKIE: &str = "netdisk_session";
/// The header a state-changing request carries: the session's CSRF token
/// (any non-empty value before signing in).
pub const CSRF_HEADER: &str = "x-netdisk-csrf";
/// Largest JSON request body.
pub const MAX_JSON: u64 = 64 * 1024;
/// Largest upload piece one request may carry.
pub const MAX_PIECE: u64 = 64 << 20;

/// The connection a request came on.
pub struct Front {
    /// `IP:PORT`, for the log.
    pub peer: String,
    /// The IP address, for the login limits.
    pub peer_ip: String,
    /// Whether it is TLS.
    pub secure: bool,
    /// Whether the peer is this host.
    pub loopback: bool,
}

/// A request in progress.
struct Exchange<'a> {
    shared: &'a Shared,
    front: &'a Front,
    req: &'a Request,
    /// Body bytes not read yet.
    body_left: u64,
    user: Option<String>,
    name: Option<String>,
    bytes: u64,
    /// A login to check off this worker.
    login: Option<PendingLogin>,
}

/// What an endpoint did.
enum Answer {
    /// A response to send.
    Send(Response),
    /// A response already sent (a download).
    Sent { status: u16 },
    /// A login handed to the hasher's queue (`Exchange::login`): answered
    /// when it comes back ([`answer_login`]).
    Later,
}

/// Why an endpoint stopped.
enum Fail {
    /// Answer this, and close after it if `.1`.
    Reply(Response, bool),
    /// The connection is broken: close without a word.
    Close,
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        match e {
            Error::Disconnected(_) => Fail::Close,
            e => {
                let close = e.code().closes_connection();
                Fail::Reply(Response::error(&e), close)
            }
        }
    }
}

type Result<T> = std::result::Result<T, Fail>;

/// Answers one request whose head was read; returns whether the
/// connection stays open.
pub fn handle<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    req: &Request,
    front: &Front,
    session: &mut SessionState,
) -> bool {
    let started = Instant::now();
    let body_left = match req.content_length() {
        Ok(n) => n,
        Err(e) => {
            let r = Response::error(&e);
            let _ = conn.send_raw(&r.to_bytes(true));
            log(shared, front, None, &what(req), None, r.status, 0, started);
            return false;
        }
    };
    if body_left > 0
        && req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        let _ = conn.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let mut ex = Exchange {
        shared,
        front,
        req,
        body_left,
        user: None,
        name: None,
        bytes: 0,
        login: None,
    };
    let outcome = route(&mut ex, conn);
    let mut open = req.keep_alive();
    let status = match outcome {
        Ok(Answer::Later) => {
            // Logged when it is answered.
            session.login = ex.login.take();
            return true;
        }
        Ok(Answer::Sent { status }) => status,
        Ok(Answer::Send(r)) => {
            open &= finish_body(&mut ex, conn);
            open &= conn.send_raw(&bytes_of(req, &r, !open)).is_ok();
            r.status
        }
        Err(Fail::Reply(r, close)) => {
            open &= !close && finish_body(&mut ex, conn);
            open &= conn.send_raw(&bytes_of(req, &r, !open)).is_ok();
            r.status
        }
        Err(Fail::Close) => {
            open = false;
            0
        }
    };
    log(
        shared,
        front,
        ex.user.as_deref(),
        &what(req),
        ex.name.as_deref(),
        status,
        ex.bytes,
        started,
    );
    // The same run-of-errors cut as v1's (`SessionState::count_reply`).
    session.count_reply(shared, &front.peer, status >= 400) && open
}

/// A response's bytes: only its head for `HEAD`.
pub(crate) fn bytes_of(req: &Request, r: &Response, close: bool) -> Vec<u8> {
    if req.method == "HEAD" {
        head(r.status, &r.headers, r.body.len() as u64, close)
    } else {
        r.to_bytes(close)
    }
}

/// Takes a body nobody read, so that the next request can be read;
/// `false` if the connection must close instead.
fn finish_body<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> bool {
    let ok = drain_body(conn, ex.body_left);
    ex.body_left = 0;
    ok
}

/// Reads and drops the `left` body bytes of a request that was answered
/// without them; `false` if the connection must close instead (too many
/// to wait for, or a broken body). WebDAV shares it.
pub(crate) fn drain_body<S: Stream>(conn: &mut Conn<S>, left: u64) -> bool {
    if left == 0 {
        return true;
    }
    if left > MAX_PIECE || conn.begin_body().is_err() {
        return false;
    }
    conn.discard_body(left).is_ok()
}

fn route<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    let req = ex.req;
    let method = req.method.as_str();
    let path = req.path.as_str();
    if !path.starts_with("/api/") {
        return asset(method, path);
    }
    match (method, path) {
        ("GET", "/api/session") => account::session_info(ex),
        ("POST", "/api/login") => account::login(ex, conn),
        ("POST", "/api/register") => account::register(ex, conn),
        ("POST", "/api/logout") => account::logout(ex),
        ("GET", "/api/whoami") => account::whoami(ex),
        // `/api/files` is the root's listing as it was before folders.
        ("GET", "/api/list" | "/api/list/" | "/api/files") => files::list(ex, String::new()),
        ("POST", "/api/mkdir") => files::mkdir(ex, conn),
        ("POST", "/api/rename") => files::rename(ex, conn),
        (_, "/api/session" | "/api/login" | "/api/register" | "/api/logout" | "/api/whoami")
        | (_, "/api/list" | "/api/list/" | "/api/files" | "/api/mkdir" | "/api/rename") => {
            Err(not_allowed())
        }
        _ => {
            if let Some(tail) = path.strip_prefix("/api/list/") {
                let folder = paths::decode_folder(tail)?;
                ex.name = Some(folder.clone());
                match method {
                    "GET" => files::list(ex, folder),
                    _ => Err(not_allowed()),
                }
            } else if let Some(tail) = path.strip_prefix("/api/files/") {
                let path = paths::decode_path(tail)?;
                ex.name = Some(path.clone());
                match method {
                    "GET" | "HEAD" => files::download(ex, conn, path),
                    "PUT" => files::upload(ex, conn, path),
                    "DELETE" => files::delete(ex, path),
                    _ => Err(not_allowed()),
                }
            } else if let Some(tail) = path.strip_prefix("/api/uploads/") {
                let path = paths::decode_path(tail)?;
                ex.name = Some(path.clone());
                match method {
                    "GET" => uploads::status(ex, path),
                    "POST" => uploads::begin(ex, path),
                    "PUT" => uploads::piece(ex, conn, path),
                    "DELETE" => uploads::discard(ex, path),
                    _ => Err(not_allowed()),
                }
            } else {
                Err(Error::UnknownCommand(path.chars().take(64).collect()).into())
            }
        }
    }
}

fn not_allowed() -> Fail {
    use crate::error::ErrorCode;
    Fail::Reply(
        Response::code(405, ErrorCode::BadRequest, "method not allowed here"),
        false,
    )
}

fn ok(status: u16, reply: Reply) -> Answer {
    Answer::Send(Response::json(status, &Value::Object(reply)))
}

/// A request's fields: `(name, value)` pairs.
fn fields_of(pairs: &[(&str, Value)]) -> Header {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

/// Query flag `key`: absent or `false` is false, `true` is true.
///
/// # Errors
/// `BAD_REQUEST` for any other value.
fn flag(req: &Request, key: &str) -> Result<bool> {
    match req.param(key)?.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Error::bad_request(format!("{key} must be true or false")).into()),
    }
}

fn asset(method: &str, path: &str) -> Result<Answer> {
    let Some(a) = assets::find(path) else {
        return Err(Error::NotFound.into());
    };
    if method != "GET" && method != "HEAD" {
        return Err(not_allowed());
    }
    let r = Response {
        status: 200,
        headers: vec![
            ("Content-Type", a.content_type.into()),
            ("Cache-Control", "no-cache".into()),
        ],
        body: a.bytes.to_vec(),
    };
    Ok(Answer::Send(r))
}

/// Runs command `cmd` with `fields` as `user`: the reply and what
/// follows.
fn run(
    ex: &mut Exchange<'_>,
    user: Option<Arc<User>>,
    cmd: &str,
    mut fields: Header,
) -> std::result::Result<(Reply, Extra), Error> {
    let command = lookup(cmd).ok_or_else(|| Error::UnknownCommand(cmd.into()))?;
    fields.insert("cmd".into(), Value::from(cmd));
    let mut user = user;
    if let Some(u) = &user {
        ex.user = Some(u.name.clone());
    }
    let mut ctx = Ctx::new(ex.shared, &mut user, &ex.front.peer_ip);
    let reply = command.run(&mut ctx, &fields);
    if let Some(n) = ctx.log_name.take() {
        ex.name = Some(n);
    }
    let extra = Extra {
        then: ctx.then.take(),
        frame: ctx.frame.take(),
    };
    Ok((reply?, extra))
}

/// What a command leaves beside its reply.
struct Extra {
    then: Option<Then>,
    frame: Option<Arc<Vec<u8>>>,
}

/// The request's live session, if any.
fn session(ex: &Exchange<'_>) -> Option<Session> {
    let token = ex.req.cookie(COOKIE)?;
    ex.shared.web.get(token, ex.shared.config.web_idle)
}

/// The live session, or `NOT_LOGGED_IN`.
fn signed_in(ex: &mut Exchange<'_>) -> Result<Session> {
    let s = session(ex).ok_or(Error::NotLoggedIn)?;
    ex.user = Some(s.user.name.clone());
    Ok(s)
}

/// The live session of a state-changing request whose CSRF header
/// matches it.
fn guarded(ex: &mut Exchange<'_>) -> Result<Session> {
    let s = signed_in(ex)?;
    let sent = ex.req.header(CSRF_HEADER).unwrap_or("");
    if !same_token(sent, &s.csrf) {
        return Err(csrf_refused());
    }
    Ok(s)
}

fn csrf_refused() -> Fail {
    use crate::error::ErrorCode;
    Fail::Reply(
        Response::code(
            403,
            ErrorCode::BadRequest,
            "missing or wrong X-Netdisk-CSRF header",
        ),
        false,
    )
}

/// Reads a JSON object body (`Content-Type: application/json`).
fn json_body<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Header> {
    use crate::error::ErrorCode;
    let json = ex
        .req
        .header("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Err(Error::bad_request("the body must be application/json").into());
    }
    if ex.body_left > MAX_JSON {
        return Err(Fail::Reply(
            Response::code(413, ErrorCode::BadRequest, "the body is too large"),
            true,
        ));
    }
    let mut buf = vec![0u8; ex.body_left as usize];
    conn.admit(ex.body_left)?;
    conn.begin_body()?;
    let (_, read) = conn.read_body(&mut buf);
    read?;
    ex.body_left = 0;
    match serde_json::from_slice(&buf) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::bad_request("the body must be a JSON object").into()),
    }
}

impl Fail {
    /// The same failure, closing the connection after its answer.
    fn closing(self) -> Fail {
        match self {
            Fail::Reply(r, _) => Fail::Reply(r, true),
            Fail::Close => Fail::Close,
        }
    }
}

/// `METHOD path` of a request for its log line, cut short.
pub(crate) fn what(req: &Request) -> String {
    let mut s = format!("{} {}", req.method, req.path);
    if s.len() > 80 {
        let mut cut = 80;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    // Each piece of an upload is a line of its own, never a repeat.
    if let Ok(Some(offset)) = req.number("offset") {
        s.push_str(&format!(" @{offset}"));
    }
    s
}

/// One line per HTTP request on stderr, in the shape of v1's lines: the
/// peer, the user, the request, the file name, the bytes, the status.
#[allow(clippy::too_many_arguments)]
pub fn log(
    shared: &Shared,
    front: &Front,
    user: Option<&str>,
    what: &str,
    name: Option<&str>,
    status: u16,
    bytes: u64,
    started: Instant,
) {
    let who = user.unwrap_or("-");
    let ms = started.elapsed().as_millis();
    let shown = name.map_or_else(|| "-".to_string(), |n| format!("{n:?}"));
    let peer = &front.peer;
    let key = format!("{peer} {who} {what:?} {shown} {bytes} HTTP {status}");
    let line = format!("{peer} {who} {what:?} {shown} {bytes} {ms}ms HTTP {status}");
    let outcome = format!("HTTP {status}");
    let fields = crate::server::log::Fields {
        peer,
        user,
        request: what,
        name,
        bytes,
        ms,
        outcome: &outcome,
        status: Some(status),
        detail: None,
    };
    // Failed and anonymous lines within the log's budgets (`server::log`).
    let budgeted = status >= 400 || user.is_none();
    shared
        .log
        .request(&front.peer_ip, budgeted, &key, &line, &fields);
}
