//! Starting `serve` (issue 21): a busy port fails before anything is made
//! on disk, and a wildcard bind names addresses another machine can open.

use std::io::{BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use crate::support::{bin, ready};

#[test]
fn r21_a_busy_port_fails_before_the_data_dir_is_made() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("netdisk-data");
    let out = Command::new(bin())
        .args(["serve", "--addr", &addr, "--data"])
        .arg(&data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!data.exists(), "nothing is made: {err}");
}

#[test]
fn r21_a_wildcard_bind_shows_addresses_others_can_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--addr", "0.0.0.0:0", "--data"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = ready(&mut BufReader::new(child.stdout.take().unwrap()));
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let addr = addr.unwrap_or_else(|l| panic!("did not start: {l}\n{err}"));
    let port = addr.rsplit_once(':').unwrap().1;
    // Each line starts with its time.
    let web: Vec<&str> = err
        .lines()
        .filter_map(|l| l.find("web on ").map(|at| &l[at..]))
        .collect();
    assert!(!web.is_empty(), "{err}");
    for line in &web {
        assert!(line.ends_with(&format!(":{port}/")), "{line}");
        assert!(!line.contains("0.0.0.0"), "{line}");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if !host.is_empty() && host != "localhost" {
        assert!(
            web.contains(&format!("web on https://{host}:{port}/").as_str()),
            "{err}"
        );
        assert!(web.iter().all(|l| !l.contains("127.0.0.1")), "{err}");
    }
}
