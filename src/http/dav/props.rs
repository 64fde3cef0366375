//! `PROPFIND` (Depth 0 and 1; infinity is refused with
//! `propfind-finite-depth`); `PROPPATCH` is in `patch`.
//!
//! Live properties come from the file itself: size, modification time,
//! the MD5 as ETag and as ownCloud's `oc:checksums`, locks, and the
//! user's quota (RFC 4331). Dead properties are what clients set with
//! `PROPPATCH`, stored with the file or folder ([`crate::storage::Prop`]).
//! A folder's listing is written as it is read, in chunks, so that a
//! folder of any size costs the answer a bounded buffer.

use super::lock::activelock;
use super::xml::{escape, Elem, DAV, OC};
use super::{href, read::content_type, xml, xml_response, Answer, Dav, Fail, Result};
use crate::error::Error;
use crate::http::response::CSP;
use crate::server::conn::{Conn, Stream};
use crate::storage::{Kind, Prop};

/// The live properties in `DAV:`.
const LIVE: [&str; 11] = [
    "resourcetype",
    "getcontentlength",
    "getlastmodified",
    "creationdate",
    "displayname",
    "getetag",
    "getcontenttype",
    "supportedlock",
    "lockdiscovery",
    "quota-available-bytes",
    "quota-used-bytes",
];

/// Bytes of a multistatus gathered before they are sent as a chunk.
const CHUNK: usize = 64 * 1024;

/// What a `PROPFIND` asks for.
enum Want {
    /// `allprop` (or no body), with the `include`d names.
    All(Vec<(String, String)>),
    Names,
    Some(Vec<(String, String)>),
}

/// Whether `{ns}name` is a property the server computes.
pub(super) fn is_live(ns: &str, name: &str) -> bool {
    ns == DAV && LIVE.contains(&name) || ns == OC && name == "checksums"
}

/// One file or folder to describe.
pub(super) struct Entry {
    pub(super) path: String,
    pub(super) folder: bool,
    size: u64,
    mtime: u64,
    md5: Option<String>,
}

/// `<prefix:name>` pieces of a property element.
fn open_tag(ns: &str, name: &str) -> (String, String) {
    match ns {
        DAV => (format!("D:{name}"), String::new()),
        OC => (format!("oc:{name}"), String::new()),
        "" => (name.to_string(), " xmlns=\"\"".to_string()),
        _ => (format!("X:{name}"), format!(" xmlns:X=\"{}\"", escape(ns))),
    }
}

pub(super) fn element(ns: &str, name: &str, value: &str) -> String {
    let (tag, decl) = open_tag(ns, name);
    if value.is_empty() {
        format!("<{tag}{decl}/>")
    } else {
        format!("<{tag}{decl}>{value}</{tag}>")
    }
}

