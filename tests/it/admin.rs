//! `netdisk user`: accounts changed by an admin, with the server stopped
//! or through the running server.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use netdisk::error::ErrorCode;
use netdisk::users::Password;
use tempfile::TempDir;

use crate::protocol::{code, put_all};
use crate::support::{bin, local_only, pw, serve_refuses, TestServer, PASSWORD};

/// Runs `netdisk user ARGS --data DATA` with `password` in
/// NETDISK_PASSWORD; returns success, stdout and stderr.
pub(crate) fn admin(data: &Path, password: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("user").args(args).arg("--data").arg(data);
    cmd.env_remove("NETDISK_PASSWORD");
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

#[track_caller]
fn refused(r: (bool, String, String), why: &str) {
    assert!(!r.0, "succeeded: {}", r.1);
    assert!(r.2.contains(why), "{}", r.2);
}

/// While a server runs, every subcommand goes through it and applies at
/// once; its output is what the same command prints with the server
/// stopped.
#[test]
fn r21_user_commands_go_through_a_running_server() {
    // The admin socket is the local engine's (on PostgreSQL the commands
    // change the database itself: accounts_db.rs).
    if local_only("r21_user_commands_go_through_a_running_server") {
        return;
    }
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let data = server.data.path();
    assert!(data.join("admin.sock").exists());
    assert_eq!(
        ok(admin(data, Some(PASSWORD), &["add", "bob"])),
        "added bob\n"
    );
    assert_eq!(server.login("bob").whoami().unwrap().user, "bob");
    refused(admin(data, Some(PASSWORD), &["add", "BOB"]), "taken");
    assert_eq!(
        ok(admin(data, Some("a new password"), &["passwd", "alice"])),
        "changed the password of alice\n"
    );
    assert_eq!(
        code(server.client().login("alice", &Password::new(PASSWORD))),
        ErrorCode::AuthFailed
    );
    server
        .client()
        .login("alice", &Password::new("a new password"))
        .unwrap();
    // A connection logged in before keeps working.
    assert_eq!(alice.whoami().unwrap().user, "alice");
    assert_eq!(
        ok(admin(data, None, &["quota", "bob", "5"])),
        "quota of bob: 5 bytes\n"
    );
    let mut bob = server.client();
    bob.login("bob", &pw()).unwrap();
    assert_eq!(bob.whoami().unwrap().quota, Some(5));
    refused(admin(data, None, &["del", "carol"]), "no user carol");
    let live = ok(admin(data, None, &["list"]));
    let rows: Vec<Vec<&str>> = live.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows[0], ["user", "quota_bytes", "created_at"]);
    assert_eq!((rows[2][0], rows[2][1]), ("bob", "5"));
    assert!(
        rows[1][2].ends_with(" UTC") && rows[1][2].starts_with("20"),
        "{live}"
    );
    // A second server on the same data is still refused.
    assert!(serve_refuses(data).contains("in use by a running netdisk server"));
    let dir = Arc::clone(&server.data);
    drop((alice, bob, server));
    // Killed, the server left its socket behind: nobody answers on it,
    // so the change is made here.
    assert_eq!(
        ok(admin(dir.path(), None, &["list"])),
        live,
        "the same output"
    );
}

#[test]
fn r21_user_commands_never_make_a_data_directory() {
    let parent = TempDir::new().unwrap();
    let missing = parent.path().join("netdisk-data");
    refused(admin(&missing, None, &["list"]), "no data directory at");
    refused(
        admin(&missing, Some(PASSWORD), &["add", "x"]),
        &missing.display().to_string(),
    );
    assert!(!missing.exists());
}

