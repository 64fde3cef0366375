//! The event loop: one thread that owns every connection between requests
//! (IO multiplexing over non-blocking sockets, epoll through `mio`).
//!
//! It accepts, applies the connection limits, reads the first byte to
//! tell TLS from plaintext, runs TLS handshakes (rustls is sans-IO), and
//! reads request headers. Only when a whole header has arrived does it
//! hand the connection to a worker ([`super::pool`]); the worker gives it
//! back after the reply. An idle or dribbling connection thus holds a
//! descriptor and a few KiB, never a worker. Deadlines (login, header,
//! idle) are checked by a sweep a few times a second.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::{ServerConfig, ServerConnection};

use super::conn::frame_ready;
use super::limits::{Full, Slots};
use super::link::{Kind, Link};
use super::proxy::{self, Progress};
use super::refused::Refused;
use crate::error::ErrorCode;
use crate::protocol::{encode_frame, error_header, MAX_REQUEST_HEADER};
use crate::state::Shared;

const LISTENER: Token = Token(usize::MAX - 1);
/// Workers giving connections back, and shutdown.
pub const WAKER: Token = Token(usize::MAX - 2);
/// How often deadlines are checked.
const SWEEP: Duration = Duration::from_millis(250);
/// How long a closing connection may take to read our last frame.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes read per `read` call while waiting for a header.
const CHUNK: usize = 16 * 1024;

/// A connection waiting in the loop.
struct Parked {
    link: Link,
    /// When it came to the loop (accepted, or given back).
    since: Instant,
    /// When the header (or TLS handshake) in progress began.
    header_since: Option<Instant>,
    /// Closing: dropped when the peer closes or at this time.
    linger_until: Option<Instant>,
    /// Plain HTTP from a peer that must use TLS: once its header is in,
    /// it is sent to the same page over `https://` (301), then closed.
    to_https: bool,
    /// From a peer of `--proxy-from`, its PROXY header not read yet (the
    /// header clock runs): its slot counts only towards the total.
    proxy: bool,
}

/// Refusal of a PROXY header from a peer outside `--proxy-from`.
const NOT_A_PROXY: &str = "a PROXY protocol header from an address not in --proxy-from";

/// What to do with a connection after it was read.
enum Next {
    Wait,
    Hand,
    Refuse(ErrorCode, &'static str),
    /// A whole HTTP header from a peer that must use TLS.
    ToHttps,
    Drop,
}

/// The loop's state.
pub struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Vec<Option<Parked>>,
    free: Vec<usize>,
    jobs: Option<Sender<Link>>,
    back: Receiver<Link>,
    shared: Arc<Shared>,
    slots: Slots,
    tls: Arc<ServerConfig>,
    /// Connections refused at accept, waiting to be answered.
    refused: Refused,
}

impl EventLoop {
    /// A loop over `listener`, handing requests to `jobs` and taking
    /// connections back from `back` (whose senders wake [`WAKER`]).
    ///
    /// # Errors
    /// If the listener cannot be registered.
    pub fn new(
        poll: Poll,
        listener: TcpListener,
        jobs: Sender<Link>,
        back: Receiver<Link>,
        shared: Arc<Shared>,
        tls: Arc<ServerConfig>,
    ) -> io::Result<EventLoop> {
        listener.set_nonblocking(true)?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let slots = Slots::new(shared.config.max_connections, shared.config.max_per_address);
        Ok(EventLoop {
            poll,
            listener: Some(listener),
            conns: Vec::new(),
            free: Vec::new(),
            jobs: Some(jobs),
            back,
            shared,
            slots,
            tls,
            refused: Refused::default(),
        })
    }

