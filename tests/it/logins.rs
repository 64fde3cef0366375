//! The pace of logins that get in (issue 16): a burst per user and per
//! address, then a few a second; a login beyond it waits for its turn
//! off the workers, or is `RATE_LIMITED` with the seconds to wait.

use std::thread;

use serde_json::json;

use crate::http::Web;
use crate::support::{assert_code, Raw, TestServer, PASSWORD};

fn login(raw: &mut Raw, user: &str, password: &str) -> serde_json::Value {
    raw.call(json!({"cmd": "login", "user": user, "password": password}))
}

/// Registers `users` (from 127.0.0.1, which then logs in no more).
fn register(server: &TestServer, users: &[&str]) {
    let mut c = server.client();
    for u in users {
        c.register(u, &crate::support::pw()).unwrap();
    }
}

/// With a burst of 2 that never refills and no waiting: a user gets 2
/// logins from any addresses, an address 8 (4 × 2) for any users; a
/// refused login spends nothing, a failed one spends none of the user's;
/// the web sign-in keeps the same pace and says when to come back.
#[test]
fn r16_a_burst_of_right_logins_is_limited_per_user_and_per_address() {
    let server = TestServer::with_args(&[
        "--login-burst",
        "2",
        "--login-rate",
        "0.0001",
        "--login-wait",
        "0",
        "--register-limit",
        "100",
    ]);
    let users: Vec<String> = (0..9).map(|i| format!("u{i}")).collect();
    let mut all: Vec<&str> = users.iter().map(String::as_str).collect();
    all.extend(["alice", "bob", "dave"]);
    register(&server, &all);

    // Per user, across addresses.
    assert_eq!(
        login(&mut server.raw_from(2), "alice", PASSWORD)["user"],
        "alice"
    );
    assert_eq!(
        login(&mut server.raw_from(3), "alice", PASSWORD)["user"],
        "alice"
    );
    let r = login(&mut server.raw_from(4), "ALICE", PASSWORD);
    assert_code(&r, "RATE_LIMITED");
    let message = r["message"].as_str().unwrap();
    assert!(message.contains("too many logins"), "{message}");
    // ...and on the web, with Retry-After in seconds.
    let mut web = Web::plain_from(&server, 4);
    let r = web.post(
        "/api/login",
        &json!({"user": "alice", "password": PASSWORD}),
    );
    r.error(429, "RATE_LIMITED");
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(after > 60, "{after}");

    // Per address, across users: 8 from 127.0.0.5, then none.
    let mut raw = server.raw_from(5);
    for u in &users[..8] {
        assert_eq!(login(&mut raw, u, PASSWORD)["user"], *u);
    }
    assert_code(&login(&mut raw, &users[8], PASSWORD), "RATE_LIMITED");
    assert_code(&login(&mut raw, "bob", PASSWORD), "RATE_LIMITED");
    // Those refusals took none of bob's or u8's logins.
    assert_eq!(
        login(&mut server.raw_from(6), "bob", PASSWORD)["user"],
        "bob"
    );
    assert_eq!(login(&mut server.raw_from(6), "u8", PASSWORD)["user"], "u8");
    // The refused connection is still logged in as before.
    assert_eq!(raw.call(json!({"cmd": "whoami"}))["user"], "u7");

    // A stranger's wrong guesses spend none of dave's logins.
    let mut guesser = server.raw_from(7);
    for _ in 0..3 {
        assert_code(
            &login(&mut guesser, "dave", "not the password"),
            "AUTH_FAILED",
        );
    }
    for n in [8, 9] {
        assert_eq!(
            login(&mut server.raw_from(n), "dave", PASSWORD)["user"],
            "dave"
        );
    }
    assert_code(
        &login(&mut server.raw_from(10), "dave", PASSWORD),
        "RATE_LIMITED",
    );
}

/// Logins beyond the burst wait for their turn and then get in: six at
/// once for one user, with a burst of 1 and 4 a second, all succeed, on
/// one worker that stays free for other requests meanwhile.
#[test]
fn r16_logins_beyond_the_burst_wait_for_their_turn() {
    let server = TestServer::with_args(&[
        "--workers",
        "1",
        "--login-burst",
        "1",
        "--login-rate",
        "4",
        "--login-wait",
        "30",
    ]);
    register(&server, &["alice"]);
    let users = thread::scope(|s| {
        let waiting: Vec<_> = (0..6)
            .map(|_| {
                let mut raw = server.raw();
                s.spawn(move || login(&mut raw, "alice", PASSWORD))
            })
            .collect();
        let pong = server.raw().call(json!({"cmd": "ping"}));
        assert_eq!(pong["ok"], true, "{pong}");
        waiting
            .into_iter()
            .map(|t| t.join().unwrap()["user"].clone())
            .collect::<Vec<_>>()
    });
    assert!(users.iter().all(|u| u == "alice"), "{users:?}");
    // The web sign-in waits the same way.
    let mut web = Web::plain(&server);
    for _ in 0..2 {
        web.sign_in("alice");
    }
}
