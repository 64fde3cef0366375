//! `PUT`, `DELETE` and `MKCOL`: the `put`, `delete` and `mkdir` commands,
//! with WebDAV's rules on top (no parent is made: a missing one is `409`;
//! a body on `MKCOL` is `415`).
//!
//! A `PUT` goes through the same staging and commit as `put`: the file
//! appears in one rename once its MD5 matched. The MD5 is the client's
//! when it sends one (`Content-MD5`, or `OC-Checksum: MD5:…`), else that
//! of the bytes received; an `OC-Checksum: SHA1:…` (rclone's) is checked
//! too, hashed alongside as the bytes arrive. A mismatch is `400` and
//! replaces nothing. `X-OC-Mtime` sets the stored modification time.

use base64::Engine;
use serde_json::Value;
use sha1::{Digest, Sha1};

use super::read::lists_etag;
use super::{empty, parent, refuse, Answer, Dav, Fail, Result};
use crate::commands::{self, put::Receive, Then};
use crate::error::Error;
use crate::http::request::Request;
use crate::protocol::{is_md5_hex, Header};
use crate::server::conn::{Conn, Stream};
use crate::storage::Kind;

/// The digests a `PUT` names: (MD5, SHA-1), lowercase hex.
fn named_digests(d: &Dav<'_>) -> Result<(Option<String>, Option<String>)> {
    let mut md5 = None;
    let mut sha1 = None;
    if let Some(v) = d.req.header("content-md5") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
            .filter(|b| b.len() == 16)
            .ok_or_else(|| Fail::from(Error::bad_request("Content-MD5 is not a base64 MD5")))?;
        md5 = Some(raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
    }
    if let Some(v) = d.req.header("oc-checksum") {
        for item in v.split([' ', ',']).filter(|s| !s.is_empty()) {
            let Some((kind, hex)) = item.split_once(':') else {
                continue;
            };
            let hex = hex.to_ascii_lowercase();
            let ok_hex = |n: usize| hex.len() == n && hex.bytes().all(|b| b.is_ascii_hexdigit());
            match kind.to_ascii_uppercase().as_str() {
                "MD5" if ok_hex(32) => md5 = Some(hex),
                "SHA1" if ok_hex(40) => sha1 = Some(hex),
                "MD5" | "SHA1" => {
                    return Err(Error::bad_request("OC-Checksum has a malformed digest").into())
                }
                _ => {}
            }
        }
    }
    Ok((md5, sha1))
}

/// Whether a request's body comes with `Transfer-Encoding: chunked`.
pub(super) fn is_chunked(req: &Request) -> bool {
    req.header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

/// The length a chunked `PUT` declares (`X-Expected-Entity-Length`, or
/// ownCloud's `OC-Total-Length`): the upload's size, known up front for
/// the quota.
///
/// # Errors
/// `BAD_REQUEST` (`411` is not in the error codes) without one, or for
/// any other method.
pub(super) fn expected_length(req: &Request) -> std::result::Result<u64, Error> {
    let declared = req
        .header("x-expected-entity-length")
        .or_else(|| req.header("oc-total-length"));
    match declared.map(|v| v.trim().parse::<u64>()) {
        Some(Ok(n)) if req.method == "PUT" && req.header("content-length").is_none() => Ok(n),
        _ => Err(Error::bad_request(
            "a chunked body needs X-Expected-Entity-Length (PUT only); else send Content-Length",
        )),
    }
}

/// Reads a chunked body's bytes (RFC 9112 §7.1) until `buf` is full.
struct Chunks {
    /// Bytes left in the current chunk.
    left: u64,
    /// Whether the current chunk's data is followed by a CRLF to take.
    open: bool,
}

/// One line of a chunked body's framing, at most 4 KiB.
fn framing_line<S: Stream>(conn: &mut Conn<S>) -> std::result::Result<String, Error> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 4096 {
        let (_, read) = conn.read_body(&mut b);
        read?;
        if b[0] == b'\n' {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return String::from_utf8(line).map_err(|_| bad_chunks());
        }
        line.push(b[0]);
    }
    Err(bad_chunks())
}

fn bad_chunks() -> Error {
    Error::bad_request("the chunked body is malformed")
}

