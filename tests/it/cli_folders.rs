//! Folders through the command-line client (issue 17): `put -r`/`get -r`
//! round trips, resume and skip, `rm -r` and `rm` of several paths, `mv`
//! across folders, `ls` of folders, `--as` paths, bad paths, a hostile
//! listing and a planted symlink that must not be followed, and the
//! shell's `cd`, `pwd`, prompt and completion on a terminal.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::thread;

use netdisk::protocol::{encode_frame, read_header, MAX_REQUEST_HEADER};
use serde_json::{json, Value};

use crate::cli::{failed, failure, netdisk, netdisk_at, setup, success, USER};
use crate::pty::Pty;
use crate::support::*;

/// Everything under `dir` by relative path: a file's bytes, or `None`
/// for a folder. Hidden entries (the test's own `.xdg-*`) are left out.
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let kind = entry.file_type().unwrap();
            assert!(!kind.is_symlink(), "a link at {rel}");
            if kind.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A local tree with Chinese and emoji names, an empty folder, a 0-byte
/// file, small files and one over the one-go limit (resumable path).
fn make_tree(root: &Path) {
    for dir in ["报告/2024", "😀 photos", "empty/inside-empty", "a/b/c"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    write_file(&root.join("报告/2024"), "q1 报告.txt", b"first quarter");
    write_file(&root.join("😀 photos"), "😀.bin", &bytes(70_000, 1));
    write_file(&root.join("a/b/c"), "deep.txt", b"deep");
    write_file(root, "zero", b"");
    write_file(root, "big.bin", &bytes(5 << 20, 2));
}

#[test]
fn put_r_and_get_r_round_trip_a_tree_with_empty_folders_and_unicode_names() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let src = d.join("src");
    make_tree(&src);
    let out = success(netdisk(&server, d).args(["put", "-r", "src", "--as", "备份/src"]));
    // Only empty/inside-empty holds nothing; the rest come with files.
    assert_eq!(out, "uploaded 5 files (5.1 MiB), made 1 folder\n");
    assert_eq!(server.stored_tree(USER, "备份/src"), tree(&src));

    let out = success(netdisk(&server, d).args(["get", "-r", "备份/src", "-o", "down"]));
    assert_eq!(out, "downloaded 5 files (5.1 MiB), made 9 folders\n");
    assert_eq!(tree(&d.join("down/src")), tree(&src));

    // The same put again sends nothing: every file is there with its MD5.
    let out = success(netdisk(&server, d).args(["put", "-r", "src", "--as", "备份/src"]));
    assert_eq!(
        out,
        "uploaded 0 files (0 B); 5 files already there with the same MD5\n"
    );
    // Without --as, the folder keeps its name, in the top folder.
    success(netdisk(&server, d).args(["-q", "put", "-r", "src"]));
    assert_eq!(server.stored_tree(USER, "src"), tree(&src));
}

#[test]
fn put_r_skips_links_and_hidden_names_and_says_so() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let src = d.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    write_file(&src.join("sub"), "kept.txt", b"kept");
    write_file(&src, ".hidden", b"x");
    std::os::unix::fs::symlink("/etc", src.join("link")).unwrap();
    let out = netdisk(&server, d)
        .args(["put", "-r", "src"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("skipped src/.hidden: "), "{err}");
    assert!(
        err.contains("skipped src/link: a symbolic link (not followed)"),
        "{err}"
    );
    let stored = server.stored_tree(USER, "src");
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["sub", "sub/kept.txt"]);
}

