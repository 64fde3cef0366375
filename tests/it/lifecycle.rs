//! The server's life: restarts, signals, crashes, `users.xlsx` edited while
//! stopped, and the request log.

use std::fs;
use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;

use calamine::{Data, Reader, Xlsx};
use netdisk::error::ErrorCode;
use serde_json::json;

use crate::protocol::{closed, code, get_all, put_all, raw_login};
use crate::support::*;
use crate::transfer::put_part_and_hang_up;

/// Every row of `users.xlsx`'s first sheet, header included.
pub fn sheet_rows(path: &Path) -> Vec<Vec<Data>> {
    let mut book: Xlsx<_> = calamine::open_workbook(path).unwrap();
    let range = book.worksheet_range_at(0).unwrap().unwrap();
    range.rows().map(<[Data]>::to_vec).collect()
}

/// Writes `rows` as a fresh workbook, the way an admin's editor would.
fn write_rows(path: &Path, rows: &[Vec<Data>]) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            match cell {
                Data::String(s) => sheet.write_string(r, c, s).map(drop),
                Data::Float(f) => sheet.write_number(r, c, *f).map(drop),
                Data::Int(i) => sheet.write_number(r, c, *i as f64).map(drop),
                Data::DateTime(t) => {
                    let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
                    sheet
                        .write_number_with_format(r, c, t.as_f64(), &date)
                        .map(drop)
                }
                Data::Empty => Ok(()),
                other => panic!("unexpected cell {other:?}"),
            }
            .unwrap();
        }
    }
    book.save(path).unwrap();
}

/// Stops `server` cleanly and returns its data directory.
fn stop(mut server: TestServer) -> Arc<tempfile::TempDir> {
    assert!(server.signal("TERM").success());
    Arc::clone(&server.data)
}

#[test]
fn a_restart_keeps_users_files_and_digests() {
    let server = TestServer::start();
    let mut alice = server.user("Alice");
    let mut bob = server.user("bob");
    let a = bytes(123_456, 1);
    put_all(&mut alice, "a.bin", &a);
    put_all(&mut alice, "renamed-from", b"moves");
    alice.rename("renamed-from", "renamed-to").unwrap();
    put_all(&mut bob, "b", b"bob");
    // A file placed by hand gets its digest kept (the local engine's).
    if !on_db() {
        write_file(&server.user_files("bob"), "dropped", b"placed by hand");
        get_all(&mut bob, "dropped");
    }
    let before = (alice.ls().unwrap(), bob.ls().unwrap());
    assert!(before.1.iter().all(|f| f.md5.is_some()));

    let server = server.restart(&[]);
    let mut alice = server.client();
    assert_eq!(alice.login("ALICE", &pw()).unwrap(), "Alice");
    let mut bob = server.login("bob");
    assert_eq!((alice.ls().unwrap(), bob.ls().unwrap()), before);
    assert_eq!(get_all(&mut alice, "a.bin"), a);
    assert_eq!(get_all(&mut alice, "renamed-to"), b"moves");
    assert_eq!(
        code(server.client().register("alice", &pw())),
        ErrorCode::UserExists
    );
}

