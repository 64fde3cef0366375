//! One disk, two servers: `serve --db` processes on one database and one
//! data directory, racing each other for a quota, a user's guesses and a
//! folder; and the database failing under them. Each test makes its own
//! database (`NETDISK_TEST_PG`).

use std::sync::{Arc, Barrier};
use std::thread;

use netdisk::db::testing::TestDb;
use netdisk::error::ErrorCode;

use crate::protocol::{get_all, put_all};
use crate::support::*;

/// Two servers on one database and one data directory.
fn one_disk(test: &str) -> Option<(TestDb, TestServer, TestServer)> {
    let db = TestDb::create(test)?;
    let a = TestServer::with_args(&["--db", &db.url]);
    let b = TestServer::start_in(Arc::clone(&a.data), &["--db", &db.url]);
    Some((db, a, b))
}

fn sql(db: &TestDb) -> postgres::Client {
    postgres::Client::connect(&db.url, postgres::NoTls).unwrap()
}

#[test]
fn eight_puts_from_two_servers_never_overbook_one_quota() {
    let Some((db, a, b)) = one_disk("quota over two servers") else {
        return;
    };
    drop(a.user("alice"));
    sql(&db)
        .execute("UPDATE accounts SET quota = 10000 WHERE key = 'alice'", &[])
        .unwrap();
    let servers = [&a, &b];
    let start = Barrier::new(8);
    let booked = Barrier::new(8);
    let outcomes: Vec<Result<(), ErrorCode>> = thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (server, start, booked) = (servers[i % 2], &start, &booked);
                s.spawn(move || {
                    let mut c = server.login("alice");
                    let data = bytes(2000, i as u64);
                    start.wait();
                    let begun = c.put_begin(&format!("f{i}"), 2000);
                    // Every booking is decided before any body arrives.
                    booked.wait();
                    match begun {
                        Ok(0) => {
                            c.write_body(&data).unwrap();
                            c.put_end(&md5(&data)).unwrap();
                            Ok(())
                        }
                        Ok(off) => panic!("a new upload resumed at {off}"),
                        Err(e) => Err(e.code().unwrap()),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stored = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(stored, 5, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Ok(()) | Err(ErrorCode::QuotaExceeded))));
    for server in servers {
        let who = server.login("alice").whoami().unwrap();
        assert_eq!((who.files, who.used), (5, 10_000));
    }
}

#[test]
fn guesses_spread_over_two_servers_and_two_addresses_count_once() {
    let Some((_db, a, b)) = one_disk("guesses over two servers") else {
        return;
    };
    drop(a.user("alice"));
    let wrong = netdisk::protocol::Password::new("not the password at all");
    let start = Barrier::new(32);
    let codes: Vec<ErrorCode> = thread::scope(|s| {
        let handles: Vec<_> = (0..32u8)
            .map(|i| {
                let server = if i % 2 == 0 { &a } else { &b };
                let (start, wrong) = (&start, &wrong);
                s.spawn(move || {
                    let mut c = server.client_from(4 + i % 4 / 2);
                    start.wait();
                    c.login("alice", wrong).unwrap_err().code().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = codes
        .iter()
        .filter(|c| **c == ErrorCode::AuthFailed)
        .count();
    assert_eq!(
        checked,
        netdisk::ratelimit::MAX_PER_USER as usize,
        "{codes:?}"
    );
    assert!(codes
        .iter()
        .all(|c| matches!(c, ErrorCode::AuthFailed | ErrorCode::RateLimited)));
    // The owner, from the address she registered from, still gets in.
    a.login("alice");
    b.login("alice");
}

#[test]
fn a_folder_renamed_on_one_server_is_listed_whole_on_the_other() {
    let Some((_db, a, b)) = one_disk("rename while listing") else {
        return;
    };
    let mut writer = a.user("alice");
    writer.mkdir("docs/deep").unwrap();
    for i in 0..100 {
        put_all(&mut writer, &format!("docs/deep/f{i:03}"), b"x");
    }
    let mut reader = b.login("alice");
    thread::scope(|s| {
        s.spawn(move || {
            for round in 0..30 {
                let (from, to) = if round % 2 == 0 {
                    ("docs", "papers")
                } else {
                    ("papers", "docs")
                };
                writer.rename(from, to).unwrap();
            }
        });
        for _ in 0..60 {
            let list = reader.list("", true).unwrap();
            let mut tops: Vec<&str> = list
                .files
                .iter()
                .map(|f| f.name.split('/').next().unwrap())
                .collect();
            tops.dedup();
            assert_eq!(list.files.len(), 100, "a partial tree: {tops:?}");
            assert_eq!(tops.len(), 1, "a tree in two places: {tops:?}");
        }
    });
    // 30 renames: back where it started.
    let list = reader.list("docs/deep", false).unwrap();
    assert_eq!(list.files.len(), 100);
}

#[test]
fn an_upload_cut_by_a_database_outage_fails_cleanly_and_resumes_after() {
    let Some((db, a, _b)) = one_disk("database outage mid-upload") else {
        return;
    };
    let mut c = a.user("alice");
    put_all(&mut c, "big.bin", b"the old version");
    let data = bytes(4 << 20, 3);
    let size = data.len() as u64;
    assert_eq!(c.put_begin("big.bin", size).unwrap(), 0);
    c.write_body(&data[..1 << 20]).unwrap();
    // The database goes away: no new connection, the old ones cut.
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let mut admin = postgres::Client::connect(
        &std::env::var(netdisk::db::testing::ENV).unwrap(),
        postgres::NoTls,
    )
    .unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .unwrap();
    c.write_body(&data[1 << 20..]).unwrap();
    let failed = c.put_end(&md5(&data)).unwrap_err();
    assert_eq!(failed.code(), Some(ErrorCode::Internal), "{failed:?}");
    // Back: the old file is whole, and the upload resumes where it was.
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .unwrap();
    let mut c = a.login("alice");
    assert_eq!(get_all(&mut c, "big.bin"), b"the old version");
    let offset = c.put_begin("big.bin", size).unwrap();
    assert!(offset > 0, "the staged bytes were lost");
    c.write_body(&data[offset as usize..]).unwrap();
    assert_eq!(c.put_end(&md5(&data)).unwrap().md5, md5(&data));
    assert_eq!(get_all(&mut c, "big.bin"), data);
}

#[test]
fn an_unreachable_database_is_a_clear_error_without_the_password() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://nd:sekrit-pass@127.0.0.1:{port}/netdisk");
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .args(["--db", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot reach the database postgres://nd:***@127.0.0.1:{port}/netdisk"
        )),
        "{err}"
    );
    assert!(!err.contains("sekrit"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

#[test]
fn a_server_killed_mid_commit_leaves_rows_and_bytes_that_agree() {
    let Some((db, mut a, b)) = one_disk("killed mid-commit") else {
        return;
    };
    drop(a.user("alice"));
    let addr = a.addr.clone();
    let mut acked = Vec::new();
    thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let addr = &addr;
                s.spawn(move || {
                    let mut done = Vec::new();
                    let Ok(mut c) = netdisk::client::Client::connect(addr) else {
                        return done;
                    };
                    if c.login("alice", &pw()).is_err() {
                        return done;
                    }
                    for i in 0.. {
                        let data = bytes(64 << 10, t * 1000 + i);
                        let name = format!("t{t}/f{i}");
                        if i == 0 && c.mkdir(&format!("t{t}")).is_err() {
                            return done;
                        }
                        let ok = c
                            .put_begin(&name, data.len() as u64)
                            .and_then(|_| c.write_body(&data))
                            .and_then(|_| c.put_end(&md5(&data)));
                        match ok {
                            Ok(_) => done.push((name, data)),
                            Err(_) => return done,
                        }
                    }
                    done
                })
            })
            .collect();
        // Kill the server once every thread has had three files
        // acknowledged (each logs its own, in any order).
        for t in 0..4 {
            a.wait_for_log(&format!("t{t}/f2"));
        }
        a.signal("KILL");
        for h in handles {
            acked.extend(h.join().unwrap());
        }
    });
    // Each thread had f0 and f1 answered before it sent f2.
    assert!(acked.len() >= 8, "{} acknowledged", acked.len());
    // Every acknowledged file is there, through the other server.
    let mut c = b.login("alice");
    for (name, data) in &acked {
        assert_eq!(&get_all(&mut c, name), data, "{name}");
    }
    // No row without its bytes, no bytes other than a row says.
    let rows = sql(&db)
        .query(
            "SELECT path, size, md5, blob FROM nodes WHERE NOT is_dir",
            &[],
        )
        .unwrap();
    for row in rows {
        let (path, size, want, blob): (String, i64, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let bytes = std::fs::read(b.path(&format!("blobs/{}/{blob}", &blob[..2])))
            .unwrap_or_else(|e| panic!("{path}: its blob: {e}"));
        assert_eq!(bytes.len() as i64, size, "{path}");
        assert_eq!(md5(&bytes), want, "{path}");
    }
}
