//! Folders over the HTTP API (docs/HTTP.md): paths in every file URL,
//! listings with folders, `mkdir`, recursive `delete`, moves across
//! folders, resumable uploads by path, bad paths and folder/file
//! conflicts, and an upload-status GET that changes nothing.

use serde_json::{json, Value};

use crate::http::{alice, enc, Web};
use crate::support::{bytes, md5};

/// Puts `data` at `path` (URL-encoded already) in one request.
fn put(web: &mut Web, url_path: &str, data: &[u8]) -> crate::http::Resp {
    web.change("PUT", &format!("/api/files/{url_path}"), data)
}

/// Encodes each component of `path`, keeping its `/`s.
fn enc_path(path: &str) -> String {
    path.split('/').map(enc).collect::<Vec<_>>().join("/")
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// `(files, folders)` of a listing URL.
fn listed(web: &mut Web, url: &str) -> (Vec<String>, Vec<String>) {
    let r = web.get(url);
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    (names(&v["files"]), names(&v["folders"]))
}

#[test]
fn every_file_route_takes_a_path_and_listings_show_folders() {
    let (server, mut web) = alice(&[]);
    let r = web.post("/api/mkdir", &json!({"path": "报告/2024"}));
    assert_eq!((r.status, r.json()), (201, json!({})), "{r:?}");
    let deep = "报告/2024/q1 😀.pdf";
    let data = bytes(200_000, 9);
    let r = put(&mut web, &enc_path(deep), &data);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"name": deep, "size": data.len(), "md5": md5(&data)})
    );
    assert_eq!(server.stored("alice", deep).unwrap(), data);
    // A PUT whose parents are missing makes them when it commits.
    let r = put(&mut web, "new/inner/x.txt?md5=", b"");
    r.error(400, "BAD_REQUEST");
    let r = put(
        &mut web,
        &format!("new/inner/x.txt?md5={}", md5(b"x")),
        b"x",
    );
    assert_eq!(r.status, 201, "{r:?}");
    put(&mut web, "top.txt", b"top");

    assert_eq!(
        listed(&mut web, "/api/list"),
        (vec!["top.txt".into()], vec!["new".into(), "报告".into()])
    );
    assert_eq!(
        listed(&mut web, "/api/list/"),
        listed(&mut web, "/api/list")
    );
    // The old flat URL lists the root, folders included.
    assert_eq!(
        listed(&mut web, "/api/files"),
        listed(&mut web, "/api/list")
    );
    let url = format!("/api/list/{}", enc_path("报告/2024"));
    assert_eq!(listed(&mut web, &url), (vec!["q1 😀.pdf".into()], vec![]));
    let r = web.get(&format!("/api/list/{}", enc("报告")));
    let v = r.json();
    assert_eq!(names(&v["folders"]), ["2024"]);
    assert!(v["folders"][0]["mtime"].as_u64().unwrap() > 0);
    let r = web.get("/api/list?recursive=true").json();
    assert_eq!(
        names(&r["files"]),
        ["new/inner/x.txt", "top.txt", "报告/2024/q1 😀.pdf"]
    );
    assert_eq!(
        names(&r["folders"]),
        ["new", "new/inner", "报告", "报告/2024"]
    );
    assert_eq!(r["files"][2]["md5"], md5(&data));
    let r = web.get("/api/list/new?recursive=true").json();
    assert_eq!(names(&r["files"]), ["inner/x.txt"]);
    web.get("/api/list?recursive=yes").error(400, "BAD_REQUEST");
    web.get("/api/list/missing").error(404, "NOT_FOUND");
    web.get("/api/list/top.txt").error(409, "NOT_A_FOLDER");

    // Download by path: the bytes, saved under the last component.
    let r = web.get(&format!("/api/files/{}", enc_path(deep)));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert!(r
        .header("content-disposition")
        .unwrap()
        .ends_with("filename*=UTF-8''q1%20%F0%9F%98%80.pdf"));
    let r = web.call(
        "GET",
        &format!("/api/files/{}", enc_path(deep)),
        &[("Range", "bytes=100-199")],
        b"",
    );
    assert_eq!((r.status, &r.body[..]), (206, &data[100..200]));
    web.get("/api/files/new/inner/nothing")
        .error(404, "NOT_FOUND");

    // A PUT replaces the file at that path.
    let r = put(&mut web, "top.txt", b"top, again");
    assert_eq!(r.status, 201);
    assert_eq!(web.get("/api/files/top.txt").body, b"top, again");
    let r = put(&mut web, &format!("top.txt?md5={}", md5(b"other")), b"mine");
    r.error(422, "CHECKSUM_MISMATCH");
    assert_eq!(web.get("/api/files/top.txt").body, b"top, again");

    // Delete a file by path; whoami counts the tree.
    let w = web.get("/api/whoami").json();
    assert_eq!(w["files"], 3);
    assert_eq!(
        web.change("DELETE", "/api/files/new/inner/x.txt", b"")
            .status,
        200
    );
    assert!(!server.is_stored("alice", "new/inner/x.txt"));
    assert!(server.is_stored_dir("alice", "new/inner"));
}

