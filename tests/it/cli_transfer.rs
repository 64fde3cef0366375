//! `put` and `get` through the command-line client: round trips, parallel
//! transfers, resumed uploads and downloads (of the target with `--resume`,
//! and of the part file an interrupted `get` leaves), MD5 recovery, and a
//! local file in the way.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use netdisk::hashcopy::CHUNK;
use netdisk::protocol::{encode_frame, read_header, MAX_REQUEST_HEADER};
use serde_json::json;
use tempfile::TempDir;

use crate::cli::{failure, netdisk, netdisk_at, setup, success, testdata, FIXTURES, USER};
use crate::support::*;

/// The files in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn register_put_ls_get_round_trip() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let out = success(netdisk(&server, d).args(["put", "-j", "1"]).args(FIXTURES));
    assert_eq!(out.lines().count(), FIXTURES.len(), "{out}");
    let ls = success(netdisk(&server, d).arg("ls"));
    for name in FIXTURES {
        assert!(ls.contains(name), "{name} missing from\n{ls}");
    }
    let back = d.join("back");
    success(
        netdisk(&server, d)
            .args(["get", "-o", "back"])
            .args(FIXTURES),
    );
    for name in FIXTURES {
        assert_eq!(
            fs::read(back.join(name)).unwrap(),
            fs::read(testdata().join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        entries(&back).len(),
        FIXTURES.len(),
        "no partial files left"
    );
}

#[test]
fn put_as_another_name_and_quiet() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let out = success(netdisk(&server, d).args(["put", "small.bin", "--as", "copy.bin", "-q"]));
    assert_eq!(out, "", "-q after the subcommand silences confirmations");
    let saved = server.stored(USER, "copy.bin").unwrap();
    assert_eq!(saved, fs::read(testdata().join("small.bin")).unwrap());
    let out = success(netdisk(&server, d).args(["-q", "get", "copy.bin"]));
    assert_eq!(out, "");
    assert_eq!(fs::read(d.join("copy.bin")).unwrap(), saved);
}

#[test]
fn several_files_go_up_and_down_in_parallel() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let names: Vec<String> = (0..8).map(|i| format!("part-{i}.bin")).collect();
    for (i, name) in names.iter().enumerate() {
        write_file(d, name, &bytes(300_000 + i * 1000, i as u64));
    }
    let out = success(netdisk(&server, d).args(["put", "-j", "4"]).args(&names));
    assert_eq!(out.lines().count(), names.len(), "{out}");
    for name in &names {
        let saved = server.stored(USER, name).unwrap();
        assert_eq!(saved, fs::read(d.join(name)).unwrap(), "{name}");
    }
    success(
        netdisk(&server, d)
            .args(["get", "-j", "3", "-o", "down"])
            .args(&names),
    );
    for name in &names {
        assert_eq!(
            fs::read(d.join("down").join(name)).unwrap(),
            fs::read(d.join(name)).unwrap()
        );
    }
}

#[test]
fn get_resume_after_truncation() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let data = bytes(2_000_000, 3);
    write_file(d, "big.bin", &data);
    success(netdisk(&server, d).args(["put", "big.bin"]));
    fs::create_dir(d.join("down")).unwrap();
    write_file(&d.join("down"), "big.bin", &data[..700_000]);
    let out = netdisk(&server, d)
        .args(["get", "big.bin", "-o", "down", "--resume"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("resumed at 683.6 KiB"), "{stdout}");
    assert_eq!(fs::read(d.join("down/big.bin")).unwrap(), data);
}

#[test]
fn resume_with_a_corrupted_prefix_downloads_again() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let data = bytes(1_000_000, 4);
    write_file(d, "big.bin", &data);
    success(netdisk(&server, d).args(["put", "big.bin"]));
    let mut local = data[..400_000].to_vec();
    local[1234] ^= 0xff;
    write_file(d, "down.bin", &local);
    let out = netdisk(&server, d)
        .args(["get", "big.bin", "-o", "down.bin", "--resume"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("MD5 mismatch after resuming"), "{stderr}");
    assert!(stderr.contains("again from the start"), "{stderr}");
    assert_eq!(fs::read(d.join("down.bin")).unwrap(), data);
}

#[test]
fn resume_of_a_longer_local_file_starts_over() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "small.bin", "--as", "s.bin"]));
    write_file(d, "s.bin", &bytes(10_000, 9));
    success(netdisk(&server, d).args(["get", "s.bin", "--resume"]));
    assert_eq!(
        fs::read(d.join("s.bin")).unwrap(),
        fs::read(testdata().join("small.bin")).unwrap()
    );
}

