//! Uploads in one go (`put` with `md5`, PROTOCOL.md "Small uploads in one
//! go") sent back to back on one connection, raw: every outcome is one
//! reply, in order, and the requests after it are still understood.

use serde_json::{json, Value};

use crate::protocol::{get_all, put_all, raw_login};
use crate::support::*;

/// The largest body a `put` with `md5` may carry.
const ONE_GO_MAX: usize = 4 * 1024 * 1024;

/// A request frame, as bytes.
fn frame(header: &Value) -> Vec<u8> {
    let b = serde_json::to_vec(header).unwrap();
    let mut v = (b.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&b);
    v
}

/// A `put` in one go of `data` as `name` claiming `md5`, body included.
fn one_go(name: &str, data: &[u8], md5: &str) -> Vec<u8> {
    let mut v = frame(&json!({"cmd": "put", "name": name, "size": data.len(), "md5": md5}));
    v.extend_from_slice(data);
    v
}

fn ping(message: &str) -> Vec<u8> {
    frame(&json!({"cmd": "ping", "message": message}))
}

#[track_caller]
fn assert_pong(reply: &Value, message: &str) {
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["message"], message, "{reply}");
}

#[track_caller]
fn assert_stored(reply: &Value, name: &str, data: &[u8]) {
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["name"], name, "{reply}");
    assert_eq!(reply["size"], data.len(), "{reply}");
    assert_eq!(reply["md5"], md5(data), "{reply}");
}

#[test]
fn every_outcome_is_one_reply_in_order_and_the_stream_stays_in_step() {
    let server = TestServer::with_args(&["--quota", "5000000"]);
    let mut owner = server.user("alice");
    put_all(&mut owner, "old.txt", b"old content");
    // Another connection is uploading "busy.bin": this one gets LOCKED.
    let mut holder = server.login("alice");
    assert_eq!(holder.put_begin("busy.bin", 6).unwrap(), 0);
    holder.write_body(b"abc").unwrap();

    let a = bytes(5000, 1);
    let b = bytes(ONE_GO_MAX, 2);
    // a, b, old.txt and the 6 bytes in flight leave less than this.
    let big = bytes(900_000, 3);
    let empty: &[u8] = b"";
    let mut burst = Vec::new();
    burst.extend(one_go("a.bin", &a, &md5(&a)));
    // 4 MiB exactly still goes in one go.
    burst.extend(one_go("b.bin", &b, &md5(&b)));
    burst.extend(one_go("old.txt", b"new content", &md5(b"something else")));
    burst.extend(ping("after a mismatch"));
    burst.extend(one_go(".hidden", b"data", &md5(b"data")));
    burst.extend(ping("after an invalid name"));
    burst.extend(one_go("busy.bin", b"xyz", &md5(b"xyz")));
    burst.extend(ping("after LOCKED"));
    burst.extend(one_go("big.bin", &big, &md5(&big)));
    burst.extend(ping("after the quota"));
    // Over 4 MiB and `"md5": null` are refused at once: no body follows.
    burst.extend(frame(&json!({
        "cmd": "put", "name": "huge.bin", "size": ONE_GO_MAX + 1, "md5": md5(b"")
    })));
    burst.extend(ping("after over 4 MiB"));
    burst.extend(frame(
        &json!({"cmd": "put", "name": "n.bin", "size": 3, "md5": null}),
    ));
    burst.extend(ping("after a null md5"));
    burst.extend(frame(
        &json!({"cmd": "put", "name": "u.bin", "size": 3, "md5": "ABC"}),
    ));
    burst.extend(ping("after an ill-typed md5"));
    burst.extend(one_go("empty", empty, &md5(empty)));
    burst.extend(frame(&json!({"cmd": "ls"})));

    let mut raw = raw_login(&server, "alice");
    // A writer thread: the burst is larger than the socket buffers, and
    // the replies must be read while it goes.
    let mut writer = raw.stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&burst).unwrap();
    });
    assert_stored(&raw.recv(), "a.bin", &a);
    assert_stored(&raw.recv(), "b.bin", &b);
    assert_code(&raw.recv(), "CHECKSUM_MISMATCH");
    assert_pong(&raw.recv(), "after a mismatch");
    assert_code(&raw.recv(), "INVALID_NAME");
    assert_pong(&raw.recv(), "after an invalid name");
    assert_code(&raw.recv(), "LOCKED");
    assert_pong(&raw.recv(), "after LOCKED");
    assert_code(&raw.recv(), "QUOTA_EXCEEDED");
    assert_pong(&raw.recv(), "after the quota");
    assert_code(&raw.recv(), "BAD_REQUEST");
    assert_pong(&raw.recv(), "after over 4 MiB");
    assert_code(&raw.recv(), "BAD_REQUEST");
    assert_pong(&raw.recv(), "after a null md5");
    assert_code(&raw.recv(), "BAD_REQUEST");
    assert_pong(&raw.recv(), "after an ill-typed md5");
    assert_stored(&raw.recv(), "empty", empty);
    let ls = raw.recv();
    sending.join().unwrap();
    let names: Vec<&str> = ls["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.bin", "b.bin", "empty", "old.txt"], "{ls}");

    // The mismatch left the old file; the stored ones hold their bytes.
    assert_eq!(get_all(&mut owner, "old.txt"), b"old content");
    assert_eq!(get_all(&mut owner, "a.bin"), a);
    assert_eq!(get_all(&mut owner, "b.bin"), b);
    // LOCKED left the other connection's upload alone.
    holder.write_body(b"def").unwrap();
    assert_eq!(holder.put_end(&md5(b"abcdef")).unwrap().size, 6);
}

