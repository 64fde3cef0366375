//! Serving HTTP on a worker: parse each buffered request head, answer it
//! through [`super::api`], and give the connection back to the event loop
//! when no whole head is left (keep-alive) or it must close.

use std::io::BufRead;

use rustls::{ServerConnection, StreamOwned};

use super::api::{self, Front};
use super::request::Request;
use super::response::Response;
use crate::protocol::Timed;
use crate::server::conn::{Conn, Limits, Stream};
use crate::server::link::{Kind, Link, Wire};
use crate::state::Shared;

/// Serves the HTTP requests buffered on `link` and returns it: to wait
/// for the next request, or marked `closing`.
pub fn serve(shared: &Shared, mut link: Link) -> Link {
    let limits = Limits {
        header: shared.config.header_timeout,
        stall: shared.config.idle_timeout,
        min_rate: shared.config.min_rate,
        window: shared.config.rate_window,
    };
    let pending = std::mem::take(&mut link.pending);
    let front = Front {
        peer: link.peer.to_string(),
        peer_ip: link.peer_ip.clone(),
        secure: matches!(link.wire.kind, Kind::Tls(_)),
        loopback: link.peer.ip().to_canonical().is_loopback(),
    };
    let tcp = link.wire.tcp;
    let (wire, rest, open) = match link.wire.kind {
        Kind::Plain => match start(Timed::new(tcp), &pending, limits) {
            Ok(mut conn) => {
                let open = run(shared, &mut conn, &front);
                let (timed, rest) = conn.into_parts();
                (plain(timed), rest, open)
            }
            Err(timed) => (plain(timed), Vec::new(), false),
        },
        Kind::Tls(tls) => {
            let stream = StreamOwned::new(*tls, Timed::new(tcp));
            match start(stream, &pending, limits) {
                Ok(mut conn) => {
                    let open = run(shared, &mut conn, &front);
                    let (s, rest) = conn.into_parts();
                    (secure(s), rest, open)
                }
                Err(s) => (secure(s), Vec::new(), false),
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
fn start<S: Stream>(mut stream: S, pending: &[u8], limits: Limits) -> Result<Conn<S>, S> {
    let tcp = stream.timed().get_ref();
    let setup = tcp
        .set_nonblocking(false)
        .and_then(|()| tcp.set_write_timeout(Some(limits.per_op())));
    match setup {
        Ok(()) => Ok(Conn::new(stream, pending, limits)),
        Err(_) => Err(stream),
    }
}

/// Serves requests while whole heads are buffered. Returns whether the
/// connection stays open.
fn run<S: Stream>(shared: &Shared, conn: &mut Conn<S>, front: &Front) -> bool {
    loop {
        let req = match Request::parse(conn.buffered()) {
            Ok(Some((req, len))) => {
                conn.consume(len);
                req
            }
            Ok(None) => return true,
            Err(e) => {
                let status = if conn.buffered().len() >= super::MAX_HEAD {
                    431
                } else {
                    400
                };
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
        let open = api::handle(shared, conn, &req, front);
        if !open || shared.stopping() {
            return false;
        }
    }
}
