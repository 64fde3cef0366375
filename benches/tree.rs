//! Folders (issue 17): listing a tree and a big folder, and deleting a
//! big folder, as the server's memory and the user's wait see them.

use std::fs;
use std::path::Path;
use std::sync::Barrier;
use std::thread;
use std::time::Instant;

use md5::{Digest, Md5};
use netdisk::client::Client;
use netdisk::commands::{self, delete, ls};
use netdisk::protocol::Password;
use serde_json::Value;

use super::{current_rss, mib, watch_rss, BenchServer, Row, Target, PASSWORD, USER};

/// The tree listed at once by [`CLIENTS`] clients: this many folders...
const FOLDERS: usize = 300;
/// ...of this many files each (45,000 in all).
const PER_FOLDER: usize = 150;
const CLIENTS: usize = 32;
/// Entries of the one big folder listed and deleted.
const BIG_FOLDER: usize = 50_000;

/// Writes an empty file at `path` with the digest record the server would
/// have given it.
fn plant(path: &Path, home: &Path, empty_md5: &str) {
    use std::os::unix::fs::MetadataExt;
    fs::write(path, b"").unwrap();
    let meta = fs::metadata(path).unwrap();
    let ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let record = format!("0 {ns} {empty_md5}\n");
    if xattr::set(path, "user.netdisk.md5", record.as_bytes()).is_err() {
        fs::write(home.join("digests").join(meta.ino().to_string()), record).unwrap();
    }
}

fn ls_call(c: &mut Client, path: &str, recursive: bool) -> (usize, usize) {
    let args = ls::Args {
        path: Some(path.to_string()),
        recursive: Some(recursive),
    };
    let r = c.call(&commands::request("ls", &args)).expect("ls");
    let count = |k: &str| r.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    (count("files"), count("folders"))
}

/// 32 clients list a tree of 45,000 files in 300 folders recursively at
/// once, twice; then one client lists a folder of 50,000 entries, and
/// deletes it recursively.
pub fn tree_listing(bin: &Path, work: &Path) -> (Vec<Row>, Vec<Target>) {
    let data = work.join("tree-data");
    let server = BenchServer::start(bin, &data);
    let mut c = Client::connect(&server.addr).expect("connect");
    c.register(USER, &Password::new(PASSWORD))
        .expect("register");
    let home = data.join("users").join(USER);
    let empty_md5 = netdisk::protocol::md5_hex(Md5::digest(b""));
    for d in 0..FOLDERS {
        let dir = home.join("files/tree").join(format!("folder {d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..PER_FOLDER {
            plant(
                &dir.join(format!("photo {f:04} 报告.jpg")),
                &home,
                &empty_md5,
            );
        }
    }
    let big = home.join("files/big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..BIG_FOLDER {
        plant(
            &big.join(format!("{i:06}{}", "x".repeat(100))),
            &home,
            &empty_md5,
        );
    }

    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| {
            let mut c = Client::connect(&server.addr).expect("connect");
            c.login(USER, &Password::new(PASSWORD)).expect("login");
            c
        })
        .collect();
    let pid = server.child.id();
    let before = current_rss(pid).unwrap_or(0);
    let watch = watch_rss(pid);
    let mut secs = 0.0f64;
    for _ in 0..2 {
        let go = Barrier::new(CLIENTS);
        let start = Instant::now();
        thread::scope(|s| {
            for c in &mut clients {
                let go = &go;
                s.spawn(move || {
                    go.wait();
                    let (files, folders) = ls_call(c, "tree", true);
                    assert_eq!((files, folders), (FOLDERS * PER_FOLDER, FOLDERS));
                });
            }
        });
        secs = secs.max(start.elapsed().as_secs_f64());
    }
    let tree_peak = watch.finish().max(server.peak_rss());

    let c = &mut clients[0];
    let start = Instant::now();
    assert_eq!(ls_call(c, "big", false), (BIG_FOLDER, 0));
    let big_secs = start.elapsed().as_secs_f64();
    let after_big = current_rss(pid).unwrap_or(0);

    let start = Instant::now();
    let args = delete::Args {
        name: "big".into(),
        recursive: Some(true),
    };
    c.call(&commands::request("delete", &args))
        .expect("delete -r");
    let delete_secs = start.elapsed().as_secs_f64();
    assert_eq!(ls_call(c, "", false), (0, 1), "only the tree is left");
    let who = c.whoami().expect("whoami");
    assert_eq!(who.files as usize, FOLDERS * PER_FOLDER);

    let label = format!(
        "{CLIENTS} x ls -r of {} files in {FOLDERS} folders",
        FOLDERS * PER_FOLDER
    );
    let rows = vec![
        Row::memory("server RSS before the tree listings", before),
        Row::memory(&format!("server peak RSS, {label}"), tree_peak)
            .note(format!("two rounds; the slower listed in {secs:.2} s")),
        Row::files("ls of one folder", BIG_FOLDER, 0, big_secs)
            .rss(after_big)
            .note(format!("{big_secs:.3} s; server RSS after it")),
        Row::files("rm -r of that folder", BIG_FOLDER, 0, delete_secs)
            .note(format!("{delete_secs:.3} s until the answer")),
    ];
    let targets = vec![
        Target::at_most(&format!("peak RSS, {label}, MiB"), mib(tree_peak), 300.0),
        Target::at_most(
            &format!("rm -r of {BIG_FOLDER} files, seconds the user waits"),
            delete_secs,
            1.0,
        ),
    ];
    (rows, targets)
}
