//! Integration tests: a real server on loopback, driven over real TCP by the
//! protocol client, raw frames, and the real command-line client.

mod serve;
mod support;

mod abuse;
mod accounts_db;
mod admin;
mod bodies;
mod browser;
mod budget;
mod cli;
mod cli_folders;
mod cli_transfer;
mod cluster;
mod concurrency;
mod dav;
mod dav_clients;
mod disk_db;
mod exit_codes;
mod folders;
mod hostile;
mod http;
mod http_folders;
mod lifecycle;
mod limits;
mod logins;
mod logs;
mod migrate;
mod ping;
mod pipeline;
mod profile;
mod protocol;
mod proxy;
mod proxy_haproxy;
mod pty;
mod s3;
mod sheet;
mod shell;
mod smoke;
mod start;
mod terminal;
mod tls;
mod transfer;
mod typeahead;
mod words;