#[test]
fn users_xlsx_has_the_documented_columns_and_only_hashes() {
    if local_only("users_xlsx_has_the_documented_columns_and_only_hashes") {
        return;
    }
    let server = TestServer::start();
    for u in ["Alice", "bob", "用户"] {
        server.user(u);
    }
    let rows = sheet_rows(&server.path("users.xlsx"));
    let header: Vec<String> = rows[0].iter().map(Data::to_string).collect();
    assert_eq!(
        header,
        ["user", "password_hash", "created_at", "quota_bytes"]
    );
    let names: Vec<String> = rows[1..].iter().map(|r| r[0].to_string()).collect();
    assert_eq!(names, ["Alice", "bob", "用户"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for row in &rows[1..] {
        let hash = row[1].to_string();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        // A date-time cell (issue 10), in the 1900 epoch: days since
        // 1899-12-30, of which 1970-01-01 is day 25569.
        let created = match row[2] {
            Data::DateTime(t) => (t.as_f64() - 25_569.0) * 86_400.0,
            ref other => panic!("created_at {other:?}"),
        };
        assert!(
            created <= now + 1.0 && created > now - 3600.0,
            "{created} {now}"
        );
        assert!(row.get(3).is_none_or(|q| *q == Data::Empty));
        assert!(row.iter().all(|c| !c.to_string().contains(PASSWORD)));
    }
}

#[test]
fn sigint_and_sigterm_exit_zero() {
    for sig in ["INT", "TERM"] {
        let mut server = TestServer::start();
        let _idle = server.user("alice");
        let status = server.signal(sig);
        assert_eq!(status.code(), Some(0), "{sig}");
    }
}

/// SIGTERM stops accepting but lets a transfer in flight finish.
#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let mut server = TestServer::start();
    server.user("alice");
    let data = bytes(1 << 20, 2);
    let mut up = raw_login(&server, "alice");
    let r = up.call(json!({"cmd": "put", "name": "f", "size": data.len()}));
    assert_eq!(r["offset"], 0);
    up.send_bytes(&data[..300_000]);
    let mut idle = server.raw();
    assert_code(&idle.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
    let addr = server.addr.clone();
    let status = thread::scope(|s| {
        let term = s.spawn(|| server.signal("TERM"));
        // Idle connections are closed once shutdown has begun...
        assert!(closed(&mut idle));
        // ...and new ones are not served.
        if let Ok(stream) = std::net::TcpStream::connect(&addr) {
            let mut probe = Raw { stream };
            probe
                .stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            assert!(
                closed(&mut probe),
                "a connection was accepted during shutdown"
            );
        }
        // The upload in flight completes.
        up.send_bytes(&data[300_000..]);
        let r = up.call(json!({"md5": md5(&data)}));
        assert_eq!(r["ok"], true, "{r}");
        term.join().unwrap()
    });
    assert_eq!(status.code(), Some(0));
    let server = TestServer::start_in(Arc::clone(&server.data), &[]);
    assert_eq!(get_all(&mut server.login("alice"), "f"), data);
}

/// A transfer that does not finish within the grace period is cut off; the
/// server still exits 0 and the bytes it got stay staged.
#[test]
fn sigterm_cuts_off_a_stalled_upload_after_the_grace_period() {
    let mut server = TestServer::with_args(&["--grace", "1"]);
    server.user("alice");
    let chunk = bytes(1 << 20, 3);
    let size = 48u64 << 20;
    let data: Vec<u8> = chunk.repeat(48);
    let mut up = raw_login(&server, "alice");
    let r = up.call(json!({"cmd": "put", "name": "f", "size": size}));
    assert_eq!(r["offset"], 0);
    // More than every socket buffer can hold: once this returns, the
    // server has taken (and staged) part of it.
    let sent = 40 << 20;
    up.send_bytes(&data[..sent]);
    assert_eq!(server.signal("TERM").code(), Some(0));
    drop(up);
    let server = TestServer::start_in(Arc::clone(&server.data), &[]);
    let mut c = server.login("alice");
    let offset = c.put_begin("f", size).unwrap();
    assert!(offset > 0 && offset <= sent as u64, "{offset}");
    c.write_body(&data[offset as usize..]).unwrap();
    c.put_end(&md5(&data)).unwrap();
    assert_eq!(c.ls().unwrap()[0].size, size);
}

/// SIGKILL while eight uploads are in various states: the sheet opens, no
/// partial file is visible, finished files are intact, the rest resume.
#[test]
fn sigkill_during_uploads_loses_nothing_acknowledged() {
    let server = TestServer::start();
    server.user("alice");
    let size = 300_000usize;
    let data = |i: usize| bytes(size, 100 + i as u64);
    let barrier = Arc::new(Barrier::new(9));
    let in_flight: Vec<Option<Raw>> = thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let server = &server;
                s.spawn(move || {
                    let name = format!("f{i}");
                    let d = data(i);
                    let kept = match i {
                        // Acknowledged.
                        0..=2 => {
                            put_all(&mut server.login("alice"), &name, &d);
                            None
                        }
                        // Hung up after 100 kB, seen by the server.
                        3..=5 => {
                            put_part_and_hang_up(
                                server,
                                "alice",
                                &name,
                                size as u64,
                                &d[..100_000],
                            );
                            None
                        }
                        // Still sending when the server dies.
                        _ => {
                            let mut raw = raw_login(server, "alice");
                            let r = raw.call(json!({"cmd": "put", "name": name, "size": size}));
                            assert_eq!(r["offset"], 0);
                            raw.send_bytes(&d[..150_000]);
                            Some(raw)
                        }
                    };
                    barrier.wait();
                    kept
                })
            })
            .collect();
        barrier.wait();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // A registration in flight too.
    let mut late = server.raw();
    late.send(&json!({"cmd": "register", "user": "late", "password": PASSWORD}));

    let server = server.restart(&[]);
    drop(in_flight);
    let names = server.account_names();
    assert_eq!(names[0], "alice");
    assert!(names.len() <= 2, "{names:?}");
    let mut c = server.login("alice");
    let ls = c.ls().unwrap();
    let listed: Vec<&str> = ls.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(listed, ["f0", "f1", "f2"]);
    let on_disk = server.stored_names("alice", "").len();
    assert_eq!(on_disk, 3);
    for (i, f) in ls.iter().enumerate() {
        assert_eq!(f.md5, Some(md5(&data(i))));
        assert_eq!(get_all(&mut c, &f.name), data(i));
    }
    for i in 3..8 {
        let name = format!("f{i}");
        let offset = c.put_begin(&name, size as u64).unwrap();
        if i <= 5 {
            assert_eq!(offset, 100_000, "{name}");
        } else {
            assert!(offset <= 150_000, "{name}: {offset}");
        }
        c.write_body(&data(i)[offset as usize..]).unwrap();
        c.put_end(&md5(&data(i))).unwrap();
        assert_eq!(get_all(&mut c, &name), data(i));
    }
}

