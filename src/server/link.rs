//! A connection between the event loop and the workers: its socket (and
//! TLS state), the bytes read ahead, and its session.

use std::any::Any;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConnection, StreamOwned};

use super::bodies::Bodies;
use super::conn::{Conn, Limits, Stream};
use super::limits::Slot;
use crate::protocol::{Timed, TICK};
use crate::state::{Shared, MAX_ERROR_RUN};
use crate::users::User;

/// The socket and what speaks over it.
pub struct Wire {
    pub tcp: TcpStream,
    pub kind: Kind,
}

/// What a connection speaks.
pub enum Kind {
    /// Accepted; its first byte has not said yet.
    Fresh,
    /// Protocol v1 in plaintext.
    Plain,
    /// Protocol v1 inside TLS.
    Tls(Box<ServerConnection>),
}

/// A login read and handed to the hasher's queue (`logins`).
pub struct PendingLogin {
    pub user: String,
    pub password: crate::protocol::Password,
    /// When the request was read (for its log line).
    pub started: Instant,
    /// What the front end that read it keeps to answer it when it comes
    /// back (the web API: the request's cookie and keep-alive).
    pub resume: Option<Box<dyn Any + Send>>,
}

/// A login the hasher checked, for a worker to answer.
pub struct LoginDone {
    pub user: String,
    pub outcome: Result<Arc<User>, crate::error::Error>,
    pub started: Instant,
    /// [`PendingLogin::resume`], given back.
    pub resume: Option<Box<dyn Any + Send>>,
}

/// What a connection's requests share.
pub struct SessionState {
    /// The logged-in user, if any.
    pub user: Option<Arc<User>>,
    /// A login waiting for the hasher: the connection is in its queue.
    pub login: Option<PendingLogin>,
    /// A login checked and not answered yet.
    pub login_done: Option<LoginDone>,
    /// When the connection was accepted (the login timeout counts from it).
    pub opened: Instant,
    /// Error replies in a row.
    pub error_run: u32,
    /// The WebDAV credentials this connection verified.
    pub dav: Option<crate::http::dav::Verified>,
}

impl SessionState {
    /// Counts a reply in the connection's run of errors (every front end
    /// alike: v1 error frames, HTTP statuses of 400 and above). Returns
    /// whether the connection may go on: after [`MAX_ERROR_RUN`] error
    /// replies in a row it is closed, and the log says so.
    pub fn count_reply(&mut self, shared: &Shared, peer: &str, failed: bool) -> bool {
        if !failed {
            self.error_run = 0;
            return true;
        }
        self.error_run += 1;
        if self.error_run < MAX_ERROR_RUN {
            return true;
        }
        shared.log.write(
            &format!("{peer} error run"),
            &format!("{peer} closed after {MAX_ERROR_RUN} error replies in a row"),
        );
        false
    }
}

/// One connection, owned by the event loop while it waits and by a
/// worker while a request is served.
pub struct Link {
    pub wire: Wire,
    /// Plaintext bytes received and not yet consumed.
    pub pending: Vec<u8>,
    pub session: SessionState,
    pub peer: SocketAddr,
    /// The peer's IP address as text, for the log and the login limits.
    pub peer_ip: String,
    /// Set by a worker: the connection is done (any last frame was sent).
    pub closing: bool,
    /// It speaks HTTP/1.1 (the web front end), not protocol v1.
    pub http: bool,
    /// The connection's share of the connection limits.
    pub _slot: Slot,
}

impl Link {
    /// A just-accepted connection.
    pub fn new(tcp: TcpStream, peer: SocketAddr, slot: Slot) -> Link {
        Link {
            wire: Wire {
                tcp,
                kind: Kind::Fresh,
            },
            pending: Vec::new(),
            session: SessionState {
                user: None,
                login: None,
                login_done: None,
                opened: Instant::now(),
                error_run: 0,
                dav: None,
            },
            peer,
            peer_ip: peer.ip().to_canonical().to_string(),
            closing: false,
            http: false,
            _slot: slot,
        }
    }

    /// Takes `peer` as the connection's address from now on (the client
    /// a PROXY header named).
    pub fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = peer;
        self.peer_ip = peer.ip().to_canonical().to_string();
    }
}

/// A front end that serves requests on a worker: protocol v1 or HTTP.
pub trait Serve {
    /// Serves the requests buffered on `conn`; returns whether the
    /// connection stays open.
    fn serve<S: Stream>(&mut self, conn: &mut Conn<S>, session: &mut SessionState) -> bool;
}

/// The time limits of a request being served.
fn limits(shared: &Shared) -> Limits {
    Limits {
        header: shared.config.header_timeout,
        stall: shared.config.idle_timeout,
        min_rate: shared.config.min_rate,
        window: shared.config.rate_window,
    }
}

/// Makes the link's socket blocking, wraps it (plaintext or TLS) with the
/// bytes already read, lets `front` serve it, and gives the link back: to
/// wait for the next request, or marked `closing`.
pub fn serve_link(shared: &Shared, mut link: Link, front: &mut impl Serve) -> Link {
    let limits = limits(shared);
    let guard = (Arc::clone(&shared.bodies), link.peer.ip());
    let pending = std::mem::take(&mut link.pending);
    let session = &mut link.session;
    let tcp = link.wire.tcp;
    let (wire, rest, open) = match link.wire.kind {
        Kind::Plain => match start(Timed::new(tcp), &pending, limits, guard) {
            Ok(mut conn) => {
                let open = front.serve(&mut conn, session);
                let (timed, rest) = conn.into_parts();
                (plain(timed), rest, open)
            }
            Err(timed) => (plain(timed), Vec::new(), false),
        },
        Kind::Tls(tls) => match start(
            StreamOwned::new(*tls, Timed::new(tcp)),
            &pending,
            limits,
            guard,
        ) {
            Ok(mut conn) => {
                let open = front.serve(&mut conn, session);
                let (s, rest) = conn.into_parts();
                (secure(s), rest, open)
            }
            Err(s) => (secure(s), Vec::new(), false),
        },
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

/// Makes the socket blocking again, with writes that wait in ticks (so
/// that a cut body stops within one) up to [`Limits::per_op`], and wraps
/// it; gives the stream back if the socket cannot be set up.
fn start<S: Stream>(
    mut stream: S,
    pending: &[u8],
    limits: Limits,
    (bodies, ip): (Arc<Bodies>, IpAddr),
) -> Result<Conn<S>, S> {
    let tcp = stream.timed().get_ref();
    let setup = tcp
        .set_nonblocking(false)
        .and_then(|()| tcp.set_write_timeout(Some(TICK)));
    match setup {
        Ok(()) => {
            stream.timed().set_patience(limits.per_op());
            Ok(Conn::new(stream, pending, limits).with_bodies(bodies, ip))
        }
        Err(_) => Err(stream),
    }
}
