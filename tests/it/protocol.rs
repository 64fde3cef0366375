//! Every command and its error codes over real TCP, PROTOCOL.md's error
//! precedence, and the byte-exact example at the end of PROTOCOL.md.
//!
//! Also holds the small helpers the other test modules share.

use std::io::{ErrorKind, Read};

use netdisk::client::{Client, ClientError};
use netdisk::error::ErrorCode;
use serde_json::{json, Value};

use crate::support::*;

/// Whether the server closed the connection: EOF or a reset. Unlike
/// [`Raw::is_closed`], a read timeout does not count as closed.
pub fn closed(raw: &mut Raw) -> bool {
    let mut b = [0u8; 1];
    match raw.stream.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        ),
    }
}

/// The wire code of a failed client call.
#[track_caller]
pub fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("not a server error: {e:?}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// A raw connection logged in as an existing `user`.
pub fn raw_login(server: &TestServer, user: &str) -> Raw {
    let mut raw = server.raw();
    let r = raw.call(json!({"cmd": "login", "user": user, "password": PASSWORD}));
    assert_eq!(r["ok"], true, "{r}");
    raw
}

/// Uploads `data` as `name` in one go and checks the verdict.
pub fn put_all(c: &mut Client, name: &str, data: &[u8]) {
    let off = c.put_begin(name, data.len() as u64).unwrap();
    c.write_body(&data[off as usize..]).unwrap();
    let ans = c.put_end(&md5(data)).unwrap();
    assert_eq!((ans.name.as_str(), ans.size), (name, data.len() as u64));
    assert_eq!(ans.md5, md5(data));
}

/// Downloads all of `name`, checking the whole result against the MD5 the
/// server announced.
pub fn get_all(c: &mut Client, name: &str) -> Vec<u8> {
    let ans = c.get_begin(name, 0).unwrap();
    let mut data = vec![0u8; ans.size as usize];
    c.read_body_exact(&mut data).unwrap();
    assert_eq!(md5(&data), ans.md5, "{name}: announced MD5 differs");
    data
}

/// The exchange at the end of PROTOCOL.md, byte for byte.
#[test]
fn the_protocol_example_is_byte_exact() {
    let server = TestServer::start();
    server
        .client()
        .register("alice", &netdisk::users::Password::new("s3cret-pw"))
        .unwrap();
    let mut raw = server.raw();
    let exchange: [(&[u8], &[u8]); 2] = [
        (
            b"\x00\x00\x00\x35{\"cmd\":\"login\",\"user\":\"alice\",\"password\":\"s3cret-pw\"}",
            b"\x00\x00\x00\x1a{\"ok\":true,\"user\":\"alice\"}",
        ),
        (
            "\x00\x00\x00\x2a{\"cmd\":\"put\",\"name\":\"报告.pdf\",\"size\":5}".as_bytes(),
            b"\x00\x00\x00\x16{\"ok\":true,\"offset\":0}",
        ),
    ];
    for (request, reply) in exchange {
        raw.send_bytes(request);
        assert_eq!(raw.recv_body(reply.len()), reply);
    }
    raw.send_bytes(b"hello");
    raw.send_bytes(b"\x00\x00\x00\x2a{\"md5\":\"5d41402abc4b2a76b9719d911017c592\"}");
    let done = "\x00\x00\x00\x51{\"ok\":true,\"name\":\"报告.pdf\",\"size\":5,\"md5\":\"5d41402abc4b2a76b9719d911017c592\"}";
    assert_eq!(raw.recv_body(done.len()), done.as_bytes());
    assert!(server.is_stored("alice", "报告.pdf"));
}

#[test]
fn errors_come_in_the_documented_order() {
    let server = TestServer::start();
    server.user("alice");
    let mut anon = server.raw();
    // BAD_REQUEST for a missing or non-string cmd beats everything else.
    for h in [
        json!({}),
        json!({"user": "alice"}),
        json!({"cmd": null}),
        json!({"cmd": 5}),
        json!({"cmd": ["ls"]}),
        json!({"cmd": {"name": "ls"}}),
    ] {
        assert_code(&anon.call(h), "BAD_REQUEST");
    }
    // UNKNOWN_COMMAND beats NOT_LOGGED_IN and any field check.
    for cmd in ["LS", "", "list", "ls ", "quit\0"] {
        assert_code(
            &anon.call(json!({"cmd": cmd, "name": 5})),
            "UNKNOWN_COMMAND",
        );
    }
    // NOT_LOGGED_IN beats the command's own field checks.
    for h in [
        json!({"cmd": "ls"}),
        json!({"cmd": "whoami"}),
        json!({"cmd": "put"}),
        json!({"cmd": "put", "name": "../x", "size": "big"}),
        json!({"cmd": "get", "name": 1, "offset": -1}),
        json!({"cmd": "delete"}),
        json!({"cmd": "rename", "from": "/etc/passwd"}),
    ] {
        assert_code(&anon.call(h), "NOT_LOGGED_IN");
    }
    // Fields before state, for anonymous commands...
    assert_code(
        &anon.call(json!({"cmd": "register", "user": "alice", "password": 12345678})),
        "BAD_REQUEST",
    );
    assert_code(
        &anon.call(json!({"cmd": "register", "user": "alice", "password": "short"})),
        "WEAK_PASSWORD",
    );
    assert_code(
        &anon.call(json!({"cmd": "login", "user": "alice"})),
        "BAD_REQUEST",
    );
    // ...and for the others.
    let mut raw = raw_login(&server, "alice");
    assert_code(
        &raw.call(json!({"cmd": "put", "name": "../x"})),
        "BAD_REQUEST",
    );
    assert_code(
        &raw.call(json!({"cmd": "put", "name": "../x", "size": 1})),
        "INVALID_NAME",
    );
    assert_code(
        &raw.call(json!({"cmd": "get", "name": "missing", "offset": "0"})),
        "BAD_REQUEST",
    );
    assert_code(
        &raw.call(json!({"cmd": "rename", "from": "missing", "to": "a//b"})),
        "INVALID_NAME",
    );
    assert_code(
        &raw.call(json!({"cmd": "rename", "from": "missing"})),
        "BAD_REQUEST",
    );
    assert_code(
        &raw.call(json!({"cmd": "delete", "name": ".."})),
        "INVALID_NAME",
    );
    // None of that closed either connection.
    assert_eq!(raw.call(json!({"cmd": "ls"}))["ok"], true);
    assert_code(&anon.call(json!({"cmd": "ls"})), "NOT_LOGGED_IN");
}

#[test]
fn register_and_login() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let ok = raw.call(json!({"cmd": "register", "user": "Alice", "password": PASSWORD}));
    assert_eq!(ok, json!({"ok": true}));
    // Registering does not log in.
    assert_code(&raw.call(json!({"cmd": "ls"})), "NOT_LOGGED_IN");
    // Names are one user after NFC and lowercasing.
    for taken in ["alice", "ALICE", "aLiCe"] {
        assert_code(
            &raw.call(json!({"cmd": "register", "user": taken, "password": PASSWORD})),
            "USER_EXISTS",
        );
    }
    raw.call(json!({"cmd": "register", "user": "Jos\u{e9}", "password": PASSWORD}));
    assert_code(
        &raw.call(json!({"cmd": "register", "user": "JOSE\u{301}", "password": PASSWORD})),
        "USER_EXISTS",
    );
    let long = "a".repeat(33);
    for bad in [
        "", ".alice", "-alice", "a b", "a/b", "../a", "a\0b", "a@b", "😀", &long,
    ] {
        assert_code(
            &raw.call(json!({"cmd": "register", "user": bad, "password": PASSWORD})),
            "INVALID_NAME",
        );
    }
    for (user, password, want) in [
        ("bob", "1234567".to_string(), "WEAK_PASSWORD"),
        ("bob", "x".repeat(1025), "WEAK_PASSWORD"),
        ("bob", "12345678".to_string(), "ok"),
        ("carol", "y".repeat(1024), "ok"),
        ("用户_1.x-y", "12345678".to_string(), "ok"),
    ] {
        let r = raw.call(json!({"cmd": "register", "user": user, "password": password}));
        if want == "ok" {
            assert_eq!(r["ok"], true, "{user}: {r}");
        } else {
            assert_code(&r, want);
        }
    }
    // Login answers with the spelling the user registered.
    let r = raw.call(json!({"cmd": "login", "user": "ALICE", "password": PASSWORD}));
    assert_eq!(r, json!({"ok": true, "user": "Alice"}));
    let r = raw.call(json!({"cmd": "login", "user": "jose\u{301}", "password": PASSWORD}));
    assert_eq!(r["user"], "Jos\u{e9}");
    let r = raw.call(json!({"cmd": "login", "user": "carol", "password": "y".repeat(1024)}));
    assert_eq!(r["user"], "carol");
    // One code for every kind of wrong credentials.
    for (user, password) in [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("a b", PASSWORD),
        ("alice", "short"),
    ] {
        assert_code(
            &raw.call(json!({"cmd": "login", "user": user, "password": password})),
            "AUTH_FAILED",
        );
    }
    // A failed login changed nothing: still carol.
    assert_eq!(raw.call(json!({"cmd": "whoami"}))["user"], "carol");
    // Registering while logged in does not log out.
    raw.call(json!({"cmd": "register", "user": "dave", "password": PASSWORD}));
    assert_eq!(raw.call(json!({"cmd": "whoami"}))["user"], "carol");
}

