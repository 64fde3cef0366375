//! `GET` and `HEAD`: `get` of the file, with `Range`, `If-Range` and
//! `If-None-Match`, the ETag being the quoted MD5 (as in `PROPFIND`).

use super::{empty, refuse, xml, Answer, Dav, Fail, Result};
use crate::commands::{self, Then};
use crate::error::Error;
use crate::http::api::files::parse_range;
use crate::http::response::head;
use crate::server::conn::{Conn, Stream};
use crate::storage::Kind;

/// The `Content-Type` of a file, by its extension.
pub(super) fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt" | "md" | "log" | "csv") => "text/plain; charset=utf-8",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        Some("mp3") => "audio/mpeg",
        Some("mp4") => "video/mp4",
        Some("zip") => "application/zip",
        Some("gz" | "tgz") => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// Whether an `If-None-Match` / `If-Match` value lists `etag` (or is `*`).
pub(super) fn lists_etag(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|v| v == "*" || v.trim_start_matches("W/") == etag)
}

pub(super) fn get<S: Stream>(d: &mut Dav<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    if let Kind::Folder(_) = d.shared.disk.kind(d.key(), &d.path)? {
        return Err(refuse(
            405,
            "a folder has no content: list it with PROPFIND",
        ));
    }
    if d.path.is_empty() {
        return Err(refuse(
            405,
            "a folder has no content: list it with PROPFIND",
        ));
    }
    let args = commands::get::Args {
        name: d.path.clone(),
        offset: None,
    };
    let (reply, then) = d.run("get", commands::request("get", &args))?;
    let answer: commands::get::Answer = commands::parse(&reply)?;
    let Some(Then::Send(mut body)) = then else {
        return Err(Error::Internal("get left no body".into()).into());
    };
    let size = answer.size;
    let etag = format!("\"{}\"", answer.md5);
    let mtime = body.mtime;
    let modified = xml::http_date(mtime);
    if d.req
        .header("if-none-match")
        .is_some_and(|v| lists_etag(v, &etag))
    {
        let r = empty(304).with("ETag", etag);
        return Ok(Answer::Send(r));
    }
    let if_range_ok = d
        .req
        .header("if-range")
        .is_none_or(|v| v == etag || v == modified);
    let range = match d.req.header("range") {
        Some(r) if if_range_ok => parse_range(r, size),
        _ => None,
    };
    let mut headers = vec![
        ("Content-Type", content_type(&answer.name).to_string()),
        ("ETag", etag),
        ("Last-Modified", modified),
        ("Accept-Ranges", "bytes".to_string()),
        ("OC-Checksum", format!("MD5:{}", answer.md5)),
    ];
    let status = match range {
        Some(Err(())) => {
            let r = super::text(416, "the range is past the end of the file")
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
    let close = !d.req.keep_alive();
    let send = d.req.method != "HEAD";
    if send {
        conn.admit(body.len)?;
    }
    conn.send_raw(&head(status, &headers, body.len, close))?;
    if send {
        match conn.send_body(body) {
            Ok(n) => d.bytes = n,
            Err(_) => return Err(Fail::Close),
        }
    }
    Ok(Answer::Sent(status))
}