#[test]
fn get_r_continues_an_interrupted_download_and_skips_what_is_there() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let src = d.join("src");
    make_tree(&src);
    success(netdisk(&server, d).args(["-q", "put", "-r", "src"]));
    success(netdisk(&server, d).args(["-q", "get", "-r", "src", "-o", "down"]));
    let down = d.join("down/src");
    // As a `get -r` cut short leaves it: one file not there yet, the big
    // one half in its part file.
    fs::remove_file(down.join("a/b/c/deep.txt")).unwrap();
    let big = fs::read(down.join("big.bin")).unwrap();
    fs::remove_file(down.join("big.bin")).unwrap();
    let part = down.join(format!(".netdisk-{}.part", md5(b"big.bin")));
    fs::write(&part, &big[..2 << 20]).unwrap();

    let out = netdisk(&server, d)
        .args(["get", "-r", "src", "-o", "down"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stdout,
        "downloaded 2 files (5.0 MiB); 3 files already there with the same MD5\n"
    );
    assert!(
        stderr.contains("big.bin: resuming the interrupted download at 2.0 MiB"),
        "{stderr}"
    );
    assert_eq!(tree(&down), tree(&src));
    assert!(!part.exists());

    // A local file that differs is named and left alone, unless asked.
    fs::write(down.join("zero"), b"mine").unwrap();
    let (code, err) = failed(netdisk(&server, d).args(["get", "-r", "src", "-o", "down"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error: cannot download src/zero: "), "{err}");
    assert!(err.contains("exists and differs"), "{err}");
    assert!(err.ends_with("error: 1 of 1 downloads failed\n"), "{err}");
    assert_eq!(fs::read(down.join("zero")).unwrap(), b"mine");
    success(netdisk(&server, d).args(["-q", "get", "-r", "src", "-o", "down", "--overwrite"]));
    assert_eq!(tree(&down), tree(&src));
}

#[test]
fn rm_r_removes_a_folder_and_rm_takes_several_paths() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["-q", "put", "small.bin", "empty", "--as", "docs/2024"]));
    success(netdisk(&server, d).args(["-q", "put", "small.bin", "my file.txt"]));
    let err = failure(netdisk(&server, d).args(["rm", "docs"]), 1);
    assert_eq!(
        err,
        "error: cannot remove docs: the folder is not empty (use -r to delete all it holds)\n"
    );
    assert!(server.is_stored(USER, "docs/2024/small.bin"));
    let out = success(netdisk(&server, d).args(["rm", "-r", "docs"]));
    assert_eq!(out, "removed docs\n");
    assert!(!server.is_stored(USER, "docs"));

    // Several paths: each is tried, each failure named.
    let err = failure(
        netdisk(&server, d).args(["rm", "small.bin", "nope", "my file.txt"]),
        4,
    );
    assert_eq!(
        err,
        "error: cannot remove nope: no such file or folder on the server\n\
         error: 1 of 3 removals failed\n"
    );
    assert!(!server.is_stored(USER, "small.bin"));
    assert!(!server.is_stored(USER, "my file.txt"));
}

#[test]
fn mv_moves_files_and_folders_across_folders() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["-q", "put", "small.bin", "--as", "a/small.bin"]));
    success(netdisk(&server, d).args(["-q", "mkdir", "b/c"]));
    // To a new path in another folder, into an existing folder, and into
    // a folder named with a trailing `/`.
    let out = success(netdisk(&server, d).args(["mv", "a/small.bin", "b/renamed.bin"]));
    assert_eq!(out, "moved a/small.bin to b/renamed.bin\n");
    let out = success(netdisk(&server, d).args(["mv", "b/renamed.bin", "b/c"]));
    assert_eq!(out, "moved b/renamed.bin to b/c/renamed.bin\n");
    let out = success(netdisk(&server, d).args(["mv", "b", "a/"]));
    assert_eq!(out, "moved b to a/b\n");
    assert_eq!(
        server.stored(USER, "a/b/c/renamed.bin").unwrap(),
        fs::read(d.join("small.bin")).unwrap()
    );
    let err = failure(netdisk(&server, d).args(["mv", "a", "a/b/c"]), 1);
    assert_eq!(
        err,
        "error: cannot move a to a/b/c: a folder cannot move into itself or below itself\n"
    );
    let err = failure(netdisk(&server, d).args(["mv", "nope", "a"]), 4);
    assert!(
        err.contains("no such file or folder on the server"),
        "{err}"
    );
}

