//! WebDAV as real clients see it (issue 18): litmus, the WebDAV server
//! test suite, over plaintext from loopback; and rclone (`vendor =
//! owncloud`) over TLS with the server's certificate as its CA, copying,
//! checking by MD5, syncing a deletion and a rename, and copying again
//! after an interrupted upload of a 300 MiB file.
//!
//! Needs Debian's `litmus` and `rclone` (`.ci/run` installs both).
//! Without them the tests print a `NOTICE` and skip, except under
//! `CI=true`, where they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use md5::{Digest, Md5};

use crate::support::{bytes, have_tool, md5, on_db, TestServer, PASSWORD};

const USER: &str = "alice";

/// litmus's suites that a class 2 server must pass.
const SUITES: [&str; 5] = ["basic", "copymove", "props", "locks", "http"];

/// Whether `tool` runs; panics under `CI=true` when it does not.
fn have(tool: &str, version_arg: &str) -> bool {
    have_tool(tool, version_arg, "WebDAV client test")
}

/// Kills and reaps a child on drop, so that a failing test leaves
/// nothing running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to its end, within `limit` (a bound on a failing test, not
/// a wait): its output, stdout then stderr, as text.
fn run(cmd: &mut Command, limit: Duration) -> (Output, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill -KILL {pid}"))
                .status();
            panic!("{cmd:?} did not end within {limit:?}");
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn litmus_passes_basic_copymove_props_locks_and_http() {
    if !have("litmus", "--version") {
        return;
    }
    let server = TestServer::start();
    drop(server.user(USER));
    // litmus writes debug.log and child.log where it runs.
    let cwd = tempfile::tempdir().unwrap();
    let (out, text) = run(
        Command::new("litmus")
            .env("TESTS", SUITES.join(" "))
            .arg(format!("http://{}/dav/", server.addr))
            .args([USER, PASSWORD])
            .current_dir(cwd.path()),
        Duration::from_secs(300),
    );
    let summaries: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("<- summary for"))
        .collect();
    for line in text.lines().filter(|l| l.contains("warning")) {
        println!("{line}");
    }
    for line in &summaries {
        println!("{line}");
    }
    for suite in SUITES {
        let line = summaries
            .iter()
            .find(|l| l.contains(&format!("`{suite}'")))
            .unwrap_or_else(|| panic!("suite {suite} did not run:\n{text}"));
        assert!(line.contains(" 0 failed"), "{line}\n{text}");
    }
    assert!(out.status.success(), "litmus: {}\n{text}", out.status);
}

/// rclone against a test server, configured by environment only (remote
/// `nd:`), with its config and cache in a temp folder.
struct Rclone {
    env: Vec<(String, String)>,
    ca: PathBuf,
    home: PathBuf,
}

