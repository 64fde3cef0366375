//! The floods of issue 16 items 3–6, for the attack bench (`attack.rs`
//! measures the honest client beside each):
//! - anonymous HTTP keep-alive connections, each having sent one `GET /`,
//!   from 160 addresses (127.0.0.20–179), more than the server's table
//!   holds, each opened again when the server closes it;
//! - 120 connections from 8 addresses logging in with the right password
//!   as the attacker's accounts, again and again;
//! - 4 keep-alive connections asking for paths that do not exist, each new
//!   (the log's growth is measured);
//! - 16 users each listing their own folder of many files, changing it
//!   before each `ls` so that no listing is shared.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use md5::Digest;
use netdisk::client::Client;
use netdisk::protocol::{md5_hex, Password};

use super::load::connect_from;
use super::PASSWORD;

/// A flood.
#[derive(Clone, Copy)]
pub enum Flood {
    KeepAlive,
    Logins,
    NotFound,
    Listings,
}

/// Keep-alive connections the flood keeps open (the server it runs
/// against has 10,000 descriptors: a table of about 9,850).
const KEEP_ALIVE: usize = 12_000;
const KEEP_ALIVE_ADDRESSES: usize = 160;
const LOGIN_CONNECTIONS: usize = 120;
/// The listing users.
pub const LISTERS: usize = 16;

/// The listing users' names.
pub fn lister(i: usize) -> String {
    format!("lister{i}")
}

/// Puts `files` empty files with long names, and their digest records,
/// straight into `key`'s folder under `data`.
pub fn fill_folder(data: &Path, key: &str, files: usize) {
    let home = data.join("users").join(key);
    let empty = md5_hex(md5::Md5::digest(b""));
    for i in 0..files {
        let path = home
            .join("files")
            .join(format!("{i:06}{}", "x".repeat(200)));
        fs::write(&path, b"").expect("write");
        let meta = fs::metadata(&path).expect("stat");
        let ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let record = format!("0 {ns} {empty}\n");
        if xattr::set(&path, "user.netdisk.md5", record.as_bytes()).is_err() {
            fs::write(home.join("digests").join(meta.ino().to_string()), record).expect("record");
        }
    }
}

/// Starts `flood` until `stop`; each thread returns how many requests (or
/// connections) it made.
pub fn start(
    addr: &str,
    flood: Flood,
    stop: &Arc<AtomicBool>,
    attackers: &[&str],
) -> Vec<JoinHandle<usize>> {
    let spawn = |f: Box<dyn FnOnce() -> usize + Send>| thread::spawn(f);
    let addr = addr.to_string();
    match flood {
        Flood::KeepAlive => (0..16)
            .map(|t| {
                let (addr, stop) = (addr.clone(), Arc::clone(stop));
                spawn(Box::new(move || keep_alive(&addr, t, &stop)))
            })
            .collect(),
        Flood::Logins => (0..LOGIN_CONNECTIONS)
            .map(|i| {
                let (addr, stop) = (addr.clone(), Arc::clone(stop));
                let me = attackers[i % attackers.len()].to_string();
                spawn(Box::new(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(s) = connect_from(&addr, 10 + (i % 8) as u8) else {
                            continue;
                        };
                        let Ok(mut c) = Client::from_stream(s) else {
                            continue;
                        };
                        n += 1;
                        if c.login(&me, &Password::new(PASSWORD)).is_err() {
                            // Refused at once: again, a moment later.
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                    n
                }))
            })
            .collect(),
        Flood::NotFound => (0..4)
            .map(|i| {
                let (addr, stop) = (addr.clone(), Arc::clone(stop));
                spawn(Box::new(move || not_found(&addr, i, &stop)))
            })
            .collect(),
        Flood::Listings => (0..LISTERS)
            .map(|i| {
                let (addr, stop) = (addr.clone(), Arc::clone(stop));
                spawn(Box::new(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(s) = connect_from(&addr, 30 + i as u8) else {
                            continue;
                        };
                        let Ok(mut c) = Client::from_stream(s) else {
                            continue;
                        };
                        if c.login(&lister(i), &Password::new(PASSWORD)).is_err() {
                            thread::sleep(Duration::from_millis(200));
                            continue;
                        }
                        while !stop.load(Ordering::Relaxed) {
                            // A change, so that no listing is shared.
                            let _ = c.mkdir(&format!("churn{n}"));
                            if c.ls().is_err() {
                                break;
                            }
                            n += 1;
                        }
                    }
                    n
                }))
            })
            .collect(),
    }
}

/// One thread's share of the keep-alive flood: its ten addresses, their
/// connections opened, each sending one `GET /`, read and forgotten, and
/// opened again when closed.
fn keep_alive(addr: &str, t: usize, stop: &AtomicBool) -> usize {
    let per_thread = KEEP_ALIVE / 16;
    let addresses = KEEP_ALIVE_ADDRESSES / 16;
    let mut conns: Vec<Option<TcpStream>> = (0..per_thread).map(|_| None).collect();
    let mut opened = 0;
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        for (j, slot) in conns.iter_mut().enumerate() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if slot.is_none() {
                let from = 20 + (t * addresses + j % addresses) as u8;
                let Ok(mut s) = connect_from(addr, from) else {
                    continue;
                };
                if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err()
                    || s.set_nonblocking(true).is_err()
                {
                    continue;
                }
                opened += 1;
                *slot = Some(s);
            }
            let closed = match slot.as_mut().map(|s| s.read(&mut buf)) {
                Some(Ok(0)) => true,
                Some(Err(e)) => e.kind() != std::io::ErrorKind::WouldBlock,
                _ => false,
            };
            if closed {
                *slot = None;
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    opened
}

/// One keep-alive connection asking for a new path that does not exist
/// each time, reading each answer; opened again when closed.
fn not_found(addr: &str, i: usize, stop: &AtomicBool) -> usize {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = connect_from(addr, 10 + i as u8) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut pending = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let req = format!(
                "GET /nothing/{i}/{n}/{} HTTP/1.1\r\nHost: x\r\n\r\n",
                "z".repeat(40)
            );
            if s.write_all(req.as_bytes()).is_err() || !read_response(&mut s, &mut pending) {
                break;
            }
            n += 1;
        }
    }
    n
}

/// Reads one HTTP response (head and `Content-Length` body); `false` once
/// the connection is closed.
fn read_response(s: &mut TcpStream, pending: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 8192];
    loop {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        if let Ok(httparse::Status::Complete(head)) = r.parse(pending) {
            let len: usize = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .unwrap_or(0);
            while pending.len() < head + len {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return false,
                    Ok(k) => pending.extend_from_slice(&buf[..k]),
                }
            }
            pending.drain(..head + len);
            return true;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(k) => pending.extend_from_slice(&buf[..k]),
        }
    }
}