#[test]
fn ls_whoami_rename_delete() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    assert!(c.ls().unwrap().is_empty());
    let w = c.whoami().unwrap();
    assert_eq!(
        (w.user.as_str(), w.files, w.used, w.quota),
        ("alice", 0, 0, None)
    );

    let names = ["b", "a", "Z", "é", "中文", "😀", "a b", "-dash", "~"];
    for (i, name) in names.iter().enumerate() {
        put_all(&mut c, name, &bytes(100 * i, i as u64));
    }
    let ls = c.ls().unwrap();
    let listed: Vec<&str> = ls.iter().map(|f| f.name.as_str()).collect();
    let mut by_bytes = names.to_vec();
    by_bytes.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(listed, by_bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for f in &ls {
        let i = names.iter().position(|n| *n == f.name).unwrap();
        assert_eq!(f.size, 100 * i as u64);
        assert_eq!(
            f.md5.as_deref(),
            Some(md5(&bytes(100 * i, i as u64)).as_str())
        );
        assert!(f.mtime <= now + 1 && f.mtime + 3600 > now, "{f:?}");
    }
    let w = c.whoami().unwrap();
    assert_eq!((w.files, w.used), (9, 100 * (0..9).sum::<u64>()));

    // rename: the MD5 moves with the file; never replaces; needs a source.
    c.rename("b", "b2").unwrap();
    let ls = c.ls().unwrap();
    assert!(!ls.iter().any(|f| f.name == "b"));
    let b2 = ls.iter().find(|f| f.name == "b2").unwrap();
    assert_eq!(b2.md5.as_deref(), Some(md5(&bytes(0, 0)).as_str()));
    assert_eq!(code(c.rename("a", "Z")), ErrorCode::Exists);
    assert_eq!(get_all(&mut c, "Z"), bytes(200, 2), "EXISTS left Z alone");
    assert_eq!(get_all(&mut c, "a"), bytes(100, 1));
    assert_eq!(code(c.rename("b", "c")), ErrorCode::NotFound);
    assert_eq!(code(c.rename("a", "a/../x")), ErrorCode::InvalidName);

    // delete
    c.delete("a").unwrap();
    assert_eq!(code(c.delete("a")), ErrorCode::NotFound);
    assert_eq!(code(c.get_begin("a", 0)), ErrorCode::NotFound);
    let w = c.whoami().unwrap();
    assert_eq!((w.files, w.used), (8, 100 * (0..9).sum::<u64>() - 100));
}

