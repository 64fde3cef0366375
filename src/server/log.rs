//! The request log on stderr: one line per request, each written in one
//! system call, and a flood of identical lines summarised.
//!
//! A client that sends the same bad request back to back would otherwise
//! write megabytes of log a second. Lines are compared without their
//! timing field; the first [`VERBATIM`] repeats are written as they come,
//! later ones are counted, and the count goes out as `… last line
//! repeated N times` when a different line comes, or at most once a second
//! while the flood lasts.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Identical lines in a row written out before they are only counted.
pub const VERBATIM: u64 = 8;
/// How often a running flood is summarised.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Last {
    key: String,
    /// Identical lines after the first, written or not.
    run: u64,
    /// Of those, the ones counted but not written yet.
    repeats: u64,
    since: Option<Instant>,
}

/// The log.
#[derive(Default)]
pub struct Log {
    last: Mutex<Last>,
}

impl Log {
    /// Writes `line` (without its newline); `key` is the line without the
    /// parts that change between repeats (the timing).
    pub fn write(&self, key: &str, line: &str) {
        let out = self.render(key, line, Instant::now());
        if !out.is_empty() {
            let _ = std::io::stderr().write_all(out.as_bytes());
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
        if last.repeats > 0 {
            out = format!("… last line repeated {} times\n", last.repeats);
        }
        out.push_str(line);
        out.push('\n');
        *last = Last {
            key: key.to_string(),
            run: 0,
            repeats: 0,
            since: Some(now),
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            log.render("b", "b 0ms", later),
            "… last line repeated 1 times\nb 0ms\n"
        );
        assert_eq!(log.render("c", "c", later), "c\n");
    }
}