impl Chunks {
    fn fill<S: Stream>(
        &mut self,
        conn: &mut Conn<S>,
        buf: &mut [u8],
    ) -> (usize, std::result::Result<(), Error>) {
        let mut got = 0;
        while got < buf.len() {
            if self.left == 0 {
                if let Err(e) = self.next(conn) {
                    return (got, Err(e));
                }
                if self.left == 0 {
                    return (
                        got,
                        Err(Error::bad_request("the body is shorter than declared")),
                    );
                }
            }
            let want = (buf.len() - got).min(usize::try_from(self.left).unwrap_or(usize::MAX));
            let (n, read) = conn.read_body(&mut buf[got..got + want]);
            got += n;
            self.left -= n as u64;
            if read.is_err() {
                return (got, read);
            }
        }
        (got, Ok(()))
    }

    /// Takes the framing up to the next chunk's data; `left` stays 0 at
    /// the last chunk, whose trailer is taken too.
    fn next<S: Stream>(&mut self, conn: &mut Conn<S>) -> std::result::Result<(), Error> {
        if self.open && !framing_line(conn)?.is_empty() {
            return Err(bad_chunks());
        }
        let line = framing_line(conn)?;
        let size = line.split(';').next().unwrap_or("").trim();
        self.left = u64::from_str_radix(size, 16).map_err(|_| bad_chunks())?;
        self.open = self.left > 0;
        if self.left == 0 {
            while !framing_line(conn)?.is_empty() {}
        }
        Ok(())
    }

    /// After the declared bytes: the body must end there.
    fn end<S: Stream>(&mut self, conn: &mut Conn<S>) -> std::result::Result<(), Error> {
        if self.left > 0 {
            return Err(Error::bad_request("the body is longer than declared"));
        }
        self.next(conn)?;
        if self.left > 0 {
            return Err(Error::bad_request("the body is longer than declared"));
        }
        Ok(())
    }
}

/// Refuses a change whose parent folder is missing.
fn parent_must_exist(d: &Dav<'_>) -> Result<()> {
    match d.shared.disk.kind(d.key(), parent(&d.path))? {
        Kind::Folder(_) => Ok(()),
        _ => Err(refuse(409, "the parent folder does not exist")),
    }
}

pub(super) fn put<S: Stream>(d: &mut Dav<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    if d.path.is_empty() {
        return Err(refuse(405, "the root is a folder"));
    }
    let (md5, sha1) = named_digests(d)?;
    if md5.as_deref().is_some_and(|m| !is_md5_hex(m)) {
        return Err(Error::bad_request("the MD5 is malformed").into());
    }
    parent_must_exist(d)?;
    let existed = match d.shared.disk.kind(d.key(), &d.path)? {
        Kind::Folder(_) => return Err(refuse(405, "a folder is there")),
        Kind::File(_) => true,
        Kind::Nothing => false,
    };
    if let Some(v) = d.req.header("if-none-match") {
        let etag = super::lock::etag_of(d, &d.path);
        if existed && (v.trim() == "*" || etag.is_some_and(|e| lists_etag(v, &e))) {
            return Err(refuse(412, "the resource exists"));
        }
    }
    if let Some(v) = d.req.header("if-match") {
        let etag = super::lock::etag_of(d, &d.path);
        if !etag.is_some_and(|e| lists_etag(v, &e)) {
            return Err(refuse(412, "the resource does not match If-Match"));
        }
    }
    if !existed {
        // A new member changes its folder: a lock there must be held.
        d.unlocked(parent(&d.path), false)?;
    }
    let size = d.body_left;
    let name = fields(&[("name", Value::from(d.path.clone()))]);
    match d.run("discard", name) {
        Ok(_) | Err(Error::NotFound | Error::NothingStaged) => {}
        Err(e) => return Err(e.into()),
    }
    let args = commands::put::Args {
        name: d.path.clone(),
        size,
        md5: None,
    };
    let (_, then) = d.run("put", commands::request("put", &args))?;
    let Some(Then::Receive(mut up)) = then else {
        return Err(Error::Internal("put left no receiver".into()).into());
    };
    if up.offset() != 0 {
        return Err(Error::Internal("a fresh upload did not start at 0".into()).into());
    }
    let mut hasher = sha1.as_ref().map(|_| Sha1::new());
    receive(d, conn, &mut up, size, hasher.as_mut())?;
    if let (Some(want), Some(h)) = (sha1, hasher) {
        let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if got != want {
            drop(up);
            let _ = d.run("discard", fields(&[("name", Value::from(d.path.clone()))]));
            return Err(refuse(
                400,
                "the SHA-1 of the body does not match OC-Checksum",
            ));
        }
    }
    let md5 = md5.unwrap_or_else(|| up.held_md5());
    let mut step4 = Header::new();
    step4.insert("md5".into(), Value::from(md5.clone()));
    up.finish(&step4)?;
    let mut r = empty(if existed { 204 } else { 201 }).with("ETag", format!("\"{md5}\""));
    if let Some(secs) = d
        .req
        .header("x-oc-mtime")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        d.shared.disk.set_mtime(d.key(), &d.path, secs)?;
        r = r.with("X-OC-Mtime", "accepted");
    }
    Ok(Answer::Send(r.with("OC-Checksum", format!("MD5:{md5}"))))
}

