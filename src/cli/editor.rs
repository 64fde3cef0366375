//! The shell's input on a terminal: line editing (rustyline), history kept
//! across sessions, and Tab completion of command names, remote file names
//! and local paths. With stdin not a terminal, plain lines as before.
//!
//! Nothing typed ahead is lost: the editor keeps what it read past the end
//! of a line for the next one (rustyline's `buffer-redux`), it switches the
//! terminal's modes without flushing its input (TCSADRAIN), and keys typed
//! while a command runs wait in the terminal's queue. A paste of several
//! lines (bracketed paste: shown whole, run on Enter) runs line by line.
//!
//! History lives in `$XDG_STATE_HOME/netdisk/history` (else
//! `~/.local/state/netdisk/history`). A line that holds the password (typed
//! at the prompt by mistake) is never stored; passwords asked for by
//! `login` and `register` never pass through the editor at all.
//!
//! Remote paths complete through folders: the word's folder part (`a/b/`
//! of `a/b/c`, relative to the shell's current folder) is listed when Tab
//! is pressed, by the shell's [`Lister`], which keeps what it listed until
//! the next command; folders complete with a trailing `/`, so the next Tab
//! goes on inside. Local paths complete through local folders the same
//! way.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use clap::CommandFactory;
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor};

use super::output::clean;
use super::profile::base_dir;

/// The prompt where the editor cannot run (the shell's own shows its
/// folder).
pub const PROMPT: &str = "netdisk> ";
/// Entries kept in the history file.
const HISTORY_SIZE: usize = 1000;

/// Where shell lines come from.
pub enum Input {
    /// Plain lines from stdin; `prompt` on stderr first if set.
    Plain { prompt: bool },
    /// The line editor, and the history file (none if there is no home).
    /// `pending`: the lines after the first of what the editor returned at
    /// once (a bracketed paste of several lines), not yet run.
    Editor {
        editor: Box<Editor<Helper, FileHistory>>,
        history: Option<PathBuf>,
        pending: VecDeque<String>,
    },
}

impl Input {
    /// The editor on a terminal (plain lines with a prompt if it cannot
    /// start), else plain lines. Remote paths complete from `lister`.
    pub fn new(terminal: bool, commands: Vec<String>, lister: Lister) -> Input {
        if !terminal {
            return Input::Plain { prompt: false };
        }
        let config = Config::builder()
            .auto_add_history(false)
            .history_ignore_space(true)
            .completion_type(CompletionType::List)
            .max_history_size(HISTORY_SIZE)
            .map(|b| b.build());
        let editor = config.and_then(Editor::with_config);
        let Ok(mut editor) = editor else {
            return Input::Plain { prompt: true };
        };
        editor.set_helper(Some(Helper {
            commands,
            lister,
            files: FilenameCompleter::new(),
        }));
        let history = history_path();
        if let Some(path) = &history {
            // No file yet, or one we cannot read: start without history.
            let _ = editor.load_history(path);
        }
        Input::Editor {
            editor: Box::new(editor),
            history,
            pending: VecDeque::new(),
        }
    }

    /// The next line; `None` at the end of input (Ctrl-D). Ctrl-C at the
    /// prompt gives an empty line: the line is dropped, nothing runs.
    ///
    /// # Errors
    /// If the input cannot be read.
    pub fn read(&mut self, prompt_text: &str) -> anyhow::Result<Option<String>> {
        match self {
            Input::Plain { prompt } => {
                if *prompt {
                    let mut err = io::stderr().lock();
                    write!(err, "{PROMPT}")?;
                    err.flush()?;
                }
                let mut line = String::new();
                if io::stdin().lock().read_line(&mut line)? == 0 {
                    return Ok(None);
                }
                Ok(Some(line))
            }
            Input::Editor {
                editor, pending, ..
            } => {
                if let Some(line) = pending.pop_front() {
                    return Ok(Some(line));
                }
                match editor.readline(prompt_text) {
                    Ok(text) => {
                        let mut lines = split_lines(&text);
                        let first = lines.pop_front().unwrap_or_default();
                        *pending = lines;
                        Ok(Some(first))
                    }
                    Err(ReadlineError::Interrupted) => Ok(Some(String::new())),
                    Err(ReadlineError::Eof) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Adds `line` to the history (and its file) unless it is blank, starts
    /// with a space, or contains one of `secrets`.
    pub fn remember(&mut self, line: &str, secrets: &[&str]) {
        let Input::Editor {
            editor, history, ..
        } = self
        else {
            return;
        };
        if !keep_in_history(line, secrets) {
            return;
        }
        if editor.add_history_entry(line.trim_end()).unwrap_or(false) {
            if let Some(path) = history {
                // History is a convenience: failing to save it is no error.
                if let Some(dir) = path.parent() {
                    let _ = fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir);
                }
                let _ = editor.append_history(path);
            }
        }
    }
}

/// The lines of what the editor returned: one, or several from a
/// bracketed paste (which it inserts whole, newlines and all, until Enter);
/// each runs as a line of its own. Blank lines between are dropped, as the
/// shell would skip them.
fn split_lines(text: &str) -> VecDeque<String> {
    let mut lines: VecDeque<String> = text
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        lines.push_back(String::new());
    }
    lines
}

/// `$XDG_STATE_HOME/netdisk/history`, else under `~/.local/state`.
pub fn history_path() -> Option<PathBuf> {
    base_dir("XDG_STATE_HOME", ".local/state").map(|d| d.join("netdisk").join("history"))
}

/// Whether `line` may go into the history.
fn keep_in_history(line: &str, secrets: &[&str]) -> bool {
    let line = line.trim_end();
    !line.trim().is_empty()
        && !line.starts_with(' ')
        && !secrets.iter().any(|s| !s.is_empty() && line.contains(s))
}

/// One entry of a remote folder, for completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub folder: bool,
}

/// Lists a remote folder for completion: the folder part of the word as
/// typed (`""` for the current folder, `a/b/`, `/`, `../`); nothing if it
/// cannot.
pub type Lister = Box<dyn Fn(&str) -> Vec<Entry>>;

/// Completion for the line editor.
pub struct Helper {
    /// Command names and aliases.
    commands: Vec<String>,
    lister: Lister,
    files: FilenameCompleter,
}

/// What the word under the cursor is completed from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Commands,
    /// Remote paths; folders only if `true`.
    Remote(bool),
    Local,
    Nothing,
}

