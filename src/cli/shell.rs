//! `netdisk shell`: an interactive session over one connection.
//!
//! Each line is split into words like a shell does, parsed by clap with the
//! same argument types as the one-shot commands, and run through the same
//! [`execute`]; so messages and behaviour are the same. A bad line prints
//! the help of that command and the session goes on. Works with stdin not a
//! terminal (no prompt then), which makes it scriptable; scripted sessions
//! end with an error if any command failed. Several files in one `put` or
//! `get` still go in parallel, on extra connections.

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::bail;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use super::output::clean;
use super::session::{Account, Session};
use super::{execute, prompt, user_name, AccountArgs, Action, Global};

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
pub fn run(session: &mut Session, global: &Global) -> anyhow::Result<()> {
    let tty = io::stdin().is_terminal();
    if tty {
        let mut err = io::stderr().lock();
        writeln!(
            err,
            "netdisk shell on {}: `help` lists the commands, `quit` ends.",
            clean(&session.addr)
        )?;
    }
    let mut failed = 0;
    if global.user.is_some() && report(login(session, global, None)) == Step::Failed {
        failed += 1;
    }
    let mut line = String::new();
    loop {
        if tty {
            let mut err = io::stderr().lock();
            write!(err, "netdisk> ")?;
            err.flush()?;
        }
        line.clear();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            break;
        }
        match step(session, global, &line) {
            Step::Done => {}
            Step::Failed => failed += 1,
            Step::Quit => break,
        }
    }
    session.close();
    if failed > 0 && !tty {
        bail!("{failed} shell command(s) failed");
    }
    Ok(())
}

/// Runs one line.
fn step(session: &mut Session, global: &Global, line: &str) -> Step {
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
        ShellCommand::Login(a) => report(login(session, global, a.name.as_deref())),
        ShellCommand::Action(action) => report(execute(session, global, &action)),
    }
}

fn login(session: &mut Session, global: &Global, name: Option<&str>) -> anyhow::Result<()> {
    let user = user_name(name, global)?;
    let password = prompt::password(&user, false)?;
    let name = session.login(Account { user, password })?;
    if !session.quiet {
        writeln!(io::stdout().lock(), "logged in as {}", clean(&name))?;
    }
    Ok(())
}

/// Prints an error the way `main` does, and goes on.
fn report(result: anyhow::Result<()>) -> Step {
    match result {
        Ok(()) => Step::Done,
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