#[test]
fn ls_lists_folders_first_then_files() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["-q", "put", "small.bin", "报告.txt"]));
    success(netdisk(&server, d).args(["-q", "put", "empty", "--as", "报告/2024/empty"]));
    success(netdisk(&server, d).args(["-q", "mkdir", "😀 photos"]));
    let time = (r"\d{4}-\d\d-\d\d \d\d:\d\d", "[TIME]");
    let top = success(netdisk(&server, d).arg("ls"));
    let deep = success(netdisk(&server, d).args(["ls", "-r"]));
    let inside = success(netdisk(&server, d).args(["ls", "报告"]));
    let text = format!("$ ls\n{top}$ ls -r\n{deep}$ ls 报告\n{inside}");
    insta::with_settings!({filters => vec![time]}, {
        insta::assert_snapshot!("ls_folders", text);
    });
    let json = success(netdisk(&server, d).args(["ls", "--json", "-r"]));
    let json: Value = serde_json::from_str(&json).unwrap();
    let names = |list: &Value| -> Vec<String> {
        let list = list.as_array().unwrap();
        list.iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&json["folders"]), ["报告", "报告/2024", "😀 photos"]);
    assert_eq!(
        names(&json["files"]),
        ["small.bin", "报告.txt", "报告/2024/empty"]
    );
}

#[test]
fn put_as_takes_a_path_and_a_folder_for_several_files() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let out = success(netdisk(&server, d).args(["put", "small.bin", "--as", "a/b.txt"]));
    assert_eq!(out, "uploaded a/b.txt (2.9 KiB)\n");
    assert_eq!(
        server.stored(USER, "a/b.txt").unwrap(),
        fs::read(d.join("small.bin")).unwrap()
    );
    success(netdisk(&server, d).args(["-q", "put", "empty", "报告.txt", "--as", "x/y"]));
    success(netdisk(&server, d).args(["-q", "put", "small.bin", "--as", "x/"]));
    let stored = server.stored_tree(USER, "x");
    let names: Vec<&String> = stored.keys().collect();
    assert_eq!(names, ["small.bin", "y", "y/empty", "y/报告.txt"]);
    // A file where a folder would go, and a folder where a file would.
    let err = failure(
        netdisk(&server, d).args(["put", "small.bin", "--as", "a/b.txt/c"]),
        1,
    );
    assert!(
        err.contains("a part of that path is a file, not a folder"),
        "{err}"
    );
    let err = failure(
        netdisk(&server, d).args(["put", "small.bin", "--as", "x/y"]),
        1,
    );
    assert!(
        err.contains("that is a folder on the server, not a file"),
        "{err}"
    );
}

#[test]
fn bad_paths_give_clear_errors_before_anything_is_sent() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["-q", "put", "small.bin"]));
    let deep = vec!["d"; 33].join("/");
    let long = "x".repeat(256);
    let cases: [(&[&str], &str); 9] = [
        (&["ls", "a//b"], "a//b: a path has no empty part ('//')"),
        (
            &["get", "../x"],
            "../x: '..' goes above the top folder of the disk",
        ),
        (&["mkdir", ".hidden/x"], "file name starts with '.'"),
        (&["mkdir", &deep], "path has more than 32 components"),
        (
            &["put", "small.bin", "--as", &long],
            "longer than 255 bytes",
        ),
        (
            &["rm", "/"],
            "removing the top folder of the disk is not possible",
        ),
        (&["mv", "small.bin", "a\\b"], "contains '/' or '\\'"),
        (
            &["ls", "small.bin"],
            "cannot list small.bin: that is a file (or inside one), not a folder",
        ),
        (
            &["get", "-r", "nope"],
            "cannot download nope: no such file or folder on the server",
        ),
    ];
    for (args, words) in cases {
        let (code, err) = failed(netdisk(&server, d).args(args));
        assert!(code == 1 || code == 4, "{args:?}: {code} {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(words),
            "{args:?}: {err}"
        );
    }
    // A folder without -r says how.
    success(netdisk(&server, d).args(["-q", "mkdir", "dir"]));
    let err = failure(netdisk(&server, d).args(["get", "dir"]), 1);
    assert!(err.contains("`get -r` downloads a folder whole"), "{err}");
    let err = failure(netdisk(&server, d).args(["put", "."]), 1);
    assert!(err.contains("`put -r` uploads a folder whole"), "{err}");
}

/// A one-connection fake server that answers `ls` with `listing`.
fn listing_server(listing: Value) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut r = s.try_clone().unwrap();
        while let Ok(Some(h)) = read_header(&mut r, MAX_REQUEST_HEADER) {
            let reply = match h["cmd"].as_str() {
                Some("login") => json!({"ok": true, "user": USER}),
                Some("ls") => {
                    let mut l = listing.clone();
                    l["ok"] = json!(true);
                    l
                }
                _ => json!({"ok": false, "error": "NOT_FOUND", "message": "no"}),
            };
            if s.write_all(&encode_frame(&reply)).is_err() {
                break;
            }
        }
    });
    addr
}