/// Leaves half of `staged` on the server as an interrupted upload of
/// `name` (`full_len` bytes): put, half the body, then the connection drops.
fn interrupt_upload(server: &TestServer, name: &str, full_len: usize, staged: &[u8]) {
    let mut c = server.login(USER);
    assert_eq!(c.put_begin(name, full_len as u64).unwrap(), 0);
    c.write_body(staged).unwrap();
}

// These servers have one worker: the next connection is served only after
// the interrupted one has ended, so the staged bytes are all there. The
// files are over 4 MiB: smaller ones go in one go, which never resumes.

#[test]
fn an_interrupted_upload_resumes() {
    let (server, dir) = setup(&["--workers", "1"]);
    let d = dir.path();
    let data = bytes(5_000_000, 5);
    write_file(d, "big.bin", &data);
    interrupt_upload(&server, "big.bin", data.len(), &data[..2_500_000]);
    let out = netdisk(&server, d)
        .args(["put", "big.bin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stdout, "uploaded big.bin (4.8 MiB, resumed at 2.4 MiB)\n");
    assert!(
        stderr.contains("resuming the upload at 2.4 MiB"),
        "{stderr}"
    );
    assert_eq!(server.stored(USER, "big.bin").unwrap(), data);
}

#[test]
fn a_resumed_upload_with_a_stale_prefix_starts_over_once() {
    let (server, dir) = setup(&["--workers", "1"]);
    let d = dir.path();
    let data = bytes(5_000_000, 6);
    write_file(d, "big.bin", &data);
    let other = bytes(2_500_000, 99);
    interrupt_upload(&server, "big.bin", data.len(), &other);
    let out = netdisk(&server, d)
        .args(["put", "big.bin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("does not match the local file"), "{stderr}");
    assert_eq!(stdout, "uploaded big.bin (4.8 MiB)\n");
    assert_eq!(server.stored(USER, "big.bin").unwrap(), data);
}

#[test]
fn an_existing_target_needs_a_flag_without_a_terminal() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "small.bin", "--as", "doc.txt"]));
    write_file(d, "doc.txt", b"local work, keep me");
    let before = entries(d);
    let err = failure(netdisk(&server, d).args(["get", "doc.txt"]), 1);
    assert!(
        err.contains("--resume") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(fs::read(d.join("doc.txt")).unwrap(), b"local work, keep me");
    assert_eq!(entries(d), before, "nothing else written");
    success(netdisk(&server, d).args(["get", "doc.txt", "--overwrite"]));
    assert_eq!(
        fs::read(d.join("doc.txt")).unwrap(),
        fs::read(testdata().join("small.bin")).unwrap()
    );
    assert_eq!(entries(d), before, "no partial file left");
}

#[test]
fn a_failed_download_leaves_nothing_behind() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "small.bin"]));
    let before = entries(d);
    failure(netdisk(&server, d).args(["get", "missing.bin"]), 4);
    assert_eq!(entries(d), before);
    let err = failure(
        netdisk(&server, d).args(["get", "small.bin", "missing.bin", "-o", "out"]),
        4,
    );
    assert!(
        err.contains("cannot download missing.bin: no such file or folder on the server"),
        "{err}"
    );
    assert!(err.ends_with("error: 1 of 2 downloads failed\n"), "{err}");
    assert_eq!(entries(&d.join("out")), ["small.bin"]);
}

/// Where a `get` into `target` keeps its bytes until their MD5 is checked:
/// `.netdisk-<MD5 of the file name>.part` beside it (`part_path` in
/// src/cli/download.rs).
fn part_file(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap().as_bytes();
    target
        .parent()
        .unwrap()
        .join(format!(".netdisk-{}.part", md5(name)))
}

/// A server with `big.bin` (`len` bytes of `seed`) uploaded, and an empty
/// `down/` folder in the work folder.
fn setup_big(len: usize, seed: u64) -> (TestServer, TempDir, Vec<u8>) {
    let (server, dir) = setup(&[]);
    let data = bytes(len, seed);
    write_file(dir.path(), "big.bin", &data);
    success(netdisk(&server, dir.path()).args(["put", "big.bin"]));
    fs::create_dir(dir.path().join("down")).unwrap();
    (server, dir, data)
}

