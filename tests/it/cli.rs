//! The command-line client end to end: the real binary against a real
//! server (or a tiny fake one for hostile replies). Help, the `ls` table,
//! `whoami`, error messages, the shell, and `BUSY`. Transfers are in
//! `cli_transfer.rs`.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use netdisk::protocol::{encode_frame, read_header, MAX_REQUEST_HEADER};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::*;

/// The user every CLI test acts as.
pub const USER: &str = "alice";

/// The committed fixtures, in the server's listing order (UTF-8 bytes).
pub const FIXTURES: [&str; 5] = ["empty", "my file.txt", "small.bin", "报告.txt", "😀.bin"];

/// `testdata/`.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// The client binary aimed at `addr`, run in `dir` as [`USER`], with a
/// stdin that is not a terminal (and at once at its end).
pub fn netdisk_at(addr: &str, dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(bin());
    cmd.current_dir(dir)
        .env("NETDISK_SERVER", addr)
        .env("NETDISK_USER", USER)
        .env("NETDISK_PASSWORD", PASSWORD)
        .env("COLUMNS", "100")
        // No profile or history of the person running the tests.
        .env("XDG_CONFIG_HOME", dir.join(".xdg-config"))
        .env("XDG_STATE_HOME", dir.join(".xdg-state"))
        .write_stdin("")
        .timeout(Duration::from_secs(120));
    cmd
}

/// [`netdisk_at`] the test server.
pub fn netdisk(server: &TestServer, dir: &Path) -> assert_cmd::Command {
    netdisk_at(&server.addr, dir)
}

/// A server with [`USER`] registered through the CLI, and a work folder
/// holding copies of the fixtures.
pub fn setup(args: &[&str]) -> (TestServer, TempDir) {
    let server = TestServer::with_args(args);
    let dir = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        fs::copy(testdata().join(name), dir.path().join(name)).unwrap();
    }
    netdisk(&server, dir.path())
        .arg("register")
        .assert()
        .success()
        .stdout("registered alice\n");
    (server, dir)
}

/// Runs a command that must fail with exit code `code` (README, "Exit
/// codes"); returns its stderr.
#[track_caller]
pub fn failure(cmd: &mut assert_cmd::Command, code: i32) -> String {
    let (got, err) = failed(cmd);
    assert_eq!(got, code, "{err}");
    err
}

/// Runs a command that must fail; returns its exit code and stderr.
#[track_caller]
pub fn failed(cmd: &mut assert_cmd::Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(code > 0, "{out:?}");
    (code, String::from_utf8(out.stderr).unwrap())
}

