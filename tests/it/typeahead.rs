//! The shell keeps what is typed ahead (issue 21): lines pasted at once,
//! with or without the terminal's bracketed paste, and keys typed while a
//! transfer runs, all run in order.

use std::fs;

use crate::cli::{netdisk, setup, success};
use crate::shell::{end, gated_proxy, shell, wait_for_part, Hold, PROMPT, STARTED};
use crate::support::*;

/// What the terminal sends around a paste in bracketed paste mode.
const PASTE_START: &str = "\x1b[200~";
const PASTE_END: &str = "\x1b[201~";

/// Five `ping` lines, each with its own message.
const WORDS: [&str; 5] = ["one", "two", "three", "four", "five"];

fn five_pings() -> String {
    WORDS.iter().map(|w| format!("ping {w}\r")).collect()
}

/// Each ping answered, in order, and then the prompt.
#[track_caller]
fn five_answers(pty: &mut crate::pty::Pty) {
    for w in WORDS {
        pty.expect(&format!("message: {w}\r\n"));
    }
    pty.expect(PROMPT);
}

#[test]
fn r21_five_lines_pasted_at_once_give_five_results() {
    let (server, dir) = setup(&[]);
    let mut pty = shell(dir.path(), &server.addr);
    // A terminal without bracketed paste: the lines arrive as keys, in one
    // write, faster than the shell reads them.
    pty.send(&five_pings());
    five_answers(&mut pty);
    // With bracketed paste, the pasted lines wait for Enter, then each
    // runs as a line of its own (not as words of one line).
    pty.send(&format!("{PASTE_START}{}{PASTE_END}", five_pings()));
    pty.send("\r");
    five_answers(&mut pty);
    let screen = end(pty);
    assert!(!screen.contains("error"), "{screen}");
    let history = fs::read_to_string(dir.path().join(".xdg-state/netdisk/history")).unwrap();
    assert_eq!(history.matches("ping three").count(), 2, "{history}");
}

#[test]
fn r21_keys_typed_during_a_transfer_run_after_it() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let data = bytes(8 << 20, 24);
    write_file(d, "big.bin", &data);
    success(netdisk(&server, d).args(["put", "big.bin"]));
    let down = d.join("down");
    fs::create_dir(&down).unwrap();
    let (proxy, passed, go) = gated_proxy(&server.addr, Hold::FromServer, 1 << 20);
    let mut pty = shell(&down, &proxy);
    pty.send("get big.bin\r");
    passed.recv_timeout(STARTED).expect("the download started");
    wait_for_part(&down, "big.bin");
    // Typed while the download waits on the server.
    pty.send(&five_pings());
    go.send(()).unwrap();
    pty.expect("downloaded big.bin");
    five_answers(&mut pty);
    end(pty);
    assert_eq!(md5(&fs::read(down.join("big.bin")).unwrap()), md5(&data));
}
