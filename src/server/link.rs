//! A connection between the event loop and the workers: its socket (and
//! TLS state), the bytes read ahead, and its session.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use rustls::ServerConnection;

use super::limits::Slot;
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

/// What a connection's requests share.
pub struct SessionState {
    /// The logged-in user, if any.
    pub user: Option<Arc<User>>,
    /// When the connection was accepted (the login timeout counts from it).
    pub opened: Instant,
    /// Error replies in a row.
    pub error_run: u32,
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
                opened: Instant::now(),
                error_run: 0,
            },
            peer,
            peer_ip: peer.ip().to_canonical().to_string(),
            closing: false,
            http: false,
            _slot: slot,
        }
    }
}
