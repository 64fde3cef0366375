//! The `users.xlsx` sheet: its columns, reading it, rewriting it.
//!
//! The sheet has a header row `user | password_hash | created_at |
//! quota_bytes` and one row per user. It is read once at start (calamine),
//! so an admin's edits made while the server is stopped take effect on the
//! next start, and rewritten whole on each registration (rust_xlsxwriter):
//! temp file in the same folder, fsync, rename, fsync the folder, so a crash
//! leaves the old file or the new one, never a broken one.
//!
//! The sheet is for people too: a bold header row that stays in view,
//! columns as wide as what they hold, and `created_at` as a date-time cell
//! (UTC, `yyyy-mm-dd hh:mm:ss`). Sheets from before hold Unix seconds in
//! `created_at`; those still load, and the next rewrite turns them into
//! dates.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::PasswordHash;
use calamine::{Data, ExcelDateTime, Reader, Xlsx};
use rust_xlsxwriter::{Format, Workbook};

use super::User;
use crate::error::Error;
use crate::names;

/// The sheet's header row, in column order.
pub const COLUMNS: [&str; 4] = ["user", "password_hash", "created_at", "quota_bytes"];

/// How `created_at` is shown.
const DATE_FORMAT: &str = "yyyy-mm-dd hh:mm:ss";

/// Reads every account in the sheet.
///
/// The next registration rewrites the file from what this returns, so a row
/// it skipped would be deleted then. It therefore refuses any row that is
/// not completely empty and does not hold a valid account, naming the row
/// as a spreadsheet shows it and the problem, so an admin can fix it.
pub(super) fn read_sheet(path: &Path) -> Result<Vec<User>, Error> {
    let bad = |e: &dyn fmt::Display| Error::Internal(format!("{}: {e}", path.display()));
    let mut book: Xlsx<_> = calamine::open_workbook(path).map_err(|e| bad(&e))?;
    let range = match book.worksheet_range_at(0) {
        Some(r) => r.map_err(|e| bad(&e))?,
        None => return Ok(Vec::new()),
    };
    // The range starts at the first used cell, not necessarily at row 1.
    let first_row = range.start().map_or(0, |(r, _)| r as usize);
    let mut users = Vec::new();
    // Canonical name → row number, to name both rows of a duplicate.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, row) in range.rows().enumerate() {
        let n = first_row + i + 1;
        let bad_row = |problem: String| bad(&format!("row {n}: {problem}"));
        let cell = |c: usize| row.get(c).unwrap_or(&Data::Empty);
        if i == 0 && cell_text(cell(0)).as_deref() == Some(COLUMNS[0]) {
            continue;
        }
        if row.iter().all(is_blank) {
            continue;
        }
        let Some(name) = cell_text(cell(0)) else {
            return Err(bad_row("the user cell is empty or not text".into()));
        };
        let key = names::canonical_user(&name).map_err(|e| {
            let why = match e {
                Error::InvalidName(why) => why.to_string(),
                other => other.to_string(),
            };
            bad_row(format!("user name {name:?} is not valid: {why}"))
        })?;
        let Some(password_hash) = cell_text(cell(1)) else {
            return Err(bad_row(format!("user {name:?} has no password_hash")));
        };
        if PasswordHash::new(&password_hash).is_err() {
            return Err(bad_row(format!(
                "user {name:?}: password_hash is not a PHC hash string"
            )));
        }
        let quota = cell_u64(cell(3));
        if quota.is_none() && !is_blank(cell(3)) {
            return Err(bad_row(format!(
                "user {name:?}: quota_bytes {} is not a whole number of bytes",
                cell(3)
            )));
        }
        if let Some(&other) = seen.get(&key) {
            return Err(bad_row(format!(
                "user {name:?} is the same user as row {other} \
                 (names are compared after NFC normalisation and lowercasing)"
            )));
        }
        // Blank: not known (0); anything else must be a date (or Unix
        // seconds, as older sheets have).
        let created_at = if is_blank(cell(2)) {
            0
        } else {
            cell_time(cell(2)).ok_or_else(|| {
                bad_row(format!(
                    "user {name:?}: created_at {} is not a date",
                    cell(2)
                ))
            })?
        };
        seen.insert(key.clone(), n);
        users.push(User {
            name,
            key,
            password_hash,
            created_at,
            quota,
        });
    }
    Ok(users)
}

