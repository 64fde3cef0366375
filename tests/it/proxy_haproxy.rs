//! `serve --proxy-from` behind a real HAProxy in TCP mode with
//! `send-proxy-v2` (and health checks that send PROXY `LOCAL`): the
//! command-line client over TLS with trust on first use, the web page over
//! plain HTTP and HTTPS, and WebDAV, all through the proxy; the server's
//! log names the client, never the proxy.
//!
//! The client is on 127.0.0.1, HAProxy listens on 127.0.0.1 and connects
//! from 127.0.0.3 to the server on 127.0.0.2. `--plaintext-from
//! 127.0.0.1` lets the client, not the proxy, use plain HTTP: the page
//! answers only if the carried address is the one that counts.
//!
//! Needs Debian's `haproxy` (`.ci/run` installs it). Without it the test
//! prints a `NOTICE` and skips, except under `CI=true`, where it fails.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use tempfile::TempDir;

use crate::cli::{netdisk_at, USER};
use crate::http::Web;
use crate::support::*;

/// Whether `tool` runs; panics under `CI=true` when it does not.
pub fn have(tool: &str, version_arg: &str) -> bool {
    have_tool(tool, version_arg, "load balancer test")
}

/// Kills and reaps a child on drop, so that a failing test leaves
/// nothing running.
pub struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running HAProxy in front of one server.
pub struct Haproxy {
    /// Where clients connect: `127.0.0.1:PORT`.
    pub addr: String,
    _child: Reaped,
    dir: TempDir,
}

impl Haproxy {
    /// What HAProxy printed (for a failing test's message).
    pub fn output(&self) -> String {
        fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

fn config(port: u16, backend: &str) -> String {
    format!(
        "global
    maxconn 256

defaults
    mode tcp
    timeout connect 10s
    timeout client 120s
    timeout server 120s

frontend front
    bind 127.0.0.1:{port}
    default_backend netdisk

backend netdisk
    server netdisk {backend} send-proxy-v2 source 127.0.0.3 check check-send-proxy inter 500ms
"
    )
}

/// Starts HAProxy (in the foreground, `-db`) on a free loopback port in
/// TCP mode, sending PROXY v2 headers to `backend`. Ready once it takes
/// connections (retried within a deadline); a port taken in between is
/// tried again with another.
fn start_haproxy(backend: &str) -> Haproxy {
    start_haproxy_with(|port| config(port, backend))
}

/// Starts HAProxy as [`start_haproxy`] does, with the configuration
/// `config` makes for a listening port.
pub fn start_haproxy_with(config: impl Fn(u16) -> String) -> Haproxy {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("haproxy.cfg");
        fs::write(&cfg, config(port)).unwrap();
        let log = fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        let mut child = Reaped(child);
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.0.try_wait().unwrap().is_some() {
                // Most likely the port was taken: another one.
                break;
            }
            if TcpStream::connect(&addr).is_ok() {
                return Haproxy {
                    addr,
                    _child: child,
                    dir,
                };
            }
            let out = fs::read_to_string(dir.path().join("haproxy.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "haproxy did not start:\n{out}");
            thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("haproxy did not start on any port");
}

/// The CLI through `proxy` over TLS, with its own pin file in `d`.
fn cli(proxy: &Haproxy, d: &Path, args: &[&str]) -> String {
    let out = netdisk_at(&proxy.addr, d)
        .env("NETDISK_KNOWN_SERVERS", d.join("known"))
        .env("NETDISK_TLS", "on")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {out:?}\nhaproxy:\n{}",
        proxy.output()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_cli_the_page_and_webdav_work_through_haproxy_and_the_log_names_the_client() {
    if !have("haproxy", "-v") {
        return;
    }
    let server = TestServer::on(
        "127.0.0.2:0",
        &[
            "--proxy-from",
            "127.0.0.3",
            "--plaintext-from",
            "127.0.0.1",
            "--max-per-address",
            "8",
        ],
    );
    let proxy = start_haproxy(&server.addr);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fp = server.fingerprint();

    // Trusted once, the server is pinned under the proxy's address.
    cli(&proxy, d, &["--trust", &fp, "register"]);
    let pinned = fs::read_to_string(d.join("known")).unwrap();
    assert_eq!(pinned, format!("{} {fp}\n", proxy.addr));
    let data = bytes(300_000, 11);
    write_file(d, "x.bin", &data);
    cli(&proxy, d, &["put", "x.bin"]);
    assert!(cli(&proxy, d, &["ls"]).contains("x.bin"));
    cli(&proxy, d, &["get", "x.bin", "-o", "back.bin"]);
    assert_eq!(fs::read(d.join("back.bin")).unwrap(), data);

    // The page: plain HTTP (allowed for the client, not the proxy) and
    // HTTPS.
    let mut plain = Web::over_tcp(TcpStream::connect(&proxy.addr).unwrap());
    let page = plain.get("/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(String::from_utf8_lossy(&page.body).contains("<html"));
    let mut secure = Web::tls_at(&proxy.addr, fp.clone());
    assert_eq!(secure.get("/").status, 200);
    secure.sign_in(USER);
    assert_eq!(secure.get("/api/whoami").json()["user"], USER);

    // WebDAV over TLS.
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let auth = format!("Basic {token}");
    let mut dav = Web::tls_at(&proxy.addr, fp);
    let listing = dav.call(
        "PROPFIND",
        "/dav/",
        &[
            ("Authorization", &auth),
            ("Depth", "1"),
            ("Content-Length", "0"),
        ],
        b"",
    );
    assert_eq!(listing.status, 207, "{listing:?}");
    assert!(String::from_utf8_lossy(&listing.body).contains("x.bin"));

    // Every request is logged as the client's, none as the proxy's.
    let log = server.wait_for_log("\"PROPFIND /dav/\"");
    let put = log
        .lines()
        .find(|l| l.contains(&format!("{USER} \"put\" \"x.bin\"")))
        .unwrap_or_else(|| panic!("no put in\n{log}"));
    assert!(put.contains(" 127.0.0.1:"), "{put}");
    assert!(log.contains(" 127.0.0.1:"), "{log}");
    assert!(!log.contains("127.0.0.3"), "{log}");
}
