//! `just bench`: transfer throughput against its ceilings, measured in one run.
//!
//! Starts the release server on loopback with a temp data dir and drives it
//! with the release client binary. Prints one table and writes the figures
//! to `target/bench.json`. Every transferred file's MD5 is checked: a fast
//! wrong answer is a failure.
//!
//! Usage: `cargo bench --bench transfer [-- --quick | --listing | --tree | --load | --attack | --dav]
//! [--delay-ms N]` (after `cargo build --release`); `--quick` shrinks
//! every size to finish in well under a minute; the latency rows run
//! through a proxy on loopback that delays every byte by N ms each way
//! (default 10: a 20 ms round trip), since no netem is assumed; rsync's
//! rows (daemon on loopback, `--checksum-choice=md5`) appear when `rsync`
//! is installed; `--small` runs only the small-file rows (loopback,
//! latency, rsync); `--listing` runs only the last section, the
//! server's memory while 32 clients list a folder of 45,000 files with
//! 255-byte names at once; `--load`, only the connection-load run: a fresh
//! client's latency while 10,000 idle, logged-in connections (half TLS,
//! from 127.0.0.2–41) wait on a server with 8 workers; `--tree`, only
//! `put -r`/`get -r` of 10,000 files in 100 folders beside 1,000 in one;
//! `--attack`, only
//! the attack run (benches/attack.rs): an honest client's latency and big
//! transfers beside an attacker holding bodies open; `--dav`, only the
//! WebDAV run (benches/dav.rs): rclone over `/dav/` beside the native
//! client, and against dufs when it is on PATH. Everything lives in a temporary folder under
//! `$TMPDIR`: `TMPDIR=/dev/shm` takes the disk out of the measurement.

use std::fs;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use netdisk::client::Client;
use netdisk::protocol::Password;
use serde_json::json;

mod attack;
mod dav;
mod engines;
mod flood;
mod load;
#[path = "../tests/it/serve.rs"]
mod serve;
mod tree;

const MIB: u64 = 1 << 20;
/// Rounds of the one-file put and get.
const ROUNDS: usize = 3;
const USER: &str = "bench";
const PASSWORD: &str = "benchmark password";

struct Sizes {
    big: u64,
    small_count: usize,
    small_size: usize,
    clients: usize,
    client_size: u64,
}

/// The sizes of a full run, or of a quick one.
fn sizes(quick: bool) -> Sizes {
    if quick {
        Sizes {
            big: 256 * MIB,
            small_count: 300,
            small_size: 4096,
            clients: 8,
            client_size: 16 * MIB,
        }
    } else {
        Sizes {
            big: 1024 * MIB,
            small_count: 1000,
            small_size: 4096,
            clients: 16,
            client_size: 64 * MIB,
        }
    }
}

fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var_os("QUICK").is_some();
    let idle_count = if quick { 1000 } else { 10_000 };
    if std::env::args().any(|a| a == "--load") {
        let work = tempfile::Builder::new()
            .prefix("netdisk-bench")
            .tempdir()
            .expect("temp dir");
        let (rows, targets) = load::connection_load(&binary(), work.path(), idle_count, 200);
        print_table(&rows, quick);
        return print_targets(&targets);
    }
    if std::env::args().any(|a| a == "--tree") {
        let work = tempfile::Builder::new()
            .prefix("netdisk-bench")
            .tempdir()
            .expect("temp dir");
        let (rows, targets) = tree::tree_transfer(&binary(), work.path());
        print_table(&rows, false);
        return print_targets(&targets);
    }
    if std::env::args().any(|a| a == "--attack") {
        let work = tempfile::Builder::new()
            .prefix("netdisk-bench")
            .tempdir()
            .expect("temp dir");
        let (rows, targets) = attack::attacks(&binary(), work.path(), quick);
        print_table(&rows, quick);
        return print_targets(&targets);
    }
    if std::env::args().any(|a| a == "--dav") {
        let work = tempfile::Builder::new()
            .prefix("netdisk-bench")
            .tempdir()
            .expect("temp dir");
        let (rows, targets) = dav::dav(&binary(), work.path(), quick);
        print_table(&rows, quick);
        return print_targets(&targets);
    }
    if std::env::args().any(|a| a == "--db") {
        let work = tempfile::Builder::new()
            .prefix("netdisk-bench")
            .tempdir()
            .expect("temp dir");
        let (rows, targets) = engines::engines(&binary(), work.path(), quick);
        print_table(&rows, quick);
        return print_targets(&targets);
    }
    if std::env::args().any(|a| a == "--listing") {
        let work = tempfile::Builder::new()
            .prefix("netdisk-bench")
            .tempdir()
            .expect("temp dir");
        let (mut rows, mut targets) = listing_memory(&binary(), work.path());
        let (tree_rows, tree_targets) = tree::tree_listing(&binary(), work.path());
        rows.extend(tree_rows);
        targets.extend(tree_targets);
        print_table(&rows, false);
        return print_targets(&targets);
    }
    let sizes = sizes(quick);
    if std::env::args().any(|a| a == "--small") {
        let work = tempfile::Builder::new()
            .prefix("netdisk-bench")
            .tempdir()
            .expect("temp dir");
        let server = BenchServer::start(&binary(), &work.path().join("data"));
        let small_dir = work.path().join("small");
        let (rows, targets) = small_files(&server, &binary(), work.path(), &small_dir, &sizes);
        print_table(&rows, quick);
        return print_targets(&targets);
    }
    let warmed = warm_memory(if quick { 2 << 30 } else { 8 << 30 });
    println!(
        "touched {:.1} GiB of memory first, in {:.2} s",
        warmed.0 as f64 / (1u64 << 30) as f64,
        warmed.1
    );
    let bin = binary();
    let work = tempfile::Builder::new()
        .prefix("netdisk-bench")
        .tempdir()
        .expect("temp dir");
    let mut rows: Vec<Row> = Vec::new();

    let md5_ceiling = md5_throughput(sizes.big);
    rows.push(Row::rate(
        "MD5, one core, in memory",
        sizes.big,
        md5_ceiling,
        None,
    ));
    let tcp = loopback_copy(sizes.big);
    rows.push(Row::rate("loopback TCP copy", sizes.big, tcp, None));
    let disk = durable_write(&work.path().join("disk.bin"), sizes.big);
    rows.push(Row::rate(
        "disk: write + fsync a new file",
        sizes.big,
        disk,
        None,
    ));

    let server = BenchServer::start(&bin, &work.path().join("data"));
    let mut c = Client::connect(&server.addr).expect("connect");
    c.register(USER, &Password::new(PASSWORD))
        .expect("register");
    c.login(USER, &Password::new(PASSWORD)).expect("login");

    // One big file, up and down.
    let big = work.path().join("big.bin");
    let big_md5 = write_random(&big, sizes.big);
    // Three rounds; the median of each direction counts. Plaintext and
    // TLS take turns within a round, so that a machine slowing down over
    // the run (a disk's write budget running out, say) weighs on both
    // alike.
    let down = work.path().join("down.bin");
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    let (mut put_rss, mut get_rss) = (0, 0);
    let fp = load::fingerprint(&bin, &work.path().join("data"));
    let known = work.path().join("known_servers");
    let tls_args = |cmd: &[&str]| {
        let mut v = vec!["--tls", "--trust", fp.as_str()];
        v.extend_from_slice(cmd);
        v.into_iter().map(str::to_string).collect::<Vec<String>>()
    };
    let tls_env = [("NETDISK_KNOWN_SERVERS", known.as_path())];
    let (mut tls_puts, mut tls_gets) = (Vec::new(), Vec::new());
    // rsync with MD5 (as the target has it) right before each plaintext
    // put, and with --fsync (as durable as a put) after the TLS put, if
    // installed: a round writes 4 GiB, and neighbours see the same disk.
    let rsync = Rsync::start(&work.path().join("rsync"), delay_arg());
    let (mut rsync_puts, mut rsync_synced) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        if let Some(r) = &rsync {
            rsync_puts.push(r.put_file(&big, &[]));
        }
        let (secs, rss) = server.client(&bin, &["put", path_str(&big)]);
        check_remote(&mut c, "big.bin", &big_md5);
        puts.push(secs);
        put_rss = put_rss.max(rss);
        let args = tls_args(&["put", path_str(&big)]);
        let (secs, _) = server.client_at(&server.addr, &bin, &args, &tls_env);
        check_remote(&mut c, "big.bin", &big_md5);
        tls_puts.push(secs);
        if let Some(r) = &rsync {
            rsync_synced.push(r.put_file(&big, &["--fsync"]));
        }
        let args = tls_args(&["get", "big.bin", "--overwrite", "-o", path_str(&down)]);
        let (secs, _) = server.client_at(&server.addr, &bin, &args, &tls_env);
        assert_eq!(file_md5(&down), big_md5, "downloaded file differs");
        fs::remove_file(&down).ok();
        tls_gets.push(secs);
        let (secs, rss) = server.client(
            &bin,
            &["get", "big.bin", "--overwrite", "-o", path_str(&down)],
        );
        assert_eq!(file_md5(&down), big_md5, "downloaded file differs");
        fs::remove_file(&down).ok();
        gets.push(secs);
        get_rss = get_rss.max(rss);
    }
    let (put_secs, get_secs) = (median(&mut puts), median(&mut gets));
    let put_rate = sizes.big as f64 / put_secs;
    let get_rate = sizes.big as f64 / get_secs;
    let of_disk = |rate: f64| format!("{:.2} x disk write + fsync", rate / disk);
    let spread = |v: &[f64]| {
        let rates: Vec<String> = v
            .iter()
            .map(|s| format!("{:.0}", sizes.big as f64 / s / 1e6))
            .collect();
        format!("; runs {} MB/s", rates.join(", "))
    };
    rows.push(
        Row::rate(
            "put 1 file (median of 3)",
            sizes.big,
            put_rate,
            Some(md5_ceiling),
        )
        .rss(put_rss)
        .note(of_disk(put_rate) + &spread(&puts)),
    );
    rows.push(
        Row::rate(
            "get 1 file (median of 3)",
            sizes.big,
            get_rate,
            Some(md5_ceiling),
        )
        .rss(get_rss)
        .note(of_disk(get_rate) + &spread(&gets)),
    );
    let tls_put_rate = sizes.big as f64 / median(&mut tls_puts);
    let tls_get_rate = sizes.big as f64 / median(&mut tls_gets);
    rows.push(
        Row::rate(
            "TLS put 1 file (median of 3)",
            sizes.big,
            tls_put_rate,
            Some(md5_ceiling),
        )
        .note(format!("{:.2} x plaintext put", tls_put_rate / put_rate)),
    );
    rows.push(
        Row::rate(
            "TLS get 1 file (median of 3)",
            sizes.big,
            tls_get_rate,
            Some(md5_ceiling),
        )
        .note(format!("{:.2} x plaintext get", tls_get_rate / get_rate)),
    );

    let mut rsync_big_rate = None;
    if rsync.is_some() {
        let rate = sizes.big as f64 / median(&mut rsync_puts);
        rsync_big_rate = Some(rate);
        rows.push(
            Row::rate(
                "rsync put 1 file (median of 3)",
                sizes.big,
                rate,
                Some(md5_ceiling),
            )
            .note(format!(
                "rsync daemon, --checksum-choice=md5, no fsync{}",
                spread(&rsync_puts)
            )),
        );
        let rate = sizes.big as f64 / median(&mut rsync_synced);
        rows.push(
            Row::rate(
                "rsync --fsync put 1 file (median)",
                sizes.big,
                rate,
                Some(md5_ceiling),
            )
            .note(format!(
                "the same, each file synced{}",
                spread(&rsync_synced)
            )),
        );
    } else {
        println!("rsync is not installed: its rows are skipped");
    }
    drop(rsync);

    rows.extend(curl_download(
        &server,
        work.path(),
        sizes.big,
        &big_md5,
        md5_ceiling,
    ));
    let server_rss = server.peak_rss();

    let delay = delay_arg();
    let rtt = format!("{} ms RTT", 2 * delay.as_millis());
    let small_dir = work.path().join("small");
    let (small_rows, small_targets) = small_files(&server, &bin, work.path(), &small_dir, &sizes);
    rows.extend(small_rows);
    let proxy = DelayProxy::start(&server.addr, delay);
    let (secs, _) = server.client_at(&proxy.addr, &bin, &strings(&["put", path_str(&big)]), &[]);
    check_remote(&mut c, "big.bin", &big_md5);
    rows.push(Row::rate(
        &format!("put 1 file, {rtt}"),
        sizes.big,
        sizes.big as f64 / secs,
        Some(md5_ceiling),
    ));
    let args = strings(&["get", "big.bin", "--overwrite", "-o", path_str(&down)]);
    let (secs, _) = server.client_at(&proxy.addr, &bin, &args, &[]);
    assert_eq!(file_md5(&down), big_md5, "downloaded file differs");
    fs::remove_file(&down).ok();
    rows.push(Row::rate(
        &format!("get 1 file, {rtt}"),
        sizes.big,
        sizes.big as f64 / secs,
        Some(md5_ceiling),
    ));
    drop(proxy);

    // Concurrent clients.
    let (total, slowest, single_put_get) = concurrent(&server, &bin, work.path(), &sizes);
    rows.push(
        Row::rate(
            &format!("{} clients put+get", sizes.clients),
            sizes.client_size * sizes.clients as u64 * 2,
            total,
            Some(md5_ceiling),
        )
        .note(format!(
            "slowest client {slowest:.2} s; one client alone just before: {:.0} MB/s",
            single_put_get / 1e6
        )),
    );
    let server_rss = server_rss.max(server.peak_rss());
    rows.push(Row::memory("server peak RSS", server_rss));
    drop(server);

    let (listing_rows, listing_targets) = listing_memory(&bin, work.path());
    rows.extend(listing_rows);
    let (mut tree_rows, mut tree_targets) = tree::tree_listing(&bin, work.path());
    let (moved_rows, moved_targets) = tree::tree_transfer(&bin, work.path());
    tree_rows.extend(moved_rows);
    tree_targets.extend(moved_targets);
    rows.extend(tree_rows);
    let (load_rows, load_targets) = load::connection_load(&bin, work.path(), idle_count, 200);
    rows.extend(load_rows);

    print_table(&rows, quick);
    let client_rss = put_rss.max(get_rss);
    let targets = [
        Target::at_least("get 1 file, x MD5", get_rate / md5_ceiling, 0.85),
        Target::at_least("put 1 file, x MD5", put_rate / md5_ceiling, 0.65),
        Target::at_most("server peak RSS, MiB", mib(server_rss), 64.0),
        Target::at_most("client peak RSS, MiB", mib(client_rss), 64.0),
        Target::at_least(
            &format!("{} clients vs one client's put+get", sizes.clients),
            total / single_put_get,
            0.80,
        ),
    ];
    let tls_targets = [
        Target::at_least("TLS get vs plaintext get", tls_get_rate / get_rate, 0.80),
        Target::at_least("TLS put vs plaintext put", tls_put_rate / put_rate, 0.85),
    ];
    let versus_rsync =
        rsync_big_rate.map(|r| Target::at_least("put 1 file vs rsync with MD5", put_rate / r, 1.0));
    let targets: Vec<Target> = targets
        .into_iter()
        .chain(small_targets)
        .chain(tls_targets)
        .chain(versus_rsync)
        .chain(listing_targets)
        .chain(tree_targets)
        .chain(load_targets)
        .collect();
    write_json(&rows, quick, &targets);
    print_targets(&targets)
}

