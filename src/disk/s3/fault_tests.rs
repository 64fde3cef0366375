//! The client's faults against a scripted local server (no tool needed):
//! retries, refusals, timeouts, bodies cut short, an unreachable store.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::tests::{md5_b64, read_all, ID};
use super::*;

/// A local server answering each request (one a connection) with the next
/// of its answers, then 500s; it keeps the requests' heads. It lingers
/// after each answer, except one marked `close:`.
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
    if let Some(cut) = answer.strip_prefix("close:") {
        let _ = conn.write_all(cut.as_bytes());
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
fn a_body_cut_short_is_asked_for_again_from_where_it_stopped() {
    let cut =
        "close:HTTP/1.1 206 Partial Content\r\nETag: \"e1\"\r\nContent-Length: 10\r\n\r\n0123";
    let rest = "HTTP/1.1 206 Partial Content\r\nETag: \"e1\"\r\nContent-Length: 6\r\nConnection: close\r\n\r\n456789";
    let store = Scripted::new(vec![ok(), cut.to_string(), rest.to_string()]);
    let s3 = store.open();
    assert_eq!(read_all(s3.get_range(ID, 90).unwrap()), b"0123456789");
    let heads = store.heads.lock().unwrap();
    assert_eq!(heads.len(), 3);
    assert!(heads[1].contains("Range: bytes=90-"), "{}", heads[1]);
    assert!(!heads[1].contains("If-Match"), "{}", heads[1]);
    assert!(heads[2].contains("Range: bytes=94-"), "{}", heads[2]);
    assert!(heads[2].contains("If-Match: \"e1\""), "{}", heads[2]);
}

#[test]
fn a_store_that_ignores_range_is_read_from_the_offset() {
    let store = Scripted::new(vec![ok(), answer("200 OK", "0123456789")]);
    let s3 = store.open();
    assert_eq!(read_all(s3.get_range(ID, 4).unwrap()), b"456789");
}

#[test]
fn a_body_cut_short_too_often_fails_the_read() {
    let cut = |status: &str, bytes: &str| {
        format!("close:HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n{bytes}")
    };
    let mut store = Scripted::new(vec![
        ok(),
        cut("200 OK", "01"),
        cut("206 Partial Content", "23"),
        cut("206 Partial Content", "45"),
    ]);
    store.config.backoff.attempts = 3;
    let s3 = store.open();
    let mut got = Vec::new();
    let e = s3
        .get_range(ID, 0)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap_err();
    assert_eq!(got, b"012345");
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    assert_eq!(store.seen(), 4);
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
