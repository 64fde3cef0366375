//! The web front end: HTTP/1.1 on the server's one port, a JSON API under
//! `/api/` that runs the same commands as protocol v1, and the page that
//! uses it, built into the binary (`docs/HTTP.md`).
//!
//! The event loop tells HTTP by the first byte (an ASCII letter) or by
//! ALPN `http/1.1` inside TLS, and hands a connection to a worker once a
//! whole request head is buffered ([`head_ready`]). The worker
//! ([`serve`]) answers the requests buffered and gives the connection
//! back, so keep-alive connections wait in the loop as v1 ones do.

pub mod api;
pub mod assets;
pub mod dav;
pub mod request;
pub mod response;
pub mod sessions;
mod worker;

pub use worker::serve;

/// The ALPN name of HTTP/1.1.
pub const ALPN_HTTP: &[u8] = b"http/1.1";
/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers one request may carry.
pub const MAX_HEADERS: usize = 64;

/// Whether `bytes` begin with a whole request head, or with something no
/// wait can mend (too long, or not HTTP), which is answered at once.
pub fn head_ready(bytes: &[u8]) -> bool {
    if bytes.len() >= MAX_HEAD {
        return true;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    !matches!(req.parse(bytes), Ok(httparse::Status::Partial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_ready_when_whole_or_hopeless() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(head_ready(head));
        assert!(!head_ready(&head[..head.len() - 1]));
        assert!(!head_ready(b"GE"));
        assert!(head_ready(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"));
        let long = [b'a'; MAX_HEAD];
        assert!(head_ready(&long));
    }
}
