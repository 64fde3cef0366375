//! How long a request to the store is tried again: a fault that may pass
//! (a 5xx, 429 or 503 SlowDown, a refused, reset or timed-out connection) is
//! retried after 100 ms, then 200, 400, 800: five attempts in about 1.5 s
//! of waiting, plus the requests' own timeouts. Anything else fails at once.

use std::thread::sleep;
use std::time::Duration;

use crate::error::Error;

/// What one attempt came to.
pub(crate) enum Attempt<T> {
    Done(T),
    /// A fault that may pass: tried again while attempts are left.
    Again(Error),
    /// A refusal that will not pass (a 4xx other than 429).
    Fail(Error),
}

/// The retry bound of a store's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt; each later wait doubles.
    pub first: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            attempts: 5,
            first: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    /// Runs `attempt` until it is done, fails, or the attempts run out; the
    /// last fault's message then says how many were made.
    pub(crate) fn run<T>(&self, mut attempt: impl FnMut() -> Attempt<T>) -> Result<T, Error> {
        let attempts = self.attempts.max(1);
        let mut wait = self.first;
        let mut made = 0;
        loop {
            made += 1;
            match attempt() {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(e) => return Err(e),
                Attempt::Again(e) if made >= attempts => {
                    return Err(match e {
                        Error::Internal(detail) if made > 1 => {
                            Error::Internal(format!("{detail} (after {made} attempts)"))
                        }
                        other => other,
                    })
                }
                Attempt::Again(_) => {
                    sleep(wait);
                    wait = wait.saturating_mul(2);
                }
            }
        }
    }
}

/// Whether an HTTP status from the store may pass if asked again.
pub(crate) fn transient_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Whether a fault of the connection (not an answer) may pass: refused,
/// reset, timed out, or a name that did not resolve; never a bad URL.
pub(crate) fn transient_transport(kind: ureq::ErrorKind) -> bool {
    matches!(
        kind,
        ureq::ErrorKind::ConnectionFailed
            | ureq::ErrorKind::Io
            | ureq::ErrorKind::Dns
            | ureq::ErrorKind::BadStatus
            | ureq::ErrorKind::ProxyConnect
    )
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Instant;

    use super::*;

    fn quick(attempts: u32) -> Backoff {
        Backoff {
            attempts,
            first: Duration::from_millis(5),
        }
    }

    #[test]
    fn a_passing_fault_is_tried_again_until_done() {
        let calls = Cell::new(0);
        let got = quick(5).run(|| {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Attempt::Again(Error::Internal("503".into()))
            } else {
                Attempt::Done(7)
            }
        });
        assert_eq!(got.unwrap(), 7);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn a_refusal_fails_at_once() {
        let calls = Cell::new(0);
        let got: Result<(), _> = quick(5).run(|| {
            calls.set(calls.get() + 1);
            Attempt::Fail(Error::Internal("S3 put: 403 AccessDenied".into()))
        });
        assert_eq!(
            got.unwrap_err().to_string(),
            "internal error: S3 put: 403 AccessDenied"
        );
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn the_attempts_are_bounded_and_the_waits_double() {
        let calls = Cell::new(0);
        let start = Instant::now();
        let got: Result<(), _> = quick(4).run(|| {
            calls.set(calls.get() + 1);
            Attempt::Again(Error::Internal("S3 get: 500 InternalError".into()))
        });
        let waited = start.elapsed();
        assert_eq!(calls.get(), 4);
        assert_eq!(
            got.unwrap_err().to_string(),
            "internal error: S3 get: 500 InternalError (after 4 attempts)"
        );
        // 5 + 10 + 20 ms.
        assert!(waited >= Duration::from_millis(35), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }

    #[test]
    fn the_default_bound_waits_about_a_second_and_a_half() {
        let b = Backoff::default();
        let total: u64 = (0..b.attempts - 1).map(|i| 100 << i).sum();
        assert_eq!(total, 1500);
    }

    #[test]
    fn which_statuses_pass() {
        for s in [429, 500, 502, 503, 504] {
            assert!(transient_status(s), "{s}");
        }
        for s in [400, 403, 404, 409, 411, 416] {
            assert!(!transient_status(s), "{s}");
        }
    }
}
