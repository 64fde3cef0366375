//! The web front end's HTTP API against a real server: status codes and
//! error codes, sessions and CSRF, pieces and resume shared with v1
//! clients, downloads with ranges, names, quotas and limits, TLS by ALPN.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{bytes, connect_from, md5, TestServer, PASSWORD};

trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

/// One HTTP/1.1 connection with a cookie jar of one cookie.
pub(crate) struct Web {
    stream: Box<dyn Wire>,
    buf: Vec<u8>,
    pub(crate) cookie: Option<String>,
    pub(crate) csrf: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    pub(crate) fn error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.json()["error"], code, "{self:?}");
        assert!(self.json()["message"].is_string());
    }
}

impl Web {
    fn over(stream: Box<dyn Wire>) -> Web {
        Web {
            stream,
            buf: Vec::new(),
            cookie: None,
            csrf: None,
        }
    }

    pub(crate) fn over_tcp(stream: TcpStream) -> Web {
        Web::over(Box::new(tcp(stream)))
    }

    pub(crate) fn plain(server: &TestServer) -> Web {
        Web::over(Box::new(tcp(TcpStream::connect(&server.addr).unwrap())))
    }

    /// Plain HTTP from the loopback address `127.0.0.N`.
    pub(crate) fn plain_from(server: &TestServer, n: u8) -> Web {
        Web::over(Box::new(tcp(connect_from(&server.addr, n))))
    }

    /// HTTP inside TLS, by ALPN `http/1.1`, trusting the server's
    /// fingerprint.
    pub(crate) fn tls(server: &TestServer) -> Web {
        Web::tls_at(&server.addr, server.fingerprint())
    }

    /// HTTP inside TLS to `addr` (a server, or a proxy before one),
    /// trusting `fingerprint`.
    pub(crate) fn tls_at(addr: &str, fingerprint: String) -> Web {
        use netdisk::tls::client::{KnownServers, Verifier};
        let dir = tempfile::tempdir().unwrap();
        let known = KnownServers {
            path: dir.path().join("known"),
        };
        let verifier = Verifier::new(addr, known, Some(fingerprint));
        let mut config = (*verifier.client_config().unwrap()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = netdisk::tls::client::server_name(addr).unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = tcp(TcpStream::connect(addr).unwrap());
        Web::over(Box::new(rustls::StreamOwned::new(conn, sock)))
    }

    pub(crate) fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(c) = &self.cookie {
            head.push_str(&format!("Cookie: netdisk_session={c}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut all = head.into_bytes();
        all.extend_from_slice(body);
        self.stream.write_all(&all).unwrap();
        self.stream.flush().unwrap();
    }

    pub(crate) fn read(&mut self, head_only: bool) -> Resp {
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = r.parse(&self.buf).unwrap() {
                let status = r.code.unwrap();
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        let v = String::from_utf8(h.value.to_vec()).unwrap();
                        (h.name.to_string(), v)
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let chunked = headers.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
                });
                if chunked && !head_only {
                    self.buf.drain(..n);
                    let body = self.read_chunks();
                    return Resp {
                        status,
                        headers,
                        body,
                    };
                }
                let len = if head_only { 0 } else { len };
                while self.buf.len() < n + len {
                    self.fill();
                }
                let body = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                return Resp {
                    status,
                    headers,
                    body,
                };
            }
            self.fill();
        }
    }

