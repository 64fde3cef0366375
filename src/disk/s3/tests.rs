//! The client against moto ([`TestS3`]), and its faults against a scripted
//! local server that needs no tool.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::{Digest, Md5};

use super::testing::TestS3;
use super::*;

const ID: &str = "0123456789abcdef0123456789abcdef";
const OTHER: &str = "fedcba9876543210fedcba9876543210";
const MIB: usize = 1 << 20;

fn md5_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

fn read_all(mut body: Body) -> Vec<u8> {
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
// (`the_content_md5_is_sent_and_signed`), so a store that checks refuses it.
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

/// A local server answering each request (one a connection) with the next
/// of its answers, then 500s; it keeps the requests' heads.
struct Scripted {
    config: S3Config,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    /// `"stall"` for an answer that never comes.
    fn new(answers: Vec<String>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        let mut script = answers.into_iter();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let answer = script
                    .next()
                    .unwrap_or_else(|| answer("500 Internal Error", ""));
                let kept = kept.clone();
                thread::spawn(move || answer_one(conn, &answer, &kept));
            }
        });
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut config = S3Config::from_vars("s3://scripted/p", |name| match name {
            "AWS_ENDPOINT_URL" => Some(endpoint.clone()),
            "AWS_ACCESS_KEY_ID" => Some("AKIDSCRIPTED".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("very-secret-key".into()),
            _ => None,
        })
        .unwrap();
        config.io_timeout = Duration::from_millis(300);
        config.backoff = Backoff {
            attempts: 5,
            first: Duration::from_millis(10),
        };
        Scripted { config, heads }
    }

    /// The requests seen so far.
    fn seen(&self) -> usize {
        // A connection is counted once its head is read: wait for stragglers.
        thread::sleep(Duration::from_millis(20));
        self.heads.lock().unwrap().len()
    }

    fn open(&self) -> S3 {
        S3::open(self.config.clone()).unwrap()
    }
}

fn answer_one(mut conn: TcpStream, answer: &str, heads: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(str::to_owned)
        })
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or(0);
    heads.lock().unwrap().push(head);
    let _ = std::io::copy(&mut (&mut conn).take(length), &mut std::io::sink());
    if answer == "stall" {
        thread::sleep(Duration::from_secs(5));
        return;
    }
    let _ = conn.write_all(answer.as_bytes());
    // Linger so a partial body stalls rather than ends.
    thread::sleep(Duration::from_secs(2));
}

/// A raw HTTP answer with `body`.
fn answer(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn ok() -> String {
    answer("200 OK", "")
}

fn slow_down() -> String {
    answer(
        "503 Slow Down",
        "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>",
    )
}

#[test]
fn the_content_md5_is_sent_and_signed() {
    let store = Scripted::new(vec![ok(), ok()]);
    let s3 = store.open();
    s3.put_object(ID, b"abc", &md5_b64(b"abc")).unwrap();
    let heads = store.heads.lock().unwrap();
    let put = &heads[1];
    assert!(put.starts_with(&format!("PUT /scripted/p/{ID}?")), "{put}");
    assert!(
        put.contains("X-Amz-SignedHeaders=content-md5%3Bhost"),
        "{put}"
    );
    assert!(
        put.contains(&format!("Content-MD5: {}", md5_b64(b"abc"))),
        "{put}"
    );
    assert!(!put.contains("very-secret-key"), "{put}");
}

#[test]
fn slow_down_twice_then_ok_is_three_attempts() {
    let store = Scripted::new(vec![ok(), slow_down(), slow_down(), ok()]);
    let s3 = store.open();
    s3.put_object(ID, b"abc", &md5_b64(b"abc")).unwrap();
    assert_eq!(store.seen(), 4);
}

#[test]
fn a_refusal_fails_at_once_naming_the_operation_and_status() {
    let denied = answer(
        "403 Forbidden",
        "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
    );
    let store = Scripted::new(vec![ok(), denied]);
    let s3 = store.open();
    let e = s3.put_object(ID, b"abc", &md5_b64(b"abc")).unwrap_err();
    assert_eq!(store.seen(), 2);
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("internal error: S3 put p/{ID}: 403 AccessDenied: Access Denied (bucket scripted at http://127.0.0.1:")),
        "{shown}"
    );
}

#[test]
fn a_store_that_keeps_failing_fails_after_the_last_attempt() {
    let store = Scripted::new(vec![ok()]);
    let s3 = store.open();
    let e = s3.delete_object(ID).unwrap_err().to_string();
    assert_eq!(store.seen(), 1 + 5);
    assert!(e.contains("S3 delete p/"), "{e}");
    assert!(e.contains("status 500"), "{e}");
    assert!(e.ends_with("(after 5 attempts)"), "{e}");
}

#[test]
fn a_store_that_does_not_answer_times_out() {
    let stall = || "stall".to_string();
    let mut store = Scripted::new(vec![ok(), stall(), stall(), stall()]);
    store.config.backoff.attempts = 3;
    let s3 = store.open();
    let start = Instant::now();
    let e = s3.head(ID).unwrap_err().to_string();
    let took = start.elapsed();
    assert_eq!(store.seen(), 1 + 3);
    assert!(e.contains("S3 head p/"), "{e}");
    assert!(e.contains("(after 3 attempts)"), "{e}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_body_that_stalls_fails_the_read() {
    let partial = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes".to_string();
    // The scripted server lingers after its answer: the rest never comes.
    let store = Scripted::new(vec![ok(), partial]);
    let s3 = store.open();
    let mut body = s3.get_range(ID, 0).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let e = body.read_to_end(&mut got).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3), "{e}");
    assert_eq!(got, b"first bytes");
}

#[test]
fn an_unreachable_store_is_named_without_the_secret() {
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = Scripted::new(vec![]).config;
    config.endpoint = format!("http://127.0.0.1:{port}").parse().unwrap();
    let e = S3::open(config).unwrap_err().to_string();
    assert!(
        e.starts_with("internal error: S3 open: Connection Failed"),
        "{e}"
    );
    assert!(
        e.contains(&format!("(bucket scripted at http://127.0.0.1:{port}/)")),
        "{e}"
    );
    assert!(e.ends_with("(after 5 attempts)"), "{e}");
    assert!(
        !e.contains("very-secret-key") && !e.contains("X-Amz"),
        "{e}"
    );
}

#[test]
fn keys_are_32_hex_digits_under_the_prefix() {
    let store = Scripted::new(vec![ok()]);
    let s3 = store.open();
    assert_eq!(s3.key(ID).unwrap(), format!("p/{ID}"));
    for bad in [
        "",
        "0123",
        &ID.to_uppercase(),
        &format!("{ID}0"),
        "../../../etc/passwd0123456789abc",
    ] {
        assert!(s3.key(bad).is_err(), "{bad}");
        assert!(s3.head(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_part_list_must_be_numbered_once_each() {
    let store = Scripted::new(vec![ok()]);
    let s3 = store.open();
    assert!(s3.complete_multipart(ID, "u", &[]).is_err());
    let twice = [(1, "\"a\"".to_string()), (1, "\"b\"".to_string())];
    assert!(s3.complete_multipart(ID, "u", &twice).is_err());
    assert!(s3.upload_part(ID, "u", 0, b"x").is_err());
    assert_eq!(store.seen(), 1);
}

#[test]
fn the_client_is_shared_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<S3>();
    shareable::<Body>();
}