/// Many small files in one invocation each way: three rounds on
/// loopback (the slowest counts, so that a figure that moves from run to
/// run shows), one through the delay proxy, one over files just deleted,
/// and rsync's on both links if it is installed.
///
/// Each measured round uploads into a new account and downloads into a
/// new folder, as a user sending a new folder would, and the copies are
/// deleted only at the end. Deleting between rounds is what made the
/// loopback put move between 850 and 3,300 files/s: on ext4 without a
/// journal (this machine's disk) every new inode is searched for past the
/// inodes freed in the last minute, one inode-table lookup each, so a run
/// right after a thousand deletions pays for them. The round over just
/// deleted files shows that cost; it is reported, not a target.
fn small_files(
    server: &BenchServer,
    bin: &Path,
    work: &Path,
    dir: &Path,
    sizes: &Sizes,
) -> (Vec<Row>, Vec<Target>) {
    let small = SmallSet::write(dir, sizes.small_count, sizes.small_size);
    let backs = work.join("back");
    let (count, size) = (sizes.small_count, sizes.small_size);
    let ceiling = durable_small_files(&backs.join("ceiling"), count, size);
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let user = format!("small{round}");
        let (put, get) = small.round(server, &server.addr, bin, &user, &backs.join(&user));
        puts.push(put);
        gets.push(get);
    }
    let runs = |v: &[f64]| {
        let r: Vec<String> = v
            .iter()
            .map(|s| format!("{:.0}", count as f64 / s))
            .collect();
        format!("slowest of 3; runs {} files/s", r.join(", "))
    };
    let mut rows = vec![
        Row::files("disk: create + fsync + rename", count, size, ceiling)
            .note("one after another, then one folder sync: the disk's pace".into()),
    ];
    // A put row and a get row of the same kind: "{who}put {what}".
    let mut pair = |who: &str, what: &str, (put, get): (f64, f64), notes: (String, String)| {
        rows.push(Row::files(&format!("{who}put {what}"), count, size, put).note(notes.0));
        rows.push(Row::files(&format!("{who}get {what}"), count, size, get).note(notes.1));
    };
    pair(
        "",
        "small files",
        (max(&puts), max(&gets)),
        (runs(&puts), runs(&gets)),
    );
    let none = || (String::new(), String::new());
    let delay = delay_arg();
    let rtt = format!("{} ms RTT", 2 * delay.as_millis());
    let proxy = DelayProxy::start(&server.addr, delay);
    let (lat_put, lat_get) =
        small.round(server, &proxy.addr, bin, "delayed", &backs.join("delayed"));
    drop(proxy);
    pair(
        "",
        &format!("small files, {rtt}"),
        (lat_put, lat_get),
        none(),
    );
    // The first round's account again, its files deleted first, and its
    // copies deleted before they come back: the churn case.
    let again = backs.join("again");
    fs::remove_dir_all(backs.join("small0")).ok();
    let churn = small.round(server, &server.addr, bin, "small0", &again);
    let note = "right after deleting the same files on both sides".to_string();
    pair("", "small files again", churn, (note.clone(), note));
    let mut rsync_direct = None;
    match Rsync::start(&work.join("rsync-small"), delay) {
        Some(r) => {
            let direct = r.small(dir, &backs.join("rsync"), false);
            rsync_direct = Some(direct);
            pair("rsync ", "small files", direct, none());
            let delayed = r.small(dir, &backs.join("rsync-delayed"), true);
            pair("rsync ", &format!("small files, {rtt}"), delayed, none());
        }
        None => println!("rsync is not installed: its small-file rows are skipped"),
    }
    fs::remove_dir_all(&backs).ok();
    let rate = |secs: f64| count as f64 / secs;
    // Against rsync with MD5 in the same run: the slowest of our rounds
    // against rsync's one.
    let versus = rsync_direct.into_iter().flat_map(|(put, get)| {
        [
            Target::at_least("put small files vs rsync with MD5", put / max(&puts), 1.0),
            Target::at_least("get small files vs rsync with MD5", get / max(&gets), 1.0),
        ]
    });
    let targets = vec![
        Target::at_least("put small files, files/s", rate(max(&puts)), 5000.0),
        Target::at_least("get small files, files/s", rate(max(&gets)), 5000.0),
        Target::at_least(
            &format!("put small files, {rtt}, files/s"),
            rate(lat_put),
            3000.0,
        ),
        Target::at_least(
            &format!("get small files, {rtt}, files/s"),
            rate(lat_get),
            3000.0,
        ),
    ]
    .into_iter()
    .chain(versus)
    .collect();
    (rows, targets)
}

