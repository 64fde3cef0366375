//! PROTOCOL.md "Folders" and the path rules of "Names", row by row, over
//! raw frames against a real server: `mkdir`, `ls` with `path` and
//! `recursive`, paths in `put`/`get`/`delete`/`discard`/`rename`, the new
//! codes, old clients, atomic moves under a reader, a killed server in the
//! middle of a tree, and symlinks planted at depth.

use std::fs;
use std::thread;

use serde_json::{json, Value};

use crate::protocol::raw_login;
use crate::support::{assert_code, md5, Raw, TestServer};

/// Puts `data` at `path` in one go; returns the reply.
fn put(raw: &mut Raw, path: &str, data: &[u8]) -> Value {
    raw.send(&json!({"cmd": "put", "name": path, "size": data.len(), "md5": md5(data)}));
    raw.send_bytes(data);
    raw.recv()
}

#[track_caller]
fn ok(r: &Value) {
    assert_eq!(r["ok"], true, "{r}");
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn ls(raw: &mut Raw, path: &str, recursive: bool) -> (Vec<String>, Vec<String>) {
    let r = raw.call(json!({"cmd": "ls", "path": path, "recursive": recursive}));
    ok(&r);
    (names(&r["files"]), names(&r["folders"]))
}

fn server_with_alice() -> (TestServer, Raw) {
    let server = TestServer::start();
    drop(server.user("alice"));
    let raw = raw_login(&server, "alice");
    (server, raw)
}

#[test]
fn mkdir_and_ls_of_folders_one_level_and_recursive() {
    let (_server, mut raw) = server_with_alice();
    ok(&raw.call(json!({"cmd": "mkdir", "path": "报告/2024"})));
    ok(&put(&mut raw, "报告/2024/q1 😀.pdf", b"quarter"));
    ok(&put(&mut raw, "报告/readme", b""));
    ok(&put(&mut raw, "top.txt", b"top"));
    ok(&raw.call(json!({"cmd": "mkdir", "path": "empty"})));

    // The root: folders first in their own list, each sorted by bytes.
    let r = raw.call(json!({"cmd": "ls"}));
    assert_eq!(names(&r["files"]), ["top.txt"]);
    assert_eq!(names(&r["folders"]), ["empty", "报告"]);
    assert!(r["folders"][0]["mtime"].as_u64().unwrap() > 0);
    for root in [
        json!({"cmd": "ls", "path": null}),
        json!({"cmd": "ls", "path": ""}),
    ] {
        assert_eq!(raw.call(root)["folders"], r["folders"]);
    }
    assert_eq!(
        ls(&mut raw, "报告", false),
        (vec!["readme".into()], vec!["2024".into()])
    );
    // Recursive: the whole subtree, paths relative to `path`, empty
    // folders too.
    let (files, folders) = ls(&mut raw, "", true);
    assert_eq!(files, ["top.txt", "报告/2024/q1 😀.pdf", "报告/readme"]);
    assert_eq!(folders, ["empty", "报告", "报告/2024"]);
    assert_eq!(
        ls(&mut raw, "报告", true),
        (
            vec!["2024/q1 😀.pdf".into(), "readme".into()],
            vec!["2024".into()]
        )
    );
    let r = raw.call(json!({"cmd": "ls", "path": "报告/2024", "recursive": true}));
    assert_eq!(r["files"][0]["md5"], md5(b"quarter"));
    assert_eq!(r["files"][0]["size"], 7);

    // mkdir: EXISTS for a folder or a file there, NOT_A_FOLDER through a
    // file, parents made like `mkdir -p`.
    assert_code(
        &raw.call(json!({"cmd": "mkdir", "path": "报告/2024"})),
        "EXISTS",
    );
    assert_code(
        &raw.call(json!({"cmd": "mkdir", "path": "top.txt"})),
        "EXISTS",
    );
    assert_code(
        &raw.call(json!({"cmd": "mkdir", "path": "top.txt/x"})),
        "NOT_A_FOLDER",
    );
    ok(&raw.call(json!({"cmd": "mkdir", "path": "a/b/c"})));
    assert_eq!(ls(&mut raw, "a", true).1, ["b", "b/c"]);
    // ls: NOT_FOUND for no folder, NOT_A_FOLDER for a file (or through one).
    assert_code(&raw.call(json!({"cmd": "ls", "path": "nope"})), "NOT_FOUND");
    assert_code(
        &raw.call(json!({"cmd": "ls", "path": "top.txt"})),
        "NOT_A_FOLDER",
    );
    assert_code(
        &raw.call(json!({"cmd": "ls", "path": "top.txt/x"})),
        "NOT_A_FOLDER",
    );
    assert_code(
        &raw.call(json!({"cmd": "ls", "path": "a/"})),
        "INVALID_NAME",
    );
    assert_code(&raw.call(json!({"cmd": "ls", "path": 5})), "BAD_REQUEST");
    assert_code(
        &raw.call(json!({"cmd": "ls", "recursive": "yes"})),
        "BAD_REQUEST",
    );
    assert_code(&raw.call(json!({"cmd": "mkdir"})), "BAD_REQUEST");
}

#[test]
fn files_in_folders_put_get_discard_and_the_new_codes() {
    let (_server, mut raw) = server_with_alice();
    // A put makes the parents when it succeeds...
    ok(&put(&mut raw, "a/b/c.txt", b"hello"));
    assert_eq!(ls(&mut raw, "", true).1, ["a", "a/b"]);
    // ...and never when it fails.
    let r = {
        raw.send(&json!({"cmd": "put", "name": "x/y/z", "size": 2, "md5": md5(b"no")}));
        raw.send_bytes(b"ab");
        raw.recv()
    };
    assert_code(&r, "CHECKSUM_MISMATCH");
    // An unfinished step-2 upload does not make them either.
    let r = raw.call(json!({"cmd": "put", "name": "p/q/r", "size": 10}));
    assert_eq!(r["offset"], 0, "{r}");
    raw.send_bytes(b"01234");
    drop(raw);
    let mut raw = raw_login(&_server, "alice");
    assert_eq!(ls(&mut raw, "", false).1, ["a"]);
    // The staged upload resumes per path, and is discarded per path.
    let r = raw.call(json!({"cmd": "put", "name": "p/q/r", "size": 10}));
    assert_eq!(r["offset"], 5, "{r}");
    drop(raw);
    let mut raw = raw_login(&_server, "alice");
    assert_code(
        &raw.call(json!({"cmd": "discard", "name": "p/q"})),
        "NOT_FOUND",
    );
    ok(&raw.call(json!({"cmd": "discard", "name": "p/q/r"})));

    // get of a path, with its MD5.
    let r = raw.call(json!({"cmd": "get", "name": "a/b/c.txt"}));
    assert_eq!(
        (r["size"].as_u64(), r["md5"].as_str()),
        (Some(5), Some(md5(b"hello").as_str()))
    );
    assert_eq!(raw.recv_body(5), b"hello");
    // IS_A_FOLDER: put (step 2 and one go), get, discard of a folder.
    assert_code(
        &raw.call(json!({"cmd": "put", "name": "a/b", "size": 1})),
        "IS_A_FOLDER",
    );
    assert_code(&put(&mut raw, "a/b", b"x"), "IS_A_FOLDER");
    assert_code(&raw.call(json!({"cmd": "get", "name": "a"})), "IS_A_FOLDER");
    assert_code(
        &raw.call(json!({"cmd": "discard", "name": "a/b"})),
        "IS_A_FOLDER",
    );
    // NOT_A_FOLDER: a parent is a file.
    assert_code(
        &raw.call(json!({"cmd": "put", "name": "a/b/c.txt/d", "size": 1})),
        "NOT_A_FOLDER",
    );
    assert_code(&put(&mut raw, "a/b/c.txt/d", b"x"), "NOT_A_FOLDER");
    assert_code(
        &raw.call(json!({"cmd": "get", "name": "a/b/c.txt/d"})),
        "NOT_A_FOLDER",
    );
    assert_code(
        &raw.call(json!({"cmd": "delete", "name": "a/b/c.txt/d"})),
        "NOT_A_FOLDER",
    );
    assert_code(
        &raw.call(json!({"cmd": "get", "name": "a/nope/c"})),
        "NOT_FOUND",
    );
    // The connection is in step after every one-go refusal.
    assert_eq!(ls(&mut raw, "a/b", false).0, ["c.txt"]);
}

#[test]
fn deletes_of_folders_and_usage_over_the_whole_tree() {
    let (server, mut raw) = server_with_alice();
    for i in 0..30 {
        ok(&put(&mut raw, &format!("t/{}/f{i}", i % 4), b"1234"));
    }
    ok(&put(&mut raw, "keep", b"12"));
    ok(&raw.call(json!({"cmd": "mkdir", "path": "e/f"})));
    let who = raw.call(json!({"cmd": "whoami"}));
    assert_eq!(
        (who["files"].as_u64(), who["used"].as_u64()),
        (Some(31), Some(122))
    );
    // An empty folder goes; a full one is NOT_EMPTY without `recursive`.
    assert_code(
        &raw.call(json!({"cmd": "delete", "name": "e"})),
        "NOT_EMPTY",
    );
    ok(&raw.call(json!({"cmd": "delete", "name": "e/f"})));
    ok(&raw.call(json!({"cmd": "delete", "name": "e", "recursive": false})));
    assert_code(
        &raw.call(json!({"cmd": "delete", "name": "t"})),
        "NOT_EMPTY",
    );
    // An unfinished upload under it is discarded with it.
    let r = raw.call(json!({"cmd": "put", "name": "t/0/partial", "size": 10}));
    assert_eq!(r["offset"], 0);
    raw.send_bytes(b"012");
    drop(raw);
    let mut raw = raw_login(&server, "alice");
    assert_eq!(raw.call(json!({"cmd": "whoami"}))["staged"], 3);
    ok(&raw.call(json!({"cmd": "delete", "name": "t", "recursive": true})));
    let who = raw.call(json!({"cmd": "whoami"}));
    assert_eq!(
        (
            who["files"].as_u64(),
            who["used"].as_u64(),
            who["staged"].as_u64()
        ),
        (Some(1), Some(2), Some(0))
    );
    assert_eq!(ls(&mut raw, "", true), (vec!["keep".into()], vec![]));
    assert_code(
        &raw.call(json!({"cmd": "delete", "name": "t", "recursive": true})),
        "NOT_FOUND",
    );
    assert_code(
        &raw.call(json!({"cmd": "delete", "name": "t", "recursive": 1})),
        "BAD_REQUEST",
    );
    // A restart counts the tree again and agrees.
    drop(raw);
    let server = server.restart(&[]);
    let mut raw = raw_login(&server, "alice");
    let who = raw.call(json!({"cmd": "whoami"}));
    assert_eq!(
        (who["files"].as_u64(), who["used"].as_u64()),
        (Some(1), Some(2))
    );
}

#[test]
fn a_recursive_delete_while_a_file_under_it_is_uploading_is_locked() {
    let (server, mut raw) = server_with_alice();
    ok(&put(&mut raw, "d/old", b"x"));
    let mut uploader = raw_login(&server, "alice");
    let r = uploader.call(json!({"cmd": "put", "name": "d/sub/new", "size": 4}));
    assert_eq!(r["offset"], 0, "{r}");
    assert_code(
        &raw.call(json!({"cmd": "delete", "name": "d", "recursive": true})),
        "LOCKED",
    );
    assert_code(
        &raw.call(json!({"cmd": "rename", "from": "d", "to": "e"})),
        "LOCKED",
    );
    uploader.send_bytes(b"data");
    ok(&uploader.call(json!({"md5": md5(b"data")})));
    ok(&raw.call(json!({"cmd": "rename", "from": "d", "to": "e"})));
    assert_eq!(ls(&mut raw, "e", true).0, ["old", "sub/new"]);
}

#[test]
fn renames_move_files_and_folders_across_the_tree() {
    let (_server, mut raw) = server_with_alice();
    ok(&put(&mut raw, "a/b/c", b"one"));
    ok(&put(&mut raw, "x", b"two"));
    ok(&raw.call(json!({"cmd": "mkdir", "path": "dst"})));
    // A file into a folder and out again, its MD5 along.
    ok(&raw.call(json!({"cmd": "rename", "from": "x", "to": "dst/x"})));
    let r = raw.call(json!({"cmd": "ls", "path": "dst"}));
    assert_eq!(r["files"][0]["md5"], md5(b"two"));
    // A folder, with all it holds.
    ok(&raw.call(json!({"cmd": "rename", "from": "a", "to": "dst/a"})));
    assert_eq!(ls(&mut raw, "", true).0, ["dst/a/b/c", "dst/x"]);
    let r = raw.call(json!({"cmd": "get", "name": "dst/a/b/c"}));
    assert_eq!(r["md5"], md5(b"one"));
    assert_eq!(raw.recv_body(3), b"one");
    // The rules: to's parent must exist; never replace; not into itself.
    for (from, to, code) in [
        ("dst/x", "nope/x", "NOT_FOUND"),
        ("dst/x", "dst/a", "EXISTS"),
        ("dst/a", "dst/x", "EXISTS"),
        ("dst", "dst/a/inside", "BAD_REQUEST"),
        ("dst", "dst", "BAD_REQUEST"),
        ("dst/x", "dst/x/y", "NOT_A_FOLDER"),
        ("missing", "m2", "NOT_FOUND"),
        ("dst/x", "dst//y", "INVALID_NAME"),
    ] {
        assert_code(
            &raw.call(json!({"cmd": "rename", "from": from, "to": to})),
            code,
        );
    }
    // A sibling whose name starts with the folder's is not "inside" it.
    ok(&raw.call(json!({"cmd": "rename", "from": "dst/a", "to": "dst-a"})));
    assert_eq!(ls(&mut raw, "", false).1, ["dst", "dst-a"]);
}

/// PROTOCOL.md "Names", paths: every rule, on every command that takes one.
#[test]
fn every_path_rule_holds_on_every_command() {
    let (_server, mut raw) = server_with_alice();
    let comp = "é".repeat(127) + "a"; // 255 bytes
    let deep: Vec<String> = (0..32).map(|i| format!("d{i}")).collect();
    let deep = deep.join("/");
    // 1,024 bytes in 5 components.
    let long = format!("{}/{}", vec!["l".repeat(200); 4].join("/"), "m".repeat(220));
    assert_eq!(long.len(), 1024);
    for path in [
        &deep,
        &long,
        &format!("{comp}/{comp}"),
        &"报告/2024/😀 🎉.png".to_string(),
    ] {
        ok(&put(&mut raw, path, path.as_bytes()));
        let r = raw.call(json!({"cmd": "get", "name": path}));
        assert_eq!(r["md5"], md5(path.as_bytes()), "{path}");
        assert_eq!(raw.recv_body(path.len()), path.as_bytes());
    }
    let (files, _) = ls(&mut raw, "", true);
    assert!(files.contains(&deep) && files.contains(&long), "{files:?}");

    let too_deep = format!("{deep}/x");
    let too_long = format!("{long}m");
    let big = format!("a/{}", "b".repeat(256));
    let bad = [
        "/a", "a/", "a//b", "a/./b", "a/../b", ".a/b", "a/.b", "/", "..", "a/\\b", "a/\u{1}",
        &too_deep, &too_long, &big,
    ];
    for path in bad {
        for h in [
            json!({"cmd": "put", "name": path, "size": 1}),
            json!({"cmd": "get", "name": path}),
            json!({"cmd": "delete", "name": path}),
            json!({"cmd": "delete", "name": path, "recursive": true}),
            json!({"cmd": "discard", "name": path}),
            json!({"cmd": "rename", "from": path, "to": "fine"}),
            json!({"cmd": "rename", "from": "报告", "to": path}),
            json!({"cmd": "mkdir", "path": path}),
            json!({"cmd": "ls", "path": path}),
        ] {
            assert_code(&raw.call(h.clone()), "INVALID_NAME");
        }
        assert_code(&put(&mut raw, path, b"x"), "INVALID_NAME");
    }
    assert_eq!(ls(&mut raw, "", false).1.len(), 4, "nothing was made");
}

/// A client that never sends `/` sees the disk it knew: the same replies,
/// plus `folders` in `ls`, which it ignores.
#[test]
fn an_old_client_sees_the_flat_disk_it_knew() {
    let server = TestServer::start();
    let mut c = server.user("old");
    crate::protocol::put_all(&mut c, "a.txt", b"hello");
    crate::protocol::put_all(&mut c, "报告.pdf", b"pdf");
    let files = c.ls().unwrap();
    let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a.txt", "报告.pdf"]);
    c.rename("a.txt", "b.txt").unwrap();
    assert_eq!(crate::protocol::get_all(&mut c, "b.txt"), b"hello");
    c.delete("b.txt").unwrap();
    let who = c.whoami().unwrap();
    assert_eq!((who.files, who.used), (1, 3));
    // The reply an old client decodes is the old one plus `folders`.
    let mut raw = raw_login(&server, "old");
    let r = raw.call(json!({"cmd": "ls"}));
    let keys: Vec<_> = r.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["ok", "files", "folders"]);
    assert_eq!(r["folders"], json!([]));
}