#[test]
fn r8_user_add_passwd_quota_list_del() {
    // The accounts of a data directory's users.xlsx, and its attic.
    if local_only("r8_user_add_passwd_quota_list_del") {
        return;
    }
    let data = Arc::new(TempDir::new().unwrap());
    let dir = data.path();
    // A data directory that no server has run on yet.
    assert_eq!(
        ok(admin(dir, Some(PASSWORD), &["add", "Alice"])),
        "added Alice\n"
    );
    refused(admin(dir, Some(PASSWORD), &["add", "alice"]), "taken");
    refused(
        admin(dir, Some("short"), &["add", "bob"]),
        "8 to 1024 bytes",
    );
    refused(admin(dir, None, &["add", "bob"]), "NETDISK_PASSWORD");
    ok(admin(dir, Some(PASSWORD), &["add", "bob"]));
    ok(admin(dir, Some("a second password"), &["passwd", "ALICE"]));
    refused(
        admin(dir, Some(PASSWORD), &["passwd", "carol"]),
        "no user carol",
    );
    assert_eq!(
        ok(admin(dir, None, &["quota", "bob", "1000"])),
        "quota of bob: 1000 bytes\n"
    );
    refused(admin(dir, None, &["quota", "bob", "lots"]), "whole number");
    refused(admin(dir, None, &["del", "carol"]), "no user carol");
    let list = ok(admin(dir, None, &["list"]));
    let rows: Vec<Vec<&str>> = list.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows[0], ["user", "quota_bytes", "created_at"]);
    assert_eq!((rows[1][0], rows[1][1]), ("Alice", "-"));
    assert_eq!((rows[2][0], rows[2][1]), ("bob", "1000"));
    assert_eq!(rows.len(), 3);

    let server = TestServer::start_in(Arc::clone(&data), &["--quota", "50"]);
    let mut alice = server.client();
    let second = Password::new("a second password");
    assert_eq!(
        code(alice.login("alice", &Password::new(PASSWORD))),
        ErrorCode::AuthFailed
    );
    assert_eq!(alice.login("alice", &second).unwrap(), "Alice");
    put_all(&mut alice, "kept.txt", b"alice's file");
    let bob = server.login("bob").whoami().unwrap();
    assert_eq!((bob.quota, bob.files), (Some(1000), 0));
    drop(server);

    assert_eq!(
        ok(admin(dir, None, &["quota", "bob", "none"])),
        "quota of bob: the server's --quota\n"
    );
    let said = ok(admin(dir, None, &["del", "alice"]));
    assert!(
        said.starts_with("removed Alice; their files are in"),
        "{said}"
    );
    let attic: Vec<_> = fs::read_dir(dir.join("attic")).unwrap().flatten().collect();
    assert_eq!(attic.len(), 1);
    let moved = attic[0].path().join("files/kept.txt");
    assert_eq!(fs::read(moved).unwrap(), b"alice's file");
    let list = ok(admin(dir, None, &["list"]));
    assert!(
        !list.contains("Alice") && list.contains("bob\t-\t"),
        "{list}"
    );

    let server = TestServer::start_in(data, &["--quota", "50"]);
    assert_eq!(
        code(server.client().login("alice", &second)),
        ErrorCode::AuthFailed
    );
    assert_eq!(server.login("bob").whoami().unwrap().quota, Some(50));
    // The name is free again, with an empty folder.
    let mut again = server.user("alice");
    assert!(again.ls().unwrap().is_empty());
}

/// Without `--db`, `export` writes the accounts of the data directory's
/// `users.xlsx`, while its server runs.
#[test]
fn export_writes_the_sheets_accounts() {
    if local_only("export_writes_the_sheets_accounts") {
        return;
    }
    let server = TestServer::start();
    drop(server.user("alice"));
    let out = tempfile::tempdir().unwrap();
    let sheet = out.path().join("copy.xlsx");
    let arg = sheet.to_str().unwrap();
    assert_eq!(
        ok(admin(server.data.path(), None, &["export", "--xlsx", arg])),
        format!("exported 1 accounts to {arg}\n")
    );
    use calamine::Reader;
    let mut book: calamine::Xlsx<_> = calamine::open_workbook(&sheet).unwrap();
    let range = book.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(
        range.get_value((0, 0)),
        Some(&calamine::Data::String("user".into()))
    );
    assert_eq!(
        range.get_value((1, 0)),
        Some(&calamine::Data::String("alice".into()))
    );
}