#[test]
fn mkdir_answers_201_exists_and_makes_missing_parents() {
    let (server, mut web) = alice(&[]);
    assert_eq!(web.post("/api/mkdir", &json!({"path": "a"})).status, 201);
    web.post("/api/mkdir", &json!({"path": "a"}))
        .error(409, "EXISTS");
    // Missing parents are made, like `mkdir -p`.
    let r = web.post("/api/mkdir", &json!({"path": "x/y/z 空"}));
    assert_eq!(r.status, 201, "{r:?}");
    assert!(server.is_stored_dir("alice", "x/y/z 空"));
    // An empty folder is listed, and stays.
    assert_eq!(listed(&mut web, "/api/list/x/y").1, ["z 空"]);
    put(&mut web, "f", b"file");
    web.post("/api/mkdir", &json!({"path": "f"}))
        .error(409, "EXISTS");
    web.post("/api/mkdir", &json!({"path": "f/sub"}))
        .error(409, "NOT_A_FOLDER");
    for bad in ["", "/a", "a/", "a//b", "a/../b", "a/./b", ".hidden"] {
        web.post("/api/mkdir", &json!({"path": bad}))
            .error(400, "INVALID_NAME");
    }
    web.post("/api/mkdir", &json!({"name": "a"}))
        .error(400, "BAD_REQUEST");
    web.post("/api/mkdir", &json!({"path": 5}))
        .error(400, "BAD_REQUEST");
    // Needs the CSRF token like every change.
    let r = web.call(
        "POST",
        "/api/mkdir",
        &[("Content-Type", "application/json")],
        br#"{"path":"b"}"#,
    );
    r.error(403, "BAD_REQUEST");
    assert!(!server.is_stored("alice", "b"));
}

#[test]
fn folders_delete_empty_refuse_full_and_go_whole_with_recursive() {
    let (server, mut web) = alice(&[]);
    web.post("/api/mkdir", &json!({"path": "empty"}));
    for i in 0..20 {
        put(&mut web, &format!("tree/sub{}/f{i}", i % 4), &[b'x'; 100]);
    }
    assert_eq!(web.get("/api/whoami").json()["used"], 2000);
    assert_eq!(web.change("DELETE", "/api/files/empty", b"").status, 200);
    assert!(!server.is_stored("alice", "empty"));
    web.change("DELETE", "/api/files/tree", b"")
        .error(409, "NOT_EMPTY");
    web.change("DELETE", "/api/files/tree?recursive=1", b"")
        .error(400, "BAD_REQUEST");
    let r = web.change("DELETE", "/api/files/tree?recursive=false", b"");
    r.error(409, "NOT_EMPTY");
    let r = web.change("DELETE", "/api/files/tree?recursive=true", b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!server.is_stored("alice", "tree"));
    let w = web.get("/api/whoami").json();
    assert_eq!(
        (w["files"].clone(), w["used"].clone()),
        (json!(0), json!(0))
    );
    web.change("DELETE", "/api/files/tree?recursive=true", b"")
        .error(404, "NOT_FOUND");
    assert_eq!(listed(&mut web, "/api/list"), (vec![], vec![]));
}