#[test]
fn a_user_called_users_xlsx_collides_with_nothing() {
    let server = TestServer::start();
    let mut c = server.user("users.xlsx");
    assert_eq!(
        code(server.client().register("USERS.xlsx", &pw())),
        ErrorCode::UserExists
    );
    put_all(&mut c, "users.xlsx", b"not a workbook");
    server.user("attic");
    server.user("users");
    let server = server.restart(&[]);
    assert_eq!(server.account_names().len(), 3);
    let mut c = server.login("users.xlsx");
    assert_eq!(get_all(&mut c, "users.xlsx"), b"not a workbook");
    assert!(server.login("users").ls().unwrap().is_empty());
    assert!(server.login("attic").ls().unwrap().is_empty());
}

/// An admin removes a user's row while the server is stopped: the name is
/// free again, and whoever takes it starts with an empty folder.
#[test]
fn a_removed_user_name_starts_with_an_empty_folder() {
    if local_only("a_removed_user_name_starts_with_an_empty_folder") {
        return;
    }
    let server = TestServer::start();
    let mut alice = server.user("alice");
    put_all(&mut alice, "diary", b"private");
    server.user("bob");
    let data = stop(server);
    let path = data.path().join("users.xlsx");
    let rows = sheet_rows(&path);
    let kept: Vec<_> = rows
        .into_iter()
        .filter(|r| r[0] != Data::String("alice".into()))
        .collect();
    write_rows(&path, &kept);

    let server = TestServer::start_in(data, &[]);
    let mut raw = server.raw();
    let r = raw.call(json!({"cmd": "login", "user": "alice", "password": PASSWORD}));
    assert_code(&r, "AUTH_FAILED");
    assert!(server.login("bob").ls().unwrap().is_empty());
    let mut c = server.client();
    c.register("Alice", &pw()).unwrap();
    c.login("alice", &pw()).unwrap();
    assert!(c.ls().unwrap().is_empty());
    assert_eq!(code(c.get_begin("diary", 0)), ErrorCode::NotFound);
    let w = c.whoami().unwrap();
    assert_eq!((w.user.as_str(), w.files, w.used), ("Alice", 0, 0));
}