impl Completer for Helper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let word = current_word(&line[..pos]);
        let from = |list: &[String]| -> Vec<Pair> {
            let mut found: Vec<Pair> = list
                .iter()
                .filter(|n| n.starts_with(&word.prefix))
                .map(|n| Pair {
                    display: clean(n).into_owned(),
                    replacement: escape(n).into_owned(),
                })
                .collect();
            found.sort_by(|a, b| a.replacement.cmp(&b.replacement));
            found.dedup_by(|a, b| a.replacement == b.replacement);
            found
        };
        match source(&word) {
            Source::Commands => Ok((word.start, from(&self.commands))),
            Source::Remote(folders_only) => Ok((word.start, self.remote(&word, folders_only))),
            Source::Local => self.files.complete_path(line, pos),
            Source::Nothing => Ok((pos, Vec::new())),
        }
    }
}

impl Helper {
    /// The remote paths that complete `word`: the entries of its folder
    /// part that start with the rest.
    fn remote(&self, word: &Word, folders_only: bool) -> Vec<Pair> {
        let (dir, partial) = match word.prefix.rfind('/') {
            Some(i) => word.prefix.split_at(i + 1),
            None => ("", word.prefix.as_str()),
        };
        let mut found: Vec<Pair> = (self.lister)(dir)
            .into_iter()
            .filter(|e| e.name.starts_with(partial) && (e.folder || !folders_only))
            .map(|e| {
                let slash = if e.folder { "/" } else { "" };
                Pair {
                    display: format!("{}{slash}", clean(&e.name)),
                    replacement: escape(&format!("{dir}{}{slash}", e.name)).into_owned(),
                }
            })
            .collect();
        found.sort_by(|a, b| a.replacement.cmp(&b.replacement));
        found.dedup_by(|a, b| a.replacement == b.replacement);
        found
    }
}

impl Hinter for Helper {
    type Hint = String;
}

impl Highlighter for Helper {}

impl Validator for Helper {}

impl rustyline::Helper for Helper {}

/// The word the cursor is in (or about to start).
#[derive(Debug, PartialEq, Eq)]
struct Word {
    /// The words before it, unquoted.
    before: Vec<String>,
    /// Byte offset where it starts, which a completion replaces from.
    start: usize,
    /// Its text so far, unquoted.
    prefix: String,
}

/// Splits `line` (the text before the cursor) as `shell::split` does and
/// returns the last word, complete or not.
fn current_word(line: &str) -> Word {
    let mut before = Vec::new();
    let mut word = String::new();
    let mut start = line.len();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        // Outside a word there is no open quote.
        if !in_word && !c.is_whitespace() {
            in_word = true;
            start = i;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some((_, next)) = chars.next() {
                    word.push(next);
                }
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if in_word {
                    before.push(std::mem::take(&mut word));
                    in_word = false;
                    start = line.len();
                }
            }
            (None, c) => word.push(c),
        }
    }
    Word {
        before,
        start,
        prefix: word,
    }
}

/// Which list completes `word`, from the command and the word before.
fn source(word: &Word) -> Source {
    let Some(command) = word.before.first() else {
        return Source::Commands;
    };
    if word.prefix.starts_with('-') {
        return Source::Nothing;
    }
    let previous = word.before.last().map_or("", String::as_str);
    match (command.as_str(), previous) {
        (_, "-o" | "--output") => Source::Local,
        ("put", "--as") => Source::Remote(false),
        ("put" | "lls" | "lcd", _) => Source::Local,
        ("get" | "rm" | "mv" | "ls" | "discard", _) => Source::Remote(false),
        ("cd" | "mkdir", _) => Source::Remote(true),
        ("help", _) if word.before.len() == 1 => Source::Commands,
        _ => Source::Nothing,
    }
}