    /// A chunked body (RFC 9112 §7.1), without trailers.
    fn read_chunks(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                self.fill();
            };
            let size_line = String::from_utf8(self.buf[..line_end].to_vec()).unwrap();
            let size =
                usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                self.fill();
            }
            body.extend_from_slice(&self.buf[..size]);
            assert_eq!(&self.buf[size..size + 2], b"\r\n", "a chunk ends in CRLF");
            self.buf.drain(..size + 2);
            if size == 0 {
                return body;
            }
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    pub(crate) fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.send(method, path, headers, body);
        self.read(method == "HEAD")
    }

    pub(crate) fn get(&mut self, path: &str) -> Resp {
        self.call("GET", path, &[], b"")
    }

    /// A state-changing request with this session's CSRF token.
    pub(crate) fn change(&mut self, method: &str, path: &str, body: &[u8]) -> Resp {
        let csrf = self.csrf.clone().unwrap_or_else(|| "sign-in".into());
        self.call(
            method,
            path,
            &[
                ("X-Netdisk-CSRF", &csrf),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }

    pub(crate) fn post(&mut self, path: &str, v: &Value) -> Resp {
        self.change("POST", path, v.to_string().as_bytes())
    }

    pub(crate) fn sign_in(&mut self, user: &str) -> Resp {
        let r = self.post("/api/login", &json!({"user": user, "password": PASSWORD}));
        assert_eq!(r.status, 200, "{r:?}");
        let cookie = r.header("set-cookie").unwrap();
        let token = cookie
            .strip_prefix("netdisk_session=")
            .and_then(|c| c.split(';').next())
            .unwrap();
        self.cookie = Some(token.to_string());
        self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_string());
        r
    }

    pub(crate) fn piece(
        &mut self,
        name: &str,
        size: u64,
        offset: u64,
        body: &[u8],
        md5: Option<&str>,
    ) -> Resp {
        let mut path = format!("/api/uploads/{name}?size={size}&offset={offset}");
        if let Some(d) = md5 {
            path.push_str(&format!("&md5={d}"));
        }
        self.change("PUT", &path, body)
    }
}

fn tcp(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A server with `alice` registered, and a signed-in web connection.
pub(crate) fn alice(args: &[&str]) -> (TestServer, Web) {
    let server = TestServer::with_args(args);
    drop(server.user("alice"));
    let mut web = Web::plain(&server);
    web.sign_in("alice");
    (server, web)
}

/// Percent-encodes every byte but unreserved ASCII.
pub(crate) fn enc(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn the_page_and_the_api_share_the_port_with_strict_headers() {
    let server = TestServer::start();
    let log = server.wait_for_log("web on https://");
    assert!(
        log.contains(&format!("web on https://{}/", server.addr)),
        "{log}"
    );
    let mut web = Web::plain(&server);
    let page = web.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(
        html.contains("src=\"/app.js\"") && !html.contains("http://") && !html.contains("https://")
    );
    // Same connection: keep-alive.
    let js = web.get("/app.js");
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let head = web.call("HEAD", "/md5.js", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 1000
    );
    web.get("/nothing-here").error(404, "NOT_FOUND");
    web.get("/api/nothing").error(404, "UNKNOWN_COMMAND");
    web.call("PATCH", "/api/files", &[], b"")
        .error(405, "BAD_REQUEST");
    let s = web.get("/api/session").json();
    assert_eq!(s, json!({"user": null, "csrf": null, "registration": true}));
    // v1 clients still work on the same port.
    let mut c = server.user("bob");
    assert!(c.ls().unwrap().is_empty());
}

#[test]
fn signing_in_sets_a_strict_cookie_and_takes_the_login_limits() {
    let server = TestServer::start();
    drop(server.user("alice"));
    let mut web = Web::plain(&server);
    web.post(
        "/api/login",
        &json!({"user": "alice", "password": "wrong password"}),
    )
    .error(401, "AUTH_FAILED");
    web.get("/api/files").error(401, "NOT_LOGGED_IN");
    let r = web.sign_in("alice");
    assert_eq!(r.json()["user"], "alice");
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plaintext loopback: {cookie}");
    assert_eq!(web.get("/api/whoami").json()["user"], "alice");
    let s = web.get("/api/session").json();
    assert_eq!(s["user"], "alice");
    assert_eq!(s["csrf"].as_str(), web.csrf.as_deref());

    // Inside TLS (ALPN http/1.1) the cookie is Secure.
    let mut tls = Web::tls(&server);
    let r = tls.sign_in("alice");
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));
    assert_eq!(tls.get("/api/whoami").json()["user"], "alice");

    // Registration goes through `register`, with its rules.
    let weak = json!({"user": "carol", "password": "short"});
    web.post("/api/register", &weak).error(400, "WEAK_PASSWORD");
    let ok = json!({"user": "carol", "password": PASSWORD});
    assert_eq!(web.post("/api/register", &ok).status, 201);
    web.post("/api/register", &ok).error(409, "USER_EXISTS");
    let closed = TestServer::with_args(&["--registration", "closed"]);
    let mut w = Web::plain(&closed);
    assert_eq!(w.get("/api/session").json()["registration"], false);
    w.post("/api/register", &ok)
        .error(403, "REGISTRATION_CLOSED");
}

