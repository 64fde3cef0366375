//! `ls`: the user's files.
//!
//! # Format
//! Request: `{"cmd":"ls"}`.
//! Reply: `{"ok":true,"files":[{"name","size","mtime","md5"}]}`: regular
//! files only, one level, sorted by UTF-8 bytes; `md5` is `null` only for a
//! file placed by other means whose digest is not known yet.
//! Errors: `NOT_LOGGED_IN`, `INTERNAL` (also for a folder whose listing
//! would not fit in the protocol's 16 MiB response header).
//!
//! The reply is written straight from the folder's compact listing into
//! its frame, with no JSON value per entry, and requests for one folder
//! that arrive together share one frame (see `storage::listing`).

use serde::{Deserialize, Serialize};

use super::{Command, Ctx};
use crate::error::Error;
use crate::protocol::{FileInfo, Header, Reply, MAX_RESPONSE_HEADER};
use crate::storage::Listing;

/// Reply fields, as a client decodes them.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub files: Vec<FileInfo>,
}

/// The `ls` command.
pub struct Ls;

impl Command for Ls {
    fn name(&self) -> &'static str {
        "ls"
    }

    fn run(&self, ctx: &mut Ctx<'_>, _header: &Header) -> Result<Reply, Error> {
        let user = ctx.user()?;
        ctx.frame = Some(ctx.shared.storage.shared_listing(&user.key, encode)?);
        Ok(Reply::new())
    }
}

/// JSON bytes of one entry beyond its name, at most: the field names and
/// punctuation, two u64s and a digest.
const ENTRY_BYTES: usize = 112;

/// The whole reply frame, length prefix included, for `listing`.
///
/// # Errors
/// `INTERNAL` if the header would exceed PROTOCOL.md's 16 MiB.
pub fn encode(listing: &Listing) -> Result<Vec<u8>, Error> {
    #[derive(Serialize)]
    struct Frame<'a> {
        ok: bool,
        files: &'a Listing,
    }
    // Sized up front: growing a 15 MB buffer by doubling would hold two.
    let capacity = 4 + 32 + listing.name_bytes() + listing.len() * ENTRY_BYTES;
    let mut frame = Vec::with_capacity(capacity);
    frame.extend_from_slice(&[0; 4]);
    let fields = Frame {
        ok: true,
        files: listing,
    };
    serde_json::to_writer(&mut frame, &fields).map_err(|e| Error::Internal(e.to_string()))?;
    let len = frame.len() - 4;
    match u32::try_from(len) {
        Ok(n) if n <= MAX_RESPONSE_HEADER => frame[..4].copy_from_slice(&n.to_be_bytes()),
        _ => {
            return Err(Error::Internal(format!(
                "reply of {len} bytes is over the {MAX_RESPONSE_HEADER}-byte limit \
                 (too many files to list)"
            )))
        }
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::{shared, Session};
    use crate::protocol::{ok_header, read_header};

    #[test]
    fn lists_sorted_with_digests_in_one_encoded_frame() {
        let (_dir, shared) = shared();
        let mut s = Session::user(&shared, "ann");
        s.store("b", b"two");
        s.store("a 报告", b"one");
        s.ok(r#"{"cmd":"ls"}"#);
        let frame = s.frame.clone().expect("ls answers with an encoded frame");
        let reply = read_header(&mut &frame[..], crate::protocol::MAX_RESPONSE_HEADER)
            .unwrap()
            .unwrap();
        assert_eq!(reply["ok"], true);
        let files = reply["files"].as_array().unwrap();
        assert_eq!(files[0]["name"], "a 报告");
        assert_eq!(files[1]["name"], "b");
        assert_eq!(files[1]["md5"], "b8a9f715dbb64fd5c56e7783c6820a61");
        Session::anonymous(&shared).fails(r#"{"cmd":"ls"}"#, crate::error::ErrorCode::NotLoggedIn);
    }

    #[test]
    fn the_frame_is_the_one_a_header_would_make() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::storage::Storage::open(dir.path()).unwrap();
        s.create_home("alice").unwrap();
        let files = dir.path().join("users/alice/files");
        for name in ["b \"quoted\"", "a", "報告.pdf"] {
            std::fs::write(files.join(name), name).unwrap();
        }
        let frame = encode(&s.listing("alice").unwrap()).unwrap();
        let mut fields = Reply::new();
        let list = serde_json::to_value(s.list("alice").unwrap()).unwrap();
        fields.insert("files".into(), list);
        let header = read_header(&mut &frame[..], MAX_RESPONSE_HEADER).unwrap();
        assert_eq!(header, Some(ok_header(fields)));
        assert_eq!(frame, crate::protocol::encode_frame(&header.unwrap()));
    }

    /// 60,000 files with 255-byte names list to about 20 MB of JSON.
    #[test]
    fn a_listing_over_16_mib_is_internal() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::storage::Storage::open(dir.path()).unwrap();
        s.create_home("alice").unwrap();
        let files = dir.path().join("users/alice/files");
        for i in 0..60_000 {
            std::fs::File::create(files.join(format!("{i:06}{}", "x".repeat(249)))).unwrap();
        }
        match encode(&s.listing("alice").unwrap()) {
            Err(Error::Internal(m)) => assert!(m.contains("too many files"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(frame) => panic!("a frame of {} bytes", frame.len()),
        }
    }
}