/// Seconds to make `count` new files of `size` bytes durable in the new
/// folder `dir` the simplest way: each written under a temporary name,
/// synced and renamed, then the folder synced. What the disk allows a
/// server that answers only once a file is durable. The files stay, as
/// deleting them would slow what comes next (see [`small_files`]).
fn durable_small_files(dir: &Path, count: usize, size: usize) -> f64 {
    fs::create_dir_all(dir).unwrap();
    let data = pseudo_random(size, 7);
    let start = Instant::now();
    for i in 0..count {
        let tmp = dir.join(format!(".s{i:05}.part"));
        let mut f = fs::File::create(&tmp).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        fs::rename(&tmp, dir.join(format!("s{i:05}.bin"))).unwrap();
    }
    fs::File::open(dir).unwrap().sync_all().unwrap();
    start.elapsed().as_secs_f64()
}

/// Files in the listed folder, and the clients listing it at once.
const LISTED_FILES: usize = 45_000;
const LISTING_CLIENTS: usize = 32;

/// A fresh server with one user holding [`LISTED_FILES`] empty files with
/// 255-byte names (and their digests, as if put through the protocol);
/// [`LISTING_CLIENTS`] connections log in, then all list at once, twice.
/// Reports the server's peak RSS and its RSS once every listing of a round
/// has arrived.
fn listing_memory(bin: &Path, work: &Path) -> (Vec<Row>, Vec<Target>) {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Barrier;

    let data = work.join("listing-data");
    let server = BenchServer::start(bin, &data);
    let mut c = Client::connect(&server.addr).expect("connect");
    c.register(USER, &Password::new(PASSWORD))
        .expect("register");
    let home = data.join("users").join(USER);
    let empty_md5 = netdisk::protocol::md5_hex(Md5::digest(b""));
    for i in 0..LISTED_FILES {
        let name = format!("{i:06}{}", "x".repeat(249));
        let path = home.join("files").join(&name);
        fs::write(&path, b"").unwrap();
        let meta = fs::metadata(&path).unwrap();
        let ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let record = format!("0 {ns} {empty_md5}\n");
        // Where the server records it, or where it would without
        // attributes.
        if xattr::set(&path, "user.netdisk.md5", record.as_bytes()).is_err() {
            fs::write(home.join("digests").join(meta.ino().to_string()), record).unwrap();
        }
    }
    let mut clients: Vec<Client> = (0..LISTING_CLIENTS)
        .map(|_| {
            let mut c = Client::connect(&server.addr).expect("connect");
            c.login(USER, &Password::new(PASSWORD)).expect("login");
            c
        })
        .collect();
    let pid = server.child.id();
    let before = current_rss(pid).unwrap_or(0);
    let watch = watch_rss(pid);
    // Twice: memory the first round left behind would add to the second.
    let mut afters = Vec::new();
    let mut secs = 0.0f64;
    for _ in 0..2 {
        let go = Barrier::new(LISTING_CLIENTS);
        let start = Instant::now();
        thread::scope(|s| {
            for c in &mut clients {
                let go = &go;
                let empty_md5 = &empty_md5;
                s.spawn(move || {
                    go.wait();
                    let files = c.ls().expect("ls");
                    assert_eq!(files.len(), LISTED_FILES);
                    assert!(files.iter().all(|f| f.md5.as_deref() == Some(empty_md5)));
                });
            }
        });
        secs = secs.max(start.elapsed().as_secs_f64());
        afters.push(current_rss(pid).unwrap_or(0));
    }
    let peak = watch.finish().max(server.peak_rss());
    let after = afters.iter().copied().max().unwrap_or(0);
    let label = format!("{LISTING_CLIENTS} x ls of {LISTED_FILES} files");
    let rows = vec![
        Row::memory("server RSS before the listings", before),
        Row::memory(&format!("server peak RSS, {label}"), peak)
            .note(format!("two rounds; the slower listed in {secs:.2} s")),
        Row::memory("server RSS after the listings", after).note(format!(
            "after each round: {}",
            afters
                .iter()
                .map(|b| format!("{:.0} MiB", mib(*b)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    ];
    let targets = vec![
        Target::at_most(&format!("peak RSS, {label}, MiB"), mib(peak), 300.0),
        Target::at_most("RSS after those listings, MiB", mib(after), 100.0),
    ];
    (rows, targets)
}

fn current_rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The delay each way of the latency rows: `--delay-ms N`, default 10.
fn delay_arg() -> Duration {
    let args: Vec<String> = std::env::args().collect();
    let ms = args
        .iter()
        .position(|a| a == "--delay-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    Duration::from_millis(ms)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// A goal from the performance issue, and how this run did against it.
struct Target {
    what: String,
    measured: f64,
    bound: f64,
    /// Whether `measured` must reach `bound` (else stay under it).
    floor: bool,
}

impl Target {
    fn at_least(what: &str, measured: f64, bound: f64) -> Target {
        Target {
            what: what.into(),
            measured,
            bound,
            floor: true,
        }
    }

    fn at_most(what: &str, measured: f64, bound: f64) -> Target {
        Target {
            floor: false,
            ..Target::at_least(what, measured, bound)
        }
    }

    fn met(&self) -> bool {
        if self.floor {
            self.measured >= self.bound
        } else {
            self.measured < self.bound
        }
    }
}

/// Prints the verdicts; a missed target makes the bench exit 1, so that a
/// script can tell.
fn print_targets(targets: &[Target]) -> ExitCode {
    println!();
    println!(
        "| {:<40} | {:>9} | {:>9} | verdict",
        "target", "measured", "goal"
    );
    println!("|{}|", "-".repeat(80));
    for t in targets {
        let goal = format!("{}{}", if t.floor { ">= " } else { "< " }, fmt_num(t.bound));
        let verdict = if t.met() {
            "met".to_string()
        } else {
            format!("NOT met (gap {})", fmt_num((t.bound - t.measured).abs()))
        };
        println!(
            "| {:<40} | {:>9} | {:>9} | {verdict}",
            t.what,
            fmt_num(t.measured),
            goal
        );
    }
    let missed = targets.iter().filter(|t| !t.met()).count();
    if missed == 0 {
        ExitCode::SUCCESS
    } else {
        println!("{missed} of {} targets missed", targets.len());
        ExitCode::FAILURE
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// One line of the table.
struct Row {
    what: String,
    bytes: u64,
    rate_mb_s: Option<f64>,
    files_s: Option<f64>,
    ratio: Option<f64>,
    rss: Option<u64>,
    note: String,
}

impl Row {
    fn rate(what: &str, bytes: u64, rate: f64, ceiling: Option<f64>) -> Row {
        Row {
            what: what.into(),
            bytes,
            rate_mb_s: Some(rate / 1e6),
            files_s: None,
            ratio: ceiling.map(|c| rate / c),
            rss: None,
            note: String::new(),
        }
    }

    fn files(what: &str, count: usize, size: usize, secs: f64) -> Row {
        Row {
            what: format!("{what} ({count} x {} KiB)", size / 1024),
            bytes: (count * size) as u64,
            rate_mb_s: None,
            files_s: Some(count as f64 / secs),
            ratio: None,
            rss: None,
            note: String::new(),
        }
    }

    fn memory(what: &str, rss: u64) -> Row {
        Row {
            what: what.into(),
            bytes: 0,
            rate_mb_s: None,
            files_s: None,
            ratio: None,
            rss: Some(rss),
            note: String::new(),
        }
    }

    fn rss(mut self, rss: u64) -> Row {
        self.rss = Some(rss);
        self
    }

    fn note(mut self, note: String) -> Row {
        self.note = note;
        self
    }
}

fn print_table(rows: &[Row], quick: bool) {
    let opt = |v: Option<f64>, w: usize, p: usize| {
        v.map_or_else(|| format!("{:>w$}", "-"), |v| format!("{v:>w$.p$}"))
    };
    println!();
    println!(
        "netdisk transfer benchmark{}",
        if quick { " (quick)" } else { "" }
    );
    println!(
        "| {:<34} | {:>9} | {:>9} | {:>9} | {:>8} | {:>10} | note",
        "measurement", "MiB", "MB/s", "files/s", "x MD5", "client RSS"
    );
    println!("|{}|", "-".repeat(110));
    for r in rows {
        let rss = r
            .rss
            .map_or_else(|| format!("{:>10}", "-"), |b| format!("{:>7} MiB", b / MIB));
        println!(
            "| {:<34} | {:>9} | {} | {} | {} | {} | {}",
            r.what,
            if r.bytes > 0 {
                (r.bytes / MIB).to_string()
            } else {
                "-".into()
            },
            opt(r.rate_mb_s, 9, 1),
            opt(r.files_s, 9, 0),
            opt(r.ratio, 8, 2),
            rss,
            r.note
        );
    }
}

fn write_json(rows: &[Row], quick: bool, targets: &[Target]) {
    let targets: Vec<_> = targets
        .iter()
        .map(|t| {
            json!({
                "target": t.what, "measured": t.measured, "bound": t.bound,
                "at_least": t.floor, "met": t.met(),
            })
        })
        .collect();
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "measurement": r.what, "bytes": r.bytes, "mb_per_s": r.rate_mb_s,
                "files_per_s": r.files_s, "ratio_to_md5": r.ratio, "peak_rss_bytes": r.rss,
                "note": r.note,
            })
        })
        .collect();
    let doc = json!({ "quick": quick, "rows": rows, "targets": targets });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench.json");
    fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).expect("write bench.json");
    println!("\nfigures written to {}", path.display());
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NETDISK_BIN") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/netdisk");
    assert!(p.exists(), "build the client first: cargo build --release");
    p
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Touches up to `want` bytes of memory (at most a third of what is
/// available) and frees it; returns the bytes and the seconds it took.
///
/// On a virtual machine whose memory the host backs lazily, the first
/// write to each page of guest memory costs a trip to the host: about a
/// second per GiB on the machine this was written on. Every new page of
/// file cache a transfer fills would pay it once, so a run on a freshly
/// booted guest would measure the host's paging rather than netdisk. The
/// kernel hands recently freed pages out first, so touching memory once
/// here lets the transfers run on memory as warm as a long-running
/// machine's. On other machines this costs little.
fn warm_memory(want: u64) -> (u64, f64) {
    let available = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024);
    let total = want.min(available / 3);
    let start = Instant::now();
    let mut held = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(256 * MIB) as usize;
        let mut chunk = vec![0u8; n];
        for i in (0..n).step_by(4096) {
            chunk[i] = 1;
        }
        held.push(std::hint::black_box(chunk));
        left -= n as u64;
    }
    drop(held);
    (total, start.elapsed().as_secs_f64())
}

/// MD5 throughput of one core over `len` bytes held in memory, bytes/s.
fn md5_throughput(len: u64) -> f64 {
    let data = pseudo_random(len as usize, 7);
    let start = Instant::now();
    let d = Md5::digest(&data);
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(d);
    len as f64 / secs
}

/// A plain loopback copy: one thread writes `len` bytes, one reads; bytes/s.
fn loopback_copy(len: u64) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let writer = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let buf = vec![0x5au8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            s.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
    });
    let (mut s, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut got = 0u64;
    while got < len {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "loopback writer stopped early");
        got += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    writer.join().unwrap();
    len as f64 / secs
}

/// Writing `len` bytes to a new file and fsyncing it, as a durable upload
/// must; bytes/s. The file is removed afterwards.
fn durable_write(path: &Path, len: u64) -> f64 {
    let buf = pseudo_random(1 << 20, 3);
    let start = Instant::now();
    let mut f = fs::File::create(path).unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    fs::remove_file(path).unwrap();
    len as f64 / secs
}

/// The big file downloaded over HTTP by curl (the web front end, signed in
/// as the bench user), three rounds beside the native `get` of this run;
/// `None`, with a note, where curl is missing.
fn curl_download(
    server: &BenchServer,
    work: &Path,
    size: u64,
    md5: &str,
    ceiling: f64,
) -> Option<Row> {
    if Command::new("curl").arg("--version").output().is_err() {
        println!("curl not found: no HTTP download row");
        return None;
    }
    let base = format!("http://{}", server.addr);
    let jar = work.join("curl-cookies");
    let login = json!({"user": USER, "password": PASSWORD}).to_string();
    let signed_in = Command::new("curl")
        .args(["-sSf", "-o", "/dev/null", "-c"])
        .arg(&jar)
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", "X-Netdisk-CSRF: bench", "--data", &login])
        .arg(format!("{base}/api/login"))
        .status()
        .expect("run curl");
    assert!(signed_in.success(), "curl could not sign in");
    let out = work.join("curl-down.bin");
    let mut secs = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let got = Command::new("curl")
            .args(["-sSf", "-b"])
            .arg(&jar)
            .arg("-o")
            .arg(&out)
            .arg(format!("{base}/api/files/big.bin"))
            .status()
            .expect("run curl");
        secs.push(start.elapsed().as_secs_f64());
        assert!(got.success(), "curl download failed");
        assert_eq!(file_md5(&out), md5, "curl downloaded different bytes");
        fs::remove_file(&out).ok();
    }
    let runs: Vec<String> = secs
        .iter()
        .map(|s| format!("{:.0}", size as f64 / s / 1e6))
        .collect();
    let rate = size as f64 / median(&mut secs);
    let row = Row::rate("curl HTTP get 1 file (median of 3)", size, rate, None);
    Some(row.note(format!(
        "{:.2} x MD5 with no digest on the way (checked after); runs {} MB/s",
        rate / ceiling,
        runs.join(", ")
    )))
}