#[test]
fn state_changing_requests_need_the_csrf_token() {
    let (server, mut web) = alice(&[]);
    crate::protocol::put_all(&mut server.login("alice"), "f", b"x");
    let wrong = "0".repeat(64);
    for headers in [vec![], vec![("X-Netdisk-CSRF", wrong.as_str())]] {
        web.call("DELETE", "/api/files/f", &headers, b"")
            .error(403, "BAD_REQUEST");
        let body = json!({"from": "f", "to": "g"}).to_string();
        let mut h = headers.clone();
        h.push(("Content-Type", "application/json"));
        web.call("POST", "/api/rename", &h, body.as_bytes())
            .error(403, "BAD_REQUEST");
        web.call("PUT", "/api/uploads/g?size=1&offset=0", &headers, b"y")
            .error(403, "BAD_REQUEST");
    }
    // Signing in needs the header too, and a JSON body.
    let creds = json!({"user": "alice", "password": PASSWORD}).to_string();
    let json = [("Content-Type", "application/json")];
    web.call("POST", "/api/login", &json, creds.as_bytes())
        .error(403, "BAD_REQUEST");
    let form = [("X-Netdisk-CSRF", "x"), ("Content-Type", "text/plain")];
    web.call("POST", "/api/login", &form, creds.as_bytes())
        .error(400, "BAD_REQUEST");
    assert!(server.is_stored("alice", "f"));
    assert_eq!(web.change("DELETE", "/api/files/f", b"").status, 200);
    assert!(!server.is_stored("alice", "f"));
}

#[test]
fn sessions_end_when_idle_and_on_sign_out() {
    let (server, mut web) = alice(&["--web-idle", "1"]);
    let mut other = Web::plain(&server);
    other.sign_in("alice");
    assert_eq!(web.get("/api/whoami").status, 200);
    // Sign-out ends that session at once, and clears the cookie.
    let out = other.change("POST", "/api/logout", b"");
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    other.get("/api/whoami").error(401, "NOT_LOGGED_IN");
    // The other session lives until it is idle for a second.
    let used = Instant::now();
    assert_eq!(web.get("/api/files").status, 200);
    while used.elapsed() < Duration::from_millis(1300) {
        std::thread::sleep(Duration::from_millis(100));
    }
    web.get("/api/files").error(401, "NOT_LOGGED_IN");
    assert_eq!(web.get("/api/session").json()["user"], Value::Null);
}