/// A request's fields.
pub(super) fn fields(pairs: &[(&str, Value)]) -> Header {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

/// Feeds the `len` bytes of the body into the upload (and `sha1`).
///
/// # Errors
/// A stalled or broken connection closes it; a disk error is answered
/// once the rest of the body has been taken.
fn receive<S: Stream>(
    d: &mut Dav<'_>,
    conn: &mut Conn<S>,
    up: &mut Receive,
    len: u64,
    mut sha1: Option<&mut Sha1>,
) -> Result<()> {
    if len > 0 {
        conn.admit(len)?;
        conn.begin_body()?;
    }
    let mut left = len;
    let mut chunks = d.chunked.then_some(Chunks {
        left: 0,
        open: false,
    });
    let received = up.receive(|chunk| {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let (got, read) = match chunks.as_mut() {
            Some(c) => c.fill(conn, &mut chunk[..want]),
            None => conn.read_body(&mut chunk[..want]),
        };
        if let Some(h) = sha1.as_deref_mut() {
            h.update(&chunk[..got]);
        }
        left -= got as u64;
        (got, read)
    });
    d.bytes = len - left;
    d.body_left = left;
    let received = match (received, chunks.as_mut()) {
        (Ok(()), Some(c)) => c.end(conn).inspect_err(|_| {
            // The rest cannot be skipped: close after the answer.
            d.body_left = 1;
        }),
        (r, _) => r,
    };
    match received {
        Ok(()) => Ok(()),
        Err(e @ (Error::Timeout | Error::Disconnected(_))) => Err(match Fail::from(e) {
            Fail::Reply(r, _) => Fail::Reply(r, true),
            Fail::Close => Fail::Close,
        }),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn delete(d: &mut Dav<'_>) -> Result<Answer> {
    if d.path.is_empty() {
        return Err(refuse(403, "the root cannot be deleted"));
    }
    if d.req
        .header("depth")
        .is_some_and(|v| !v.eq_ignore_ascii_case("infinity"))
    {
        if let Kind::Folder(_) = d.shared.disk.kind(d.key(), &d.path)? {
            return Err(Error::bad_request("a folder is deleted with Depth: infinity").into());
        }
    }
    d.unlocked(parent(&d.path), false)?;
    let f = fields(&[
        ("name", Value::from(d.path.clone())),
        ("recursive", Value::from(true)),
    ]);
    d.run("delete", f)?;
    Ok(Answer::Send(empty(204)))
}

pub(super) fn mkcol(d: &mut Dav<'_>) -> Result<Answer> {
    if d.body_left > 0 {
        return Err(refuse(415, "MKCOL takes no body"));
    }
    if d.path.is_empty() || !matches!(d.shared.disk.kind(d.key(), &d.path)?, Kind::Nothing) {
        return Err(refuse(405, "something is there already"));
    }
    parent_must_exist(d)?;
    d.unlocked(parent(&d.path), false)?;
    d.run("mkdir", fields(&[("path", Value::from(d.path.clone()))]))?;
    Ok(Answer::Send(empty(201)))
}
