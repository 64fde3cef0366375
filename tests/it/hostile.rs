//! Hostile input: broken frames, ill-typed fields, illegal names, links and
//! special files in a user's folder, and password guessing.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::protocol::{closed, raw_login};
use crate::support::*;

/// A fresh connection is served: a login of the user [`serving`]
/// registered, and an `ls`.
#[track_caller]
fn still_serving(server: &TestServer) {
    let mut raw = raw_login(server, "probe");
    assert_eq!(
        raw.call(json!({"cmd": "ls"})),
        json!({"ok": true, "files": [], "folders": []})
    );
}

/// A server with the user that [`still_serving`] logs in as.
fn serving() -> TestServer {
    let server = TestServer::start();
    server.user("probe");
    server
}

#[test]
fn bad_frames_are_answered_then_closed() {
    let server = serving();
    let with_len = |len: u32, payload: &[u8]| {
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length 0", with_len(0, b"")),
        (
            "length 0 then a frame",
            with_len(0, b"\0\0\0\x0c{\"cmd\":\"ls\"}"),
        ),
        ("length 65537, no payload", with_len(65537, b"")),
        ("length 0x00FFFFFF", with_len(0xFF_FFFF, b"")),
        ("not JSON", with_len(5, b"hello")),
        ("JSON array", with_len(8, b"[\"ls\",1]")),
        ("JSON string", with_len(4, b"\"ls\"")),
        ("JSON null", with_len(4, b"null")),
        ("JSON number", with_len(1, b"5")),
        ("two objects", with_len(4, b"{}{}")),
        ("truncated object", with_len(7, b"{\"cmd\":")),
        ("invalid UTF-8", with_len(12, b"{\"cmd\":\"\xff\xfe\"}")),
        ("UTF-16 BOM", with_len(4, b"\xff\xfe{}")),
    ];
    for (what, bytes) in cases {
        let mut raw = server.raw();
        raw.send_bytes(&bytes);
        let r = raw.recv();
        assert_eq!(r["error"], "BAD_FRAME", "{what}: {r}");
        assert!(r["message"].is_string(), "{what}: {r}");
        assert!(closed(&mut raw), "{what}: connection left open");
        still_serving(&server);
    }
    // Lengths of 16 MiB and more start with a byte other than 0: as a
    // first byte that speaks no protocol (PROTOCOL.md, "Transport"), the
    // connection is closed without a word; later in a session it is a
    // bad frame like any other.
    for bytes in [with_len(u32::MAX, b""), with_len(u32::MAX, &[b'{'; 1000])] {
        let mut raw = server.raw();
        raw.send_bytes(&bytes);
        assert!(closed(&mut raw), "first byte 0xFF left open");
        let mut raw = server.raw();
        assert_code(
            &raw.call(serde_json::json!({"cmd": "whoami"})),
            "NOT_LOGGED_IN",
        );
        raw.send_bytes(&bytes);
        assert_eq!(raw.recv()["error"], "BAD_FRAME");
        assert!(closed(&mut raw));
        still_serving(&server);
    }
}

/// An oversized header whose bytes do follow: the server answers without
/// reading (or allocating) them, and the reply is not lost to a reset.
#[test]
fn oversized_header_with_its_bytes() {
    let server = serving();
    let mut raw = server.raw();
    let mut frame = 65537u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[b' '; 65535]);
    frame.extend_from_slice(b"{}");
    raw.send_bytes(&frame);
    assert_code(&raw.recv(), "BAD_FRAME");
    assert!(closed(&mut raw));
    still_serving(&server);
}

#[test]
fn bad_frame_mid_session_closes_it() {
    let server = TestServer::start();
    server.user("alice");
    let mut raw = raw_login(&server, "alice");
    raw.send_frame(3, b"{x}");
    assert_code(&raw.recv(), "BAD_FRAME");
    assert!(closed(&mut raw));
    let mut raw = raw_login(&server, "alice");
    assert_eq!(raw.call(json!({"cmd": "ls"}))["ok"], true);
}

/// The largest legal header is served; the limit is on bytes, not content.
#[test]
fn a_header_of_exactly_65536_bytes_is_served() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let mut header = br#"{"cmd":"whoami"}"#.to_vec();
    header.resize(65536, b' ');
    raw.send_frame(65536, &header);
    assert_code(&raw.recv(), "NOT_LOGGED_IN");
    // Still in step with the stream.
    assert_code(&raw.call(json!({"cmd": "ls"})), "NOT_LOGGED_IN");
}

/// A connection that ends inside a frame costs the server nothing lasting.
#[test]
fn truncated_frames_then_close() {
    let server = serving();
    for bytes in [&b"\0\0"[..], b"\0\0\0\x20{\"cmd\":", b"\0\0\0"] {
        let mut raw = server.raw();
        raw.send_bytes(bytes);
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(closed(&mut raw));
    }
    still_serving(&server);
}

