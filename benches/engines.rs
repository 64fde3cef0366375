//! `just bench --db`: the disk with accounts and metadata in PostgreSQL
//! (`serve --db`), and with the bytes in S3 as well (`--db --blobs`, on a
//! moto server, if `moto_server` is installed), beside the default one, in
//! one run, round by round: a big file up and down, many small ones, and
//! logins; and the store's own ceiling, a plain `PutObject`/`GetObject` of
//! the same big file. The database is a fresh one on the server
//! `NETDISK_TEST_PG` names (as the tests use).

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use netdisk::client::Client;
use netdisk::db::testing::TestDb;
use netdisk::disk::s3::testing::TestS3;
use netdisk::protocol::Password;

use super::{
    file_md5, median, sizes, write_random, BenchServer, Row, SmallSet, Target, PASSWORD, ROUNDS,
    USER,
};

/// Connections logging in at once in the login rows.
const LOGIN_CLIENTS: usize = 8;

struct Engine {
    name: &'static str,
    server: BenchServer,
    puts: Vec<f64>,
    /// The store's CPU seconds during each put (`--blobs` only).
    put_cpu: Vec<f64>,
    gets: Vec<f64>,
    small_puts: Vec<f64>,
    small_gets: Vec<f64>,
    logins: f64,
}

