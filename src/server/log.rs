//! The request log on stderr: one line per request, each written in one
//! system call, and a flood of identical lines summarised. Every line
//! starts with an RFC 3339 time; with `--log-format json` each is a JSON
//! object instead, `time` first, then the text line's fields by name
//! ([`Fields`]), or `msg` for a note or a summary.
//!
//! A client that sends the same bad request back to back would otherwise
//! write megabytes of log a second. Lines are compared without their
//! timing field; the first [`VERBATIM`] repeats are written as they come,
//! later ones are counted, and the count goes out as `… last line
//! repeated N times` when a different line comes, or at most once a second
//! while the flood lasts.
//!
//! A flood of different lines (404s for made-up paths, say) is capped per
//! address instead: each address may log [`ERRORS_PER_MINUTE`] failed or
//! anonymous requests a minute, whatever front end carried them, and all
//! addresses together [`IN_ALL_PER_MINUTE`] (a flood from many addresses);
//! the rest are counted, and the count is written when the address logs
//! again in a later minute (the count in all: with the next line that
//! gets through after the minute). A logged-in user's successful requests
//! are always written.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Failed or anonymous requests one address may log a minute.
pub const ERRORS_PER_MINUTE: u32 = 60;
/// Failed or anonymous requests all addresses together may log a minute.
pub const IN_ALL_PER_MINUTE: u32 = 600;
const MINUTE: Duration = Duration::from_secs(60);
/// Above this many addresses tracked, those quiet for a minute are dropped.
const SWEEP_AT: usize = 10_000;

/// Identical lines in a row written out before they are only counted.
pub const VERBATIM: u64 = 8;
/// How often a running flood is summarised.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Last {
    key: String,
    /// The last line counted and not written (written as it is when it
    /// turns out to be the only repeat: "repeated 1 times" is noise).
    line: String,
    /// Identical lines after the first, written or not.
    run: u64,
    /// Of those, the ones counted but not written yet.
    repeats: u64,
    since: Option<Instant>,
}

/// One address's failed requests this minute.
struct Budget {
    start: Instant,
    written: u32,
    dropped: u64,
}

/// The log.
#[derive(Default)]
pub struct Log {
    last: Mutex<Last>,
    budgets: Mutex<HashMap<String, Budget>>,
    /// Every address's together.
    in_all: Mutex<Option<Budget>>,
    /// JSON objects instead of text lines.
    json: bool,
}

/// The fields of a request's line, for `--log-format json`: the same as
/// the text line's, by name.
#[derive(Debug, Serialize)]
pub struct Fields<'a> {
    pub peer: &'a str,
    pub user: Option<&'a str>,
    /// The command (protocol v1) or `METHOD path` (HTTP).
    pub request: &'a str,
    pub name: Option<&'a str>,
    pub bytes: u64,
    pub ms: u128,
    /// The outcome: `OK`, an error code, `CLOSED`, or `HTTP 200`.
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

impl Log {
    /// The log, as text lines or (`json`) JSON objects.
    pub fn new(json: bool) -> Log {
        Log {
            json,
            ..Log::default()
        }
    }

    /// Writes `line` (without its newline); `key` is the line without the
    /// parts that change between repeats (the timing).
    pub fn write(&self, key: &str, line: &str) {
        let line = if self.json {
            serde_json::json!({ "msg": line }).to_string()
        } else {
            line.to_string()
        };
        self.emit(key, &line);
    }

    /// Renders `line` (a JSON object in JSON mode) and writes what is due,
    /// each line stamped with the time.
    fn emit(&self, key: &str, line: &str) {
        let out = self.render(key, line, Instant::now());
        if out.is_empty() {
            return;
        }
        let stamp = timestamp(std::time::SystemTime::now());
        let out: String = out.lines().map(|l| self.stamped(&stamp, l)).collect();
        let _ = std::io::stderr().write_all(out.as_bytes());
    }

