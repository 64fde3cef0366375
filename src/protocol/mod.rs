//! The wire protocol (PROTOCOL.md): frames, headers, replies and digests.

pub mod frame;
pub mod timed;
pub mod wire;

use serde_json::{Map, Value};

use crate::error::ErrorCode;
pub use frame::{
    encode_frame, parse_header, read_frame, read_header, FrameError, Header, MAX_REQUEST_HEADER,
    MAX_RESPONSE_HEADER,
};
pub use timed::{Cut, Meter, Timed, TICK};
pub use wire::{FileInfo, Password};

/// The fields of a successful reply, without `"ok"`.
pub type Reply = Map<String, Value>;

/// Builds the header of a successful reply: `{"ok":true, ...fields}`.
pub fn ok_header(fields: Reply) -> Header {
    let mut h = Header::with_capacity(fields.len() + 1);
    h.insert("ok".into(), Value::Bool(true));
    h.extend(fields);
    h
}

/// Builds the header of an error reply.
pub fn error_header(code: ErrorCode, message: &str) -> Header {
    let mut h = Header::with_capacity(3);
    h.insert("ok".into(), Value::Bool(false));
    h.insert("error".into(), Value::from(code.as_str()));
    h.insert("message".into(), Value::from(message));
    h
}

/// A digest as the protocol writes it: lowercase hex.
pub fn md5_hex(digest: impl AsRef<[u8]>) -> String {
    use std::fmt::Write;
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether `s` is a well-typed digest: 32 lowercase hex characters.
pub fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    #[test]
    fn digests_format_as_the_protocol_writes_them() {
        let d = Md5::digest(b"hello");
        assert_eq!(md5_hex(d), "5d41402abc4b2a76b9719d911017c592");
        assert!(is_md5_hex(&md5_hex(d)));
        assert!(!is_md5_hex("5D41402ABC4B2A76B9719D911017C592"));
        assert!(!is_md5_hex("5d41402abc4b2a76b9719d911017c59"));
        assert!(!is_md5_hex("5d41402abc4b2a76b9719d911017c59g"));
    }

    #[test]
    fn ok_comes_first() {
        let mut f = Reply::new();
        f.insert("offset".into(), 0.into());
        let bytes = encode_frame(&ok_header(f));
        assert_eq!(&bytes[4..], br#"{"ok":true,"offset":0}"#);
    }
}