struct BenchServer {
    child: Child,
    addr: String,
}

impl BenchServer {
    fn start(bin: &Path, data: &Path) -> BenchServer {
        BenchServer::start_with(bin, data, &["--workers", "40"])
    }

    fn start_with(bin: &Path, data: &Path, extra: &[&str]) -> BenchServer {
        BenchServer::start_env(bin, data, extra, &[])
    }

    fn start_env(bin: &Path, data: &Path, extra: &[&str], env: &[(&str, &str)]) -> BenchServer {
        let mut child = serve::serve_args(&mut Command::new(bin), data)
            .envs(env.iter().copied())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        let addr = serve::ready(&mut BufReader::new(child.stdout.take().unwrap()))
            .expect("server ready line");
        BenchServer { child, addr }
    }

    fn peak_rss(&self) -> u64 {
        peak_rss(self.child.id()).unwrap_or(0)
    }

    fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("NETDISK_SERVER", &self.addr)
            .env("NETDISK_USER", USER)
            .env("NETDISK_PASSWORD", PASSWORD)
            .arg("-q")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs the client; returns seconds and its peak resident memory.
    fn client(&self, bin: &Path, args: &[&str]) -> (f64, u64) {
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.client_owned(bin, &owned)
    }

    fn client_owned(&self, bin: &Path, args: &[String]) -> (f64, u64) {
        self.client_at(&self.addr, bin, args, &[])
    }