impl Dav<'_> {
    /// The value of live property `{ns}name` of `e`, if it has one.
    fn live(&self, e: &Entry, ns: &str, name: &str) -> Option<String> {
        if ns == OC {
            let md5 = e.md5.as_ref()?;
            return (name == "checksums").then(|| format!("<oc:checksum>MD5:{md5}</oc:checksum>"));
        }
        if ns != DAV {
            return None;
        }
        let leaf = e.path.rsplit('/').next().unwrap_or("");
        Some(match name {
            "resourcetype" if e.folder => "<D:collection/>".into(),
            "resourcetype" => String::new(),
            "getcontentlength" if !e.folder => e.size.to_string(),
            "getlastmodified" => xml::http_date(e.mtime),
            "creationdate" => xml::rfc3339(e.mtime),
            "displayname" => escape(leaf).into_owned(),
            "getetag" if !e.folder => format!("\"{}\"", e.md5.as_ref()?),
            "getcontenttype" if !e.folder => content_type(leaf).into(),
            "supportedlock" => "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope>\
                <D:locktype><D:write/></D:locktype></D:lockentry><D:lockentry>\
                <D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype>\
                </D:lockentry>"
                .into(),
            "lockdiscovery" => self
                .shared
                .locks
                .covering(self.key(), &e.path)
                .iter()
                .map(activelock)
                .collect(),
            "quota-used-bytes" if e.folder => self.quota().0.to_string(),
            "quota-available-bytes" if e.folder => self.quota().1.to_string(),
            _ => return None,
        })
    }

    /// (bytes used, bytes available): the quota's rest, or without one,
    /// the free space of the data dir's filesystem.
    fn quota(&self) -> (u64, u64) {
        let used = self.shared.disk.usage(self.key()).map_or(0, |u| u.1);
        let quota = self.user.quota.or(self.shared.config.quota);
        let free = match quota {
            Some(q) => q.saturating_sub(used),
            None => rustix::fs::statvfs(&self.shared.config.data)
                .map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize)),
        };
        (used, free)
    }

    /// The names of the live properties `e` has, for `allprop`.
    fn live_names(e: &Entry) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = LIVE
            .iter()
            .filter(|n| !n.starts_with("quota"))
            .filter(|n| {
                !e.folder || !matches!(**n, "getcontentlength" | "getetag" | "getcontenttype")
            })
            .map(|n| (DAV, *n))
            .collect();
        if e.folder {
            v.push((DAV, "quota-used-bytes"));
            v.push((DAV, "quota-available-bytes"));
        } else {
            v.push((OC, "checksums"));
        }
        v
    }

    /// `<D:response>` for `e`.
    fn response(&self, e: &Entry, want: &Want) -> std::result::Result<String, Error> {
        let mut found = String::new();
        let mut missing = String::new();
        let dead = |d: &Self| d.shared.disk.props(d.key(), &e.path);
        match want {
            Want::All(include) => {
                for (ns, name) in Self::live_names(e) {
                    if let Some(v) = self.live(e, ns, name) {
                        found.push_str(&element(ns, name, &v));
                    }
                }
                for (ns, name) in include {
                    if !Self::live_names(e).contains(&(ns.as_str(), name.as_str())) {
                        if let Some(v) = self.live(e, ns, name) {
                            found.push_str(&element(ns, name, &v));
                        }
                    }
                }
                for p in dead(self)? {
                    found.push_str(&element(&p.ns, &p.name, &p.value));
                }
            }
            Want::Names => {
                for (ns, name) in Self::live_names(e) {
                    found.push_str(&element(ns, name, ""));
                }
                for p in dead(self)? {
                    found.push_str(&element(&p.ns, &p.name, ""));
                }
            }
            Want::Some(names) => {
                let mut props: Option<Vec<Prop>> = None;
                for (ns, name) in names {
                    let value = if is_live(ns, name) {
                        self.live(e, ns, name)
                    } else {
                        if props.is_none() {
                            props = Some(dead(self)?);
                        }
                        props
                            .iter()
                            .flatten()
                            .find(|p| p.ns == *ns && p.name == *name)
                            .map(|p| p.value.clone())
                    };
                    match value {
                        Some(v) => found.push_str(&element(ns, name, &v)),
                        None => missing.push_str(&element(ns, name, "")),
                    }
                }
            }
        }
        let mut out = format!(
            "<D:response><D:href>{}</D:href>",
            escape(&href(&e.path, e.folder))
        );
        for (props, status) in [(found, "200 OK"), (missing, "404 Not Found")] {
            if !props.is_empty() {
                out.push_str(&format!(
                    "<D:propstat><D:prop>{props}</D:prop><D:status>HTTP/1.1 {status}</D:status></D:propstat>"
                ));
            }
        }
        out.push_str("</D:response>\n");
        Ok(out)
    }
}

pub(super) const HEAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
<D:multistatus xmlns:D=\"DAV:\" xmlns:oc=\"http://owncloud.org/ns\">\n";

fn names_in(prop: &Elem) -> Vec<(String, String)> {
    prop.elems()
        .map(|e| (e.ns.clone(), e.name.clone()))
        .collect()
}

/// The entry of `path`, or `None` if nothing is there.
pub(super) fn entry_of(d: &Dav<'_>, path: &str) -> std::result::Result<Option<Entry>, Error> {
    let storage = &d.shared.disk;
    Ok(match storage.kind(d.key(), path)? {
        Kind::Nothing => None,
        Kind::Folder(m) => Some(Entry {
            path: path.to_string(),
            folder: true,
            size: 0,
            mtime: m.mtime,
            md5: None,
        }),
        Kind::File(_) => {
            let opened = match storage.open_file(d.key(), path) {
                Ok(x) => x,
                Err(Error::NotFound) => return Ok(None),
                Err(e) => return Err(e),
            };
            Some(Entry {
                path: path.to_string(),
                folder: false,
                size: opened.size,
                mtime: opened.mtime,
                md5: Some(storage.digest(d.key(), &opened)?),
            })
        }
    })
}

