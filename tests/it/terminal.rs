//! The client on a terminal: the questions it asks and the progress bars it
//! draws only there. `script` (util-linux, on every Debian system) runs it
//! on a pseudo-terminal and types the answers. The answers are typed ahead,
//! so the terminal echoes them before the client can turn echo off: these
//! tests cannot tell whether a password is echoed.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::cli::{netdisk, setup, success, USER};
use crate::support::*;

/// What a run on a terminal showed, and whether it succeeded.
struct Screen {
    ok: bool,
    text: String,
}

/// Runs `netdisk ARGS` in `dir` on a pseudo-terminal, typing `typed`.
/// Without `password`, `NETDISK_PASSWORD` is unset so the client asks.
fn on_terminal(
    server: &TestServer,
    dir: &Path,
    args: &[&str],
    password: Option<&str>,
    typed: &str,
) -> Screen {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = quote(&bin().display().to_string());
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut cmd = assert_cmd::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .current_dir(dir)
        .env("NETDISK_SERVER", &server.addr)
        .env("NETDISK_USER", USER)
        .env("COLUMNS", "100")
        .env("XDG_CONFIG_HOME", dir.join(".xdg-config"))
        .env_remove("NETDISK_PASSWORD")
        .write_stdin(typed)
        .timeout(Duration::from_secs(60));
    if let Some(pw) = password {
        cmd.env("NETDISK_PASSWORD", pw);
    }
    let out = cmd.output().expect("run script (util-linux)");
    Screen {
        ok: out.status.success(),
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// A server holding `big.bin` (300 kB) for [`USER`], and a work folder.
fn with_file() -> (TestServer, tempfile::TempDir, Vec<u8>) {
    let (server, dir) = setup(&[]);
    let data = bytes(300_000, 11);
    write_file(dir.path(), "big.bin", &data);
    success(netdisk(&server, dir.path()).args(["put", "big.bin"]));
    fs::create_dir(dir.path().join("down")).unwrap();
    (server, dir, data)
}

#[test]
fn an_existing_target_asks_resume_start_over_or_cancel() {
    let (server, dir, data) = with_file();
    let down = dir.path().join("down");
    let target = down.join("big.bin");
    let get = ["get", "big.bin"];

    // Resume: the first 100 kB are kept and the rest is appended.
    fs::write(&target, &data[..100_000]).unwrap();
    let s = on_terminal(&server, &down, &get, Some(PASSWORD), "r\n");
    assert!(s.ok, "{}", s.text);
    assert!(
        s.text.contains("[r]esume, [s]tart over or [c]ancel?"),
        "{}",
        s.text
    );
    assert!(s.text.contains("resumed at"), "{}", s.text);
    assert_eq!(fs::read(&target).unwrap(), data);

    // Start over: a local file with other bytes is replaced whole.
    fs::write(&target, vec![0u8; 200_000]).unwrap();
    let s = on_terminal(&server, &down, &get, Some(PASSWORD), "s\n");
    assert!(s.ok, "{}", s.text);
    assert!(!s.text.contains("resumed at"), "{}", s.text);
    assert_eq!(fs::read(&target).unwrap(), data);

    // Cancel: nothing changes. An answer it does not know asks again.
    fs::write(&target, b"mine").unwrap();
    let s = on_terminal(&server, &down, &get, Some(PASSWORD), "what\nc\n");
    assert!(s.ok, "{}", s.text);
    assert_eq!(s.text.matches("[c]ancel?").count(), 2, "{}", s.text);
    assert!(s.text.contains("skipped big.bin"), "{}", s.text);
    assert_eq!(fs::read(&target).unwrap(), b"mine");
}

#[test]
fn register_asks_for_the_password_twice() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let s = on_terminal(&server, d, &["register"], None, "first pw 1\nother pw 2\n");
    assert!(!s.ok, "{}", s.text);
    assert!(s.text.contains("the two passwords differ"), "{}", s.text);

    let pw = "typed passphrase";
    let s = on_terminal(&server, d, &["register"], None, &format!("{pw}\n{pw}\n"));
    assert!(s.ok, "{}", s.text);
    assert!(s.text.contains("Password for alice:"), "{}", s.text);
    assert!(s.text.contains("Repeat the password:"), "{}", s.text);
    assert!(s.text.contains("registered alice"), "{}", s.text);
    // The account has the typed password.
    let s = on_terminal(&server, d, &["whoami"], None, &format!("{pw}\n"));
    assert!(s.ok, "{}", s.text);
    assert!(s.text.contains("alice"), "{}", s.text);
}

#[test]
fn transfers_draw_a_progress_bar_on_a_terminal_unless_quiet() {
    let (server, dir, _) = with_file();
    let down = dir.path().join("down");
    let s = on_terminal(&server, &down, &["get", "big.bin"], Some(PASSWORD), "");
    assert!(s.ok, "{}", s.text);
    assert!(s.text.contains("100.00 %"), "no finished bar:\n{}", s.text);
    fs::remove_file(down.join("big.bin")).unwrap();
    let s = on_terminal(
        &server,
        &down,
        &["-q", "get", "big.bin"],
        Some(PASSWORD),
        "",
    );
    assert!(s.ok, "{}", s.text);
    assert!(!s.text.contains('%'), "a bar despite -q:\n{}", s.text);
}

#[test]
fn r10_bars_use_iec_units_and_several_files_have_an_overall_line() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    write_file(d, "one.bin", &bytes(1_500_000, 1));
    write_file(d, "two.bin", &bytes(2_500_000, 2));
    let s = on_terminal(
        &server,
        d,
        &["put", "one.bin", "two.bin"],
        Some(PASSWORD),
        "",
    );
    assert!(s.ok, "{}", s.text);
    // 2,500,000 bytes are 2.4 MiB (pbr alone would say "2.38 MB").
    assert!(s.text.contains("2.4 MiB / 2.4 MiB"), "{}", s.text);
    assert!(!s.text.contains(" MB"), "an SI unit:\n{}", s.text);
    assert!(
        s.text.contains("all: 2 of 2 files, 3.8 MiB of 3.8 MiB"),
        "{}",
        s.text
    );
    // One file: no overall line.
    let s = on_terminal(&server, d, &["put", "one.bin"], Some(PASSWORD), "");
    assert!(s.ok, "{}", s.text);
    assert!(s.text.contains("1.4 MiB / 1.4 MiB"), "{}", s.text);
    assert!(!s.text.contains("all: "), "{}", s.text);
}

