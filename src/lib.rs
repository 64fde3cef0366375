//! netdisk: a small self-hosted network disk.
//!
//! - [`protocol`]: frames, headers and digests of the wire protocol (`docs/PROTOCOL.md`).
//! - [`error`]: [`error::Error`] by cause and the one mapping to wire codes.
//! - [`names`]: user-name, file-name and password rules.
//! - [`users`]: accounts in `users.xlsx` and login limits ([`ratelimit`]).
//! - [`password`]: argon2id hashes in memory reused per hashing thread.
//! - [`hashcopy`]: transfers that hash on a second thread as they move bytes.
//! - [`storage`]: users' folders, staged uploads, cached digests.
//! - [`server`]: accept loop, worker pool, sessions.
//! - [`http`]: the web front end: HTTP/1.1, the JSON API and the page.
//! - [`commands`]: one module per wire command and the dispatch table
//!   (the top-level `commands/` folder).
//! - [`client`]: a protocol client, used by the command-line client.

pub mod cli;
pub mod client;
#[path = "../commands/mod.rs"]
pub mod commands;
pub mod error;
pub mod hashcopy;
pub mod http;
pub mod names;
pub mod password;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod storage;
pub mod tls;
pub mod users;