#[test]
fn a_listed_name_that_would_leave_the_output_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("out")).unwrap();
    let md5 = "d41d8cd98f00b204e9800998ecf8427e";
    for (files, folders) in [
        (
            json!([{"name": "../escape.txt", "size": 0, "mtime": 0, "md5": md5}]),
            json!([]),
        ),
        (json!([]), json!([{"name": "ok/../../up", "mtime": 0}])),
        (
            json!([{"name": "/etc/x", "size": 0, "mtime": 0, "md5": md5}]),
            json!([]),
        ),
    ] {
        let addr = listing_server(json!({"files": files, "folders": folders}));
        let err = failure(
            netdisk_at(&addr, d).args(["get", "-r", "t", "-o", "out"]),
            7,
        );
        assert!(err.contains("the server listed the unsafe name"), "{err}");
        assert!(err.contains("nothing was downloaded"), "{err}");
        assert!(fs::read_dir(d.join("out")).unwrap().next().is_none());
        assert!(!d.join("escape.txt").exists() && !d.join("up").exists());
    }
}

#[test]
fn get_r_never_follows_a_link_planted_in_the_local_tree() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["-q", "put", "small.bin", "--as", "t/sub/a.bin"]));
    success(netdisk(&server, d).args(["-q", "put", "empty", "--as", "t/b"]));
    let outside = d.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(d.join("down/t")).unwrap();
    std::os::unix::fs::symlink(&outside, d.join("down/t/sub")).unwrap();
    let err = failure(
        netdisk(&server, d).args(["get", "-r", "t", "-o", "down"]),
        1,
    );
    assert!(
        err.contains("sub is a symbolic link; not followed"),
        "{err}"
    );
    assert!(err.ends_with("error: 2 of 3 downloads failed\n"), "{err}");
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "wrote through the link"
    );
    assert!(d.join("down/t/b").exists(), "the rest came down");
}

#[test]
fn the_shell_changes_folders_shows_them_and_completes_remote_paths() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["-q", "put", "报告.txt", "--as", "报告/2024/q1 报告.txt"]));
    success(netdisk(&server, d).args(["-q", "mkdir", "报告/2023"]));
    let down = d.join("down");
    fs::create_dir(&down).unwrap();
    let mut pty = Pty::spawn(
        &down,
        &["shell"],
        &[
            ("NETDISK_SERVER", &server.addr),
            ("NETDISK_USER", USER),
            ("NETDISK_PASSWORD", PASSWORD),
        ],
    );
    pty.expect("logged in as alice");
    pty.expect("netdisk:/> ");
    // Tab completes folder by folder: 报 to 报告/, 报告/2024 to 报告/2024/.
    pty.send("cd 报\t");
    pty.expect("报告/");
    pty.send("2024\t\r");
    pty.expect("netdisk:/报告/2024> ");
    pty.send("pwd\r");
    pty.expect("/报告/2024\r\n");
    // A file in the current folder completes too, and comes down.
    pty.send("get q\t\r");
    pty.expect("downloaded 报告/2024/q1 报告.txt");
    pty.expect("netdisk:/报告/2024> ");
    // `..` resolves here; at the top it stops with a clear error.
    pty.send("cd ../..\r");
    pty.expect("netdisk:/> ");
    pty.send("cd ..\r");
    pty.expect("error: already in the top folder of the disk (/)");
    pty.expect("netdisk:/> ");
    pty.send("cd 报告/2023\r");
    pty.expect("netdisk:/报告/2023> ");
    pty.send("mkdir new\r");
    pty.expect("made the folder 报告/2023/new");
    pty.send("cd /nope\r");
    pty.expect("error: cannot enter /nope: there is no folder /nope");
    pty.expect("netdisk:/报告/2023> ");
    pty.send("\x04");
    let (status, screen) = pty.finish();
    assert!(status.success(), "{status:?}\n{screen}");
    assert_eq!(
        fs::read(down.join("q1 报告.txt")).unwrap(),
        fs::read(d.join("报告.txt")).unwrap()
    );
    assert!(server.is_stored_dir(USER, "报告/2023/new"));
}