#[test]
fn rename_moves_files_and_folders_across_folders() {
    let (server, mut web) = alice(&[]);
    put(&mut web, &enc_path("inbox/photo 照片.jpg"), b"jpeg");
    put(&mut web, "inbox/deep/a.txt", b"a");
    web.post("/api/mkdir", &json!({"path": "archive/2024"}));
    let r = web.post(
        "/api/rename",
        &json!({"from": "inbox/photo 照片.jpg", "to": "archive/2024/photo 照片.jpg"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        server
            .stored("alice", "archive/2024/photo 照片.jpg")
            .unwrap(),
        b"jpeg"
    );
    let r = web.get("/api/list/archive/2024").json();
    assert_eq!(r["files"][0]["md5"], md5(b"jpeg"));
    // A folder moves with what it holds.
    let r = web.post(
        "/api/rename",
        &json!({"from": "inbox/deep", "to": "archive/deep"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(web.get("/api/files/archive/deep/a.txt").body, b"a");
    assert!(!server.is_stored("alice", "inbox/deep"));
    // Into itself, onto something, into nowhere, through a file.
    web.post(
        "/api/rename",
        &json!({"from": "archive", "to": "archive/2024/x"}),
    )
    .error(400, "BAD_REQUEST");
    web.post("/api/rename", &json!({"from": "inbox", "to": "archive"}))
        .error(409, "EXISTS");
    web.post(
        "/api/rename",
        &json!({"from": "inbox", "to": "no/such/inbox"}),
    )
    .error(404, "NOT_FOUND");
    web.post(
        "/api/rename",
        &json!({"from": "inbox", "to": "archive/2024/photo 照片.jpg/inbox"}),
    )
    .error(409, "NOT_A_FOLDER");
    web.post("/api/rename", &json!({"from": "inbox", "to": "../inbox"}))
        .error(400, "INVALID_NAME");
}

#[test]
fn nested_uploads_go_in_pieces_and_status_is_read_only() {
    let (server, mut web) = alice(&[]);
    let path = "项目/src/main 😀.bin";
    let url = enc_path(path);
    let data = bytes(1_500_000, 4);
    let size = data.len() as u64;
    let staged_count = || server.staged_count("alice");

    // Asking where to continue makes nothing: no record, no folder, no claim.
    let r = web.get(&format!("/api/uploads/{url}?size={size}"));
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"offset": 0, "size": size}))
    );
    assert_eq!(staged_count(), 0);
    assert!(!server.is_stored("alice", "项目"));
    assert_eq!(web.get("/api/whoami").json()["staged"], 0);
    let mut v1 = server.login("alice");
    assert_eq!(v1.put_begin(path, size).unwrap(), 0, "GET left no lock");
    drop(v1);
    // ...but v1's begin staged a record, as POST does; status reads it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = web.get(&format!("/api/uploads/{url}?size={size}"));
        if r.status == 200 {
            assert_eq!(r.json()["offset"], 0);
            break;
        }
        r.error(423, "LOCKED");
        assert!(std::time::Instant::now() < deadline, "stayed LOCKED");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    web.change("DELETE", &format!("/api/uploads/{url}"), b"");
    assert_eq!(staged_count(), 0);

    // POST begins: a record, no folder yet.
    let r = web.change("POST", &format!("/api/uploads/{url}?size={size}"), b"");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"offset": 0, "size": size}))
    );
    assert!(staged_count() > 0);
    assert!(!server.is_stored("alice", "项目"), "parents come at commit");
    let piece = |web: &mut Web, offset: u64, end: usize, md5: Option<&str>| {
        let mut u = format!("/api/uploads/{url}?size={size}&offset={offset}");
        if let Some(d) = md5 {
            u.push_str(&format!("&md5={d}"));
        }
        web.change("PUT", &u, &data[offset as usize..end])
    };
    let r = piece(&mut web, 0, 600_000, None);
    assert_eq!(r.json(), json!({"offset": 600_000, "size": size}));
    let r = web.get(&format!("/api/uploads/{url}?size={size}"));
    assert_eq!(r.json()["offset"], 600_000);
    // Another size: status says 0 and leaves the staged bytes alone.
    let r = web.get(&format!("/api/uploads/{url}?size=7"));
    assert_eq!(r.json()["offset"], 0);
    let r = web.get(&format!("/api/uploads/{url}?size={size}"));
    assert_eq!(r.json()["offset"], 600_000);
    let r = piece(&mut web, 600_000, data.len(), Some(&md5(&data)));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["name"], path);
    assert_eq!(server.stored("alice", path).unwrap(), data);
    assert_eq!(web.get(&format!("/api/files/{url}")).body, data);
    assert_eq!(staged_count(), 0);

    web.get(&format!("/api/uploads/{url}"))
        .error(400, "BAD_REQUEST");
    // Status of a folder, or through a file.
    web.get("/api/uploads/%E9%A1%B9%E7%9B%AE?size=1")
        .error(409, "IS_A_FOLDER");
    web.get(&format!("/api/uploads/{url}/x?size=1"))
        .error(409, "NOT_A_FOLDER");
}

