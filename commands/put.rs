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
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST` (also for a bad step 4; the
//! staged bytes are kept), `INVALID_NAME`, `LOCKED`, `QUOTA_EXCEEDED`,
//! `CHECKSUM_MISMATCH` (staged bytes discarded, old file untouched),
//! `TIMEOUT` (stalled body), `INTERNAL` (a disk error: the rest of the
//! body and step 4 are read and dropped, then `INTERNAL` answers step 4 and
//! the connection stays open).

use serde::{Deserialize, Serialize};

use super::{parse, reply, Command, Ctx};
use crate::error::Error;
use crate::names::check_file_name;
use crate::protocol::{is_md5_hex, ok_header, Header, Reply};

/// Step 1 fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    pub name: String,
    pub size: u64,
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
        ctx.log_name = Some(args.name.clone());
        check_file_name(&args.name)?;
        let user = ctx.user()?;
        let storage = &ctx.shared.storage;
        let quota = ctx.quota(&user);
        let lock = storage.lock_upload(&user.key, &args.name, args.size, quota)?;
        let mut upload = storage.begin_upload(&lock, &user.key, &args.name, args.size)?;
        let ready = Ready {
            offset: upload.offset(),
        };
        ctx.conn.send(&ok_header(reply(ready)))?;
        let remaining = upload.remaining();
        ctx.conn.begin_body()?;
        let conn = &mut *ctx.conn;
        let mut consumed = 0;
        let received = upload.receive(|chunk| {
            let (got, read) = conn.read_body(chunk);
            consumed += got as u64;
            (got, read)
        });
        ctx.log_bytes = consumed;
        if let Err(e) = received {
            if !matches!(e, Error::Timeout | Error::Disconnected(_)) {
                // The disk failed (full, say) while the client is still
                // sending. Take the rest of the body and the digest frame,
                // so that the error reaches the client as the answer to
                // step 4 and the connection stays usable.
                conn.discard_body(remaining - consumed)?;
                conn.read_request()?;
            }
            return Err(e);
        }

        let Some(step4) = ctx.conn.read_request()? else {
            return Err(Error::Disconnected(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        };
        let digest: Digest = parse(&step4)?;
        if !is_md5_hex(&digest.md5) {
            return Err(Error::bad_request("md5 must be 32 lowercase hex digits"));
        }
        let md5 = upload.finish(&digest.md5)?;
        Ok(reply(Answer {
            name: args.name,
            size: args.size,
            md5,
        }))
    }
}
