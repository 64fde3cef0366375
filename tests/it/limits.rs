//! Connection limits (issue 7): idle connections cost no worker, caps per
//! address and in all, login and header deadlines, the rate floor under
//! bodies, and floods of error replies.

use std::io::Write;
use std::net::TcpStream;

use serde_json::json;

use crate::protocol::closed;
use crate::support::*;

#[test]
fn a_client_is_served_while_a_thousand_idle_connections_are_open() {
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let server = TestServer::with_args(&["--workers", "2", "--max-per-address", "2000"]);
    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        // Some say nothing, some start a header and stop.
        if i % 2 == 0 {
            s.write_all(&[0, 0]).unwrap();
        }
        idle.push(s);
    }
    let mut c = server.user("busybee");
    assert!(c.ls().unwrap().is_empty());
    assert_eq!(c.whoami().unwrap().user, "busybee");
    drop(idle);
}

#[test]
fn past_the_per_address_cap_busy_while_another_address_is_served() {
    let server = TestServer::with_args(&["--max-per-address", "2"]);
    let mut a = server.raw();
    let mut b = server.raw();
    // Both accepted (each answers), so both hold their slot.
    assert_code(&a.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
    assert_code(&b.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
    let mut third = server.raw();
    assert_code(&third.recv(), "BUSY");
    assert!(closed(&mut third));
    let mut other = server.raw_from(2);
    assert_code(&other.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
    // A slot comes back when its connection closes.
    drop(a);
    let mut again = loop {
        let mut r = server.raw();
        r.send(&json!({"cmd": "whoami"}));
        let reply = r.recv();
        if reply["error"] == "NOT_LOGGED_IN" {
            break r;
        }
        // The server may not have seen the close yet: BUSY, and try again.
        assert_code(&reply, "BUSY");
    };
    assert_code(&again.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
}

#[test]
fn a_full_table_closes_the_oldest_anonymous_connection_for_a_newcomer() {
    let server = TestServer::with_args(&["--max-connections", "2"]);
    let mut owner = server.user("owner");
    let mut early = server.raw();
    assert_code(&early.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
    // The table is full: the anonymous one makes room, the owner stays.
    // (Until the worker has given `early` back to the event loop, it is
    // not waiting there: then BUSY, and try again.)
    let mut late = loop {
        let mut r = server.raw_from(3);
        let reply = r.call(json!({"cmd": "whoami"}));
        if reply["error"] == "NOT_LOGGED_IN" {
            break r;
        }
        assert_code(&reply, "BUSY");
    };
    assert!(closed(&mut early));
    server.wait_for_log("made room for a newer connection");
    // Once every connection is logged in, a newcomer is refused.
    let r = late.call(json!({"cmd": "login", "user": "owner", "password": PASSWORD}));
    assert_eq!(r["ok"], true, "{r}");
    let mut refused = server.raw_from(4);
    assert_code(&refused.recv(), "BUSY");
    server.wait_for_log("too many connections");
    assert_eq!(owner.whoami().unwrap().user, "owner");
}

#[test]
fn an_anonymous_http_connection_gets_408_at_the_login_deadline() {
    let server = TestServer::with_args(&["--login-timeout", "1", "--idle-timeout", "600"]);
    let mut raw = server.raw();
    raw.send_bytes(b"GET /api/whoami HTTP/1.1\r\nHost: netdisk\r\n\r\n");
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut raw.stream, &mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("HTTP/1.1 408"), "{text}");
    server.wait_for_log("not logged in in time");
}

#[test]
fn an_anonymous_connection_must_log_in_in_time() {
    let server = TestServer::with_args(&["--login-timeout", "1", "--idle-timeout", "600"]);
    let mut anon = server.raw();
    let mut user = server.user("quick");
    let r = anon.recv();
    assert_code(&r, "TIMEOUT");
    assert!(r["message"].as_str().unwrap().contains("log"), "{r}");
    assert!(closed(&mut anon));
    // A logged-in connection is not cut by the login timeout.
    server.wait_for_log("not logged in in time");
    assert_eq!(user.whoami().unwrap().user, "quick");
}

#[test]
fn a_header_must_be_whole_within_the_header_timeout() {
    let server = TestServer::with_args(&["--header-timeout", "1", "--idle-timeout", "600"]);
    let mut slow = server.raw();
    // Two bytes of a length, then nothing: far from the idle timeout.
    slow.send_bytes(&[0, 0]);
    let r = slow.recv();
    assert_code(&r, "TIMEOUT");
    assert!(r["message"].as_str().unwrap().contains("header"), "{r}");
    assert!(closed(&mut slow));
    // Inside a TLS handshake too: a hello that never finishes.
    let mut tls = server.raw();
    tls.send_bytes(&[0x16, 3, 1, 0, 200, 1]);
    assert!(closed(&mut tls));
}

#[test]
fn an_upload_below_the_rate_floor_is_cut_and_keeps_its_bytes() {
    let server = TestServer::with_args(&["--min-rate", "1000000", "--rate-window", "1"]);
    let mut c = server.user("trickle");
    let size = 8u64 << 20;
    assert_eq!(c.put_begin("slow.bin", size).unwrap(), 0);
    let data = bytes(size as usize, 3);
    c.write_body(&data[..100_000]).unwrap();
    // Then nothing: the server gives up after the window.
    server.wait_for_log("\"put\" \"slow.bin\" 100000");
    let log = server.log();
    assert!(log.contains("TIMEOUT"), "{log}");
    let mut again = server.login("trickle");
    assert_eq!(again.put_begin("slow.bin", size).unwrap(), 100_000);
    again.write_body(&data[100_000..]).unwrap();
    assert_eq!(again.put_end(&md5(&data)).unwrap().size, size);
}

#[test]
fn a_long_run_of_error_replies_closes_the_connection() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let bad = serde_json::to_vec(&json!({"cmd": "xxxxxxxx"})).unwrap();
    let mut burst = Vec::new();
    for _ in 0..1100 {
        burst.extend_from_slice(&(bad.len() as u32).to_be_bytes());
        burst.extend_from_slice(&bad);
    }
    raw.send_bytes(&burst);
    for _ in 0..1000 {
        assert_code(&raw.recv(), "UNKNOWN_COMMAND");
    }
    assert!(closed(&mut raw));
    let log = server.wait_for_log("closed after 1000 error replies in a row");
    // The flood is summarised, not written line by line.
    let lines = log
        .lines()
        .filter(|l| l.contains("UNKNOWN_COMMAND"))
        .count();
    assert!(lines < 100, "{lines} lines:\n{log}");
    assert!(log.contains("repeated"), "{log}");
    // A few hundred errors in a row are fine.
    let mut ok = server.raw();
    for _ in 0..300 {
        assert_code(&ok.call(json!({"cmd": "nope"})), "UNKNOWN_COMMAND");
    }
    assert_code(&ok.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
}

#[test]
fn a_first_byte_that_speaks_no_protocol_is_closed() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send_bytes(b"\x01\x02\x03\x04");
    assert!(closed(&mut raw));
    still_answers(&server);
}

fn still_answers(server: &TestServer) {
    let mut raw = server.raw();
    assert_code(&raw.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
}

/// Reads one HTTP response (head and `Content-Length` body); returns the
/// status line.
fn http_response(raw: &mut crate::support::Raw) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        raw.stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    raw.stream.read_exact(&mut body).unwrap();
    head.lines().next().unwrap().to_string()
}

#[test]
fn failed_http_requests_of_one_address_are_logged_up_to_a_cap() {
    let server = TestServer::start();
    let mut conns: Vec<_> = (0..4).map(|_| server.raw()).collect();
    // Four connections take turns, each path new: no two lines alike.
    for i in 0..100 {
        for (j, raw) in conns.iter_mut().enumerate() {
            raw.send_bytes(format!("GET /nothing/{i}/{j} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            assert!(http_response(raw).starts_with("HTTP/1.1 404"));
        }
    }
    // An anonymous request counts against the same budget, even one that
    // succeeds...
    conns[0].send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(http_response(&mut conns[0]).starts_with("HTTP/1.1 200"));
    // ...but a signed-in user's are logged whatever the budget.
    drop(server.user("alice"));
    let mut web = crate::http::Web::plain(&server);
    web.sign_in("alice");
    assert_eq!(web.get("/api/whoami").status, 200);
    let log = server.wait_for_log("\"GET /api/whoami\"");
    assert!(!log.contains("\"GET /\""), "{log}");
    let logged = log.lines().filter(|l| l.contains("/nothing/")).count();
    assert_eq!(
        logged,
        netdisk::server::log::ERRORS_PER_MINUTE as usize,
        "{log}"
    );
}

/// Whether the server has answered on `raw` (without waiting).
fn answered(raw: &crate::support::Raw) -> bool {
    raw.stream.set_nonblocking(true).unwrap();
    let got = raw.stream.peek(&mut [0u8; 1]);
    raw.stream.set_nonblocking(false).unwrap();
    matches!(got, Ok(n) if n > 0)
}

/// Forty right logins at once from one address, on a server with one
/// worker: they wait for the hasher in its queue, not on the worker, so a
/// logged-in client's `ls` is answered at once, and a login from another
/// address is checked in its turn, before the flood's tail.
#[test]
fn logins_waiting_for_the_hasher_hold_no_worker_and_take_turns_by_address() {
    // A burst as large as the flood: this is about the hasher's queue, not
    // the pace of logins (tests/it/logins.rs).
    let server = TestServer::with_args(&["--workers", "1", "--login-burst", "40"]);
    drop(server.user("mallory"));
    let mut alice = server.user("alice");
    let login = |user: &str| json!({"cmd": "login", "user": user, "password": PASSWORD});
    let mut flood: Vec<_> = (0..40).map(|_| server.raw_from(3)).collect();
    for raw in &mut flood {
        raw.send(&login("mallory"));
    }
    assert!(alice.ls().unwrap().is_empty());
    let after_ls = flood.iter().filter(|r| answered(r)).count();
    let mut other = server.raw_from(2);
    assert_eq!(other.call(login("alice"))["user"], "alice");
    let after_login = flood.iter().filter(|r| answered(r)).count();
    assert!(
        after_ls < flood.len() && after_login < flood.len(),
        "the flood was answered first: {after_ls} and {after_login} of {}",
        flood.len()
    );
    for raw in &mut flood {
        assert_eq!(raw.recv()["user"], "mallory");
    }
}

/// An HTTP client refused at accept (the table full of logged-in
/// connections, or its address over the cap) gets `503` with
/// `Retry-After`, in HTTP; a v1 client still gets its `BUSY` frame.
#[test]
fn r16_a_refused_http_client_gets_503_with_retry_after() {
    let server = TestServer::with_args(&["--max-connections", "2", "--max-per-address", "1"]);
    let mut first = server.user("owner");
    let mut second = server.client_from(2);
    second.login("owner", &pw()).unwrap();
    let refused_http = |n: u8| {
        let mut raw = server.raw_from(n);
        raw.send_bytes(b"GET /api/session HTTP/1.1\r\nHost: netdisk\r\n\r\n");
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut raw.stream, &mut all).unwrap();
        String::from_utf8_lossy(&all).into_owned()
    };
    for n in [3, 1] {
        let text = refused_http(n);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.contains("\r\nRetry-After: "), "{text}");
        assert!(text.contains("\"BUSY\""), "{text}");
    }
    let mut v1 = server.raw_from(3);
    v1.send(&json!({"cmd": "ping"}));
    assert_code(&v1.recv(), "BUSY");
    assert!(closed(&mut v1));
    assert_eq!(first.whoami().unwrap().user, "owner");
    assert_eq!(second.whoami().unwrap().user, "owner");
}

/// HTTP has v1's run-of-errors cut: 1,000 error responses in a row close
/// the connection; a success in between starts the run again.
#[test]
fn r16_a_long_run_of_http_errors_closes_the_connection() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let burst: String = (0..1100)
        .map(|i| format!("GET /nothing/{i} HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();
    raw.send_bytes(burst.as_bytes());
    for _ in 0..1000 {
        assert!(http_response(&mut raw).starts_with("HTTP/1.1 404"));
    }
    assert!(closed(&mut raw));
    server.wait_for_log("closed after 1000 error replies in a row");
    let mut ok = server.raw();
    for round in 0..2 {
        for i in 0..600 {
            ok.send_bytes(format!("GET /no/{round}/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            assert!(http_response(&mut ok).starts_with("HTTP/1.1 404"));
        }
        ok.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(http_response(&mut ok).starts_with("HTTP/1.1 200"));
    }
}
