//! Progress bars on stderr: bytes, rate and ETA, one line per file.
//!
//! Each bar is a `pbr::ProgressBar` (it does the counting, rate and ETA);
//! the lines are put together here instead of by `pbr::MultiBar`, whose
//! pipe writer answers `Ok(1)` to every write: `write_all` then sends every
//! suffix of a line again, and the suffix that starts inside a multi-byte
//! character (any Chinese or emoji name) makes it panic. Here every bar
//! writes into a shared [`Board`] that redraws its lines in place.
//!
//! Sizes and rates are in the IEC units the rest of the output uses
//! (KiB, MiB, GiB): pbr's own byte counter and speed say SI "MB", so they
//! are turned off and written here into the bar's message, and pbr draws
//! the bar, the percentage and the time left.
//!
//! A transfer of several files has one more line under the bars: files
//! done of all, bytes, rate and ETA of the whole ([`Overall`]).
//!
//! Bars are hidden when stderr is not a terminal or with `-q`; notes (such
//! as "resuming at ...") still go to stderr unless `-q`.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pbr::ProgressBar;

use super::output::{clean, human_size};

/// How often a bar redraws at most.
const REFRESH: Duration = Duration::from_millis(150);
/// Longest file-name label in front of a bar, in characters.
const LABEL_CHARS: usize = 24;

/// Where the bars of one command go.
pub struct Progress {
    board: Option<Arc<Board>>,
    quiet: bool,
    /// The line for the whole of a several-file transfer.
    overall: Option<Arc<Overall>>,
}

/// The totals of a several-file transfer, drawn as the board's last line.
struct Overall {
    board: Arc<Board>,
    index: usize,
    state: Mutex<OverallState>,
}

struct OverallState {
    files: usize,
    files_done: usize,
    /// Bytes to move, as far as known (each file's total is known once its
    /// transfer has begun).
    bytes: u64,
    bytes_done: u64,
    start: Instant,
    drawn: Option<Instant>,
}

/// The lines on screen, redrawn together.
struct Board {
    state: Mutex<BoardState>,
}

struct BoardState {
    lines: Vec<String>,
    /// How many lines the last drawing took (the cursor is below them).
    drawn: usize,
}

impl Progress {
    /// Bars on stderr if it is a terminal and not `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let visible = !quiet && io::stderr().is_terminal();
        let board = visible.then(|| {
            Arc::new(Board {
                state: Mutex::new(BoardState {
                    lines: Vec::new(),
                    drawn: 0,
                }),
            })
        });
        Progress {
            board,
            quiet,
            overall: None,
        }
    }

    /// Adds the line for the whole of a transfer of `files` files, under
    /// the bars made so far (see [`Bar::counting_towards`]).
    pub fn overall(&mut self, files: usize) {
        let Some(board) = &self.board else {
            return;
        };
        let index = board.add_line();
        self.overall = Some(Arc::new(Overall {
            board: Arc::clone(board),
            index,
            state: Mutex::new(OverallState {
                files,
                files_done: 0,
                bytes: 0,
                bytes_done: 0,
                start: Instant::now(),
                drawn: None,
            }),
        }));
    }

    /// A new bar for `name` (its total is set when known).
    pub fn bar(&self, name: &str) -> Bar {
        let Some(board) = &self.board else {
            return Bar { inner: None };
        };
        let index = board.add_line();
        let line = Line {
            board: Arc::clone(board),
            index,
        };
        let label = label(name);
        let mut pb = ProgressBar::on(line, 0);
        pb.set_max_refresh_rate(Some(REFRESH));
        // Counter and speed in IEC units are in the message instead.
        pb.show_counter = false;
        pb.show_speed = false;
        pb.show_time_left = true;
        pb.set_width(Some(bar_width(&label)));
        pb.message(&format!("{label} "));
        Bar {
            inner: Some(Inner {
                pb,
                label,
                total: 0,
                done: 0,
                start: Instant::now(),
                overall: None,
            }),
        }
    }

    /// A line for the user on stderr (above the bars), unless `-q`.
    pub fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.board {
            Some(board) => board.note(text),
            None => {
                let _ = writeln!(io::stderr().lock(), "{text}");
            }
        }
    }
}

/// One file's bar; does nothing when bars are hidden.
pub struct Bar {
    inner: Option<Inner>,
}

struct Inner {
    pb: ProgressBar<Line>,
    label: String,
    total: u64,
    done: u64,
    /// Since the count last started from 0, for the rate.
    start: Instant,
    overall: Option<Arc<Overall>>,
}

impl Bar {
    /// The bar, counting towards `progress`'s overall line (made after
    /// the bars, so that it sits under them).
    pub fn counting_towards(mut self, progress: &Progress) -> Bar {
        if let Some(b) = &mut self.inner {
            b.overall = progress.overall.clone();
        }
        self
    }

    /// Sets the number of bytes the transfer will move in all.
    pub fn set_total(&mut self, total: u64) {
        if let Some(b) = &mut self.inner {
            if let Some(o) = &b.overall {
                o.update(
                    |s| s.bytes = (s.bytes + total).saturating_sub(b.total),
                    false,
                );
            }
            b.total = total;
            b.pb.total = total;
        }
    }