    /// One output line: `STAMP line`, or the object with `time` first (a
    /// summary, which is text, becomes `{"time":…,"msg":…}`).
    fn stamped(&self, stamp: &str, line: &str) -> String {
        if !self.json {
            return format!("{stamp} {line}\n");
        }
        let time = serde_json::to_string(stamp).unwrap_or_default();
        match line.strip_prefix('{') {
            Some(rest) if rest.starts_with('}') => format!("{{\"time\":{time}}}\n"),
            Some(rest) => format!("{{\"time\":{time},{rest}\n"),
            None => {
                let msg = serde_json::to_string(line).unwrap_or_default();
                format!("{{\"time\":{time},\"msg\":{msg}}}\n")
            }
        }
    }

    /// Writes the line of a request from `ip` (text `line`, or `fields` as
    /// JSON); a `budgeted` one (failed, or anonymous) only within the
    /// address's budget and everyone's.
    pub fn request(&self, ip: &str, budgeted: bool, key: &str, line: &str, fields: &Fields) {
        if budgeted {
            let now = Instant::now();
            let (write, note) = self.budget(ip, now);
            if let Some(note) = note {
                self.write(&note, &note);
            }
            if !write || !self.in_all(now) {
                return;
            }
        }
        if self.json {
            let object = serde_json::to_string(fields).unwrap_or_default();
            self.emit(key, &object);
        } else {
            self.emit(key, line);
        }
    }

    /// Whether a budgeted line may go out at `now` within everyone's
    /// budget; writes the count of those dropped in the minute before.
    fn in_all(&self, now: Instant) -> bool {
        let mut all = self.in_all.lock().unwrap_or_else(|p| p.into_inner());
        let b = all.get_or_insert(Budget {
            start: now,
            written: 0,
            dropped: 0,
        });
        let mut note = None;
        if now.duration_since(b.start) >= MINUTE {
            if b.dropped > 0 {
                note = Some(format!(
                    "… {} more failed or anonymous requests not logged \
                     (over {IN_ALL_PER_MINUTE} a minute from all addresses)",
                    b.dropped
                ));
            }
            *b = Budget {
                start: now,
                written: 0,
                dropped: 0,
            };
        }
        let write = b.written < IN_ALL_PER_MINUTE;
        if write {
            b.written += 1;
        } else {
            b.dropped += 1;
        }
        drop(all);
        if let Some(note) = note {
            self.write(&note, &note);
        }
        write
    }

    /// Whether a failed request from `ip` may be logged at `now`, and the
    /// note on what was dropped in the minute before, if anything was.
    fn budget(&self, ip: &str, now: Instant) -> (bool, Option<String>) {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        if budgets.len() >= SWEEP_AT && !budgets.contains_key(ip) {
            budgets.retain(|_, b| now.duration_since(b.start) < MINUTE || b.dropped > 0);
        }
        let b = budgets.entry(ip.to_string()).or_insert(Budget {
            start: now,
            written: 0,
            dropped: 0,
        });
        let mut note = None;
        if now.duration_since(b.start) >= MINUTE {
            if b.dropped > 0 {
                note = Some(format!(
                    "{ip} … {} more failed requests not logged (over {ERRORS_PER_MINUTE} a minute)",
                    b.dropped
                ));
            }
            *b = Budget {
                start: now,
                written: 0,
                dropped: 0,
            };
        }
        if b.written < ERRORS_PER_MINUTE {
            b.written += 1;
            (true, note)
        } else {
            b.dropped += 1;
            (false, note)
        }
    }