#[test]
fn uploads_go_in_pieces_resume_at_the_servers_offset_and_are_verified() {
    let (server, mut web) = alice(&[]);
    let data = bytes(3_000_000, 1);
    let size = data.len() as u64;
    let name = enc("报告 😀.bin");
    let status = |web: &mut Web| web.get(&format!("/api/uploads/{name}?size={size}")).json();
    assert_eq!(status(&mut web)["offset"], 0);
    let r = web.piece(&name, size, 0, &data[..1_000_000], None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({"offset": 1_000_000, "size": size}));
    assert_eq!(status(&mut web)["offset"], 1_000_000);
    // A piece from elsewhere is refused with where to continue.
    let r = web.piece(&name, size, 0, &data[..10], None);
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"], "BAD_REQUEST");
    assert_eq!(r.json()["offset"], 1_000_000);
    web.piece(&name, size, 1_000_000, &data[..2_000_001], None)
        .error(400, "BAD_REQUEST");
    web.piece(&name, size, 1_000_000, b"", Some("not-a-digest"))
        .error(400, "BAD_REQUEST");
    assert!(server.stored_names("alice", "").is_empty());
    // The wrong MD5 at the end: refused, staging dropped, as step 4.
    let wrong = md5(b"something else");
    web.piece(&name, size, 1_000_000, &data[1_000_000..], Some(&wrong))
        .error(422, "CHECKSUM_MISMATCH");
    assert_eq!(status(&mut web)["offset"], 0);
    // All bytes without a digest wait for one.
    let r = web.piece(&name, size, 0, &data, None);
    assert_eq!(r.json()["offset"], size);
    let whoami = web.get("/api/whoami").json();
    assert_eq!(whoami["staged"], size);
    let right = md5(&data);
    let r = web.piece(&name, size, size, b"", Some(&right));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"name": "报告 😀.bin", "size": size, "md5": right})
    );
    let listed = web.get("/api/files").json();
    assert_eq!(listed["files"][0]["name"], "报告 😀.bin");
    assert_eq!(listed["files"][0]["md5"], right.as_str());
    assert_eq!(server.stored("alice", "报告 😀.bin").unwrap(), data);
    // Discard drops what an unfinished upload holds.
    web.piece("x", 10, 0, b"12345", None);
    assert_eq!(web.change("DELETE", "/api/uploads/x", b"").status, 200);
    web.change("DELETE", "/api/uploads/x", b"")
        .error(404, "NOT_FOUND");
    // An empty file is one empty piece with its digest.
    let r = web.piece("empty", 0, 0, b"", Some(&md5(b"")));
    assert_eq!(r.status, 201, "{r:?}");
}

#[test]
fn a_v1_client_finishes_what_the_page_started_and_the_other_way_round() {
    let (server, mut web) = alice(&[]);
    let data = bytes(500_000, 2);
    let size = data.len() as u64;
    web.piece("web-first", size, 0, &data[..200_000], None);
    let mut c = server.login("alice");
    assert_eq!(c.put_begin("web-first", size).unwrap(), 200_000);
    c.write_body(&data[200_000..]).unwrap();
    assert_eq!(c.put_end(&md5(&data)).unwrap().md5, md5(&data));

    let mut c = server.login("alice");
    assert_eq!(c.put_begin("v1-first", size).unwrap(), 0);
    c.write_body(&data[..300_000]).unwrap();
    drop(c);
    // The server notices the hang-up; then the name is free.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let r = web.get(&format!("/api/uploads/v1-first?size={size}"));
        if r.status != 423 {
            break r;
        }
        assert!(Instant::now() < deadline, "the name stayed LOCKED");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.json()["offset"], 300_000);
    let r = web.piece(
        "v1-first",
        size,
        300_000,
        &data[300_000..],
        Some(&md5(&data)),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let files = server.login("alice").ls().unwrap();
    assert_eq!(files.len(), 2);
    assert!(files
        .iter()
        .all(|f| f.md5.as_deref() == Some(md5(&data).as_str())));
}