    /// Runs the client against `addr` (this server, or a proxy in front of
    /// it) with extra environment variables.
    fn client_at(
        &self,
        addr: &str,
        bin: &Path,
        args: &[String],
        env: &[(&str, &Path)],
    ) -> (f64, u64) {
        let start = Instant::now();
        let mut cmd = self.command(bin);
        cmd.env("NETDISK_SERVER", addr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.args(args).spawn().expect("client");
        let rss = watch_rss(child.id());
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).ok();
        let status = child.wait().unwrap();
        let secs = start.elapsed().as_secs_f64();
        let peak = rss.finish();
        assert!(status.success(), "client {:?} failed: {err}", &args[..1]);
        (secs, peak)
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's peak RSS (VmHWM) until told to stop.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: thread::JoinHandle<()>,
}

impl RssWatch {
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().ok();
        self.peak.load(Ordering::Relaxed)
    }
}

fn watch_rss(pid: u32) -> RssWatch {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
    let handle = thread::spawn(move || {
        // VmHWM only grows, so the last reading before exit is the peak.
        while !s.load(Ordering::Relaxed) {
            match peak_rss(pid) {
                Some(v) => p.fetch_max(v, Ordering::Relaxed),
                None => break,
            };
            thread::sleep(Duration::from_millis(5));
        }
    });
    RssWatch { stop, peak, handle }
}

