//! The client against moto ([`TestS3`]); its faults are in `fault_tests`.

use std::io::Read;

use base64::Engine as _;
use md5::{Digest, Md5};

use super::testing::TestS3;
use super::*;

pub(super) const ID: &str = "0123456789abcdef0123456789abcdef";
const OTHER: &str = "fedcba9876543210fedcba9876543210";
const MIB: usize = 1 << 20;

pub(super) fn md5_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

pub(super) fn read_all(mut body: Body) -> Vec<u8> {
    let mut out = Vec::new();
    body.read_to_end(&mut out).expect("read the body");
    out
}

/// Bytes that differ at every offset, so a misplaced range shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

#[test]
fn a_put_object_reads_back_whole_and_from_an_offset() {
    let Some(store) = TestS3::start("a_put_object_reads_back_whole_and_from_an_offset") else {
        return;
    };
    let s3 = store.open("blobs");
    let bytes = pattern(100_000, 7);
    s3.put_object(ID, &bytes, &md5_b64(&bytes)).unwrap();
    assert_eq!(s3.head(ID).unwrap(), 100_000);
    assert_eq!(read_all(s3.get_range(ID, 0).unwrap()), bytes);
    assert_eq!(
        read_all(s3.get_range(ID, 54_321).unwrap()),
        &bytes[54_321..]
    );
    assert!(read_all(s3.get_range(ID, 100_000).unwrap()).is_empty());
    // The key is under the prefix: another prefix does not see it.
    let elsewhere = store.open("");
    assert!(matches!(elsewhere.head(ID), Err(Error::NotFound)));
    assert!(matches!(s3.head(OTHER), Err(Error::NotFound)));
    assert!(matches!(s3.get_range(OTHER, 0), Err(Error::NotFound)));
    // An empty object too.
    s3.put_object(OTHER, b"", &md5_b64(b"")).unwrap();
    assert_eq!(s3.head(OTHER).unwrap(), 0);
    assert!(read_all(s3.get_range(OTHER, 0).unwrap()).is_empty());
}

// moto (5.2) does not check Content-MD5: a wrong one is stored as sent. What
// is true of the client is tested instead: the header goes out, signed
// (`fault_tests::the_content_md5_is_sent_and_signed`), so a store that
// checks refuses it.
#[test]
fn a_part_etag_is_the_md5_of_its_bytes() {
    let Some(store) = TestS3::start("a_part_etag_is_the_md5_of_its_bytes") else {
        return;
    };
    let s3 = store.open("blobs");
    let upload = s3.create_multipart(ID).unwrap();
    let etag = s3.upload_part(ID, &upload, 1, b"hello").unwrap();
    assert_eq!(etag, "\"5d41402abc4b2a76b9719d911017c592\"");
    s3.abort_multipart(ID, &upload).unwrap();
}

#[test]
fn a_part_under_5_mib_but_the_last_is_refused() {
    let Some(store) = TestS3::start("a_part_under_5_mib_but_the_last_is_refused") else {
        return;
    };
    let s3 = store.open("blobs");
    let upload = s3.create_multipart(ID).unwrap();
    let one = s3.upload_part(ID, &upload, 1, b"small").unwrap();
    let two = s3.upload_part(ID, &upload, 2, b"last").unwrap();
    let e = s3
        .complete_multipart(ID, &upload, &[(1, one), (2, two)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("EntityTooSmall"), "{e}");
    assert!(e.contains("S3 complete multipart blobs/"), "{e}");
    s3.abort_multipart(ID, &upload).unwrap();
}

#[test]
fn a_multipart_upload_of_three_parts_reads_back_from_its_middle() {
    let Some(store) = TestS3::start("a_multipart_upload_of_three_parts_reads_back") else {
        return;
    };
    let s3 = store.open("net/disk");
    let parts = [
        pattern(5 * MIB, 1),
        pattern(5 * MIB, 2),
        pattern(123_457, 3),
    ];
    let upload = s3.create_multipart(ID).unwrap();
    // Sent last part first: the caller numbers them, any order.
    let mut etags = Vec::new();
    for (i, part) in parts.iter().enumerate().rev() {
        let n = i as u16 + 1;
        etags.push((n, s3.upload_part(ID, &upload, n, part).unwrap()));
    }
    let whole = parts.concat();
    s3.complete_multipart(ID, &upload, &etags).unwrap();
    assert_eq!(s3.head(ID).unwrap(), whole.len() as u64);
    let offset = 5 * MIB + 777_777;
    assert_eq!(
        read_all(s3.get_range(ID, offset as u64).unwrap()),
        &whole[offset..]
    );
    assert_eq!(read_all(s3.get_range(ID, 0).unwrap()), whole);
}

#[test]
fn an_aborted_upload_leaves_nothing() {
    let Some(store) = TestS3::start("an_aborted_upload_leaves_nothing") else {
        return;
    };
    let s3 = store.open("blobs");
    let upload = s3.create_multipart(ID).unwrap();
    let etag = s3.upload_part(ID, &upload, 1, b"only part").unwrap();
    s3.abort_multipart(ID, &upload).unwrap();
    // AWS says 404 NoSuchUpload; moto (5.2) fails with a 500, which the
    // client takes for a passing fault and retries: either way, an error.
    assert!(s3.complete_multipart(ID, &upload, &[(1, etag)]).is_err());
    s3.abort_multipart(ID, &upload).unwrap();
    assert!(matches!(s3.head(ID), Err(Error::NotFound)));
}

#[test]
fn deleting_is_fine_whether_or_not_the_object_is_there() {
    let Some(store) = TestS3::start("deleting_is_fine_whether_or_not_the_object_is_there") else {
        return;
    };
    let s3 = store.open("blobs");
    s3.delete_object(OTHER).unwrap();
    s3.put_object(ID, b"x", &md5_b64(b"x")).unwrap();
    s3.delete_object(ID).unwrap();
    assert!(matches!(s3.head(ID), Err(Error::NotFound)));
    s3.delete_object(ID).unwrap();
}

#[test]
fn open_fails_for_a_bucket_that_is_not_there() {
    let Some(store) = TestS3::start("open_fails_for_a_bucket_that_is_not_there") else {
        return;
    };
    let mut config = store.config("");
    config.bucket = "no-such-bucket".into();
    let e = S3::open(config).unwrap_err().to_string();
    assert!(e.contains("no such bucket"), "{e}");
    assert!(
        e.contains("bucket no-such-bucket at http://127.0.0.1:"),
        "{e}"
    );
}