/// Stdout of a command that must succeed.
#[track_caller]
pub fn success(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// An address nobody listens on.
fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

fn help(args: &[&str]) -> String {
    let out = assert_cmd::Command::new(bin())
        .args(args)
        .env_remove("NETDISK_SERVER")
        .env_remove("NETDISK_USER")
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_output() {
    insta::assert_snapshot!("help_top", help(&["--help"]));
    for sub in ["put", "get", "ls", "shell", "register"] {
        insta::assert_snapshot!(format!("help_{sub}"), help(&[sub, "--help"]));
    }
}

#[test]
fn every_subcommand_has_an_example() {
    for sub in [
        "register", "ls", "put", "get", "rm", "mv", "discard", "whoami", "shell", "user",
    ] {
        let text = help(&[sub, "--help"]);
        assert!(text.contains("Example"), "{sub}: {text}");
    }
}

#[test]
fn ls_table_json_and_whoami() {
    let (server, dir) = setup(&[]);
    let mut put = netdisk(&server, dir.path());
    success(put.args(["put", "-j", "2"]).args(FIXTURES));
    let json = success(netdisk(&server, dir.path()).args(["ls", "--json"]));
    insta::with_settings!({filters => vec![(r#""mtime": \d+"#, r#""mtime": [MTIME]"#)]}, {
        insta::assert_snapshot!("ls_json", json);
    });
    // Fixed times for the table.
    for (i, name) in FIXTURES.iter().enumerate() {
        server.set_stored_mtime(USER, name, 1_700_000_000 + 3_600 * i as u64);
    }
    let table = success(netdisk(&server, dir.path()).arg("ls"));
    insta::assert_snapshot!("ls_table", table);
    let me = success(netdisk(&server, dir.path()).arg("whoami"));
    insta::assert_snapshot!("whoami", me);
}

#[test]
fn ls_of_an_empty_folder() {
    let (server, dir) = setup(&[]);
    let out = success(netdisk(&server, dir.path()).arg("ls"));
    assert_eq!(out, "no files\n");
}

/// (what, server address, an environment change, arguments)
type Case<'a> = (&'a str, &'a str, Option<EnvChange<'a>>, &'a [&'a str]);
/// A variable to set, or (`None`) to remove.
type EnvChange<'a> = (&'a str, Option<&'a str>);

#[test]
fn error_messages() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "small.bin"]));
    let dead = dead_addr();
    let pw = Some("not the password");
    let cases: [Case; 11] = [
        (
            "wrong password",
            &server.addr,
            Some(("NETDISK_PASSWORD", pw)),
            &["ls"],
        ),
        (
            "missing local file",
            &server.addr,
            None,
            &["put", "nope.bin"],
        ),
        (
            "missing remote file",
            &server.addr,
            None,
            &["get", "nope.bin"],
        ),
        ("server down", &dead, None, &["ls"]),
        ("target exists", &server.addr, None, &["get", "small.bin"]),
        ("escaping name", &server.addr, None, &["get", "../escape"]),
        ("rm missing", &server.addr, None, &["rm", "nope.bin"]),
        (
            "mv onto a file",
            &server.addr,
            None,
            &["mv", "small.bin", "small.bin"],
        ),
        (
            "no password",
            &server.addr,
            Some(("NETDISK_PASSWORD", None)),
            &["whoami"],
        ),
        (
            "no user",
            &server.addr,
            Some(("NETDISK_USER", None)),
            &["whoami"],
        ),
        ("user exists", &server.addr, None, &["register"]),
    ];
    let mut all = String::new();
    for (label, addr, env, args) in cases {
        let mut cmd = netdisk_at(addr, d);
        match env {
            Some((k, Some(v))) => cmd.env(k, v),
            Some((k, None)) => cmd.env_remove(k),
            None => &mut cmd,
        };
        let (code, err) = failed(cmd.args(args));
        assert_eq!(err.lines().count(), 1, "{label}: one line: {err}");
        all.push_str(&format!("{label} (exit {code}): {err}"));
    }
    insta::with_settings!({filters => vec![(r"127\.0\.0\.1:\d+", "[ADDR]")]}, {
        insta::assert_snapshot!("errors", all);
    });
    assert_eq!(
        fs::read(d.join("small.bin")).unwrap(),
        fs::read(testdata().join("small.bin")).unwrap()
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["put"][..],
        &["get", "a", "--resume", "--overwrite"],
        &["mv", "a"],
        &["put", "a", "-j", "0"],
    ] {
        let out = netdisk_at(&dead_addr(), dir.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    }
}

#[test]
fn shell_driven_through_stdin() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    fs::copy(testdata().join("small.bin"), dir.path().join("small.bin")).unwrap();
    fs::copy(testdata().join("报告.txt"), dir.path().join("报告.txt")).unwrap();
    let script = "\
        register alice\n\
        login alice\n\
        put small.bin \"报告.txt\"\n\
        # a comment\n\
        frobnicate\n\
        mv small.bin\n\
        get small.bin -o back.bin\n\
        mv small.bin moved.bin\n\
        rm 报告.txt\n\
        whoami\n\
        quit\n\
        rm moved.bin\n";
    let out = netdisk(&server, dir.path())
        .env_remove("NETDISK_USER")
        .arg("shell")
        .write_stdin(script)
        .output()
        .unwrap();
    // Two bad lines: the session went on, and a scripted session says so.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    insta::assert_snapshot!("shell_stdout", stdout);
    insta::assert_snapshot!("shell_stderr", stderr);
    assert_eq!(
        fs::read(dir.path().join("back.bin")).unwrap(),
        fs::read(testdata().join("small.bin")).unwrap()
    );
    // `quit` ended the session: the last `rm` never ran.
    assert!(server.is_stored(USER, "moved.bin"));
}

#[test]
fn busy_server_is_retried_then_reported() {
    let server = TestServer::with_args(&["--workers", "1", "--queue", "1"]);
    // One upload holds the only worker (its first reply proves it), the
    // next request fills the queue: every further request is answered BUSY.
    let _holder = hold_worker(&server, "holder");
    let mut queued = server.raw();
    queued.send(&serde_json::json!({"cmd": "whoami"}));
    let dir = tempfile::tempdir().unwrap();
    let err = failure(netdisk(&server, dir.path()).arg("ls"), 6);
    insta::with_settings!({filters => vec![(r"127\.0\.0\.1:\d+", "[ADDR]")]}, {
        insta::assert_snapshot!("busy", err);
    });
}