#[test]
fn downloads_carry_length_disposition_etag_and_honour_ranges() {
    let (server, mut web) = alice(&[]);
    let data = bytes(100_000, 3);
    let name = "报告 2026.pdf";
    // Placed by other means where the engine allows it: its digest comes
    // with the first download.
    if crate::support::on_db() {
        crate::protocol::put_all(&mut server.login("alice"), name, &data);
    } else {
        std::fs::write(server.user_files("alice").join(name), &data).unwrap();
    }
    let path = format!("/api/files/{}", enc(name));
    let full = web.get(&path);
    assert_eq!(full.status, 200);
    assert_eq!(full.body, data);
    assert_eq!(full.header("content-length"), Some("100000"));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let etag = format!("\"{}\"", md5(&data));
    assert_eq!(full.header("etag"), Some(etag.as_str()));
    assert_eq!(
        full.header("content-disposition"),
        Some(
            "attachment; filename=\"__ 2026.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%202026.pdf"
        )
    );
    let part = web.call("GET", &path, &[("Range", "bytes=10-19")], b"");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &data[10..20]);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/100000"));
    let tail = web.call("GET", &path, &[("Range", "bytes=99990-")], b"");
    assert_eq!(tail.body, &data[99_990..]);
    let suffix = web.call("GET", &path, &[("Range", "bytes=-5")], b"");
    assert_eq!(suffix.body, &data[99_995..]);
    let past = web.call("GET", &path, &[("Range", "bytes=100000-")], b"");
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */100000"));
    // A resume against a changed file gets the whole new file.
    let stale = [("Range", "bytes=10-"), ("If-Range", "\"0123\"")];
    let r = web.call("GET", &path, &stale, b"");
    assert_eq!((r.status, r.body.len()), (200, 100_000));
    let same = [("Range", "bytes=10-"), ("If-Range", etag.as_str())];
    assert_eq!(web.call("GET", &path, &same, b"").status, 206);
    let head = web.call("HEAD", &path, &[], b"");
    assert_eq!(head.header("content-length"), Some("100000"));
    web.get("/api/files/missing").error(404, "NOT_FOUND");

    // The same inside TLS.
    let mut tls = Web::tls(&server);
    tls.sign_in("alice");
    let r = tls.call("GET", &path, &[("Range", "bytes=50000-")], b"");
    assert_eq!(r.body, &data[50_000..]);
    assert_eq!(tls.get(&path).body, data);
}

#[test]
fn names_are_decoded_once_and_checked_by_the_same_rules() {
    let (server, mut web) = alice(&[]);
    for name in [
        "中文 名字.txt",
        "emoji 😀🎉.txt",
        "100% sure & done?.txt",
        "%41",
    ] {
        let r = web.piece(&enc(name), 2, 0, b"hi", Some(&md5(b"hi")));
        assert_eq!(r.status, 201, "{name}: {r:?}");
        assert_eq!(r.json()["name"], name);
        assert!(server.is_stored("alice", name), "{name}");
        assert_eq!(web.get(&format!("/api/files/{}", enc(name))).body, b"hi");
    }
    // "%2541" is "%41" once decoded, not "A".
    assert_eq!(web.get("/api/files/%2541").status, 200);
    web.get("/api/files/A").error(404, "NOT_FOUND");
    for bad in [
        "..",
        "%2E%2E",
        "a%2Fb",
        "..%2F..%2Fetc%2Fpasswd",
        "a//b",
        "%FF",
        "",
        "%00x",
    ] {
        web.get(&format!("/api/files/{bad}"))
            .error(400, "INVALID_NAME");
        web.piece(bad, 1, 0, b"x", None).error(400, "INVALID_NAME");
    }
    let r = web.post("/api/rename", &json!({"from": "%41", "to": "../x"}));
    r.error(400, "INVALID_NAME");
    let r = web.post(
        "/api/rename",
        &json!({"from": "%41", "to": "emoji 😀🎉.txt"}),
    );
    r.error(409, "EXISTS");
    let r = web.post("/api/rename", &json!({"from": "%41", "to": "改名.txt"}));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(server.is_stored("alice", "改名.txt"));
}

