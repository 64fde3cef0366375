//! The listings' memory budget (issue 16): however small, listings wait
//! their turn and are all answered in full.

use std::thread;

use crate::protocol::put_all;
use crate::support::TestServer;

/// With a budget smaller than any one listing, six users listing their
/// own folders at once, again and again between changes, are all answered
/// with every file: one listing at a time, never a refusal.
#[test]
fn r16_listings_beyond_the_memory_budget_wait_their_turn() {
    let server = TestServer::with_args(&["--listing-memory", "1000"]);
    let users: Vec<String> = (0..6).map(|i| format!("lister{i}")).collect();
    thread::scope(|s| {
        for u in &users {
            let server = &server;
            s.spawn(move || {
                let mut c = server.user(u);
                for i in 0..20 {
                    put_all(&mut c, &format!("{i:02}-{}", "n".repeat(60)), b"x");
                }
                for round in 0..5 {
                    assert_eq!(c.ls().unwrap().len(), 20 + round);
                    put_all(&mut c, &format!("more-{round}"), b"y");
                }
            });
        }
    });
}
