//! Accounts and storage under abuse (issue 8): unfinished uploads count
//! against the quota, guessing limits that can't be raced or turned on the
//! owner, and registration limits.

use std::sync::{Arc, Barrier};
use std::thread;

use netdisk::error::ErrorCode;
use netdisk::ratelimit::{MAX_PER_USER, MAX_PER_USER_PEER};
use serde_json::{json, Value};

use crate::protocol::{code, put_all};
use crate::support::{assert_code, pw, TestServer, PASSWORD};
use crate::transfer::put_part_and_hang_up;

/// `(used, staged)` as `whoami` reports them.
fn usage(server: &TestServer, user: &str) -> (u64, u64) {
    let w = server.login(user).whoami().unwrap();
    (w.used, w.staged)
}

/// An upload abandoned before a restart still holds its declared size
/// after it, until `discard` drops it.
#[test]
fn r8_abandoned_uploads_count_against_the_quota_across_a_restart() {
    let server = TestServer::with_args(&["--quota", "100"]);
    let mut c = server.user("alice");
    assert_eq!(put_part_and_hang_up(&server, "alice", "a", 60, &[7; 10]), 0);
    assert_eq!(usage(&server, "alice"), (0, 10));
    // used 0 + 41 + the 60 declared by "a" > 100.
    assert_eq!(code(c.put_begin("b", 41)), ErrorCode::QuotaExceeded);
    put_all(&mut c, "b", &[1; 40]);

    let server = server.restart(&["--quota", "100"]);
    assert_eq!(usage(&server, "alice"), (40, 10));
    let mut c = server.login("alice");
    assert_eq!(code(c.put_begin("c", 1)), ErrorCode::QuotaExceeded);
    // Replacing "b" is measured without its old size: 40 - 40 + 40 + 60.
    put_all(&mut c, "b", &[2; 40]);
    // The abandoned upload itself resumes: it is not counted twice.
    assert_eq!(c.put_begin("a", 60).unwrap(), 10);
    drop(c);

    let mut c = server.login("alice");
    c.discard("a").unwrap();
    assert_eq!(code(c.discard("a")), ErrorCode::NotFound);
    assert_eq!(usage(&server, "alice"), (40, 0));
    put_all(&mut c, "c", &[3; 60]);
    assert_eq!(usage(&server, "alice"), (100, 0));
}

/// An upload in flight counts with its declared size, and cannot be
/// discarded from under its uploader.
#[test]
fn r8_uploads_in_flight_count_and_are_locked_against_discard() {
    let server = TestServer::with_args(&["--quota", "100"]);
    let mut a = server.user("alice");
    let mut b = server.login("alice");
    assert_eq!(a.put_begin("a", 70).unwrap(), 0);
    assert_eq!(code(b.put_begin("b", 31)), ErrorCode::QuotaExceeded);
    assert_eq!(code(b.discard("a")), ErrorCode::Locked);
    assert_eq!(code(b.discard("never")), ErrorCode::NotFound);
    assert_eq!(code(b.discard(".hidden")), ErrorCode::InvalidName);
    a.write_body(&[1; 70]).unwrap();
    a.put_end(&crate::support::md5(&[1; 70])).unwrap();
    assert_eq!(code(b.discard("a")), ErrorCode::NotFound);
    put_all(&mut b, "b", &[2; 30]);
    assert_eq!(b.whoami().unwrap().used, 100);
}

/// At most 16 unfinished uploads per user (the default): the next `put`
/// of another name says why it is refused; a resume is still allowed.
#[test]
fn r8_sixteen_unfinished_uploads_at_most() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    for i in 0..16 {
        put_part_and_hang_up(&server, "alice", &format!("part{i:02}"), 100, b"x");
    }
    assert_eq!(c.whoami().unwrap().staged, 16);
    let err = c.put_begin("one more", 1).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::QuotaExceeded));
    let said = err.to_string();
    assert!(said.contains("16 unfinished uploads"), "{said}");
    // Others are not affected, and an unfinished one can still resume.
    server.user("bob").put_begin("one more", 1).unwrap();
    let mut resume = server.login("alice");
    assert_eq!(resume.put_begin("part03", 100).unwrap(), 1);
    drop(resume);
    c.discard("part00").unwrap();
    assert_eq!(c.put_begin("one more", 1).unwrap(), 0);
}

