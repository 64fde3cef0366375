//! `netdisk shell`: an interactive session over one connection.
//!
//! Each line is split into words like a shell does, parsed by clap with the
//! same argument types as the one-shot commands, and run through the same
//! [`execute`]; so messages and behaviour are the same. A bad line prints
//! the help of that command and the session goes on. Works with stdin not a
//! terminal (no prompt then), which makes it scriptable; scripted sessions
//! end with an error if any command failed. Several files in one `put` or
//! `get` still go in parallel, on extra connections.
//!
//! The session has a current folder on the server (`cd`, `pwd`, shown in
//! the prompt); every remote path typed is relative to it unless it starts
//! with `/` (see `paths`).
//!
//! On a terminal, lines come from the line editor (`editor`: history,
//! completion), and Ctrl-C during a `put` or `get` cancels that transfer
//! only (`cancel`), keeping what it moved for the next try. Completion
//! lists remote folders over the session's own connection, between
//! commands; what it listed is kept until the next command.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::bail;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use super::cancel;
use super::editor::{self, Entry, Input, Lister};
use super::files;
use super::output::clean;
use super::paths;
use super::prompt::PASSWORD_ENV;
use super::remote::{Account, Remote};
use super::{execute, local, print, prompt, user_name, AccountArgs, Action, Global};

/// One shell line.
#[derive(Parser, Debug)]
#[command(
    name = "netdisk>",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_version_flag = true,
    help_template = "Commands:\n{subcommands}\n\n`help COMMAND` or `COMMAND --help` shows its options."
)]
struct Line {
    #[command(subcommand)]
    command: ShellCommand,
}

#[derive(Subcommand, Debug)]
enum ShellCommand {
    #[command(flatten)]
    Action(Action),
    /// Log in; later commands act as this user.
    #[command(after_help = "Example:\n  login alice")]
    Login(AccountArgs),
    /// List the commands, or show one command's help.
    #[command(after_help = "Example:\n  help get")]
    Help {
        /// The command to explain.
        command: Option<String>,
    },
    /// List a local folder (default: the current one).
    #[command(after_help = "Example:\n  lls ~/Downloads")]
    Lls {
        /// The folder or file.
        path: Option<PathBuf>,
    },
    /// Change the local folder, where `get` saves and `put` looks.
    #[command(after_help = "Example:\n  lcd ~/Downloads")]
    Lcd {
        /// The new folder (default: your home folder).
        dir: Option<PathBuf>,
    },
    /// Print the local folder.
    #[command(after_help = "Example:\n  lpwd")]
    Lpwd,
    /// Change the folder on the server that paths are relative to.
    #[command(after_help = "\
Without PATH, the top folder. .. is the folder above; a path starting with /
starts at the top.

Examples:
  cd 报告/2024
  cd ..")]
    Cd {
        /// The folder (default: the top one).
        path: Option<String>,
    },
    /// Print the folder on the server that paths are relative to.
    #[command(after_help = "Example:\n  pwd")]
    Pwd,
    /// End the session.
    #[command(alias = "exit")]
    Quit,
}

/// What a line did.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Done,
    Failed,
    Quit,
}

