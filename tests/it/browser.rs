//! The web page in real headless Chromium: `tests/browser/run.js` drives it
//! (playwright-core over the DevTools protocol) against a real server, and
//! this test checks what the server then holds.
//!
//! Needs Debian's `chromium`, Node.js and `npm ci` in `tests/browser`
//! (`.ci/run` sets up all three). Without them the tests print what is
//! missing and skip, except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{md5, TestServer, PASSWORD};

fn chromium() -> PathBuf {
    std::env::var_os("NETDISK_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Whether the browser test can run; panics with what is missing unless
/// skipping was asked for.
fn ready(dir: &Path) -> bool {
    let mut missing = Vec::new();
    if !chromium().exists() {
        missing.push(format!(
            "Chromium at {} (apt-get install chromium, or set NETDISK_CHROMIUM)",
            chromium().display()
        ));
    }
    if !dir.join("node_modules/playwright-core").exists() {
        missing.push(format!(
            "playwright-core (run `npm ci` in {})",
            dir.display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("Node.js (`node`)".into());
    }
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(&missing.join(" and "))
}

/// Skips a browser test with a notice, or fails it under `CI=true`.
fn skip_or_fail(missing: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "the browser test needs {missing} (CI=true: not skipped; `bash .ci/run` installs them)"
        );
    }
    eprintln!("NOTICE: browser test skipped: missing {missing}; `bash .ci/run` installs them");
    false
}

/// The screenshots the script takes, kept in `target/browser`.
const SHOTS: [&str; 4] = [
    "list.png",
    "list-phone.png",
    "upload-in-progress.png",
    "folders.png",
];

#[test]
fn the_page_signs_in_uploads_resumes_downloads_renames_deletes_and_shows_the_quota() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !ready(&dir) {
        return;
    }
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    for shot in SHOTS {
        let _ = std::fs::remove_file(artifacts.join(shot));
    }
    // 24 MiB: the 20 MiB upload fits, another 8 MiB does not.
    let server = TestServer::with_args(&["--quota", "25165824"]);
    drop(server.user("alice"));
    // And one without a quota, where the page shows no bar.
    let unlimited = TestServer::start();
    drop(unlimited.user("alice"));
    let mut child = Command::new("node")
        .arg(dir.join("run.js"))
        .current_dir(&dir)
        .env("NETDISK_URL", format!("http://{}/", server.addr))
        .env(
            "NETDISK_URL_NO_QUOTA",
            format!("http://{}/", unlimited.addr),
        )
        .env("NETDISK_USER", "alice")
        .env("NETDISK_PASSWORD", PASSWORD)
        .env("NETDISK_ARTIFACTS", &artifacts)
        .env("NETDISK_CHROMIUM", chromium())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.success(),
        "the browser script failed ({status}):\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(stdout.contains("browser: all checks passed"), "{stdout}");

    // What the page did is what the disk holds.
    let files = server.login("alice").ls().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["big 大文件.bin", "dropped 拖放.txt", "报告 2026 😀.txt"],
        "{files:?}"
    );
    assert_eq!(
        unlimited.stored("alice", "one.txt").unwrap(),
        b"one\n",
        "the upload on the server without a quota"
    );
    let report = server.stored("alice", "报告 2026 😀.txt").unwrap();
    assert_eq!(report.len(), 300 * 1024);
    assert_eq!(files[2].md5.as_deref(), Some(md5(&report).as_str()));
    let log = server.log();
    assert!(log.contains("\"PUT /api/uploads/"), "{log}");
    // The folders it made, uploaded (picked and dropped), moved into and
    // deleted.
    let album = |p: &str| format!("相册 photos/{p}");
    let read = |p: &str| String::from_utf8(server.stored("alice", &album(p)).unwrap()).unwrap();
    assert_eq!(read("pick/a.txt"), "picked a\n");
    assert_eq!(read("pick/sub/b.txt"), "picked b\n");
    assert_eq!(
        read("pick/sub/one.txt"),
        "one\n",
        "moved from the dropped folder"
    );
    assert!(
        !server.is_stored("alice", &album("dropped 文件夹")),
        "deleted whole"
    );
    assert!(
        !log.contains(".DS_Store"),
        "hidden files are left out: {log}"
    );
    for shot in SHOTS {
        let png = std::fs::read(artifacts.join(shot)).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "{shot}"
        );
    }
}

/// The page's MD5 (`web/md5.js`) under Node: RFC 1321's vectors, and a
/// file of many blocks fed in uneven pieces agrees with the `md-5` crate.
#[test]
fn the_pages_md5_matches_rfc_1321_and_the_servers() {
    if Command::new("node").arg("--version").output().is_err() {
        skip_or_fail("Node.js (`node`)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = crate::support::bytes(1_000_013, 5);
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let md5_js = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/md5.js");
    let script = r#"
        const MD5 = require(process.argv[1]);
        const data = require('fs').readFileSync(process.argv[2]);
        const vectors = ['', 'a', 'abc', 'message digest', 'abcdefghijklmnopqrstuvwxyz',
          'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789',
          '1234567890'.repeat(8)];
        const h = new MD5();
        for (let i = 0, n = 1; i < data.length; i += n, n = (n * 7 + 3) % 5000 + 1) {
          h.update(data.subarray(i, Math.min(data.length, i + n)));
        }
        console.log(JSON.stringify({ vectors: vectors.map((v) => MD5.of(v)), file: h.hex() }));
    "#;
    let out = Command::new("node")
        .args(["-e", script])
        .arg(&md5_js)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // RFC 1321, appendix A.5.
    let rfc = [
        "d41d8cd98f00b204e9800998ecf8427e",
        "0cc175b9c0f1b6a831c399e269772661",
        "900150983cd24fb0d6963f7d28e17f72",
        "f96b697d7cb7938d525a2f31aaf161d0",
        "c3fcd3d76192e4007dfb496cca67e13b",
        "d174ab98d277d9f5a5611c2c9f419d9f",
        "57edf4a22be3c955ac49da2e2107b67a",
    ];
    assert_eq!(got["vectors"], serde_json::json!(rfc));
    assert_eq!(got["file"], md5(&data));
}
