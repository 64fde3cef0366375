//! `put`: resumable, verified, atomic upload (PROTOCOL.md, "Upload").
//!
//! # Format
//! 1. Request: `{"cmd":"put","name":N,"size":S}`.
//! 2. Reply: `{"ok":true,"offset":K}`: the server holds `[0, K)` from an
//!    earlier interrupted upload of the same name and size. Or an error, and
//!    no body follows.
//! 3. Body: the raw bytes `[K, S)`.
//! 4. Request: `{"md5":D}`, the MD5 of the whole file.
//! 5. Reply: `{"ok":true,"name":N,"size":S,"md5":D}` once the file has
//!    replaced any old one in one rename.
//!
//! The handler does steps 1 and 2 and leaves a [`Receive`] phase in the
//! context; the front end feeds it the body (step 3) and the digest
//! (step 4) and sends what [`Receive::finish`] answers (step 5).
//!
//! # In one go (PROTOCOL.md, "Small uploads in one go")
//! Request: `{"cmd":"put","name":N,"size":S,"md5":D}` with `S` at most
//! [`ONE_GO_MAX`], followed at once by the raw bytes `[0, S)`; one reply,
//! step 5's, after the whole body. Answered at once, with no body read:
//! `NOT_LOGGED_IN`, and `BAD_REQUEST` for a missing or ill-typed field,
//! `"md5": null`, an `md5` that is not 32 lowercase hex digits, or `S` over
//! [`ONE_GO_MAX`]. Every other error is answered after the body has been
//! read and dropped ([`OneGo`]), and any staged data of N is discarded
//! whatever the answer, unless it is `LOCKED`.
//!
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST` (also for a bad step 4; the
//! staged bytes are kept), `INVALID_NAME`, `LOCKED`, `QUOTA_EXCEEDED`,
//! `CHECKSUM_MISMATCH` (staged bytes discarded, old file untouched),
//! `TIMEOUT` (stalled body), `INTERNAL` (a disk error: the rest of the
//! body and step 4 are read and dropped, then `INTERNAL` answers step 4 and
//! the connection stays open).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{parse, reply, Command, Ctx, Then};
use crate::error::Error;
use crate::names::check_file_name;
use crate::protocol::{is_md5_hex, Header, Reply};
use crate::storage::{sync_dir, Upload, UploadLock, Verified};

/// Largest upload that may come in one go, with its MD5 up front.
pub const ONE_GO_MAX: u64 = 4 * 1024 * 1024;

/// Step 1 fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    pub name: String,
    pub size: u64,
    /// The whole file's MD5, sent up front: the body follows at once and
    /// there is no step 2 or step 4. `null` is ill-typed (checked on the
    /// header, since serde reads it as absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// Step 2 fields: where the body starts.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ready {
    pub offset: u64,
}

/// Step 4 fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Digest {
    pub md5: String,
}

/// Step 5 fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub name: String,
    pub size: u64,
    pub md5: String,
}

/// The `put` command.
pub struct Put;

impl Command for Put {
    fn name(&self) -> &'static str {
        "put"
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        if header.get("md5") == Some(&Value::Null) {
            return Err(Error::bad_request("md5 must be a string, not null"));
        }
        ctx.log_name = Some(args.name.clone());
        if let Some(md5) = args.md5.clone() {
            return one_go(ctx, args, md5);
        }
        check_file_name(&args.name)?;
        let user = ctx.user()?;
        let storage = &ctx.shared.storage;
        let quota = ctx.quota(&user);
        let lock = storage.lock_upload(&user.key, &args.name, args.size, quota)?;
        let upload = storage.begin_upload(&lock, &user.key, &args.name, args.size)?;
        let ready = Ready {
            offset: upload.offset(),
        };
        ctx.then = Some(Then::Receive(Box::new(Receive {
            upload,
            _lock: lock,
            name: args.name,
            size: args.size,
        })));
        Ok(reply(ready))
    }
}

/// Checks what must be answered before the body, and leaves a [`OneGo`]
/// phase that reads the body whatever else goes wrong. No reply fields:
/// the session sends nothing before the body.
fn one_go(ctx: &mut Ctx<'_>, args: Args, md5: String) -> Result<Reply, Error> {
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
    check_file_name(&args.name)?;
    let user = ctx.user()?;
    let storage = &ctx.shared.storage;
    let quota = ctx.quota(&user);
    let lock = match storage.lock_upload(&user.key, &args.name, args.size, quota) {
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
    let upload = storage.begin_fresh_upload(&lock, &user.key, &args.name, args.size)?;
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
            Some(Err(Error::QuotaExceeded | Error::TooManyStaged(_)))
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
        sync_dir(&dir)?;
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
    pub fn place(self) -> Result<(Reply, PathBuf), Error> {
        let (md5, dir) = self.verified.place()?;
        let answer = reply(Answer {
            name: self.name,
            size: self.size,
            md5,
        });
        Ok((answer, dir))
    }
}

/// Steps 3 to 5 of an upload: the bytes, then the digest, then the verdict.
/// It holds the name's upload lock until it is finished or dropped.
pub struct Receive {
    upload: Upload,
    _lock: UploadLock,
    name: String,
    size: u64,
}

impl Receive {
    /// Where the body starts (step 2's `offset`).
    pub fn offset(&self) -> u64 {
        self.upload.offset()
    }

    /// Body bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.upload.remaining()
    }

    /// Step 3: takes the body. `fill` reads each chunk from the client and
    /// says how many bytes arrived (all, unless it also returns an error).
    ///
    /// # Errors
    /// `fill`'s error, or a disk error; either way every byte that arrived
    /// before it is staged for a resume. After a disk error the front end
    /// should take the rest of the body and the digest, and then answer
    /// with the error, so that the connection stays usable.
    pub fn receive(
        &mut self,
        fill: impl FnMut(&mut [u8]) -> (usize, Result<(), Error>),
    ) -> Result<(), Error> {
        self.upload.receive(fill)
    }

    /// Steps 4 and 5: checks the digest frame and, on a match, makes the
    /// file visible; returns the step-5 reply.
    ///
    /// # Errors
    /// `BAD_REQUEST` for a step 4 that is not `{"md5": D}` (the staged
    /// bytes are kept), `CHECKSUM_MISMATCH` (discarded), `INTERNAL`.
    pub fn finish(self, step4: &Header) -> Result<Reply, Error> {
        let digest: Digest = parse(step4)?;
        if !is_md5_hex(&digest.md5) {
            return Err(Error::bad_request("md5 must be 32 lowercase hex digits"));
        }
        let md5 = self.upload.finish(&digest.md5)?;
        Ok(reply(Answer {
            name: self.name,
            size: self.size,
            md5,
        }))
    }
}
