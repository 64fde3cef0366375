//! The connection layer under load (issue 7): TLS transfers beside
//! plaintext ones, and a fresh client's latency while thousands of idle,
//! logged-in connections (half of them TLS) wait on the server.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use netdisk::client::{Client, Security};
use netdisk::protocol::Password;
use netdisk::tls::client::KnownServers;

use super::{mib, BenchServer, Row, Target, PASSWORD, USER};

/// The server's fingerprint, as `netdisk fingerprint` prints it.
pub fn fingerprint(bin: &Path, data: &Path) -> String {
    let out = Command::new(bin)
        .args(["fingerprint", "--data"])
        .arg(data)
        .output()
        .expect("netdisk fingerprint");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("tls fingerprint ")
        .expect("a fingerprint line")
        .to_string()
}

/// A TLS client connection that trusts `fp`, pinned in a file of the bench's own.
pub fn tls_security(known: &Path, fp: &str) -> Security {
    Security {
        tls: Some(true),
        known: KnownServers {
            path: known.to_path_buf(),
        },
        trust: Some(fp.to_string()),
    }
}

/// Current resident memory of a process.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A TCP connection from the loopback address 127.0.0.N to `addr`.
pub fn connect_from(addr: &str, n: u8) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let target: std::net::SocketAddrV4 = addr.parse().expect("an IPv4 address");
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, n, 0))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(target))?;
    Ok(TcpStream::from(fd))
}

/// Opens `count` idle connections, logged in, half of them TLS, spread
/// over 127.0.0.2–41; then times a fresh client's login + ls + 4 KiB get
/// `samples` times. Returns the rows and the targets.
pub fn connection_load(
    bin: &Path,
    work: &Path,
    count: usize,
    samples: usize,
) -> (Vec<Row>, Vec<Target>) {
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    assert!(
        nofile as usize > count + 256,
        "the descriptor limit ({nofile}) is too low for {count} connections"
    );
    let data = work.join("load-data");
    let server = BenchServer::start_with(
        bin,
        &data,
        &["--workers", "8", "--max-per-address", &count.to_string()],
    );
    let fp = fingerprint(bin, &data);
    let known = work.join("load-known");
    let sec = tls_security(&known, &fp);
    let mut c = Client::connect(&server.addr).expect("connect");
    c.register(USER, &Password::new(PASSWORD))
        .expect("register");
    c.login(USER, &Password::new(PASSWORD)).expect("login");
    let small = vec![7u8; 4096];
    c.put_begin("small.bin", small.len() as u64).expect("put");
    c.write_body(&small).expect("body");
    let digest = {
        use md5::Digest;
        netdisk::protocol::md5_hex(md5::Md5::digest(&small))
    };
    c.put_end(&digest).expect("put end");
    // Pin once, so that parallel openers do not race on the file.
    drop(Client::connect_with(&server.addr, &sec).expect("tls"));
    let before = rss(server.child.id());

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let next = Arc::clone(&next);
            let addr = server.addr.clone();
            let sec = sec.clone();
            thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return mine;
                    }
                    let from = 2 + (i % 40) as u8;
                    let stream = connect_from(&addr, from).expect("connect");
                    let mut c = Client::over(stream, &addr, i % 2 == 1, &sec).expect("connect");
                    c.login(USER, &Password::new(PASSWORD)).expect("login");
                    mine.push(c);
                }
            })
        })
        .collect();
    let mut idle: Vec<Client> = Vec::with_capacity(count);
    for o in openers {
        idle.extend(o.join().expect("opener"));
    }
    let opened = started.elapsed().as_secs_f64();
    let loaded = rss(server.child.id());

    let mut times = Vec::with_capacity(samples);
    let mut body = vec![0u8; 4096];
    for _ in 0..samples {
        let t = Instant::now();
        let mut fresh = Client::connect(&server.addr).expect("fresh client");
        fresh.login(USER, &Password::new(PASSWORD)).expect("login");
        fresh.ls().expect("ls");
        let got = fresh.get_begin("small.bin", 0).expect("get");
        assert_eq!(got.size, 4096);
        fresh.read_body_exact(&mut body).expect("body");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(body, small);
    }
    // The idle connections are still there and usable: a sample of them.
    let sample: Vec<&mut Client> = idle.iter_mut().step_by((count / 100).max(1)).collect();
    let sampled = sample.len();
    let alive = sample
        .into_iter()
        .map(|c| c.whoami().is_ok())
        .filter(|ok| *ok)
        .count();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let (p50, p99) = (pct(0.50), pct(0.99));
    let added = loaded.saturating_sub(before);
    let rows = vec![
        Row::memory(&format!("server RSS with {count} idle connections"), loaded).note(format!(
            "{:.1} MiB added; opened and logged in in {opened:.1} s; \
             {alive} of {sampled} sampled still answer",
            mib(added)
        )),
        Row {
            rss: None,
            ..Row::memory("fresh login+ls+4 KiB get", 0)
        }
        .note(format!(
            "p50 {p50:.1} ms, p99 {p99:.1} ms over {samples} runs"
        )),
    ];
    let targets = vec![
        Target::at_least(
            "idle connections still answering, %",
            100.0 * alive as f64 / sampled as f64,
            100.0,
        ),
        Target::at_most(&format!("p99 ms, {count} idle connections"), p99, 100.0),
        Target::at_most(
            &format!("added RSS MiB, {count} idle connections"),
            mib(added),
            256.0,
        ),
    ];
    drop(idle);
    (rows, targets)
}
