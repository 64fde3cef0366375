//! `put` with `md5`: an upload in one go (PROTOCOL.md, "Small uploads in
//! one go"). The request's own checks answer at once; every other answer
//! waits for the body, which [`OneGo`] takes whatever its fate. A checked
//! upload ([`Checked`]) can be committed alone or in a group.

use std::path::PathBuf;

use super::{Answer, Args, Receive, ONE_GO_MAX};
use crate::commands::{fields, Ctx, Then};
use crate::disk::{UploadLock, Verified};
use crate::error::Error;
use crate::names::check_path;
use crate::protocol::{is_md5_hex, Reply};
use crate::storage::sync_dir;

/// Checks what must be answered before the body, and leaves a [`OneGo`]
/// phase that reads the body whatever else goes wrong. No reply fields:
/// the session sends nothing before the body.
pub(super) fn run(ctx: &mut Ctx<'_>, args: Args, md5: String) -> Result<Reply, Error> {
    if !is_md5_hex(&md5) {
        return Err(Error::bad_request("md5 must be 32 lowercase hex digits"));
    }
    if args.size > ONE_GO_MAX {
        return Err(Error::bad_request(format!(
            "an upload with its md5 up front holds at most {ONE_GO_MAX} bytes"
        )));
    }
    let upload = begin_one_go(ctx, &args);
    ctx.then = Some(Then::Absorb(Box::new(OneGo {
        len: args.size,
        md5,
        upload: Some(upload),
    })));
    Ok(Reply::new())
}

/// The checks and the claim of an upload in one go, from scratch: what an
/// earlier interrupted upload of the name staged is dropped, also when
/// the quota refuses this one (it is never resumed from).
fn begin_one_go(ctx: &Ctx<'_>, args: &Args) -> Result<Receive, Error> {
    check_path(&args.name)?;
    let user = ctx.user()?;
    let storage = &ctx.shared.disk;
    let quota = ctx.quota(&user);
    ctx.unlocked(&user, &args.name, false)?;
    let lock = match storage.lock_one_go(&user.key, &args.name, args.size, quota) {
        Ok(lock) => lock,
        Err(e) => {
            if !matches!(e, Error::Locked) {
                // Nothing staged (NOT_FOUND) or a claim just taken
                // elsewhere (LOCKED) both leave nothing to do.
                let _ = storage.discard(&user.key, &args.name);
            }
            return Err(e);
        }
    };
    let upload = storage.begin_fresh_upload(&lock)?;
    Ok(Receive {
        upload,
        _lock: lock,
        name: args.name.clone(),
        size: args.size,
    })
}

/// An upload in one go after its request: the body is read whatever the
/// answer, so that the connection stays in step; then the verdict.
pub struct OneGo {
    len: u64,
    md5: String,
    /// The upload, or the error to answer once the body is dropped;
    /// `None` once [`OneGo::receive`] has failed.
    upload: Option<Result<Receive, Error>>,
}

impl OneGo {
    /// Body bytes that follow the request.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the body, as [`Receive::receive`]. With an error already
    /// decided it reads nothing and returns that error; the front end then
    /// drops the body (all [`OneGo::len`] bytes) and answers with it.
    ///
    /// # Errors
    /// The decided error, `fill`'s, or a disk error. Staged bytes are
    /// dropped on every error: an upload in one go is not resumed.
    pub fn receive(
        &mut self,
        fill: impl FnMut(&mut [u8]) -> (usize, Result<(), Error>),
    ) -> Result<(), Error> {
        let received = match &mut self.upload {
            Some(Ok(r)) => r.receive(fill),
            _ => Err(Error::Internal("no upload to receive".into())),
        };
        if received.is_err() {
            match self.upload.take() {
                Some(Ok(r)) => r.upload.discard(),
                Some(Err(decided)) => return Err(decided),
                None => {}
            }
        }
        received
    }

    /// Whether the answer decided before the body is the quota's (or the
    /// bound on unfinished uploads): uploads of this connection waiting
    /// for a group commit count against both until they are committed,
    /// so the front end commits them and asks again.
    pub fn refused_by_quota(&self) -> bool {
        matches!(
            self.upload,
            Some(Err(Error::QuotaExceeded { .. } | Error::TooManyStaged(_)))
        )
    }

    /// Checks the MD5 of what arrived, after [`OneGo::receive`].
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH` (staged bytes dropped, old file untouched).
    pub fn check(self) -> Result<Checked, Error> {
        let Some(r) = self.upload else {
            return Err(Error::Internal("the upload already failed".into()));
        };
        let r = r?;
        Ok(Checked {
            verified: r.upload.verify(&self.md5)?,
            _lock: r._lock,
            name: r.name,
            size: r.size,
        })
    }

    /// The verdict, as step 5: [`OneGo::check`], then the file made
    /// durable and visible on its own.
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH` (staged bytes dropped, old file untouched),
    /// `INTERNAL`.
    pub fn finish(self) -> Result<Reply, Error> {
        let checked = self.check()?;
        checked.sync()?;
        let (answer, dir) = checked.place()?;
        if let Some(dir) = dir {
            sync_dir(&dir)?;
        }
        Ok(answer)
    }
}

/// An upload in one go whose MD5 matched, still invisible and holding its
/// name. A front end may sync several ([`Checked::sync`]), place them, sync
/// their folder once and only then answer them all: a group commit. The
/// answer still means the file is durable.
pub struct Checked {
    verified: Verified,
    _lock: UploadLock,
    name: String,
    size: u64,
}

impl Checked {
    /// The file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes the bytes durable.
    ///
    /// # Errors
    /// `INTERNAL`.
    pub fn sync(&self) -> Result<(), Error> {
        self.verified.sync()
    }

    /// Renames the synced file over its name; returns the step-5 reply
    /// and the folder to sync before sending it.
    ///
    /// # Errors
    /// `INTERNAL` (the old file untouched).
    pub fn place(self) -> Result<(Reply, Option<PathBuf>), Error> {
        let (md5, dir) = self.verified.place()?;
        let answer = fields(Answer {
            name: self.name,
            size: self.size,
            md5,
        });
        Ok((answer, dir))
    }

    /// Places several, as [`Checked::place`] each, in order; the disk may
    /// commit them together (the database does, in one transaction).
    pub fn place_all(items: Vec<Checked>) -> Vec<Result<(Reply, Option<PathBuf>), Error>> {
        let mut verified = Vec::with_capacity(items.len());
        let mut rest = Vec::with_capacity(items.len());
        for c in items {
            verified.push(c.verified);
            rest.push((c._lock, c.name, c.size));
        }
        let placed = Verified::place_all(verified);
        // The claims end once their files are in place.
        rest.into_iter()
            .zip(placed)
            .map(|((_lock, name, size), p)| {
                p.map(|(md5, dir)| (fields(Answer { name, size, md5 }), dir))
            })
            .collect()
    }
}