#[test]
fn r21_register_and_login_ask_again_after_a_weak_or_wrong_password() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = "typed passphrase";
    // Too short, then two that differ, then a good one: three tries.
    let typed = format!("short\nshort\nfirst pw 1\nother pw 2\n{pw}\n{pw}\n");
    let s = on_terminal(&server, d, &["register"], None, &typed);
    assert!(s.ok, "{}", s.text);
    assert!(s.text.contains("password must be 8"), "{}", s.text);
    assert!(s.text.contains("try again (2 left)"), "{}", s.text);
    assert!(s.text.contains("try again (1 left)"), "{}", s.text);
    assert!(s.text.contains("registered alice"), "{}", s.text);

    // `login` asks again after a wrong password (server and user come from
    // the environment).
    let typed = format!("wrong password 1\n{pw}\n");
    let s = on_terminal(&server, d, &["login"], None, &typed);
    assert!(s.ok, "{}", s.text);
    assert_eq!(
        s.text.matches("Password for alice:").count(),
        2,
        "{}",
        s.text
    );
    assert!(s.text.contains("logged in as alice"), "{}", s.text);

    // Three wrong answers: it gives up, as a failed login.
    let typed = "wrong one 1\nwrong two 2\nwrong three 3\n";
    let s = on_terminal(&server, d, &["login"], None, typed);
    assert!(!s.ok, "{}", s.text);
    assert!(s.text.contains("wrong user name or password"), "{}", s.text);
    assert_eq!(
        s.text.matches("Password for alice:").count(),
        3,
        "{}",
        s.text
    );
}

#[test]
fn r21_a_resumed_bar_shows_the_whole_file_and_a_whole_part_says_so() {
    let (server, dir, data) = with_file();
    let down = dir.path().join("down");
    let part = down.join(format!(".netdisk-{}.part", md5(b"big.bin")));
    // 100,000 of 300,000 bytes kept: the bar is of the whole file (293.0
    // KiB), not of the 195.3 KiB left.
    fs::write(&part, &data[..100_000]).unwrap();
    let s = on_terminal(&server, &down, &["get", "big.bin"], Some(PASSWORD), "");
    assert!(s.ok, "{}", s.text);
    assert!(
        s.text.contains("resuming the interrupted download"),
        "{}",
        s.text
    );
    assert!(s.text.contains("293.0 KiB / 293.0 KiB"), "{}", s.text);
    assert!(!s.text.contains("/ 195.3 KiB"), "{}", s.text);
    assert_eq!(fs::read(down.join("big.bin")).unwrap(), data);
    // A part that holds the whole file: said so, and checked.
    fs::remove_file(down.join("big.bin")).unwrap();
    fs::write(&part, &data).unwrap();
    let s = on_terminal(&server, &down, &["get", "big.bin"], Some(PASSWORD), "");
    assert!(s.ok, "{}", s.text);
    assert!(
        s.text.contains("is already whole (293.0 KiB)"),
        "{}",
        s.text
    );
    assert!(!s.text.contains("0 B / 0 B"), "{}", s.text);
    assert_eq!(fs::read(down.join("big.bin")).unwrap(), data);
}

#[test]
fn r21_the_overall_line_counts_every_file_from_the_start() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    write_file(d, "one.bin", &bytes(1_500_000, 1));
    write_file(d, "two.bin", &bytes(2_500_000, 2));
    write_file(d, "big.bin", &bytes(6_000_000, 3));
    let args = ["put", "one.bin", "two.bin", "big.bin", "-j", "1"];
    let s = on_terminal(&server, d, &args, Some(PASSWORD), "");
    assert!(s.ok, "{}", s.text);
    let lines: Vec<&str> = s
        .text
        .split(['\r', '\n'])
        .filter(|l| l.starts_with("all: "))
        .collect();
    assert!(!lines.is_empty(), "{}", s.text);
    for line in lines {
        assert!(
            line.contains(" of 3 files, ") && line.contains(" of 9.5 MiB, "),
            "{line}"
        );
    }
}
