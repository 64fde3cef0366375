//! `serve --db --blobs`: file bytes in S3 (a moto server of the test's
//! own), several servers on one disk: objects keyed by generated ids, an
//! upload begun on one server finished on another from its last part, the
//! sweeper aborting an abandoned multipart upload exactly once, and the
//! store's faults. Each test needs `NETDISK_TEST_PG` and `moto_server`.

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use netdisk::db::testing::TestDb;
use netdisk::disk::s3::testing::TestS3;
use netdisk::error::{Error, ErrorCode};

use crate::protocol::{get_all, put_all};
use crate::support::*;

/// A database, a store, and the `serve` arguments and environment for them.
struct Cluster {
    db: TestDb,
    s3: TestS3,
}

impl Cluster {
    fn new(test: &str) -> Option<Cluster> {
        let db = TestDb::create(test)?;
        let s3 = TestS3::start(test)?;
        Some(Cluster { db, s3 })
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--db".into(),
            self.db.url.clone(),
            "--blobs".into(),
            format!("s3://{}/disk", self.s3.bucket),
        ]
    }

    /// A server on the cluster over `data` (a new one if `None`).
    fn server(&self, data: Option<Arc<tempfile::TempDir>>) -> TestServer {
        self.server_via(&self.s3.endpoint, data)
    }

    /// A server that reaches the store at `endpoint`.
    fn server_via(&self, endpoint: &str, data: Option<Arc<tempfile::TempDir>>) -> TestServer {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
            ("AWS_REGION", "us-east-1"),
        ];
        let data = data.unwrap_or_else(|| Arc::new(tempfile::tempdir().unwrap()));
        TestServer::start_with_env(data, &args, &env)
    }

    fn sql(&self) -> postgres::Client {
        postgres::Client::connect(&self.db.url, postgres::NoTls).unwrap()
    }

    /// The object id of `user`'s file at `path`.
    fn blob(&self, user: &str, path: &str) -> String {
        self.sql()
            .query_one(
                "SELECT n.blob FROM nodes n JOIN accounts a ON a.id = n.account
                 WHERE a.key = $1 AND n.path = $2",
                &[&user, &path],
            )
            .unwrap()
            .get(0)
    }

    /// The object `id`'s bytes, straight from the store.
    fn object(&self, id: &str) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        self.s3
            .open("disk")
            .get_range(id, 0)?
            .read_to_end(&mut bytes)
            .unwrap();
        Ok(bytes)
    }
}

#[test]
fn small_and_multipart_files_live_in_s3_under_ids_and_renames_move_no_byte() {
    let Some(cl) = Cluster::new("s3 objects") else {
        return;
    };
    let server = cl.server(None);
    let mut c = server.user("alice");
    let small = bytes(100_000, 1);
    let big = bytes((20 << 20) + 12_345, 2);
    c.mkdir("docs").unwrap();
    put_all(&mut c, "docs/small.bin", &small);
    put_all(&mut c, "docs/big.bin", &big);
    let (small_id, big_id) = (
        cl.blob("alice", "docs/small.bin"),
        cl.blob("alice", "docs/big.bin"),
    );
    assert_eq!(cl.object(&small_id).unwrap(), small);
    assert_eq!(cl.object(&big_id).unwrap(), big);
    assert!(
        server.data.path().join("blobs").read_dir().is_err(),
        "no local bytes"
    );
    // The whole file, and from an offset inside its second part.
    assert_eq!(get_all(&mut c, "docs/big.bin"), big);
    let offset = (8 << 20) + 77;
    let answer = c.get_begin("docs/big.bin", offset).unwrap();
    assert_eq!(answer.md5, md5(&big));
    let mut rest = vec![0u8; big.len() - offset as usize];
    c.read_body_exact(&mut rest).unwrap();
    assert_eq!(rest, big[offset as usize..]);
    // A folder move is a row change: the same objects, and no request to
    // the store but the read after it.
    let before = cl.s3.requests().len();
    c.rename("docs", "papers").unwrap();
    assert_eq!(cl.blob("alice", "papers/big.bin"), big_id);
    assert_eq!(get_all(&mut c, "papers/small.bin"), small);
    let after = cl.s3.requests();
    assert!(
        after[before..].iter().all(|r| r.contains("\"GET ")),
        "{:#?}",
        &after[before..]
    );
    // An overwrite retires the old object, which is deleted.
    put_all(&mut c, "papers/big.bin", b"now small");
    assert_ne!(cl.blob("alice", "papers/big.bin"), big_id);
    assert!(matches!(cl.object(&big_id), Err(Error::NotFound)));
    // A delete too.
    c.remove("papers", true).unwrap();
    assert!(matches!(cl.object(&small_id), Err(Error::NotFound)));
    assert_eq!(c.whoami().unwrap().used, 0);
}

