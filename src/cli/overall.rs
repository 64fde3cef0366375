//! The line under the bars of a several-file transfer: files done of all,
//! bytes done of all, the rate and the time left of the whole.
//!
//! Each bar tells it what changes (a total becomes known, bytes move, a
//! file is done); it redraws its line at most every [`REFRESH`], and at
//! once when a file is done.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::output::human_size;

/// How often the line redraws at most.
const REFRESH: Duration = Duration::from_millis(150);

/// The totals, and how to draw them.
pub struct Overall {
    state: Mutex<State>,
    draw: Box<dyn Fn(&str) + Send + Sync>,
}

struct State {
    files: usize,
    files_done: usize,
    /// Bytes to move, as far as known (each file's total is known once its
    /// transfer has begun).
    bytes: u64,
    bytes_done: u64,
    start: Instant,
    drawn: Option<Instant>,
}

impl Overall {
    /// The line for `files` files, drawn by `draw`.
    pub fn new(files: usize, draw: impl Fn(&str) + Send + Sync + 'static) -> Overall {
        Overall {
            state: Mutex::new(State {
                files,
                files_done: 0,
                bytes: 0,
                bytes_done: 0,
                start: Instant::now(),
                drawn: None,
            }),
            draw: Box::new(draw),
        }
    }

    /// One file's total went from `old` to `new` bytes. Not drawn until
    /// bytes move or a file is done: the totals known at the start are
    /// all set before the first drawing.
    pub fn set_total(&self, old: u64, new: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.bytes = (s.bytes + new).saturating_sub(old);
    }

    /// One file's bytes done went from `old` to `new`.
    pub fn set_done(&self, old: u64, new: u64) {
        self.update(
            |s| s.bytes_done = (s.bytes_done + new).saturating_sub(old),
            false,
        );
    }

    /// `n` more bytes moved.
    pub fn add(&self, n: u64) {
        self.update(|s| s.bytes_done += n, false);
    }

    /// One more file is done.
    pub fn file_done(&self) {
        self.update(|s| s.files_done += 1, true);
    }

    /// Changes the totals and redraws the line, at most every [`REFRESH`]
    /// unless `now`.
    fn update(&self, change: impl FnOnce(&mut State), now: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut s);
        let due = s.drawn.is_none_or(|t| t.elapsed() >= REFRESH);
        if now || due {
            s.drawn = Some(Instant::now());
            let text = text(&s);
            drop(s);
            (self.draw)(&text);
        }
    }
}

/// The line: `all: 2 of 5 files, 1.2 MiB of 8.0 MiB, 3.4 MiB/s, ETA 2s`.
fn text(s: &State) -> String {
    let rate = rate(s.bytes_done, s.start.elapsed());
    let left = s.bytes.saturating_sub(s.bytes_done);
    let eta = match (left, rate) {
        (0, _) => "0s".to_string(),
        (_, 0) => "?".to_string(),
        (left, r) => duration_words(left.div_ceil(r)),
    };
    format!(
        "all: {} of {} files, {} of {}, {}/s, ETA {eta}",
        s.files_done,
        s.files,
        human_size(s.bytes_done),
        human_size(s.bytes),
        human_size(rate),
    )
}

/// Bytes per second.
pub fn rate(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs < 0.001 {
        return 0;
    }
    (bytes as f64 / secs) as u64
}

/// `42s`, `3m05s`, `2h07m`.
fn duration_words(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_line_counts_files_bytes_and_time_left() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let o = Overall::new(5, move |t: &str| sink.lock().unwrap().push(t.to_string()));
        o.set_total(0, 8 << 20);
        o.set_done(0, 0);
        o.file_done();
        o.file_done();
        let last = lines.lock().unwrap().last().cloned().unwrap();
        assert!(
            last.starts_with("all: 2 of 5 files, 0 B of 8.0 MiB, "),
            "{last}"
        );
        assert!(last.ends_with("ETA ?"), "{last}");
        // A total that shrinks (a resume that starts over) is replaced.
        o.set_total(8 << 20, 1 << 20);
        o.add(1 << 20);
        o.file_done();
        let last = lines.lock().unwrap().last().cloned().unwrap();
        assert!(
            last.starts_with("all: 3 of 5 files, 1.0 MiB of 1.0 MiB, "),
            "{last}"
        );
        assert!(last.ends_with("ETA 0s"), "{last}");
    }

    #[test]
    fn rates_and_durations_in_words() {
        assert_eq!(duration_words(42), "42s");
        assert_eq!(duration_words(185), "3m05s");
        assert_eq!(duration_words(7620), "2h07m");
        assert_eq!(rate(3 << 20, Duration::from_secs(2)), 3 << 19);
        assert_eq!(rate(5, Duration::ZERO), 0);
    }
}
