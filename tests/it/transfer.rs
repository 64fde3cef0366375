//! Uploads and downloads (PROTOCOL.md, "Upload" and "Download"): resuming,
//! verifying, atomic replacement, locking, offsets, large sizes and quotas.

use std::net::Shutdown;

use netdisk::error::ErrorCode;
use serde_json::json;

use crate::protocol::{closed, code, get_all, put_all, raw_login};
use crate::support::*;

/// Starts a `put` of `size` bytes on a fresh connection, sends `part`, then
/// closes its sending side and waits until the server has closed too: by
/// then the server has staged every byte and released the name.
/// Returns the offset the server asked for.
pub fn put_part_and_hang_up(
    server: &TestServer,
    user: &str,
    name: &str,
    size: u64,
    part: &[u8],
) -> u64 {
    let mut raw = raw_login(server, user);
    let r = raw.call(json!({"cmd": "put", "name": name, "size": size}));
    let offset = r["offset"].as_u64().unwrap_or_else(|| panic!("{r}"));
    raw.send_bytes(part);
    raw.stream.shutdown(Shutdown::Write).unwrap();
    assert!(closed(&mut raw));
    offset
}

#[test]
fn an_interrupted_upload_resumes_where_it_stopped() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    let data = bytes(1 << 20, 1);
    let size = data.len() as u64;
    assert_eq!(
        put_part_and_hang_up(&server, "alice", "big", size, &data[..300_000]),
        0
    );
    // Staged bytes are neither listed nor counted.
    assert!(c.ls().unwrap().is_empty());
    assert_eq!(c.whoami().unwrap().used, 0);
    assert_eq!(
        put_part_and_hang_up(&server, "alice", "big", size, &data[300_000..700_000]),
        300_000
    );
    let off = c.put_begin("big", size).unwrap();
    assert_eq!(off, 700_000);
    c.write_body(&data[700_000..]).unwrap();
    assert_eq!(c.put_end(&md5(&data)).unwrap().md5, md5(&data));
    assert_eq!(get_all(&mut c, "big"), data);
    // Done: the next upload of that name starts afresh.
    assert_eq!(c.put_begin("big", size).unwrap(), 0);
}

#[test]
fn a_different_size_starts_over() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    let data = bytes(10_000, 2);
    put_part_and_hang_up(&server, "alice", "f", 10_000, &data[..4000]);
    // Another name, or another size, does not resume those bytes.
    assert_eq!(c.put_begin("g", 10_000).unwrap(), 0);
    drop(c);
    let mut c = server.login("alice");
    put_all(&mut c, "f", &data[..9000]);
    assert_eq!(get_all(&mut c, "f"), &data[..9000]);
}

#[test]
fn a_bad_step_four_keeps_the_staged_bytes() {
    let server = TestServer::start();
    server.user("alice");
    let data = bytes(50_000, 3);
    let mut raw = raw_login(&server, "alice");
    for garbage in [
        json!({"md5": "5D41402ABC4B2A76B9719D911017C592"}),
        json!({"md5": "5d41402abc4b2a76b9719d911017c59"}),
        json!({"md5": 5}),
        json!({"md5": null}),
        json!({"cmd": "ls"}),
        json!({}),
    ] {
        let r = raw.call(json!({"cmd": "put", "name": "f", "size": 50_000}));
        let offset = r["offset"].as_u64().unwrap();
        raw.send_bytes(&data[offset as usize..]);
        let r = raw.call(garbage.clone());
        assert_code(&r, "BAD_REQUEST");
        // The connection is still in step, and the retry has everything.
        let r = raw.call(json!({"cmd": "ls"}));
        assert_eq!(
            r,
            json!({"ok": true, "files": [], "folders": []}),
            "after {garbage}"
        );
    }
    let r = raw.call(json!({"cmd": "put", "name": "f", "size": 50_000}));
    assert_eq!(r, json!({"ok": true, "offset": 50_000}));
    let r = raw.call(json!({"md5": md5(&data)}));
    assert_eq!(r["md5"], md5(&data).as_str(), "{r}");
    let mut c = server.login("alice");
    assert_eq!(get_all(&mut c, "f"), data);
}