/// The cap is a flag, and the command-line client shows the staged bytes
/// and discards an upload.
#[test]
fn r8_max_staged_flag_and_the_cli() {
    let server = TestServer::with_args(&["--max-staged", "1"]);
    let mut c = server.user("alice");
    put_part_and_hang_up(&server, "alice", "big.iso", 1000, &[0; 300]);
    assert_eq!(code(c.put_begin("other", 1)), ErrorCode::QuotaExceeded);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::bin())
            .args(["--server", &server.addr, "--user", "alice"])
            .args(args)
            .env("NETDISK_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, _) = cli(&["whoami"]);
    assert!(ok && out.contains("staged: 300 B (300 bytes)"), "{out}");
    let local = tempfile::tempdir().unwrap();
    let file = crate::support::write_file(local.path(), "other", b"1");
    let (ok, _, err) = cli(&["put", file.to_str().unwrap()]);
    assert!(!ok && err.contains("1 unfinished uploads already"), "{err}");
    let (ok, out, _) = cli(&["discard", "big.iso"]);
    assert!(
        ok && out.contains("discarded the upload of big.iso"),
        "{out}"
    );
    let (ok, _, err) = cli(&["discard", "big.iso"]);
    assert!(
        !ok && err.contains("cannot discard") && err.contains("no unfinished upload"),
        "{err}"
    );
    assert_eq!(c.whoami().unwrap().staged, 0);
    assert_eq!(c.put_begin("other", 1).unwrap(), 0);
}

