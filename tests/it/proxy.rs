//! `serve --proxy-from` over raw TCP: a PROXY protocol header (v1 or v2)
//! from a listed peer names the client for the per-address limits,
//! `--plaintext-from` and the log; one from anyone else is refused; a
//! listed peer that sends none in time, or a bad one, is dropped. Through
//! a real HAProxy: `proxy_haproxy.rs`.

use std::io::Read;

use serde_json::json;

use netdisk::client::Client;

use crate::protocol::closed;
use crate::support::*;

/// The v2 signature.
const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 `PROXY` header for TCP over IPv4 from `client`:`port` to
/// 127.0.0.1:9000, with `tlvs` after the addresses.
fn v2(client: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut rest = client.to_vec();
    rest.extend_from_slice(&[127, 0, 0, 1]);
    rest.extend_from_slice(&port.to_be_bytes());
    rest.extend_from_slice(&9000u16.to_be_bytes());
    rest.extend_from_slice(tlvs);
    let mut h = SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&u16::try_from(rest.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&rest);
    h
}

/// A v2 `LOCAL` header (a health check), with no addresses.
fn v2_local() -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0, 0]);
    h
}

/// A raw connection that first sends `header`.
fn proxied(server: &TestServer, header: &[u8]) -> Raw {
    let mut raw = server.raw();
    raw.send_bytes(header);
    raw
}

fn whoami() -> serde_json::Value {
    json!({"cmd": "whoami"})
}

#[test]
fn a_v2_header_names_the_client_for_the_per_address_limit_and_the_log() {
    let server = TestServer::with_args(&["--proxy-from", "127.0.0.1", "--max-per-address", "1"]);
    let mut a = proxied(&server, &v2([127, 0, 0, 4], 40004, &[]));
    assert_code(&a.call(whoami()), "NOT_LOGGED_IN");
    server.wait_for_log("127.0.0.4:40004 - \"whoami\" - 0 0ms NOT_LOGGED_IN");
    // 127.0.0.4 holds its one slot: a second connection it makes through
    // the proxy is refused, in its own words.
    let mut header = v2([127, 0, 0, 4], 40005, &[]);
    let frame = serde_json::to_vec(&whoami()).unwrap();
    header.extend_from_slice(&u32::try_from(frame.len()).unwrap().to_be_bytes());
    header.extend_from_slice(&frame);
    let mut second = proxied(&server, &header);
    assert_code(&second.recv(), "BUSY");
    server
        .wait_for_log("127.0.0.4:40005 - - - 0 0ms BUSY (too many connections from your address)");
    // The proxy's own address (127.0.0.1, which holds two connections
    // now) is not capped: another client comes through.
    let mut other = proxied(&server, &v2([127, 0, 0, 5], 40006, &[]));
    assert_code(&other.call(whoami()), "NOT_LOGGED_IN");
    server.wait_for_log("127.0.0.5:40006 - \"whoami\"");
    // A slot comes back when its connection closes.
    drop(a);
    let mut again = loop {
        let mut r = proxied(&server, &v2([127, 0, 0, 4], 40007, &[]));
        r.send(&whoami());
        let reply = r.recv();
        if reply["error"] == "NOT_LOGGED_IN" {
            break r;
        }
        // The server may not have seen the close yet.
        assert_code(&reply, "BUSY");
    };
    assert_code(&again.call(whoami()), "NOT_LOGGED_IN");
    // A logged-in session through the proxy logs the client too.
    let mut c = Client::from_stream({
        let raw = proxied(&server, &v2([127, 0, 0, 6], 40008, &[]));
        raw.stream.set_read_timeout(None).unwrap();
        raw.stream
    })
    .unwrap();
    c.register("alice", &pw()).unwrap();
    c.login("alice", &pw()).unwrap();
    assert!(c.ls().unwrap().is_empty());
    server.wait_for_log("127.0.0.6:40008 alice \"ls\"");
}

#[test]
fn v1_lines_tlvs_local_and_cut_headers_are_read() {
    let server = TestServer::with_args(&["--proxy-from", "127.0.0.1"]);
    let mut tcp4 = proxied(&server, b"PROXY TCP4 127.0.0.7 127.0.0.1 40010 9000\r\n");
    assert_code(&tcp4.call(whoami()), "NOT_LOGGED_IN");
    server.wait_for_log("127.0.0.7:40010 - \"whoami\"");
    let mut tcp6 = proxied(&server, b"PROXY TCP6 2001:db8::7 ::1 40011 9000\r\n");
    // Not loopback, so not in the default --plaintext-from.
    assert_code(&tcp6.call(whoami()), "TLS_REQUIRED");
    server.wait_for_log("[2001:db8::7]:40011 - - - 0 0ms TLS_REQUIRED");
    // TLVs (ALPN, authority, a NOOP) are skipped.
    let tlvs = [&[1, 0, 2][..], b"h2", &[2, 0, 4], b"disk", &[4, 0, 2, 0, 0]].concat();
    let mut with_tlvs = proxied(&server, &v2([127, 0, 0, 8], 40012, &tlvs));
    assert_code(&with_tlvs.call(whoami()), "NOT_LOGGED_IN");
    server.wait_for_log("127.0.0.8:40012 - \"whoami\"");
    // A header cut in pieces.
    let header = v2([127, 0, 0, 9], 40013, &[]);
    let mut cut = server.raw();
    for piece in header.chunks(5) {
        cut.send_bytes(piece);
    }
    assert_code(&cut.call(whoami()), "NOT_LOGGED_IN");
    server.wait_for_log("127.0.0.9:40013 - \"whoami\"");
    // LOCAL and UNKNOWN: the proxy speaks for itself.
    let mut local = proxied(&server, &v2_local());
    let me = local.stream.local_addr().unwrap();
    assert_code(&local.call(whoami()), "NOT_LOGGED_IN");
    server.wait_for_log(&format!("{me} - \"whoami\""));
    let mut unknown = proxied(&server, b"PROXY UNKNOWN\r\n");
    let me = unknown.stream.local_addr().unwrap();
    assert_code(&unknown.call(whoami()), "NOT_LOGGED_IN");
    server.wait_for_log(&format!("{me} - \"whoami\""));
}

