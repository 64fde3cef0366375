//! The file endpoints: listings, downloads, whole-file uploads, `delete`,
//! `mkdir` and `rename`, each a path's command.

use serde_json::Value;

use super::uploads::{finish, receive, wrong_offset};
use super::{
    fields_of, flag, guarded, json_body, ok, run, signed_in, Answer, Exchange, Fail, Result,
};
use crate::commands::{self, Then};
use crate::error::{Error, ErrorCode};
use crate::http::response::{head, Response};
use crate::protocol::is_md5_hex;
use crate::server::conn::{Conn, Stream};

/// `GET /api/list[/PATH][?recursive=true]`: `ls` of that folder, its
/// reply as v1 sends it: `{"ok": true, "files": [...], "folders": [...]}`.
pub(super) fn list(ex: &mut Exchange<'_>, folder: String) -> Result<Answer> {
    let recursive = flag(ex.req, "recursive")?;
    let s = signed_in(ex)?;
    let fields = fields_of(&[
        ("path", Value::from(folder)),
        ("recursive", Value::from(recursive)),
    ]);
    let (reply, extra) = run(ex, Some(s.user), "ls", fields)?;
    match extra.frame {
        // The v1 reply frame is the JSON object after its length prefix.
        Some(frame) => Ok(Answer::Send(Response::raw_json(
            200,
            frame.get(4..).unwrap_or_default().to_vec(),
        ))),
        None => Ok(ok(200, reply)),
    }
}

/// `DELETE /api/files/PATH[?recursive=true]`: `delete` of a file or a
/// folder.
pub(super) fn delete(ex: &mut Exchange<'_>, path: String) -> Result<Answer> {
    let recursive = flag(ex.req, "recursive")?;
    let s = guarded(ex)?;
    let fields = fields_of(&[
        ("name", Value::from(path)),
        ("recursive", Value::from(recursive)),
    ]);
    let (reply, _) = run(ex, Some(s.user), "delete", fields)?;
    Ok(ok(200, reply))
}

/// `POST /api/mkdir` with `{"path": P}`: `mkdir`, `201 {}`.
pub(super) fn mkdir<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    let s = guarded(ex)?;
    let body = json_body(ex, conn)?;
    if let Some(Value::String(p)) = body.get("path") {
        ex.name = Some(p.clone());
    }
    let (reply, _) = run(ex, Some(s.user), "mkdir", body)?;
    Ok(ok(201, reply))
}

/// `POST /api/rename` with `{"from": A, "to": B}`: `rename`, which moves
/// files and folders across folders too.
pub(super) fn rename<S: Stream>(ex: &mut Exchange<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    let s = guarded(ex)?;
    let body = json_body(ex, conn)?;
    let (reply, _) = run(ex, Some(s.user), "rename", body)?;
    Ok(ok(200, reply))
}

/// `PUT /api/files/PATH[?md5=D]`: the whole file in one request body, as
/// one `put` from offset 0. Without `md5` the server takes the MD5 of
/// what it received. Anything staged for PATH before is dropped first; if
/// the body breaks off, what arrived stays staged like a piece's bytes.
pub(super) fn upload<S: Stream>(
    ex: &mut Exchange<'_>,
    conn: &mut Conn<S>,
    path: String,
) -> Result<Answer> {
    let s = guarded(ex)?;
    let md5 = ex.req.param("md5")?;
    if md5.as_deref().is_some_and(|d| !is_md5_hex(d)) {
        return Err(Error::bad_request("md5 must be 32 lowercase hex digits").into());
    }
    let size = ex.body_left;
    let name = fields_of(&[("name", Value::from(path.clone()))]);
    match run(ex, Some(s.user.clone()), "discard", name) {
        Ok(_) | Err(Error::NotFound | Error::NothingStaged) => {}
        Err(e) => return Err(e.into()),
    }
    let args = commands::put::Args {
        name: path,
        size,
        md5: None,
    };
    let (_, extra) = run(ex, Some(s.user), "put", commands::request("put", &args))?;
    let Some(Then::Receive(mut up)) = extra.then else {
        return Err(Error::Internal("put left no receiver".into()).into());
    };
    if up.offset() != 0 {
        return Err(wrong_offset(up.offset(), size));
    }
    receive(ex, conn, &mut up, size)?;
    if up.offset() != size {
        return Err(Error::Internal("the body ended before the file did".into()).into());
    }
    let md5 = md5.unwrap_or_else(|| up.held_md5());
    Ok(ok(201, finish(*up, md5)?))
}