/// Where a multistatus goes: chunk by chunk to the connection, or (for
/// HTTP/1.0) into one body.
struct Sink<'c, S: Stream> {
    conn: &'c mut Conn<S>,
    buf: String,
    chunked: bool,
}

impl<S: Stream> Sink<'_, S> {
    fn push(&mut self, s: &str) -> std::result::Result<(), Error> {
        self.buf.push_str(s);
        if self.chunked && self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::result::Result<(), Error> {
        if !self.buf.is_empty() {
            let mut chunk = format!("{:x}\r\n", self.buf.len()).into_bytes();
            chunk.extend_from_slice(self.buf.as_bytes());
            chunk.extend_from_slice(b"\r\n");
            self.conn.send_raw(&chunk)?;
            self.buf.clear();
        }
        Ok(())
    }
}

pub(super) fn propfind<S: Stream>(d: &mut Dav<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    let depth1 = match d.req.header("depth") {
        Some("0") => false,
        Some("1") => true,
        _ => {
            let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                <D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>";
            return Err(Fail::Reply(xml_response(403, body.into()), false));
        }
    };
    let want = match d.xml_body(conn)? {
        None => Want::All(Vec::new()),
        Some(root) if root.is(DAV, "propfind") => {
            if let Some(p) = root.child("prop") {
                Want::Some(names_in(p))
            } else if root.child("propname").is_some() {
                Want::Names
            } else if root.child("allprop").is_some() {
                Want::All(root.child("include").map(names_in).unwrap_or_default())
            } else {
                return Err(
                    Error::bad_request("a propfind names prop, propname or allprop").into(),
                );
            }
        }
        Some(_) => return Err(Error::bad_request("a PROPFIND body is a DAV:propfind").into()),
    };
    let path = d.path.clone();
    let Some(me) = entry_of(d, &path)? else {
        return Err(Error::NotFound.into());
    };
    let first = d.response(&me, &want)?;
    let chunked = d.req.version >= 1;
    let close = !d.req.keep_alive();
    if chunked {
        let mut head = format!(
            "HTTP/1.1 207 Multi-Status\r\nContent-Type: application/xml; charset=utf-8\r\n\
             Content-Security-Policy: {CSP}\r\nX-Content-Type-Options: nosniff\r\n\
             Transfer-Encoding: chunked\r\n"
        );
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        conn.send_raw(head.as_bytes())?;
    }
    let mut sink = Sink {
        conn,
        buf: String::with_capacity(CHUNK + 4096),
        chunked,
    };
    let streamed = list_into(d, &mut sink, &me, &want, &first, depth1);
    if let Err(e) = streamed {
        // Once the head is gone, a broken body is all that can say it.
        return Err(if chunked { Fail::Close } else { e.into() });
    }
    if chunked {
        sink.flush()?;
        sink.conn.send_raw(b"0\r\n\r\n")?;
        return Ok(Answer::Sent(207));
    }
    let body = std::mem::take(&mut sink.buf);
    Ok(Answer::Send(xml_response(207, body)))
}

fn list_into<S: Stream>(
    d: &Dav<'_>,
    sink: &mut Sink<'_, S>,
    me: &Entry,
    want: &Want,
    first: &str,
    depth1: bool,
) -> std::result::Result<(), Error> {
    sink.push(HEAD)?;
    sink.push(first)?;
    if depth1 && me.folder {
        let listing = d.shared.disk.listing(d.key(), &me.path, false)?;
        let join = |name: &str| {
            if me.path.is_empty() {
                name.to_string()
            } else {
                format!("{}/{name}", me.path)
            }
        };
        for f in listing.folders() {
            let e = Entry {
                path: join(f.name),
                folder: true,
                size: 0,
                mtime: f.mtime,
                md5: None,
            };
            sink.push(&d.response(&e, want)?)?;
        }
        for f in listing.iter() {
            let path = join(f.name);
            let md5 = match f.md5 {
                Some(m) => Some(m.to_string()),
                None => entry_of(d, &path)?.and_then(|e| e.md5),
            };
            let e = Entry {
                path,
                folder: false,
                size: f.size,
                mtime: f.mtime,
                md5,
            };
            sink.push(&d.response(&e, want)?)?;
        }
    }
    sink.push("</D:multistatus>\n")
}
