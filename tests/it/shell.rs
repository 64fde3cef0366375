//! The shell on a terminal (issue 10): history across sessions without the
//! password, Tab completion of commands and remote names, Ctrl-C at the
//! prompt and during a transfer, and the local commands.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::cli::{netdisk, setup, success, USER};
use crate::pty::Pty;
use crate::support::*;

pub(crate) const PROMPT: &str = "netdisk:/> ";
/// What the line editor writes when it starts reading a line.
const READY: &str = "\x1b[?2004h";

/// The shell in `dir`, logged in as [`USER`] at `addr`.
pub(crate) fn shell(dir: &Path, addr: &str) -> Pty {
    let mut pty = Pty::spawn(
        dir,
        &["shell"],
        &[
            ("NETDISK_SERVER", addr),
            ("NETDISK_USER", USER),
            ("NETDISK_PASSWORD", PASSWORD),
        ],
    );
    pty.expect("logged in as alice");
    pty.expect(PROMPT);
    pty
}

/// Ends the shell with Ctrl-D; it must exit 0.
#[track_caller]
pub(crate) fn end(mut pty: Pty) -> String {
    pty.send("\x04");
    let (status, screen) = pty.finish();
    assert!(status.success(), "{status:?}\n{screen}");
    screen
}

#[test]
fn r10_history_is_kept_across_sessions_without_the_password() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "small.bin"]));
    let mut pty = shell(d, &server.addr);
    pty.send("whoami\r");
    pty.expect("files:  1");
    pty.expect(PROMPT);
    // The password, typed at the prompt by mistake: an unknown command,
    // and not kept.
    pty.send(&format!("{PASSWORD}\r"));
    pty.expect("error: ");
    pty.expect(PROMPT);
    end(pty);
    let history = fs::read_to_string(d.join(".xdg-state/netdisk/history")).unwrap();
    assert!(history.contains("whoami"), "{history}");
    assert!(!history.contains(PASSWORD), "{history}");

    // A new session: Up brings back `whoami`. A line cut short by Ctrl-C
    // does not run.
    let mut pty = shell(d, &server.addr);
    pty.send("rm small.bin");
    pty.expect("rm small.bin");
    pty.send("\x03");
    // Keys typed before the next line starts die with the line Ctrl-C
    // ended: wait until the editor has the terminal again (it turns on
    // bracketed paste then, after raw mode).
    pty.expect(READY);
    pty.send("\x1b[A\r");
    pty.expect("files:  1");
    pty.expect(PROMPT);
    end(pty);
    assert!(server.is_stored(USER, "small.bin"));
}

#[test]
fn r10_tab_completes_commands_and_remote_names() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "报告.txt", "my file.txt", "small.bin"]));
    let down = d.join("down");
    fs::create_dir(&down).unwrap();
    let mut pty = shell(&down, &server.addr);
    pty.send("who\t\r");
    pty.expect("files:  3");
    pty.expect(PROMPT);
    pty.send("get 报\t\r");
    pty.expect("downloaded 报告.txt");
    pty.expect(PROMPT);
    pty.send("get my\t\r");
    pty.expect("downloaded my file.txt");
    pty.expect(PROMPT);
    // A name uploaded in this session completes too: the listing is
    // refreshed after a change.
    pty.send("put ../small.bin --as 新文件.bin\r");
    pty.expect("uploaded 新文件.bin");
    pty.expect(PROMPT);
    pty.send("rm 新\t\r");
    pty.expect("removed 新文件.bin");
    pty.expect(PROMPT);
    end(pty);
    for name in ["报告.txt", "my file.txt"] {
        assert_eq!(
            fs::read(down.join(name)).unwrap(),
            fs::read(d.join(name)).unwrap()
        );
    }
}

#[test]
fn r10_lcd_then_get_saves_in_the_new_folder() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    success(netdisk(&server, d).args(["put", "small.bin", "--as", "s.bin"]));
    fs::create_dir(d.join("down")).unwrap();
    let mut pty = shell(d, &server.addr);
    // Tab completes the local folder name.
    pty.send("lcd do\t\r");
    pty.expect(PROMPT);
    pty.send("lpwd\r");
    pty.expect("/down\r\n");
    pty.send("get s.bin\r");
    pty.expect("downloaded s.bin");
    pty.expect(PROMPT);
    pty.send("lls\r");
    pty.expect("NAME");
    pty.expect("s.bin");
    pty.expect(PROMPT);
    end(pty);
    assert_eq!(
        fs::read(d.join("down/s.bin")).unwrap(),
        fs::read(d.join("small.bin")).unwrap()
    );
    assert!(!d.join("s.bin").exists());
}

/// Which way a [`gated_proxy`] holds bytes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// What the server sends (a download).
    FromServer,
    /// What the client sends (an upload).
    FromClient,
}

/// A proxy to `upstream`. On its first connection it passes the first
/// `limit` bytes going the `hold` way, says so on the first channel, and
/// passes the rest only once the test sends on the second. Later
/// connections pass straight through.
pub(crate) fn gated_proxy(
    upstream: &str,
    hold: Hold,
    limit: u64,
) -> (String, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    let (passed_tx, passed_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let mut gate = Some((passed_tx, go_rx));
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&upstream) else {
                return;
            };
            let gate = gate.take();
            thread::spawn(move || {
                let (up, down) = match hold {
                    Hold::FromServer => (None, gate),
                    Hold::FromClient => (gate, None),
                };
                let c2s = {
                    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    thread::spawn(move || pipe(c, s, up, limit))
                };
                pipe(server, client, down, limit);
                let _ = c2s.join();
            });
        }
    });
    (addr, passed_rx, go_tx)
}