/// Sends `n` logins for `user` at once, each on its own connection from
/// 127.0.0.`from`, and returns the error codes (or "OK").
fn logins_at_once(
    server: &TestServer,
    from: u8,
    user: &str,
    password: &str,
    n: usize,
) -> Vec<String> {
    let go = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let mut raw = server.raw_from(from);
            let go = Arc::clone(&go);
            let req = json!({"cmd": "login", "user": user, "password": password});
            thread::spawn(move || {
                go.wait();
                let r = raw.call(req);
                match r["error"].as_str() {
                    Some(code) => code.to_string(),
                    None => "OK".to_string(),
                }
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn count(codes: &[String], code: &str) -> usize {
    codes.iter().filter(|c| *c == code).count()
}

/// Of 32 simultaneous wrong logins for one name, only the limit are
/// checked: the rest are refused without a hash.
#[test]
fn r8_simultaneous_wrong_logins_are_checked_at_most_to_the_limit() {
    // A burst of right logins as large as the last step's, which is about
    // the failure limits, not the pace of logins (tests/it/logins.rs).
    let server = TestServer::with_args(&["--login-burst", "24"]);
    server.user("alice");
    let codes = logins_at_once(&server, 2, "alice", "wrong password", 32);
    assert_eq!(
        count(&codes, "AUTH_FAILED"),
        MAX_PER_USER_PEER as usize,
        "{codes:?}"
    );
    assert_eq!(
        count(&codes, "RATE_LIMITED"),
        32 - MAX_PER_USER_PEER as usize
    );
    // Simultaneous right ones all get in (a client opening many connections).
    server.user("bob");
    let codes = logins_at_once(&server, 1, "bob", PASSWORD, 24);
    assert_eq!(count(&codes, "OK"), 24, "{codes:?}");
}

fn login_from(server: &TestServer, from: u8, user: &str, password: &str) -> Value {
    server
        .raw_from(from)
        .call(json!({"cmd": "login", "user": user, "password": password}))
}

/// A stranger guessing alice's password from other addresses locks those
/// addresses out, and the name for every new address, but never alice at
/// the address she logged in from, also after a restart.
#[test]
fn r8_the_owner_is_not_locked_out_from_a_known_address() {
    let server = TestServer::start();
    let mut home = server.client_from(5);
    home.register("alice", &pw()).unwrap();
    home.login("alice", &pw()).unwrap();
    let guess = |server: &TestServer, from: u8| {
        let r = login_from(server, from, "alice", "a wrong guess");
        r["error"].as_str().unwrap_or("OK").to_string()
    };
    for _ in 0..MAX_PER_USER {
        assert_eq!(guess(&server, 2), "AUTH_FAILED");
    }
    assert_eq!(guess(&server, 2), "RATE_LIMITED");
    // The name is now limited for an address alice never used, and the
    // refusal says when to try again (within the minute's window)...
    let limited = login_from(&server, 3, "alice", PASSWORD);
    assert_code(&limited, "RATE_LIMITED");
    let message = limited["message"].as_str().unwrap();
    let secs: u64 = message
        .strip_prefix("too many failed logins; try again in ")
        .and_then(|m| m.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{message}"));
    assert!((1..=60).contains(&secs), "{message}");
    // ...but not at home.
    assert_eq!(login_from(&server, 5, "alice", PASSWORD)["user"], "alice");

    let server = server.restart(&[]);
    assert!(server.keeps_known_addresses());
    // On PostgreSQL the limits outlive a server (every server shares
    // them): the minute's window ends instead.
    if let Some(url) = server.db_url() {
        let mut pg = postgres::Client::connect(url, postgres::NoTls).unwrap();
        pg.execute("DELETE FROM login_limits", &[]).unwrap();
    }
    for i in 0..MAX_PER_USER {
        // From two addresses, none over its own (name, address) limit.
        assert_eq!(guess(&server, 2 + (i % 2) as u8), "AUTH_FAILED");
    }
    assert_code(&login_from(&server, 4, "alice", PASSWORD), "RATE_LIMITED");
    assert_eq!(login_from(&server, 5, "alice", PASSWORD)["user"], "alice");
    // The known address is alice's, not anyone's: bob is limited there.
    let mut bob = server.client_from(6);
    bob.register("bob", &pw()).unwrap();
    for _ in 0..MAX_PER_USER {
        assert_code(&login_from(&server, 7, "bob", "wrong guess"), "AUTH_FAILED");
    }
    assert_code(&login_from(&server, 5, "bob", PASSWORD), "RATE_LIMITED");
}

fn register_from(server: &TestServer, from: u8, user: &str) -> Value {
    server
        .raw_from(from)
        .call(json!({"cmd": "register", "user": user, "password": PASSWORD}))
}

/// Registrations are limited per address, and only those that created an
/// account count; registrations in flight cannot overshoot together.
#[test]
fn r8_registrations_are_limited_per_address() {
    let server = TestServer::with_args(&["--register-limit", "3"]);
    assert_eq!(register_from(&server, 2, "u1")["ok"], true);
    assert_code(&register_from(&server, 2, "U1"), "USER_EXISTS");
    assert_code(
        &server
            .raw_from(2)
            .call(json!({"cmd": "register", "user": "u2", "password": "short"})),
        "WEAK_PASSWORD",
    );
    assert_eq!(register_from(&server, 2, "u2")["ok"], true);
    assert_eq!(register_from(&server, 2, "u3")["ok"], true);
    let r = register_from(&server, 2, "u4");
    assert_code(&r, "RATE_LIMITED");
    assert!(
        r["message"].as_str().unwrap().contains("registrations"),
        "{r}"
    );
    // Another address has its own share.
    assert_eq!(register_from(&server, 3, "u4")["ok"], true);

    let go = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let mut raw = server.raw_from(4);
            let go = Arc::clone(&go);
            thread::spawn(move || {
                go.wait();
                let req = json!({"cmd": "register", "user": format!("p{i}"), "password": PASSWORD});
                raw.call(req)["ok"] == true
            })
        })
        .collect();
    let created = threads
        .into_iter()
        .filter_map(|t| t.join().unwrap().then_some(()))
        .count();
    assert_eq!(created, 3);
}

/// A server closed to registration says so, after the fields are checked;
/// logins of existing users still work.
#[test]
fn r8_closed_registration() {
    let open = TestServer::start();
    open.user("alice");
    let server = open.restart(&["--registration", "closed"]);
    let mut raw = server.raw();
    assert_code(
        &raw.call(json!({"cmd": "register", "user": "bob"})),
        "BAD_REQUEST",
    );
    assert_code(
        &raw.call(json!({"cmd": "register", "user": ".bob", "password": PASSWORD})),
        "INVALID_NAME",
    );
    let r = raw.call(json!({"cmd": "register", "user": "bob", "password": PASSWORD}));
    assert_code(&r, "REGISTRATION_CLOSED");
    assert_code(
        &raw.call(json!({"cmd": "register", "user": "alice", "password": PASSWORD})),
        "REGISTRATION_CLOSED",
    );
    assert_eq!(server.login("alice").whoami().unwrap().user, "alice");
    assert!(!server.has_home("bob"));
}

#[test]
fn max_files_caps_new_names_but_never_an_overwrite() {
    let server = TestServer::with_args(&["--max-files", "3"]);
    let mut c = server.user("many");
    put_all(&mut c, "a", b"");
    put_all(&mut c, "b", b"");
    // An unfinished upload counts as a file too.
    put_part_and_hang_up(&server, "many", "c", 10, b"12345");
    let refused = c.put_begin("d", 0).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::QuotaExceeded));
    assert!(
        refused.to_string().contains("3 files is the most"),
        "{refused}"
    );
    // Replacing a file and finishing the staged one are allowed.
    put_all(&mut c, "a", b"new");
    assert_eq!(c.put_begin("c", 10).unwrap(), 5);
    c.write_body(b"67890").unwrap();
    c.put_end(&crate::support::md5(b"1234567890")).unwrap();
    assert_eq!(c.whoami().unwrap().files, 3);
    c.delete("b").unwrap();
    put_all(&mut c, "d", b"");
    assert_eq!(c.whoami().unwrap().files, 3);
}
