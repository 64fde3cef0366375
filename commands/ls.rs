//! `ls`: the files and folders of one folder, or of a whole subtree.
//!
//! # Format
//! Request: `{"cmd":"ls","path":P,"recursive":R}`; `path` absent, `null`
//! or `""` is the root, `recursive` absent, `null` or `false` one level.
//! Reply: `{"ok":true,"files":[{"name","size","mtime","md5"}],
//! "folders":[{"name","mtime"}]}`: regular files and real folders, each
//! list sorted by UTF-8 bytes; with `recursive`, the whole subtree, named
//! by paths relative to `path`. `md5` is `null` only for a file placed by
//! other means whose digest is not known yet.
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST`, `INVALID_NAME`, `NOT_FOUND` (no
//! such folder), `NOT_A_FOLDER` (`path`, or a parent, is a file),
//! `INTERNAL` (also for a listing that would not fit in the protocol's
//! 16 MiB response header).
//!
//! The reply is written straight from the folder's compact listing into
//! its frame, with no JSON value per entry, and requests for one folder
//! that arrive together share one frame (see `storage::listing`).

use serde::{Deserialize, Serialize};

use super::{parse, Command, Ctx};
use crate::error::Error;
use crate::names::check_folder;
use crate::protocol::{FileInfo, Header, Reply, MAX_RESPONSE_HEADER};
use crate::storage::Listing;

/// Request fields.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Args {
    /// The folder to list; `None` or `""`: the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The whole subtree, not one level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
}

/// A folder in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderInfo {
    pub name: String,
    pub mtime: u64,
}

/// Reply fields, as a client decodes them.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub files: Vec<FileInfo>,
    /// A server that predates folders sends none.
    #[serde(default)]
    pub folders: Vec<FolderInfo>,
}

/// The `ls` command.
pub struct Ls;

impl Command for Ls {
    fn name(&self) -> &'static str {
        "ls"
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        let path = check_folder(args.path.as_deref())?;
        if !path.is_empty() {
            ctx.log_name = Some(path.to_string());
        }
        let recursive = args.recursive.unwrap_or(false);
        let user = ctx.user()?;
        let frame = ctx
            .shared
            .disk
            .shared_listing(&user.key, path, recursive, &mut encode)?;
        ctx.frame = Some(frame);
        Ok(Reply::new())
    }
}

/// JSON bytes of one entry beyond its name, at most: the field names and
/// punctuation, two u64s and a digest.
const ENTRY_BYTES: usize = 112;
/// The same for a folder: `{"name":"","mtime":N},`.
const FOLDER_BYTES: usize = 48;

/// The whole reply frame, length prefix included, for `listing`.
///
/// # Errors
/// `INTERNAL` if the header would exceed PROTOCOL.md's 16 MiB.
pub fn encode(listing: &Listing) -> Result<Vec<u8>, Error> {
    #[derive(Serialize)]
    struct Frame<'a> {
        ok: bool,
        files: &'a Listing,
        folders: crate::storage::Folders<'a>,
    }
    // Sized up front: growing a 15 MB buffer by doubling would hold two.
    let capacity = 4
        + 48
        + listing.name_bytes()
        + listing.len() * ENTRY_BYTES
        + listing.folder_count() * FOLDER_BYTES;
    let mut frame = Vec::with_capacity(capacity);
    frame.extend_from_slice(&[0; 4]);
    let fields = Frame {
        ok: true,
        files: listing,
        folders: listing.folder_list(),
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
        let frame = encode(&s.listing("alice", "", false).unwrap()).unwrap();
        let mut fields = Reply::new();
        let list = serde_json::to_value(s.list("alice").unwrap()).unwrap();
        fields.insert("files".into(), list);
        fields.insert("folders".into(), serde_json::json!([]));
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
        match encode(&s.listing("alice", "", false).unwrap()) {
            Err(Error::Internal(m)) => assert!(m.contains("too many files"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(frame) => panic!("a frame of {} bytes", frame.len()),
        }
    }
}