#[test]
fn a_checksum_mismatch_keeps_the_old_file() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    let old = bytes(20_000, 4);
    put_all(&mut c, "f", &old);
    let new = bytes(20_000, 5);
    assert_eq!(c.put_begin("f", 20_000).unwrap(), 0);
    c.write_body(&new).unwrap();
    assert_eq!(code(c.put_end(&md5(&old))), ErrorCode::ChecksumMismatch);
    assert_eq!(get_all(&mut c, "f"), old);
    let ls = c.ls().unwrap();
    assert_eq!(ls[0].md5.as_deref(), Some(md5(&old).as_str()));
    // The staged data was discarded.
    assert_eq!(c.put_begin("f", 20_000).unwrap(), 0);
    c.write_body(&new).unwrap();
    c.put_end(&md5(&new)).unwrap();
    assert_eq!(get_all(&mut c, "f"), new);
}

#[test]
fn a_resumed_upload_with_a_mismatch_restarts_from_zero() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    let data = bytes(100_000, 6);
    // The first attempt sent bytes that the file does not have.
    let corrupt = bytes(40_000, 7);
    put_part_and_hang_up(&server, "alice", "f", 100_000, &corrupt);
    assert_eq!(c.put_begin("f", 100_000).unwrap(), 40_000);
    c.write_body(&data[40_000..]).unwrap();
    assert_eq!(code(c.put_end(&md5(&data))), ErrorCode::ChecksumMismatch);
    assert!(c.ls().unwrap().is_empty());
    // The retry from the start succeeds.
    assert_eq!(c.put_begin("f", 100_000).unwrap(), 0);
    c.write_body(&data).unwrap();
    c.put_end(&md5(&data)).unwrap();
    assert_eq!(get_all(&mut c, "f"), data);
}

#[test]
fn downloads_start_at_any_offset() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    let data = bytes(300_000, 8);
    put_all(&mut c, "f", &data);
    for offset in [0, 1, 65_536, 299_999, 300_000] {
        let ans = c.get_begin("f", offset).unwrap();
        assert_eq!((ans.size, ans.offset), (300_000, offset));
        assert_eq!(ans.md5, md5(&data));
        let mut rest = vec![0u8; (ans.size - offset) as usize];
        c.read_body_exact(&mut rest).unwrap();
        // The client's check: kept prefix + received bytes.
        let mut whole = data[..offset as usize].to_vec();
        whole.extend_from_slice(&rest);
        assert_eq!(md5(&whole), ans.md5);
    }
    assert_eq!(code(c.get_begin("f", 300_001)), ErrorCode::BadRequest);
    assert_eq!(code(c.get_begin("f", u64::MAX)), ErrorCode::BadRequest);
    // Absent and null offsets mean 0.
    let mut raw = raw_login(&server, "alice");
    for h in [
        json!({"cmd": "get", "name": "f"}),
        json!({"cmd": "get", "name": "f", "offset": null}),
    ] {
        let r = raw.call(h);
        let want =
            json!({"ok": true, "name": "f", "size": 300_000, "offset": 0, "md5": md5(&data)});
        assert_eq!(r, want);
        assert_eq!(raw.recv_body(data.len()), data);
    }
    // In step after all that.
    assert_eq!(raw.call(json!({"cmd": "whoami"}))["files"], 1);
}

#[test]
fn an_empty_file_round_trips() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    put_all(&mut c, "empty", b"");
    let ls = c.ls().unwrap();
    assert_eq!(
        (ls[0].size, ls[0].md5.as_deref()),
        (0, Some(md5(b"").as_str()))
    );
    assert_eq!(get_all(&mut c, "empty"), b"");
    let ans = c.get_begin("empty", 0).unwrap();
    assert_eq!(ans.size, 0);
    assert_eq!(code(c.get_begin("empty", 1)), ErrorCode::BadRequest);
}