    /// What to write for `line` at `now`: the line, a summary, both, or nothing.
    fn render(&self, key: &str, line: &str, now: Instant) -> String {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        if last.key == key {
            last.run += 1;
            if last.run <= VERBATIM {
                return format!("{line}\n");
            }
            last.repeats += 1;
            last.line = line.to_string();
            if last
                .since
                .is_some_and(|s| now.duration_since(s) >= SUMMARY_EVERY)
            {
                out = format!("… last line repeated {} times\n", last.repeats);
                last.repeats = 0;
                last.since = Some(now);
            }
            return out;
        }
        if last.repeats == 1 {
            out = format!("{}\n", last.line);
        } else if last.repeats > 1 {
            out = format!("… last line repeated {} times\n", last.repeats);
        }
        out.push_str(line);
        out.push('\n');
        *last = Last {
            key: key.to_string(),
            line: String::new(),
            run: 0,
            repeats: 0,
            since: Some(now),
        };
        out
    }
}

/// `now` in RFC 3339, UTC, to the millisecond: what every log line starts
/// with.
pub fn timestamp(now: std::time::SystemTime) -> String {
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    // `YYYY-MM-DD HH:MM`, then the seconds.
    let minute = crate::cli::utc_time(secs).replace(' ', "T");
    format!("{minute}:{:02}.{:03}Z", secs % 60, d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgeted_lines_of_all_addresses_are_capped_together() {
        let log = Log::default();
        let now = Instant::now();
        let written = (0..IN_ALL_PER_MINUTE + 50)
            .filter(|_| log.in_all(now))
            .count();
        assert_eq!(written, IN_ALL_PER_MINUTE as usize);
        // A minute later the budget starts over.
        assert!(log.in_all(now + MINUTE));
    }

    #[test]
    fn repeats_are_counted_and_summarised() {
        let log = Log::default();
        let t = Instant::now();
        assert_eq!(log.render("a", "a 1ms", t), "a 1ms\n");
        for _ in 0..VERBATIM {
            assert_eq!(log.render("a", "a 3ms", t), "a 3ms\n");
        }
        for _ in 0..999 {
            assert_eq!(log.render("a", "a 2ms", t), "");
        }
        let later = t + SUMMARY_EVERY;
        assert_eq!(
            log.render("a", "a 0ms", later),
            "… last line repeated 1000 times\n"
        );
        assert_eq!(log.render("a", "a 0ms", later), "");
        // One repeat is written as it was, not summarised.
        assert_eq!(log.render("b", "b 0ms", later), "a 0ms\nb 0ms\n");
        for _ in 0..=VERBATIM {
            log.render("b", "b 1ms", later);
        }
        assert_eq!(log.render("c", "c", later), "b 1ms\nc\n");
        assert_eq!(
            timestamp(std::time::UNIX_EPOCH + Duration::from_millis(1_796_114_563_042)),
            "2026-12-01T08:42:43.042Z"
        );
    }

    #[test]
    fn json_lines_are_objects_with_the_time_first() {
        let text = Log::new(false);
        assert_eq!(text.stamped("T", "a b"), "T a b\n");
        let json = Log::new(true);
        assert_eq!(
            json.stamped("T", r#"{"peer":"p"}"#),
            "{\"time\":\"T\",\"peer\":\"p\"}\n"
        );
        assert_eq!(json.stamped("T", "{}"), "{\"time\":\"T\"}\n");
        // A summary, which render writes as text, becomes a message.
        let summary = json.stamped("T", "… last line repeated 9 times");
        let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
        assert_eq!(v["msg"], "… last line repeated 9 times");
        assert_eq!(v["time"], "T");
    }

    #[test]
    fn failed_requests_are_capped_per_address_and_the_rest_counted() {
        let log = Log::default();
        let t = Instant::now();
        for _ in 0..ERRORS_PER_MINUTE {
            assert_eq!(log.budget("10.0.0.1", t), (true, None));
        }
        assert_eq!(log.budget("10.0.0.1", t), (false, None));
        assert_eq!(log.budget("10.0.0.1", t), (false, None));
        assert_eq!(log.budget("10.0.0.2", t), (true, None), "another address");
        let (write, note) = log.budget("10.0.0.1", t + MINUTE);
        assert!(write);
        assert_eq!(
            note.unwrap(),
            "10.0.0.1 … 2 more failed requests not logged (over 60 a minute)"
        );
    }
}
