//! Exit codes (issue 10, README "Exit codes"): one per kind of failure, so
//! that a script can tell them apart.

use std::io::Write;
use std::net::TcpListener;
use std::thread;

use netdisk::protocol::{encode_frame, read_header, MAX_REQUEST_HEADER};
use serde_json::{json, Value};

use crate::cli::{netdisk_at, setup};

/// A one-connection server that logs anyone in and answers every other
/// command with `reply`, followed by `body`.
fn fake(reply: Value, body: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut r = s.try_clone().unwrap();
        while let Ok(Some(h)) = read_header(&mut r, MAX_REQUEST_HEADER) {
            let frame = match h["cmd"].as_str() {
                Some("login") => encode_frame(&json!({"ok": true, "user": "alice"})),
                Some("quit") => return,
                _ => {
                    let mut f = encode_frame(&reply);
                    f.extend_from_slice(body);
                    f
                }
            };
            if s.write_all(&frame).is_err() {
                return;
            }
        }
    });
    addr
}

/// (kind, server address, an environment variable, arguments, exit code)
type Case<'a> = (
    &'a str,
    &'a str,
    Option<(&'a str, &'a str)>,
    &'a [&'a str],
    i32,
);

#[test]
fn r10_each_kind_of_failure_has_its_exit_code() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let damaged = fake(
        json!({"ok": true, "name": "f", "size": 5, "offset": 0,
               "md5": "00000000000000000000000000000000"}),
        b"hello",
    );
    let broken = fake(
        json!({"ok": false, "error": "INTERNAL", "message": "disk on fire"}),
        b"",
    );
    let ours = server.addr.as_str();
    let wrong = Some(("NETDISK_PASSWORD", "wrong password!"));
    let cases: [Case; 8] = [
        ("success", ours, None, &["ls"], 0),
        ("local failure", ours, None, &["put", "missing.bin"], 1),
        ("usage", ours, None, &["get"], 2),
        ("authentication", ours, wrong, &["ls"], 3),
        ("not found", ours, None, &["get", "missing.bin"], 4),
        ("checksum", &damaged, None, &["get", "f"], 5),
        ("network", &dead, None, &["ls"], 6),
        ("server", &broken, None, &["ls"], 7),
    ];
    for (kind, addr, env, args, code) in cases {
        let mut cmd = netdisk_at(addr, d);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{kind}: {out:?}");
        if code != 0 {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.starts_with("error: "), "{kind}: {err}");
        }
    }
    assert!(!d.join("f").exists(), "a damaged download is not saved");
}
