//! Serving HTTP on a worker: parse each buffered request head, answer it
//! through [`super::api`], and give the connection back to the event loop
//! when no whole head is left (keep-alive) or it must close.

use std::io::BufRead;

use super::api::{self, Front};
use super::request::{refusal_status, Request};
use super::response::Response;
use crate::server::conn::{Conn, Stream};
use crate::server::link::{serve_link, Kind, Link, Serve, SessionState};
use crate::state::Shared;

/// Serves the HTTP requests buffered on `link` and returns it: to wait
/// for the next request, or marked `closing`.
pub fn serve(shared: &Shared, link: Link) -> Link {
    let front = Front {
        peer: link.peer.to_string(),
        peer_ip: link.peer_ip.clone(),
        secure: matches!(link.wire.kind, Kind::Tls(_)),
        loopback: link.peer.ip().to_canonical().is_loopback(),
    };
    serve_link(shared, link, &mut Http { shared, front })
}

/// HTTP as a front end of [`serve_link`].
struct Http<'a> {
    shared: &'a Shared,
    front: Front,
}

impl Serve for Http<'_> {
    fn serve<S: Stream>(&mut self, conn: &mut Conn<S>, session: &mut SessionState) -> bool {
        run(self.shared, conn, &self.front, session)
    }
}

/// Serves requests while whole heads are buffered. Returns whether the
/// connection stays open.
fn run<S: Stream>(
    shared: &Shared,
    conn: &mut Conn<S>,
    front: &Front,
    session: &mut SessionState,
) -> bool {
    if let Some(done) = session.login_done.take() {
        // Back from the login queue: answer the login, then what is
        // buffered behind it.
        if !api::answer_login(shared, conn, front, session, done) {
            return false;
        }
    }
    loop {
        let req = match Request::parse(conn.buffered()) {
            Ok(Some((req, len))) => {
                conn.consume(len);
                if super::dav::is_dav(&req.path) {
                    // WebDAV signs in per request (Basic): it sets the
                    // user itself.
                    let open = super::dav::handle(shared, conn, &req, front, session);
                    if !open || shared.stopping() {
                        return false;
                    }
                    continue;
                }
                // Whether the connection is signed in, as the event loop
                // sees it: an anonymous one must sign in within the login
                // timeout, like any other.
                session.user = req
                    .cookie(api::COOKIE)
                    .and_then(|t| shared.web.get(t, shared.config.web_idle))
                    .map(|s| s.user);
                req
            }
            Ok(None) => return true,
            Err(e) => {
                let status = refusal_status(&e, conn.buffered().len());
                let r = Response::code(status, e.code(), &e.public_message());
                let _ = conn.send_raw(&r.to_bytes(true));
                api::log(
                    shared,
                    front,
                    None,
                    "-",
                    None,
                    status,
                    0,
                    std::time::Instant::now(),
                );
                return false;
            }
        };
        let open = api::handle(shared, conn, &req, front, session);
        if !open || shared.stopping() {
            return false;
        }
        if session.login.is_some() {
            return true; // to the login queue (see `server::pool`)
        }
    }
}