#[test]
fn quotas_locks_and_size_limits_hold_for_the_page_too() {
    let (server, mut web) = alice(&["--quota", "1000"]);
    web.piece("big", 2000, 0, b"", None)
        .error(507, "QUOTA_EXCEEDED");
    let r = web.change("POST", "/api/uploads/big?size=2000", b"");
    r.error(507, "QUOTA_EXCEEDED");
    // Asking where to continue is read-only: no quota check, no claim.
    assert_eq!(web.get("/api/uploads/big?size=2000").json()["offset"], 0);
    // A v1 upload in progress holds the name.
    let mut c = server.login("alice");
    assert_eq!(c.put_begin("held", 100).unwrap(), 0);
    c.write_body(b"x").unwrap();
    web.piece("held", 100, 0, b"y", None).error(423, "LOCKED");
    web.get("/api/uploads/held?size=100").error(423, "LOCKED");
    assert_eq!(web.get("/api/whoami").json()["quota"], 1000);

    // A piece over the cap: refused from its head, and the connection closes.
    let mut w = Web::plain(&server);
    w.cookie = web.cookie.clone();
    w.csrf = web.csrf.clone();
    let csrf = w.csrf.clone().unwrap();
    let big = (65u64 << 20).to_string();
    w.stream
        .write_all(
            format!(
                "PUT /api/uploads/x?size={big}&offset=0 HTTP/1.1\r\nHost: x\r\n\
                 Cookie: netdisk_session={}\r\nX-Netdisk-CSRF: {csrf}\r\n\
                 Content-Length: {big}\r\n\r\n",
                w.cookie.clone().unwrap()
            )
            .as_bytes(),
        )
        .unwrap();
    let r = w.read(false);
    r.error(413, "BAD_REQUEST");
    assert_eq!(r.header("connection"), Some("close"));
    // JSON bodies are small.
    let huge = json!({"from": "a", "to": "b".repeat(70_000)});
    let r = web.post("/api/rename", &huge);
    r.error(413, "BAD_REQUEST");
    // A request head over 16 KiB.
    let mut w = Web::plain(&server);
    let long = "a".repeat(17_000);
    let r = w.call("GET", "/", &[("X-Long", &long)], b"");
    assert_eq!(r.status, 431, "{r:?}");
    // Chunked bodies are not taken.
    let mut w = Web::plain(&server);
    let r = w.call(
        "POST",
        "/api/login",
        &[("Transfer-Encoding", "chunked")],
        b"",
    );
    r.error(400, "BAD_REQUEST");
}

#[test]
fn plain_http_is_only_for_allowed_peers_and_requests_may_be_pipelined() {
    let server = TestServer::with_args(&["--plaintext-from", "127.0.0.1"]);
    // A peer that must use TLS is sent to the same page over https://.
    let mut far = tcp(connect_from(&server.addr, 2));
    far.write_all(b"GET /#photos HTTP/1.1\r\nHost: disk.example:9000\r\n\r\n")
        .unwrap();
    let mut w = Web::over(Box::new(far));
    let r = w.read(false);
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("https://disk.example:9000/#photos")
    );
    assert_eq!(r.header("connection"), Some("close"));
    // A host that could smuggle anything in gets the 403 instead.
    for host in ["evil.example/x", "a b", "x@y", ""] {
        let mut far = tcp(connect_from(&server.addr, 2));
        let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        far.write_all(head.as_bytes()).unwrap();
        let r = Web::over(Box::new(far)).read(false);
        r.error(403, "TLS_REQUIRED");
        assert!(r.json()["message"].as_str().unwrap().contains("https://"));
    }

    let mut near = Web::plain(&server);
    near.stream
        .write_all(b"GET /api/session HTTP/1.1\r\nHost: x\r\n\r\nGET /icon.svg HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(near.read(false).json()["user"], Value::Null);
    let icon = near.read(false);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    let old = near.call("GET", "/api/session", &[("Connection", "close")], b"");
    assert_eq!(old.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(
        near.stream.read_to_end(&mut rest).unwrap(),
        0,
        "closed after it"
    );
}