#[test]
fn ill_typed_fields_are_bad_requests_and_keep_the_connection() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    crate::protocol::put_all(&mut c, "f", b"hello");
    let mut raw = raw_login(&server, "alice");
    let cases = [
        json!({"cmd": "put", "name": "a", "size": 5.0}),
        json!({"cmd": "put", "name": "a", "size": "5"}),
        json!({"cmd": "put", "name": "a", "size": -1}),
        json!({"cmd": "put", "name": "a", "size": 1e3}),
        json!({"cmd": "put", "name": "a", "size": null}),
        json!({"cmd": "put", "name": "a", "size": true}),
        json!({"cmd": "put", "name": "a", "size": [5]}),
        json!({"cmd": "put", "name": 5, "size": 5}),
        json!({"cmd": "put", "name": null, "size": 5}),
        json!({"cmd": "put", "name": ["a"], "size": 5}),
        json!({"cmd": "get", "name": "f", "offset": -1}),
        json!({"cmd": "get", "name": "f", "offset": 1.5}),
        json!({"cmd": "get", "name": "f", "offset": "0"}),
        json!({"cmd": "get", "name": "f", "offset": 6}),
        json!({"cmd": "get", "name": "f", "offset": u64::MAX}),
        json!({"cmd": "get", "offset": 0}),
        json!({"cmd": "delete", "name": {"x": 1}}),
        json!({"cmd": "rename", "from": "f", "to": 7}),
        json!({"cmd": "login", "user": 1, "password": PASSWORD}),
        json!({"cmd": "login", "user": "alice", "password": null}),
        json!({"cmd": "register", "user": "bob", "password": ["12345678"]}),
    ];
    for h in cases {
        let r = raw.call(h.clone());
        assert_code(&r, "BAD_REQUEST");
        assert!(r["message"].is_string(), "{h}: {r}");
    }
    // An integer beyond u64 is not a u64 either.
    let big = br#"{"cmd":"put","name":"a","size":18446744073709551616}"#;
    raw.send_frame(big.len() as u32, big);
    assert_code(&raw.recv(), "BAD_REQUEST");
    let exp = br#"{"cmd":"put","name":"a","size":5e0}"#;
    raw.send_frame(exp.len() as u32, exp);
    assert_code(&raw.recv(), "BAD_REQUEST");
    // None of it created anything or closed the connection.
    let r = raw.call(json!({"cmd": "ls"}));
    assert_eq!(r["files"].as_array().unwrap().len(), 1, "{r}");
    assert!(!server.is_stored("alice", "a"));
}

