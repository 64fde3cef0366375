//! `netdisk user …` on a running server: the server listens on a Unix
//! socket in its data directory (`admin.sock`, mode 0600, and only peers
//! with the server's own uid are answered); the command sends one JSON
//! request and prints the answer. With no server running, the command
//! makes the same change to `users.xlsx` itself: [`apply`] is the one code
//! path of both, so the output is the same either way.
//!
//! With `--db` there is no socket: the command changes the database
//! itself, while servers run, and a password change or removal signs the
//! user's web sessions out on every server (their rows go).
//!
//! The socket never leaves the host, so a new password may cross it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Password, UserStore};
use crate::error::Error;
use crate::names::canonical_user;

/// The largest request the socket reads.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long one admin exchange may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One change (or the listing).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Add { name: String, password: String },
    Passwd { name: String, password: String },
    Del { name: String },
    Quota { name: String, bytes: Option<u64> },
    List,
}

/// The answer: what to print, or why it failed.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    ok: bool,
    text: String,
}

/// The socket of a server running on `data`.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join("admin.sock")
}

/// What the store and storage need to apply an op, and what else to tell
/// (a password change signs the user's web sessions out).
pub struct Target<'a> {
    pub users: &'a UserStore,
    /// The users' folders, if they are in a data directory here (with
    /// `--db` and no data directory: none to make or move).
    pub storage: Option<&'a dyn crate::disk::Disk>,
    /// Called with the user's key after a password change or a removal.
    pub signed_out: &'a dyn Fn(&str),
}

/// An account error in words: `NOT_FOUND` names the user.
fn missing(name: &str) -> impl Fn(Error) -> String + '_ {
    move |e| match e {
        Error::NotFound => format!("there is no user {name}"),
        e => e.to_string(),
    }
}

/// Applies `op`: the text to print, or the error in words.
///
/// # Errors
/// The failure, as one line for the admin.
pub fn apply(op: &Op, t: &Target<'_>) -> Result<String, String> {
    match op {
        Op::Add { name, password } => {
            let key = canonical_user(name).map_err(|e| format!("cannot add {name}: {e}"))?;
            if t.users.get(&key).is_some() {
                return Err(format!("cannot add {name}: {}", Error::UserExists));
            }
            t.users
                .create(name, &Password::new(password), |key| {
                    t.storage.map_or(Ok(()), |s| {
                        s.create_home(key).map_err(crate::disk::io_error)
                    })
                })
                .map_err(|e| format!("cannot add {name}: {e}"))?;
            Ok(format!("added {name}\n"))
        }
        Op::Passwd { name, password } => {
            let u = t
                .users
                .set_password(name, &Password::new(password))
                .map_err(missing(name))?;
            (t.signed_out)(&u.key);
            Ok(format!("changed the password of {}\n", u.name))
        }
        Op::Del { name } => {
            let u = t
                .users
                .remove(name, |key| {
                    t.storage.map_or(Ok(()), |s| {
                        s.remove_home(key).map_err(crate::disk::io_error)
                    })
                })
                .map_err(missing(name))?;
            (t.signed_out)(&u.key);
            Ok(match t.storage.map(|s| s.attic()) {
                Some(Some(attic)) => format!(
                    "removed {}; their files are in {}\n",
                    u.name,
                    attic.display()
                ),
                Some(None) => format!("removed {} and their files\n", u.name),
                None => format!("removed {}\n", u.name),
            })
        }
        Op::Quota { name, bytes } => {
            let u = t.users.set_quota(name, *bytes).map_err(missing(name))?;
            Ok(match u.quota {
                Some(q) => format!("quota of {}: {q} bytes\n", u.name),
                None => format!("quota of {}: the server's --quota\n", u.name),
            })
        }
        Op::List => {
            let mut out = String::from("user\tquota_bytes\tcreated_at\n");
            for u in t.users.try_list().map_err(|e| e.to_string())? {
                let quota = u.quota.map_or_else(|| "-".to_string(), |q| q.to_string());
                let created = if u.created_at == 0 {
                    "-".to_string()
                } else {
                    format!("{} UTC", crate::cli::utc_time(u.created_at))
                };
                out.push_str(&format!("{}\t{quota}\t{created}\n", u.name));
            }
            Ok(out)
        }
    }
}

/// Listens on `data`'s admin socket (replacing one a crashed server left:
/// the caller holds the data directory's lock) and answers each request on
/// a thread of its own with `serve`. The socket file goes when the
/// returned guard is dropped; the thread ends with the process.
///
/// # Errors
/// If the socket cannot be made.
pub fn listen(
    data: &Path,
    serve: impl Fn(&Op) -> Result<String, String> + Send + Sync + 'static,
) -> io::Result<SocketFile> {
    let path = socket_path(data);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let serve = Arc::new(serve);
    let me = rustix::process::getuid();
    thread::Builder::new().name("admin".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let trusted = rustix::net::sockopt::socket_peercred(&stream)
                .is_ok_and(|cred| cred.uid == me || cred.uid.is_root());
            if !trusted {
                continue;
            }
            let serve = Arc::clone(&serve);
            let _ = thread::Builder::new()
                .name("admin-request".into())
                .spawn(move || answer(stream, &*serve));
        }
    })?;
    Ok(SocketFile(path))
}

/// The socket file, removed when the server stops.
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn answer(stream: UnixStream, serve: &dyn Fn(&Op) -> Result<String, String>) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let mut line = String::new();
    let read = BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line);
    let answer = match read.map_err(|e| e.to_string()).and_then(|_| {
        serde_json::from_str::<Op>(&line)
            .map_err(|e| format!("a request the server cannot read: {e}"))
    }) {
        Ok(op) => match serve(&op) {
            Ok(text) => Answer { ok: true, text },
            Err(text) => Answer { ok: false, text },
        },
        Err(text) => Answer { ok: false, text },
    };
    if let Ok(mut bytes) = serde_json::to_vec(&answer) {
        bytes.push(b'\n');
        let _ = (&stream).write_all(&bytes);
    }
}

/// Sends `op` to the server running on `data`: `None` if none listens
/// there (then the caller changes `users.xlsx` itself).
///
/// # Errors
/// (inside the `Some`) the server's refusal, or a broken exchange.
pub fn request(data: &Path, op: &Op) -> Option<Result<String, String>> {
    let stream = UnixStream::connect(socket_path(data)).ok()?;
    Some(exchange(&stream, op))
}

fn exchange(stream: &UnixStream, op: &Op) -> Result<String, String> {
    let broken = |e: io::Error| format!("the running server did not answer: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(broken)?;
    let mut bytes = serde_json::to_vec(op).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    let mut w = stream;
    w.write_all(&bytes).map_err(broken)?;
    let mut line = String::new();
    BufReader::new(stream.take(16 << 20))
        .read_line(&mut line)
        .map_err(broken)?;
    let answer: Answer =
        serde_json::from_str(&line).map_err(|_| "the running server did not answer".to_string())?;
    if answer.ok {
        Ok(answer.text)
    } else {
        Err(answer.text)
    }
}