    /// A waker for this loop (for workers and for shutdown).
    ///
    /// # Errors
    /// If the waker cannot be made.
    pub fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
        Waker::new(poll.registry(), WAKER).map(Arc::new)
    }

    /// Runs until shutdown begins; then closes the listener and every
    /// waiting connection, and stops handing out requests.
    ///
    /// # Errors
    /// If polling itself fails.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        while !self.shared.stopping() {
            match self.poll.poll(&mut events, Some(SWEEP)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.take_back(),
                    Token(i) => self.ready(i),
                }
            }
            if last_sweep.elapsed() >= SWEEP {
                last_sweep = Instant::now();
                self.sweep(last_sweep);
                // Accepting may have stopped for lack of descriptors.
                self.accept();
            }
        }
        self.listener = None;
        self.conns.clear();
        self.jobs = None;
        Ok(())
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (tcp, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and the like: the sweep retries.
                    self.note(&format!("accept failed: {e}"));
                    return;
                }
            };
            if tcp.set_nonblocking(true).is_err() || tcp.set_nodelay(true).is_err() {
                continue;
            }
            // A proxy's own address carries every client's connections:
            // only the total counts it until its header names the client.
            let proxied = self.shared.config.proxy_from.contains(peer.ip());
            let take = |slots: &Slots| match proxied {
                true => slots.take_total(),
                false => slots.take(peer.ip()),
            };
            let mut taken = take(&self.slots);
            if matches!(taken, Err(Full::Total)) && self.evict_anonymous() {
                taken = take(&self.slots);
            }
            match taken {
                Ok(slot) => {
                    let link = Link::new(tcp, peer, slot);
                    if proxied {
                        self.park_proxied(link);
                    } else {
                        self.park(link);
                    }
                }
                Err(full) => {
                    let why = match full {
                        Full::Total => "the server has too many connections; try again later",
                        Full::Address => "too many connections from your address",
                    };
                    // Answered in its own words once it speaks (`refused`).
                    if proxied {
                        self.refused.add_proxied(tcp, why, Instant::now());
                    } else {
                        self.refused.add(tcp, why, Instant::now());
                    }
                    self.log_refusal(&peer.to_string(), "BUSY", why);
                }
            }
        }
    }

    /// Closes the oldest connection that waits without being logged in
    /// (and is not in the middle of a header), to make room for a newcomer
    /// when every connection is taken, as sshd's MaxStartups drops early
    /// ones. Returns whether one was closed.
    fn evict_anonymous(&mut self) -> bool {
        // Connections the workers gave back count too.
        self.take_back();
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, c.as_ref()?)))
            .filter(|(_, p)| {
                p.link.session.user.is_none()
                    && p.linger_until.is_none()
                    && p.header_since.is_none()
            })
            .min_by_key(|(_, p)| p.link.session.opened)
            .map(|(i, _)| i);
        let Some(i) = oldest else {
            return false;
        };
        if let Some(p) = &self.conns[i] {
            let peer = p.link.peer.to_string();
            self.log_refusal(&peer, "CLOSED", "made room for a newer connection");
        }
        // Its slot is released at once; it gets no last word.
        self.remove(i);
        true
    }

    /// Registers a connection and reads what it already sent (or, for a
    /// connection a worker closed, lets it linger).
    fn park(&mut self, link: Link) {
        let closing = link.closing;
        if let Some(i) = self.insert(link) {
            if closing {
                self.linger(i);
            } else {
                self.ready(i);
            }
        }
    }

    /// Registers a connection from a peer of `--proxy-from`, which must
    /// first send its PROXY header, within the header deadline.
    fn park_proxied(&mut self, link: Link) {
        if let Some(i) = self.insert(link) {
            if let Some(p) = self.conns[i].as_mut() {
                p.proxy = true;
                p.header_since = Some(Instant::now());
            }
            self.ready(i);
        }
    }

    /// Reads a proxied connection's PROXY header; once it is in, counts
    /// the connection for the client it names (or, for a header that
    /// names none, its own peer). Returns whether the connection goes on
    /// to the protocol.
    fn read_proxy_header(&mut self, i: usize) -> bool {
        let Some(p) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return false;
        };
        let client = match proxy::read_header(&p.link.wire.tcp, &mut p.link.pending) {
            Progress::Wait => return false,
            Progress::Done(client) => client.unwrap_or(p.link.peer),
            Progress::Bad(why) => {
                let peer = p.link.peer.to_string();
                self.log_refusal(&peer, ErrorCode::BadRequest.as_str(), why);
                self.remove(i);
                return false;
            }
            Progress::Closed => {
                self.remove(i);
                return false;
            }
        };
        if self.slots.assign(&mut p.link._slot, client.ip()).is_err() {
            let why = "too many connections from your address";
            let first = p.link.pending.first().copied();
            self.log_refusal(&client.to_string(), "BUSY", why);
            if let Some(p) = self.remove_parked(i) {
                // Answered in its own words once it speaks, as at accept.
                self.refused
                    .add_after(p.link.wire.tcp, why, first, Instant::now());
            }
            return false;
        }
        p.link.set_peer(client);
        p.proxy = false;
        p.header_since = None;
        true
    }

    /// Registers a connection with the poller; `None` if that failed (the
    /// connection is then dropped).
    fn insert(&mut self, link: Link) -> Option<usize> {
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        // A worker made it blocking; the loop must never block on it.
        if link.wire.tcp.set_nonblocking(true).is_err() {
            self.free.push(i);
            return None;
        }
        let fd = link.wire.tcp.as_raw_fd();
        let registered = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        );
        if registered.is_err() {
            self.free.push(i);
            return None;
        }
        self.conns[i] = Some(Parked {
            link,
            since: Instant::now(),
            header_since: None,
            linger_until: None,
            to_https: false,
            proxy: false,
        });
        Some(i)
    }

    fn take_back(&mut self) {
        while let Ok(link) = self.back.try_recv() {
            if self.shared.stopping() {
                continue;
            }
            self.park(link);
        }
    }

    fn ready(&mut self, i: usize) {
        let Some(p) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if p.linger_until.is_some() {
            if drain(&p.link.wire.tcp) {
                self.remove(i);
            }
            return;
        }
        if p.proxy && !self.read_proxy_header(i) {
            return;
        }
        let Some(p) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let config = &self.shared.config;
        let next = step(p, &self.tls, |ip| config.plaintext_from.contains(ip));
        match next {
            Next::Wait => {}
            Next::Hand => self.hand(i),
            Next::Refuse(code, why) => self.refuse(i, code, why),
            Next::ToHttps => self.redirect_to_https(i),
            Next::Drop => self.remove(i),
        }
    }

    /// Answers a plain HTTP request that must use TLS with a redirect to
    /// the same page over `https://` (a 403 if it named no usable host).
    fn redirect_to_https(&mut self, i: usize) {
        let Some(p) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let Some(answer) = crate::http::response::to_https(&p.link.pending) else {
            return self.refuse(
                i,
                ErrorCode::TlsRequired,
                "this server takes plain HTTP only from its own host; use https://",
            );
        };
        let _ = (&p.link.wire.tcp).write(&answer);
        let peer = p.link.peer.to_string();
        self.log_refusal(&peer, "301", "plain HTTP sent to https://");
        self.linger(i);
    }

    /// Gives a connection with a whole header to the workers; `BUSY` if
    /// every worker is busy and the queue is full.
    fn hand(&mut self, i: usize) {
        let Some(p) = self.remove_parked(i) else {
            return;
        };
        let Some(jobs) = &self.jobs else {
            return;
        };
        match jobs.try_send(p.link) {
            Ok(()) => {}
            Err(TrySendError::Full(link)) | Err(TrySendError::Disconnected(link)) => {
                if let Some(j) = self.insert(link) {
                    self.refuse(j, ErrorCode::Busy, "every worker is busy; try again later");
                }
            }
        }
    }

    /// Sends an error frame, then closes gently.
    fn refuse(&mut self, i: usize, code: ErrorCode, why: &str) {
        let Some(p) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let frame = if p.link.http {
            crate::http::response::refusal(code, why)
        } else {
            encode_frame(&error_header(code, why))
        };
        match &mut p.link.wire.kind {
            Kind::Fresh | Kind::Plain => {
                let _ = (&p.link.wire.tcp).write(&frame);
            }
            Kind::Tls(tls) => {
                if !tls.is_handshaking() {
                    let _ = tls.writer().write_all(&frame);
                }
            }
        }
        let peer = p.link.peer.to_string();
        self.log_refusal(&peer, code.as_str(), why);
        self.linger(i);
    }

    /// Shuts down our side and waits briefly for the peer to close, so
    /// that our last frame is read rather than lost to a reset.
    fn linger(&mut self, i: usize) {
        let Some(p) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if let Kind::Tls(tls) = &mut p.link.wire.kind {
            if !tls.is_handshaking() {
                tls.send_close_notify();
            }
            flush_tls(&mut p.link.wire.tcp, tls);
        }
        let _ = p.link.wire.tcp.shutdown(Shutdown::Write);
        p.linger_until = Some(Instant::now() + LINGER);
        if drain(&p.link.wire.tcp) {
            self.remove(i);
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.shared.bodies.sweep(now);
        self.refused.sweep(now);
        let config = &self.shared.config;
        let mut due = Vec::new();
        let mut no_header = Vec::new();
        for (i, c) in self.conns.iter().enumerate() {
            let Some(p) = c else { continue };
            if p.proxy {
                if p.header_since
                    .is_some_and(|h| now - h >= config.header_timeout)
                {
                    no_header.push(i);
                }
                continue;
            }
            let verdict = if let Some(until) = p.linger_until {
                (now >= until).then_some(None)
            } else if p
                .header_since
                .is_some_and(|h| now - h >= config.header_timeout)
            {
                Some(Some("the request header took too long"))
            } else if p.link.session.user.is_none()
                && now - p.link.session.opened >= config.login_timeout
            {
                // HTTP too: a connection whose last request carried no
                // live session (a page that stays open signs in once and
                // then sends its cookie on every request).
                Some(Some("not logged in in time"))
            } else if now - p.since >= config.idle_timeout {
                Some(Some("idle for too long"))
            } else {
                None
            };
            if let Some(v) = verdict {
                due.push((i, v));
            }
        }
        // A proxy that sends no header gets no answer: nothing it could
        // pass on would be in its client's protocol.
        for i in no_header {
            if let Some(p) = &self.conns[i] {
                let peer = p.link.peer.to_string();
                self.log_refusal(&peer, "TIMEOUT", "no PROXY header in time");
            }
            self.remove(i);
        }
        for (i, why) in due {
            match why {
                None => self.remove(i),
                Some(why) => self.refuse(i, ErrorCode::Timeout, why),
            }
        }
    }

    fn remove_parked(&mut self, i: usize) -> Option<Parked> {
        let p = self.conns.get_mut(i)?.take()?;
        let fd = p.link.wire.tcp.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        self.free.push(i);
        Some(p)
    }

    fn remove(&mut self, i: usize) {
        drop(self.remove_parked(i));
    }

    fn log_refusal(&self, peer: &str, code: &str, why: &str) {
        let ip = peer.rsplit_once(':').map_or(peer, |(ip, _)| ip);
        // Within the address's budget of failed lines, as its requests.
        let fields = crate::server::log::Fields {
            peer,
            user: None,
            request: "-",
            name: None,
            bytes: 0,
            ms: 0,
            outcome: code,
            status: None,
            detail: Some(why),
        };
        self.shared.log.request(
            ip,
            true,
            &format!("{ip} - - - 0 {code} {why}"),
            &format!("{peer} - - - 0 0ms {code} ({why})"),
            &fields,
        );
    }

    fn note(&self, text: &str) {
        self.shared.log.write(text, text);
    }
}