impl Rclone {
    fn new(server: &TestServer, home: &Path) -> Rclone {
        let (out, text) = run(
            Command::new("rclone").args(["obscure", PASSWORD]),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "rclone obscure: {text}");
        let obscured = String::from_utf8(out.stdout).unwrap().trim().to_string();
        // The certificate the server presents, wherever it keeps it.
        let ca = home.join("server-cert.pem");
        fs::write(&ca, server.cert_pem()).unwrap();
        let env = [
            ("TYPE", "webdav".to_string()),
            ("URL", format!("https://{}/dav/", server.addr)),
            ("VENDOR", "owncloud".to_string()),
            ("USER", USER.to_string()),
            ("PASS", obscured),
        ];
        Rclone {
            env: env
                .into_iter()
                .map(|(k, v)| (format!("RCLONE_CONFIG_ND_{k}"), v))
                .collect(),
            ca,
            home: home.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("rclone");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(self.home.join("rclone.conf"))
            .arg("--cache-dir")
            .arg(self.home.join("cache"))
            .arg("--ca-cert")
            .arg(&self.ca)
            .args(args);
        cmd
    }

    /// Runs rclone, which must succeed; its output.
    #[track_caller]
    fn ok(&self, server: &TestServer, args: &[&str]) -> String {
        let (out, text) = run(&mut self.command(args), Duration::from_secs(600));
        assert!(
            out.status.success(),
            "rclone {args:?}: {}\n{text}\nserver log:\n{}",
            out.status,
            server.log()
        );
        text
    }
}

/// Lowercase hex MD5 of a file, read in pieces.
fn file_md5(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    netdisk::protocol::md5_hex(h.finalize())
}

/// A disk's content: each file's path with its MD5 and mtime (Unix
/// seconds), and each folder's path.
#[derive(Debug, PartialEq)]
struct Tree {
    files: BTreeMap<String, (String, u64)>,
    folders: BTreeSet<String>,
}

fn local_tree(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, tree: &mut Tree) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_str().unwrap().into();
            let meta = fs::metadata(&path).unwrap();
            if meta.is_dir() {
                tree.folders.insert(rel);
                walk(root, &path, tree);
            } else {
                use std::os::unix::fs::MetadataExt;
                let mtime = u64::try_from(meta.mtime()).unwrap();
                tree.files.insert(rel, (file_md5(&path), mtime));
            }
        }
    }
    let mut tree = Tree {
        files: BTreeMap::new(),
        folders: BTreeSet::new(),
    };
    walk(root, root, &mut tree);
    tree
}

/// The user's disk as the native protocol lists it.
fn server_tree(server: &TestServer) -> Tree {
    let listed = server.login(USER).list("", true).unwrap();
    Tree {
        files: listed
            .files
            .into_iter()
            .map(|f| (f.name, (f.md5.expect("a known MD5"), f.mtime)))
            .collect(),
        folders: listed.folders.into_iter().map(|f| f.name).collect(),
    }
}

/// Writes `len` MiB of deterministic bytes: one pseudo-random MiB, each
/// copy led by its index, so that a piece out of place changes the MD5.
fn write_big(path: &Path, len: u64) {
    let mut block = bytes(1 << 20, 18);
    let mut f = fs::File::create(path).unwrap();
    for i in 0..len {
        block[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all(&block).unwrap();
    }
}

/// The tree rclone moves: Chinese and emoji names, names with `&`, `<`,
/// `>`, `%` and spaces, a 0-byte file, empty folders (one inside another)
/// and a 300 MiB file. Every mtime is set, to a second, to show that
/// `X-OC-Mtime` is kept.
fn make_tree(root: &Path) {
    for dir in ["报告/2026", "😀 photos", "a & b", "empty/inner", "空的"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    let files: [(&str, Vec<u8>); 6] = [
        (
            "报告/2026/第一季度 报告.txt",
            "第一季度\n".repeat(100).into(),
        ),
        ("😀 photos/🎉 party 🎂.jpg", bytes(70_000, 1)),
        (
            "a & b/<tag> 100% & more>.txt",
            b"angle & percent\n".to_vec(),
        ),
        ("a & b/%2F not a slash.txt", b"percent-two-F\n".to_vec()),
        ("zero", Vec::new()),
        ("报告/notes.md", bytes(5 << 20, 2)),
    ];
    for (name, data) in files {
        fs::write(root.join(name), data).unwrap();
    }
    write_big(&root.join("big 大文件.bin"), 300);
    let stamp = fs::FileTimes::new()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600));
    for path in local_tree(root).files.keys() {
        let f = fs::File::options()
            .write(true)
            .open(root.join(path))
            .unwrap();
        f.set_times(stamp).unwrap();
    }
}

/// `rclone md5sum`'s lines as path → MD5.
fn md5sums(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(md5, path)| (path.to_string(), md5.to_string()))
        .collect()
}

