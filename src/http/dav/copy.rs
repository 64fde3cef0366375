//! `COPY` and `MOVE` within the user's own tree (RFC 4918 §9.8–9.9).
//!
//! A `MOVE` is `rename`: one step, MD5 records and properties going with
//! the file or folder. A `COPY` stores each file again through `put`'s
//! staging and commit, so that quotas and the file cap hold and each copy
//! appears only once its MD5 matched the source's; properties are copied
//! after it. `Overwrite: T` (the default) deletes what the destination
//! held first; `Overwrite: F` refuses with `412`.

use std::io::Read;

use serde_json::Value;

use super::write::fields;
use super::{parent, refuse, url_path, Answer, Dav, Result};
use crate::commands::{self, Then};
use crate::error::Error;
use crate::locks::is_within;
use crate::protocol::Header;
use crate::storage::Kind;

pub(super) fn copy_or_move(d: &mut Dav<'_>, moving: bool) -> Result<Answer> {
    let dest = d
        .req
        .header("destination")
        .ok_or_else(|| Error::bad_request("a Destination header is needed"))?
        .to_string();
    let to = url_path(d, &dest)?;
    let from = d.path.clone();
    if from.is_empty() || to.is_empty() {
        return Err(refuse(403, "the root cannot be copied, moved or replaced"));
    }
    if is_within(&to, &from) {
        return Err(refuse(403, "the destination is the source or inside it"));
    }
    let overwrite = match d.req.header("overwrite") {
        None => true,
        Some(v) if v.eq_ignore_ascii_case("T") => true,
        Some(v) if v.eq_ignore_ascii_case("F") => false,
        Some(_) => return Err(Error::bad_request("Overwrite is T or F").into()),
    };
    let deep = match d.req.header("depth") {
        None => true,
        Some(v) if v.eq_ignore_ascii_case("infinity") => true,
        Some("0") if !moving => false,
        Some(_) => return Err(Error::bad_request("this Depth is not allowed here").into()),
    };
    let storage = &d.shared.disk;
    let source = storage.kind(d.key(), &from)?;
    if matches!(source, Kind::Nothing) {
        return Err(Error::NotFound.into());
    }
    if !matches!(storage.kind(d.key(), parent(&to))?, Kind::Folder(_)) {
        return Err(refuse(
            409,
            "the destination's parent folder does not exist",
        ));
    }
    let existed = !matches!(storage.kind(d.key(), &to)?, Kind::Nothing);
    if existed && !overwrite {
        return Err(refuse(412, "the destination exists and Overwrite is F"));
    }
    // Every change this makes, checked before any is made.
    d.unlocked(&to, true)?;
    d.unlocked(parent(&to), false)?;
    if moving {
        d.unlocked(&from, true)?;
        d.unlocked(parent(&from), false)?;
    }
    if existed {
        let f = fields(&[
            ("name", Value::from(to.clone())),
            ("recursive", Value::from(true)),
        ]);
        d.run("delete", f)?;
    }
    if moving {
        let f = fields(&[
            ("from", Value::from(from.clone())),
            ("to", Value::from(to.clone())),
        ]);
        d.run("rename", f)?;
    } else if let Kind::Folder(_) = source {
        copy_folder(d, &from, &to, deep)?;
    } else {
        copy_file(d, &from, &to)?;
    }
    Ok(Answer::Send(super::empty(if existed { 204 } else { 201 })))
}

/// Copies the folder `from` to `to` (absent), with all it holds if `deep`.
fn copy_folder(d: &mut Dav<'_>, from: &str, to: &str, deep: bool) -> Result<()> {
    d.run("mkdir", fields(&[("path", Value::from(to.to_string()))]))?;
    copy_props(d, from, to)?;
    if !deep {
        return Ok(());
    }
    let listing = d.shared.disk.listing(d.key(), from, true)?;
    // Sorted by path: a folder comes before what it holds.
    let folders: Vec<String> = listing.folders().map(|f| f.name.to_string()).collect();
    let files: Vec<String> = listing.iter().map(|f| f.name.to_string()).collect();
    drop(listing);
    for f in folders {
        let (a, b) = (format!("{from}/{f}"), format!("{to}/{f}"));
        d.run("mkdir", fields(&[("path", Value::from(b.clone()))]))?;
        copy_props(d, &a, &b)?;
    }
    for f in files {
        copy_file(d, &format!("{from}/{f}"), &format!("{to}/{f}"))?;
    }
    Ok(())
}

/// Copies the file `from` to `to` (absent) through `put`, checked against
/// the source's MD5, with its properties and modification time.
fn copy_file(d: &mut Dav<'_>, from: &str, to: &str) -> Result<()> {
    let storage = &d.shared.disk;
    let opened = storage.open_file(d.key(), from)?;
    let md5 = storage.digest(d.key(), &opened)?;
    let (size, mtime) = (opened.size, opened.mtime);
    let mut file = opened.source.reader(0)?;
    let name = fields(&[("name", Value::from(to.to_string()))]);
    match d.run("discard", name) {
        Ok(_) | Err(Error::NotFound | Error::NothingStaged) => {}
        Err(e) => return Err(e.into()),
    }
    let args = commands::put::Args {
        name: to.to_string(),
        size,
        md5: None,
    };
    let (_, then) = d.run("put", commands::request("put", &args))?;
    let Some(Then::Receive(mut up)) = then else {
        return Err(Error::Internal("put left no receiver".into()).into());
    };
    up.receive(|chunk| match file.read_exact(chunk) {
        Ok(()) => (chunk.len(), Ok(())),
        Err(e) => (0, Err(Error::Io(e))),
    })?;
    let mut step4 = Header::new();
    step4.insert("md5".into(), Value::from(md5));
    up.finish(&step4)?;
    copy_props(d, from, to)?;
    d.shared.disk.set_mtime(d.key(), to, mtime)?;
    Ok(())
}

fn copy_props(d: &Dav<'_>, from: &str, to: &str) -> Result<()> {
    let storage = &d.shared.disk;
    let props = storage.props(d.key(), from)?;
    if !props.is_empty() {
        storage.set_props(d.key(), to, &props)?;
    }
    Ok(())
}
