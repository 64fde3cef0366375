//! `ls`: the user's files.
//!
//! # Format
//! Request: `{"cmd":"ls"}`.
//! Reply: `{"ok":true,"files":[{"name","size","mtime","md5"}]}`: regular
//! files only, one level, sorted by UTF-8 bytes; `md5` is `null` only for a
//! file placed by other means whose digest is not known yet.
//! Errors: `NOT_LOGGED_IN`, `INTERNAL` (also for a folder whose listing
//! would not fit in the protocol's 16 MiB response header).

use std::io;

use serde::{Deserialize, Serialize};

use super::{reply, Command, Ctx};
use crate::error::Error;
use crate::protocol::{Header, Reply, MAX_RESPONSE_HEADER};
use crate::storage::FileInfo;

/// Reply fields.
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
        let files = ctx.shared.storage.list(&user.key)?;
        let fields = reply(Answer { files });
        check_size(&fields, MAX_RESPONSE_HEADER)?;
        Ok(fields)
    }
}

/// Refuses reply `fields` whose header, once encoded, would exceed `cap`
/// bytes. PROTOCOL.md caps response headers at 16 MiB and clients treat a
/// larger one as a broken server, so a folder too large to list gets a
/// clear error instead.
///
/// # Errors
/// `INTERNAL` ("too many files to list") if the header would be too large.
fn check_size(fields: &Reply, cap: u32) -> Result<(), Error> {
    let mut count = ByteCount(0);
    serde_json::to_writer(&mut count, &OkHeader { ok: true, fields })
        .map_err(|e| Error::Internal(format!("ls reply: {e}")))?;
    if count.0 > u64::from(cap) {
        return Err(Error::Internal(format!(
            "too many files to list: the reply would be {} bytes, over the {cap}-byte limit",
            count.0
        )));
    }
    Ok(())
}

/// `{"ok":true, ...fields}`, as the session encodes it, without copying
/// `fields` to measure it.
#[derive(Serialize)]
struct OkHeader<'a> {
    ok: bool,
    #[serde(flatten)]
    fields: &'a Reply,
}

/// A writer that only counts bytes.
struct ByteCount(u64);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_frame, ok_header};

    fn file(name: String) -> FileInfo {
        FileInfo {
            name,
            size: u64::MAX,
            mtime: 1_700_000_000,
            md5: Some("5d41402abc4b2a76b9719d911017c592".into()),
        }
    }

    #[test]
    fn the_measured_size_is_the_encoded_size() {
        let fields = reply(Answer {
            files: vec![file("报告.pdf".into()), file("a \"quoted\" name".into())],
        });
        let len = encode_frame(&ok_header(fields.clone())).len() - 4;
        let len = u32::try_from(len).unwrap();
        assert!(check_size(&fields, len).is_ok());
        match check_size(&fields, len - 1) {
            Err(Error::Internal(m)) => assert!(m.starts_with("too many files to list"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// 60,000 files with 255-byte names list to about 20 MB of JSON.
    #[test]
    fn a_listing_over_16_mib_is_refused() {
        let files = (0..60_000)
            .map(|i| file(format!("{i:06}{}", "x".repeat(249))))
            .collect();
        let fields = reply(Answer { files });
        assert!(matches!(
            check_size(&fields, MAX_RESPONSE_HEADER),
            Err(Error::Internal(_))
        ));
    }
}
