//! `netdisk migrate`: a single-machine data directory moved into
//! PostgreSQL, served by `serve --db`, with the old directory untouched;
//! a second run moves nothing, a run after an interruption only the rest.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use netdisk::db::testing::TestDb;

use crate::protocol::{get_all, put_all};
use crate::support::*;
use crate::transfer::put_part_and_hang_up;

/// Every file under `dir` (but `skip`) with its bytes' MD5.
fn snapshot(dir: &Path, skip: &str) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, skip: &str, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == skip {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &path, skip, out);
            } else if meta.is_file() {
                out.insert(rel, md5(&fs::read(&path).unwrap()));
            } else {
                // The admin socket a killed server left.
                out.insert(rel, format!("{:?}", meta.file_type()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, skip, &mut out);
    out
}

fn migrate(data: &Path, db: &TestDb) -> String {
    let out = Command::new(bin())
        .args(["migrate", "--data"])
        .arg(data)
        .args(["--db", &db.url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// (path, size, md5) of every file of a user's tree, and the folders.
type Tree = (Vec<(String, u64, Option<String>)>, Vec<String>);

fn tree(c: &mut netdisk::client::Client) -> Tree {
    let list = c.list("", true).unwrap();
    let mut files: Vec<_> = list
        .files
        .into_iter()
        .map(|f| (f.name, f.size, f.md5))
        .collect();
    files.sort();
    let mut folders: Vec<_> = list.folders.into_iter().map(|f| f.name).collect();
    folders.sort();
    (files, folders)
}

#[test]
fn a_data_directory_moves_into_postgresql_and_serves_the_same_disk() {
    if on_db() {
        eprintln!("skipped: migrate reads a local data directory (it runs in the local pass)");
        return;
    }
    let Some(db) = TestDb::create("migrate") else {
        return;
    };
    let server = TestServer::start();
    let data = Arc::clone(&server.data);
    let big = bytes(3 << 20, 7);
    let mut alice = server.user("alice");
    put_all(&mut alice, "a.txt", b"hello");
    alice.mkdir("docs/2024").unwrap();
    alice.mkdir("empty").unwrap();
    put_all(&mut alice, "docs/2024/big.bin", &big);
    put_all(&mut alice, "报告 一.txt", "中文".as_bytes());
    put_all(&mut alice, "docs/zero", b"");
    let mut bob = server.user("bob");
    put_all(&mut bob, "b.txt", b"bob's");
    // An unfinished upload: 1 MiB of 2 staged.
    let half = bytes(2 << 20, 9);
    put_part_and_hang_up(
        &server,
        "bob",
        "half.bin",
        half.len() as u64,
        &half[..1 << 20],
    );
    let (alice_tree, bob_tree) = (tree(&mut alice), tree(&mut bob));
    drop((alice, bob));
    drop(server);
    let before = snapshot(data.path(), "blobs");

    let first = migrate(data.path(), &db);
    assert!(
        first.contains("moved 2 accounts (0 already there): 5 files (0 already there), 3 folders"),
        "{first}"
    );
    assert!(first.contains("1 unfinished uploads"), "{first}");
    // Nothing of the old directory changed; only blobs/ is new.
    assert_eq!(snapshot(data.path(), "blobs"), before);
    assert!(data.path().join("blobs").is_dir());

    // Again: everything is there already.
    let second = migrate(data.path(), &db);
    assert!(
        second.contains("moved 0 accounts (2 already there): 5 files (5 already there)"),
        "{second}"
    );
    // As after an interruption: a row and an unfinished upload missing.
    let mut pg = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    pg.batch_execute("DELETE FROM nodes WHERE path = 'docs/2024/big.bin'; DELETE FROM staged")
        .unwrap();
    let third = migrate(data.path(), &db);
    assert!(third.contains("5 files (4 already there)"), "{third}");
    assert!(third.contains("1 unfinished uploads"), "{third}");
    assert_eq!(snapshot(data.path(), "blobs"), before);

    // The same disk, served from the database.
    let server = TestServer::start_in(Arc::clone(&data), &["--db", &db.url]);
    let mut alice = server.login("alice");
    assert_eq!(tree(&mut alice), alice_tree);
    assert_eq!(get_all(&mut alice, "docs/2024/big.bin"), big);
    assert_eq!(get_all(&mut alice, "报告 一.txt"), "中文".as_bytes());
    let who = alice.whoami().unwrap();
    assert_eq!(who.used, 5 + big.len() as u64 + "中文".len() as u64);
    let mut bob = server.login("bob");
    assert_eq!(tree(&mut bob), bob_tree);
    // The unfinished upload resumes where it stopped.
    let offset = bob.put_begin("half.bin", half.len() as u64).unwrap();
    assert_eq!(offset, 1 << 20);
    bob.write_body(&half[1 << 20..]).unwrap();
    assert_eq!(bob.put_end(&md5(&half)).unwrap().md5, md5(&half));
    assert_eq!(get_all(&mut bob, "half.bin"), half);
    // Changes on the database leave the old directory as it was.
    put_all(&mut alice, "a.txt", b"changed");
    alice.rename("docs", "papers").unwrap();
    drop((alice, bob));
    drop(server);
    assert_eq!(snapshot(data.path(), "blobs"), before);
}

#[test]
fn migrate_refuses_what_is_not_a_data_directory_and_a_directory_in_use() {
    if on_db() {
        return;
    }
    let Some(db) = TestDb::create("migrate refusals") else {
        return;
    };
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["migrate", "--data"])
        .arg(empty.path())
        .args(["--db", &db.url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a netdisk data directory"), "{err}");
    assert_eq!(
        fs::read_dir(empty.path()).unwrap().count(),
        0,
        "nothing made"
    );

    let server = TestServer::start();
    server.user("alice");
    let out = Command::new(bin())
        .args(["migrate", "--data"])
        .arg(server.data.path())
        .args(["--db", &db.url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by a running netdisk server"), "{err}");
}
