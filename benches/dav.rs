//! WebDAV (issue 18): rclone over `/dav/` beside the native client in the
//! same run, a big file and many small files each way, and the same
//! small-file runs of rclone against dufs (a Rust WebDAV server) when
//! `dufs` is on PATH.
//!
//! rclone runs as a user would run it: `vendor = owncloud`, so that a put
//! carries `OC-Checksum: SHA1:` (rclone hashes the file before it sends
//! it) and `X-OC-Mtime`, and every copy is checked by MD5 afterwards;
//! default `--transfers 4`. Against dufs it is `vendor = other`: no hash,
//! no mtime. Every file moved is checked by MD5 here too.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Instant;

use netdisk::client::Client;
use netdisk::protocol::Password;

use super::{
    file_md5, median, write_random, BenchServer, Row, SmallSet, Target, MIB, PASSWORD, ROUNDS, USER,
};

/// rclone with its remotes in the environment: `nd` (plaintext, from
/// loopback), `nds` (TLS, the server's certificate as CA) and `dufs`.
struct Rclone {
    env: Vec<(String, String)>,
    home: PathBuf,
    ca: PathBuf,
}

impl Rclone {
    fn new(addr: &str, data: &Path, dufs: Option<&str>, home: &Path) -> Rclone {
        let out = Command::new("rclone")
            .args(["obscure", PASSWORD])
            .output()
            .expect("rclone obscure");
        let pass = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let mut env = Vec::new();
        let mut remote = |name: &str, url: String, vendor: &str, user: bool| {
            let key = |k: &str| format!("RCLONE_CONFIG_{name}_{k}");
            env.push((key("TYPE"), "webdav".into()));
            env.push((key("URL"), url));
            env.push((key("VENDOR"), vendor.into()));
            if user {
                env.push((key("USER"), USER.into()));
                env.push((key("PASS"), pass.clone()));
            }
        };
        remote("ND", format!("http://{addr}/dav/"), "owncloud", true);
        remote("NDS", format!("https://{addr}/dav/"), "owncloud", true);
        if let Some(a) = dufs {
            remote("DUFS", format!("http://{a}/"), "other", false);
        }
        Rclone {
            env,
            home: home.to_path_buf(),
            ca: data.join("tls/cert.pem"),
        }
    }

    /// Runs rclone, which must succeed; its seconds.
    fn run(&self, args: &[&str]) -> f64 {
        let start = Instant::now();
        let out = Command::new("rclone")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(self.home.join("rclone.conf"))
            .arg("--cache-dir")
            .arg(self.home.join("cache"))
            .arg("--ca-cert")
            .arg(&self.ca)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run rclone");
        let secs = start.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "rclone {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        secs
    }
}

/// dufs serving `root` on loopback with every operation allowed; killed
/// on drop.
struct Dufs {
    child: Child,
    addr: String,
}

impl Dufs {
    fn start(root: &Path) -> Option<Dufs> {
        if Command::new("dufs").arg("--version").output().is_err() {
            println!("dufs is not on PATH (cargo install dufs): its rows are skipped");
            return None;
        }
        fs::create_dir_all(root).unwrap();
        // dufs prints port 0 as given, not the port it got: take a free
        // one (a race with other programs binding, acceptable in a bench).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut child = Command::new("dufs")
            .args(["-A", "-b", "127.0.0.1", "-p", &port.to_string()])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dufs");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("Listening on"), "dufs said {line:?}");
        // It logs a line per request: keep the pipe drained.
        thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = format!("127.0.0.1:{port}");
        TcpStream::connect(&addr).expect("dufs accepts connections");
        Some(Dufs { child, addr })
    }
}

impl Drop for Dufs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The small files put into `url` (a new folder, made first) and got back
/// into `back` by curl, 4 transfers at a time on kept-alive connections:
/// the server's pace, without rclone's own (its WebDAV back end starts at
/// most one request per 10 ms). Seconds each way.
fn curl_small(url: &str, auth: Option<&str>, small: &SmallSet, back: &Path) -> (f64, f64) {
    let curl = |config: Option<&Path>, extra: &[&str]| {
        let mut cmd = Command::new("curl");
        // No `-o` beside `-K`: it would take the first URL's output.
        cmd.arg("-sSf");
        if let Some(a) = auth {
            cmd.args(["-u", a]);
        }
        if let Some(c) = config {
            cmd.args(["-Z", "--parallel-max", "4", "-K"]).arg(c);
        }
        let start = Instant::now();
        let out = cmd.args(extra).stdin(Stdio::null()).output().expect("curl");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "curl {extra:?}: {err}");
        start.elapsed().as_secs_f64()
    };
    curl(None, &["-o", "/dev/null", "-X", "MKCOL", url]);
    fs::create_dir_all(back).unwrap();
    let (mut put, mut get) = (String::new(), String::new());
    for n in &small.names {
        let file = small.dir.join(n);
        put += &format!("upload-file = \"{}\"\nurl = \"{url}{n}\"\n", file.display());
        get += &format!(
            "url = \"{url}{n}\"\noutput = \"{}\"\n",
            back.join(n).display()
        );
    }
    let config = back.join("curl.conf");
    fs::write(&config, put).unwrap();
    let put = curl(Some(&config), &[]);
    fs::write(&config, get).unwrap();
    let get = curl(Some(&config), &[]);
    fs::remove_file(&config).unwrap();
    check_small(small, back);
    (put, get)
}