#[test]
fn plaintext_from_follows_the_carried_address() {
    let server =
        TestServer::with_args(&["--proxy-from", "127.0.0.1", "--plaintext-from", "127.0.0.4"]);
    let mut allowed = proxied(&server, &v2([127, 0, 0, 4], 40020, &[]));
    assert_code(&allowed.call(whoami()), "NOT_LOGGED_IN");
    let mut other = proxied(&server, &v2([192, 0, 2, 1], 40021, &[]));
    assert_code(&other.call(whoami()), "TLS_REQUIRED");
    server.wait_for_log("192.0.2.1:40021 - - - 0 0ms TLS_REQUIRED");
}

#[test]
fn a_proxy_header_from_another_peer_is_refused() {
    let server = TestServer::with_args(&["--proxy-from", "127.0.0.1"]);
    let why = "a PROXY protocol header from an address not in --proxy-from";
    let mut v2_elsewhere = server.raw_from(2);
    v2_elsewhere.send_bytes(&v2([127, 0, 0, 4], 40030, &[]));
    let reply = v2_elsewhere.recv();
    assert_code(&reply, "BAD_REQUEST");
    assert_eq!(reply["message"], why);
    assert!(closed(&mut v2_elsewhere));
    let mut v1_elsewhere = server.raw_from(3);
    v1_elsewhere.send_bytes(b"PROXY TCP4 127.0.0.4 127.0.0.1 40031 9000\r\n");
    v1_elsewhere.send_bytes(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut answer = String::new();
    v1_elsewhere.stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains(why), "{answer}");
    let log = server.wait_for_log(&format!("BAD_REQUEST ({why})"));
    assert!(log.contains("127.0.0.2:"), "{log}");
    assert!(!log.contains("127.0.0.4:"), "{log}");
    // Those peers speak the protocol as ever.
    let mut plain = server.raw_from(2);
    assert_code(&plain.call(whoami()), "NOT_LOGGED_IN");
    // Without --proxy-from nobody may send one.
    let unlisted = TestServer::start();
    let mut raw = proxied(&unlisted, &v2([127, 0, 0, 4], 40032, &[]));
    assert_code(&raw.recv(), "BAD_REQUEST");
    unlisted.wait_for_log(&format!("BAD_REQUEST ({why})"));
}

#[test]
fn a_listed_peer_without_a_valid_header_is_dropped() {
    let server = TestServer::with_args(&["--proxy-from", "127.0.0.1", "--header-timeout", "1"]);
    // Silence: dropped at the header deadline, with no answer.
    let mut silent = server.raw();
    assert!(closed(&mut silent));
    server.wait_for_log("TIMEOUT (no PROXY header in time)");
    // The protocol without a header first.
    let mut bare = server.raw();
    bare.send(&whoami());
    assert!(closed(&mut bare));
    server.wait_for_log("BAD_REQUEST (no PROXY header)");
    // A v2 length past the bound is refused from its fixed part alone.
    let mut long = server.raw();
    let mut header = SIG.to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    long.send_bytes(&header);
    assert!(closed(&mut long));
    server.wait_for_log("BAD_REQUEST (the PROXY v2 header is too long)");
    // A v1 line that does not end within 107 bytes.
    let mut line = server.raw();
    line.send_bytes(format!("PROXY TCP4 {}", "1".repeat(120)).as_bytes());
    assert!(closed(&mut line));
    server.wait_for_log("BAD_REQUEST (the PROXY v1 line is too long)");
    let mut bad = server.raw();
    bad.send_bytes(b"PROXY TCP4 127.0.0.4 127.0.0.1 99999 9000\r\n");
    assert!(closed(&mut bad));
    server.wait_for_log("BAD_REQUEST (a malformed PROXY v1 header)");
    // The server goes on.
    let mut fine = proxied(&server, &v2([127, 0, 0, 4], 40040, &[]));
    assert_code(&fine.call(whoami()), "NOT_LOGGED_IN");
}

#[test]
fn a_full_table_answers_a_proxied_client_in_its_own_words() {
    let server = TestServer::with_args(&["--proxy-from", "127.0.0.1", "--max-connections", "1"]);
    // A logged-in connection, which is not closed to make room.
    let raw = proxied(&server, &v2([127, 0, 0, 4], 40050, &[]));
    raw.stream.set_read_timeout(None).unwrap();
    let mut owner = Client::from_stream(raw.stream).unwrap();
    owner.register("owner", &pw()).unwrap();
    owner.login("owner", &pw()).unwrap();
    let mut header = v2([127, 0, 0, 5], 40051, &[]);
    header.extend_from_slice(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut http = proxied(&server, &header);
    let mut answer = String::new();
    http.stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    let mut v1 = proxied(&server, &v2([127, 0, 0, 5], 40052, &[]));
    v1.send(&whoami());
    assert_code(&v1.recv(), "BUSY");
    assert!(owner.ls().unwrap().is_empty());
}
