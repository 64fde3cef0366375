//! Resumable uploads in pieces, under `/api/uploads/PATH`: staged
//! exactly as v1 `put` stages them, so that a v1 client can finish what
//! the page began and the other way round.
//!
//! - `GET ?size=S`: where to continue, by looking only.
//! - `POST ?size=S`: `put` steps 1 and 2: claims the path, checks the
//!   quota, begins (or resumes) the staged upload; where to continue.
//! - `PUT ?size=S&offset=K[&md5=D]`: one piece, step 3 (and, with `md5`
//!   on the last piece, steps 4 and 5).
//! - `DELETE`: `discard`.

use serde_json::{json, Value};

use super::{fields_of, guarded, ok, run, signed_in, Answer, Exchange, Fail, Result, MAX_PIECE};
use crate::commands::{self, put::Receive, Then};
use crate::error::{Error, ErrorCode};
use crate::http::response::Response;
use crate::names::check_path;
use crate::protocol::{is_md5_hex, Header};
use crate::server::conn::{Conn, Stream};
use crate::storage::Kind;

/// The `size` query value every upload request carries.
fn size(ex: &Exchange<'_>) -> Result<u64> {
    Ok(ex
        .req
        .number("size")?
        .ok_or_else(|| Error::bad_request("size is missing"))?)
}

/// `GET /api/uploads/PATH?size=S`: `{"offset": K, "size": S}`, K the bytes
/// staged for an upload of PATH with size S (0 if none). A GET changes
/// nothing: it claims no name, makes no record and no folder.
pub(super) fn status(ex: &mut Exchange<'_>, path: String) -> Result<Answer> {
    let s = signed_in(ex)?;
    let size = size(ex)?;
    check_path(&path)?;
    let storage = &ex.shared.disk;
    let key = &s.user.key;
    if let Kind::Folder(_) = storage.kind(key, &path)? {
        return Err(Error::IsAFolder.into());
    }
    if storage.uploading(key, &path) {
        return Err(Error::Locked.into());
    }
    let offset = storage.staged_offset(key, &path, size);
    Ok(Answer::Send(Response::json(
        200,
        &json!({"offset": offset, "size": size}),
    )))
}

/// `POST /api/uploads/PATH?size=S`: begins the upload as `put` does (or
/// finds where an earlier one stopped) and lets the name go again.
pub(super) fn begin(ex: &mut Exchange<'_>, path: String) -> Result<Answer> {
    let s = guarded(ex)?;
    let size = size(ex)?;
    let args = commands::put::Args {
        name: path,
        size,
        md5: None,
    };
    let (reply, extra) = run(ex, Some(s.user), "put", commands::request("put", &args))?;
    drop(extra.then); // the staged bytes stay; the name is free again
    let mut fields = reply;
    fields.insert("size".into(), Value::from(size));
    Ok(ok(200, fields))
}

/// `DELETE /api/uploads/PATH`: `discard`.
pub(super) fn discard(ex: &mut Exchange<'_>, path: String) -> Result<Answer> {
    let s = guarded(ex)?;
    let fields = fields_of(&[("name", Value::from(path))]);
    let (reply, _) = run(ex, Some(s.user), "discard", fields)?;
    Ok(ok(200, reply))
}

/// `PUT /api/uploads/PATH?size=S&offset=K[&md5=D]`: one piece.
pub(super) fn piece<S: Stream>(
    ex: &mut Exchange<'_>,
    conn: &mut Conn<S>,
    path: String,
) -> Result<Answer> {
    let s = guarded(ex)?;
    let size = size(ex)?;
    let offset = ex
        .req
        .number("offset")?
        .ok_or_else(|| Error::bad_request("offset is missing"))?;
    let md5 = ex.req.param("md5")?;
    if md5.as_deref().is_some_and(|d| !is_md5_hex(d)) {
        return Err(Error::bad_request("md5 must be 32 lowercase hex digits").into());
    }
    let len = ex.body_left;
    if len > MAX_PIECE {
        return Err(Fail::Reply(
            Response::code(
                413,
                ErrorCode::BadRequest,
                &format!("a piece may have at most {MAX_PIECE} bytes"),
            ),
            true,
        ));
    }
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(Error::bad_request("the piece goes past the declared size").into());
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
    let held = up.offset();
    if held != offset {
        return Err(wrong_offset(held, size));
    }
    receive(ex, conn, &mut up, len)?;
    let held = up.offset();
    match md5 {
        Some(d) if held == size => Ok(ok(201, finish(*up, d)?)),
        _ => Ok(Answer::Send(Response::json(
            200,
            &json!({"offset": held, "size": size}),
        ))),
    }
}

/// `409` with where the server's staged bytes end.
pub(super) fn wrong_offset(held: u64, size: u64) -> Fail {
    Fail::Reply(
        Response::json(
            409,
            &json!({
                "error": "BAD_REQUEST",
                "message": format!("the server holds {held} bytes; continue from there"),
                "offset": held,
                "size": size,
            }),
        ),
        false,
    )
}

/// Steps 4 and 5 with digest `md5`: the file appears, or the staged bytes
/// go on a mismatch.
pub(super) fn finish(up: Receive, md5: String) -> std::result::Result<Header, Error> {
    let mut step4 = Header::new();
    step4.insert("md5".into(), Value::from(md5));
    up.finish(&step4)
}

/// Feeds `len` bytes of the request body (all that is left of it) into
/// the upload, as step 3 of `put`.
///
/// # Errors
/// A stalled or broken connection closes it; a disk error is answered
/// once the rest of the body has been taken. Either way what arrived
/// stays staged.
pub(super) fn receive<S: Stream>(
    ex: &mut Exchange<'_>,
    conn: &mut Conn<S>,
    up: &mut Receive,
    len: u64,
) -> Result<()> {
    if len > 0 {
        conn.admit(len)?;
        conn.begin_body()?;
    }
    let mut left = len;
    let mut piece_done = false;
    let received = up.receive(|chunk| {
        if left == 0 {
            piece_done = true;
            return (0, Err(Error::Timeout));
        }
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let (got, read) = conn.read_body(&mut chunk[..want]);
        left -= got as u64;
        if read.is_ok() && want < chunk.len() {
            piece_done = true;
            return (got, Err(Error::Timeout));
        }
        (got, read)
    });
    ex.bytes = len - left;
    ex.body_left = left;
    match received {
        Ok(()) => Ok(()),
        Err(_) if piece_done => Ok(()),
        Err(e @ (Error::Timeout | Error::Disconnected(_))) => Err(Fail::from(e).closing()),
        // A disk error: take the rest of the piece, then say so.
        Err(e) => Err(e.into()),
    }
}