#[test]
fn names_are_case_sensitive_and_unicode_round_trips() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    let max = "é".repeat(127) + "a";
    let max2 = "中".repeat(85);
    assert_eq!((max.len(), max2.len()), (255, 255));
    for (i, name) in ["File", "file", "报告 final (2).pdf", "🦀🦀", &max]
        .into_iter()
        .enumerate()
    {
        let data = bytes(1000 + i, 7 + i as u64);
        put_all(&mut c, name, &data);
        assert_eq!(get_all(&mut c, name), data);
        assert!(c.ls().unwrap().iter().any(|f| f.name == name));
    }
    assert_eq!(get_all(&mut c, "File"), bytes(1000, 7));
    assert_eq!(get_all(&mut c, "file"), bytes(1001, 8));
    // The longest name works for every command.
    c.rename(&max, &max2).unwrap();
    assert_eq!(get_all(&mut c, &max2), bytes(1004, 11));
    assert_eq!(code(c.rename("File", &max2)), ErrorCode::Exists);
    c.delete(&max2).unwrap();
    assert_eq!(code(c.get_begin(&max2, 0)), ErrorCode::NotFound);
    let too_long = "é".repeat(128);
    assert_eq!(code(c.put_begin(&too_long, 1)), ErrorCode::InvalidName);
}

