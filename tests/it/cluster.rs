//! Several servers, one disk: PostgreSQL, an S3 store (moto), two netdisk
//! servers on 127.0.0.2 and 127.0.0.3, and HAProxy on 127.0.0.1 sending
//! PROXY v2 (from 127.0.0.8, the one peer `--proxy-from` lists). Clients
//! come from 127.0.0.4 and up; HAProxy keeps each client address on one
//! server (`balance source`) and sends it to the other when that one dies.
//!
//! Needs `NETDISK_TEST_PG`, `moto_server` and `haproxy`; skips with a
//! notice without them, except under `CI=true`.

use std::thread;
use std::time::{Duration, Instant};

use netdisk::client::Client;
use netdisk::db::testing::TestDb;
use netdisk::disk::s3::testing::TestS3;
use netdisk::error::ErrorCode;

use crate::http::Web;
use crate::protocol::{get_all, put_all};
use crate::proxy_haproxy::{have, start_haproxy_with};
use crate::support::*;

fn balancer_config(port: u16, a: &str, b: &str) -> String {
    format!(
        "global
    maxconn 512

defaults
    mode tcp
    retries 3
    option redispatch
    timeout connect 2s
    timeout client 120s
    timeout server 120s

frontend front
    bind 127.0.0.1:{port}
    default_backend netdisk

backend netdisk
    balance source
    server a {a} send-proxy-v2 source 127.0.0.8 check check-send-proxy inter 200ms fall 2 rise 2
    server b {b} send-proxy-v2 source 127.0.0.8 check check-send-proxy inter 200ms fall 2 rise 2
"
    )
}

/// A protocol client through the balancer from `127.0.0.N`, retried
/// within a deadline while the balancer learns that a server is gone.
fn through(lb: &str, n: u8) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = Client::from_stream(connect_from(lb, n)).unwrap();
        match c.ping(None) {
            Ok(_) => return c,
            Err(e) => assert!(Instant::now() < deadline, "no server through {lb}: {e:?}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn logged_in(lb: &str, n: u8) -> Client {
    let mut c = through(lb, n);
    c.login("alice", &pw()).unwrap();
    c
}

#[test]
fn two_servers_behind_haproxy_serve_one_disk_and_see_each_client() {
    if !have("haproxy", "-v") {
        return;
    }
    let Some(db) = TestDb::create("cluster") else {
        return;
    };
    let Some(s3) = TestS3::start("cluster") else {
        return;
    };
    let blobs = format!("s3://{}/cluster", s3.bucket);
    let args = [
        "--db",
        db.url.as_str(),
        "--blobs",
        blobs.as_str(),
        "--proxy-from",
        "127.0.0.8",
        "--max-per-address",
        "2",
    ];
    let env = [
        ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
    ];
    let mut a = TestServer::on_with_env("127.0.0.2:0", &args, &env);
    let mut b = TestServer::on_with_env("127.0.0.3:0", &args, &env);
    let lb = start_haproxy_with(|port| balancer_config(port, &a.addr, &b.addr));
    let lb_addr = lb.addr.clone();

    // Register and log in through the balancer.
    let mut c = through(&lb_addr, 4);
    c.register("alice", &pw()).unwrap();
    c.login("alice", &pw()).unwrap();
    put_all(&mut c, "hello.txt", b"hello from behind the balancer");
    c.mkdir("docs").unwrap();
    put_all(&mut c, "docs/a.bin", &bytes(3 << 20, 1));
    drop(c);

    // `ls` is the same from both servers (straight to each: 127.0.0.1 is
    // not a proxy peer).
    let ls = |s: &TestServer| s.login("alice").list("", true).unwrap().files;
    let (from_a, from_b) = (ls(&a), ls(&b));
    assert_eq!(from_a.len(), 2);
    assert_eq!(
        serde_json::to_value(&from_a).unwrap(),
        serde_json::to_value(&from_b).unwrap()
    );

    // A web session made on one server is valid on the other.
    let mut on_a = Web::plain(&a);
    on_a.sign_in("alice");
    let mut on_b = Web::plain(&b);
    on_b.cookie = on_a.cookie.clone();
    on_b.csrf = on_a.csrf.clone();
    assert_eq!(on_b.get("/api/whoami").json()["user"], "alice");

    // Per-address limits see the client's address, not the balancer's:
    // two connections from 127.0.0.4 fill its share; 127.0.0.5 still
    // gets in.
    let held: Vec<Client> = (0..2).map(|_| logged_in(&lb_addr, 4)).collect();
    let mut third = Client::from_stream(connect_from(&lb_addr, 4)).unwrap();
    let busy = third.ping(None).unwrap_err();
    assert_eq!(busy.code(), Some(ErrorCode::Busy), "{busy:?}");
    let mut other = logged_in(&lb_addr, 5);
    assert_eq!(other.whoami().unwrap().user, "alice");
    drop((held, third, other));
    for s in [&a, &b] {
        let log = s.log();
        assert!(
            !log.contains("127.0.0.8:"),
            "the balancer's address logged:\n{log}"
        );
    }

    // A 64 MiB upload from 127.0.0.6, cut by SIGKILL of the server that
    // had it, resumed through the balancer on the other.
    let data = bytes(64 << 20, 2);
    let size = data.len() as u64;
    let mut up = logged_in(&lb_addr, 6);
    assert_eq!(up.put_begin("big.bin", size).unwrap(), 0);
    up.write_body(&data[..(40 << 20)]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let parts = |db: &TestDb| -> i64 {
        postgres::Client::connect(&db.url, postgres::NoTls)
            .unwrap()
            .query_one(
                "SELECT coalesce(max(jsonb_array_length(parts)), 0)::bigint FROM staged",
                &[],
            )
            .unwrap()
            .get(0)
    };
    while parts(&db) < 4 {
        assert!(Instant::now() < deadline, "no parts recorded");
        thread::sleep(Duration::from_millis(20));
    }
    let had_it = if a.log().contains("127.0.0.6:") {
        &mut a
    } else {
        &mut b
    };
    assert!(had_it.log().contains("127.0.0.6:"));
    had_it.signal("KILL");
    drop(up);
    let mut up = logged_in(&lb_addr, 6);
    let offset = up.put_begin("big.bin", size).unwrap();
    assert!(
        offset >= 32 << 20 && offset.is_multiple_of(8 << 20),
        "resumed at {offset}"
    );
    up.write_body(&data[offset as usize..]).unwrap();
    assert_eq!(up.put_end(&md5(&data)).unwrap().md5, md5(&data));
    assert_eq!(get_all(&mut up, "big.bin"), data);
    drop(lb);
}