pub fn engines(bin: &Path, work: &Path, quick: bool) -> (Vec<Row>, Vec<Target>) {
    let Some(db) = TestDb::create("bench --db") else {
        panic!("bench --db: set NETDISK_TEST_PG to a PostgreSQL superuser URL");
    };
    let sizes = sizes(quick);
    // `LOGINS=N` sets how many logins the login rows make.
    let logins = std::env::var("LOGINS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 1000 } else { 10_000 });
    let big = work.join("big.bin");
    let big_md5 = write_random(&big, sizes.big);
    let small = SmallSet::write(&work.join("small"), sizes.small_count, sizes.small_size);
    let s3 = TestS3::start("bench --db --blobs");
    // A database of its own for the S3 disk: one user name per database.
    let db2 = s3
        .as_ref()
        .map(|_| TestDb::create("bench --db --blobs").expect("a database"));
    let start = |name: &'static str, extra: &[&str], env: &[(&str, &str)]| {
        // One user's logins are paced (`--login-burst`, `--login-rate`):
        // lifted here, the rows measure what a login costs.
        let mut args = vec!["--workers", "40", "--login-burst", "100000"];
        args.extend_from_slice(&["--login-rate", "1000000"]);
        args.extend_from_slice(extra);
        let server = BenchServer::start_env(bin, &work.join(format!("data-{name}")), &args, env);
        let mut c = Client::connect(&server.addr).expect("connect");
        c.register(USER, &Password::new(PASSWORD))
            .expect("register");
        Engine {
            name,
            server,
            puts: Vec::new(),
            put_cpu: Vec::new(),
            gets: Vec::new(),
            small_puts: Vec::new(),
            small_gets: Vec::new(),
            logins: 0.0,
        }
    };
    let mut engines = vec![
        start("default", &[], &[]),
        start("--db", &["--db", &db.url], &[]),
    ];
    let blobs = s3.as_ref().map(|s3| format!("s3://{}/bench", s3.bucket));
    if let (Some(s3), Some(blobs), Some(db2)) = (&s3, &blobs, &db2) {
        let env = [
            ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
        ];
        engines.push(start(
            "--db --blobs",
            &["--db", &db2.url, "--blobs", blobs],
            &env,
        ));
    }
    // The store's ceiling first: a fault in it shows at once.
    let ceiling = s3.as_ref().map(|s3| store_ceiling(s3, &big, sizes.big));
    let down = work.join("down.bin");
    let big_arg = big.display().to_string();
    let down_arg = down.display().to_string();
    // Engines take turns within a round, so that a machine slowing down
    // over the run weighs on both alike.
    for round in 0..ROUNDS {
        for e in &mut engines {
            let cpu = s3.as_ref().and_then(TestS3::cpu_seconds);
            let (secs, _) = e.server.client(bin, &["put", &big_arg]);
            e.puts.push(secs);
            if let Some(after) = s3.as_ref().and_then(TestS3::cpu_seconds) {
                e.put_cpu.push(after - cpu.unwrap_or(after));
            }
            let (secs, _) = e
                .server
                .client(bin, &["get", "big.bin", "--overwrite", "-o", &down_arg]);
            assert_eq!(file_md5(&down), big_md5, "{}: the download differs", e.name);
            fs::remove_file(&down).ok();
            e.gets.push(secs);
            let back = work.join(format!("back-{}-{round}", e.name));
            let user = format!("small{round}");
            let (put, get) = small.round(&e.server, &e.server.addr, bin, &user, &back);
            e.small_puts.push(put);
            e.small_gets.push(get);
            fs::remove_dir_all(&back).ok();
        }
    }
    for e in &mut engines {
        if logins > 0 {
            e.logins = login_rate(&e.server.addr, logins);
        }
    }
    let mut rows = Vec::new();
    for e in &mut engines {
        let (put, get) = (median(&mut e.puts), median(&mut e.gets));
        let mut row = Row::rate(
            &format!("{}: put {} MiB", e.name, sizes.big >> 20),
            sizes.big,
            sizes.big as f64 / put,
            None,
        );
        if e.name.contains("--blobs") {
            row.note = format!("the store's CPU {:.1} s", median(&mut e.put_cpu));
        }
        rows.push(row);
        rows.push(Row::rate(
            &format!("{}: get {} MiB", e.name, sizes.big >> 20),
            sizes.big,
            sizes.big as f64 / get,
            None,
        ));
        let (count, size) = (sizes.small_count, sizes.small_size);
        rows.push(Row::files(
            &format!("{}: put small files", e.name),
            count,
            size,
            median(&mut e.small_puts),
        ));
        rows.push(Row::files(
            &format!("{}: get small files", e.name),
            count,
            size,
            median(&mut e.small_gets),
        ));
        if logins > 0 {
            rows.push(Row {
                what: format!("{}: {logins} logins", e.name),
                bytes: 0,
                rate_mb_s: None,
                files_s: Some(e.logins),
                ratio: None,
                rss: None,
                note: format!("{LOGIN_CLIENTS} at once, each on a new connection; the pace lifted"),
            });
        }
    }
    let ratio = |a: &mut Vec<f64>, b: &mut Vec<f64>| median(a) / median(b);
    let mut targets = Vec::new();
    if let (Some(ceiling), [_, _, on_s3]) = (&ceiling, &mut engines[..]) {
        let (put, get) = (ceiling.put, ceiling.get);
        let mut row = Row::rate(
            "the store itself: PutObject of the big file",
            sizes.big,
            sizes.big as f64 / put,
            None,
        );
        row.note = format!("the store's CPU {:.1} s", ceiling.put_cpu);
        rows.push(row);
        let mut row = Row::rate(
            "the store itself: the big file in parts, one after another",
            sizes.big,
            sizes.big as f64 / ceiling.parts,
            None,
        );
        row.note = format!(
            "{} MiB parts as netdisk cuts them; the store's CPU {:.1} s; joining them {:.1} s",
            netdisk::disk::db::part_size(sizes.big) >> 20,
            ceiling.parts_cpu,
            ceiling.join
        );
        rows.push(row);
        rows.push(Row::rate(
            "the store itself: GetObject of the big file",
            sizes.big,
            sizes.big as f64 / get,
            None,
        ));
        targets.push(Target::at_least(
            "--db --blobs: big put / the store's PutObject",
            put / median(&mut on_s3.puts),
            0.8,
        ));
        targets.push(Target::at_least(
            "--db --blobs: big put / the store's upload in parts",
            ceiling.parts / median(&mut on_s3.puts),
            0.8,
        ));
        targets.push(Target::at_least(
            "--db --blobs: big get / the store's GetObject",
            get / median(&mut on_s3.gets),
            0.8,
        ));
    }
    let [plain, on_db, ..] = &mut engines[..] else {
        unreachable!("two engines at least");
    };
    targets.extend([
        Target::at_least(
            "--db: big put / default",
            ratio(&mut plain.puts, &mut on_db.puts),
            0.95,
        ),
        Target::at_least(
            "--db: big get / default",
            ratio(&mut plain.gets, &mut on_db.gets),
            0.95,
        ),
        Target::at_least(
            "--db: small puts / default",
            ratio(&mut plain.small_puts, &mut on_db.small_puts),
            0.7,
        ),
        Target::at_least(
            "--db: small gets / default",
            ratio(&mut plain.small_gets, &mut on_db.small_gets),
            0.7,
        ),
    ]);
    (rows, targets)
}

