//! Serving requests on a worker: read a frame, dispatch it, reply, drive
//! what follows (a body to send or to take), log, and repeat while the
//! next request is already buffered; then give the connection back.
//!
//! Error precedence follows PROTOCOL.md ("Session"): `BAD_FRAME`, then
//! `BAD_REQUEST` for a missing or non-string `cmd`, `UNKNOWN_COMMAND`,
//! `NOT_LOGGED_IN`, then the command's own checks.

use std::io;
use std::time::Instant;

use rustls::{ServerConnection, StreamOwned};
use serde_json::Value;

use super::conn::{Conn, Limits, Stream};
use super::link::{Kind, Link, SessionState, Wire};
use crate::commands::{lookup, put, Ctx, Then};
use crate::error::Error;
use crate::protocol::{error_header, ok_header, Header, Reply, Timed};
use crate::state::{Shared, MAX_ERROR_RUN};
use crate::users::User;

/// Serves the requests buffered on `link` and returns it: to wait for the
/// next request, or marked `closing`.
pub fn serve(shared: &Shared, mut link: Link) -> Link {
    let limits = Limits {
        header: shared.config.header_timeout,
        stall: shared.config.idle_timeout,
        min_rate: shared.config.min_rate,
        window: shared.config.rate_window,
    };
    let pending = std::mem::take(&mut link.pending);
    let peer = (link.peer.to_string(), link.peer_ip.clone());
    let state = &mut link.session;
    let tcp = link.wire.tcp;
    let (wire, rest, open) = match link.wire.kind {
        Kind::Plain => match start(Timed::new(tcp), &pending, limits) {
            Ok(mut conn) => {
                let open = run(shared, &mut conn, state, &peer);
                let (timed, rest) = conn.into_parts();
                (plain(timed), rest, open)
            }
            Err((timed, _)) => (plain(timed), Vec::new(), false),
        },
        Kind::Tls(tls) => {
            let stream = StreamOwned::new(*tls, Timed::new(tcp));
            match start(stream, &pending, limits) {
                Ok(mut conn) => {
                    let open = run(shared, &mut conn, state, &peer);
                    let (s, rest) = conn.into_parts();
                    (secure(s), rest, open)
                }
                Err((s, _)) => (secure(s), Vec::new(), false),
            }
        }
        Kind::Fresh => (
            Wire {
                tcp,
                kind: Kind::Fresh,
            },
            pending,
            false,
        ),
    };
    link.wire = wire;
    link.pending = rest;
    link.closing = !open;
    link
}

fn plain(timed: Timed) -> Wire {
    Wire {
        tcp: timed.into_inner(),
        kind: Kind::Plain,
    }
}

fn secure(s: StreamOwned<ServerConnection, Timed>) -> Wire {
    Wire {
        tcp: s.sock.into_inner(),
        kind: Kind::Tls(Box::new(s.conn)),
    }
}

/// Makes the socket blocking again, with the write timeout, and wraps it.
fn start<S: Stream>(
    mut stream: S,
    pending: &[u8],
    limits: Limits,
) -> Result<Conn<S>, (S, io::Error)> {
    let tcp = stream.timed().get_ref();
    let setup = tcp
        .set_nonblocking(false)
        .and_then(|()| tcp.set_write_timeout(Some(limits.per_op())));
    match setup {
        Ok(()) => Ok(Conn::new(stream, pending, limits)),
        Err(e) => Err((stream, e)),
    }
}

/// Serves requests while they are buffered. Returns whether the
/// connection stays open.
fn run<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    state: &mut SessionState,
    (peer, peer_ip): &(String, String),
) -> bool {
    loop {
        let header = match conn.read_request() {
            Ok(Some(h)) => h,
            Ok(None) => return false,
            Err(e) => {
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
        let started = Instant::now();
        let cmd = header.get("cmd").and_then(Value::as_str).unwrap_or("-");
        let cmd: String = cmd.chars().take(32).collect();
        let mut ctx = Ctx::new(shared, &mut state.user, peer_ip);
        let result = dispatch(&mut ctx, &header);
        let (close, name, mut bytes, then) = (ctx.close, ctx.log_name, ctx.log_bytes, ctx.then);
        let frame = ctx.frame;
        // A reply can fail too (one over the size cap, say): then the
        // client gets an error frame in its place.
        let outcome = result.and_then(|fields| match frame {
            Some(frame) => conn.send_encoded(&frame),
            None => respond(conn, fields, then, &mut bytes),
        });
        if let Err(e) = &outcome {
            if !matches!(e, Error::Disconnected(_)) {
                let _ = conn.send(&error_header(e.code(), &e.public_message()));
            }
        }
        log(
            shared,
            peer,
            state.user.as_deref(),
            &cmd,
            name.as_deref(),
            bytes,
            started,
            &outcome.as_ref().map(|_| ()),
        );
        let fatal = match &outcome {
            Ok(()) => {
                state.error_run = 0;
                false
            }
            Err(e) => {
                state.error_run += 1;
                matches!(e, Error::Disconnected(_)) || e.code().closes_connection()
            }
        };
        if close || fatal || shared.stopping() {
            return false;
        }
        if state.error_run >= MAX_ERROR_RUN {
            shared.log.write(
                &format!("{peer} error run"),
                &format!("{peer} closed after {MAX_ERROR_RUN} error replies in a row"),
            );
            return false;
        }
        if !conn.has_request() {
            return true;
        }
    }
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

/// Sends a success reply and drives what follows it.
fn respond<S: Stream>(
    conn: &mut Conn<S>,
    fields: Reply,
    then: Option<Then>,
    bytes: &mut u64,
) -> Result<(), Error> {
    if let Some(Then::Absorb(one)) = then {
        // No reply before the body: the request said all (PROTOCOL.md,
        // "Small uploads in one go").
        return absorb(conn, *one, bytes);
    }
    conn.send(&ok_header(fields))?;
    match then {
        None | Some(Then::Absorb(_)) => Ok(()),
        Some(Then::Send(body)) => {
            let want = body.len;
            *bytes = 0;
            // A failure inside a body can only be answered by closing.
            let sent = conn
                .send_body(body)
                .map_err(|e| Error::Disconnected(io::Error::other(e.to_string())))?;
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

/// Takes the body of an upload in one go and answers it once. An error
/// decided before the body, or a disk error during it, is answered only
/// after the rest of the body has been read and dropped, so that the next
/// pipelined request is read from its first byte.
fn absorb<S: Stream>(
    conn: &mut Conn<S>,
    mut one: put::OneGo,
    bytes: &mut u64,
) -> Result<(), Error> {
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
    let answer = one.finish()?;
    conn.send(&ok_header(answer))
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
    let name = name.map_or_else(|| "-".to_string(), |n| format!("{n:?}"));
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
    let key = format!("{peer} {who} {cmd:?} {name} {bytes} {code}{detail}");
    let line = format!("{peer} {who} {cmd:?} {name} {bytes} {ms}ms {code}{detail}");
    shared.log.write(&key, &line);
}