#[test]
fn requests_answered_at_once_expect_no_body() {
    let server = TestServer::start();
    server.user("bob");
    // Anonymous: NOT_LOGGED_IN at once, and the "body" is the next frame.
    let mut raw = server.raw();
    let body = ping("I was the body");
    let mut burst = frame(&json!({
        "cmd": "put", "name": "x", "size": body.len(), "md5": md5(&body)
    }));
    burst.extend(&body);
    raw.send_bytes(&burst);
    assert_code(&raw.recv(), "NOT_LOGGED_IN");
    assert_pong(&raw.recv(), "I was the body");

    // Over 4 MiB: the same.
    let mut raw = raw_login(&server, "bob");
    let mut burst = frame(&json!({
        "cmd": "put", "name": "x", "size": ONE_GO_MAX + 1, "md5": md5(b"")
    }));
    burst.extend(ping("also the next frame"));
    raw.send_bytes(&burst);
    assert_code(&raw.recv(), "BAD_REQUEST");
    assert_pong(&raw.recv(), "also the next frame");
    // A missing size with md5 is a field error too.
    raw.send_bytes(&frame(&json!({"cmd": "put", "name": "x", "md5": md5(b"")})));
    assert_code(&raw.recv(), "BAD_REQUEST");
    assert_pong(&raw.call(json!({"cmd": "ping", "message": "open"})), "open");
}

/// Leaves the first 4 of 10 bytes of `name` staged by an upload whose
/// connection dropped, and waits until the server has logged it.
fn stage_interrupted(server: &TestServer, user: &str, name: &str) {
    {
        let mut c = server.login(user);
        assert_eq!(c.put_begin(name, 10).unwrap(), 0);
        c.write_body(b"0123").unwrap();
    }
    server.wait_for_log(&format!("\"put\" {name:?} 4 "));
}

fn staged(server: &TestServer, user: &str) -> u64 {
    server.login(user).whoami().unwrap().staged
}

#[test]
fn staged_data_of_the_name_is_dropped_whatever_the_answer() {
    let server = TestServer::start();
    server.user("carol");
    stage_interrupted(&server, "carol", "f");
    assert_eq!(staged(&server, "carol"), 4);
    let mut raw = raw_login(&server, "carol");
    raw.send_bytes(&one_go("f", b"xy", &md5(b"not xy")));
    assert_code(&raw.recv(), "CHECKSUM_MISMATCH");
    assert_eq!(staged(&server, "carol"), 0, "a mismatch drops it");

    stage_interrupted(&server, "carol", "g");
    raw.send_bytes(&one_go("g", b"xy", &md5(b"xy")));
    assert_stored(&raw.recv(), "g", b"xy");
    assert_eq!(staged(&server, "carol"), 0, "a success replaces it");
    // A classic `put` of the same name and size now starts from 0.
    let mut c = server.login("carol");
    assert_eq!(c.put_begin("g", 10).unwrap(), 0);
}