/// Copies `from` to `to`, first `limit` bytes then (with a gate) waiting
/// for the go; then closes `to`'s sending side.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    gate: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    limit: u64,
) {
    if let Some((passed, go)) = gate {
        let moved = io::copy(&mut (&from).take(limit), &mut to).unwrap_or(0);
        let _ = passed.send(());
        if moved < limit || go.recv().is_err() {
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
    }
    let _ = io::copy(&mut from, &mut to);
    let _ = to.flush();
    let _ = to.shutdown(Shutdown::Write);
}

/// How long the test waits for the proxy to have passed its bytes.
pub(crate) const STARTED: Duration = Duration::from_secs(60);
/// What a download behind a [`gated_proxy`] of 1 MiB writes for sure
/// before it waits: three whole chunks (the headers before the body take
/// less than the rest of the mebibyte).
const KEPT: u64 = 3 * netdisk::hashcopy::CHUNK as u64;

/// Waits until the part file of `name` in `dir` holds [`KEPT`] bytes: the
/// download is under way, and Ctrl-C now leaves something to resume.
pub(crate) fn wait_for_part(dir: &Path, name: &str) -> std::path::PathBuf {
    let part = dir.join(format!(".netdisk-{}.part", md5(name.as_bytes())));
    wait_for_size(&part, KEPT, || true);
    part
}

#[test]
fn r10_ctrl_c_cancels_a_get_keeps_the_part_and_the_next_get_resumes() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    let data = bytes(8 << 20, 21);
    write_file(d, "big.bin", &data);
    success(netdisk(&server, d).args(["put", "big.bin"]));
    let down = d.join("down");
    fs::create_dir(&down).unwrap();
    let (proxy, passed, go) = gated_proxy(&server.addr, Hold::FromServer, 1 << 20);
    let mut pty = shell(&down, &proxy);
    // The hint repeats the command as typed, -o and all.
    pty.send("get big.bin  -o ./big.bin\r");
    passed.recv_timeout(STARTED).expect("the download started");
    let part = wait_for_part(&down, "big.bin");
    pty.send("\x03");
    pty.expect("cancelling the transfer");
    go.send(()).unwrap();
    pty.expect("cancelled; kept ");
    pty.expect("`get big.bin  -o ./big.bin` continues it");
    pty.expect(PROMPT);
    assert!(!down.join("big.bin").exists());
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept >= KEPT && kept < data.len() as u64, "{kept}");

    pty.send("get big.bin\r");
    pty.expect("resuming the interrupted download at");
    pty.expect("downloaded big.bin (8.0 MiB, resumed at");
    pty.expect(PROMPT);
    end(pty);
    assert_eq!(md5(&fs::read(down.join("big.bin")).unwrap()), md5(&data));
}

#[test]
fn r10_ctrl_c_cancels_a_put_the_server_keeps_it_and_the_next_put_resumes() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    // Larger than what the sockets on the way can buffer, so the upload
    // is still sending when Ctrl-C comes.
    let data = bytes(48 << 20, 22);
    write_file(d, "big.bin", &data);
    let (proxy, passed, go) = gated_proxy(&server.addr, Hold::FromClient, 1 << 20);
    let mut pty = shell(d, &proxy);
    pty.send("put big.bin\r");
    passed.recv_timeout(STARTED).expect("the upload started");
    pty.send("\x03");
    pty.expect("cancelling the transfer");
    go.send(()).unwrap();
    pty.expect("cancelled; ");
    pty.expect("`put big.bin` continues it");
    pty.expect(PROMPT);
    assert!(!server.is_stored(USER, "big.bin"));
    // The server lets go of the name once it sees the connection close.
    server.wait_for_log("\"put\" \"big.bin\"");

    pty.send("put big.bin\r");
    pty.expect("resuming the upload at");
    pty.expect("uploaded big.bin (48.0 MiB, resumed at");
    pty.expect(PROMPT);
    end(pty);
    let stored = server.stored(USER, "big.bin").unwrap();
    assert_eq!(md5(&stored), md5(&data));
}

#[test]
fn r10_ctrl_c_cancels_the_whole_of_a_several_file_get() {
    let (server, dir) = setup(&[]);
    let d = dir.path();
    write_file(d, "big.bin", &bytes(8 << 20, 23));
    success(netdisk(&server, d).args(["put", "big.bin", "small.bin"]));
    let down = d.join("down");
    fs::create_dir(&down).unwrap();
    let (proxy, passed, go) = gated_proxy(&server.addr, Hold::FromServer, 1 << 20);
    let mut pty = shell(&down, &proxy);
    pty.send("get big.bin small.bin -j 1\r");
    passed.recv_timeout(STARTED).expect("the download started");
    wait_for_part(&down, "big.bin");
    pty.send("\x03");
    pty.expect("cancelling the transfer");
    go.send(()).unwrap();
    pty.expect("big.bin: cancelled; kept ");
    pty.expect(" of big.bin in ");
    pty.expect("small.bin: cancelled; nothing was kept");
    pty.expect("error: 2 of 2 downloads failed");
    pty.expect(PROMPT);
    end(pty);
    let names: Vec<String> = fs::read_dir(&down)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".xdg-state")
        .collect();
    assert_eq!(names.len(), 1, "only the part file of big.bin: {names:?}");
    assert!(names[0].ends_with(".part"), "{names:?}");
}
