//! Frame codec: a big-endian `u32` header length, then that many bytes of
//! UTF-8 JSON (PROTOCOL.md, "Frames"). Bodies are not frames; they are read
//! and written by the commands that declare them.
//!
//! Every declared length is checked against a cap *before* anything is
//! allocated, so a length of `0xFFFFFFFF` costs nothing.

use std::io::{self, Read};

use serde::Serialize;
use serde_json::{Map, Value};

/// Largest request header a server accepts (PROTOCOL.md: 1..=65536 bytes).
pub const MAX_REQUEST_HEADER: u32 = 65536;
/// Largest response header a client accepts (PROTOCOL.md: 16 MiB).
pub const MAX_RESPONSE_HEADER: u32 = 16 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The declared length is 0 or above the cap.
    #[error("header length {0} is out of range")]
    Length(u32),
    /// The header is not UTF-8 JSON, or not an object.
    #[error("header is not a JSON object: {0}")]
    Json(String),
    /// The stream failed or ended inside a frame (includes read timeouts).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A decoded header: a JSON object.
pub type Header = Map<String, Value>;

/// Reads one frame's header bytes.
///
/// Returns `Ok(None)` on a clean end of stream before the first byte of a
/// frame, and an error on an end of stream inside one.
///
/// # Errors
/// [`FrameError::Length`] if the length is 0 or above `max`;
/// [`FrameError::Io`] if the stream fails or ends early.
pub fn read_frame<R: Read>(r: &mut R, max: u32) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    let first = loop {
        match r.read(&mut len) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[first..])?;
    let len = u32::from_be_bytes(len);
    if len == 0 || len > max {
        return Err(FrameError::Length(len));
    }
    // `len` is at most `max`: the allocation is bounded by the caller's cap.
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// Decodes header bytes into a JSON object.
///
/// # Errors
/// [`FrameError::Json`] if the bytes are not UTF-8 JSON or not an object.
pub fn parse_header(bytes: &[u8]) -> Result<Header, FrameError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(FrameError::Json("not an object".into())),
        Err(e) => Err(FrameError::Json(e.to_string())),
    }
}

/// Reads and decodes one header; `Ok(None)` on a clean end of stream.
///
/// # Errors
/// As [`read_frame`] and [`parse_header`].
pub fn read_header<R: Read>(r: &mut R, max: u32) -> Result<Option<Header>, FrameError> {
    match read_frame(r, max)? {
        Some(bytes) => parse_header(&bytes).map(Some),
        None => Ok(None),
    }
}

/// Encodes `header` as one frame (length prefix and JSON) in one buffer,
/// so that it goes out in a single write.
///
/// # Panics
/// If the header serialises to more than 4 GiB, which no header does.
pub fn encode_frame<T: Serialize + ?Sized>(header: &T) -> Vec<u8> {
    let mut buf = vec![0u8; 4];
    // Serialising a JSON value or derived struct into a Vec cannot fail.
    serde_json::to_writer(&mut buf, header).expect("header serialises");
    let len = u32::try_from(buf.len() - 4).expect("header under 4 GiB");
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(len: u32, body: &[u8]) -> Vec<u8> {
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn round_trips_a_header() {
        let bytes = encode_frame(&serde_json::json!({"cmd": "ls"}));
        let h = read_header(&mut &bytes[..], MAX_REQUEST_HEADER)
            .unwrap()
            .unwrap();
        assert_eq!(h["cmd"], "ls");
    }

    #[test]
    fn protocol_example_lengths_match() {
        let f = encode_frame(&serde_json::json!({"ok": true, "user": "alice"}));
        assert_eq!(&f[..4], &[0, 0, 0, 0x1a]);
    }

    #[test]
    fn clean_eof_is_none_and_eof_inside_is_error() {
        assert!(read_frame(&mut &b""[..], 10).unwrap().is_none());
        assert!(matches!(
            read_frame(&mut &b"\0\0"[..], 10),
            Err(FrameError::Io(_))
        ));
        assert!(matches!(
            read_frame(&mut &framed(5, b"ab")[..], 10),
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn lengths_out_of_range_are_rejected_before_allocating() {
        for len in [0, MAX_REQUEST_HEADER + 1, u32::MAX] {
            let err = read_frame(&mut &framed(len, b"{}")[..], MAX_REQUEST_HEADER).unwrap_err();
            assert!(matches!(err, FrameError::Length(l) if l == len));
        }
        let max = vec![b' '; MAX_REQUEST_HEADER as usize];
        let ok = read_frame(
            &mut &framed(MAX_REQUEST_HEADER, &max)[..],
            MAX_REQUEST_HEADER,
        );
        assert_eq!(ok.unwrap().unwrap().len(), MAX_REQUEST_HEADER as usize);
    }

    #[test]
    fn non_objects_and_bad_utf8_are_rejected() {
        for bad in [
            &b"[1,2]"[..],
            b"\"cmd\"",
            b"null",
            b"{",
            b"\xff\xfe{}",
            b"not json",
        ] {
            assert!(
                matches!(parse_header(bad), Err(FrameError::Json(_))),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics_and_respects_the_cap(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut r = &bytes[..];
            // Decode frames until the input is exhausted or an error stops it.
            while let Ok(Some(frame)) = read_frame(&mut r, 64) {
                prop_assert!(!frame.is_empty() && frame.len() <= 64);
                let _ = parse_header(&frame);
            }
        }

        #[test]
        fn any_object_round_trips(key in "[a-z]{1,8}", s in ".{0,40}", n in any::<u64>()) {
            let mut m = Header::new();
            m.insert(key.clone(), Value::from(s.clone()));
            m.insert("n".into(), Value::from(n));
            let bytes = encode_frame(&m);
            let back = read_header(&mut &bytes[..], u32::MAX).unwrap().unwrap();
            prop_assert_eq!(back, m);
        }
    }
}