/// A one-connection fake server: answers `login`, `ls` and `get` with
/// whatever `ls_files` and `get_reply` say.
fn fake_server(ls_files: Value, get_reply: Value, body: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut r = s.try_clone().unwrap();
        while let Ok(Some(h)) = read_header(&mut r, MAX_REQUEST_HEADER) {
            let reply = match h["cmd"].as_str() {
                Some("login") => json!({"ok": true, "user": USER}),
                Some("ls") => json!({"ok": true, "files": ls_files}),
                Some("get") => get_reply.clone(),
                _ => json!({"ok": true}),
            };
            let mut frame = encode_frame(&reply);
            if h["cmd"] == "get" {
                frame.extend_from_slice(body);
            }
            if s.write_all(&frame).is_err() {
                break;
            }
        }
    });
    addr
}

#[test]
fn names_from_the_server_are_cleaned_before_printing() {
    let files = json!([
        {"name": "\u{1b}]0;owned\u{7}title", "size": 1, "mtime": 0, "md5": null},
        {"name": "evil\u{202e}txt.exe", "size": 2, "mtime": 0, "md5": null},
        {"name": "\u{1b}[2Jclear", "size": 3, "mtime": 0, "md5": null},
        {"name": "csi\u{9b}2Jdel\u{7f}c1\u{85}", "size": 4, "mtime": 0, "md5": null},
    ]);
    let addr = fake_server(files.clone(), json!({}), b"");
    let dir = tempfile::tempdir().unwrap();
    let out = success(netdisk_at(&addr, dir.path()).arg("ls"));
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{202e}'));
    assert!(!out.contains(['\u{9b}', '\u{7f}', '\u{85}']));
    insta::assert_snapshot!("ls_hostile_names", out);

    // JSON escapes every control character (serde_json alone leaves DEL
    // and C1 raw), and still parses back to the same names.
    let addr = fake_server(files.clone(), json!({}), b"");
    let out = success(netdisk_at(&addr, dir.path()).args(["ls", "--json"]));
    let raw: Vec<char> = out.chars().filter(|c| c.is_control()).collect();
    assert!(
        raw.iter().all(|&c| c == '\n'),
        "raw controls {raw:?} in {out}"
    );
    assert!(out.contains(r"csi\u009b2Jdel\u007fc1\u0085"), "{out}");
    let back: Value = serde_json::from_str(&out).unwrap();
    let names = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].clone())
            .collect()
    };
    assert_eq!(names(&back["files"]), names(&files));
}

#[test]
fn a_reply_naming_another_file_is_refused() {
    let reply = json!({"ok": true, "name": "../escape.txt", "size": 5, "offset": 0,
                       "md5": "5d41402abc4b2a76b9719d911017c592"});
    let addr = fake_server(json!([]), reply, b"hello");
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    fs::create_dir(&work).unwrap();
    // A reply that breaks the protocol is the server's failure.
    let err = failure(netdisk_at(&addr, &work).args(["get", "report.txt"]), 7);
    assert!(err.contains("broke the protocol"), "{err}");
    assert!(!root.path().join("escape.txt").exists());
    assert_eq!(fs::read_dir(&work).unwrap().count(), 0, "nothing written");
}

#[test]
fn the_shell_reconnects_after_the_server_timed_it_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        // The first connection gets TIMEOUT right after its login reply,
        // as a server does to a connection left idle, and is closed.
        for (i, conn) in listener.incoming().take(2).enumerate() {
            let mut s = conn.unwrap();
            let mut r = s.try_clone().unwrap();
            while let Ok(Some(h)) = read_header(&mut r, MAX_REQUEST_HEADER) {
                let mut frame = match h["cmd"].as_str() {
                    Some("login") => encode_frame(&json!({"ok": true, "user": USER})),
                    Some("ls") => encode_frame(&json!({"ok": true, "files": []})),
                    _ => encode_frame(&json!({"ok": true})),
                };
                if i == 0 {
                    let timeout = json!({"ok": false, "error": "TIMEOUT", "message": "idle"});
                    frame.extend(encode_frame(&timeout));
                    let _ = s.write_all(&frame);
                    break;
                }
                if s.write_all(&frame).is_err() {
                    break;
                }
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = success(
        netdisk_at(&addr, dir.path())
            .arg("shell")
            .write_stdin("ls\nquit\n"),
    );
    assert_eq!(out, "logged in as alice\nno files\n");
}