#[test]
fn a_pipelined_get_after_a_put_sees_the_file() {
    let server = TestServer::start();
    server.user("dave");
    let data = bytes(70_000, 9);
    let mut raw = raw_login(&server, "dave");
    let mut burst = one_go("d.bin", &data, &md5(&data));
    burst.extend(frame(&json!({"cmd": "get", "name": "d.bin"})));
    burst.extend(frame(&json!({"cmd": "get", "name": "missing"})));
    burst.extend(frame(
        &json!({"cmd": "get", "name": "d.bin", "offset": 69_999}),
    ));
    raw.send_bytes(&burst);
    assert_stored(&raw.recv(), "d.bin", &data);
    let got = raw.recv();
    assert_eq!(got["size"], data.len(), "{got}");
    assert_eq!(raw.recv_body(data.len()), data);
    assert_code(&raw.recv(), "NOT_FOUND");
    let tail = raw.recv();
    assert_eq!(tail["offset"], 69_999, "{tail}");
    assert_eq!(raw.recv_body(1), &data[69_999..]);
    let mut c = server.login("dave");
    assert_eq!(get_all(&mut c, "d.bin"), data);
}

#[test]
fn a_burst_within_tight_limits_is_answered_as_one_by_one_would_be() {
    // Two unfinished uploads at most: uploads waiting to be committed
    // together hold their names, and must not make the third refused.
    let server = TestServer::with_args(&["--max-staged", "2"]);
    server.user("erin");
    let files: Vec<Vec<u8>> = (0..6).map(|i| bytes(3000 + i, i as u64)).collect();
    let mut burst = Vec::new();
    for (i, f) in files.iter().enumerate() {
        burst.extend(one_go(&format!("e{i}"), f, &md5(f)));
    }
    // The same name twice in one burst: the later one wins.
    burst.extend(one_go("e0", b"again", &md5(b"again")));
    burst.extend(frame(&json!({"cmd": "whoami"})));
    let mut raw = raw_login(&server, "erin");
    raw.send_bytes(&burst);
    for (i, f) in files.iter().enumerate() {
        assert_stored(&raw.recv(), &format!("e{i}"), f);
    }
    assert_stored(&raw.recv(), "e0", b"again");
    let who = raw.recv();
    assert_eq!(who["files"], 6, "{who}");
    assert_eq!(who["staged"], 0, "{who}");
    let mut c = server.login("erin");
    assert_eq!(get_all(&mut c, "e0"), b"again");
    assert_eq!(get_all(&mut c, "e5"), files[5]);
}

/// The command-line client: small files pipelined, large ones resumable,
/// mixed in one invocation; per-file errors; a broken or interrupted batch.
mod cli {
    use std::fs;
    use std::io::{self, Read};
    use std::net::{TcpListener, TcpStream};
    use std::path::Path;
    use std::thread;

    use crate::cli::{failure, netdisk, netdisk_at, success, USER};
    use crate::support::*;

    /// Writes `count` small files `f0000.bin`, ... into `dir`; returns
    /// their names.
    fn small_files(dir: &Path, count: usize, len: usize) -> Vec<String> {
        (0..count)
            .map(|i| {
                let name = format!("f{i:04}.bin");
                write_file(dir, &name, &bytes(len + i % 7, i as u64));
                name
            })
            .collect()
    }

    /// The server stored `name` as the local file `b` holds it.
    fn stored_same(server: &TestServer, name: &str, b: &Path) {
        assert_eq!(
            server
                .stored(USER, name)
                .unwrap_or_else(|| panic!("{name} is stored")),
            fs::read(b).unwrap(),
            "{name}"
        );
    }

    fn same(a: &Path, b: &Path) {
        assert_eq!(
            fs::read(a).unwrap(),
            fs::read(b).unwrap(),
            "{}",
            a.display()
        );
    }

    #[test]
    fn a_batch_of_1000_files_with_one_failing_goes_on_and_says_so() {
        let (server, dir) = crate::cli::setup(&[]);
        let d = dir.path();
        let names = small_files(d, 1000, 4096);
        // Another connection is uploading f0500.bin: that one is LOCKED.
        let mut holder = server.login(USER);
        assert_eq!(holder.put_begin("f0500.bin", 10).unwrap(), 0);
        let err = failure(netdisk(&server, d).arg("put").args(&names), 1);
        assert!(err.contains("cannot upload f0500.bin"), "{err}");
        assert!(err.contains("1 of 1000 uploads failed"), "{err}");
        for name in &names {
            if name == "f0500.bin" {
                assert!(!server.is_stored(USER, name));
            } else {
                stored_same(&server, name, &d.join(name));
            }
        }
        drop(holder);

        // Back down, with one more name the server does not have.
        let mut asked = names.clone();
        asked[10] = "missing.bin".into();
        let err = failure(
            netdisk(&server, d).args(["get", "-o", "down"]).args(&asked),
            4,
        );
        assert!(err.contains("cannot download missing.bin"), "{err}");
        assert!(err.contains("cannot download f0500.bin"), "{err}");
        assert!(err.contains("2 of 1000 downloads failed"), "{err}");
        let down = d.join("down");
        for name in asked
            .iter()
            .filter(|n| !n.starts_with('m') && *n != "f0500.bin")
        {
            same(&down.join(name), &d.join(name));
        }
        let left = fs::read_dir(&down).unwrap().count();
        assert_eq!(left, 998, "only the downloaded files, no part files");
    }