#[test]
fn bad_paths_are_400_with_a_message_and_nothing_is_touched() {
    let (server, mut web) = alice(&[]);
    put(&mut web, "a/b", b"ok");
    let bad = [
        "%2Fa",
        "/a",
        "a/",
        "a//b",
        "a/./b",
        "a/../b",
        "..",
        "%2e%2e",
        "a/%2e%2e/b",
        "%2E%2E/%2E%2E/etc/passwd",
        "a%2Fb",
        "a%2fb",
        "a%5Cb",
        ".a/b",
        "a/%00",
        "%FF/a",
        "",
    ];
    for p in bad {
        for (method, url) in [
            ("GET", format!("/api/files/{p}")),
            ("HEAD", format!("/api/files/{p}")),
            ("PUT", format!("/api/files/{p}")),
            ("DELETE", format!("/api/files/{p}?recursive=true")),
            ("GET", format!("/api/uploads/{p}?size=1")),
            ("POST", format!("/api/uploads/{p}?size=1")),
            ("PUT", format!("/api/uploads/{p}?size=1&offset=0")),
            ("DELETE", format!("/api/uploads/{p}")),
        ] {
            let r = web.change(method, &url, if method == "PUT" { b"x" } else { b"" });
            assert_eq!(r.status, 400, "{method} {url}: {r:?}");
            if method != "HEAD" {
                assert_eq!(r.json()["error"], "INVALID_NAME", "{method} {url}");
                let m = r.json()["message"].as_str().unwrap().to_string();
                assert!(!m.is_empty(), "{method} {url}");
            }
        }
        if !p.is_empty() {
            web.get(&format!("/api/list/{p}"))
                .error(400, "INVALID_NAME");
        }
    }
    let r = web.get("/api/files/a%2Fb");
    assert!(
        r.json()["message"].as_str().unwrap().contains("%2F"),
        "{r:?}"
    );
    let deep = vec!["d"; 33].join("/");
    put(&mut web, &deep, b"x").error(400, "INVALID_NAME");
    let long = vec!["x".repeat(255); 5].join("/");
    put(&mut web, &long, b"x").error(400, "INVALID_NAME");
    let name = "n".repeat(256);
    put(&mut web, &name, b"x").error(400, "INVALID_NAME");
    // The limits themselves are fine: 32 components, 255-byte components.
    let ok32 = vec!["d"; 32].join("/");
    assert_eq!(put(&mut web, &ok32, b"x").status, 201);
    let ok255 = format!("{}/{}", "x".repeat(255), "报".repeat(85));
    assert_eq!(put(&mut web, &enc_path(&ok255), b"x").status, 201);
    // Nothing outside the tree was made.
    let top = server.stored_names("alice", "");
    assert_eq!(top, ["a", "d", "x".repeat(255).as_str()]);
    assert_eq!(web.get("/api/files/a/b").body, b"ok");
}

#[test]
fn folders_and_files_in_each_others_place_are_409() {
    let (server, mut web) = alice(&[]);
    put(&mut web, "dir/inside", b"in");
    put(&mut web, "file", b"f");
    // A folder where a file is wanted.
    web.get("/api/files/dir").error(409, "IS_A_FOLDER");
    put(&mut web, "dir", b"x").error(409, "IS_A_FOLDER");
    web.change("POST", "/api/uploads/dir?size=1", b"")
        .error(409, "IS_A_FOLDER");
    web.change("PUT", "/api/uploads/dir?size=1&offset=0", b"x")
        .error(409, "IS_A_FOLDER");
    // A file where a folder is wanted.
    web.get("/api/files/file/x").error(409, "NOT_A_FOLDER");
    put(&mut web, "file/x", b"x").error(409, "NOT_A_FOLDER");
    web.change("POST", "/api/uploads/file/x?size=1", b"")
        .error(409, "NOT_A_FOLDER");
    web.change("DELETE", "/api/files/file/x", b"")
        .error(409, "NOT_A_FOLDER");
    web.get("/api/list/file").error(409, "NOT_A_FOLDER");
    web.change("DELETE", "/api/files/dir", b"")
        .error(409, "NOT_EMPTY");
    // Nothing changed.
    assert_eq!(server.stored("alice", "file").unwrap(), b"f");
    assert_eq!(server.stored("alice", "dir/inside").unwrap(), b"in");
    assert_eq!(server.staged_count("alice"), 0);
}