#[test]
fn users_see_only_their_own_folder() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    put_all(&mut alice, "secret.txt", b"alice's");
    assert!(bob.ls().unwrap().is_empty());
    assert_eq!(code(bob.get_begin("secret.txt", 0)), ErrorCode::NotFound);
    assert_eq!(code(bob.delete("secret.txt")), ErrorCode::NotFound);
    assert_eq!(code(bob.rename("secret.txt", "x")), ErrorCode::NotFound);
    put_all(&mut bob, "secret.txt", b"bob's");
    assert_eq!(get_all(&mut alice, "secret.txt"), b"alice's");
    assert_eq!(get_all(&mut bob, "secret.txt"), b"bob's");
    // Logging in again on the same connection switches folders.
    bob.login("alice", &pw()).unwrap();
    assert_eq!(get_all(&mut bob, "secret.txt"), b"alice's");
}

#[test]
fn unknown_fields_are_ignored() {
    let server = TestServer::start();
    server.user("alice");
    let mut raw = server.raw();
    let r = raw.call(json!({"cmd": "login", "user": "alice", "password": PASSWORD, "v": 2}));
    assert_eq!(r["user"], "alice");
    let r = raw.call(json!({"cmd": "put", "name": "f", "size": 2, "mode": "fast"}));
    assert_eq!(r, json!({"ok": true, "offset": 0}));
    raw.send_bytes(b"hi");
    let r = raw.call(json!({"md5": md5(b"hi"), "extra": [1, 2]}));
    assert_eq!(r["ok"], true, "{r}");
    let r = raw.call(json!({"cmd": "ls", "all": true}));
    assert_eq!(r["files"][0]["name"], "f");
    assert_eq!(
        raw.call(json!({"cmd": "whoami", "verbose": null}))["files"],
        1
    );
}

#[test]
fn quit_answers_then_closes() {
    let server = TestServer::start();
    server.user("alice");
    let mut anon = server.raw();
    assert_eq!(anon.call(json!({"cmd": "quit"})), json!({"ok": true}));
    assert!(closed(&mut anon));
    let mut raw = raw_login(&server, "alice");
    assert_eq!(raw.call(json!({"cmd": "quit"})), json!({"ok": true}));
    assert!(closed(&mut raw));
}

/// A server-side failure answers INTERNAL without paths or OS text, and the
/// connection stays usable.
#[test]
fn internal_errors_hide_their_detail() {
    if local_bytes_only("internal_errors_hide_their_detail") {
        return;
    }
    let server = TestServer::start();
    let mut raw = {
        server.user("alice");
        raw_login(&server, "alice")
    };
    // Where uploads are staged, made a file: the engine cannot stage.
    let staging = if on_db() {
        server.path("blobs")
    } else {
        server.path("users/alice/staging")
    };
    std::fs::remove_dir_all(&staging).unwrap();
    std::fs::write(&staging, b"not a folder").unwrap();
    let r = raw.call(json!({"cmd": "put", "name": "f", "size": 3}));
    assert_code(&r, "INTERNAL");
    let message = r["message"].as_str().unwrap();
    assert!(!message.contains('/'), "{message}");
    assert!(!message.to_lowercase().contains("os error"), "{message}");
    // Still open (a `get` does not touch the broken staging folder).
    assert_code(&raw.call(json!({"cmd": "get", "name": "f"})), "NOT_FOUND");
    std::fs::remove_file(&staging).unwrap();
    let r = raw.call(json!({"cmd": "put", "name": "f", "size": 3}));
    assert_eq!(r["offset"], 0, "{r}");
}

/// Replies are JSON objects with `ok` first: a client can check it without
/// parsing the rest.
#[test]
fn replies_put_ok_first() {
    let server = TestServer::start();
    server.user("alice");
    let mut raw = raw_login(&server, "alice");
    for h in [
        json!({"cmd": "whoami"}),
        json!({"cmd": "nope"}),
        json!({"cmd": "ls"}),
    ] {
        raw.send(&h);
        let mut len = [0u8; 4];
        raw.stream.read_exact(&mut len).unwrap();
        let text = raw.recv_body(u32::from_be_bytes(len) as usize);
        assert!(
            text.starts_with(b"{\"ok\":"),
            "{}",
            String::from_utf8_lossy(&text)
        );
        let v: Value = serde_json::from_slice(&text).unwrap();
        if v["ok"] == false {
            assert!(v["message"].is_string(), "{v}");
        }
    }
}
