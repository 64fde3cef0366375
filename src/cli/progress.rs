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
//! done of all, bytes, rate and ETA of the whole (`overall`).
//!
//! Bars are hidden when stderr is not a terminal or with `-q`; notes (such
//! as "resuming at ...") still go to stderr unless `-q`.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pbr::ProgressBar;

use super::output::{clean, human_size};
use super::overall::{rate, Overall};

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
        let board = Arc::clone(board);
        let draw = move |text: &str| board.set_line(index, text);
        self.overall = Some(Arc::new(Overall::new(files, draw)));
    }

    /// A new bar for `name` (its total is set when known).
    pub fn bar(&self, name: &str) -> Bar {
        let Some(board) = &self.board else {
            return Bar {
                inner: None,
                share: None,
            };
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
                base: 0,
                start: Instant::now(),
            }),
            share: None,
        }
    }

    /// A bar with no line of its own: it only counts towards the overall
    /// line, for transfers of whole folders (one line for thousands of
    /// files).
    pub fn hidden_bar(&self) -> Bar {
        Bar {
            inner: None,
            share: None,
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

/// One file's bar; does nothing when bars are hidden. A bar made by
/// [`Progress::hidden_bar`] has no line of its own and only counts
/// towards the overall line.
pub struct Bar {
    inner: Option<Inner>,
    /// The overall line, and this file's share of it so far.
    share: Option<Share>,
}

struct Inner {
    pb: ProgressBar<Line>,
    label: String,
    total: u64,
    done: u64,
    /// What was there before this transfer began (a resume): drawn as
    /// done, but not counted in the rate.
    base: u64,
    /// Since the count last started, for the rate.
    start: Instant,
}

struct Share {
    overall: Arc<Overall>,
    total: u64,
    done: u64,
}

impl Bar {
    /// The bar, counting towards `progress`'s overall line (made after
    /// the bars, so that it sits under them).
    pub fn counting_towards(mut self, progress: &Progress) -> Bar {
        self.share = progress.overall.clone().map(|overall| Share {
            overall,
            total: 0,
            done: 0,
        });
        self
    }

    /// Sets the number of bytes the transfer will move in all.
    pub fn set_total(&mut self, total: u64) {
        if let Some(s) = &mut self.share {
            s.overall.set_total(s.total, total);
            s.total = total;
        }
        if let Some(b) = &mut self.inner {
            b.total = total;
            b.pb.total = total;
        }
    }

    /// A transfer of `total` bytes that resumes with `have` of them there
    /// already: the bar shows the whole file with that part filled, and
    /// its rate and time left count only what moves from now on.
    pub fn resume(&mut self, total: u64, have: u64) {
        self.set_total(total);
        if let Some(s) = &mut self.share {
            s.overall.set_done(s.done, have);
            s.done = have;
        }
        if let Some(b) = &mut self.inner {
            b.start = Instant::now();
            b.base = have;
            b.done = have;
            // pbr's own time left would count the kept part as moved.
            b.pb.show_time_left = have == 0;
            b.label_counts();
            b.pb.set(have);
        }
    }

    /// Sets how many bytes are done (a transfer that starts again sets 0).
    pub fn set(&mut self, done: u64) {
        if let Some(s) = &mut self.share {
            s.overall.set_done(s.done, done);
            s.done = done;
        }
        if let Some(b) = &mut self.inner {
            if done == 0 {
                b.start = Instant::now();
                b.base = 0;
                b.pb.show_time_left = true;
            }
            b.done = done;
            b.label_counts();
            b.pb.set(done);
        }
    }

    /// Counts `n` more bytes as done.
    pub fn add(&mut self, n: u64) {
        if let Some(s) = &mut self.share {
            s.overall.add(n);
            s.done += n;
        }
        if let Some(b) = &mut self.inner {
            b.done += n;
            b.label_counts();
            b.pb.add(n);
        }
    }

    /// Draws the bar complete.
    pub fn finish(&mut self) {
        if let Some(s) = &self.share {
            s.overall.file_done();
        }
        if let Some(b) = &mut self.inner {
            b.label_counts();
            b.pb.finish();
        }
    }
}

impl Inner {
    /// The message before the bar: name, bytes done of all, rate.
    fn label_counts(&mut self) {
        let moved = self.done.saturating_sub(self.base);
        let rate = rate(moved, self.start.elapsed());
        let mut text = format!(
            "{} {} / {} {}/s ",
            self.label,
            human_size(self.done),
            human_size(self.total),
            human_size(rate)
        );
        let left = self.total.saturating_sub(self.done);
        if self.base > 0 && rate > 0 && left > 0 {
            text.push_str(&format!("{}s ", left.div_ceil(rate)));
        }
        self.pb.message(&text);
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
    fn quiet_progress_has_no_board_bars_or_overall_line() {
        let mut p = Progress::new(true);
        p.overall(2);
        assert!(p.board.is_none(), "-q draws nothing");
        assert!(p.overall.is_none());
        let mut b = p.bar("x").counting_towards(&p);
        assert!(b.inner.is_none());
        // Every call on a hidden bar is a no-op, in any order.
        b.set_total(10);
        b.add(5);
        b.set(10);
        assert!(b.inner.is_none());
        b.finish();
    }
}
