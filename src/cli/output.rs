//! What the client prints: the `ls` table, sizes and times, `whoami`, and
//! errors in plain words.
//!
//! Names and messages that came from the server are untrusted: they pass
//! through [`clean`] before they reach a terminal, so a file called
//! `"\x1b]0;owned\x07"` cannot drive the user's terminal.

use std::borrow::Cow;
use std::fmt;
use std::io;

use crate::client::ClientError;
use crate::commands::ls::FolderInfo;
use crate::commands::whoami;
use crate::error::ErrorCode;
use crate::protocol::FileInfo;

/// Replaces control characters (Unicode Cc: C0, DEL, C1, which includes
/// ESC and CSI) and invisible direction or format marks with `?`.
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unprintable) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if is_unprintable(c) { '?' } else { c })
            .collect(),
    )
}

/// A local path as [`clean`] shows it.
pub fn clean_path(p: &std::path::Path) -> String {
    clean(&p.display().to_string()).into_owned()
}

fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' // zero-width and direction marks
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}')
}

/// A size in binary units: `0 B`, `512 B`, `1.5 KiB`, `2.0 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Unix seconds as `YYYY-MM-DD HH:MM` in UTC.
pub fn utc_time(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `civil_from_days`), so the client needs no time-zone crate.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The `ls` table: folders first (their names end in `/`, their size is
/// `-`), then files. The name comes last so that wide characters
/// (Chinese, emoji) cannot break the alignment of the other columns.
pub fn ls_table(files: &[FileInfo], folders: &[FolderInfo]) -> String {
    if files.is_empty() && folders.is_empty() {
        return "no files\n".to_string();
    }
    let sizes: Vec<String> = files.iter().map(|f| human_size(f.size)).collect();
    let width = sizes.iter().map(String::len).max().unwrap_or(0).max(4);
    let mut out = format!("{:>width$}  {:<16}  NAME\n", "SIZE", "MODIFIED (UTC)");
    for d in folders {
        let line = format!(
            "{:>width$}  {}  {}/\n",
            "-",
            utc_time(d.mtime),
            clean(&d.name)
        );
        out.push_str(&line);
    }
    for (f, size) in files.iter().zip(&sizes) {
        let line = format!(
            "{size:>width$}  {}  {}\n",
            utc_time(f.mtime),
            clean(&f.name)
        );
        out.push_str(&line);
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if !folders.is_empty() {
        out.push_str(&count(folders.len(), "folder", "folders"));
        out.push_str(", ");
    }
    out.push_str(&format!(
        "{}, {}\n",
        count(files.len(), "file", "files"),
        human_size(total)
    ));
    out
}

/// `ls --json`: `{"folders": [{name, mtime}], "files": [{name, size,
/// mtime, md5}]}`, as the server listed them. Every control character
/// (Unicode Cc) a name carries is written as `\uXXXX`: serde_json escapes
/// only U+0000–U+001F and leaves DEL and the C1 controls (CSI is U+009B)
/// raw, and a name from the server must not drive the terminal of someone
/// who looks at the JSON (issue 3).
pub fn ls_json(files: &[FileInfo], folders: &[FolderInfo]) -> String {
    #[derive(serde::Serialize)]
    struct Listing<'a> {
        folders: &'a [FolderInfo],
        files: &'a [FileInfo],
    }
    // Serialising plain structs of strings and integers cannot fail.
    let json =
        serde_json::to_string_pretty(&Listing { folders, files }).expect("file list serialises");
    // A raw control character in serde_json's output can only be inside a
    // string, except the layout's own newlines (a newline in a string is
    // already `\n`).
    let mut out = String::with_capacity(json.len() + 1);
    for c in json.chars() {
        if c.is_control() && c != '\n' {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    out
}

/// The `whoami` report.
pub fn whoami_text(w: &whoami::Answer) -> String {
    let quota = match w.quota {
        Some(q) => format!("{} ({q} bytes)", human_size(q)),
        None => "unlimited".to_string(),
    };
    format!(
        "user:   {}\nfiles:  {}\nused:   {} ({} bytes)\nstaged: {} ({} bytes)\nquota:  {quota}\n",
        clean(&w.user),
        w.files,
        human_size(w.used),
        w.used,
        human_size(w.staged),
        w.staged
    )
}

/// A [`ClientError`] that displays in plain words ([`explain`]) and can
/// still be inspected with `downcast_ref::<Plain>()`.
#[derive(Debug)]
pub struct Plain(pub ClientError);

impl fmt::Display for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&explain(&self.0))
    }
}

impl std::error::Error for Plain {}

/// A client error in plain words: the server's codes are mapped here, and
/// nothing the server sent is printed without [`clean`].
pub fn explain(e: &ClientError) -> String {
    match e {
        ClientError::Connect { addr, source } => {
            format!("cannot connect to {}: {}", clean(addr), io_words(source))
        }
        // The one code with two causes: the server's message says which
        // (too little space, or too many unfinished uploads).
        ClientError::Server {
            code: Some(ErrorCode::QuotaExceeded),
            message,
            ..
        } if message.contains("unfinished")
            || message.contains("most one user")
            || message.contains(" left of ") =>
        {
            clean(message).into_owned()
        }
        ClientError::Server {
            code: Some(ErrorCode::NotFound),
            message,
            ..
        } if message.contains("no unfinished upload") => clean(message).into_owned(),
        // A lockout says when to try again.
        ClientError::Server {
            code: Some(ErrorCode::RateLimited),
            message,
            ..
        } if message.contains("try again in") => clean(message).into_owned(),
        ClientError::Server {
            code: Some(code), ..
        } => code_words(*code).to_string(),
        ClientError::Server { raw, message, .. } => {
            format!("the server said: {} ({})", clean(message), clean(raw))
        }
        ClientError::Timeout => "the server did not answer in time".to_string(),
        ClientError::Io(e) => format!("the connection to the server was lost ({})", io_words(e)),
        ClientError::Protocol(m) => format!("the server broke the protocol: {}", clean(m)),
        ClientError::Tls { .. } | ClientError::Untrusted { .. } => clean(&e.to_string()).into(),
    }
}

