//! Clear words on the command line (issue 21): quota refusals with their
//! figures, batch commands that go on past a bad name like `cp` and `scp`,
//! and one exit code per cause.

use std::fs;

use crate::cli::{failed, failure, netdisk, setup, success, USER};
use crate::support::*;

#[test]
fn r21_a_quota_refusal_gives_the_figures() {
    // 5,000,000 B (4.8 MiB); 4,000,000 B (3.8 MiB) stored.
    let (server, dir) = setup(&["--quota", "5000000"]);
    let d = dir.path();
    write_file(d, "first.bin", &bytes(4_000_000, 1));
    write_file(d, "second.bin", &bytes(2 << 20, 2));
    success(netdisk(&server, d).args(["put", "first.bin"]));
    let err = failure(netdisk(&server, d).args(["put", "second.bin"]), 1);
    assert!(
        err.contains("quota exceeded: needs 2.0 MiB, 976.6 KiB left of 4.8 MiB"),
        "{err}"
    );
    assert!(!server.is_stored(USER, "second.bin"));
}

#[test]
fn r21_put_goes_on_past_a_missing_file_and_rm_takes_several() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    fs::write(d.join("good.txt"), b"good\n").unwrap();
    let (code, err) = failed(netdisk(&server, d).args(["put", "missing.bin", "good.txt"]));
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("missing.bin"), "{err}");
    assert_eq!(server.stored(USER, "good.txt").unwrap(), b"good\n");

    for name in ["a", "b", "c"] {
        fs::write(d.join(name), name).unwrap();
    }
    success(netdisk(&server, d).args(["put", "a", "b", "c"]));
    success(netdisk(&server, d).args(["rm", "a", "b", "c"]));
    for name in ["a", "b", "c"] {
        assert!(!server.is_stored(USER, name), "{name}");
    }
    assert!(server.is_stored(USER, "good.txt"));
}

#[test]
fn r21_known_servers_lists_and_forgets_and_a_changed_key_exits_3() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let known = d.join("known_servers");
    let run = |args: &[&str]| {
        let mut cmd = netdisk(&server, d);
        cmd.env("NETDISK_KNOWN_SERVERS", &known).args(args);
        cmd
    };
    let said = success(&mut run(&["known-servers", "list"]));
    assert!(said.starts_with("no known servers"), "{said}");
    // A pin of another key for this server: the key "changed".
    let other = format!("sha256:{}", "ab".repeat(32));
    fs::write(
        &known,
        format!(
            "far:9000 sha256:{}\n{} {other}\n",
            "cd".repeat(32),
            server.addr
        ),
    )
    .unwrap();
    let err = failure(&mut run(&["--tls", "ls"]), 3);
    assert!(err.contains("CHANGED"), "{err}");
    assert!(
        err.contains(&format!("known-servers forget {}", server.addr)),
        "{err}"
    );
    let said = success(&mut run(&["known-servers", "list"]));
    assert!(
        said.contains(&format!("  {}  {other}\n", server.addr)),
        "{said}"
    );
    assert!(said.contains("  far:9000  sha256:cdcd"), "{said}");
    success(&mut run(&["known-servers", "forget", &server.addr]));
    failure(&mut run(&["known-servers", "forget", &server.addr]), 4);
    let left = fs::read_to_string(&known).unwrap();
    assert!(
        left.starts_with("far:9000 ") && left.lines().count() == 1,
        "{left}"
    );
    // Unknown now, and not on a terminal: refused with the same code.
    let err = failure(&mut run(&["--tls", "ls"]), 3);
    assert!(err.contains("not known yet"), "{err}");
}

#[test]
fn r21_tls_required_has_its_own_exit_code() {
    let server = TestServer::with_args(&["--plaintext-from", "none"]);
    let dir = tempfile::tempdir().unwrap();
    let err = failure(
        netdisk(&server, dir.path()).args(["--plaintext", "ping"]),
        8,
    );
    assert!(err.contains("requires TLS"), "{err}");
}
