//! Serving requests on a worker: read a frame, dispatch it, reply, drive
//! what follows (a body to send or to take), log, and repeat while the
//! next request is already buffered; then give the connection back.
//!
//! Error precedence follows PROTOCOL.md ("Session"): `BAD_FRAME`, then
//! `BAD_REQUEST` for a missing or non-string `cmd`, `UNKNOWN_COMMAND`,
//! `NOT_LOGGED_IN`, then the command's own checks.

use std::io;
use std::time::Instant;

use serde_json::Value;

use super::conn::{Conn, Stream};
use super::link::{serve_link, Link, LoginDone, PendingLogin, Serve, SessionState};
use crate::commands::{lookup, put, Ctx, Then};
use crate::error::Error;
use crate::protocol::{error_header, ok_header, Header, Reply};
use crate::state::Shared;
use crate::users::User;
use group::{Entry, Group};

mod group;

/// Serves the requests buffered on `link` and returns it: to wait for the
/// next request, or marked `closing`.
pub fn serve(shared: &Shared, link: Link) -> Link {
    let peer = (link.peer.to_string(), link.peer_ip.clone());
    serve_link(shared, link, &mut V1 { shared, peer })
}

/// Protocol v1 as a front end of [`serve_link`].
struct V1<'a> {
    shared: &'a Shared,
    /// The peer, and its IP address alone.
    peer: (String, String),
}

impl Serve for V1<'_> {
    fn serve<S: Stream>(&mut self, conn: &mut Conn<S>, session: &mut SessionState) -> bool {
        run(self.shared, conn, session, &self.peer)
    }
}

/// Serves requests while they are buffered. Returns whether the
/// connection stays open.
///
/// Uploads in one go that arrive back to back wait in a [`Group`] and are
/// committed and answered together: when the next request is not one of
/// them, when nothing more is buffered, or when the group is full. Every
/// other answer goes out after the group's, so replies stay in order.
fn run<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    state: &mut SessionState,
    peer: &(String, String),
) -> bool {
    if let Some(done) = state.login_done.take() {
        // Back from the hasher's queue: answer the login, then serve what
        // is buffered behind it, if anything.
        if !answer_login(shared, conn, state, &peer.0, done) {
            return false;
        }
        if !conn.request_ready() {
            return !shared.stopping();
        }
    }
    let mut group = Group::default();
    let open = serve_all(shared, conn, state, peer, &mut group);
    // Whatever ended the loop, what was received and checked is kept.
    answer_group(shared, conn, state, &peer.0, &mut group) && open
}

fn serve_all<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    state: &mut SessionState,
    (peer, peer_ip): &(String, String),
    group: &mut Group,
) -> bool {
    loop {
        let header = match conn.read_request() {
            Ok(Some(h)) => h,
            Ok(None) => return false,
            Err(e) => {
                answer_group(shared, conn, state, peer, group);
                // A broken frame or a header too slow: say so, then close.
                log(
                    shared,
                    peer,
                    state.user.as_deref(),
                    "-",
                    None,
                    0,
                    Instant::now(),
                    &Err(&e),
                );
                if !matches!(e, Error::Disconnected(_)) {
                    let _ = conn.send(&error_header(e.code(), &e.public_message()));
                }
                return false;
            }
        };
        if !group.admits(&header) && !answer_group(shared, conn, state, peer, group) {
            return false;
        }
        let started = Instant::now();
        let cmd = header.get("cmd").and_then(Value::as_str).unwrap_or("-");
        if cmd == "login" {
            if let Ok(args) = crate::commands::parse::<crate::commands::register::Args>(&header) {
                // The password is checked off this worker (`logins`): the
                // connection leaves with the login pending, and what the
                // client sent behind it stays buffered.
                if !answer_group(shared, conn, state, peer, group) {
                    return false;
                }
                state.login = Some(PendingLogin {
                    user: args.user,
                    password: args.password,
                    started,
                    resume: None,
                });
                return true;
            }
        }
        let cmd: String = cmd.chars().take(32).collect();
        let mut ctx = Ctx::new(shared, &mut state.user, peer_ip);
        let mut result = dispatch(&mut ctx, &header);
        if !group.is_empty()
            && matches!(&ctx.then, Some(Then::Absorb(one)) if one.refused_by_quota())
        {
            // The group's claims count against the quota until they are
            // committed: commit them and ask again.
            drop(ctx);
            if !answer_group(shared, conn, state, peer, group) {
                return false;
            }
            ctx = Ctx::new(shared, &mut state.user, peer_ip);
            result = dispatch(&mut ctx, &header);
        }
        let (close, name, mut bytes, then) = (ctx.close, ctx.log_name, ctx.log_bytes, ctx.then);
        let frame = ctx.frame;
        let mut checked = None;
        // A reply can fail too (one over the size cap, say): then the
        // client gets an error frame in its place.
        let outcome = result.and_then(|fields| match (frame, then) {
            (Some(frame), _) => conn.send_encoded(&frame),
            (None, Some(Then::Absorb(one))) => {
                checked = Some(absorb(conn, *one, &mut bytes)?);
                Ok(())
            }
            (None, then) => respond(conn, fields, then, &mut bytes),
        });
        if let Some(checked) = checked {
            let entry = Entry {
                cmd,
                name,
                bytes,
                started,
            };
            group.push(checked, entry);
            let more = conn.request_ready() && !shared.stopping();
            if !more || group.is_full() {
                if !answer_group(shared, conn, state, peer, group) {
                    return false;
                }
                if !more {
                    return !shared.stopping();
                }
            }
            continue;
        }
        if outcome.is_err() && !answer_group(shared, conn, state, peer, group) {
            return false;
        }
        let entry = Entry {
            cmd,
            name,
            bytes,
            started,
        };
        if !conclude(shared, conn, state, peer, entry, outcome, false) {
            return false;
        }
        if close || shared.stopping() {
            return false;
        }
        if !conn.request_ready() {
            return true;
        }
    }
}

