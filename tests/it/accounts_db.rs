//! `serve --db`: accounts, web sessions and the certificate in PostgreSQL,
//! shared by several servers, and `netdisk user … --db` changing them while
//! the servers run. Each test makes its own database (`NETDISK_TEST_PG`).

use std::process::{Command, Stdio};

use calamine::{Data, Reader, Xlsx};
use netdisk::db::testing::TestDb;
use netdisk::error::ErrorCode;
use netdisk::users::{Password, COLUMNS};

use crate::http::Web;
use crate::protocol::code;
use crate::support::{bin, TestServer, PASSWORD};

/// Runs `netdisk user ARGS --db URL` with `password` in NETDISK_PASSWORD;
/// returns success, stdout and stderr.
pub(crate) fn admin_db(url: &str, password: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("user").args(args).arg("--db").arg(url);
    cmd.env_remove("NETDISK_PASSWORD").env_remove("NETDISK_DB");
    if let Some(p) = password {
        cmd.env("NETDISK_PASSWORD", p);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn ok(r: (bool, String, String)) -> String {
    assert!(r.0, "failed: {}", r.2);
    r.1
}

/// Two servers on one database: one set of accounts, one certificate.
fn two_servers(test: &str) -> Option<(TestDb, TestServer, TestServer)> {
    let db = TestDb::create(test)?;
    let a = TestServer::with_args(&["--db", &db.url]);
    let b = TestServer::with_args(&["--db", &db.url]);
    Some((db, a, b))
}

#[test]
fn accounts_in_the_database_are_shared_by_servers_and_the_admin_command() {
    let Some((db, a, b)) = two_servers("accounts_shared_by_servers") else {
        return;
    };
    assert_eq!(a.fingerprint(), b.fingerprint());
    let printed = Command::new(bin())
        .args(["fingerprint", "--db", &db.url])
        .env_remove("NETDISK_DB")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout).trim(),
        format!("tls fingerprint {}", a.fingerprint())
    );
    assert!(!a.data.path().join("users.xlsx").exists());
    assert!(!a.data.path().join("admin.sock").exists());
    drop(a.user("alice"));
    assert_eq!(b.login("alice").whoami().unwrap().user, "alice");

    assert_eq!(
        ok(admin_db(&db.url, Some(PASSWORD), &["add", "bob"])),
        "added bob\n"
    );
    assert_eq!(a.login("bob").whoami().unwrap().user, "bob");
    let taken = admin_db(&db.url, Some(PASSWORD), &["add", "BOB"]);
    assert!(!taken.0 && taken.2.contains("taken"), "{}", taken.2);

    assert_eq!(
        ok(admin_db(
            &db.url,
            Some("a new password"),
            &["passwd", "alice"]
        )),
        "changed the password of alice\n"
    );
    for server in [&a, &b] {
        assert_eq!(
            code(server.client().login("alice", &Password::new(PASSWORD))),
            ErrorCode::AuthFailed
        );
    }
    a.client()
        .login("alice", &Password::new("a new password"))
        .unwrap();

    assert_eq!(
        ok(admin_db(&db.url, None, &["quota", "bob", "5"])),
        "quota of bob: 5 bytes\n"
    );
    assert_eq!(b.login("bob").whoami().unwrap().quota, Some(5));

    // NETDISK_DB names the database as well as --db.
    let out = Command::new(bin())
        .args(["user", "list"])
        .env("NETDISK_DB", &db.url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "user\tquota_bytes\tcreated_at");
    assert!(
        lines[1].starts_with("alice\t-\t") && lines[1].ends_with(" UTC"),
        "{list}"
    );
    assert!(lines[2].starts_with("bob\t5\t"), "{list}");

    let dir = tempfile::tempdir().unwrap();
    let sheet = dir.path().join("users.xlsx");
    let sheet_arg = sheet.to_str().unwrap();
    assert_eq!(
        ok(admin_db(&db.url, None, &["export", "--xlsx", sheet_arg])),
        format!("exported 2 accounts to {sheet_arg}\n")
    );
    let mut book: Xlsx<_> = calamine::open_workbook(&sheet).unwrap();
    let range = book.worksheet_range_at(0).unwrap().unwrap();
    let row = |r: u32| -> Vec<String> {
        (0..COLUMNS.len() as u32)
            .map(|c| match range.get_value((r, c)) {
                Some(Data::String(s)) => s.clone(),
                Some(Data::Empty) | None => String::new(),
                Some(other) => other.to_string(),
            })
            .collect()
    };
    assert_eq!(row(0), COLUMNS);
    assert_eq!(row(1)[0], "alice");
    assert!(row(1)[1].starts_with("$argon2id$"));
    assert!(matches!(range.get_value((1, 2)), Some(Data::DateTime(_))));
    assert_eq!((row(2)[0].as_str(), row(2)[3].as_str()), ("bob", "5"));

    assert_eq!(
        ok(admin_db(&db.url, None, &["del", "bob"])),
        "removed bob and their files\n"
    );
    assert_eq!(
        code(a.client().login("bob", &Password::new(PASSWORD))),
        ErrorCode::AuthFailed
    );
    let gone = admin_db(&db.url, None, &["del", "bob"]);
    assert!(
        !gone.0 && gone.2.contains("there is no user bob"),
        "{}",
        gone.2
    );
}

#[test]
fn a_web_sign_in_on_one_server_holds_on_the_other() {
    let Some((db, a, b)) = two_servers("a_web_sign_in_holds") else {
        return;
    };
    drop(a.user("alice"));
    let mut on_a = Web::plain(&a);
    on_a.sign_in("alice");
    let mut on_b = Web::plain(&b);
    on_b.cookie = on_a.cookie.clone();
    on_b.csrf = on_a.csrf.clone();
    assert_eq!(on_b.get("/api/whoami").json()["user"], "alice");
    assert_eq!(on_b.change("POST", "/api/logout", b"").status, 200);
    on_a.get("/api/whoami").error(401, "NOT_LOGGED_IN");

    // A new password set by the admin command signs out everywhere.
    on_a.sign_in("alice");
    assert_eq!(on_a.get("/api/whoami").status, 200);
    ok(admin_db(
        &db.url,
        Some("a new password"),
        &["passwd", "alice"],
    ));
    on_a.get("/api/whoami").error(401, "NOT_LOGGED_IN");
    on_b.cookie = on_a.cookie.clone();
    on_b.get("/api/whoami").error(401, "NOT_LOGGED_IN");
}
