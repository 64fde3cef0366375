//! WebDAV under `/dav/` (issue 18): Basic auth through the login limiter,
//! the same quotas, locks, staging and path rules as every front end, and
//! bounded answers to hostile requests. Conformance as a whole is litmus's
//! job (dav_clients.rs); these pin down netdisk's own promises.

use std::fs;

use base64::Engine;
use netdisk::error::ErrorCode;
use netdisk::protocol::Password;
use netdisk::ratelimit::MAX_PER_USER;

use crate::accounts_db::admin_db;
use crate::admin::admin;
use crate::http::{Resp, Web};
use crate::protocol::{code, put_all};
use crate::support::{bytes, md5, TestServer, PASSWORD};

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// A WebDAV client on one keep-alive connection.
struct Dav {
    web: Web,
    auth: String,
}

impl Dav {
    fn new(server: &TestServer, user: &str) -> Dav {
        Dav {
            web: Web::plain(server),
            auth: basic(user, PASSWORD),
        }
    }

    fn from(server: &TestServer, n: u8, user: &str, password: &str) -> Dav {
        let stream = crate::support::connect_from(&server.addr, n);
        Dav {
            web: Web::over_tcp(stream),
            auth: basic(user, password),
        }
    }

    fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut all = vec![("Authorization", self.auth.as_str())];
        all.extend_from_slice(headers);
        if body.is_empty() && matches!(method, "PROPFIND" | "PROPPATCH" | "LOCK" | "MKCOL") {
            all.push(("Content-Length", "0"));
        }
        self.web.call(method, path, &all, body)
    }

    fn put(&mut self, path: &str, body: &[u8]) -> Resp {
        self.call("PUT", path, &[], body)
    }

    fn propfind(&mut self, path: &str, depth: &str, body: &str) -> Resp {
        self.call("PROPFIND", path, &[("Depth", depth)], body.as_bytes())
    }
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn r18_basic_auth_goes_through_the_login_limiter_and_follows_password_changes() {
    let server = TestServer::start();
    let log = server.wait_for_log("webdav on ");
    let mount = format!(
        "webdav on https://{0}/dav/ (file managers: davs://{0}/dav/)",
        server.addr
    );
    assert!(log.contains(&mount), "{log}");
    let mut home = server.client_from(5);
    home.register("alice", &Password::new(PASSWORD)).unwrap();
    home.login("alice", &Password::new(PASSWORD)).unwrap();
    // No credentials: a challenge; OPTIONS is answered to anyone.
    let mut web = Web::plain(&server);
    let r = web.call(
        "PROPFIND",
        "/dav/",
        &[("Depth", "0"), ("Content-Length", "0")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"netdisk\", charset=\"UTF-8\"")
    );
    let r = web.call("OPTIONS", "/dav/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("dav"), Some("1, 2"));
    // Wrong passwords count as failed logins, then the name is limited
    // for new addresses, with the time to wait...
    let mut guesser = Dav::from(&server, 2, "alice", "a wrong guess");
    for _ in 0..MAX_PER_USER {
        assert_eq!(guesser.propfind("/dav/", "0", "").status, 401);
    }
    let r = guesser.propfind("/dav/", "0", "");
    assert_eq!(r.status, 429, "{}", text(&r));
    assert!(r
        .header("retry-after")
        .is_some_and(|s| s.parse::<u64>().is_ok()));
    let mut stranger = Dav::from(&server, 3, "alice", PASSWORD);
    assert_eq!(stranger.propfind("/dav/", "0", "").status, 429);
    // ...but not for alice at the address she logged in from.
    let mut alice = Dav::from(&server, 5, "alice", PASSWORD);
    assert_eq!(alice.propfind("/dav/", "0", "").status, 207);
    assert_eq!(alice.put("/dav/a.txt", b"one").status, 201);
    // The verified credentials do not outlive a password change.
    let changed = match server.db_url() {
        Some(url) => admin_db(url, Some("a new password"), &["passwd", "alice"]),
        None => admin(
            server.data.path(),
            Some("a new password"),
            &["passwd", "alice"],
        ),
    };
    assert!(changed.0, "{}", changed.2);
    assert_eq!(alice.propfind("/dav/", "0", "").status, 401);
    alice.auth = basic("alice", "a new password");
    assert_eq!(alice.propfind("/dav/a.txt", "0", "").status, 207);
}

#[test]
fn r18_puts_are_verified_atomic_and_carry_the_md5() {
    let server = TestServer::start();
    server.user("alice");
    let mut d = Dav::new(&server, "alice");
    let body = bytes(100_000, 7);
    let sum = md5(&body);
    let b64 = base64::engine::general_purpose::STANDARD.encode(hex(&sum));
    let r = d.call("PUT", "/dav/f.bin", &[("Content-MD5", &b64)], &body);
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(r.header("etag"), Some(format!("\"{sum}\"").as_str()));
    // A wrong digest, of either kind, replaces nothing.
    let other = bytes(100_000, 8);
    let r = d.call("PUT", "/dav/f.bin", &[("Content-MD5", &b64)], &other);
    assert_eq!(r.status, 400);
    let wrong_sha1 = format!("SHA1:{}", "0".repeat(40));
    let r = d.call("PUT", "/dav/f.bin", &[("OC-Checksum", &wrong_sha1)], &other);
    assert_eq!(r.status, 400, "{}", text(&r));
    let r = d.call("GET", "/dav/f.bin", &[], b"");
    assert_eq!((r.status, md5(&r.body)), (200, sum.clone()));
    // A right SHA-1 and an mtime: replaced (204), the time kept.
    let sha1 = {
        use sha1::Digest;
        let h = sha1::Sha1::digest(&other);
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let check = format!("SHA1:{sha1}");
    let headers = [
        ("OC-Checksum", check.as_str()),
        ("X-OC-Mtime", "1500000000"),
    ];
    let r = d.call("PUT", "/dav/f.bin", &headers, &other);
    assert_eq!(r.status, 204, "{}", text(&r));
    let listed = server.login("alice").ls().unwrap();
    assert_eq!(listed[0].md5.as_deref(), Some(md5(&other).as_str()));
    assert_eq!(listed[0].mtime, 1_500_000_000);
    // Ranges, and a conditional GET on the ETag.
    let etag = format!("\"{}\"", md5(&other));
    let r = d.call("GET", "/dav/f.bin", &[("Range", "bytes=10-19")], b"");
    assert_eq!((r.status, r.body.as_slice()), (206, &other[10..20]));
    let r = d.call("GET", "/dav/f.bin", &[("If-None-Match", &etag)], b"");
    assert_eq!(r.status, 304);
    // No parent is made; a folder is not a file.
    assert_eq!(d.put("/dav/missing/x", b"x").status, 409);
    assert_eq!(d.call("MKCOL", "/dav/dir", &[], b"").status, 201);
    assert_eq!(d.call("MKCOL", "/dav/dir", &[], b"").status, 405);
    assert_eq!(d.call("MKCOL", "/dav/no/dir", &[], b"").status, 409);
    assert_eq!(d.call("MKCOL", "/dav/body", &[], b"<x/>").status, 415);
    assert_eq!(d.put("/dav/dir", b"x").status, 405);
    // Nothing half-written is visible anywhere.
    let names: Vec<_> = server
        .login("alice")
        .ls()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["f.bin"]);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn r18_quota_and_locks_hold_across_front_ends() {
    let server = TestServer::with_args(&["--quota", "1000"]);
    let mut native = server.user("alice");
    let mut d = Dav::new(&server, "alice");
    let r = d.put("/dav/big", &[0u8; 2000]);
    assert_eq!(r.status, 507, "{}", text(&r));
    // A native upload in progress: WebDAV's PUT of that path is 423.
    assert_eq!(native.put_begin("busy", 10).unwrap(), 0);
    native.write_body(b"12345").unwrap();
    assert_eq!(d.put("/dav/busy", b"x").status, 423);
    // A WebDAV lock: native writes are LOCKED, the holder's are not.
    let mut n2 = server.login("alice");
    assert_eq!(d.put("/dav/doc.txt", b"v1").status, 201);
    let lockinfo = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>"#;
    let r = d.call(
        "LOCK",
        "/dav/doc.txt",
        &[("Timeout", "Second-600")],
        lockinfo.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    let token = r.header("lock-token").unwrap().to_string();
    assert_eq!(code(n2.put_begin("doc.txt", 2)), ErrorCode::Locked);
    assert_eq!(code(n2.delete("doc.txt")), ErrorCode::Locked);
    assert_eq!(d.put("/dav/doc.txt", b"v2").status, 423);
    let cond = format!("({token})");
    assert_eq!(
        d.call("PUT", "/dav/doc.txt", &[("If", &cond)], b"v3")
            .status,
        204
    );
    let r = d.call("UNLOCK", "/dav/doc.txt", &[("Lock-Token", &token)], b"");
    assert_eq!(r.status, 204);
    // A lock's owner is kept in memory: bounded.
    let big = lockinfo.replace(
        "<D:owner>me</D:owner>",
        &format!("<D:owner>{}</D:owner>", "x".repeat(2048)),
    );
    assert_eq!(
        d.call("LOCK", "/dav/doc.txt", &[], big.as_bytes()).status,
        400
    );
    put_all(&mut n2, "doc.txt", b"v4");
}

#[test]
fn r18_paths_and_destinations_stay_in_the_users_own_tree() {
    let server = TestServer::start();
    let mut bob = server.user("bob");
    put_all(&mut bob, "secret", b"bob's");
    server.user("alice");
    let mut d = Dav::new(&server, "alice");
    assert_eq!(d.put("/dav/mine", b"alice's").status, 201);
    for bad in [
        "/dav/../bob/files/secret",
        "/dav/%2e%2e/secret",
        "/dav/a%2Fb",
        "/dav//x",
    ] {
        let r = d.call("GET", bad, &[], b"");
        assert_eq!(r.status, 400, "{bad}: {}", text(&r));
    }
    let dests = [
        ("http://elsewhere.example/dav/x", 502),
        ("/api/files/x", 403),
        ("/dav/../bob/x", 403),
        ("/dav/%2e%2e/bob/x", 403),
        ("/dav/a%2Fb", 403),
        ("/davx/y", 403),
    ];
    for (dest, status) in dests {
        for method in ["COPY", "MOVE"] {
            let r = d.call(method, "/dav/mine", &[("Destination", dest)], b"");
            assert_eq!(r.status, status, "{method} to {dest}: {}", text(&r));
        }
    }
    // The same host in an absolute URL is this server.
    let r = d.call(
        "COPY",
        "/dav/mine",
        &[("Destination", "http://localhost/dav/copy")],
        b"",
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(bob.ls().unwrap().len(), 1);
    assert_eq!(server.stored("bob", "secret").unwrap(), b"bob's");
    let names: Vec<_> = server
        .login("alice")
        .ls()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["copy", "mine"]);
}

#[test]
fn r18_properties_and_names_round_trip_and_follow_moves() {
    let server = TestServer::start();
    server.user("alice");
    let mut d = Dav::new(&server, "alice");
    let name = "报告 😀 &<%.txt";
    let url = "/dav/%E6%8A%A5%E5%91%8A%20%F0%9F%98%80%20%26%3C%25.txt";
    assert_eq!(d.put(url, b"hello").status, 201);
    let patch = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:colour>blue &amp; green</Z:colour></D:prop></D:set></D:propertyupdate>"#;
    assert_eq!(d.call("PROPPATCH", url, &[], patch.as_bytes()).status, 207);
    let live = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getetag>x</D:getetag></D:prop></D:set></D:propertyupdate>"#;
    let r = d.call("PROPPATCH", url, &[], live.as_bytes());
    assert!(text(&r).contains("403 Forbidden"), "{}", text(&r));
    let r = d.propfind("/dav/", "1", "");
    let body = text(&r);
    assert_eq!(r.status, 207);
    assert!(body.contains(&format!("<D:href>{url}</D:href>")), "{body}");
    assert!(
        body.contains("<D:displayname>报告 😀 &amp;&lt;%.txt</D:displayname>"),
        "{body}"
    );
    assert!(body.contains("blue &amp; green"), "{body}");
    assert!(body.contains(&format!("<oc:checksum>MD5:{}</oc:checksum>", md5(b"hello"))));
    // Properties follow a move and a copy, and go with a delete.
    let moved = format!("{url}.moved");
    assert_eq!(
        d.call("MOVE", url, &[("Destination", &moved)], b"").status,
        201
    );
    let copied = "/dav/copied";
    assert_eq!(
        d.call("COPY", &moved, &[("Destination", copied)], b"")
            .status,
        201
    );
    for u in [moved.as_str(), copied] {
        assert!(
            text(&d.propfind(u, "0", "")).contains("blue &amp; green"),
            "{u}"
        );
    }
    assert_eq!(d.call("DELETE", copied, &[], b"").status, 204);
    assert_eq!(d.put(copied, b"new").status, 201);
    assert!(!text(&d.propfind(copied, "0", "")).contains("blue"));
    let listed = server.login("alice").ls().unwrap();
    assert!(listed.iter().any(|f| f.name == format!("{name}.moved")));
    // Depth infinity is refused as RFC 4918 allows.
    let r = d.propfind("/dav/", "infinity", "");
    assert_eq!(r.status, 403);
    assert!(text(&r).contains("propfind-finite-depth"));
}

#[test]
fn r18_a_huge_folder_is_listed_in_chunks_and_xml_bombs_are_refused() {
    let server = TestServer::start();
    server.user("alice");
    let long = "n".repeat(200);
    match server.db_url() {
        None => {
            let dir = server.user_files("alice").join("many");
            fs::create_dir(&dir).unwrap();
            for i in 0..45_000 {
                fs::write(dir.join(format!("{long}{i:05}")), b"").unwrap();
            }
        }
        // The rows as many uploads of empty files would leave them, made
        // at once.
        Some(url) => {
            let mut pg = postgres::Client::connect(url, postgres::NoTls).unwrap();
            pg.execute(
                "INSERT INTO nodes (account, path, parent, is_dir, mtime)
                 SELECT id, 'many', '', true, 0 FROM accounts WHERE key = 'alice'",
                &[],
            )
            .unwrap();
            pg.execute(
                "INSERT INTO nodes (account, path, parent, is_dir, mtime, md5)
                 SELECT a.id, 'many/' || $1 || lpad(i::text, 5, '0'), 'many', false, 0,
                        'd41d8cd98f00b204e9800998ecf8427e'
                 FROM accounts a, generate_series(0, 44999) AS i WHERE a.key = 'alice'",
                &[&long],
            )
            .unwrap();
        }
    }
    let mut d = Dav::new(&server, "alice");
    let before = server.peak_rss();
    let ask = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:getetag/></D:prop></D:propfind>"#;
    let r = d.propfind("/dav/many/", "1", ask);
    assert_eq!(r.status, 207);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let body = text(&r);
    assert_eq!(body.matches("<D:response>").count(), 45_001);
    // The answer is about 20 MB; the server never held it whole.
    let grew = server.peak_rss().saturating_sub(before);
    assert!(
        grew < body.len() as u64,
        "peak grew {grew} bytes for {}",
        body.len()
    );

    let bomb = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">{}]><D:propfind xmlns:D="DAV:"><D:prop>&lol9;</D:prop></D:propfind>"#,
        (1..10)
            .map(|i| format!(
                "<!ENTITY lol{i} \"{}\">",
                format!(
                    "&lol{};",
                    if i == 1 {
                        String::new()
                    } else {
                        (i - 1).to_string()
                    }
                )
                .repeat(10)
            ))
            .collect::<String>()
    );
    let r = d.propfind("/dav/", "0", &bomb);
    assert_eq!(r.status, 400, "{}", text(&r));
    let huge = format!("<a>{}</a>", "x".repeat(100 * 1024));
    let r = d.propfind("/dav/", "0", &huge);
    assert_eq!(r.status, 413);
    let mut again = Dav::new(&server, "alice");
    assert_eq!(again.propfind("/dav/", "0", "").status, 207);
}

/// macOS Finder sends uploads in chunks, with their length in
/// `X-Expected-Entity-Length`.
#[test]
fn r18_chunked_puts_with_a_declared_length_are_taken() {
    use std::io::Write;
    let server = TestServer::start();
    server.user("alice");
    let put = |headers: &str, body: &[u8]| {
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        let head = format!(
            "PUT /dav/f.txt HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\
             Transfer-Encoding: chunked\r\n{headers}\r\n",
            basic("alice", PASSWORD)
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut web = Web::over_tcp(s);
        web.read(false)
    };
    let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n";
    let r = put("X-Expected-Entity-Length: 11\r\n", body);
    assert_eq!(r.status, 201, "{}", text(&r));
    let mut d = Dav::new(&server, "alice");
    assert_eq!(d.call("GET", "/dav/f.txt", &[], b"").body, b"hello world");
    // Without a declared length, or with a wrong one: refused, nothing
    // replaced.
    assert_eq!(put("", body).status, 400);
    assert_eq!(put("X-Expected-Entity-Length: 12\r\n", body).status, 400);
    assert_eq!(put("X-Expected-Entity-Length: 10\r\n", body).status, 400);
    assert_eq!(d.call("GET", "/dav/f.txt", &[], b"").body, b"hello world");
}
