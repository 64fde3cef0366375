//! A conversation with the client on a pseudo-terminal: `script`
//! (util-linux) runs it on one and passes on what the test types, while
//! the test reads the screen and waits for what it expects before typing
//! more. Waits end on output; deadlines only bound a failing test.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::bin;

/// How long any one expected output may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// The screen so far, and whether the program has ended.
#[derive(Default)]
struct Screen {
    bytes: Vec<u8>,
    ended: bool,
}

/// `netdisk` on a pseudo-terminal.
pub struct Pty {
    child: Child,
    stdin: Option<ChildStdin>,
    screen: Arc<(Mutex<Screen>, Condvar)>,
    /// How much of the screen the test has consumed.
    seen: usize,
}

impl Pty {
    /// Runs `netdisk ARGS` in `dir` with `env` (and `TERM=xterm`, so the
    /// line editor runs; nothing else of the test's own environment that
    /// names a server, user, password, profile or history).
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Pty {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut line = format!("exec {}", quote(&bin().display().to_string()));
        for a in args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .current_dir(dir)
            .env("TERM", "xterm")
            .env("COLUMNS", "100")
            .env("XDG_CONFIG_HOME", dir.join(".xdg-config"))
            .env("XDG_STATE_HOME", dir.join(".xdg-state"));
        for var in [
            "NETDISK_SERVER",
            "NETDISK_USER",
            "NETDISK_PASSWORD",
            "INSTA_UPDATE",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run script (util-linux)");
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().unwrap();
        let screen = Arc::new((Mutex::new(Screen::default()), Condvar::new()));
        let sink = Arc::clone(&screen);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let n = out.read(&mut buf).unwrap_or(0);
                let (lock, ready) = &*sink;
                // A test that failed while holding the lock poisoned it.
                let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    s.ended = true;
                    ready.notify_all();
                    return;
                }
                s.bytes.extend_from_slice(&buf[..n]);
                ready.notify_all();
            }
        });
        Pty {
            child,
            stdin,
            screen,
            seen: 0,
        }
    }

    /// Types `text` (`\r` is Enter, `\x03` Ctrl-C, `\t` Tab).
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("still typing");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits until `needle` appears on the screen after what was already
    /// consumed; consumes up to its end and returns the text before it.
    #[track_caller]
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        let (lock, ready) = &*self.screen;
        let mut s = lock.lock().unwrap();
        loop {
            let fresh = String::from_utf8_lossy(&s.bytes[self.seen..]).into_owned();
            if let Some(at) = fresh.find(needle) {
                let before = fresh[..at].to_string();
                // Lossy decoding keeps lengths of valid UTF-8; the screen
                // is UTF-8 up to where the needle was found.
                self.seen += fresh[..at + needle.len()].len();
                return before;
            }
            let now = Instant::now();
            if s.ended || now >= deadline {
                panic!(
                    "never saw {needle:?} ({}); the screen after the last match:\n{fresh}",
                    if s.ended {
                        "the program ended"
                    } else {
                        "timed out"
                    }
                );
            }
            s = ready.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Closes the keyboard and waits for the end; returns the status and
    /// the whole screen.
    pub fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let (lock, ready) = &*self.screen;
        let mut s = lock.lock().unwrap();
        let deadline = Instant::now() + DEADLINE;
        while !s.ended && Instant::now() < deadline {
            s = ready.wait_timeout(s, DEADLINE).unwrap().0;
        }
        (status, String::from_utf8_lossy(&s.bytes).into_owned())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
