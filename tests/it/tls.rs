//! TLS on the shared port (issue 7): every command inside TLS, trust on
//! first use (the question on a terminal, the refusal without one, a
//! changed certificate), a CA-signed chain, and `TLS_REQUIRED`.

use std::fs;
use std::path::Path;

use netdisk::client::{Client, ClientError, Security};
use netdisk::protocol::Password;
use netdisk::tls::client::{KnownServers, Trust};
use serde_json::json;

use crate::cli::{netdisk, USER};
use crate::protocol::closed;
use crate::pty::Pty;
use crate::support::*;

fn security(known: &Path, trust: Option<String>) -> Security {
    Security {
        tls: Some(true),
        known: KnownServers {
            path: known.to_path_buf(),
        },
        trust,
    }
}

#[test]
fn every_command_works_inside_tls() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_servers");
    let sec = security(&known, Some(server.fingerprint()));
    let mut c = Client::connect_with(&server.addr, &sec).unwrap();
    assert!(c.is_tls());
    // Trusted once by flag, the server is pinned for the next time.
    let pinned = fs::read_to_string(&known).unwrap();
    assert_eq!(
        pinned,
        format!("{} {}\n", server.addr, server.fingerprint())
    );
    let pong = c.ping(Some("hi")).unwrap();
    assert!(!pong.version.is_empty());
    assert_eq!(pong.message.as_deref(), Some("hi"));
    c.register("tina", &pw()).unwrap();
    assert_eq!(c.login("tina", &pw()).unwrap(), "tina");
    // Session tickets and the like that arrive unasked do not make an
    // idle TLS connection look closed.
    assert!(!c.is_stale());
    let data = bytes(3 << 20, 7);
    assert_eq!(c.put_begin("a.bin", data.len() as u64).unwrap(), 0);
    c.write_body(&data).unwrap();
    assert_eq!(c.put_end(&md5(&data)).unwrap().md5, md5(&data));
    let ls = c.ls().unwrap();
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0].md5.as_deref(), Some(md5(&data).as_str()));
    let got = c.get_begin("a.bin", 1000).unwrap();
    let mut body = vec![0u8; (got.size - got.offset) as usize];
    c.read_body_exact(&mut body).unwrap();
    assert_eq!(body, data[1000..]);
    c.rename("a.bin", "b.bin").unwrap();
    assert_eq!(c.whoami().unwrap().files, 1);
    assert_eq!(c.put_begin("c.bin", 10).unwrap(), 0);
    drop(c);
    let mut c = Client::connect_with(&server.addr, &security(&known, None)).unwrap();
    c.login("tina", &pw()).unwrap();
    server.wait_for_log("\"put\" \"c.bin\"");
    c.discard("c.bin").unwrap();
    c.delete("b.bin").unwrap();
    assert!(c.ls().unwrap().is_empty());
    c.quit().unwrap();
}