/// Checks that every small file came back the same into `dir`.
fn check_small(small: &SmallSet, dir: &Path) {
    for (n, d) in small.names.iter().zip(&small.digests) {
        assert_eq!(
            &file_md5(&dir.join(n)),
            d,
            "{} differs",
            dir.join(n).display()
        );
    }
}

/// Rates of one measurement over the rounds, for a note.
fn runs(label: &str, secs: &[f64], per: f64, unit: &str) -> String {
    let r: Vec<String> = secs.iter().map(|s| format!("{:.0}", per / s)).collect();
    format!("{label}runs {} {unit}", r.join(", "))
}

/// The bench: rows and targets.
pub fn dav(bin: &Path, work: &Path, quick: bool) -> (Vec<Row>, Vec<Target>) {
    if Command::new("rclone").arg("version").output().is_err() {
        println!("rclone is not installed (apt-get install rclone): no WebDAV rows");
        return (Vec::new(), Vec::new());
    }
    // As the main run does: file cache on pages the host already backs.
    let (warmed, secs) = super::warm_memory(if quick { 2 << 30 } else { 4 << 30 });
    println!(
        "touched {:.1} GiB of memory first, in {secs:.2} s",
        warmed as f64 / (1u64 << 30) as f64
    );
    let big_size = if quick { 256 * MIB } else { 1024 * MIB };
    let (count, size) = (if quick { 300 } else { 1000 }, 4096);
    let data = work.join("dav-data");
    let server = BenchServer::start(bin, &data);
    let mut c = Client::connect(&server.addr).expect("connect");
    c.register(USER, &Password::new(PASSWORD))
        .expect("register");
    c.login(USER, &Password::new(PASSWORD)).expect("login");
    let dufs = Dufs::start(&work.join("dufs-root"));
    let home = work.join("rclone");
    let rclone = Rclone::new(
        &server.addr,
        &data,
        dufs.as_ref().map(|d| d.addr.as_str()),
        &home,
    );

    let big = work.join("big.bin");
    let big_md5 = write_random(&big, big_size);
    let big_arg = big.to_str().unwrap();
    let down = work.join("down.bin");
    let down_arg = down.to_str().unwrap();
    let check_down = |what: &str| {
        assert_eq!(file_md5(&down), big_md5, "{what}: the download differs");
        fs::remove_file(&down).unwrap();
    };
    let check_put = |c: &mut Client, name: &str| {
        let listed = c.ls().expect("ls");
        let f = listed.iter().find(|f| f.name == name).expect("listed");
        assert_eq!(f.md5.as_deref(), Some(big_md5.as_str()), "{name}");
    };
    // Native and WebDAV take turns within a round, so that a machine
    // slowing down over the run weighs on both alike.
    let (mut n_put, mut n_get, mut d_put, mut d_get) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        n_put.push(server.client(bin, &["put", big_arg]).0);
        check_put(&mut c, "big.bin");
        d_put.push(rclone.run(&["copyto", big_arg, "nd:dav-big.bin"]));
        check_put(&mut c, "dav-big.bin");
        let get = ["get", "big.bin", "--overwrite", "-o", down_arg];
        n_get.push(server.client(bin, &get).0);
        check_down("native get");
        d_get.push(rclone.run(&["copyto", "nd:dav-big.bin", down_arg]));
        check_down("rclone get");
        c.delete("dav-big.bin").expect("delete");
    }
    let tls_put = rclone.run(&["copyto", big_arg, "nds:tls-big.bin"]);
    check_put(&mut c, "tls-big.bin");
    let tls_get = rclone.run(&["copyto", "nds:tls-big.bin", down_arg]);
    check_down("rclone TLS get");

    let mb = big_size as f64 / 1e6;
    let rate = |v: &mut Vec<f64>| big_size as f64 / median(v);
    let (np, ng, dp, dg) = (
        rate(&mut n_put),
        rate(&mut n_get),
        rate(&mut d_put),
        rate(&mut d_get),
    );
    let mut rows = vec![
        Row::rate("native put 1 file (median of 3)", big_size, np, None)
            .note(runs("", &n_put, mb, "MB/s")),
        Row::rate("rclone WebDAV put 1 file (median)", big_size, dp, None).note(runs(
            &format!("{:.2} x native; ", dp / np),
            &d_put,
            mb,
            "MB/s",
        )),
        Row::rate("native get 1 file (median of 3)", big_size, ng, None)
            .note(runs("", &n_get, mb, "MB/s")),
        Row::rate("rclone WebDAV get 1 file (median)", big_size, dg, None).note(runs(
            &format!("{:.2} x native; ", dg / ng),
            &d_get,
            mb,
            "MB/s",
        )),
        Row::rate(
            "rclone WebDAV TLS put 1 file",
            big_size,
            big_size as f64 / tls_put,
            None,
        )
        .note("one run, https with the server's certificate".into()),
        Row::rate(
            "rclone WebDAV TLS get 1 file",
            big_size,
            big_size as f64 / tls_get,
            None,
        )
        .note("one run".into()),
    ];
    fs::remove_file(&big).unwrap();

    let small = SmallSet::write(&work.join("small"), count, size);
    let curl = Command::new("curl").arg("--version").output().is_ok();
    let small_arg = small.dir.to_str().unwrap();
    let backs = work.join("back");
    let (mut nat, mut dav, mut duf) = ((vec![], vec![]), (vec![], vec![]), (vec![], vec![]));
    let (mut curl_nd, mut curl_dufs) = ((vec![], vec![]), (vec![], vec![]));
    let auth = format!("{USER}:{PASSWORD}");
    for round in 0..ROUNDS {
        let user = format!("small{round}");
        let (put, get) = small.round(&server, &server.addr, bin, &user, &backs.join(&user));
        nat.0.push(put);
        nat.1.push(get);
        let folder = format!("nd:small{round}");
        dav.0.push(rclone.run(&["copy", small_arg, &folder]));
        let listed = c.list(&format!("small{round}"), false).expect("ls");
        assert_eq!(listed.files.len(), count, "rclone put every small file");
        for f in &listed.files {
            let i = small.names.iter().position(|n| *n == f.name).unwrap();
            assert_eq!(f.md5.as_deref(), Some(small.digests[i].as_str()));
        }
        let back = backs.join(format!("dav{round}"));
        dav.1
            .push(rclone.run(&["copy", &folder, back.to_str().unwrap()]));
        check_small(&small, &back);
        if dufs.is_some() {
            let folder = format!("dufs:small{round}");
            duf.0.push(rclone.run(&["copy", small_arg, &folder]));
            check_small(&small, &work.join(format!("dufs-root/small{round}")));
            let back = backs.join(format!("dufs{round}"));
            duf.1
                .push(rclone.run(&["copy", &folder, back.to_str().unwrap()]));
            check_small(&small, &back);
        }
        if curl {
            let url = format!("http://{}/dav/curl{round}/", server.addr);
            let back = backs.join(format!("curl{round}"));
            let (put, get) = curl_small(&url, Some(&auth), &small, &back);
            curl_nd.0.push(put);
            curl_nd.1.push(get);
            if let Some(d) = &dufs {
                let url = format!("http://{}/curl{round}/", d.addr);
                let back = backs.join(format!("curl-dufs{round}"));
                let (put, get) = curl_small(&url, None, &small, &back);
                curl_dufs.0.push(put);
                curl_dufs.1.push(get);
            }
        }
    }
    let slowest = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let per_s = |v: &[f64]| count as f64 / slowest(v);
    let mut pair = |who: &str, (put, get): &(Vec<f64>, Vec<f64>), extra: &str| {
        for (dir, v) in [("put", put), ("get", get)] {
            rows.push(
                Row::files(&format!("{who} {dir}"), count, size, slowest(v)).note(runs(
                    &format!("slowest of 3{extra}; "),
                    v,
                    count as f64,
                    "files/s",
                )),
            );
        }
    };
    pair("native", &nat, "");
    pair("rclone WebDAV", &dav, ", --transfers 4");
    if dufs.is_some() {
        pair("rclone dufs", &duf, ", --transfers 4");
    }
    if curl {
        pair("curl WebDAV", &curl_nd, ", 4 at once");
        if dufs.is_some() {
            pair("curl dufs", &curl_dufs, ", 4 at once");
        }
    }

    let mut targets = vec![
        Target::at_least("WebDAV put 1 file vs native", dp / np, 0.8),
        Target::at_least("WebDAV get 1 file vs native", dg / ng, 0.8),
    ];
    if dufs.is_some() {
        targets.push(Target::at_least(
            "WebDAV small put vs dufs",
            per_s(&dav.0) / per_s(&duf.0),
            1.0,
        ));
        targets.push(Target::at_least(
            "WebDAV small get vs dufs",
            per_s(&dav.1) / per_s(&duf.1),
            1.0,
        ));
    }
    (rows, targets)
}