#[test]
fn files_placed_by_other_means_get_their_md5_on_first_get() {
    if local_only("files_placed_by_other_means_get_their_md5_on_first_get") {
        return;
    }
    let server = TestServer::start();
    let mut c = server.user("alice");
    let data = bytes(70_000, 9);
    write_file(&server.user_files("alice"), "dropped", &data);
    let ls = c.ls().unwrap();
    assert_eq!((ls[0].name.as_str(), ls[0].size), ("dropped", 70_000));
    assert_eq!(ls[0].md5, None);
    assert_eq!(c.whoami().unwrap().used, 70_000);
    // A ranged get still announces the digest of the whole file.
    let ans = c.get_begin("dropped", 69_000).unwrap();
    assert_eq!(ans.md5, md5(&data));
    let mut tail = vec![0u8; 1000];
    c.read_body_exact(&mut tail).unwrap();
    assert_eq!(tail, &data[69_000..]);
    assert_eq!(c.ls().unwrap()[0].md5.as_deref(), Some(md5(&data).as_str()));
    // Changed by other means again: the old digest is not trusted.
    let changed = bytes(70_001, 10);
    write_file(&server.user_files("alice"), "dropped", &changed);
    let ls = c.ls().unwrap();
    assert_ne!(ls[0].md5.as_deref(), Some(md5(&data).as_str()));
    assert_eq!(get_all(&mut c, "dropped"), changed);
}

#[test]
fn a_second_uploader_of_a_name_is_locked_out() {
    let server = TestServer::start();
    let mut a = server.user("alice");
    let mut b = server.login("alice");
    let mut other = server.user("bob");
    assert_eq!(a.put_begin("f", 4).unwrap(), 0);
    assert_eq!(code(b.put_begin("f", 4)), ErrorCode::Locked);
    assert_eq!(code(b.put_begin("f", 99)), ErrorCode::Locked);
    // Other names, and other users' folders, are free.
    put_all(&mut b, "g", b"gggg");
    put_all(&mut other, "f", b"bobs");
    a.write_body(b"aaaa").unwrap();
    a.put_end(&md5(b"aaaa")).unwrap();
    // Released once the first upload is done.
    put_all(&mut b, "f", b"bbbb");
    assert_eq!(get_all(&mut a, "f"), b"bbbb");
    assert_eq!(get_all(&mut other, "f"), b"bobs");
}

#[test]
fn readers_see_the_old_file_until_the_new_one_is_verified() {
    let server = TestServer::start();
    let mut writer = server.user("alice");
    let mut reader = server.login("alice");
    let old = bytes(200_000, 11);
    let new = bytes(200_000, 12);
    put_all(&mut writer, "f", &old);
    assert_eq!(writer.put_begin("f", 200_000).unwrap(), 0);
    writer.write_body(&new[..100_000]).unwrap();
    assert_eq!(get_all(&mut reader, "f"), old);
    writer.write_body(&new[100_000..]).unwrap();
    // Until step 5 has been answered, readers still get the old bytes.
    assert_eq!(get_all(&mut reader, "f"), old);
    writer.put_end(&md5(&new)).unwrap();
    assert_eq!(get_all(&mut reader, "f"), new);
}

/// Sizes are u64: above 4 GiB works in the header, the offset reply and
/// resumption. (The transfer itself is not sent: it would be 5 GiB.)
#[test]
fn sizes_above_four_gib_are_accepted() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    let size: u64 = 5 << 30;
    let head = bytes(4096, 13);
    assert_eq!(
        put_part_and_hang_up(&server, "alice", "huge", size, &head),
        0
    );
    assert_eq!(
        put_part_and_hang_up(&server, "alice", "huge", size, &head),
        4096
    );
    // Same low 32 bits, different size: not the same upload.
    assert_eq!(
        put_part_and_hang_up(&server, "alice", "huge", size + (1 << 32), &[]),
        0
    );
    assert!(c.ls().unwrap().is_empty());
    assert_eq!(c.whoami().unwrap().used, 0);
}