/// A folder moved while another connection lists and reads it: every
/// listing sees it whole at one place or the other, never both or neither.
#[test]
fn a_folder_rename_is_atomic_for_a_concurrent_reader() {
    let (server, mut raw) = server_with_alice();
    for i in 0..50 {
        ok(&put(&mut raw, &format!("one/f{i:02}"), b"x"));
    }
    let mut reader = raw_login(&server, "alice");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = std::sync::Arc::clone(&done);
    let t = thread::spawn(move || {
        let mut seen = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) || seen == 0 {
            let r = reader.call(json!({"cmd": "ls", "recursive": true}));
            let files = names(&r["files"]);
            assert_eq!(files.len(), 50, "a listing saw {} files", files.len());
            let prefix = &files[0][..4];
            assert!(files.iter().all(|f| f.starts_with(prefix)), "{files:?}");
            seen += 1;
        }
        seen
    });
    for i in 0..40 {
        let (from, to) = if i % 2 == 0 {
            ("one", "two")
        } else {
            ("two", "one")
        };
        ok(&raw.call(json!({"cmd": "rename", "from": from, "to": to})));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(t.join().unwrap() > 0);
}

/// Symlinks planted anywhere in a tree by hand: never followed, listed,
/// read, written or deleted through.
#[test]
fn symlinks_planted_at_depth_are_never_followed() {
    if crate::support::local_only("symlinks_planted_at_depth_are_never_followed") {
        return;
    }
    let (server, mut raw) = server_with_alice();
    ok(&put(&mut raw, "a/b/real", b"mine"));
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"top secret").unwrap();
    let b = server.data.path().join("users/alice/files/a/b");
    std::os::unix::fs::symlink(outside.path(), b.join("dirlink")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), b.join("filelink")).unwrap();
    std::os::unix::fs::symlink(
        outside.path(),
        server.data.path().join("users/alice/files/top"),
    )
    .unwrap();

    assert_eq!(
        ls(&mut raw, "", true),
        (vec!["a/b/real".into()], vec!["a".into(), "a/b".into()])
    );
    for path in ["a/b/dirlink/secret", "a/b/filelink", "top/secret"] {
        assert_code(&raw.call(json!({"cmd": "get", "name": path})), "NOT_FOUND");
        assert_code(
            &raw.call(json!({"cmd": "delete", "name": path})),
            "NOT_FOUND",
        );
    }
    assert_code(
        &raw.call(json!({"cmd": "ls", "path": "a/b/dirlink"})),
        "NOT_FOUND",
    );
    assert_code(&raw.call(json!({"cmd": "ls", "path": "top"})), "NOT_FOUND");
    assert_code(
        &raw.call(json!({"cmd": "delete", "name": "top", "recursive": true})),
        "NOT_FOUND",
    );
    assert_code(&put(&mut raw, "a/b/dirlink/new", b"x"), "NOT_A_FOLDER");
    assert_code(&put(&mut raw, "top/new", b"x"), "NOT_A_FOLDER");
    assert_code(
        &raw.call(json!({"cmd": "mkdir", "path": "top/x"})),
        "NOT_A_FOLDER",
    );
    assert_code(
        &raw.call(json!({"cmd": "rename", "from": "a/b/real", "to": "top/real"})),
        "NOT_FOUND",
    );
    assert_code(
        &raw.call(json!({"cmd": "rename", "from": "top", "to": "mine"})),
        "NOT_FOUND",
    );
    // A put over a file link replaces the link, never what it points at.
    ok(&put(&mut raw, "a/b/filelink", b"new"));
    ok(&raw.call(json!({"cmd": "delete", "name": "a", "recursive": true})));
    let names: Vec<_> = fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"]);
    assert_eq!(
        fs::read(outside.path().join("secret")).unwrap(),
        b"top secret"
    );
}