/// A row of `users.xlsx` that holds no valid account stops the server from
/// starting, naming the row: were it skipped, the next registration would
/// rewrite the sheet without it. Empty rows are fine.
#[test]
fn a_bad_users_row_stops_the_server_and_loses_nothing() {
    if local_only("a_bad_users_row_stops_the_server_and_loses_nothing") {
        return;
    }
    let server = TestServer::start();
    server.user("alice");
    server.user("bob");
    let data = stop(server);
    let path = data.path().join("users.xlsx");
    let rows = sheet_rows(&path);
    let hash = rows[2][1].clone();
    let text = |s: &str| Data::String(s.into());
    let cases = [
        (vec![text("BOB"), hash.clone()], "is the same user as row 3"),
        (vec![text("carol")], "user \"carol\" has no password_hash"),
        (
            vec![text("carol"), text("plain")],
            "password_hash is not a PHC",
        ),
        (
            vec![text("-carol"), hash.clone()],
            "user name \"-carol\" is not valid",
        ),
    ];
    for (bad, problem) in cases {
        // Header, alice, bob, an empty row, then the bad row: row 5.
        let mut edited = rows.clone();
        edited.extend([vec![], bad]);
        write_rows(&path, &edited);
        let before = fs::read(&path).unwrap();
        let stderr = serve_refuses(data.path());
        assert!(
            stderr.contains("users.xlsx") && stderr.contains("row 5: ") && stderr.contains(problem),
            "{stderr}"
        );
        assert_eq!(fs::read(&path).unwrap(), before, "{problem}");
    }

    let mut fixed = rows.clone();
    fixed.push(vec![]);
    write_rows(&path, &fixed);
    let server = TestServer::start_in(data, &[]);
    server.login("alice");
    server.login("bob");
}

/// Per-user quotas come from the sheet's `quota_bytes` column, override
/// `--quota`, and survive the sheet being rewritten by a registration.
#[test]
fn quotas_from_the_users_sheet() {
    if local_only("quotas_from_the_users_sheet") {
        return;
    }
    let server = TestServer::with_args(&["--quota", "1000"]);
    for u in ["alice", "bob", "carol"] {
        server.user(u);
    }
    let data = stop(server);
    let path = data.path().join("users.xlsx");
    let mut rows = sheet_rows(&path);
    for row in &mut rows[1..] {
        row.resize(4, Data::Empty);
        match row[0].to_string().as_str() {
            "alice" => row[3] = Data::Float(100.0),
            "bob" => row[3] = Data::String("5000".into()),
            _ => {}
        }
    }
    write_rows(&path, &rows);

    let server = TestServer::start_in(data, &["--quota", "1000"]);
    let mut alice = server.login("alice");
    assert_eq!(alice.whoami().unwrap().quota, Some(100));
    assert_eq!(code(alice.put_begin("f", 101)), ErrorCode::QuotaExceeded);
    put_all(&mut alice, "f", &[1; 100]);
    let mut bob = server.login("bob");
    assert_eq!(bob.whoami().unwrap().quota, Some(5000));
    put_all(&mut bob, "f", &[2; 4000]);
    let mut carol = server.login("carol");
    assert_eq!(carol.whoami().unwrap().quota, Some(1000));
    assert_eq!(code(carol.put_begin("f", 1001)), ErrorCode::QuotaExceeded);

    server.user("dave");
    let rows = sheet_rows(&server.path("users.xlsx"));
    let quota = |name: &str| {
        let row = rows
            .iter()
            .find(|r| r[0] == Data::String(name.into()))
            .unwrap();
        row.get(3).map(Data::to_string).unwrap_or_default()
    };
    assert_eq!(
        [quota("alice"), quota("bob"), quota("carol"), quota("dave")],
        ["100", "5000", "", ""]
    );
}