#[test]
fn the_quota_flag_is_enforced_before_any_body() {
    let server = TestServer::with_args(&["--quota", "1000"]);
    let mut c = server.user("alice");
    assert_eq!(c.whoami().unwrap().quota, Some(1000));
    // Refused at step 2: no body is sent, and the connection stays in step.
    assert_eq!(code(c.put_begin("big", 1001)), ErrorCode::QuotaExceeded);
    assert_eq!(code(c.put_begin("big", u64::MAX)), ErrorCode::QuotaExceeded);
    put_all(&mut c, "a", &bytes(600, 1));
    assert_eq!(code(c.put_begin("b", 401)), ErrorCode::QuotaExceeded);
    put_all(&mut c, "b", &bytes(400, 2));
    assert_eq!(c.whoami().unwrap().used, 1000);
    assert_eq!(code(c.put_begin("c", 1)), ErrorCode::QuotaExceeded);
    // Replacing a file counts only the difference.
    put_all(&mut c, "a", &bytes(600, 3));
    assert_eq!(code(c.put_begin("a", 601)), ErrorCode::QuotaExceeded);
    c.delete("b").unwrap();
    put_all(&mut c, "a", &bytes(1000, 4));
    put_all(&mut c, "c", b"");
    assert_eq!(get_all(&mut c, "a"), bytes(1000, 4));
}

/// Two uploads in flight at once must not add up to more than the quota.
#[test]
fn uploads_in_flight_count_against_the_quota() {
    let server = TestServer::with_args(&["--quota", "100"]);
    let mut a = server.user("alice");
    let mut b = server.login("alice");
    assert_eq!(a.put_begin("a", 60).unwrap(), 0);
    assert_eq!(code(b.put_begin("b", 60)), ErrorCode::QuotaExceeded);
    assert_eq!(b.put_begin("b", 40).unwrap(), 0);
    b.write_body(&[2; 40]).unwrap();
    b.put_end(&md5(&[2; 40])).unwrap();
    a.write_body(&[1; 60]).unwrap();
    a.put_end(&md5(&[1; 60])).unwrap();
    assert_eq!(a.whoami().unwrap().used, 100);
    assert_eq!(code(a.put_begin("c", 1)), ErrorCode::QuotaExceeded);
    a.delete("a").unwrap();
    // An abandoned upload keeps its share (PROTOCOL.md: in flight or
    // abandoned) until it is discarded.
    assert_eq!(put_part_and_hang_up(&server, "alice", "c", 60, &[]), 0);
    assert_eq!(code(b.put_begin("d", 60)), ErrorCode::QuotaExceeded);
    b.discard("c").unwrap();
    put_all(&mut b, "d", &[4; 60]);
    let ls = b.ls().unwrap();
    assert_eq!(
        ls.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["b", "d"]
    );
}

