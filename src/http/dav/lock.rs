//! `LOCK` and `UNLOCK` (RFC 4918 §9.10–9.11) over [`crate::locks`], and
//! the `If` header (§10.4), which every method honours: a request whose
//! `If` header is false gets `412`, and the lock tokens it names are the
//! ones it submits.

use std::time::Duration;

use super::xml::{escape, Elem, DAV};
use super::{href, refuse, xml_response, Answer, Dav, Fail, Result};
use crate::commands::{self, Then};
use crate::error::Error;
use crate::locks::{Lock, Wanted, DEFAULT_TIMEOUT, MAX_TIMEOUT};
use crate::protocol::Header;
use crate::server::conn::{Conn, Stream};
use crate::storage::Kind;

/// Largest `<owner>` a lock keeps (1,024 locks a user: at most 1 MiB).
const MAX_OWNER: usize = 1024;

/// The MD5 of no bytes: what a lock on an unmapped URL creates.
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// One condition of an `If` list.
#[derive(Debug, PartialEq, Eq)]
struct Cond {
    not: bool,
    /// A state token (`<…>`) or an entity tag (`[…]`).
    token: Option<String>,
    etag: Option<String>,
}

/// One list, with the resource its tag names (none: the request's).
#[derive(Debug, PartialEq, Eq)]
struct List {
    resource: Option<String>,
    conds: Vec<Cond>,
}

fn bad_if() -> Error {
    Error::bad_request("the If header is malformed")
}

/// Parses an `If` header value.
fn parse_if(v: &str) -> std::result::Result<Vec<List>, Error> {
    let mut lists = Vec::new();
    let mut resource = None;
    let mut rest = v.trim_start();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('<') {
            let (tag, after) = r.split_once('>').ok_or_else(bad_if)?;
            resource = Some(tag.to_string());
            rest = after.trim_start();
            continue;
        }
        let r = rest.strip_prefix('(').ok_or_else(bad_if)?;
        let (inside, after) = r.split_once(')').ok_or_else(bad_if)?;
        let mut conds = Vec::new();
        let mut c = inside.trim_start();
        while !c.is_empty() {
            let mut not = false;
            if let Some(x) = c.strip_prefix("Not") {
                not = true;
                c = x.trim_start();
            }
            let cond = if let Some(x) = c.strip_prefix('<') {
                let (t, a) = x.split_once('>').ok_or_else(bad_if)?;
                c = a;
                Cond {
                    not,
                    token: Some(t.to_string()),
                    etag: None,
                }
            } else if let Some(x) = c.strip_prefix('[') {
                let (t, a) = x.split_once(']').ok_or_else(bad_if)?;
                c = a;
                Cond {
                    not,
                    token: None,
                    etag: Some(t.to_string()),
                }
            } else {
                return Err(bad_if());
            };
            conds.push(cond);
            c = c.trim_start();
        }
        if conds.is_empty() {
            return Err(bad_if());
        }
        lists.push(List {
            resource: resource.clone(),
            conds,
        });
        rest = after.trim_start();
    }
    if lists.is_empty() {
        return Err(bad_if());
    }
    Ok(lists)
}

/// The ETag of `path` in this user's tree: a file's quoted MD5.
pub(super) fn etag_of(d: &Dav<'_>, path: &str) -> Option<String> {
    let storage = &d.shared.disk;
    let opened = storage.open_file(d.key(), path).ok()?;
    let md5 = storage.digest(d.key(), &opened).ok()?;
    Some(format!("\"{md5}\""))
}

/// Evaluates the request's `If` header, if any, and takes the lock
/// tokens it names as submitted.
///
/// # Errors
/// `400` for a malformed header, `412` when no list holds.
pub(super) fn check_if(d: &mut Dav<'_>) -> Result<()> {
    let Some(value) = d.req.header("if") else {
        return Ok(());
    };
    let lists = parse_if(value)?;
    let mut held = false;
    for list in &lists {
        let path = match &list.resource {
            None => Some(d.path.clone()),
            Some(tag) => super::url_path(d, tag).ok(),
        };
        let Some(path) = path else { continue };
        let mut etag = None;
        let all = list.conds.iter().all(|c| {
            let truth = if let Some(t) = &c.token {
                d.shared.locks.holds(d.key(), &path, t)
            } else {
                let want = c.etag.as_deref().unwrap_or_default();
                let have = etag.get_or_insert_with(|| etag_of(d, &path));
                have.as_deref() == Some(want)
            };
            truth != c.not
        });
        held |= all;
    }
    d.tokens = lists
        .iter()
        .flat_map(|l| l.conds.iter().filter_map(|c| c.token.clone()))
        .collect();
    if held {
        Ok(())
    } else {
        Err(refuse(412, "the If header's conditions do not hold"))
    }
}

/// The `Timeout` a request asks for, bounded.
fn timeout(d: &Dav<'_>) -> Duration {
    let Some(v) = d.req.header("timeout") else {
        return DEFAULT_TIMEOUT;
    };
    for t in v.split(',').map(str::trim) {
        if t.eq_ignore_ascii_case("infinite") {
            return MAX_TIMEOUT;
        }
        if let Some(n) = t
            .strip_prefix("Second-")
            .and_then(|n| n.parse::<u64>().ok())
        {
            return Duration::from_secs(n).min(MAX_TIMEOUT);
        }
    }
    DEFAULT_TIMEOUT
}

