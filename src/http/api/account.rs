//! The account endpoints: who this browser is, signing in and out,
//! registering, and `whoami`.

use serde_json::{json, Value};

use super::{
    csrf_refused, guarded, json_body, ok, run, session, signed_in, Answer, Exchange, Result,
    COOKIE, CSRF_HEADER,
};
use crate::error::Error;
use crate::http::response::Response;
use crate::http::sessions::Refused;
use crate::protocol::{Header, Reply};
use crate::server::conn::{Conn, Stream};

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

pub(super) fn login<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Answer> {
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