fn code_words(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::AuthFailed => "wrong user name or password",
        ErrorCode::RateLimited => {
            "too many failed logins or registrations; wait a while and try again"
        }
        ErrorCode::RegistrationClosed => {
            "the server is closed to registration; ask its admin for an account"
        }
        ErrorCode::UserExists => "that user name is taken",
        ErrorCode::InvalidName => {
            "the server refused the name (names must not start with '.' \
             or contain '/', '\\' or control characters)"
        }
        ErrorCode::WeakPassword => "the password must be 8 to 1024 bytes long",
        ErrorCode::NotFound => "no such file or folder on the server",
        ErrorCode::Exists => "a file or folder of that name already exists on the server",
        ErrorCode::NotAFolder => "a part of that path is a file, not a folder",
        ErrorCode::IsAFolder => "that is a folder on the server, not a file",
        ErrorCode::NotEmpty => "the folder is not empty (use -r to delete all it holds)",
        ErrorCode::Locked => "another upload of this file is in progress",
        ErrorCode::ChecksumMismatch => "the upload arrived damaged (MD5 mismatch)",
        ErrorCode::QuotaExceeded => "not enough space left in your quota",
        ErrorCode::NotLoggedIn => "not logged in",
        ErrorCode::TlsRequired => "the server requires TLS from this address (use --tls)",
        ErrorCode::Timeout => "the server closed the connection after a timeout",
        ErrorCode::Busy => "the server is busy; try again later",
        ErrorCode::Internal => "the server had an internal error",
        ErrorCode::BadFrame | ErrorCode::BadRequest | ErrorCode::UnknownCommand => {
            "the server did not understand the request (is it a netdisk server?)"
        }
    }
}

/// An I/O error in a few words, without the `(os error N)` suffix.
pub fn io_words(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_string(),
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => {
            let text = e.to_string();
            let short = text.split(" (os error").next().unwrap_or(&text);
            clean(short).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_replaces_controls_and_bidi_marks() {
        assert_eq!(clean("plain 报告 😀.txt"), "plain 报告 😀.txt");
        assert_eq!(clean("a\x1b[31mred"), "a?[31mred");
        assert_eq!(clean("bell\x07\u{9b}x"), "bell??x");
        assert_eq!(clean("evil\u{202e}txt.exe"), "evil?txt.exe");
        assert_eq!(clean("new\nline\r"), "new?line?");
    }

    #[test]
    fn ls_json_escapes_every_control_character() {
        let names = [
            "plain 报告 😀.txt",
            "csi\u{9b}31mred",
            "del\u{7f}and\u{80}\u{9f}",
            "esc\x1b]0;t\x07 nl\n tab\t cr\r bs\x08 ff\x0c nul\0",
            "quote\" back\\ slash/",
            "bidi\u{202e}stays",
        ];
        let files: Vec<FileInfo> = names
            .iter()
            .map(|n| FileInfo {
                name: n.to_string(),
                size: 1,
                mtime: 2,
                md5: None,
            })
            .collect();
        let folders = [FolderInfo {
            name: "dir\u{9b}x".into(),
            mtime: 3,
        }];
        let json = ls_json(&files, &folders);
        let structure = |c: char| c == '\n' || c == ' ';
        assert!(
            !json.chars().any(|c| c.is_control() && !structure(c)),
            "{json:?}"
        );
        for esc in [
            "\\u009b", "\\u007f", "\\u0080", "\\u009f", "\\u001b", "\\n", "\\t", "\\u0000",
        ] {
            assert!(json.contains(esc), "{esc} missing from {json}");
        }
        // Still the pretty layout, and still the same names.
        assert!(
            json.starts_with("{\n  \"folders\": [\n    {\n      \"name\": \"dir"),
            "{json}"
        );
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["folders"][0]["name"], "dir\u{9b}x");
        let back: Vec<&str> = back["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(back, names);
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(utc_time(4_102_444_799), "2099-12-31 23:59");
    }

    #[test]
    fn server_codes_become_plain_words() {
        let e = ClientError::Server {
            code: Some(ErrorCode::AuthFailed),
            raw: "AUTH_FAILED".into(),
            message: "whatever".into(),
        };
        assert_eq!(explain(&e), "wrong user name or password");
        let e = ClientError::Server {
            code: None,
            raw: "NEW_\x1bCODE".into(),
            message: "hi\x1b[2J".into(),
        };
        assert_eq!(explain(&e), "the server said: hi?[2J (NEW_?CODE)");
        let e = ClientError::Connect {
            addr: "127.0.0.1:1".into(),
            source: io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(
            explain(&e),
            "cannot connect to 127.0.0.1:1: connection refused"
        );
    }
}
