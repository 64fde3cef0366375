//! The JSON API under `/api/` and the page's files: one function per
//! endpoint, each running the same command as protocol v1
//! (`commands::lookup(..).run`), so that names, quotas, `LOCKED` and
//! staging follow one set of rules. Every endpoint and status is in
//! `docs/HTTP.md`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::assets;
use super::request::{decode_name, Request};
use super::response::{head, Response};
use super::sessions::{same_token, Refused, Session};
use crate::commands::{self, lookup, Ctx, Then};
use crate::error::Error;
use crate::protocol::{is_md5_hex, Header, Reply};
use crate::server::conn::{Conn, Stream};
use crate::state::Shared;
use crate::users::User;

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
}

/// What an endpoint did.
enum Answer {
    /// A response to send.
    Send(Response),
    /// A response already sent (a download).
    Sent { status: u16 },
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
    };
    let outcome = route(&mut ex, conn);
    let mut open = req.keep_alive();
    let status = match outcome {
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
    open
}

/// A response's bytes: only its head for `HEAD`.
fn bytes_of(req: &Request, r: &Response, close: bool) -> Vec<u8> {
    if req.method == "HEAD" {
        head(r.status, &r.headers, r.body.len() as u64, close)
    } else {
        r.to_bytes(close)
    }
}

/// Takes a body nobody read, so that the next request can be read;
/// `false` if the connection must close instead.
fn finish_body<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> bool {
    if ex.body_left == 0 {
        return true;
    }
    if ex.body_left > MAX_PIECE || conn.begin_body().is_err() {
        return false;
    }
    let ok = conn.discard_body(ex.body_left).is_ok();
    ex.body_left = 0;
    ok
}

fn route<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    let req = ex.req;
    let method = req.method.as_str();
    let path = req.path.as_str();
    if !path.starts_with("/api/") {
        return asset(method, path);
    }
    match (method, path) {
        ("GET", "/api/session") => session_info(ex),
        ("POST", "/api/login") => login(ex, conn),
        ("POST", "/api/register") => register(ex, conn),
        ("POST", "/api/logout") => logout(ex),
        ("GET", "/api/whoami") => {
            let s = signed_in(ex)?;
            let (reply, _) = run(ex, Some(s.user), "whoami", Header::new())?;
            Ok(ok(200, reply))
        }
        ("GET", "/api/files") => list(ex),
        ("POST", "/api/rename") => {
            let s = guarded(ex)?;
            let body = json_body(ex, conn)?;
            let (reply, _) = run(ex, Some(s.user), "rename", body)?;
            Ok(ok(200, reply))
        }
        (_, "/api/session" | "/api/login" | "/api/register" | "/api/logout")
        | (_, "/api/whoami" | "/api/files" | "/api/rename") => Err(not_allowed()),
        _ => {
            if let Some(seg) = path.strip_prefix("/api/files/") {
                let name = decode_name(seg)?;
                ex.name = Some(name.clone());
                match method {
                    "GET" | "HEAD" => download(ex, conn, name),
                    "DELETE" => {
                        let s = guarded(ex)?;
                        let (reply, _) = run(ex, Some(s.user), "delete", name_header(&name))?;
                        Ok(ok(200, reply))
                    }
                    _ => Err(not_allowed()),
                }
            } else if let Some(seg) = path.strip_prefix("/api/uploads/") {
                let name = decode_name(seg)?;
                ex.name = Some(name.clone());
                match method {
                    "GET" => upload_status(ex, name),
                    "PUT" => upload_piece(ex, conn, name),
                    "DELETE" => {
                        let s = guarded(ex)?;
                        let (reply, _) = run(ex, Some(s.user), "discard", name_header(&name))?;
                        Ok(ok(200, reply))
                    }
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

fn name_header(name: &str) -> Header {
    let mut h = Header::new();
    h.insert("name".into(), Value::from(name));
    h
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

/// Runs command `cmd` with `fields` as `user`: the reply, what follows,
/// and the user after it (set by `login`).
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
        user: None,
    };
    let reply = reply?;
    Ok((reply, Extra { user, ..extra }))
}

/// What a command leaves beside its reply.
struct Extra {
    then: Option<Then>,
    frame: Option<Arc<Vec<u8>>>,
    user: Option<Arc<User>>,
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
    conn.begin_body()?;
    let (_, read) = conn.read_body(&mut buf);
    read?;
    ex.body_left = 0;
    match serde_json::from_slice(&buf) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::bad_request("the body must be a JSON object").into()),
    }
}

fn session_info(ex: &mut Exchange<'_>) -> Result<Answer> {
    let s = session(ex);
    if let Some(s) = &s {
        ex.user = Some(s.user.name.clone());
    }
    Ok(Answer::Send(Response::json(
        200,
        &json!({
            "user": s.as_ref().map(|s| s.user.name.clone()),
            "csrf": s.as_ref().map(|s| s.csrf.clone()),
            "registration": ex.shared.config.registration_open,
        }),
    )))
}

/// Requests before signing in must still carry the CSRF header, which a
/// page of another origin cannot send without the browser asking first.
fn anonymous_guard(ex: &Exchange<'_>) -> Result<()> {
    match ex.req.header(CSRF_HEADER) {
        Some(v) if !v.is_empty() => Ok(()),
        _ => Err(csrf_refused()),
    }
}

fn login<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    anonymous_guard(ex)?;
    let body = json_body(ex, conn)?;
    let (reply, extra) = run(ex, None, "login", body)?;
    let user = extra.user.ok_or(Error::AuthFailed)?;
    ex.user = Some(user.name.clone());
    if let Some(old) = ex.req.cookie(COOKIE) {
        ex.shared.web.remove(old);
    }
    let s = match ex.shared.web.create(user, ex.shared.config.web_idle) {
        Ok(s) => s,
        Err(Refused::NoRandomness) => {
            return Err(Error::Internal("no randomness for a session token".into()).into())
        }
    };
    let mut fields = reply;
    fields.insert("csrf".into(), Value::from(s.csrf.clone()));
    let r = Response::json(200, &Value::Object(fields)).with("Set-Cookie", cookie(ex, &s.token));
    Ok(Answer::Send(r))
}