/// The last component of a path: the name a download is saved under.
fn leaf(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub(super) fn download<S: Stream>(
    ex: &mut Exchange<'_>,
    conn: &mut Conn<S>,
    name: String,
) -> Result<Answer> {
    let s = signed_in(ex)?;
    let args = commands::get::Args { name, offset: None };
    let (reply, extra) = run(ex, Some(s.user), "get", commands::request("get", &args))?;
    let answer: commands::get::Answer = commands::parse(&reply).map_err(Fail::from)?;
    let Some(Then::Send(mut body)) = extra.then else {
        return Err(Error::Internal("get left no body".into()).into());
    };
    let size = answer.size;
    let etag = format!("\"{}\"", answer.md5);
    let if_range_ok = ex.req.header("if-range").is_none_or(|v| v == etag);
    let range = match ex.req.header("range") {
        Some(r) if if_range_ok => parse_range(r, size),
        _ => None,
    };
    let mut headers = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        ("Content-Disposition", disposition(leaf(&answer.name))),
        ("ETag", etag),
        ("Accept-Ranges", "bytes".to_string()),
        ("Cache-Control", "private, no-cache".to_string()),
    ];
    let status = match range {
        Some(Err(())) => {
            let r = Response::code(
                416,
                ErrorCode::BadRequest,
                "the range is past the end of the file",
            )
            .with("Content-Range", format!("bytes */{size}"));
            return Ok(Answer::Send(r));
        }
        Some(Ok((start, end))) => {
            body.offset = start;
            body.len = end + 1 - start;
            headers.push(("Content-Range", format!("bytes {start}-{end}/{size}")));
            206
        }
        None => 200,
    };
    let close = !ex.req.keep_alive();
    if ex.req.method != "HEAD" {
        // A place among the bodies in flight before the head goes out,
        // so that a refusal is still a 503.
        conn.admit(body.len)?;
    }
    conn.send_raw(&head(status, &headers, body.len, close))?;
    if ex.req.method != "HEAD" {
        // A failure inside a body can only be answered by closing.
        match conn.send_body(body) {
            Ok(n) => ex.bytes = n,
            Err(_) => return Err(Fail::Close),
        }
    }
    Ok(Answer::Sent { status })
}

/// A single `bytes=` range of a file of `size` bytes: `None` to send the
/// whole file (no usable range), `Some(Err)` when it cannot be satisfied.
pub(crate) fn parse_range(value: &str, size: u64) -> Option<std::result::Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if a.is_empty() {
        let n = num(b)?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        return Some(Ok((size.saturating_sub(n), size - 1)));
    }
    let start = num(a)?;
    let end = if b.is_empty() { u64::MAX } else { num(b)? };
    if end < start {
        return None;
    }
    if start >= size {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(size - 1))))
}

/// `Content-Disposition` with an ASCII fallback and the exact UTF-8 name
/// (RFC 6266 `filename*`).
fn disposition(name: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const ATTR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=90-1000", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-1000", 100), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=+1-2", 100), None);
    }

    #[test]
    fn dispositions_carry_the_utf8_name() {
        assert_eq!(
            disposition("报告 1.pdf"),
            "attachment; filename=\"__ 1.pdf\"; \
             filename*=UTF-8''%E6%8A%A5%E5%91%8A%201.pdf"
        );
        assert!(disposition("a\"b\\c").starts_with("attachment; filename=\"a_b_c\""));
    }
}
