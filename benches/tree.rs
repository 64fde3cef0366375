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

/// Folders of the tree that goes up and down whole...
const TREE_FOLDERS: usize = 100;
/// ...files in each (10,000 in all)...
const TREE_PER_FOLDER: usize = 100;
/// ...of this size; beside a flat folder of this many.
const TREE_FILE: usize = 4096;
const FLAT_FILES: usize = 1000;

/// `put -r` and `get -r` of 10,000 files of 4 KiB in 100 folders, beside
/// `put` and `get` of 1,000 such files in one folder on the same server
/// in the same run, and beside `rsync -r` of the same tree when rsync is
/// installed. Target: the tree moves at 0.9× the flat rate or better.
pub fn tree_transfer(bin: &Path, work: &Path) -> (Vec<Row>, Vec<Target>) {
    let server = BenchServer::start(bin, &work.join("tree-transfer-data"));
    let mut c = Client::connect(&server.addr).expect("connect");
    c.register(USER, &Password::new(PASSWORD))
        .expect("register");
    let src = work.join("tree-src");
    let tree = src.join("tree");
    let flat = src.join("flat");
    let mut n = 0u64;
    let mut content = || {
        n += 1;
        let mut data = vec![0u8; TREE_FILE];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (n as usize * 131 + i * 7) as u8;
        }
        data
    };
    for d in 0..TREE_FOLDERS {
        let dir = tree.join(format!("d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..TREE_PER_FOLDER {
            fs::write(dir.join(format!("f{f:03}")), content()).unwrap();
        }
    }
    fs::create_dir_all(&flat).unwrap();
    let mut flat_args = vec!["put".to_string()];
    for f in 0..FLAT_FILES {
        let path = flat.join(format!("f{f:04}"));
        fs::write(&path, content()).unwrap();
        flat_args.push(path.display().to_string());
    }
    let count = TREE_FOLDERS * TREE_PER_FOLDER;
    let back = work.join("tree-back");
    fs::create_dir_all(&back).unwrap();

    let (flat_put, _) = server.client_owned(bin, &flat_args);
    let mut get_args = vec!["get".to_string()];
    get_args.extend((0..FLAT_FILES).map(|f| format!("f{f:04}")));
    get_args.extend(["-o".into(), back.join("flat").display().to_string()]);
    let (flat_get, _) = server.client_owned(bin, &get_args);
    let tree_str = tree.display().to_string();
    let (tree_put, _) = server.client(bin, &["put", "-r", &tree_str, "--as", "tree"]);
    let back_str = back.join("tree-get").display().to_string();
    let (tree_get, _) = server.client(bin, &["get", "-r", "tree", "-o", &back_str]);
    // Every file came back whole.
    let mut checked = 0;
    for d in 0..TREE_FOLDERS {
        for f in 0..TREE_PER_FOLDER {
            let rel = format!("d{d:03}/f{f:03}");
            let a = fs::read(tree.join(&rel)).unwrap();
            let b = fs::read(back.join("tree-get/tree").join(&rel))
                .unwrap_or_else(|e| panic!("{rel} did not come back: {e}"));
            assert!(a == b, "{rel} came back different");
            checked += 1;
        }
    }
    assert_eq!(checked, count);

    let flat_rate = (FLAT_FILES as f64 / flat_put, FLAT_FILES as f64 / flat_get);
    let tree_rate = (count as f64 / tree_put, count as f64 / tree_get);
    let mut rows = vec![
        Row::files("put, one folder", FLAT_FILES, TREE_FILE, flat_put),
        Row::files("get, one folder", FLAT_FILES, TREE_FILE, flat_get),
        Row::files("put -r, 100 folders", count, TREE_FILE, tree_put).note(format!(
            "{:.2}x the one-folder rate",
            tree_rate.0 / flat_rate.0
        )),
        Row::files("get -r, 100 folders", count, TREE_FILE, tree_get).note(format!(
            "{:.2}x the one-folder rate",
            tree_rate.1 / flat_rate.1
        )),
    ];
    if let Some(rsync) = super::Rsync::start(&work.join("rsync-tree"), std::time::Duration::ZERO) {
        let url = format!("rsync://{}/bench/tree/", rsync.direct);
        let put = rsync.run(&format!("{tree_str}/"), &url);
        let get = rsync.run(&url, &format!("{}/", back.join("rsync").display()));
        rows.push(Row::files(
            "rsync -r up, 100 folders",
            count,
            TREE_FILE,
            put,
        ));
        rows.push(Row::files(
            "rsync -r down, 100 folders",
            count,
            TREE_FILE,
            get,
        ));
    } else {
        println!("rsync is not installed: its tree rows are skipped");
    }
    let targets = vec![
        Target::at_least(
            "put -r tree / one-folder files/s",
            tree_rate.0 / flat_rate.0,
            0.9,
        ),
        Target::at_least(
            "get -r tree / one-folder files/s",
            tree_rate.1 / flat_rate.1,
            0.9,
        ),
    ];
    fs::remove_dir_all(&src).ok();
    fs::remove_dir_all(&back).ok();
    (rows, targets)
}
