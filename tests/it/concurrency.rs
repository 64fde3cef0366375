//! Many clients at once, the worker pool's limits (`BUSY`), and timeouts
//! for idle connections and stalled transfers (`TIMEOUT`).

use std::io::Read;
use std::sync::{Arc, Barrier};
use std::thread;

use serde_json::json;

use crate::protocol::{closed, get_all, put_all, raw_login};
use crate::support::*;

#[test]
fn of_twenty_registrations_of_one_name_exactly_one_succeeds() {
    let server = TestServer::start();
    // Spellings of one user after NFC and lowercasing.
    let spellings = ["Zoë", "zoë", "ZOË", "zoe\u{308}", "ZOE\u{308}"];
    let n = 20;
    let barrier = Arc::new(Barrier::new(n));
    let replies: Vec<serde_json::Value> = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let mut raw = server.raw();
                let barrier = Arc::clone(&barrier);
                let user = spellings[i % spellings.len()];
                s.spawn(move || {
                    barrier.wait();
                    raw.call(json!({"cmd": "register", "user": user, "password": format!("password{i}")}))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = (0..n).filter(|&i| replies[i]["ok"] == true).collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    for (i, r) in replies.iter().enumerate() {
        if i != winners[0] {
            assert_code(r, "USER_EXISTS");
        }
    }
    // The winner's password is the one that works.
    let w = winners[0];
    let mut raw = server.raw();
    let r = raw.call(json!({"cmd": "login", "user": "zoë", "password": format!("password{w}")}));
    assert_eq!(r["user"], spellings[w % spellings.len()], "{r}");
    // users.xlsx opens and has one row for that user.
    let names = server.account_names();
    assert_eq!(names, [spellings[w % spellings.len()]]);
}

#[test]
fn thirty_two_clients_each_do_ten_round_trips() {
    let server = TestServer::start();
    let users = ["u0", "u1", "u2", "u3"];
    for u in users {
        server.user(u);
    }
    let clients = 32;
    let barrier = Arc::new(Barrier::new(clients));
    // Each client owns five names and writes each twice, so half of the
    // rounds replace a file.
    let data = |client: usize, round: usize| {
        bytes(
            1 + (client * 7919 + round * 104_729) % 200_000,
            (client * 10 + round) as u64,
        )
    };
    thread::scope(|s| {
        for client in 0..clients {
            let barrier = Arc::clone(&barrier);
            let server = &server;
            s.spawn(move || {
                let mut c = server.login(users[client % users.len()]);
                barrier.wait();
                for round in 0..10 {
                    let name = format!("c{client}-{}", round % 5);
                    let d = data(client, round);
                    put_all(&mut c, &name, &d);
                    assert_eq!(get_all(&mut c, &name), d, "{name} round {round}");
                }
            });
        }
    });
    for (i, u) in users.iter().enumerate() {
        let mut c = server.login(u);
        let ls = c.ls().unwrap();
        assert_eq!(ls.len(), 5 * clients / users.len());
        for f in ls {
            let (client, slot) = f.name[1..].split_once('-').unwrap();
            let (client, slot): (usize, usize) = (client.parse().unwrap(), slot.parse().unwrap());
            assert_eq!(client % users.len(), i);
            let d = data(client, slot + 5);
            assert_eq!(
                (f.size, f.md5),
                (d.len() as u64, Some(md5(&d))),
                "{}",
                f.name
            );
        }
    }
}

#[test]
fn concurrent_uploads_of_one_name_lock_all_but_one() {
    let server = TestServer::start();
    server.user("alice");
    let n = 8;
    let asked = Arc::new(Barrier::new(n));
    let answered = Arc::new(Barrier::new(n));
    let outcomes: Vec<bool> = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let mut raw = raw_login(&server, "alice");
                let (asked, answered) = (Arc::clone(&asked), Arc::clone(&answered));
                s.spawn(move || {
                    let body = format!("writer {i:02}");
                    asked.wait();
                    let r = raw.call(json!({"cmd": "put", "name": "same", "size": body.len()}));
                    // Everyone has an answer before the winner finishes.
                    answered.wait();
                    if r["ok"] == true {
                        raw.send_bytes(body.as_bytes());
                        let done = raw.call(json!({"md5": md5(body.as_bytes())}));
                        assert_eq!(done["ok"], true, "{done}");
                        true
                    } else {
                        assert_code(&r, "LOCKED");
                        false
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winner = outcomes.iter().position(|&w| w).unwrap();
    assert_eq!(outcomes.iter().filter(|&&w| w).count(), 1);
    let mut c = server.login("alice");
    assert_eq!(
        get_all(&mut c, "same"),
        format!("writer {winner:02}").as_bytes()
    );
}

/// A connection that holds a worker: its first reply proves it got one.
fn occupy(server: &TestServer, user: &str) -> netdisk::client::Client {
    hold_worker(server, user)
}

#[test]
fn a_full_queue_answers_busy_and_closes() {
    // One worker and no reserve: a body can hold it (with more workers, a
    // quarter of them never carries a body; tests/it/bodies.rs).
    let server = TestServer::with_args(&["--workers", "1", "--queue", "1"]);
    let first = occupy(&server, "first");
    // Waits in the queue: the worker is taken.
    let mut queued = server.raw();
    queued.send(&json!({"cmd": "whoami"}));
    // Does not fit anywhere.
    let mut refused = server.raw();
    refused.send(&json!({"cmd": "whoami"}));
    let r = refused.recv();
    assert_code(&r, "BUSY");
    assert!(closed(&mut refused));
    // An idle connection needs no worker: it is still accepted.
    let mut idle = server.raw();
    // Once a worker is free, the queued connection is served.
    drop(first);
    assert_code(&queued.recv(), "NOT_LOGGED_IN");
    assert_code(&idle.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
}

#[test]
fn an_idle_connection_times_out_and_holds_no_worker() {
    let server = TestServer::with_args(&["--workers", "1", "--idle-timeout", "1"]);
    let mut idle = server.user("idler");
    let mut raw_idle = server.raw();
    // The one worker is free for others while both wait.
    let mut other = server.raw();
    assert_code(&other.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
    assert_code(&raw_idle.recv(), "TIMEOUT");
    assert!(closed(&mut raw_idle));
    let e = idle.whoami().unwrap_err();
    assert!(
        matches!(e.code(), Some(netdisk::error::ErrorCode::Timeout)) || e.code().is_none(),
        "{e:?}"
    );
}

#[test]
fn a_header_that_stops_halfway_times_out() {
    let server = TestServer::with_args(&["--idle-timeout", "1"]);
    // Both at once: each is timed on its own.
    let mut conns: Vec<Raw> = [&b"\0\0"[..], b"\0\0\0\x20{\"cmd\":"]
        .into_iter()
        .map(|partial| {
            let mut raw = server.raw();
            raw.send_bytes(partial);
            raw
        })
        .collect();
    for raw in &mut conns {
        assert_code(&raw.recv(), "TIMEOUT");
        assert!(closed(raw));
    }
}

#[test]
fn a_stalled_upload_times_out_and_stays_resumable() {
    let server = TestServer::with_args(&["--idle-timeout", "1"]);
    server.user("alice");
    let data = bytes(100_000, 1);
    let mut raw = raw_login(&server, "alice");
    let r = raw.call(json!({"cmd": "put", "name": "f", "size": 100_000}));
    assert_eq!(r["offset"], 0);
    raw.send_bytes(&data[..40_000]);
    assert_code(&raw.recv(), "TIMEOUT");
    assert!(closed(&mut raw));
    let mut c = server.login("alice");
    assert!(c.ls().unwrap().is_empty());
    assert_eq!(c.put_begin("f", 100_000).unwrap(), 40_000);
    c.write_body(&data[40_000..]).unwrap();
    c.put_end(&md5(&data)).unwrap();
    assert_eq!(get_all(&mut c, "f"), data);
}

/// A client that stops reading a download cannot pin a worker.
#[test]
fn a_stalled_download_is_aborted_and_frees_its_worker() {
    let server = TestServer::with_args(&["--workers", "1", "--idle-timeout", "1"]);
    server.user("alice");
    // Bigger than every socket buffer between the two ends (Linux lets a
    // loopback receive buffer grow to tcp_rmem's maximum, 32 MiB here).
    let size = 80 << 20;
    put_all(&mut server.login("alice"), "big", &vec![7u8; size]);
    let mut reader = raw_login(&server, "alice");
    reader.send(&json!({"cmd": "get", "name": "big"}));
    let mut waiting = server.raw();
    waiting.send(&json!({"cmd": "whoami"}));
    assert_code(&waiting.recv(), "NOT_LOGGED_IN");
    // The stalled reader got the header and part of the body, then the end.
    let header = reader.recv();
    assert_eq!(header["size"], size);
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server neither sent nor closed: {e}"),
        }
    }
    assert!(got < size, "the whole body arrived");
}

/// A listing taken while another connection overwrites the same file
/// reads each file's digest against the same `stat` as its size and time:
/// a stored file is never listed with `md5: null`.
#[test]
fn ls_during_overwrites_never_shows_a_null_md5() {
    let server = TestServer::start();
    drop(server.user("alice"));
    let mut writer = raw_login(&server, "alice");
    let mut reader = raw_login(&server, "alice");
    let put = |raw: &mut Raw, i: u32| {
        let data = format!("version {i}");
        raw.send(
            &json!({"cmd": "put", "name": "f", "size": data.len(), "md5": md5(data.as_bytes())}),
        );
        raw.send_bytes(data.as_bytes());
        let r = raw.recv();
        assert_eq!(r["ok"], true, "{r}");
    };
    put(&mut writer, 0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::clone(&stop);
    // Each version's (size, MD5): a listed pair must be one of them.
    let versions: std::collections::HashSet<(u64, String)> = (0..=1000)
        .map(|i| {
            let data = format!("version {i}");
            (data.len() as u64, md5(data.as_bytes()))
        })
        .collect();
    let lister = thread::spawn(move || {
        let mut lists = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let r = reader.call(json!({"cmd": "ls"}));
            let f = &r["files"][0];
            let md5 = f["md5"].as_str();
            assert!(md5.is_some(), "listing {lists}: {r}");
            let pair = (f["size"].as_u64().unwrap(), md5.unwrap().to_string());
            assert!(versions.contains(&pair), "listing {lists}: {r}");
            lists += 1;
        }
        lists
    });
    for i in 1..=1000 {
        put(&mut writer, i);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(lister.join().unwrap() > 0);
}