fn peak_rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `clients` processes each put a file, then all get theirs back.
/// Returns total bytes/s over both phases and the slowest client's seconds.
fn concurrent(server: &BenchServer, bin: &Path, dir: &Path, sizes: &Sizes) -> (f64, f64, f64) {
    let mut files = Vec::new();
    for i in 0..sizes.clients {
        let p = dir.join(format!("c{i:02}.bin"));
        let d = write_random(&p, sizes.client_size);
        files.push((p, d));
    }
    // The reference: one client doing what each of them does, alone and
    // right before them, so that both see the machine in the same state
    // (median of 3).
    let mut alone: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            server.client(bin, &["put", path_str(&files[0].0)]);
            let out = dir.join("alone.back");
            server.client(
                bin,
                &["get", "c00.bin", "--overwrite", "-o", path_str(&out)],
            );
            assert_eq!(
                file_md5(&out),
                files[0].1,
                "the lone client got a different file"
            );
            t.elapsed().as_secs_f64()
        })
        .collect();
    let single = 2.0 * sizes.client_size as f64 / median(&mut alone);
    let start = Instant::now();
    let times: Vec<f64> = thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, (path, _))| {
                s.spawn(move || {
                    let t = Instant::now();
                    let (_, _) = server.client(bin, &["put", path_str(path)]);
                    let out = dir.join(format!("c{i:02}.back"));
                    let name = format!("c{i:02}.bin");
                    server.client(bin, &["get", &name, "--overwrite", "-o", path_str(&out)]);
                    t.elapsed().as_secs_f64()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    for (i, (_, d)) in files.iter().enumerate() {
        let back = dir.join(format!("c{i:02}.back"));
        assert_eq!(&file_md5(&back), d, "client {i} got a different file");
    }
    let total = (sizes.client_size * sizes.clients as u64 * 2) as f64 / secs;
    (total, times.into_iter().fold(0.0, f64::max), single)
}

fn check_remote(c: &mut Client, name: &str, md5: &str) {
    let files = c.ls().expect("ls");
    let f = files
        .iter()
        .find(|f| f.name == name)
        .expect("uploaded file listed");
    assert_eq!(
        f.md5.as_deref(),
        Some(md5),
        "server holds a different {name}"
    );
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes `len` pseudo-random bytes to `path`; returns their MD5.
fn write_random(path: &Path, len: u64) -> String {
    let mut f = fs::File::create(path).unwrap();
    let mut h = Md5::new();
    let mut left = len;
    let mut seed = len;
    while left > 0 {
        let n = left.min(8 * MIB);
        let chunk = pseudo_random(n as usize, seed);
        seed += 1;
        h.update(&chunk);
        f.write_all(&chunk).unwrap();
        left -= n;
    }
    netdisk::protocol::md5_hex(h.finalize())
}

fn file_md5(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut h = Md5::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    netdisk::protocol::md5_hex(h.finalize())
}

/// The many small files of a run, written once.
struct SmallSet {
    dir: PathBuf,
    names: Vec<String>,
    digests: Vec<String>,
}

impl SmallSet {
    fn write(dir: &Path, count: usize, size: usize) -> SmallSet {
        fs::create_dir_all(dir).unwrap();
        let mut names = Vec::new();
        let mut digests = Vec::new();
        for i in 0..count {
            let name = format!("s{i:05}.bin");
            let data = pseudo_random(size, i as u64);
            digests.push(netdisk::protocol::md5_hex(Md5::digest(&data)));
            fs::write(dir.join(&name), data).unwrap();
            names.push(name);
        }
        SmallSet {
            dir: dir.to_path_buf(),
            names,
            digests,
        }
    }

    /// One `put` of every file into `user`'s account and one `get` of
    /// them all into the new folder `back`, through `addr`; checks both
    /// and returns their seconds. A new `user` is registered first; an
    /// existing one has the same files deleted first.
    fn round(
        &self,
        server: &BenchServer,
        addr: &str,
        bin: &Path,
        user: &str,
        back: &Path,
    ) -> (f64, f64) {
        let mut c = Client::connect(&server.addr).expect("connect");
        if c.register(user, &Password::new(PASSWORD)).is_err() {
            c.login(user, &Password::new(PASSWORD)).expect("login");
            for n in &self.names {
                c.delete(n).expect("delete");
            }
        } else {
            c.login(user, &Password::new(PASSWORD)).expect("login");
        }
        let env = [("NETDISK_USER", Path::new(user))];
        let mut args = vec!["put".to_string()];
        args.extend(
            self.names
                .iter()
                .map(|n| self.dir.join(n).display().to_string()),
        );
        let (put, _) = server.client_at(addr, bin, &args, &env);
        let listed = c.ls().expect("ls");
        for (n, d) in self.names.iter().zip(&self.digests) {
            let f = listed
                .iter()
                .find(|f| &f.name == n)
                .expect("small file listed");
            assert_eq!(f.md5.as_deref(), Some(d.as_str()), "{n} digest");
        }
        fs::create_dir_all(back).unwrap();
        let mut args = vec!["get".to_string()];
        args.extend(self.names.iter().cloned());
        args.extend(["-o".into(), back.display().to_string()]);
        let (get, _) = server.client_at(addr, bin, &args, &env);
        for (n, d) in self.names.iter().zip(&self.digests) {
            assert_eq!(&file_md5(&back.join(n)), d, "{n} came back different");
        }
        (put, get)
    }
}

/// A TCP proxy on loopback that holds every byte for `delay` before
/// passing it on, each way: a network's latency without netem. It adds
/// no bandwidth limit of its own.
struct DelayProxy {
    addr: String,
}

impl DelayProxy {
    fn start(upstream: &str, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        // Lives as long as the bench; each connection ends with its peers.
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                client.set_nodelay(true).ok();
                server.set_nodelay(true).ok();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                delayed_copy(client, server, delay);
                delayed_copy(s2, c2, delay);
            }
        });
        DelayProxy { addr }
    }
}