/// Runs the shell until `quit` or the end of stdin.
///
/// # Errors
/// If stdin cannot be read, or (stdin not a terminal) if a command failed.
pub fn run(remote: Remote, global: &Global) -> anyhow::Result<()> {
    let tty = io::stdin().is_terminal();
    if tty {
        cancel::install()?;
        let mut err = io::stderr().lock();
        writeln!(
            err,
            "netdisk shell on {}: `help` lists the commands, `quit` ends.",
            clean(&remote.addr)
        )?;
    }
    let remote = Rc::new(RefCell::new(remote));
    let listed: Listed = Rc::new(RefCell::new(HashMap::new()));
    let lister = lister(Rc::clone(&remote), Rc::clone(&listed));
    let mut input = Input::new(tty, editor::command_names::<Line>(), lister);
    let mut failed = 0;
    if global.user.is_some() {
        if let Step::Failed = report(login(&mut remote.borrow_mut(), global, None)) {
            failed += 1;
        }
    }
    loop {
        let prompt_text = format!("netdisk:{}> ", paths::absolute(&remote.borrow().cwd));
        let Some(line) = input.read(&prompt_text)? else {
            break;
        };
        let env_password = std::env::var(PASSWORD_ENV).unwrap_or_default();
        let step_done = {
            let mut remote = remote.borrow_mut();
            let secrets = [remote.password().unwrap_or(""), env_password.as_str()];
            input.remember(&line, &secrets);
            step(&mut remote, global, &line, tty)
        };
        // Any command may have changed what completion would list.
        listed.borrow_mut().clear();
        match step_done {
            Step::Done => {}
            Step::Failed => failed += 1,
            Step::Quit => break,
        }
    }
    remote.borrow_mut().close();
    if failed > 0 && !tty {
        bail!("{failed} shell command(s) failed");
    }
    Ok(())
}

/// Remote folders listed for completion since the last command, by path.
type Listed = Rc<RefCell<HashMap<String, Vec<Entry>>>>;

/// What completion lists remote folders with: the session's connection,
/// once per folder between two commands. Nothing while logged out, and
/// nothing for a folder part that does not resolve or list.
fn lister(remote: Rc<RefCell<Remote>>, listed: Listed) -> Lister {
    Box::new(move |typed: &str| {
        let Ok(mut remote) = remote.try_borrow_mut() else {
            return Vec::new();
        };
        if remote.password().is_none() {
            return Vec::new();
        }
        let Ok(path) = paths::resolve(&remote.cwd, typed) else {
            return Vec::new();
        };
        if let Some(entries) = listed.borrow().get(&path) {
            return entries.clone();
        }
        let Ok(answer) = remote.call(|c| c.list(&path, false)) else {
            return Vec::new();
        };
        let folders = answer.folders.into_iter().map(|f| Entry {
            name: f.name,
            folder: true,
        });
        let files = answer.files.into_iter().map(|f| Entry {
            name: f.name,
            folder: false,
        });
        let entries: Vec<Entry> = folders.chain(files).collect();
        listed.borrow_mut().insert(path, entries.clone());
        entries
    })
}

/// Runs one line; `cancellable`: Ctrl-C cancels a transfer.
fn step(remote: &mut Remote, global: &Global, line: &str, cancellable: bool) -> Step {
    let words = match split(line) {
        Ok(w) => w,
        Err(e) => return report(Err(anyhow::anyhow!(e))),
    };
    if words.is_empty() || words[0].starts_with('#') {
        return Step::Done;
    }
    let parsed = Line::command()
        .try_get_matches_from(&words)
        .and_then(|m| Line::from_arg_matches(&m));
    let command = match parsed {
        Ok(l) => l.command,
        Err(e) => return bad_line(&words[0], &e),
    };
    match command {
        ShellCommand::Quit => Step::Quit,
        ShellCommand::Help { command } => {
            print_help(command.as_deref());
            Step::Done
        }
        ShellCommand::Login(a) => report(login(remote, global, a.name.as_deref())),
        ShellCommand::Lls { path } => report(local::lls(path.as_deref()).and_then(|t| print(&t))),
        ShellCommand::Lcd { dir } => report(local::lcd(dir.as_deref())),
        ShellCommand::Lpwd => report(local::lpwd().and_then(|t| print(&t))),
        ShellCommand::Cd { path } => report(files::cd(remote, path.as_deref())),
        ShellCommand::Pwd => report(print(&files::pwd(remote))),
        ShellCommand::Action(action) => {
            let transfer = matches!(action, Action::Put(_) | Action::Get(_));
            let _guard = (cancellable && transfer).then(|| cancel::Transfer::begin(line));
            report(execute(remote, global, &action))
        }
    }
}

