//! The PROXY protocol (HAProxy's `send-proxy` and `send-proxy-v2`), read
//! from the peers of `--proxy-from` before anything else they send: a
//! load balancer in TCP mode says in it which client it carries, and that
//! address is then the connection's for every per-address limit and the
//! log.
//!
//! The header is parsed by the `ppp` crate, which says when its input is
//! a prefix of a header (incomplete) rather than a bad one, so that the
//! event loop can feed it what has arrived so far without blocking. The
//! bounds are ours: a v1 line of at most [`MAX_V1`] bytes (as the
//! specification says; `ppp` holds to it too), a v2 header of at most
//! [`MAX_V2`] bytes (checked from its length field before waiting for the
//! rest), and the event loop's header deadline.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};

use ppp::v2;
use ppp::{v1, PartialResult};

/// The longest v1 line, `\r\n` included (the specification's bound).
pub const MAX_V1: usize = 107;
/// The longest v2 header we take: the 16 fixed bytes and 520 of
/// addresses and TLVs (room for two IPv6 addresses and what HAProxy adds
/// by default; a longer one is refused, not waited for).
pub const MAX_V2: usize = 536;
/// The v2 signature, its first 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Bytes of a v2 header before its addresses.
const V2_FIXED: usize = 16;

/// What the bytes received so far are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The start of a header: wait for more.
    Incomplete,
    /// A whole header of `len` bytes (the rest is the client's). The
    /// client's address, or `None` where the proxy speaks for itself
    /// (v2 `LOCAL`, v1 `UNKNOWN`, an address family without one): then
    /// the connection's own peer stands.
    Header {
        len: usize,
        client: Option<SocketAddr>,
    },
    /// Not a header we take, and why.
    Invalid(&'static str),
}

/// Parses the PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    if let Some(why) = v2_oversize(buf) {
        return Parsed::Invalid(why);
    }
    // A v1 line is parsed whole: `ppp` takes some cut lines (one ending
    // in a port's space, say) for bad ones.
    let v1_prefix = buf.len().min(5);
    if buf[..v1_prefix] == b"PROXY"[..v1_prefix] {
        let end = buf.len().min(MAX_V1);
        return match buf[..end].iter().position(|&b| b == b'\n') {
            Some(i) => v1_line(&buf[..=i]),
            None if buf.len() >= MAX_V1 => Parsed::Invalid("the PROXY v1 line is too long"),
            None => Parsed::Incomplete,
        };
    }
    match v2::Header::try_from(buf) {
        r if r.is_incomplete() => Parsed::Incomplete,
        Ok(h) => {
            // TLVs (ALPN, authority, unique id, SSL...) are skipped: the
            // client's address is all we take from a header.
            let client = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, _) => None,
            };
            Parsed::Header {
                len: h.header.len(),
                client,
            }
        }
        Err(_) if buf.starts_with(V2_SIGNATURE) => Parsed::Invalid("a malformed PROXY v2 header"),
        _ => Parsed::Invalid("no PROXY header"),
    }
}

/// A whole v1 line, `\n` included.
fn v1_line(line: &[u8]) -> Parsed {
    let Ok(h) = v1::Header::try_from(line) else {
        return Parsed::Invalid("a malformed PROXY v1 header");
    };
    let client = match h.addresses {
        v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v1::Addresses::Unknown => None,
    };
    Parsed::Header {
        len: line.len(),
        client,
    }
}

/// Where reading a connection's PROXY header stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing more has arrived yet.
    Wait,
    /// The header is in and taken off `pending`, which keeps what came
    /// after it; the client it names, if any (see [`Parsed::Header`]).
    Done(Option<SocketAddr>),
    /// Not a header we take.
    Bad(&'static str),
    /// The peer closed, or the socket failed.
    Closed,
}

/// Reads a non-blocking `tcp` into `pending` until a whole header is in,
/// it is known to be bad, or nothing more has arrived. Never reads past
/// [`MAX_V2`] bytes in all: what the client sent after the header stays
/// in the socket (or in `pending`) for the protocol to read.
pub fn read_header(tcp: &TcpStream, pending: &mut Vec<u8>) -> Progress {
    let mut buf = [0u8; MAX_V2];
    loop {
        match parse(pending) {
            Parsed::Incomplete => {}
            Parsed::Header { len, client } => {
                pending.drain(..len);
                return Progress::Done(client);
            }
            Parsed::Invalid(why) => return Progress::Bad(why),
        }
        let want = MAX_V2.saturating_sub(pending.len());
        if want == 0 {
            return Progress::Bad("the PROXY header is too long");
        }
        match (&*tcp).read(&mut buf[..want]) {
            Ok(0) => return Progress::Closed,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Progress::Closed,
        }
    }
}

/// Why a v2 header whose length field is already in is too long.
fn v2_oversize(buf: &[u8]) -> Option<&'static str> {
    if buf.len() < V2_FIXED || !buf.starts_with(V2_SIGNATURE) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    (V2_FIXED + len > MAX_V2).then_some("the PROXY v2 header is too long")
}