/// Every path under `dir`, relative, following no links.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
            out.insert(e.path().strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

#[test]
fn illegal_names_are_refused_by_every_file_command() {
    // The data dir sits alone in a private folder, so anything created
    // beside it would be ours (the system temp dir is shared with other tests).
    let outer = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir_in(outer.path()).unwrap();
    let server = TestServer::start_in(std::sync::Arc::new(data), &[]);
    let mut c = server.user("alice");
    crate::protocol::put_all(&mut c, "ok", b"data");
    let long = "x".repeat(256);
    let long_utf8 = "é".repeat(128);
    let bad = [
        "",
        ".",
        "..",
        ".hidden",
        "../escape",
        "../../../../../../tmp/escape",
        "/etc/passwd",
        "/tmp/escape",
        "a//b",
        "a/",
        "a/./b",
        "a/../b",
        "a\\b",
        "..\\escape",
        "nul\0byte",
        "new\nline",
        "carriage\rreturn",
        "tab\tname",
        "del\u{7f}",
        "c1\u{85}control",
        "esc\u{1b}[31m",
        &long,
        &long_utf8,
    ];
    let before = tree(server.data.path());
    assert_eq!(fs::read_dir(outer.path()).unwrap().count(), 1);
    let escaped_before = Path::new("/tmp/escape").exists();
    let mut raw = raw_login(&server, "alice");
    for name in bad {
        for h in [
            json!({"cmd": "put", "name": name, "size": 4}),
            json!({"cmd": "get", "name": name}),
            json!({"cmd": "get", "name": name, "offset": 0}),
            json!({"cmd": "delete", "name": name}),
            json!({"cmd": "rename", "from": name, "to": "fine"}),
            json!({"cmd": "rename", "from": "ok", "to": name}),
        ] {
            let r = raw.call(h.clone());
            assert_code(&r, "INVALID_NAME");
        }
    }
    // Nothing was created, moved or removed, inside or beside the data dir.
    assert_eq!(tree(server.data.path()), before);
    assert_eq!(fs::read_dir(outer.path()).unwrap().count(), 1);
    assert_eq!(Path::new("/tmp/escape").exists(), escaped_before);
    assert_eq!(crate::protocol::get_all(&mut c, "ok"), b"data");
}

#[test]
fn links_fifos_and_devices_are_never_followed() {
    use std::os::unix::fs::symlink;
    if crate::support::local_only("links_fifos_and_devices_are_never_followed") {
        return;
    }
    let server = TestServer::start();
    let mut c = server.user("alice");
    crate::protocol::put_all(&mut c, "real", b"mine");
    let files = server.user_files("alice");
    let outside = tempfile::tempdir().unwrap();
    let secret = write_file(outside.path(), "secret", b"top secret");
    let absent = outside.path().join("created-through-a-link");
    symlink(&secret, files.join("link")).unwrap();
    symlink(&absent, files.join("dangling")).unwrap();
    symlink(outside.path(), files.join("dirlink")).unwrap();
    symlink("real", files.join("inner")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(files.join("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    // A character device (needs privileges; skipped without them).
    let device = std::process::Command::new("mknod")
        .arg(files.join("null"))
        .args(["c", "1", "3"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut specials = vec!["link", "dangling", "dirlink", "inner", "pipe"];
    if device {
        specials.push("null");
    }

    let ls = c.ls().unwrap();
    assert_eq!(ls.len(), 1, "{ls:?}");
    assert_eq!(ls[0].name, "real");
    let w = c.whoami().unwrap();
    assert_eq!((w.files, w.used), (1, 4));
    use crate::protocol::code;
    use netdisk::error::ErrorCode::{Exists, NotFound};
    for name in &specials {
        assert_eq!(code(c.get_begin(name, 0)), NotFound, "get {name}");
        assert_eq!(code(c.delete(name)), NotFound, "delete {name}");
        assert_eq!(code(c.rename(name, "moved")), NotFound, "rename {name}");
        assert_eq!(code(c.rename("real", name)), Exists, "rename onto {name}");
        assert!(
            fs::symlink_metadata(files.join(name)).is_ok(),
            "{name} gone"
        );
    }
    // Uploading over a special name replaces the entry; it never writes
    // through it.
    for name in &specials {
        let data = format!("new {name}");
        crate::protocol::put_all(&mut c, name, data.as_bytes());
        assert!(fs::symlink_metadata(files.join(name)).unwrap().is_file());
        assert_eq!(crate::protocol::get_all(&mut c, name), data.as_bytes());
    }
    assert_eq!(fs::read(&secret).unwrap(), b"top secret");
    assert!(!absent.exists());
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    assert_eq!(crate::protocol::get_all(&mut c, "real"), b"mine");
}

#[test]
fn failed_logins_are_rate_limited_per_user() {
    use netdisk::ratelimit::MAX_PER_USER;
    let server = TestServer::start();
    server.user("alice");
    server.user("bob");
    let mut raw = server.raw();
    for _ in 0..MAX_PER_USER {
        let r = raw.call(json!({"cmd": "login", "user": "alice", "password": "guess1234"}));
        assert_code(&r, "AUTH_FAILED");
    }
    // Now even the right password is refused, under any spelling and from
    // a new connection...
    for user in ["alice", "ALICE"] {
        let r = server
            .raw()
            .call(json!({"cmd": "login", "user": user, "password": PASSWORD}));
        assert_code(&r, "RATE_LIMITED");
    }
    // ...but the fields are still checked first, and bob is unaffected.
    assert_code(
        &raw.call(json!({"cmd": "login", "user": "alice"})),
        "BAD_REQUEST",
    );
    let r = raw.call(json!({"cmd": "login", "user": "bob", "password": PASSWORD}));
    assert_eq!(r["user"], "bob");
    // Unknown names are limited the same way, so limits reveal nothing.
    for _ in 0..MAX_PER_USER {
        let r = raw.call(json!({"cmd": "login", "user": "ghost", "password": "guess1234"}));
        assert_code(&r, "AUTH_FAILED");
    }
    let r = raw.call(json!({"cmd": "login", "user": "ghost", "password": "guess1234"}));
    assert_code(&r, "RATE_LIMITED");
    // A refused login changes nothing: still bob.
    assert_eq!(raw.call(json!({"cmd": "whoami"}))["user"], "bob");
}

#[test]
fn failed_logins_are_rate_limited_per_address() {
    use netdisk::ratelimit::{MAX_PER_PEER, MAX_PER_USER};
    let server = TestServer::start();
    server.user("alice");
    let mut raw = server.raw();
    // Many names, none of them over its own limit.
    for i in 0..MAX_PER_PEER {
        let user = format!("guess{}", i / (MAX_PER_USER - 1));
        let r = raw.call(json!({"cmd": "login", "user": user, "password": "wrong-pw"}));
        assert_code(&r, "AUTH_FAILED");
    }
    let r = server
        .raw()
        .call(json!({"cmd": "login", "user": "alice", "password": PASSWORD}));
    assert_code(&r, "RATE_LIMITED");
}

#[test]
fn a_server_dribbling_a_header_times_the_client_out() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    use netdisk::client::{Client, ClientError};

    // A fake server that answers one valid byte at a time, each well
    // within the client's per-read timeout: only a deadline for the whole
    // header stops it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dribbler = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut request = [0u8; 64];
        let _ = s.read(&mut request);
        let reply = br#"{"ok":true,"user":"alice","padding":"..............................."}"#;
        let mut frame = (reply.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(reply);
        for b in frame {
            if s.write_all(&[b]).is_err() {
                return; // the client gave up
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut c = Client::connect(&addr).unwrap();
    c.set_timeout(Duration::from_millis(400)).unwrap();
    let err = c.login("alice", &pw()).unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    drop(c);
    dribbler.join().unwrap();
}
