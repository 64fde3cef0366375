//! The server's log as an admin reads it (issue 21): `--log-format json`
//! writes one JSON object a line with the text line's fields, and each
//! piece of a web upload is a line of its own.

use serde_json::Value;

use crate::http::alice;
use crate::support::*;

/// A 12-piece web upload of `big.bin` (1,000 bytes a piece).
fn upload_in_pieces(web: &mut crate::http::Web) -> Vec<u8> {
    let data = bytes(12_000, 9);
    for (i, piece) in data.chunks(1000).enumerate() {
        let last = i == 11;
        let digest = md5(&data);
        let md5 = last.then_some(digest.as_str());
        let r = web.piece("big.bin", 12_000, i as u64 * 1000, piece, md5);
        assert!(r.status < 300, "{r:?}");
    }
    data
}

#[test]
fn r21_each_piece_of_a_web_upload_is_one_line() {
    let (server, mut web) = alice(&[]);
    upload_in_pieces(&mut web);
    let log = server.wait_for_log("\"PUT /api/uploads/big.bin @11000\"");
    let pieces: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"PUT /api/uploads/big.bin @"))
        .collect();
    assert_eq!(pieces.len(), 12, "{log}");
    assert!(!log.contains("repeated"), "{log}");
}

#[test]
fn r21_log_format_json_writes_one_object_a_line() {
    let (server, mut web) = alice(&["--log-format", "json"]);
    upload_in_pieces(&mut web);
    let mut c = server.login("alice");
    c.ls().unwrap();
    assert!(netdisk::client::Client::connect(&server.addr)
        .unwrap()
        .login(
            "alice",
            &netdisk::protocol::Password::new("wrong password!")
        )
        .is_err());
    let log = server.wait_for_log("AUTH_FAILED");
    let objects: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for o in &objects {
        let time = o["time"].as_str().unwrap_or_else(|| panic!("{o}"));
        assert!(time.ends_with('Z') && time.contains('T'), "{o}");
    }
    // The start-up lines too.
    assert!(objects.iter().any(|o| o["msg"]
        .as_str()
        .is_some_and(|m| m.starts_with("tls fingerprint "))));
    // A v1 request: the fields of its text line, by name.
    let ls = objects
        .iter()
        .find(|o| o["request"] == "ls")
        .expect("ls logged");
    assert_eq!(ls["user"], "alice");
    assert_eq!(ls["outcome"], "OK");
    assert!(
        ls["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{ls}"
    );
    assert!(ls["ms"].is_u64() && ls["bytes"].is_u64(), "{ls}");
    let failed = objects
        .iter()
        .find(|o| o["outcome"] == "AUTH_FAILED")
        .unwrap();
    assert_eq!(failed["request"], "login");
    assert_eq!(failed["name"], "alice", "{failed}");
    // An HTTP request: its status as a number too.
    let last = objects
        .iter()
        .find(|o| o["request"] == "PUT /api/uploads/big.bin @11000")
        .expect("the last piece");
    // 201: the upload is complete and stored.
    assert_eq!(last["status"], 201);
    assert_eq!(last["outcome"], "HTTP 201");
    assert_eq!(last["name"], "big.bin");
    assert_eq!(last["bytes"], 1000);
}
