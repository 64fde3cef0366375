//! The account endpoints: who this browser is, signing in and out,
//! registering, and `whoami`.

use serde_json::json;

use std::sync::Arc;
use std::time::Instant;

use super::{
    csrf_refused, guarded, json_body, ok, run, session, signed_in, what, Answer, Exchange, Front,
    Result, COOKIE, CSRF_HEADER,
};
use crate::error::Error;
use crate::http::response::Response;
use crate::http::sessions::Refused;
use crate::protocol::{Header, Reply};
use crate::server::conn::{Conn, Stream};
use crate::server::link::{LoginDone, PendingLogin, SessionState};
use crate::state::Shared;

/// `GET /api/whoami`: `whoami`'s reply.
pub(super) fn whoami(ex: &mut Exchange<'_>) -> Result<Answer> {
    let s = signed_in(ex)?;
    let (reply, _) = run(ex, Some(s.user), "whoami", Header::new())?;
    Ok(ok(200, reply))
}

pub(super) fn session_info(ex: &mut Exchange<'_>) -> Result<Answer> {
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

/// `POST /api/login`: the password is checked off this worker, in the
/// login queue (`server::logins`), and answered by [`answer_login`].
pub(super) fn login<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    anonymous_guard(ex)?;
    let body = json_body(ex, conn)?;
    let args: crate::commands::register::Args = crate::commands::parse(&body)?;
    let resume = WebLogin {
        old: ex.req.cookie(COOKIE).map(str::to_string),
        keep_alive: ex.req.keep_alive(),
        what: what(ex.req),
    };
    ex.login = Some(PendingLogin {
        user: args.user,
        password: args.password,
        started: Instant::now(),
        resume: Some(Box::new(resume)),
    });
    Ok(Answer::Later)
}

/// What a web login keeps while it waits in the login queue.
struct WebLogin {
    /// The session cookie the request carried (signed out on success).
    old: Option<String>,
    keep_alive: bool,
    /// The request, for its log line.
    what: String,
}

/// Answers a web login the hasher checked: a new session and its cookie,
/// or the error. Returns whether the connection stays open.
pub fn answer_login<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    front: &Front,
    session: &mut SessionState,
    done: LoginDone,
) -> bool {
    let Some(web) = done.resume.and_then(|r| r.downcast::<WebLogin>().ok()) else {
        return false; // not one of ours: nothing to answer it with
    };
    let known = crate::names::canonical_user(&done.user)
        .ok()
        .and_then(|k| shared.users.get(&k));
    let name = known.map_or_else(|| "(no such user)".to_string(), |u| u.name.clone());
    let mut who = None;
    let mut close = !web.keep_alive;
    let r = match done.outcome {
        Ok(user) => {
            who = Some(user.name.clone());
            if let Some(old) = &web.old {
                shared.web.remove(old);
            }
            session.user = Some(Arc::clone(&user));
            let name = user.name.clone();
            match shared.web.create(user, shared.config.web_idle) {
                Ok(s) => Response::json(200, &json!({"user": name, "csrf": s.csrf}))
                    .with("Set-Cookie", cookie(front, &s.token)),
                Err(Refused::NoRandomness) => {
                    Response::error(&Error::Internal("no randomness for a session token".into()))
                }
                Err(Refused::Database(e)) => {
                    Response::error(&Error::Internal(format!("cannot start a session: {e}")))
                }
            }
        }
        Err(e) => {
            close |= e.code().closes_connection();
            Response::error(&e)
        }
    };
    let sent = conn.send_raw(&r.to_bytes(close)).is_ok();
    super::log(
        shared,
        front,
        who.as_deref(),
        &web.what,
        Some(&name),
        r.status,
        0,
        done.started,
    );
    session.count_reply(shared, &front.peer, r.status >= 400) && sent && !close
}

pub(super) fn register<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    anonymous_guard(ex)?;
    let body = json_body(ex, conn)?;
    let (reply, _) = run(ex, None, "register", body)?;
    Ok(ok(201, reply))
}

pub(super) fn logout(ex: &mut Exchange<'_>) -> Result<Answer> {
    let Some(token) = ex.req.cookie(COOKIE) else {
        return Ok(ok(200, Reply::new()));
    };
    if session(ex).is_some() {
        let s = guarded(ex)?;
        ex.shared.web.remove(&s.token);
    } else {
        ex.shared.web.remove(token);
    }
    let gone = format!("{}; Max-Age=0", cookie(ex.front, ""));
    Ok(Answer::Send(
        Response::json(200, &json!({})).with("Set-Cookie", gone),
    ))
}

/// The session cookie; `Secure` is left out only on plaintext from this
/// host, where a browser would not send it back otherwise.
fn cookie(front: &Front, token: &str) -> String {
    let secure = if !front.secure && front.loopback {
        ""
    } else {
        "; Secure"
    };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}")
}
