//! `ping` (issue 10): on the wire, anonymous and logged in; and the
//! client's `netdisk ping`, before any login and in the shell.

use serde_json::json;

use crate::cli::{failure, netdisk, netdisk_at, setup, success};
use crate::support::*;

#[test]
fn r10_ping_on_the_wire_anonymous_and_logged_in() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let r = raw.call(json!({"cmd": "ping"}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
    assert!(r.get("message").is_none(), "{r}");
    let r = raw.call(json!({"cmd": "ping", "message": null}));
    assert!(r.get("message").is_none(), "{r}");
    let r = raw.call(json!({"cmd": "ping", "message": "你好 😀"}));
    assert_eq!(r["message"], "你好 😀");
    // 1024 bytes is the most; one more, or a number, is a bad request,
    // and the connection goes on.
    let most = "é".repeat(512);
    assert_eq!(
        raw.call(json!({"cmd": "ping", "message": most}))["ok"],
        true
    );
    assert_code(
        &raw.call(json!({"cmd": "ping", "message": format!("{most}x")})),
        "BAD_REQUEST",
    );
    assert_code(
        &raw.call(json!({"cmd": "ping", "message": 5})),
        "BAD_REQUEST",
    );
    assert_eq!(raw.call(json!({"cmd": "ping"}))["ok"], true);

    let mut c = server.user("alice");
    let answer = c.ping(Some("logged in")).unwrap();
    assert_eq!(answer.message.as_deref(), Some("logged in"));
    assert_eq!(answer.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(c.whoami().unwrap().user, "alice", "still logged in");
}

#[test]
fn r10_netdisk_ping_needs_no_login() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = success(
        netdisk(&server, dir.path())
            .env_remove("NETDISK_USER")
            .env_remove("NETDISK_PASSWORD")
            .args(["ping", "hello 世界"]),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], format!("server:  {}", server.addr));
    assert_eq!(lines[1], format!("version: {}", env!("CARGO_PKG_VERSION")));
    assert!(
        lines[2].starts_with("time:    ") && lines[2].ends_with(" ms"),
        "{out}"
    );
    assert_eq!(lines[3], "message: hello 世界");
    // Without a message there is no message line.
    let out = success(netdisk(&server, dir.path()).arg("ping"));
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(!out.contains("message:"), "{out}");
    // Nobody there: a network failure.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let err = failure(netdisk_at(&dead, dir.path()).arg("ping"), 6);
    assert!(err.contains("cannot connect to"), "{err}");
}

#[test]
fn r10_the_shell_pings_before_and_after_login() {
    let (server, dir) = setup(&[]);
    let out = success(
        netdisk(&server, dir.path())
            .env_remove("NETDISK_USER")
            .arg("shell")
            .write_stdin("ping before\nlogin alice\nping after\nwhoami\n"),
    );
    assert!(out.contains("message: before\n"), "{out}");
    assert!(out.contains("logged in as alice\n"), "{out}");
    assert!(out.contains("message: after\n"), "{out}");
    assert!(out.contains("user:   alice\n"), "{out}");
}
