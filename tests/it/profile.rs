//! The profile (issue 10): `netdisk login` checks the account and saves
//! server and user; later commands use them without environment
//! variables; flags and the environment still win.

use std::fs;
use std::path::Path;

use crate::cli::{failure, setup, success, USER};
use crate::pty::Pty;
use crate::support::*;

/// The client with only a password (if given) and a profile folder.
fn bare(dir: &Path, config: &Path, password: Option<&str>) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(bin());
    cmd.current_dir(dir)
        .env_remove("NETDISK_SERVER")
        .env_remove("NETDISK_USER")
        .env_remove("NETDISK_PASSWORD")
        .env("XDG_CONFIG_HOME", config)
        .write_stdin("");
    if let Some(pw) = password {
        cmd.env("NETDISK_PASSWORD", pw);
    }
    cmd
}

#[test]
fn r10_login_saves_server_and_user_and_the_next_command_uses_them() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let config = d.join("config");
    let out = success(bare(d, &config, Some(PASSWORD)).args([
        "login",
        "--server",
        &server.addr,
        "--user",
        "ALICE",
    ]));
    let file = config.join("netdisk/config.toml");
    assert_eq!(
        out,
        format!(
            "logged in as alice at {}; saved to {} (without the password)\n",
            server.addr,
            file.display()
        )
    );
    // The name as the server spells it; never the password.
    let saved = fs::read_to_string(&file).unwrap();
    assert_eq!(
        saved,
        format!("server = \"{}\"\nuser = \"alice\"\n", server.addr)
    );
    assert!(!saved.contains(PASSWORD));

    let out = success(bare(d, &config, Some(PASSWORD)).arg("whoami"));
    assert!(out.starts_with("user:   alice\n"), "{out}");
}

#[test]
fn r10_flags_and_environment_win_over_the_profile() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let config = d.join("config");
    fs::create_dir_all(config.join("netdisk")).unwrap();
    // A profile naming nobody's server and another user.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    fs::write(
        config.join("netdisk/config.toml"),
        format!("server = \"{dead}\"\nuser = \"nobody\"\n"),
    )
    .unwrap();
    let err = failure(bare(d, &config, Some(PASSWORD)).arg("whoami"), 6);
    assert!(err.contains(&dead), "{err}");
    let out = success(
        bare(d, &config, Some(PASSWORD))
            .env("NETDISK_SERVER", &server.addr)
            .env("NETDISK_USER", USER)
            .arg("whoami"),
    );
    assert!(out.starts_with("user:   alice\n"), "{out}");
    let out = success(bare(d, &config, Some(PASSWORD)).args([
        "--server",
        &server.addr,
        "--user",
        USER,
        "whoami",
    ]));
    assert!(out.starts_with("user:   alice\n"), "{out}");
    // A profile that is not TOML is named, not ignored.
    fs::write(config.join("netdisk/config.toml"), "server = [\n").unwrap();
    let err = failure(bare(d, &config, Some(PASSWORD)).arg("whoami"), 1);
    assert!(err.contains("config.toml is not a valid profile"), "{err}");
}

#[test]
fn r10_a_failed_login_saves_nothing() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let config = d.join("config");
    let err = failure(
        bare(d, &config, Some("not the password")).args([
            "login",
            "--server",
            &server.addr,
            "--user",
            USER,
        ]),
        3,
    );
    assert!(err.contains("wrong user name or password"), "{err}");
    assert!(!config.join("netdisk/config.toml").exists());
}

#[test]
fn r10_login_on_a_terminal_asks_for_server_user_and_password() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    // Without XDG_CONFIG_HOME the profile goes under HOME.
    let home = d.join("home");
    fs::create_dir(&home).unwrap();
    let home_s = home.to_str().unwrap();
    // Pty sets XDG_CONFIG_HOME for its own isolation; this test checks the
    // fallback, so the variable is empty (which the XDG spec says to
    // ignore, like a relative path).
    let mut pty = Pty::spawn(d, &["login"], &[("HOME", home_s), ("XDG_CONFIG_HOME", "")]);
    pty.expect("Server [127.0.0.1:9000]: ");
    pty.send(&format!("{}\r", server.addr));
    pty.expect("User: ");
    pty.send("alice\r");
    pty.expect("Password for alice: ");
    pty.send(&format!("{PASSWORD}\r"));
    pty.expect("logged in as alice at ");
    let (status, screen) = pty.finish();
    assert!(status.success(), "{screen}");
    let saved = fs::read_to_string(home.join(".config/netdisk/config.toml")).unwrap();
    assert!(
        saved.contains(&server.addr) && saved.contains("alice"),
        "{saved}"
    );

    // The next command only asks for the password.
    let mut pty = Pty::spawn(d, &["whoami"], &[("HOME", home_s), ("XDG_CONFIG_HOME", "")]);
    pty.expect("Password for alice: ");
    pty.send(&format!("{PASSWORD}\r"));
    pty.expect("user:   alice");
    let (status, screen) = pty.finish();
    assert!(status.success(), "{screen}");
}