fn register<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    anonymous_guard(ex)?;
    let body = json_body(ex, conn)?;
    let (reply, _) = run(ex, None, "register", body)?;
    Ok(ok(201, reply))
}

fn logout(ex: &mut Exchange<'_>) -> Result<Answer> {
    let Some(token) = ex.req.cookie(COOKIE) else {
        return Ok(ok(200, Reply::new()));
    };
    if session(ex).is_some() {
        let s = guarded(ex)?;
        ex.shared.web.remove(&s.token);
    } else {
        ex.shared.web.remove(token);
    }
    let gone = format!("{}; Max-Age=0", cookie(ex, ""));
    Ok(Answer::Send(
        Response::json(200, &json!({})).with("Set-Cookie", gone),
    ))
}

/// The session cookie; `Secure` is left out only on plaintext from this
/// host, where a browser would not send it back otherwise.
fn cookie(ex: &Exchange<'_>, token: &str) -> String {
    let secure = if !ex.front.secure && ex.front.loopback {
        ""
    } else {
        "; Secure"
    };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

fn list(ex: &mut Exchange<'_>) -> Result<Answer> {
    let s = signed_in(ex)?;
    let (reply, extra) = run(ex, Some(s.user), "ls", Header::new())?;
    match extra.frame {
        // The v1 reply frame is `{"ok":true,"files":[...]}` after its prefix.
        Some(frame) => Ok(Answer::Send(Response::raw_json(
            200,
            frame.get(4..).unwrap_or_default().to_vec(),
        ))),
        None => Ok(ok(200, reply)),
    }
}

fn download<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>, name: String) -> Result<Answer> {
    use crate::error::ErrorCode;
    let s = signed_in(ex)?;
    let args = commands::get::Args { name, offset: None };
    let (reply, extra) = run(ex, Some(s.user), "get", commands::request("get", &args))?;
    let answer: commands::get::Answer = commands::parse(&reply).map_err(Fail::from)?;
    let Some(Then::Send(mut body)) = extra.then else {
        return Err(Error::Internal("get left no body".into()).into());
    };
    let size = answer.size;
    let etag = format!("\"{}\"", answer.md5);
    let if_range_ok = ex.req.header("if-range").is_none_or(|v| v == etag);
    let range = match ex.req.header("range") {
        Some(r) if if_range_ok => parse_range(r, size),
        _ => None,
    };
    let mut headers = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        ("Content-Disposition", disposition(&answer.name)),
        ("ETag", etag),
        ("Accept-Ranges", "bytes".to_string()),
        ("Cache-Control", "private, no-cache".to_string()),
    ];
    let status = match range {
        Some(Err(())) => {
            let r = Response::code(
                416,
                ErrorCode::BadRequest,
                "the range is past the end of the file",
            )
            .with("Content-Range", format!("bytes */{size}"));
            return Ok(Answer::Send(r));
        }
        Some(Ok((start, end))) => {
            body.offset = start;
            body.len = end + 1 - start;
            headers.push(("Content-Range", format!("bytes {start}-{end}/{size}")));
            206
        }
        None => 200,
    };
    let close = !ex.req.keep_alive();
    conn.send_raw(&head(status, &headers, body.len, close))?;
    if ex.req.method != "HEAD" {
        // A failure inside a body can only be answered by closing.
        match conn.send_body(body) {
            Ok(n) => ex.bytes = n,
            Err(_) => return Err(Fail::Close),
        }
    }
    Ok(Answer::Sent { status })
}

/// A single `bytes=` range of a file of `size` bytes: `None` to send the
/// whole file (no usable range), `Some(Err)` when it cannot be satisfied.
fn parse_range(value: &str, size: u64) -> Option<std::result::Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if a.is_empty() {
        let n = num(b)?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        return Some(Ok((size.saturating_sub(n), size - 1)));
    }
    let start = num(a)?;
    let end = if b.is_empty() { u64::MAX } else { num(b)? };
    if end < start {
        return None;
    }
    if start >= size {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(size - 1))))
}