#[test]
fn the_cli_speaks_tls_with_a_trusted_fingerprint() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let known = d.join("known");
    let known_s = known.to_str().unwrap();
    let fp = server.fingerprint();
    let run = |args: &[&str]| {
        netdisk(&server, d)
            .env("NETDISK_KNOWN_SERVERS", known_s)
            .env("NETDISK_TLS", "on")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--trust", &fp, "register"]);
    assert!(out.status.success(), "{out:?}");
    write_file(d, "x.txt", b"inside tls");
    let out = run(&["put", "x.txt"]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&["ls"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("x.txt"),
        "{out:?}"
    );
    assert!(server
        .log()
        .contains(&format!("{USER} \"put\" \"x.txt\" 10")));
}

#[test]
fn an_unknown_server_without_a_terminal_is_refused_with_the_way_to_trust_it() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_servers");
    match Client::connect_with(&server.addr, &security(&known, None)) {
        Err(ClientError::Untrusted {
            trust: Trust::Unknown { fingerprint },
            ..
        }) => assert_eq!(fingerprint, server.fingerprint()),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(!known.exists(), "nothing pinned without consent");
    let out = netdisk(&server, dir.path())
        .env("NETDISK_KNOWN_SERVERS", &known)
        .args(["--tls", "ls"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not known"), "{err}");
    assert!(
        err.contains(&format!("--trust {}", server.fingerprint())),
        "{err}"
    );
    assert!(!known.exists());
    // A wrong --trust is refused too.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let r = Client::connect_with(&server.addr, &security(&known, Some(wrong)));
    assert!(matches!(
        r,
        Err(ClientError::Untrusted {
            trust: Trust::NotTheTrusted { .. },
            ..
        })
    ));
}

#[test]
fn a_changed_certificate_is_refused_naming_the_file_and_line() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_servers");
    let other = format!("sha256:{}", "ab".repeat(32));
    fs::write(
        &known,
        format!(
            "elsewhere:1 sha256:{}\n{} {other}\n",
            "cd".repeat(32),
            server.addr
        ),
    )
    .unwrap();
    // Even a --trust of the new key does not override a pin.
    let r = Client::connect_with(&server.addr, &security(&known, Some(server.fingerprint())));
    let e = match r {
        Err(e @ ClientError::Untrusted { .. }) => e,
        other => panic!("{:?}", other.map(|_| ())),
    };
    let text = e.to_string();
    assert!(text.contains("CHANGED"), "{text}");
    assert!(
        text.contains(&format!("line 2 of {}", known.display())),
        "{text}"
    );
    assert!(text.contains(&server.fingerprint()), "{text}");
}

#[test]
fn first_contact_on_a_terminal_asks_and_pins() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = [
        ("NETDISK_SERVER", server.addr.as_str()),
        ("NETDISK_TLS", "on"),
        ("NETDISK_PASSWORD", PASSWORD),
    ];
    // Declined: nothing is pinned and nothing is sent.
    let mut pty = Pty::spawn(d, &["register", "ann"], &env);
    pty.expect(&server.fingerprint());
    pty.expect("Trust this server and connect? [y/N] ");
    pty.send("n\r");
    let (status, screen) = pty.finish();
    assert_eq!(status.code(), Some(3), "an untrusted server: {screen}");
    let known = d.join(".xdg-config/netdisk/known_servers");
    assert!(!known.exists());
    // Accepted: pinned, and the next connection asks nothing.
    let mut pty = Pty::spawn(d, &["register", "ann"], &env);
    pty.expect("Trust this server and connect? [y/N] ");
    pty.send("y\r");
    pty.expect(&format!("saved in {}", known.display()));
    pty.expect("registered ann");
    let (status, screen) = pty.finish();
    assert!(status.success(), "{screen}");
    let pinned = fs::read_to_string(&known).unwrap();
    assert_eq!(
        pinned,
        format!("{} {}\n", server.addr, server.fingerprint())
    );
    let mut pty = Pty::spawn(d, &["--user", "ann", "whoami"], &env);
    let screen = pty.expect("quota");
    assert!(!screen.contains("Trust this server"), "{screen}");
    assert!(pty.finish().0.success());
}

/// A CA, and a server certificate it signed for 127.0.0.1, as an admin
/// would get from a real CA (fullchain.pem: leaf first).
fn ca_signed_chain(dir: &Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "netdisk test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let chain = dir.join("fullchain.pem");
    fs::write(&chain, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    let key = dir.join("privkey.pem");
    fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let ca = dir.join("ca.pem");
    fs::write(&ca, ca_cert.pem()).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    (s(&chain), s(&key), s(&ca))
}

#[test]
fn a_ca_signed_chain_needs_no_pinning() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, ca) = ca_signed_chain(dir.path());
    let server = TestServer::with_args(&["--tls-cert", &chain, "--tls-key", &key]);
    let out = std::process::Command::new(bin())
        .args(["fingerprint", "--tls-cert", &chain])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tls fingerprint {}", server.fingerprint())
    );
    let known = dir.path().join("known_servers");
    let out = netdisk(&server, dir.path())
        .env("NETDISK_KNOWN_SERVERS", &known)
        .env("SSL_CERT_FILE", &ca)
        .args(["--tls", "register"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!known.exists(), "a CA-verified server is not pinned");
    // Without the CA it is an unknown server like any self-signed one.
    let empty = dir.path().join("no-roots");
    fs::create_dir(&empty).unwrap();
    let out = netdisk(&server, dir.path())
        .env("NETDISK_KNOWN_SERVERS", &known)
        .env("SSL_CERT_FILE", empty.join("none.pem"))
        .env("SSL_CERT_DIR", &empty)
        .args(["--tls", "ls"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not known"));
}

#[test]
fn plaintext_from_a_peer_that_must_use_tls_gets_tls_required() {
    let server = TestServer::with_args(&["--plaintext-from", "none"]);
    let mut raw = server.raw();
    let r = raw.call(json!({"cmd": "ping"}));
    assert_code(&r, "TLS_REQUIRED");
    assert!(closed(&mut raw));
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_servers");
    let mut c =
        Client::connect_with(&server.addr, &security(&known, Some(server.fingerprint()))).unwrap();
    c.register("pat", &Password::new("long enough pw")).unwrap();
    // Plaintext from 127.0.0.2 only.
    let server = TestServer::with_args(&["--plaintext-from", "127.0.0.2/32"]);
    let mut from_2 = server.raw_from(2);
    assert_code(&from_2.call(json!({"cmd": "whoami"})), "NOT_LOGGED_IN");
    let mut from_1 = server.raw();
    assert_code(&from_1.call(json!({"cmd": "whoami"})), "TLS_REQUIRED");
}

#[test]
fn the_fingerprint_command_prints_what_the_server_prints() {
    let server = TestServer::start();
    let mut cmd = std::process::Command::new(bin());
    match server.db_url() {
        // On PostgreSQL the certificate is the database's.
        Some(url) => cmd.args(["fingerprint", "--db", url]),
        None => cmd.args(["fingerprint", "--data"]).arg(server.data.path()),
    };
    let out = cmd.env_remove("NETDISK_DB").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tls fingerprint {}", server.fingerprint())
    );
    // The key stays private (on PostgreSQL it is the database's).
    if on_db() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(server.path("tls/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
}
