//! The connection loop: read a frame, dispatch it, reply, log, repeat.
//!
//! Error precedence follows PROTOCOL.md ("Session"): `BAD_FRAME`, then
//! `BAD_REQUEST` for a missing or non-string `cmd`, `UNKNOWN_COMMAND`,
//! `NOT_LOGGED_IN`, then the command's own checks.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::conn::Conn;
use super::Shared;
use crate::commands::{lookup, Ctx};
use crate::error::Error;
use crate::protocol::{error_header, ok_header, Header, Reply};
use crate::users::User;

/// Serves one connection until it quits, closes, times out or breaks.
pub fn serve(shared: &Shared, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let peer_ip = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.ip().to_string());
    let timeout = shared.config.idle_timeout;
    let mut conn = match Conn::new(stream, timeout, timeout, Arc::clone(&shared.stop)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{peer} - - socket setup failed: {e}");
            return;
        }
    };
    let mut user: Option<Arc<User>> = None;
    loop {
        let header = match conn.wait_request() {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                // A broken frame or an idle timeout: say so, then close.
                log(
                    &peer,
                    user.as_deref(),
                    "-",
                    None,
                    0,
                    Instant::now(),
                    &Err(&e),
                );
                if !matches!(e, Error::Disconnected(_)) {
                    let _ = conn.send(&error_header(e.code(), &e.public_message()));
                }
                return;
            }
        };
        let started = Instant::now();
        let cmd = header.get("cmd").and_then(Value::as_str).unwrap_or("-");
        let cmd: String = cmd.chars().take(32).collect();
        let mut ctx = Ctx {
            shared,
            conn: &mut conn,
            user: &mut user,
            peer: &peer_ip,
            close: false,
            log_name: None,
            log_bytes: 0,
            body: None,
            frame: None,
        };
        let result = dispatch(&mut ctx, &header);
        let (close, name, mut bytes, body) = (ctx.close, ctx.log_name, ctx.log_bytes, ctx.body);
        let frame = ctx.frame;
        // A reply can fail too (one over the size cap, say): then the
        // client gets an error frame in its place.
        let outcome = result.and_then(|fields| match frame {
            Some(frame) => conn.send_encoded(&frame),
            None => reply(&mut conn, fields, body, &mut bytes),
        });
        if let Err(e) = &outcome {
            if !matches!(e, Error::Disconnected(_)) {
                let _ = conn.send(&error_header(e.code(), &e.public_message()));
            }
        }
        log(
            &peer,
            user.as_deref(),
            &cmd,
            name.as_deref(),
            bytes,
            started,
            &outcome.as_ref().map(|_| ()),
        );
        let fatal = match &outcome {
            Ok(()) => false,
            Err(e) => matches!(e, Error::Disconnected(_)) || e.code().closes_connection(),
        };
        if close || fatal {
            return;
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

/// Sends a success reply and any body; a failure inside a body can only
/// be answered by closing.
fn reply(
    conn: &mut Conn,
    fields: Reply,
    body: Option<super::conn::Body>,
    bytes: &mut u64,
) -> Result<(), Error> {
    conn.send(&ok_header(fields))?;
    if let Some(body) = body {
        let want = body.len;
        *bytes = 0;
        let sent = conn.send_body(body).map_err(|e| {
            // Nothing more can be said on this stream.
            Error::Disconnected(std::io::Error::other(e.to_string()))
        })?;
        *bytes = sent;
        debug_assert_eq!(sent, want);
    }
    Ok(())
}

/// One line per request on stderr. Never includes a password: only the
/// command, the file name and the outcome are logged.
fn log(
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
    let line = match outcome {
        Ok(()) => format!("{peer} {who} {cmd:?} {name} {bytes} {ms}ms OK\n"),
        Err(e) => {
            let code = e.code();
            let detail = match e {
                Error::Io(_) | Error::Internal(_) | Error::Disconnected(_) => format!(" ({e})"),
                _ => String::new(),
            };
            let code = if matches!(e, Error::Disconnected(_)) {
                "CLOSED"
            } else {
                code.as_str()
            };
            format!("{peer} {who} {cmd:?} {name} {bytes} {ms}ms {code}{detail}\n")
        }
    };
    // One write per line: `eprintln!` would make a system call for every
    // piece of the format, a dozen per request.
    let _ = std::io::stderr().write_all(line.as_bytes());
}