#[test]
fn an_upload_begun_on_a_killed_server_resumes_on_another_from_its_last_part() {
    let Some(cl) = Cluster::new("s3 resume elsewhere") else {
        return;
    };
    let mut a = cl.server(None);
    let b = cl.server(None);
    drop(a.user("alice"));
    let data = bytes(40 << 20, 3);
    let size = data.len() as u64;
    let mut c = a.login("alice");
    assert_eq!(c.put_begin("big.bin", size).unwrap(), 0);
    // Two whole parts and a piece of the third, then the server dies.
    c.write_body(&data[..(17 << 20)]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server_parts(&cl) < 2 {
        assert!(Instant::now() < deadline, "the parts were never recorded");
        thread::sleep(Duration::from_millis(20));
    }
    a.signal("KILL");
    drop(c);
    let mut c = b.login("alice");
    let offset = c.put_begin("big.bin", size).unwrap();
    assert_eq!(offset, 16 << 20, "resumed from the last part recorded");
    c.write_body(&data[offset as usize..]).unwrap();
    assert_eq!(c.put_end(&md5(&data)).unwrap().md5, md5(&data));
    assert_eq!(get_all(&mut c, "big.bin"), data);
    assert_eq!(cl.object(&cl.blob("alice", "big.bin")).unwrap(), data);
    let staged: i64 = cl
        .sql()
        .query_one("SELECT count(*) FROM staged", &[])
        .unwrap()
        .get(0);
    assert_eq!(staged, 0);
}

/// Parts the unfinished uploads have recorded.
fn server_parts(cl: &Cluster) -> i64 {
    cl.sql()
        .query_one(
            "SELECT coalesce(max(jsonb_array_length(parts)), 0)::bigint FROM staged",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn the_sweeper_aborts_an_abandoned_multipart_upload_exactly_once() {
    let Some(cl) = Cluster::new("s3 sweeper") else {
        return;
    };
    let a = cl.server(None);
    drop(a.user("alice"));
    let mut c = a.login("alice");
    c.put_begin("abandoned.bin", 30 << 20).unwrap();
    c.write_body(&bytes(9 << 20, 4)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server_parts(&cl) < 1 {
        assert!(Instant::now() < deadline, "the part was never recorded");
        thread::sleep(Duration::from_millis(20));
    }
    drop(c);
    drop(a);
    let upload_id: String = cl
        .sql()
        .query_one("SELECT upload_id FROM staged", &[])
        .unwrap()
        .get(0);
    // Two days old: past the 24 h staging limit.
    cl.sql()
        .execute("UPDATE staged SET created_at = created_at - 172800", &[])
        .unwrap();
    // Two servers start at once, and each sweeps at start.
    let (b, d) = thread::scope(|s| {
        let b = s.spawn(|| cl.server(None));
        let d = s.spawn(|| cl.server(None));
        (b.join().unwrap(), d.join().unwrap())
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 = cl
            .sql()
            .query_one(
                "SELECT (SELECT count(*) FROM staged) + (SELECT count(*) FROM retired)",
                &[],
            )
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned upload is still there"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let aborts = cl
        .s3
        .requests()
        .iter()
        .filter(|r| r.contains("\"DELETE ") && r.contains(&format!("uploadId={upload_id}")))
        .count();
    assert_eq!(aborts, 1, "{:#?}", cl.s3.requests());
    let mut c = b.login("alice");
    assert_eq!(c.whoami().unwrap().staged, 0);
    drop(d);
}

#[test]
fn an_unreachable_store_at_start_is_a_clear_error() {
    let Some(db) = TestDb::create("s3 unreachable") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .args(["--db", &db.url, "--blobs", "s3://nowhere/disk"])
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "id")
        .env("AWS_SECRET_ACCESS_KEY", "sekrit-key")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--blobs s3://nowhere/disk"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("sekrit"), "{err}");
    // And --blobs without --db says why not.
    let out = std::process::Command::new(bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .args(["--blobs", "s3://nowhere/disk"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--blobs needs --db"));
}

#[test]
fn a_store_gone_mid_upload_fails_it_cleanly() {
    let Some(cl) = Cluster::new("s3 gone mid-upload") else {
        return;
    };
    let server = cl.server(None);
    let mut c = server.user("alice");
    put_all(&mut c, "kept.bin", b"the old version");
    let data = bytes(20 << 20, 5);
    assert_eq!(c.put_begin("kept.bin", data.len() as u64).unwrap(), 0);
    c.write_body(&data[..(1 << 20)]).unwrap();
    // The store goes away (its objects with it: moto keeps them in memory).
    let Cluster { db, s3 } = cl;
    drop(s3);
    let failed = c
        .write_body(&data[(1 << 20)..])
        .and_then(|()| c.put_end(&md5(&data)));
    let code = failed.map(|_| ()).unwrap_err().code();
    assert!(matches!(code, Some(ErrorCode::Internal) | None), "{code:?}");
    // The old row is untouched and nothing half-made is visible.
    let mut c = server.login("alice");
    let list = c.ls().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].size, 15);
    drop(db);
}

/// A way to the store that can be shut: while shut, every connection is
/// closed as soon as it is made.
struct Gate {
    endpoint: String,
    shut: Arc<AtomicBool>,
}

impl Gate {
    fn new(store: &str) -> Gate {
        let to = store.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shut = Arc::new(AtomicBool::new(false));
        let closed = shut.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                if closed.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(store) = TcpStream::connect(&to) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (conn.try_clone().unwrap(), store.try_clone().unwrap()),
                    (store, conn),
                ] {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Gate { endpoint, shut }
    }

    fn shut(&self, shut: bool) {
        self.shut.store(shut, Ordering::SeqCst);
    }
}

#[test]
fn a_part_the_store_refuses_is_kept_and_the_upload_resumes_once_it_is_back() {
    let Some(cl) = Cluster::new("s3 part refused") else {
        return;
    };
    let gate = Gate::new(&cl.s3.endpoint);
    let server = cl.server_via(&gate.endpoint, None);
    drop(server.user("alice"));
    let data = bytes(30 << 20, 6);
    let size = data.len() as u64;
    let mut c = server.login("alice");
    assert_eq!(c.put_begin("big.bin", size).unwrap(), 0);
    c.write_body(&data[..(12 << 20)]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server_parts(&cl) < 1 {
        assert!(
            Instant::now() < deadline,
            "the first part was never recorded"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The second part leaves at 16 MiB and fails; the upload learns of it
    // when the third is whole, at 24 MiB.
    gate.shut(true);
    let failed = c
        .write_body(&data[(12 << 20)..])
        .and_then(|()| c.put_end(&md5(&data)));
    assert!(failed.is_err(), "an upload whose part failed was answered");
    drop(c);
    gate.shut(false);
    let mut c = server.login("alice");
    let offset = c.put_begin("big.bin", size).unwrap();
    assert_eq!(
        offset,
        24 << 20,
        "the recorded part, and the failed one's bytes kept with those after it"
    );
    c.write_body(&data[offset as usize..]).unwrap();
    assert_eq!(c.put_end(&md5(&data)).unwrap().md5, md5(&data));
    assert_eq!(get_all(&mut c, "big.bin"), data);
    assert_eq!(cl.object(&cl.blob("alice", "big.bin")).unwrap(), data);
    assert_eq!(c.whoami().unwrap().staged, 0);
}
