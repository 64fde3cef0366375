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
    assert!(!server.user_files(USER).join("second.bin").exists());
}

#[test]
fn r21_put_goes_on_past_a_missing_file_and_rm_takes_several() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    fs::write(d.join("good.txt"), b"good\n").unwrap();
    let (code, err) = failed(netdisk(&server, d).args(["put", "missing.bin", "good.txt"]));
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("missing.bin"), "{err}");
    let stored = server.user_files(USER);
    assert_eq!(fs::read(stored.join("good.txt")).unwrap(), b"good\n");

    for name in ["a", "b", "c"] {
        fs::write(d.join(name), name).unwrap();
    }
    success(netdisk(&server, d).args(["put", "a", "b", "c"]));
    success(netdisk(&server, d).args(["rm", "a", "b", "c"]));
    for name in ["a", "b", "c"] {
        assert!(!stored.join(name).exists(), "{name}");
    }
    assert!(stored.join("good.txt").exists());
}