/// Answers a login the hasher checked, as the `login` command would
/// (commands/login.rs): the user's name as registered, or the error.
fn answer_login<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    state: &mut SessionState,
    peer: &str,
    done: LoginDone,
) -> bool {
    // The account tried goes in the log; a name that is no account is
    // not written (it may be a password typed in the wrong field).
    let known = crate::names::canonical_user(&done.user)
        .ok()
        .and_then(|k| shared.users.get(&k));
    let name = known.map_or_else(|| "(no such user)".to_string(), |u| u.name.clone());
    let outcome = match done.outcome {
        Ok(user) => {
            let mut fields = Reply::new();
            fields.insert("user".into(), Value::from(user.name.clone()));
            state.user = Some(user);
            conn.send(&ok_header(fields))
        }
        Err(e) => Err(e),
    };
    let entry = Entry {
        cmd: "login".into(),
        name: Some(name),
        bytes: 0,
        started: done.started,
    };
    conclude(shared, conn, state, peer, entry, outcome, false)
}

/// Commits the group and sends its answers. Returns whether the
/// connection can go on.
fn answer_group<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    state: &mut SessionState,
    peer: &str,
    group: &mut Group,
) -> bool {
    if group.is_empty() {
        return true;
    }
    let mut open = true;
    for (entry, answer) in group.commit() {
        let outcome = answer.and_then(|fields| {
            if open {
                conn.send(&ok_header(fields))
            } else {
                Err(Error::Disconnected(io::ErrorKind::BrokenPipe.into()))
            }
        });
        open = conclude(shared, conn, state, peer, entry, outcome, !open) && open;
    }
    open
}

/// Sends the error frame of a failed request (unless `gone`), logs the
/// request and counts the error run. Returns whether the connection can
/// go on.
fn conclude<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    state: &mut SessionState,
    peer: &str,
    entry: Entry,
    outcome: Result<(), Error>,
    gone: bool,
) -> bool {
    if let Err(e) = &outcome {
        if !gone && !matches!(e, Error::Disconnected(_)) {
            let _ = conn.send(&error_header(e.code(), &e.public_message()));
        }
    }
    log(
        shared,
        peer,
        state.user.as_deref(),
        &entry.cmd,
        entry.name.as_deref(),
        entry.bytes,
        entry.started,
        &outcome.as_ref().map(|_| ()),
    );
    let fatal = outcome
        .as_ref()
        .is_err_and(|e| matches!(e, Error::Disconnected(_)) || e.code().closes_connection());
    // The run of errors is the session's, shared with HTTP.
    state.count_reply(shared, peer, outcome.is_err()) && !fatal
}

fn dispatch(ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
    let cmd = match header.get("cmd") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Error::bad_request("\"cmd\" must be a string")),
        None => return Err(Error::bad_request("missing \"cmd\"")),
    };
    let command =
        lookup(cmd).ok_or_else(|| Error::UnknownCommand(cmd.chars().take(64).collect()))?;
    if command.requires_auth() && ctx.user.is_none() {
        return Err(Error::NotLoggedIn);
    }
    command.run(ctx, header)
}