/// `name` as one shell word: a backslash before blanks, quotes and
/// backslashes, which `shell::split` reads back as they were.
fn escape(name: &str) -> Cow<'_, str> {
    let special = |c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '\\');
    if !name.chars().any(special) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if special(c) {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Every command name and alias of the shell's parser `C`.
pub fn command_names<C: CommandFactory>() -> Vec<String> {
    let cmd = C::command();
    let mut names: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|s| {
            std::iter::once(s.get_name().to_string()).chain(s.get_all_aliases().map(str::to_string))
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(line: &str) -> (Vec<String>, usize, String) {
        let w = current_word(line);
        (w.before, w.start, w.prefix)
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_word_under_the_cursor_is_split_like_a_line() {
        assert_eq!(word(""), (words(&[]), 0, String::new()));
        assert_eq!(word("ge"), (words(&[]), 0, "ge".into()));
        assert_eq!(word("get "), (words(&["get"]), 4, String::new()));
        assert_eq!(word("get 报"), (words(&["get"]), 4, "报".into()));
        assert_eq!(word("get my\\ f"), (words(&["get"]), 4, "my f".into()));
        assert_eq!(word("get \"my f"), (words(&["get"]), 4, "my f".into()));
        assert_eq!(
            word("get a  -o x"),
            (words(&["get", "a", "-o"]), 10, "x".into())
        );
    }

    #[test]
    fn each_argument_completes_from_its_own_list() {
        let src = |line: &str| source(&current_word(line));
        assert_eq!(src("wh"), Source::Commands);
        assert_eq!(src("get 报"), Source::Remote(false));
        assert_eq!(src("rm a"), Source::Remote(false));
        assert_eq!(src("mv a b"), Source::Remote(false));
        assert_eq!(src("ls a/"), Source::Remote(false));
        assert_eq!(src("cd a/b"), Source::Remote(true));
        assert_eq!(src("put ./x"), Source::Local);
        assert_eq!(src("put -r dir/su"), Source::Local);
        assert_eq!(src("put x --as y"), Source::Remote(false));
        assert_eq!(src("get x -o d"), Source::Local);
        assert_eq!(src("lcd /t"), Source::Local);
        assert_eq!(src("help g"), Source::Commands);
        assert_eq!(src("get --re"), Source::Nothing);
        assert_eq!(src("whoami x"), Source::Nothing);
    }

    #[test]
    fn remote_paths_complete_folder_by_folder() {
        let lister: Lister = Box::new(|dir: &str| {
            let entry = |name: &str, folder| Entry {
                name: name.into(),
                folder,
            };
            match dir {
                "" => vec![entry("报告", true), entry("报表.txt", false)],
                "报告/" => vec![entry("2024", true), entry("my file.txt", false)],
                _ => Vec::new(),
            }
        });
        let helper = Helper {
            commands: Vec::new(),
            lister,
            files: FilenameCompleter::new(),
        };
        let done = |line: &str, folders_only| -> Vec<String> {
            let found = helper.remote(&current_word(line), folders_only);
            found.into_iter().map(|p| p.replacement).collect()
        };
        assert_eq!(done("get 报", false), ["报告/", "报表.txt"]);
        assert_eq!(done("cd 报", true), ["报告/"]);
        assert_eq!(
            done("get 报告/", false),
            ["报告/2024/", "报告/my\\ file.txt"]
        );
        assert_eq!(done("get 报告/m", false), ["报告/my\\ file.txt"]);
        assert!(done("get nowhere/x", false).is_empty());
    }

    #[test]
    fn completed_names_read_back_as_one_word() {
        for name in ["报告.txt", "my file.txt", "it's \"q\"", "back\\slash"] {
            let line = format!("get {}", escape(name));
            let w = current_word(&line);
            assert_eq!(w.prefix, name);
            assert_eq!(w.before, ["get"]);
        }
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_pasted_block_is_one_line_per_line() {
        let lines = |t: &str| Vec::from(split_lines(t));
        assert_eq!(lines("ping"), ["ping"]);
        assert_eq!(lines(""), [""]);
        assert_eq!(lines("ping a\nwhoami\n"), ["ping a", "whoami"]);
        assert_eq!(lines("\n ls\n\n  \nget x y\n"), [" ls", "get x y"]);
    }

    #[test]
    fn history_keeps_no_password_and_no_blank_line() {
        let lines = [
            "ls\n",
            "  \n",
            " spaced",
            "login bob",
            "correct horse",
            "whoami",
        ];
        let kept: Vec<&str> = lines
            .into_iter()
            .filter(|l| keep_in_history(l, &["correct horse", ""]))
            .collect();
        assert_eq!(kept, ["ls\n", "login bob", "whoami"]);
    }
}
