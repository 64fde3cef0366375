//! HTTP Basic authentication (RFC 7617) with the netdisk user name and
//! password, checked by the same login limiter and pace as `login`: a
//! failure counts as a failed login, the owner's known address is exempt
//! as there. Verified credentials are remembered (a SHA-256 of the header,
//! beside the account's password hash as it was), by the connection and
//! for [`REMEMBERED_FOR`] by the server, so that neither keep-alive
//! requests nor the new connections WebDAV clients open all the time hash
//! the password again or count as logins; a changed password or a removed
//! account no longer matches, and the next request is checked afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use ring::digest::{digest, SHA256};

use super::Front;
use crate::error::Error;
use crate::http::request::Request;
use crate::protocol::Password;
use crate::server::link::SessionState;
use crate::state::Shared;
use crate::users::User;

/// The challenge of every `401`.
pub const CHALLENGE: &str = "Basic realm=\"netdisk\", charset=\"UTF-8\"";

/// Credentials a connection verified.
pub struct Verified {
    /// SHA-256 of the `Authorization` header's value.
    header: [u8; 32],
    user: Arc<User>,
}

/// How long the server remembers credentials it verified.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(600);
/// Most credentials remembered at once (the oldest go first).
const MAX_REMEMBERED: usize = 4096;

/// Credentials verified lately, by the SHA-256 of their header.
#[derive(Default)]
pub struct Remembered(Mutex<HashMap<[u8; 32], Seen>>);

/// A user verified, and when.
type Seen = (Arc<User>, Instant);

impl Remembered {
    /// The user `print` was verified as, if that was lately and the
    /// account's password is still the one it had then.
    fn get(&self, shared: &Shared, print: &[u8; 32]) -> Option<Arc<User>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (user, at) = map.get(print)?;
        let now = shared.users.get(&user.key);
        match now {
            Some(now)
                if now.password_hash == user.password_hash && at.elapsed() < REMEMBERED_FOR =>
            {
                Some(now)
            }
            _ => {
                map.remove(print);
                None
            }
        }
    }

    fn put(&self, print: [u8; 32], user: Arc<User>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED {
            map.retain(|_, (_, at)| at.elapsed() < REMEMBERED_FOR);
            if map.len() >= MAX_REMEMBERED {
                if let Some(oldest) = map.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(print, (user, Instant::now()));
    }
}

fn fingerprint(value: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, value.as_bytes()).as_ref());
    out
}

/// The user a request's `Authorization: Basic` names.
///
/// # Errors
/// `NOT_LOGGED_IN` without credentials, `BAD_REQUEST` for malformed
/// ones, and whatever `login` answers (`AUTH_FAILED`, `RATE_LIMITED`).
pub fn authenticate(
    shared: &Shared,
    front: &Front,
    req: &Request,
    session: &mut SessionState,
) -> Result<Arc<User>, Error> {
    let Some(value) = req.header("authorization") else {
        return Err(Error::NotLoggedIn);
    };
    let print = fingerprint(value);
    if let Some(v) = &session.dav {
        if v.header == print {
            if let Some(now) = shared.users.get(&v.user.key) {
                if now.password_hash == v.user.password_hash {
                    return Ok(now);
                }
            }
        }
    }
    session.dav = None;
    let user = match shared.dav_auth.get(shared, &print) {
        Some(user) => user,
        None => {
            let (name, password) = decode(value)?;
            let user = shared
                .users
                .login(&name, &Password::new(password), &front.peer_ip)?;
            shared.dav_auth.put(print, Arc::clone(&user));
            user
        }
    };
    session.dav = Some(Verified {
        header: print,
        user: Arc::clone(&user),
    });
    Ok(user)
}

/// `(user, password)` of a `Basic` header value.
fn decode(value: &str) -> Result<(String, String), Error> {
    let (scheme, token) = value.split_once(' ').ok_or(Error::NotLoggedIn)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Error::NotLoggedIn);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| Error::bad_request("the Basic credentials are not base64"))?;
    let text = String::from_utf8(raw)
        .map_err(|_| Error::bad_request("the Basic credentials are not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| Error::bad_request("the Basic credentials have no ':'"))?;
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(
            decode("Basic YW5uOnNlIGNyZXQ6eA==").unwrap(),
            ("ann".into(), "se cret:x".into())
        );
        assert!(matches!(decode("Bearer x"), Err(Error::NotLoggedIn)));
        assert!(matches!(decode("Basic !!"), Err(Error::BadRequest(_))));
        assert!(matches!(decode("Basic YW5u"), Err(Error::BadRequest(_))));
    }
}