/// Copies `from` to `to`, each read held back until `delay` after it
/// arrived; the write side of `to` is shut when `from` ends.
fn delayed_copy(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    // At most this many reads in transit: the proxy's memory stays bounded.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(1024);
    thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let due = Instant::now() + delay;
            if tx.send((due, buf[..n].to_vec())).is_err() || n == 0 {
                return;
            }
        }
    });
    thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if bytes.is_empty() || to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// An rsync daemon on loopback serving a temp folder, and a delay proxy
/// in front of it; `None` if `rsync` is not installed.
struct Rsync {
    daemon: Child,
    direct: String,
    delayed: DelayProxy,
    root: PathBuf,
}

impl Rsync {
    fn start(root: &Path, delay: Duration) -> Option<Rsync> {
        let found = Command::new("rsync")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return None;
        }
        use std::os::unix::fs::MetadataExt;
        fs::create_dir_all(root.join("module")).unwrap();
        // A daemon started by root would write as `nobody`: as us instead,
        // whoever made the folder.
        let owner = fs::metadata(root).unwrap();
        let conf = root.join("rsyncd.conf");
        fs::write(
            &conf,
            format!(
                "use chroot = no\nuid = {}\ngid = {}\n[bench]\npath = {}\nread only = false\n",
                owner.uid(),
                owner.gid(),
                root.join("module").display()
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let daemon = Command::new("rsync")
            .args(["--daemon", "--no-detach", "--address", "127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--config={}", conf.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsync daemon");
        let direct = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&direct).is_err() {
            assert!(Instant::now() < deadline, "rsync daemon did not start");
            thread::sleep(Duration::from_millis(20));
        }
        let delayed = DelayProxy::start(&direct, delay);
        Some(Rsync {
            daemon,
            direct,
            delayed,
            root: root.to_path_buf(),
        })
    }

    /// Runs rsync with MD5 checksums; returns the seconds.
    fn run(&self, from: &str, to: &str) -> f64 {
        self.run_with(&[], from, to)
    }

    fn run_with(&self, extra: &[&str], from: &str, to: &str) -> f64 {
        let start = Instant::now();
        let out = Command::new("rsync")
            .args(["-a", "--checksum-choice=md5"])
            .args(extra)
            .args([from, to])
            .output()
            .expect("rsync");
        assert!(out.status.success(), "rsync failed: {out:?}");
        start.elapsed().as_secs_f64()
    }

    /// The small files up into a new folder and back, through the delay
    /// or straight; the copies brought back stay in `back`.
    fn small(&self, dir: &Path, back: &Path, delayed: bool) -> (f64, f64) {
        let (addr, folder) = if delayed {
            (&self.delayed.addr, "small-delayed")
        } else {
            (&self.direct, "small")
        };
        let url = format!("rsync://{addr}/bench/{folder}/");
        let put = self.run(&format!("{}/", dir.display()), &url);
        let get = self.run(&url, &format!("{}/", back.display()));
        assert_eq!(
            fs::read_dir(back).unwrap().count(),
            fs::read_dir(dir).unwrap().count(),
            "rsync brought back every file"
        );
        (put, get)
    }

    /// One file up on loopback, into a folder that does not hold it
    /// (the copy of an earlier round is deleted first, untimed), with
    /// rsync's options `extra`.
    fn put_file(&self, file: &Path, extra: &[&str]) -> f64 {
        let stored = self.root.join("module/big").join(file.file_name().unwrap());
        fs::remove_file(&stored).ok();
        let url = format!("rsync://{}/bench/big/", self.direct);
        let secs = self.run_with(extra, path_str(file), &url);
        // Untimed: without --fsync rsync leaves its GiB to be written back,
        // which would slow whatever the bench measures next.
        fs::File::open(&stored).unwrap().sync_all().unwrap();
        assert_eq!(
            file_md5(&stored),
            file_md5(file),
            "rsync stored another file"
        );
        secs
    }
}

impl Drop for Rsync {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