/// Reads what a connection sent and says what to do with it.
fn step(
    p: &mut Parked,
    tls: &Arc<ServerConfig>,
    plaintext_ok: impl Fn(std::net::IpAddr) -> bool,
) -> Next {
    let now = Instant::now();
    if matches!(p.link.wire.kind, Kind::Fresh) {
        if read_some(&p.link.wire.tcp, &mut p.link.pending).is_err() {
            return Next::Drop;
        }
        match p.link.pending.first() {
            None => return Next::Wait,
            Some(0x16) => match ServerConnection::new(Arc::clone(tls)) {
                Ok(conn) => {
                    p.link.wire.kind = Kind::Tls(Box::new(conn));
                    let hello = std::mem::take(&mut p.link.pending);
                    return tls_step(p, Some(&hello), now);
                }
                Err(_) => return Next::Drop,
            },
            Some(0x00) if plaintext_ok(p.link.peer.ip()) => p.link.wire.kind = Kind::Plain,
            Some(0x00) => {
                return Next::Refuse(
                    ErrorCode::TlsRequired,
                    "this server takes plaintext only from its own host; connect with TLS",
                )
            }
            // A PROXY v2 signature's first byte.
            Some(b'\r') => return Next::Refuse(ErrorCode::BadRequest, NOT_A_PROXY),
            Some(b) if b.is_ascii_alphabetic() => {
                p.link.http = true;
                p.to_https = !plaintext_ok(p.link.peer.ip());
                p.link.wire.kind = Kind::Plain;
            }
            Some(_) => return Next::Drop,
        }
    }
    match p.link.wire.kind {
        Kind::Tls(_) => tls_step(p, None, now),
        // Its header is read under the same limits, never handed on.
        _ if p.to_https => match plain_step(p, now) {
            Next::Hand => Next::ToHttps,
            other => other,
        },
        _ => plain_step(p, now),
    }
}