/// Runs a `get` that must succeed; returns stdout and stderr.
#[track_caller]
fn get_ok(cmd: &mut assert_cmd::Command) -> (String, String) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn r3_an_interrupted_download_continues_without_a_flag() {
    let (server, dir, data) = setup_big(2_000_000, 11);
    let d = dir.path();
    let target = d.join("down/big.bin");
    fs::write(part_file(&target), &data[..700_000]).unwrap();
    let (stdout, stderr) = get_ok(netdisk(&server, d).args(["get", "big.bin", "-o", "down"]));
    assert_eq!(
        stdout,
        "downloaded big.bin (1.9 MiB, resumed at 683.6 KiB, MD5 checked)\n"
    );
    assert!(
        stderr.contains("big.bin: resuming the interrupted download at 683.6 KiB of 1.9 MiB"),
        "{stderr}"
    );
    assert_eq!(fs::read(&target).unwrap(), data);
    assert_eq!(
        entries(&d.join("down")),
        ["big.bin"],
        "the part file is gone"
    );
    let mode = fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "an ordinary file");

    // With --overwrite over an existing target, the part file is still
    // what is continued, and the target is replaced only at the end.
    fs::write(&target, b"old").unwrap();
    fs::write(part_file(&target), &data[..1_500_000]).unwrap();
    let (stdout, _) =
        get_ok(netdisk(&server, d).args(["get", "big.bin", "-o", "down", "--overwrite"]));
    assert!(stdout.contains("resumed at 1.4 MiB"), "{stdout}");
    assert_eq!(fs::read(&target).unwrap(), data);
    assert_eq!(entries(&d.join("down")), ["big.bin"]);
}

#[test]
fn a_part_file_with_wrong_bytes_is_downloaded_again() {
    let (server, dir, data) = setup_big(1_000_000, 12);
    let d = dir.path();
    let mut stale = data[..400_000].to_vec();
    stale[4321] ^= 0x55;
    fs::write(part_file(&d.join("big.bin")), &stale).unwrap();
    fs::remove_file(d.join("big.bin")).unwrap();
    let (stdout, stderr) = get_ok(netdisk(&server, d).args(["get", "big.bin"]));
    assert_eq!(stdout, "downloaded big.bin (976.6 KiB, MD5 checked)\n");
    assert!(stderr.contains("MD5 mismatch after resuming"), "{stderr}");
    assert!(stderr.contains("again from the start"), "{stderr}");
    assert_eq!(fs::read(d.join("big.bin")).unwrap(), data);
    assert!(!part_file(&d.join("big.bin")).exists());
}

#[test]
fn a_part_file_longer_than_the_servers_file_is_downloaded_again() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "small.bin", "--as", "s.bin"]));
    fs::write(part_file(&d.join("s.bin")), bytes(10_000, 9)).unwrap();
    let (stdout, stderr) = get_ok(netdisk(&server, d).args(["get", "s.bin"]));
    assert_eq!(stdout, "downloaded s.bin (2.9 KiB, MD5 checked)\n");
    assert!(
        stderr.contains("the interrupted download is longer than the server's"),
        "{stderr}"
    );
    assert_eq!(
        fs::read(d.join("s.bin")).unwrap(),
        fs::read(testdata().join("small.bin")).unwrap()
    );
    assert!(!part_file(&d.join("s.bin")).exists());
}

#[test]
fn a_part_file_another_client_is_writing_is_left_alone() {
    let (server, dir, data) = setup_big(500_000, 13);
    let d = dir.path();
    let target = d.join("down/big.bin");
    let part = part_file(&target);
    fs::write(&part, &data[..100_000]).unwrap();
    // Another netdisk holds the lock: here, the test itself.
    let other = fs::File::open(&part).unwrap();
    other.try_lock().unwrap();
    let err = failure(
        netdisk(&server, d).args(["get", "big.bin", "-o", "down"]),
        1,
    );
    assert!(err.contains("another netdisk is downloading"), "{err}");
    assert_eq!(fs::read(&part).unwrap(), &data[..100_000], "untouched");
    assert!(!target.exists());
    drop(other);
    let (stdout, _) = get_ok(netdisk(&server, d).args(["get", "big.bin", "-o", "down"]));
    assert!(stdout.contains("resumed at 97.7 KiB"), "{stdout}");
    assert_eq!(fs::read(&target).unwrap(), data);
}

