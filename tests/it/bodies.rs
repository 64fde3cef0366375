//! Bodies that wait on the network (issue 16, items 1 and 2): a quarter of
//! the workers never carries a body, a slow body gives way to a newcomer,
//! and the rate floor cuts a slow reader whatever it is blocked in.

use std::time::{Duration, Instant};

use netdisk::client::Client;
use netdisk::error::ErrorCode;

use crate::support::*;

/// Stores `data` as `name` through `c`.
fn store(c: &mut Client, name: &str, data: &[u8]) {
    assert_eq!(c.put_begin(name, data.len() as u64).unwrap(), 0);
    c.write_body(data).unwrap();
    assert_eq!(c.put_end(&md5(data)).unwrap().size, data.len() as u64);
}

/// A client of `user` from 127.0.0.`n`.
fn login_from(server: &TestServer, n: u8, user: &str) -> Client {
    let mut c = server.client_from(n);
    c.login(user, &pw()).unwrap();
    c
}

#[test]
fn trickling_uploads_and_readers_that_never_read_leave_room_for_an_honest_client() {
    let server = TestServer::with_args(&["--workers", "2"]);
    let small = bytes(4096, 1);
    store(&mut server.user("alice"), "small.bin", &small);
    let big = bytes(8 << 20, 2);
    store(&mut server.user("mallory"), "big.bin", &big);

    // From 127.0.0.3: three uploads that send one byte and then nothing,
    // and three downloads whose reader never reads. Before bodies had
    // places, these held both workers and everyone else waited.
    let mut attack = Vec::new();
    for i in 0..3 {
        let mut c = login_from(&server, 3, "mallory");
        match c.put_begin(&format!("trickle{i}"), 1 << 30) {
            Ok(0) => {
                c.write_body(b"x").unwrap();
                attack.push(c);
            }
            Ok(n) => panic!("a fresh upload resumes at {n}"),
            // One address holds at most its share (here the one place):
            // the rest are refused, or displace the one before them.
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}"),
        }
    }
    for _ in 0..3 {
        let mut c = login_from(&server, 3, "mallory");
        c.get_send("big.bin", 0).unwrap();
        attack.push(c);
    }

    // The honest user, on another address, is served at once: a login
    // and a listing on the reserved worker, a small file on a borrowed one.
    let started = Instant::now();
    let mut alice = login_from(&server, 2, "alice");
    assert_eq!(alice.ls().unwrap().len(), 1);
    let answer = alice.get_begin("small.bin", 0).unwrap();
    let mut got = vec![0u8; answer.size as usize];
    alice.read_body_exact(&mut got).unwrap();
    assert_eq!(got, small);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "served in {:?}",
        started.elapsed()
    );

    // A big upload takes the place of the slowest body once that has
    // had its grace: until then it is told BUSY, and tries again.
    let upload = bytes(4 << 20, 3);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut c = login_from(&server, 2, "alice");
        match c.put_begin("upload.bin", upload.len() as u64) {
            Ok(0) => {
                c.write_body(&upload).unwrap();
                assert_eq!(c.put_end(&md5(&upload)).unwrap().size, 4 << 20);
                break;
            }
            Ok(n) => panic!("resumed at {n}"),
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}"),
        }
        assert!(Instant::now() < deadline, "never got a place");
    }
    // The trickle that gave way kept its byte and resumes.
    server.wait_for_log("\"put\" \"trickle0\" 1");
    let mut again = login_from(&server, 3, "mallory");
    assert_eq!(again.put_begin("trickle0", 1 << 30).unwrap(), 1);
    drop(attack);
}

#[test]
fn the_rate_floor_cuts_a_reader_slower_than_it_within_seconds() {
    let server = TestServer::with_args(&["--min-rate", "1000000", "--rate-window", "2"]);
    let data = bytes(64 << 20, 4);
    store(&mut server.user("slow"), "big.bin", &data);
    let mut c = server.login("slow");
    let answer = c.get_begin("big.bin", 0).unwrap();
    assert_eq!(answer.size, 64 << 20);
    // 64 KiB every 200 ms: a third of the floor. Sent in 8 MiB slices
    // and checked only between them, it would take 26 s to be noticed.
    let started = Instant::now();
    let mut read = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    let cut = loop {
        match c.read_body_exact(&mut buf) {
            Ok(()) => read += buf.len(),
            Err(_) => break started.elapsed(),
        }
        assert!(read < data.len(), "the whole file went out at a crawl");
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = server.wait_for_log("\"get\" \"big.bin\"");
    let line = log
        .lines()
        .find(|l| l.contains("\"get\" \"big.bin\""))
        .unwrap();
    assert!(line.contains("stalled"), "{line}");
    // The bytes it did send are logged.
    let logged: u64 = line
        .split("\"big.bin\" ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap();
    assert!(logged >= read as u64, "{line}: {read} read");
    // The worker was let go within seconds (the log's duration); the
    // reader sees the end later, once it has read what the socket
    // buffers still held (a few MiB at its crawl).
    let held_ms: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_suffix("ms")?.parse().ok())
        .unwrap();
    assert!(held_ms < 10_000, "{line}: the worker was held {held_ms} ms");
    assert!(
        cut < Duration::from_secs(40),
        "cut after {cut:?}, {read} bytes"
    );
    // The file is whole, and a fast reader gets it.
    let mut fast = server.login("slow");
    let answer = fast.get_begin("big.bin", 0).unwrap();
    let mut all = vec![0u8; answer.size as usize];
    fast.read_body_exact(&mut all).unwrap();
    assert_eq!(md5(&all), md5(&data));
}