fn plain_step(p: &mut Parked, now: Instant) -> Next {
    loop {
        // `PROXY TCP4 ...` would otherwise be read as an HTTP request.
        if p.link.http && p.link.pending.starts_with(proxy::V1_START) {
            return Next::Refuse(ErrorCode::BadRequest, NOT_A_PROXY);
        }
        if request_ready(p.link.http, &p.link.pending) {
            return Next::Hand;
        }
        match read_some(&p.link.wire.tcp, &mut p.link.pending) {
            Err(()) => return Next::Drop,
            Ok(0) => break,
            Ok(_) => {}
        }
    }
    note_header(p, now, false);
    Next::Wait
}

/// Feeds TLS records (first `hello`, the bytes sniffed, then the socket)
/// to rustls, sends what it wants to send, and collects plaintext.
fn tls_step(p: &mut Parked, hello: Option<&[u8]>, now: Instant) -> Next {
    let tcp = &mut p.link.wire.tcp;
    let Kind::Tls(tls) = &mut p.link.wire.kind else {
        return Next::Drop;
    };
    if let Some(mut hello) = hello {
        while !hello.is_empty() {
            if tls.read_tls(&mut hello).is_err() {
                return Next::Drop;
            }
        }
        if tls.process_new_packets().is_err() {
            flush_tls(tcp, tls);
            return Next::Drop;
        }
    }
    let mut eof = false;
    loop {
        if !read_plaintext(tls, &mut p.link.pending) {
            return Next::Drop;
        }
        p.link.http = speaks_http(tls, &p.link.pending);
        if request_ready(p.link.http, &p.link.pending) {
            break;
        }
        if !flush_tls(tcp, tls) {
            return Next::Drop;
        }
        match tls.read_tls(&mut &*tcp) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Drop,
        }
        if tls.process_new_packets().is_err() {
            flush_tls(tcp, tls);
            return Next::Drop;
        }
    }
    if !flush_tls(tcp, tls) {
        return Next::Drop;
    }
    if !tls.is_handshaking()
        && tls
            .alpn_protocol()
            .is_some_and(|a| a != crate::tls::ALPN_NETDISK && a != crate::http::ALPN_HTTP)
    {
        return Next::Drop;
    }
    p.link.http = speaks_http(tls, &p.link.pending);
    if request_ready(p.link.http, &p.link.pending) {
        return Next::Hand;
    }
    if eof {
        return Next::Drop;
    }
    let handshaking = tls.is_handshaking();
    note_header(p, now, handshaking);
    Next::Wait
}

