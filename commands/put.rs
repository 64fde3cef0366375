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
//! `IS_A_FOLDER` (N is a folder), `NOT_A_FOLDER` (a parent is a file),
//! `CHECKSUM_MISMATCH` (staged bytes discarded, old file untouched),
//! `TIMEOUT` (stalled body), `INTERNAL` (a disk error: the rest of the
//! body and step 4 are read and dropped, then `INTERNAL` answers step 4 and
//! the connection stays open).
//!
//! The upload in one go lives in `put/one_go.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{fields, parse, Command, Ctx, Then};
use crate::disk::{Upload, UploadLock};
use crate::error::Error;
use crate::names::check_path;
use crate::protocol::{is_md5_hex, Header, Reply};

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

mod one_go;

pub use one_go::{Checked, OneGo};

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
            return one_go::run(ctx, args, md5);
        }
        check_path(&args.name)?;
        let user = ctx.user()?;
        let storage = &ctx.shared.disk;
        let quota = ctx.quota(&user);
        ctx.unlocked(&user, &args.name, false)?;
        let lock = storage.lock_upload(&user.key, &args.name, args.size, quota)?;
        let upload = storage.begin_upload(&lock)?;
        let ready = Ready {
            offset: upload.offset(),
        };
        ctx.then = Some(Then::Receive(Box::new(Receive {
            upload,
            _lock: lock,
            name: args.name,
            size: args.size,
        })));
        Ok(fields(ready))
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

    /// The MD5 of the bytes received so far (see [`Upload::held_md5`]).
    pub fn held_md5(&self) -> String {
        self.upload.held_md5()
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
        Ok(fields(Answer {
            name: self.name,
            size: self.size,
            md5,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::Then;
    use crate::commands::testing::{feed, shared, shared_with, Session};
    use crate::error::ErrorCode;
    use crate::protocol::Header;

    fn step4(json: &str) -> Header {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_phases_answer_offset_then_verdict() {
        let (_dir, shared) = shared();
        let mut s = Session::user(&shared, "ann");
        let (reply, then) = s.run(r#"{"cmd":"put","name":"a","size":5}"#).unwrap();
        assert_eq!(reply["offset"], 0);
        let Some(Then::Receive(mut up)) = then else {
            panic!("put leaves an upload to receive");
        };
        // A second connection may not upload the same name meanwhile.
        s.fails(r#"{"cmd":"put","name":"a","size":5}"#, ErrorCode::Locked);
        feed(&mut up, b"hello");
        let bad = up.finish(&step4(r#"{"md5":"5D41402ABC4B2A76B9719D911017C592"}"#));
        assert_eq!(bad.unwrap_err().code(), ErrorCode::BadRequest);
    }

    #[test]
    fn a_wrong_digest_is_a_mismatch_and_fields_come_before_state() {
        let (_dir, shared) = shared_with(|c| c.quota = Some(4));
        let mut s = Session::user(&shared, "ann");
        s.fails(
            r#"{"cmd":"put","name":"a","size":5}"#,
            ErrorCode::QuotaExceeded,
        );
        s.fails(
            r#"{"cmd":"put","name":"a//b","size":5}"#,
            ErrorCode::InvalidName,
        );
        s.fails(
            r#"{"cmd":"put","name":"a","size":5.0}"#,
            ErrorCode::BadRequest,
        );
        let (_, then) = s.run(r#"{"cmd":"put","name":"a","size":0}"#).unwrap();
        let Some(Then::Receive(up)) = then else {
            panic!("put leaves an upload to receive");
        };
        let wrong = up.finish(&step4(r#"{"md5":"5d41402abc4b2a76b9719d911017c592"}"#));
        assert_eq!(wrong.unwrap_err().code(), ErrorCode::ChecksumMismatch);
    }
}