/// How a v1 header begins: a peer outside `--proxy-from` that sends it
/// is refused (a v2 header is known by its first byte, `\r`, which
/// nothing else we speak begins with).
pub const V1_START: &[u8] = b"PROXY ";

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    /// A v2 header: `command` 0 (LOCAL) or 1 (PROXY), `family` 0x11 (TCP
    /// over IPv4), 0x21 (TCP over IPv6) or 0x00, then `rest`.
    fn v2(command: u8, family: u8, rest: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(rest.len()).unwrap().to_be_bytes());
        h.extend_from_slice(rest);
        h
    }

    fn v4_addresses() -> Vec<u8> {
        // 127.0.0.4:40000 to 127.0.0.1:9000.
        let mut a = vec![127, 0, 0, 4, 127, 0, 0, 1];
        a.extend_from_slice(&40000u16.to_be_bytes());
        a.extend_from_slice(&9000u16.to_be_bytes());
        a
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 9000\r\n";
        let mut buf = line.to_vec();
        buf.extend_from_slice(b"\x16\x03\x01rest");
        assert_eq!(
            parse(&buf),
            Parsed::Header {
                len: line.len(),
                client: addr("192.0.2.7:51000")
            }
        );
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 9000\r\n";
        assert_eq!(
            parse(line),
            Parsed::Header {
                len: line.len(),
                client: addr("[2001:db8::7]:51000")
            }
        );
        let line = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            parse(line),
            Parsed::Header {
                len: line.len(),
                client: None
            }
        );
        // UNKNOWN may carry anything up to the end of its line.
        let line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nGET";
        assert!(matches!(
            parse(line),
            Parsed::Header {
                len: 35,
                client: None
            }
        ));
    }

    #[test]
    fn v2_proxy_and_local_over_ipv4_and_ipv6() {
        let h = v2(1, 0x11, &v4_addresses());
        let mut buf = h.clone();
        buf.extend_from_slice(b"\0\0\0\x10{}");
        assert_eq!(
            parse(&buf),
            Parsed::Header {
                len: h.len(),
                client: addr("127.0.0.4:40000")
            }
        );
        let mut a6 = Vec::new();
        a6.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a6.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a6.extend_from_slice(&[0xc3, 0x50, 0x23, 0x28]);
        assert_eq!(
            parse(&v2(1, 0x21, &a6)),
            Parsed::Header {
                len: 16 + 36,
                client: addr("[2001:db8::7]:50000")
            }
        );
        // LOCAL (HAProxy's health checks): the proxy speaks for itself,
        // whatever addresses it gives.
        assert_eq!(
            parse(&v2(0, 0x00, &[])),
            Parsed::Header {
                len: 16,
                client: None
            }
        );
        assert_eq!(
            parse(&v2(0, 0x11, &v4_addresses())),
            Parsed::Header {
                len: 28,
                client: None
            }
        );
        // PROXY over an unspecified family: no address to take.
        assert_eq!(
            parse(&v2(1, 0x00, &[])),
            Parsed::Header {
                len: 16,
                client: None
            }
        );
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut rest = v4_addresses();
        // ALPN "h2", authority "disk.example", and a NOOP of padding.
        rest.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        rest.extend_from_slice(&[0x02, 0, 12]);
        rest.extend_from_slice(b"disk.example");
        rest.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]);
        let h = v2(1, 0x11, &rest);
        let mut buf = h.clone();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&buf),
            Parsed::Header {
                len: h.len(),
                client: addr("127.0.0.4:40000")
            }
        );
    }

    #[test]
    fn truncated_headers_wait_for_more() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 9000\r\n";
        for n in 1..v1.len() {
            assert_eq!(parse(&v1[..n]), Parsed::Incomplete, "{n}");
        }
        let h = v2(1, 0x11, &v4_addresses());
        for n in 0..h.len() {
            assert_eq!(parse(&h[..n]), Parsed::Incomplete, "{n}");
        }
    }

    #[test]
    fn oversize_headers_are_refused_without_waiting() {
        // A v2 length past the bound: refused from the fixed part alone.
        let mut h = v2(1, 0x11, &v4_addresses());
        h[14..16].copy_from_slice(&600u16.to_be_bytes());
        assert!(matches!(parse(&h[..16]), Parsed::Invalid(_)));
        // At the bound, taken.
        let mut rest = v4_addresses();
        let pad = MAX_V2 - 16 - rest.len() - 3;
        rest.push(0x04);
        rest.extend_from_slice(&u16::try_from(pad).unwrap().to_be_bytes());
        rest.resize(rest.len() + pad, 0);
        let h = v2(1, 0x11, &rest);
        assert_eq!(h.len(), MAX_V2);
        assert!(matches!(parse(&h), Parsed::Header { len: MAX_V2, .. }));
        // A v1 line that does not end within 107 bytes.
        let long = format!("PROXY TCP4 {}", "1".repeat(120));
        assert!(matches!(parse(long.as_bytes()), Parsed::Invalid(_)));
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        assert!(matches!(parse(long.as_bytes()), Parsed::Invalid(_)));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b"\x16\x03\x01\x02\x00"[..],
            b"\0\0\0\x10{\"cmd\":\"ping\"}",
            b"GET / HTTP/1.1\r\n\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 ::1 ::2 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x22\x11\0\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x04abcd",
            b"\r\n\r\nX",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