/// Whether a TLS connection speaks HTTP: by ALPN, or, when the client
/// offered none, by a first byte that is an ASCII letter.
fn speaks_http(tls: &ServerConnection, pending: &[u8]) -> bool {
    match tls.alpn_protocol() {
        Some(a) => a == crate::http::ALPN_HTTP,
        None => !tls.is_handshaking() && pending.first().is_some_and(u8::is_ascii_alphabetic),
    }
}

/// Whether a whole request head (a v1 frame header, or an HTTP head) is
/// buffered, or one too broken to wait for.
fn request_ready(http: bool, pending: &[u8]) -> bool {
    if http {
        crate::http::head_ready(pending)
    } else {
        frame_ready(pending)
    }
}

/// Moves decrypted bytes into `pending`, up to one header's worth.
/// `false` if the peer closed the TLS session.
fn read_plaintext(tls: &mut ServerConnection, pending: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; CHUNK];
    while !request_ready(speaks_http(tls, pending), pending) {
        match tls.reader().read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(_) => break, // WouldBlock: nothing buffered
        }
    }
    true
}

/// Writes what rustls has to send; `false` on a broken socket.
fn flush_tls(tcp: &mut TcpStream, tls: &mut ServerConnection) -> bool {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Starts or clears the header clock, and keeps the read-ahead small.
fn note_header(p: &mut Parked, now: Instant, handshaking: bool) {
    if p.link.pending.is_empty() && !handshaking {
        p.header_since = None;
        p.link.pending = Vec::new();
    } else if p.header_since.is_none() {
        p.header_since = Some(now);
    }
}

/// Reads what is there into `pending`, up to one header's worth.
/// `Ok(0)` when nothing more is there now; `Err` on end of stream or error.
fn read_some(tcp: &TcpStream, pending: &mut Vec<u8>) -> Result<usize, ()> {
    let cap = 4 + MAX_REQUEST_HEADER as usize;
    let want = CHUNK.min(cap.saturating_sub(pending.len())).max(1);
    let mut buf = [0u8; CHUNK];
    loop {
        match (&*tcp).read(&mut buf[..want]) {
            Ok(0) => return Err(()),
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
}

/// Reads and drops what a closing peer sends; `true` once it has closed.
fn drain(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; CHUNK];
    loop {
        match (&*tcp).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}