/// One log line per request, naming the peer; passwords never appear,
/// whatever the request looked like.
#[test]
fn the_log_has_one_line_per_request_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut child = serve_args(&mut Command::new(bin()), &dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let addr = ready(&mut BufReader::new(child.stdout.take().unwrap())).unwrap();

    let secrets = ["first-secret-pw", "second-secret-pw", "third-secret-pw"];
    let mut raw = Raw::connect(&addr);
    let port = raw.stream.local_addr().unwrap().port();
    let requests = [
        json!({"cmd": "register", "user": "alice", "password": secrets[0]}),
        json!({"cmd": "login", "user": "alice", "password": secrets[1]}),
        json!({"cmd": "login", "user": secrets[1], "password": secrets[1]}),
        json!({"cmd": "login", "password": secrets[1]}),
        json!({"cmd": "login", "user": "alice", "password": secrets[0]}),
        json!({"cmd": "LOGIN", "user": "alice", "password": secrets[1]}),
        json!({"cmd": "register", "user": "bob", "password": secrets[1].repeat(100)}),
        json!({"cmd": "ls"}),
        json!({"cmd": "whoami"}),
        json!({"cmd": "get", "name": "missing"}),
    ];
    for r in &requests {
        raw.call(r.clone());
    }
    let r = raw.call(json!({"cmd": "put", "name": "f", "size": 5}));
    assert_eq!(r["offset"], 0);
    raw.send_bytes(b"hello");
    assert_eq!(raw.call(json!({"md5": md5(b"hello")}))["ok"], true);
    assert_eq!(raw.call(json!({"cmd": "quit"}))["ok"], true);
    assert!(closed(&mut raw));
    // A broken frame that carries a password.
    let mut bad = Raw::connect(&addr);
    let bad_port = bad.stream.local_addr().unwrap().port();
    let frame = format!(
        "{{\"cmd\":\"login\",\"user\":\"alice\",\"password\":\"{}\"",
        secrets[2]
    );
    bad.send_frame(frame.len() as u32, frame.as_bytes());
    assert_code(&bad.recv(), "BAD_FRAME");
    assert!(closed(&mut bad));

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
    let log = fs::read_to_string(&log_path).unwrap();
    for s in secrets {
        assert!(!log.contains(s), "password in the log:\n{log}");
    }
    let lines = |port: u16| {
        // Each line: an RFC 3339 time, then the peer.
        let prefix = format!("127.0.0.1:{port} ");
        log.lines()
            .filter(|l| {
                let (time, rest) = l.split_once(' ').unwrap_or_default();
                time.ends_with('Z') && rest.starts_with(&prefix)
            })
            .count()
    };
    // The requests above, then put (one request with its step 4) and quit.
    assert_eq!(lines(port), requests.len() + 2, "{log}");
    assert_eq!(lines(bad_port), 1, "{log}");
    // A failed login names the account it tried; a name that is no
    // account is not written.
    assert!(
        log.lines()
            .any(|l| l.contains("\"login\" \"alice\"") && l.ends_with("AUTH_FAILED")),
        "{log}"
    );
    assert!(log.contains("\"login\" \"(no such user)\""), "{log}");
}

#[test]
fn sigkill_during_registrations_leaves_a_readable_sheet_with_every_acknowledged_user() {
    let mut server = TestServer::start();
    let (acked_tx, acked_rx) = std::sync::mpsc::channel::<String>();
    let acked = thread::scope(|s| {
        for t in 0..6 {
            let acked_tx = acked_tx.clone();
            let addr = server.addr.clone();
            s.spawn(move || {
                // Registers until the server dies; reports each success.
                for i in 0.. {
                    let Ok(mut c) = netdisk::client::Client::connect(&addr) else {
                        return;
                    };
                    let name = format!("u{t}x{i}");
                    if c.register(&name, &pw()).is_err() || acked_tx.send(name).is_err() {
                        return;
                    }
                }
            });
        }
        drop(acked_tx);
        // Kill the server while registrations keep arriving, each of which
        // rewrites users.xlsx.
        let mut acked: Vec<String> = acked_rx.iter().take(12).collect();
        server.signal("KILL");
        acked.extend(acked_rx.iter());
        acked
    });
    // The restarted server read the sheet, and knows everyone it acknowledged.
    let server = TestServer::start_in(Arc::clone(&server.data), &[]);
    for name in &acked {
        server.login(name);
    }
    let names = server.account_names();
    assert!(names.len() >= acked.len(), "{} accounts", names.len());
}
