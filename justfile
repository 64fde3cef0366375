# netdisk development recipes (install just with `cargo install just`).

# List the recipes
default:
    @just --list

# Build debug binaries
build:
    cargo build

# Run every test (unit, integration, snapshot)
test:
    cargo test

# Format the code
fmt:
    cargo fmt

# Lint with warnings as errors
lint:
    cargo clippy --all-targets -- -D warnings

# Everything CI checks: format, lint, tests
check:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
    cargo test

# Re-record insta snapshots, then show what changed
snap:
    INSTA_UPDATE=always cargo test
    git diff --stat -- tests/it/snapshots

# Run the server on 127.0.0.1:9000 with ./netdisk-data
serve *ARGS:
    cargo run --release -- serve {{ARGS}}

# Open an interactive client session (NETDISK_SERVER, NETDISK_USER, NETDISK_PASSWORD apply)
client *ARGS:
    cargo run --release -- shell {{ARGS}}

# Benchmark transfers against the MD5 and loopback ceilings (`just bench --quick` for a short run)
bench *ARGS:
    cargo build --release
    cargo bench --bench transfer -- {{ARGS}}

# A web upload in headless Chromium against the CLI's put of the same file, HTTPS on loopback (SIZE_MIB=1024)
bench-browser:
    cargo build --release
    cd tests/browser && node bench.js