/// A lock as `<D:activelock>`.
pub(super) fn activelock(l: &Lock) -> String {
    let scope = if l.shared { "shared" } else { "exclusive" };
    let depth = if l.deep { "infinity" } else { "0" };
    let owner = if l.owner.is_empty() {
        String::new()
    } else {
        format!("<D:owner>{}</D:owner>", l.owner)
    };
    format!(
        "<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope><D:{scope}/></D:lockscope>\
         <D:depth>{depth}</D:depth>{owner}<D:timeout>Second-{}</D:timeout>\
         <D:locktoken><D:href>{}</D:href></D:locktoken>\
         <D:lockroot><D:href>{}</D:href></D:lockroot></D:activelock>",
        l.seconds_left().max(1),
        escape(&l.token),
        escape(&href(&l.path, false)),
    )
}

fn answer(status: u16, l: &Lock) -> Answer {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:prop xmlns:D=\"DAV:\"><D:lockdiscovery>{}</D:lockdiscovery></D:prop>",
        activelock(l)
    );
    Answer::Send(xml_response(status, body).with("Lock-Token", format!("<{}>", l.token)))
}

pub(super) fn lock<S: Stream>(d: &mut Dav<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    let body = d.xml_body(conn)?;
    let timeout = timeout(d);
    let Some(info) = body else {
        // A refresh: the lock named in the If header.
        let key = d.key().to_string();
        for t in &d.tokens {
            if let Some(l) = d.shared.locks.refresh(&key, &d.path, t, timeout) {
                let mut a = answer(200, &l);
                if let Answer::Send(r) = &mut a {
                    r.headers.retain(|(k, _)| *k != "Lock-Token");
                }
                return Ok(a);
            }
        }
        return Err(refuse(
            412,
            "no lock named in the If header covers this resource",
        ));
    };
    if !info.is(DAV, "lockinfo") {
        return Err(Error::bad_request("a LOCK body is a DAV:lockinfo").into());
    }
    let shared = match info.child("lockscope").and_then(|s| s.elems().next()) {
        Some(e) if e.is(DAV, "shared") => true,
        Some(e) if e.is(DAV, "exclusive") => false,
        _ => return Err(Error::bad_request("lockscope must be exclusive or shared").into()),
    };
    let write = info
        .child("locktype")
        .and_then(|t| t.elems().next())
        .is_some_and(|e: &Elem| e.is(DAV, "write"));
    if !write {
        return Err(Error::bad_request("only write locks are offered").into());
    }
    let owner = info.child("owner").map(Elem::inner_xml).unwrap_or_default();
    // Kept in memory with the lock: bounded like a dead property.
    if owner.len() > MAX_OWNER {
        return Err(Error::bad_request("a lock's owner is at most 1 KiB of XML").into());
    }
    let deep = match d.req.header("depth") {
        None => true,
        Some(v) if v.eq_ignore_ascii_case("infinity") => true,
        Some("0") => false,
        Some(_) => return Err(Error::bad_request("a lock's Depth is 0 or infinity").into()),
    };
    let storage = &d.shared.disk;
    let exists = !matches!(storage.kind(d.key(), &d.path)?, Kind::Nothing);
    if !exists
        && !matches!(
            storage.kind(d.key(), super::parent(&d.path))?,
            Kind::Folder(_)
        )
    {
        return Err(refuse(409, "the parent folder does not exist"));
    }
    let key = d.key().to_string();
    let l = d.shared.locks.lock(
        &key,
        Wanted {
            path: d.path.clone(),
            deep,
            shared,
            owner,
            timeout,
        },
    )?;
    if exists {
        return Ok(answer(200, &l));
    }
    // A lock on an unmapped URL makes an empty file (RFC 4918 §7.3).
    d.tokens.push(l.token.clone());
    if let Err(e) = create_empty(d) {
        d.shared.locks.unlock(&key, &d.path, &l.token);
        return Err(e);
    }
    Ok(answer(201, &l))
}

/// Stores an empty file at the request's path.
pub(super) fn create_empty(d: &mut Dav<'_>) -> Result<()> {
    let args = commands::put::Args {
        name: d.path.clone(),
        size: 0,
        md5: None,
    };
    let (_, then) = d.run("put", commands::request("put", &args))?;
    let Some(Then::Receive(up)) = then else {
        return Err(Error::Internal("put left no receiver".into()).into());
    };
    let mut step4 = Header::new();
    step4.insert("md5".into(), EMPTY_MD5.into());
    up.finish(&step4)?;
    Ok(())
}

pub(super) fn unlock(d: &mut Dav<'_>) -> Result<Answer> {
    let token = d
        .req
        .header("lock-token")
        .map(|t| {
            t.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .ok_or_else(|| Fail::from(Error::bad_request("UNLOCK needs a Lock-Token header")))?;
    let key = d.key().to_string();
    if d.shared.locks.unlock(&key, &d.path, &token) {
        Ok(Answer::Send(super::empty(204)))
    } else {
        Err(refuse(409, "no such lock on this resource"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_headers_parse() {
        let l = parse_if("(<opaquelocktoken:a> [\"e\"]) (Not <DAV:no-lock>)").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].conds[0].token.as_deref(), Some("opaquelocktoken:a"));
        assert_eq!(l[0].conds[1].etag.as_deref(), Some("\"e\""));
        assert!(l[1].conds[0].not);
        let t = parse_if("<http://h/dav/x> (<t>) <http://h/dav/y> ([W/\"z\"])").unwrap();
        assert_eq!(t[0].resource.as_deref(), Some("http://h/dav/x"));
        assert_eq!(t[1].resource.as_deref(), Some("http://h/dav/y"));
        assert!(parse_if("").is_err());
        assert!(parse_if("(<a>").is_err());
        assert!(parse_if("()").is_err());
        assert!(parse_if("(foo)").is_err());
    }
}