    #[test]
    fn small_and_large_files_mix_in_one_put_and_one_get() {
        let (server, dir) = crate::cli::setup(&[]);
        let d = dir.path();
        let mut names = small_files(d, 30, 10_000);
        for (i, len) in [5_000_000usize, 4 * 1024 * 1024 + 1]
            .into_iter()
            .enumerate()
        {
            let name = format!("large-{i}.bin");
            write_file(d, &name, &bytes(len, 100 + i as u64));
            names.insert(i * 10, name);
        }
        let out = success(netdisk(&server, d).args(["put", "-j", "2"]).args(&names));
        // One line per file, in the order given.
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), names.len(), "{out}");
        for (line, name) in lines.iter().zip(&names) {
            assert!(line.starts_with(&format!("uploaded {name} (")), "{line}");
        }
        for name in &names {
            stored_same(&server, name, &d.join(name));
        }
        let out = success(
            netdisk(&server, d)
                .args(["get", "-j", "2", "-o", "down"])
                .args(&names),
        );
        assert_eq!(out.lines().count(), names.len(), "{out}");
        for name in &names {
            same(&d.join("down").join(name), &d.join(name));
        }
        assert_eq!(fs::read_dir(d.join("down")).unwrap().count(), names.len());
    }

    /// A proxy to `upstream` that cuts its first connection after `limit`
    /// bytes from the client; later connections pass whole, or are
    /// refused if not `again`.
    fn cutting_proxy(upstream: &str, limit: u64, again: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        thread::spawn(move || {
            let mut first = true;
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(&upstream).unwrap();
                let budget = if first { limit } else { u64::MAX };
                first = false;
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_in, mut c_out) = (server, client);
                thread::spawn(move || {
                    let _ = io::copy(&mut (&mut c_in).take(budget), &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Both);
                    let _ = c_in.shutdown(std::net::Shutdown::Both);
                });
                thread::spawn(move || {
                    let _ = io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
                if !again {
                    return;
                }
            }
        });
        addr
    }

    #[test]
    fn a_batch_whose_connection_breaks_goes_on_over_a_new_one() {
        let (server, dir) = crate::cli::setup(&[]);
        let d = dir.path();
        let names = small_files(d, 300, 10_000);
        let proxy = cutting_proxy(&server.addr, 1_500_000, true);
        let out = netdisk_at(&proxy, d)
            .arg("put")
            .args(&names)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("trying the rest again"), "{stderr}");
        for name in &names {
            stored_same(&server, name, &d.join(name));
        }
    }

    #[test]
    fn an_interrupted_batch_is_resumed_by_the_same_put() {
        let (server, dir) = crate::cli::setup(&[]);
        let d = dir.path();
        let big = bytes(6_000_000, 7);
        write_file(d, "big.bin", &big);
        let mut names = vec!["big.bin".to_string()];
        names.extend(small_files(d, 100, 10_000));
        // Large files go first: the cut falls inside big.bin's body, and
        // no second connection gets through.
        let proxy = cutting_proxy(&server.addr, 3_000_000, false);
        let out = netdisk_at(&proxy, d)
            .arg("put")
            .args(&names)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("101 of 101 uploads failed"), "{stderr}");
        // The server keeps what arrived once it has seen the cut.
        server.wait_for_log("\"put\" \"big.bin\"");

        let out = success(netdisk(&server, d).arg("put").args(&names));
        assert!(
            out.contains("uploaded big.bin (5.7 MiB, resumed at "),
            "{out}"
        );
        assert_eq!(out.lines().count(), names.len(), "{out}");
        for name in &names {
            stored_same(&server, name, &d.join(name));
        }
    }
}