/// The store's own ceiling, in seconds (the median of three) and the
/// store's CPU seconds.
struct Ceiling {
    put: f64,
    put_cpu: f64,
    parts: f64,
    parts_cpu: f64,
    /// Of `parts`, the completion.
    join: f64,
    get: f64,
}

/// One `PutObject`, one multipart upload (the parts netdisk would cut, sent
/// one after another) and one `GetObject` of the file `path` in the store.
fn store_ceiling(s3: &TestS3, path: &Path, len: u64) -> Ceiling {
    use md5::{Digest, Md5};
    use std::io::Read;
    // As long as the server's own bound: the store may join a big file's
    // parts for many seconds.
    let mut config = s3.config("ceiling");
    config.io_timeout = netdisk::disk::s3::IO_TIMEOUT;
    let store = netdisk::disk::s3::S3::open(config).expect("the store");
    let bytes = fs::read(path).expect("the big file");
    let digest = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        Md5::digest(&bytes),
    );
    let id = "00000000000000000000000000000000";
    let cpu = || s3.cpu_seconds().unwrap_or(0.0);
    let (mut puts, mut put_cpu, mut parts, mut parts_cpu, mut joins, mut gets) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut buf = vec![0u8; 1 << 20];
    let part = netdisk::disk::db::part_size(len) as usize;
    for _ in 0..ROUNDS {
        let (t, c) = (Instant::now(), cpu());
        store.put_object(id, &bytes, &digest).expect("PutObject");
        puts.push(t.elapsed().as_secs_f64());
        put_cpu.push(cpu() - c);
        let (t, c) = (Instant::now(), cpu());
        let upload = store.create_multipart(id).expect("CreateMultipartUpload");
        let etags: Vec<(u16, String)> = bytes
            .chunks(part)
            .zip(1u16..)
            .map(|(chunk, n)| {
                let etag = store
                    .upload_part(id, &upload, n, chunk)
                    .expect("UploadPart");
                (n, etag)
            })
            .collect();
        let joining = Instant::now();
        store
            .complete_multipart(id, &upload, &etags)
            .expect("CompleteMultipartUpload");
        joins.push(joining.elapsed().as_secs_f64());
        parts.push(t.elapsed().as_secs_f64());
        parts_cpu.push(cpu() - c);
        let t = Instant::now();
        let mut body = store.get_range(id, 0).expect("GetObject");
        let mut got = 0u64;
        loop {
            match body.read(&mut buf).expect("GetObject body") {
                0 => break,
                n => got += n as u64,
            }
        }
        assert_eq!(got, len);
        gets.push(t.elapsed().as_secs_f64());
    }
    Ceiling {
        put: median(&mut puts),
        put_cpu: median(&mut put_cpu),
        parts: median(&mut parts),
        parts_cpu: median(&mut parts_cpu),
        join: median(&mut joins),
        get: median(&mut gets),
    }
}

/// Logins a second: `total` logins of one user, each on a new connection,
/// over [`LOGIN_CLIENTS`] at once.
fn login_rate(addr: &str, total: usize) -> f64 {
    let left = AtomicUsize::new(total);
    let started = Instant::now();
    thread::scope(|s| {
        for _ in 0..LOGIN_CLIENTS {
            s.spawn(|| {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let mut c = Client::connect(addr).expect("connect");
                    c.login(USER, &Password::new(PASSWORD)).expect("login");
                }
            });
        }
    });
    total as f64 / started.elapsed().as_secs_f64()
}