#[test]
fn a_symlink_in_place_of_the_part_file_is_not_followed() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "small.bin", "--as", "s.bin"]));
    let victim = write_file(d, "victim", b"keep me");
    std::os::unix::fs::symlink(&victim, part_file(&d.join("s.bin"))).unwrap();
    let err = failure(netdisk(&server, d).args(["get", "s.bin"]), 1);
    assert!(err.contains("cannot download s.bin: cannot write"), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    assert!(!d.join("s.bin").exists());
}

/// A server that logs anyone in and answers every `get` with `data` from
/// the offset asked, under an MD5 that never matches.
fn lying_server(data: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let mut s = conn.unwrap();
            let mut r = s.try_clone().unwrap();
            while let Ok(Some(h)) = read_header(&mut r, MAX_REQUEST_HEADER) {
                let frame = match h["cmd"].as_str() {
                    Some("login") => encode_frame(&json!({"ok": true, "user": USER})),
                    Some("get") => {
                        let at = h["offset"].as_u64().unwrap_or(0) as usize;
                        let mut f = encode_frame(&json!({"ok": true, "name": h["name"],
                            "size": data.len(), "offset": at, "md5": "0".repeat(32)}));
                        f.extend_from_slice(&data[at..]);
                        f
                    }
                    _ => encode_frame(&json!({"ok": true})),
                };
                if s.write_all(&frame).is_err() {
                    break;
                }
            }
        }
    });
    addr
}

#[test]
fn a_second_md5_mismatch_is_an_error_that_removes_the_part_file() {
    let addr = lying_server(b"hello, world");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(part_file(&d.join("h.txt")), b"hello").unwrap();
    let out = netdisk_at(&addr, d)
        .args(["get", "h.txt"])
        .output()
        .unwrap();
    // The checksum failure's own exit code (README, "Exit codes").
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("MD5 mismatch after resuming"), "{stderr}");
    assert!(
        stderr.contains("error: cannot download h.txt: MD5 mismatch: the server says"),
        "{stderr}"
    );
    assert!(entries(d).is_empty(), "{:?}", entries(d));
}

/// A proxy to `upstream` for one connection: it passes on everything the
/// client sends, but only the first `limit` bytes the server sends, and
/// says on the channel when it has. Then it holds the connection open,
/// stalled, until the client goes away.
fn stalling_proxy(upstream: &str, limit: u64) -> (String, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(upstream).unwrap();
        let (mut from_client, mut to_server) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        let requests = thread::spawn(move || io::copy(&mut from_client, &mut to_server));
        let mut to_client = &client;
        let passed = io::copy(&mut (&server).take(limit), &mut to_client).unwrap();
        assert_eq!(passed, limit);
        let _ = tx.send(());
        // Ends when the client closes its side (it is killed).
        let _ = requests.join();
    });
    (addr, rx)
}

#[test]
fn r3_a_get_killed_midway_continues_where_it_stopped() {
    let (server, dir, data) = setup_big(3_000_000, 14);
    let d = dir.path();
    let target = d.join("down/big.bin");
    let part = part_file(&target);
    // The login reply and the get header take well under a chunk, so the
    // client receives three whole chunks of the body and writes them, and
    // then waits for a fourth that does not come.
    let (proxy, stalled) = stalling_proxy(&server.addr, 1 << 20);
    let expect = 3 * CHUNK as u64;
    let mut client = Command::new(bin())
        .current_dir(d)
        .env("NETDISK_SERVER", &proxy)
        .env("NETDISK_USER", USER)
        .env("NETDISK_PASSWORD", PASSWORD)
        .args(["get", "big.bin", "-o", "down"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    stalled
        .recv_timeout(Duration::from_secs(60))
        .expect("the proxy passed its bytes on");
    wait_for_size(&part, expect, || client.try_wait().unwrap().is_none());
    // Ctrl-C: the client has no handler, so SIGINT kills it on the spot.
    let kill = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -INT {}", client.id()))
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(!client.wait().unwrap().success());
    assert!(!target.exists(), "the target never holds half a file");
    assert_eq!(fs::read(&part).unwrap(), &data[..expect as usize]);

    let (stdout, stderr) = get_ok(netdisk(&server, d).args(["get", "big.bin", "-o", "down"]));
    assert_eq!(
        stdout,
        "downloaded big.bin (2.9 MiB, resumed at 768.0 KiB, MD5 checked)\n"
    );
    assert!(
        stderr.contains("resuming the interrupted download at 768.0 KiB"),
        "{stderr}"
    );
    assert_eq!(fs::read(&target).unwrap(), data);
    assert_eq!(entries(&d.join("down")), ["big.bin"]);
}