/// `rclone check`, which must compare MD5s (not sizes only) and find
/// every one of `count` files the same.
#[track_caller]
fn check_by_md5(rclone: &Rclone, server: &TestServer, src: &Path, count: usize) {
    let text = rclone.ok(server, &["check", "-v", src.to_str().unwrap(), "nd:"]);
    println!("rclone check:\n{text}");
    for fallback in [
        "hashes in common",
        "No common hash",
        "size only",
        "size-only",
    ] {
        assert!(!text.contains(fallback), "{text}");
    }
    assert!(text.contains("Using md5 for hash comparisons"), "{text}");
    assert!(text.contains("0 differences found"), "{text}");
    assert!(text.contains(&format!("{count} matching files")), "{text}");
}

#[test]
fn rclone_copies_checks_syncs_and_recovers_an_interrupted_upload_over_tls() {
    if !have("rclone", "version") {
        return;
    }
    let server = TestServer::start();
    drop(server.user(USER));
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let rclone = Rclone::new(&server, work.path());
    let src_arg = src.to_str().unwrap();

    rclone.ok(
        &server,
        &["copy", "--create-empty-src-dirs", src_arg, "nd:"],
    );
    let local = local_tree(&src);
    assert_eq!(server_tree(&server), local, "after rclone copy");
    check_by_md5(&rclone, &server, &src, local.files.len());
    let sums = md5sums(&rclone.ok(&server, &["md5sum", "nd:"]));
    let want: BTreeMap<String, String> = local
        .files
        .iter()
        .map(|(p, (md5, _))| (p.clone(), md5.clone()))
        .collect();
    assert_eq!(sums, want, "rclone md5sum against the local MD5s");

    // A deletion and a rename; the rename travels as a server-side MOVE,
    // found by its MD5.
    fs::remove_file(src.join("😀 photos/🎉 party 🎂.jpg")).unwrap();
    fs::rename(
        src.join("报告/2026/第一季度 报告.txt"),
        src.join("报告/2026/Q1 & <final> 100%.txt"),
    )
    .unwrap();
    let text = rclone.ok(
        &server,
        &[
            "sync",
            "-v",
            "--create-empty-src-dirs",
            "--track-renames",
            src_arg,
            "nd:",
        ],
    );
    println!("rclone sync:\n{text}");
    assert!(text.contains("Moved (server-side)"), "{text}");
    let local = local_tree(&src);
    assert_eq!(server_tree(&server), local, "after rclone sync");
    check_by_md5(&rclone, &server, &src, local.files.len());

    interrupted_copy(&server, &rclone, &src.join("big 大文件.bin"));
}

/// An upload of the big file cut once the server's staging holds 8 MiB of
/// it: nothing appears; a second `rclone copyto` leaves the right file and
/// no staged bytes.
fn interrupted_copy(server: &TestServer, rclone: &Rclone, big: &Path) {
    const NAME: &str = "again/big 大文件.bin";
    let target = format!("nd:{NAME}");
    let args = ["copyto", "--bwlimit", "8M", big.to_str().unwrap(), &target];
    let mut child = Reaped(
        rclone
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    server.wait_staged(USER, NAME, 8 << 20, || {
        child.0.try_wait().unwrap().is_none()
    });
    drop(child);
    assert!(!server.is_stored(USER, NAME), "a cut upload is not visible");

    let args = ["copyto", big.to_str().unwrap(), &target];
    rclone.ok(server, &args);
    let listed = server.login(USER).list("again", false).unwrap();
    assert_eq!(listed.files.len(), 1, "{listed:?}");
    assert_eq!(listed.files[0].md5.as_deref(), Some(file_md5(big).as_str()));
    assert_eq!(
        md5(&server.stored(USER, NAME).unwrap()),
        file_md5(big),
        "the bytes on the server's disk"
    );
    let sums = md5sums(&rclone.ok(server, &["md5sum", &target]));
    assert_eq!(sums.values().next(), Some(&file_md5(big)), "{sums:?}");
    assert_eq!(
        server.staged_count(USER),
        0,
        "the cut upload's staged bytes are gone"
    );
    if !on_db() {
        assert!(!server.staged_file(USER, NAME).exists());
    }
}