/// A server killed between the files of a tree upload: what committed is
/// whole and listed, what did not is not, and no folder was made for it.
#[test]
fn a_killed_server_mid_tree_leaves_only_whole_files() {
    let (server, mut raw) = server_with_alice();
    for i in 0..5 {
        ok(&put(
            &mut raw,
            &format!("tree/{i}/f"),
            format!("file {i}").as_bytes(),
        ));
    }
    let r = raw.call(json!({"cmd": "put", "name": "tree/late/big", "size": 1000}));
    assert_eq!(r["offset"], 0);
    raw.send_bytes(&[7; 400]);
    // The client is cut off mid-file; once the server holds its bytes, the
    // server is killed.
    drop(raw);
    let mut probe = raw_login(&server, "alice");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while probe.call(json!({"cmd": "whoami"}))["staged"] != 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "the bytes never arrived"
        );
        thread::yield_now();
    }
    drop(probe);
    let server = server.restart(&[]);
    let mut raw = raw_login(&server, "alice");
    let (files, folders) = ls(&mut raw, "", true);
    assert_eq!(
        files,
        ["tree/0/f", "tree/1/f", "tree/2/f", "tree/3/f", "tree/4/f"]
    );
    assert_eq!(
        folders,
        ["tree", "tree/0", "tree/1", "tree/2", "tree/3", "tree/4"]
    );
    // The unfinished one resumes after the restart and makes its folder.
    let r = raw.call(json!({"cmd": "put", "name": "tree/late/big", "size": 1000}));
    assert_eq!(r["offset"], 400, "{r}");
    raw.send_bytes(&[7; 600]);
    ok(&raw.call(json!({"md5": md5(&[7; 1000])})));
    assert!(ls(&mut raw, "tree", false).1.contains(&"late".to_string()));
}