/// `Content-Disposition` with an ASCII fallback and the exact UTF-8 name
/// (RFC 6266 `filename*`).
fn disposition(name: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const ATTR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR)
    )
}

fn upload_status(ex: &mut Exchange<'_>, name: String) -> Result<Answer> {
    let s = signed_in(ex)?;
    let size = ex
        .req
        .number("size")?
        .ok_or_else(|| Error::bad_request("size is missing"))?;
    let args = commands::put::Args {
        name,
        size,
        md5: None,
    };
    let (reply, extra) = run(ex, Some(s.user), "put", commands::request("put", &args))?;
    drop(extra.then); // the staged bytes stay; the name is free again
    let mut fields = reply;
    fields.insert("size".into(), Value::from(size));
    Ok(ok(200, fields))
}

fn upload_piece<S: Stream>(
    ex: &mut Exchange<'_>,
    conn: &mut Conn<S>,
    name: String,
) -> Result<Answer> {
    use crate::error::ErrorCode;
    let s = guarded(ex)?;
    let size = ex
        .req
        .number("size")?
        .ok_or_else(|| Error::bad_request("size is missing"))?;
    let offset = ex
        .req
        .number("offset")?
        .ok_or_else(|| Error::bad_request("offset is missing"))?;
    let md5 = ex.req.param("md5")?;
    if md5.as_deref().is_some_and(|d| !is_md5_hex(d)) {
        return Err(Error::bad_request("md5 must be 32 lowercase hex digits").into());
    }
    let len = ex.body_left;
    if len > MAX_PIECE {
        return Err(Fail::Reply(
            Response::code(
                413,
                ErrorCode::BadRequest,
                &format!("a piece may have at most {MAX_PIECE} bytes"),
            ),
            true,
        ));
    }
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(Error::bad_request("the piece goes past the declared size").into());
    }
    let args = commands::put::Args {
        name: name.clone(),
        size,
        md5: None,
    };
    let (_, extra) = run(ex, Some(s.user), "put", commands::request("put", &args))?;
    let Some(Then::Receive(mut up)) = extra.then else {
        return Err(Error::Internal("put left no receiver".into()).into());
    };
    let held = up.offset();
    if held != offset {
        return Err(Fail::Reply(
            Response::json(
                409,
                &json!({
                    "error": "BAD_REQUEST",
                    "message": format!("the server holds {held} bytes; continue from there"),
                    "offset": held,
                    "size": size,
                }),
            ),
            false,
        ));
    }
    if len > 0 {
        conn.begin_body()?;
    }
    let mut left = len;
    let mut piece_done = false;
    let received = up.receive(|chunk| {
        if left == 0 {
            piece_done = true;
            return (0, Err(Error::Timeout));
        }
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let (got, read) = conn.read_body(&mut chunk[..want]);
        left -= got as u64;
        if read.is_ok() && want < chunk.len() {
            piece_done = true;
            return (got, Err(Error::Timeout));
        }
        (got, read)
    });
    ex.bytes = len - left;
    ex.body_left = left;
    match received {
        Ok(()) => {}
        Err(_) if piece_done => {}
        Err(e @ (Error::Timeout | Error::Disconnected(_))) => return Err(Fail::from(e).closing()),
        // A disk error: take the rest of the piece, then say so.
        Err(e) => return Err(e.into()),
    }
    let held = up.offset();
    match md5 {
        Some(d) if held == size => {
            let mut step4 = Header::new();
            step4.insert("md5".into(), Value::from(d));
            let answer = up.finish(&step4)?;
            Ok(ok(201, answer))
        }
        _ => Ok(Answer::Send(Response::json(
            200,
            &json!({"offset": held, "size": size}),
        ))),
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
fn what(req: &Request) -> String {
    let mut s = format!("{} {}", req.method, req.path);
    if s.len() > 80 {
        let mut cut = 80;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
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
    let name = name.map_or_else(|| "-".to_string(), |n| format!("{n:?}"));
    let peer = &front.peer;
    let key = format!("{peer} {who} {what:?} {name} {bytes} HTTP {status}");
    let line = format!("{peer} {who} {what:?} {name} {bytes} {ms}ms HTTP {status}");
    shared
        .log
        .request(&front.peer_ip, status >= 400, &key, &line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=90-1000", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-1000", 100), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=+1-2", 100), None);
    }

    #[test]
    fn dispositions_carry_the_utf8_name() {
        assert_eq!(
            disposition("报告 1.pdf"),
            "attachment; filename=\"__ 1.pdf\"; \
             filename*=UTF-8''%E6%8A%A5%E5%91%8A%201.pdf"
        );
        assert!(disposition("a\"b\\c").starts_with("attachment; filename=\"a_b_c\""));
    }
}
