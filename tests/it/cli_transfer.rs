//! `put` and `get` through the command-line client: round trips, parallel
//! transfers, resumed uploads and downloads, MD5 recovery, and a local
//! file in the way.

use std::fs;
use std::path::Path;

use crate::cli::{failure, netdisk, setup, success, testdata, FIXTURES, USER};
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
    let saved = fs::read(server.user_files(USER).join("copy.bin")).unwrap();
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
        let saved = fs::read(server.user_files(USER).join(name)).unwrap();
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
// the interrupted one has ended, so the staged bytes are all there.

#[test]
fn an_interrupted_upload_resumes() {
    let (server, dir) = setup(&["--workers", "1"]);
    let d = dir.path();
    let data = bytes(1_000_000, 5);
    write_file(d, "big.bin", &data);
    interrupt_upload(&server, "big.bin", data.len(), &data[..500_000]);
    let out = netdisk(&server, d)
        .args(["put", "big.bin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stdout,
        "uploaded big.bin (976.6 KiB, resumed at 488.3 KiB)\n"
    );
    assert!(
        stderr.contains("resuming the upload at 488.3 KiB"),
        "{stderr}"
    );
    assert_eq!(
        fs::read(server.user_files(USER).join("big.bin")).unwrap(),
        data
    );
}

#[test]
fn a_resumed_upload_with_a_stale_prefix_starts_over_once() {
    let (server, dir) = setup(&["--workers", "1"]);
    let d = dir.path();
    let data = bytes(1_000_000, 6);
    write_file(d, "big.bin", &data);
    let other = bytes(500_000, 99);
    interrupt_upload(&server, "big.bin", data.len(), &other);
    let out = netdisk(&server, d)
        .args(["put", "big.bin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("does not match the local file"), "{stderr}");
    assert_eq!(stdout, "uploaded big.bin (976.6 KiB)\n");
    assert_eq!(
        fs::read(server.user_files(USER).join("big.bin")).unwrap(),
        data
    );
}

#[test]
fn an_existing_target_needs_a_flag_without_a_terminal() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "small.bin", "--as", "doc.txt"]));
    write_file(d, "doc.txt", b"local work, keep me");
    let before = entries(d);
    let err = failure(netdisk(&server, d).args(["get", "doc.txt"]));
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
    failure(netdisk(&server, d).args(["get", "missing.bin"]));
    assert_eq!(entries(d), before);
    let err = failure(netdisk(&server, d).args(["get", "small.bin", "missing.bin", "-o", "out"]));
    assert!(
        err.contains("cannot download missing.bin: no such file on the server"),
        "{err}"
    );
    assert!(err.ends_with("error: 1 of 2 downloads failed\n"), "{err}");
    assert_eq!(entries(&d.join("out")), ["small.bin"]);
}