fn login(remote: &mut Remote, global: &Global, name: Option<&str>) -> anyhow::Result<()> {
    let user = user_name(name, global)?;
    let name = prompt::with_password(&user, false, prompt::wrong_password, |password| {
        remote.login(Account {
            user: user.clone(),
            password,
        })
    })?;
    if !remote.quiet {
        writeln!(io::stdout().lock(), "logged in as {}", clean(&name))?;
    }
    Ok(())
}

/// Prints an error the way `main` does, and goes on. A transfer cancelled
/// with Ctrl-C is no error: it says what it kept.
fn report(result: anyhow::Result<()>) -> Step {
    match result {
        Ok(()) => Step::Done,
        Err(e) if cancel::is_cancelled(&e) => {
            let _ = writeln!(io::stderr().lock(), "{e:#}");
            Step::Failed
        }
        Err(e) => {
            let _ = writeln!(io::stderr().lock(), "error: {e:#}");
            Step::Failed
        }
    }
}

/// Says what was wrong with a line, then shows that command's help.
fn bad_line(first: &str, e: &clap::Error) -> Step {
    use clap::error::ErrorKind;
    if e.kind() == ErrorKind::DisplayHelp {
        let _ = write!(io::stdout().lock(), "{}", e.render());
        return Step::Done;
    }
    let text = e.to_string();
    // The message, without clap's usage line and tip that follow a blank line.
    let summary: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let summary = summary.join(" ");
    let summary = summary.strip_prefix("error: ").unwrap_or(&summary);
    let _ = writeln!(io::stderr().lock(), "error: {}", clean(summary));
    print_help(Some(first));
    Step::Failed
}

/// The list of commands, or one command's help, on stdout.
fn print_help(command: Option<&str>) {
    let mut cmd = Line::command();
    let help = match command.and_then(|c| cmd.find_subcommand_mut(c)) {
        Some(sub) => sub.render_help(),
        None => cmd.render_help(),
    };
    let _ = write!(io::stdout().lock(), "{help}");
}

/// Splits a line into words: blanks separate, '…' and "…" quote, and a
/// backslash escapes the next character (outside '…').
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                word.push(chars.next().ok_or("a line cannot end with a backslash")?);
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".to_string());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_a_shell() {
        assert_eq!(split("  ls  --json \n").unwrap(), ["ls", "--json"]);
        assert_eq!(
            split(r#"put "my file.txt" --as 'a b' c\ d"#).unwrap(),
            ["put", "my file.txt", "--as", "a b", "c d"]
        );
        assert_eq!(
            split(r#"get "" 'x\y' "q\"q""#).unwrap(),
            ["get", "", r"x\y", "q\"q"]
        );
        assert_eq!(split("get 报告.pdf 😀").unwrap(), ["get", "报告.pdf", "😀"]);
        assert!(split("get \"open").is_err());
        assert!(split("get x\\").is_err());
        assert!(split("").unwrap().is_empty());
    }

    #[test]
    fn every_command_parses() {
        for line in [
            "register bob",
            "login",
            "ls --json",
            "put a b -j 2",
            "get x -o d --resume",
            "rm x",
            "mv a b",
            "discard x",
            "whoami",
            "help put",
            "ping hello",
            "lls /tmp",
            "lcd",
            "lpwd",
            "cd 报告/2024",
            "cd",
            "pwd",
            "mkdir a/b",
            "rm -r a b",
            "ls -r a --json",
            "put -r dir --as x/y",
            "get -r x -o d",
            "quit",
            "exit",
        ] {
            let words = split(line).unwrap();
            assert!(Line::try_parse_from(&words).is_ok(), "{line}");
        }
        assert!(Line::try_parse_from(["mv", "a"]).is_err());
        assert!(Line::try_parse_from(["serve"]).is_err());
    }
}