#[test]
fn a_disk_error_mid_body_is_internal_and_keeps_the_connection() {
    if local_bytes_only("a_disk_error_mid_body_is_internal_and_keeps_the_connection") {
        return;
    }
    // Writes past 1 MiB fail (EFBIG: the file size limit, in 512- or
    // 1024-byte blocks depending on the shell), as a full disk would make
    // them; SIGXFSZ is ignored so that the write fails instead of killing.
    let server = TestServer::start_under_shell("trap '' XFSZ; ulimit -f 1024", &[]);
    let mut c = server.user("alice");
    put_all(&mut c, "keep", b"old contents");
    // The accounts' sheet (the local engine's) is not rewritten either.
    let users_before = (!on_db()).then(|| std::fs::read(server.path("users.xlsx")).unwrap());
    let data = bytes(8 << 20, 7);
    assert_eq!(c.put_begin("keep", data.len() as u64).unwrap(), 0);
    // The whole body goes out: the server reads it even after the disk
    // failed, so the error arrives as the answer to step 4.
    c.write_body(&data).unwrap();
    let err = c.put_end(&md5(&data)).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Internal), "{err}");
    assert!(!err.to_string().contains('/'), "no paths: {err}");
    // Same connection, still in step; nothing visible changed.
    assert_eq!(get_all(&mut c, "keep"), b"old contents");
    assert_eq!(c.ls().unwrap().len(), 1);
    if let Some(before) = users_before {
        assert_eq!(std::fs::read(server.path("users.xlsx")).unwrap(), before);
    }
    // A smaller file still fits.
    put_all(&mut c, "small", b"fits");
    assert!(server.log().contains("INTERNAL"), "{}", server.log());
}

#[test]
fn sizes_and_offsets_past_four_gib_on_get_ls_and_whoami() {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;
    if local_bytes_only("sizes_and_offsets_past_four_gib_on_get_ls_and_whoami") {
        return;
    }

    let server = TestServer::start();
    let mut c = server.user("alice");
    // A sparse file of 5 GiB placed by other means, with a known tail.
    let size: u64 = (5 << 30) + 7;
    let tail = b"0123456789";
    let recorded = "0123456789abcdef0123456789abcdef";
    let sparse = |path: &std::path::Path| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::File::create(path).unwrap();
        f.seek(SeekFrom::Start(size - tail.len() as u64)).unwrap();
        f.write_all(tail).unwrap();
    };
    match server.db_url() {
        None => {
            let path = server.user_files("alice").join("sparse");
            sparse(&path);
            // The first get would hash all 5 GiB; a digest record like the
            // one the server keeps for files it stored spares the test that.
            let meta = std::fs::metadata(&path).unwrap();
            let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
            std::fs::write(
                server.path(&format!("users/alice/digests/{}", meta.ino())),
                format!("{size} {mtime_ns} {recorded}\n"),
            )
            .unwrap();
        }
        Some(url) => {
            // The blob and the row (with its digest) an upload would leave.
            let blob = "5a".repeat(16);
            sparse(&server.path(&format!("blobs/5a/{blob}")));
            let mut pg = postgres::Client::connect(url, postgres::NoTls).unwrap();
            let signed = i64::try_from(size).unwrap();
            pg.execute(
                "INSERT INTO nodes (account, path, parent, is_dir, size, mtime, md5, blob)
                 SELECT id, 'sparse', '', false, $2, 0, $3, $4 FROM accounts WHERE key = $1",
                &[&"alice", &signed, &recorded, &blob],
            )
            .unwrap();
            pg.execute(
                "UPDATE accounts SET used_files = 1, used_bytes = $2 WHERE key = $1",
                &[&"alice", &signed],
            )
            .unwrap();
        }
    }

    let ls = c.ls().unwrap();
    assert_eq!((ls[0].size, ls[0].md5.as_deref()), (size, Some(recorded)));
    assert_eq!(c.whoami().unwrap().used, size);
    let from = size - tail.len() as u64;
    let ans = c.get_begin("sparse", from).unwrap();
    assert_eq!(
        (ans.size, ans.offset, ans.md5.as_str()),
        (size, from, recorded)
    );
    let mut got = [0u8; 10];
    c.read_body_exact(&mut got).unwrap();
    assert_eq!(&got, tail);
    let err = c.get_begin("sparse", size + 1).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    // A rename keeps the record: no hashing after it either.
    c.rename("sparse", "moved").unwrap();
    assert_eq!(c.ls().unwrap()[0].md5.as_deref(), Some(recorded));
}
