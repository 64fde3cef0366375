//! `users.xlsx` as a person sees it (issue 10), read back with openpyxl,
//! the library most Python tools open spreadsheets with: `created_at` is a
//! date, the header is bold and frozen, columns fit, and a sheet from
//! before, with Unix seconds in `created_at`, still loads.
//!
//! openpyxl is installed by `.ci/run`; if it is missing and pip cannot
//! install it, these tests say so and pass without checking.

use std::process::Command;
use std::sync::Arc;

use calamine::Data;
use serde_json::Value;

use crate::lifecycle::sheet_rows;
use crate::support::*;

/// Reads `users.xlsx` with openpyxl: per row, each cell's type and value,
/// plus the header's boldness, the frozen pane and the column widths.
const READ: &str = r#"
import json, sys, openpyxl
ws = openpyxl.load_workbook(sys.argv[1]).worksheets[0]
rows = [[{"type": type(c.value).__name__,
          "value": c.value.isoformat() if hasattr(c.value, "isoformat") else c.value,
          "format": c.number_format}
         for c in row] for row in ws.iter_rows()]
print(json.dumps({
    "rows": rows,
    "bold": [c.font.b for c in ws[1]],
    "freeze": ws.freeze_panes,
    "widths": {k: d.width for k, d in ws.column_dimensions.items()},
}))
"#;

/// Whether openpyxl can be imported, installing it with pip if need be.
fn have_openpyxl() -> bool {
    let import = || {
        Command::new("python3")
            .args(["-c", "import openpyxl"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if import() {
        return true;
    }
    let _ = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "openpyxl"])
        .output();
    if import() {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "the sheet test needs python3 with openpyxl (CI=true: not skipped; `bash .ci/run` installs it)"
    );
    eprintln!("NOTICE: sheet test skipped: python3 with openpyxl is not available and pip could not install it");
    false
}

/// What openpyxl sees in `users.xlsx`.
fn openpyxl_view(server: &TestServer) -> Value {
    let out = Command::new("python3")
        .args(["-c", READ])
        .arg(server.path("users.xlsx"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The row of `user` (its cells as openpyxl saw them).
fn row<'a>(view: &'a Value, user: &str) -> &'a Vec<Value> {
    view["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap())
        .find(|r| r[0]["value"] == user)
        .unwrap_or_else(|| panic!("no row for {user}: {view}"))
}

#[test]
fn created_at_is_a_date_and_the_sheet_reads_like_a_table() {
    if crate::support::local_only("created_at_is_a_date_and_the_sheet_reads_like_a_table") {
        return;
    }
    if !have_openpyxl() {
        return;
    }
    let server = TestServer::start();
    let before = now_utc();
    for u in ["Alice", "用户名字很长的人"] {
        server.user(u);
    }
    let view = openpyxl_view(&server);
    let header: Vec<&Value> = view["rows"][0].as_array().unwrap().iter().collect();
    let titles: Vec<&str> = header
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["user", "password_hash", "created_at", "quota_bytes"]
    );
    assert_eq!(view["bold"], serde_json::json!([true, true, true, true]));
    assert_eq!(view["freeze"], "A2", "header row frozen");

    let alice = row(&view, "Alice");
    assert_eq!(alice[2]["type"], "datetime", "{view}");
    assert_eq!(alice[2]["format"], "yyyy-mm-dd hh:mm:ss");
    // The same second as the registration, to the minute at worst.
    let created = alice[2]["value"].as_str().unwrap();
    assert!(
        created >= &before[..16] && created <= &now_utc()[..],
        "{created}"
    );

    let width = |col: &str| view["widths"][col].as_f64().unwrap_or(0.0);
    let hash_len = alice[1]["value"].as_str().unwrap().len() as f64;
    assert!(width("B") >= hash_len, "hash column {}", width("B"));
    assert!(width("C") >= 19.0, "date column {}", width("C"));
    // Eight wide characters take sixteen columns.
    assert!(width("A") >= 16.0, "user column {}", width("A"));
}

#[test]
fn a_sheet_with_unix_seconds_in_created_at_still_loads() {
    if crate::support::local_only("a_sheet_with_unix_seconds_in_created_at_still_loads") {
        return;
    }
    if !have_openpyxl() {
        return;
    }
    // A sheet as earlier versions wrote it: created_at an integer.
    let server = TestServer::start();
    server.user("old");
    let hash = sheet_rows(&server.path("users.xlsx"))[1][1].to_string();
    let mut server = server;
    assert!(server.signal("TERM").success());
    let data = Arc::clone(&server.data);
    drop(server);
    let path = data.path().join("users.xlsx");
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, title) in ["user", "password_hash", "created_at", "quota_bytes"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, c as u16, *title).unwrap();
    }
    sheet.write_string(1, 0, "old").unwrap();
    sheet.write_string(1, 1, &hash).unwrap();
    sheet.write_number(1, 2, 1_700_000_000.0).unwrap();
    book.save(&path).unwrap();
    assert!(matches!(sheet_rows(&path)[1][2], Data::Float(_)));

    // It loads: the user logs in; the next registration rewrites the
    // sheet, with the old time as a date.
    let server = TestServer::start_in(data, &[]);
    server.login("old").whoami().unwrap();
    server.user("new");
    let view = openpyxl_view(&server);
    let old = row(&view, "old");
    assert_eq!(old[2]["type"], "datetime", "{view}");
    assert_eq!(old[2]["value"], "2023-11-14T22:13:20");
    assert_eq!(row(&view, "new")[2]["type"], "datetime");
}

/// Now in UTC as openpyxl prints it: `YYYY-MM-DDTHH:MM:SS`.
fn now_utc() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import datetime; print(datetime.datetime.now(datetime.timezone.utc)\
             .replace(tzinfo=None, microsecond=0).isoformat())",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