/// Sends a success reply and drives what follows it. A body takes its
/// place among those in flight first, so that `BUSY` can still be the
/// answer.
fn respond<S: Stream>(
    conn: &mut Conn<S>,
    fields: Reply,
    then: Option<Then>,
    bytes: &mut u64,
) -> Result<(), Error> {
    match &then {
        Some(Then::Send(body)) => conn.admit(body.len)?,
        Some(Then::Receive(upload)) => conn.admit(upload.remaining())?,
        _ => {}
    }
    conn.send(&ok_header(fields))?;
    match then {
        None => Ok(()),
        // Driven by the caller: no reply goes before the body.
        Some(Then::Absorb(_)) => Err(Error::Internal("an upload in one go out of place".into())),
        Some(Then::Send(body)) => {
            let want = body.len;
            *bytes = 0;
            // A failure inside a body can only be answered by closing.
            let sent = conn.send_body(body).map_err(|e| {
                *bytes = conn.sent();
                Error::Disconnected(io::Error::other(e.to_string()))
            })?;
            *bytes = sent;
            debug_assert_eq!(sent, want);
            Ok(())
        }
        Some(Then::Receive(mut upload)) => {
            let remaining = upload.remaining();
            conn.begin_body()?;
            let mut consumed = 0;
            let received = upload.receive(|chunk| {
                let (got, read) = conn.read_body(chunk);
                consumed += got as u64;
                (got, read)
            });
            *bytes = consumed;
            if let Err(e) = received {
                if !matches!(e, Error::Timeout | Error::Disconnected(_)) {
                    // The disk failed (full, say) while the client is
                    // still sending. Take the rest of the body and the
                    // digest frame, so that the error reaches the client
                    // as the answer to step 4 and the connection stays
                    // usable.
                    conn.discard_body(remaining - consumed)?;
                    conn.read_request()?;
                }
                return Err(e);
            }
            let Some(step4) = conn.read_request()? else {
                return Err(Error::Disconnected(io::ErrorKind::UnexpectedEof.into()));
            };
            let answer = upload.finish(&step4)?;
            conn.send(&ok_header(answer))
        }
    }
}

/// Takes the body of an upload in one go and checks it; the caller
/// commits and answers it. An error decided before the body, or a disk
/// error during it, is answered only after the rest of the body has been
/// read and dropped, so that the next pipelined request is read from its
/// first byte.
fn absorb<S: Stream>(
    conn: &mut Conn<S>,
    mut one: put::OneGo,
    bytes: &mut u64,
) -> Result<put::Checked, Error> {
    // Refused, the body stays unread: `BUSY` closes the connection.
    conn.admit(one.len())?;
    conn.begin_body()?;
    let mut consumed = 0;
    let received = one.receive(|chunk| {
        let (got, read) = conn.read_body(chunk);
        consumed += got as u64;
        (got, read)
    });
    *bytes = consumed;
    if let Err(e) = received {
        if !matches!(e, Error::Timeout | Error::Disconnected(_)) {
            conn.discard_body(one.len() - consumed)?;
        }
        return Err(e);
    }
    one.check()
}

/// One line per request on stderr. Never includes a password: only the
/// command, the file name and the outcome are logged.
#[allow(clippy::too_many_arguments)]
fn log(
    shared: &Shared,
    peer: &str,
    user: Option<&User>,
    cmd: &str,
    name: Option<&str>,
    bytes: u64,
    started: Instant,
    outcome: &Result<(), &Error>,
) {
    let who = user.map_or("-", |u| u.name.as_str());
    let ms = started.elapsed().as_millis();
    let name_shown = name.map_or_else(|| "-".to_string(), |n| format!("{n:?}"));
    let (code, detail) = match outcome {
        Ok(()) => ("OK", String::new()),
        Err(e) => {
            let detail = match e {
                Error::Io(_) | Error::Internal(_) | Error::Disconnected(_) => format!(" ({e})"),
                _ => String::new(),
            };
            let code = if matches!(e, Error::Disconnected(_)) {
                "CLOSED"
            } else {
                e.code().as_str()
            };
            (code, detail)
        }
    };
    let key = format!("{peer} {who} {cmd:?} {name_shown} {bytes} {code}{detail}");
    let line = format!("{peer} {who} {cmd:?} {name_shown} {bytes} {ms}ms {code}{detail}");
    let ip = peer.rsplit_once(':').map_or(peer, |(ip, _)| ip);
    let detail = detail.trim().trim_start_matches('(').trim_end_matches(')');
    let fields = crate::server::log::Fields {
        peer,
        user: user.map(|u| u.name.as_str()),
        request: cmd,
        name,
        bytes,
        ms,
        outcome: code,
        status: None,
        detail: (!detail.is_empty()).then_some(detail),
    };
    // Failed and anonymous lines within the log's budgets (`log`).
    shared
        .log
        .request(ip, outcome.is_err() || user.is_none(), &key, &line, &fields);
}