fn is_blank(d: &Data) -> bool {
    match d {
        Data::Empty => true,
        Data::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn cell_text(d: &Data) -> Option<String> {
    match d {
        Data::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Data::Int(i) => Some(i.to_string()),
        Data::Float(f) if f.fract() == 0.0 => Some(format!("{f:.0}")),
        _ => None,
    }
}

fn cell_u64(d: &Data) -> Option<u64> {
    match d {
        Data::Int(i) => u64::try_from(*i).ok(),
        Data::Float(f) if *f >= 0.0 && f.fract() == 0.0 && *f < 1.9e19 => Some(*f as u64),
        Data::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A time as Unix seconds: a date-time cell (what this module writes, and
/// what a spreadsheet makes of a typed date), or Unix seconds as a number
/// (older sheets).
fn cell_time(d: &Data) -> Option<u64> {
    match d {
        Data::DateTime(t) => excel_to_unix(t),
        other => cell_u64(other),
    }
}

/// A spreadsheet date-time (UTC, either epoch) as Unix seconds, rounded
/// to the second; `None` before 1970.
fn excel_to_unix(t: &ExcelDateTime) -> Option<u64> {
    let (y, m, d, hh, mm, ss, milli) = t.to_ymd_hms_milli();
    let days = days_from_civil(i64::from(y), u32::from(m), u32::from(d));
    let secs = days * 86_400
        + i64::from(hh) * 3600
        + i64::from(mm) * 60
        + i64::from(ss)
        + i64::from(milli >= 500);
    u64::try_from(secs).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Rewrites the sheet atomically: temp file beside it, fsync, rename, fsync dir.
pub(super) fn write_sheet(path: &Path, users: &[Arc<User>]) -> Result<(), Error> {
    let xerr = |e: rust_xlsxwriter::XlsxError| Error::Internal(format!("xlsx: {e}"));
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("users").map_err(xerr)?;
    let bold = Format::new().set_bold();
    let date = Format::new().set_num_format(DATE_FORMAT);
    // Characters per column, to size each to what it holds.
    let mut widths = COLUMNS.map(|c| c.chars().count());
    for (c, title) in COLUMNS.iter().enumerate() {
        sheet
            .write_string_with_format(0, c as u16, *title, &bold)
            .map_err(xerr)?;
    }
    sheet.set_freeze_panes(1, 0).map_err(xerr)?;
    widths[2] = widths[2].max(DATE_FORMAT.len());
    for (i, u) in users.iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, &u.name).map_err(xerr)?;
        sheet.write_string(r, 1, &u.password_hash).map_err(xerr)?;
        // Seconds past Excel's last year (9999) stay a number.
        match rust_xlsxwriter::ExcelDateTime::from_timestamp(
            i64::try_from(u.created_at).unwrap_or(i64::MAX),
        ) {
            Ok(t) => sheet.write_datetime_with_format(r, 2, &t, &date),
            Err(_) => sheet.write_number(r, 2, u.created_at as f64),
        }
        .map_err(xerr)?;
        if let Some(q) = u.quota {
            sheet.write_number(r, 3, q as f64).map_err(xerr)?;
            widths[3] = widths[3].max(q.to_string().len());
        }
        widths[0] = widths[0].max(display_width(&u.name));
        widths[1] = widths[1].max(u.password_hash.len());
    }
    for (c, w) in widths.iter().enumerate() {
        // A little room for the cell's padding and the header's bold.
        let w = (*w + 2).min(255) as f64;
        sheet.set_column_width(c as u16, w).map_err(xerr)?;
    }
    let bytes = book.save_to_buffer().map_err(xerr)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".users.xlsx.")
        .tempfile_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    crate::storage::sync_dir(dir)?;
    Ok(())
}

/// Columns `s` takes in a spreadsheet: two for a wide (CJK, emoji)
/// character, one for others.
fn display_width(s: &str) -> usize {
    s.chars().map(|c| if c >= '\u{1100}' { 2 } else { 1 }).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::UserStore;

    /// A well-formed argon2id PHC string (of no password in particular).
    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A";

    /// Writes a sheet the way an admin's editor would: only non-empty cells.
    fn write_rows(path: &Path, rows: &[&[&str]]) {
        let mut book = Workbook::new();
        let sheet = book.add_worksheet();
        for (r, row) in rows.iter().enumerate() {
            for (c, text) in row.iter().enumerate() {
                if !text.is_empty() {
                    sheet.write_string(r as u32, c as u16, *text).unwrap();
                }
            }
        }
        book.save(path).unwrap();
    }

    fn open_err(path: &Path) -> String {
        match UserStore::open(path) {
            Ok(_) => panic!("opened a sheet with a bad row"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_bad_row_refuses_to_open_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        let cases: [(&[&str], &str); 8] = [
            (&[".asa", HASH], "user name \".asa\" is not valid"),
            (&["bob"], "user \"bob\" has no password_hash"),
            (&["bob", "hunter2-plain"], "password_hash is not a PHC"),
            (&["ÅSA", HASH], "user \"ÅSA\" is the same user as row 2"),
            // "åsa" with a combining ring: the same after NFC.
            (&["a\u{30a}sa", HASH], "is the same user as row 2"),
            (&["", HASH], "the user cell is empty"),
            (
                &["bob", HASH, "0", "10 GB"],
                "quota_bytes 10 GB is not a whole number",
            ),
            (
                &["bob", HASH, "last Tuesday"],
                "created_at last Tuesday is not a date",
            ),
        ];
        for (row, problem) in cases {
            write_rows(&path, &[&COLUMNS, &["Åsa", HASH], &[], row]);
            let before = std::fs::read(&path).unwrap();
            let err = open_err(&path);
            assert!(err.contains("row 4: ") && err.contains(problem), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), before, "{problem}");
        }
    }

    #[test]
    fn empty_rows_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        write_rows(
            &path,
            &[
                &COLUMNS,
                &[],
                &["alice", HASH],
                &["  ", "", " "],
                &["Bob", HASH, "5", "100"],
            ],
        );
        let store = UserStore::open(&path).unwrap();
        assert_eq!(store.count(), 2);
        let bob = store.get("bob").unwrap();
        assert_eq!((bob.name.as_str(), bob.created_at), ("Bob", 5));
        assert_eq!(bob.quota, Some(100));
    }

    #[test]
    fn created_at_is_written_as_a_date_and_read_back_as_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        // 2026-12-01 08:42:43 UTC, and the Unix epoch.
        let users: Vec<Arc<User>> = [("Åsa", 1_796_114_563), ("bob", 0)]
            .into_iter()
            .map(|(name, created_at)| {
                Arc::new(User {
                    name: name.into(),
                    key: names::canonical_user(name).unwrap(),
                    password_hash: HASH.into(),
                    created_at,
                    quota: None,
                })
            })
            .collect();
        write_sheet(&path, &users).unwrap();
        let mut book: Xlsx<_> = calamine::open_workbook(&path).unwrap();
        let range = book.worksheet_range_at(0).unwrap().unwrap();
        let cell = range.get_value((1, 2)).unwrap();
        let Data::DateTime(t) = cell else {
            panic!("created_at is {cell:?}, not a date");
        };
        assert_eq!(t.to_ymd_hms_milli(), (2026, 12, 1, 8, 42, 43, 0));
        let back = read_sheet(&path).unwrap();
        assert_eq!(back[0].created_at, 1_796_114_563);
        assert_eq!(back[1].created_at, 0);
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2026, 12, 1) * 86_400, 1_796_083_200);
    }

    #[test]
    fn unreadable_sheet_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        std::fs::write(&path, b"not a zip").unwrap();
        assert!(UserStore::open(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"not a zip");
    }
}