    /// Sets how many bytes are done (a transfer that starts again sets 0).
    pub fn set(&mut self, done: u64) {
        if let Some(b) = &mut self.inner {
            if let Some(o) = &b.overall {
                o.update(
                    |s| s.bytes_done = (s.bytes_done + done).saturating_sub(b.done),
                    false,
                );
            }
            if done == 0 {
                b.start = Instant::now();
            }
            b.done = done;
            b.label_counts();
            b.pb.set(done);
        }
    }

    /// Counts `n` more bytes as done.
    pub fn add(&mut self, n: u64) {
        if let Some(b) = &mut self.inner {
            if let Some(o) = &b.overall {
                o.update(|s| s.bytes_done += n, false);
            }
            b.done += n;
            b.label_counts();
            b.pb.add(n);
        }
    }

    /// Draws the bar complete.
    pub fn finish(&mut self) {
        if let Some(b) = &mut self.inner {
            if let Some(o) = &b.overall {
                o.update(|s| s.files_done += 1, true);
            }
            b.label_counts();
            b.pb.finish();
        }
    }
}

impl Inner {
    /// The message before the bar: name, bytes done of all, rate.
    fn label_counts(&mut self) {
        let rate = rate(self.done, self.start.elapsed());
        let text = format!(
            "{} {} / {} {}/s ",
            self.label,
            human_size(self.done),
            human_size(self.total),
            human_size(rate)
        );
        self.pb.message(&text);
    }
}

impl Overall {
    /// Changes the totals and redraws the line, at most every [`REFRESH`]
    /// unless `now`.
    fn update(&self, change: impl FnOnce(&mut OverallState), now: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut s);
        let due = s.drawn.is_none_or(|t| t.elapsed() >= REFRESH);
        if now || due {
            s.drawn = Some(Instant::now());
            let text = overall_text(&s);
            drop(s);
            self.board.set_line(self.index, &text);
        }
    }
}

/// The overall line: `all: 2 of 5 files, 1.2 MiB of 8.0 MiB, 3.4 MiB/s, ETA 2s`.
fn overall_text(s: &OverallState) -> String {
    let elapsed = s.start.elapsed();
    let rate = rate(s.bytes_done, elapsed);
    let left = s.bytes.saturating_sub(s.bytes_done);
    let eta = match rate {
        0 => "?".to_string(),
        r => duration_words(left.div_ceil(r)),
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
fn rate(bytes: u64, elapsed: Duration) -> u64 {
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

impl Board {
    fn add_line(&self) -> usize {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.lines.push(String::new());
        s.lines.len() - 1
    }

    fn set_line(&self, index: usize, text: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.lines[index] = text.to_string();
        s.redraw(None);
    }

    fn note(&self, text: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.redraw(Some(text));
    }
}

impl BoardState {
    /// Moves up over the last drawing and draws again, with an optional
    /// note that scrolls up above the bars.
    fn redraw(&mut self, note: Option<&str>) {
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        if let Some(note) = note {
            out.push_str(&format!("\r{note}\x1b[K\n"));
        }
        for line in &self.lines {
            out.push_str(&format!("\r{line}\x1b[K\n"));
        }
        self.drawn = self.lines.len();
        // A terminal that went away is no reason to fail a transfer.
        let mut err = io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
}

/// The writer a `pbr::ProgressBar` draws into: one line of the board.
struct Line {
    board: Arc<Board>,
    index: usize,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let text = text.trim_start_matches('\r').trim_end();
        // `finish` writes an empty string: nothing to show.
        if !text.is_empty() {
            self.board.set_line(self.index, text);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The name shown before a bar: cleaned and cut to [`LABEL_CHARS`].
fn label(name: &str) -> String {
    let name = clean(name);
    if name.chars().count() <= LABEL_CHARS {
        return name.into_owned();
    }
    let mut cut: String = name.chars().take(LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Width pbr may fill: the terminal's (`COLUMNS`, else 80) less one, less
/// one more per wide character in the label, which pbr counts as one
/// column but terminals draw as two.
fn bar_width(label: &str) -> usize {
    let cols = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&c| c >= 40)
        .unwrap_or(80);
    let wide = label.chars().filter(|&c| c >= '\u{1100}').count();
    cols.saturating_sub(1 + wide).max(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_clean_and_short() {
        assert_eq!(label("a\x1b[2Jb"), "a?[2Jb");
        let long = "报".repeat(40);
        let l = label(&long);
        assert_eq!(l.chars().count(), LABEL_CHARS);
        assert!(l.ends_with('…'));
    }

    #[test]
    fn the_overall_line_counts_files_bytes_and_time_left() {
        let s = OverallState {
            files: 5,
            files_done: 2,
            bytes: 8 << 20,
            bytes_done: 0,
            start: Instant::now(),
            drawn: None,
        };
        let text = overall_text(&s);
        assert_eq!(text, "all: 2 of 5 files, 0 B of 8.0 MiB, 0 B/s, ETA ?");
        assert_eq!(duration_words(42), "42s");
        assert_eq!(duration_words(185), "3m05s");
        assert_eq!(duration_words(7620), "2h07m");
        assert_eq!(rate(3 << 20, Duration::from_secs(2)), 3 << 19);
    }

    #[test]
    fn hidden_bars_accept_everything() {
        let p = Progress::new(true);
        let mut b = p.bar("x");
        b.set_total(10);
        b.add(5);
        b.set(10);
        b.finish();
        p.note("quiet: not shown");
    }
}
