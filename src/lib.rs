//! netdisk: a small self-hosted network disk.
//!
//! - [`protocol`]: frames, headers, digests and wire types of the protocol
//!   (`docs/PROTOCOL.md`), and the deadlines that sit on the socket.
//! - [`error`]: [`error::Error`] by cause and the one mapping to wire codes.
//! - [`names`]: user-name, file-name and password rules.
//! - [`users`]: accounts in `users.xlsx`, admin changes, known addresses;
//!   login and registration limits ([`ratelimit`]).
//! - [`password`]: argon2id hashes in memory reused per hashing thread.
//! - [`hashcopy`]: transfers that hash on a second thread as they move bytes.
//! - [`storage`]: users' folders, staged uploads, cached digests, listings.
//! - [`state`]: what every request reaches, whichever front end carries it.
//! - [`server`]: the event loop (accept, limits, TLS handshakes, headers),
//!   the worker pool, and the session that serves one request.
//! - [`http`]: the web front end: HTTP/1.1, web sessions, the JSON API and
//!   the page.
//! - [`tls`]: certificates, fingerprints and trust on first use.
//! - [`commands`]: one module per wire command and the dispatch table
//!   (the top-level `commands/` folder).
//! - [`client`]: a protocol client over plaintext or TLS.
//! - [`cli`]: the command-line client: one-shot commands and the shell.

pub mod cli;
pub mod client;
#[path = "../commands/mod.rs"]
pub mod commands;
pub mod db;
pub mod disk;
pub mod error;
pub mod hashcopy;
pub mod http;
pub mod locks;
pub mod migrate;
pub mod names;
pub mod password;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod storage;
pub mod tls;
pub mod users;
