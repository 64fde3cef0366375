//! Integration tests: a real server on loopback, driven over real TCP by the
//! protocol client, raw frames, and the real command-line client.

mod support;

mod abuse;
mod admin;
mod cli;
mod cli_transfer;
mod concurrency;
mod hostile;
mod lifecycle;
mod protocol;
mod smoke;
mod terminal;
mod transfer;
