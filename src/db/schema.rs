//! The schema, one migration per entry: never edit one that has shipped,
//! append a new one.

/// Migrations in order; the database's `schema_version` is how many of
/// them it has applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: accounts, the tree, unfinished uploads, retired blobs, settings.
    r#"
CREATE TABLE accounts (
    id            bigserial PRIMARY KEY,
    -- NFC + lowercase: the identity (unique: registration races lose here).
    key           text NOT NULL UNIQUE,
    name          text NOT NULL,
    password_hash text NOT NULL,
    created_at    bigint NOT NULL,
    -- NULL: the server's --quota.
    quota         bigint,
    -- The tree's files and bytes, and the unfinished uploads' count and
    -- declared bytes: kept by the same statements that change them, so a
    -- quota is checked by one conditional UPDATE.
    used_files    bigint NOT NULL DEFAULT 0,
    used_bytes    bigint NOT NULL DEFAULT 0,
    staged_count  integer NOT NULL DEFAULT 0,
    staged_bytes  bigint NOT NULL DEFAULT 0
);

-- Folders and files. The root is implicit; `path` is the whole path below
-- it, `parent` the folder's path ('' for the root).
CREATE TABLE nodes (
    account bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    path    text NOT NULL COLLATE "C",
    parent  text NOT NULL COLLATE "C",
    is_dir  boolean NOT NULL,
    size    bigint NOT NULL DEFAULT 0,
    mtime   bigint NOT NULL,
    md5     text,
    -- The content key of a file's bytes (blobs/KEY).
    blob    text,
    -- WebDAV dead properties: [{ns, name, xml}].
    props   jsonb,
    PRIMARY KEY (account, path)
);
CREATE INDEX nodes_by_parent ON nodes (account, parent);

-- Unfinished uploads: the bytes are in blobs/BLOB; `hashed` of them are
-- summed in `hash_state` (md-5's serialized state). `holder` is the
-- connection uploading it now (server id / claim), alive while its server
-- refreshes `heartbeat`.
CREATE TABLE staged (
    account    bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    path       text NOT NULL COLLATE "C",
    size       bigint NOT NULL,
    blob       text NOT NULL,
    hashed     bigint NOT NULL DEFAULT 0,
    hash_state bytea,
    holder     text,
    heartbeat  bigint NOT NULL DEFAULT 0,
    created_at bigint NOT NULL,
    PRIMARY KEY (account, path)
);

-- Blobs no row refers to any more, deleted by whichever server gets there.
CREATE TABLE retired (
    blob  text PRIMARY KEY,
    since bigint NOT NULL
);

-- Server-wide values (the TLS certificate every server presents).
CREATE TABLE settings (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
"#,
    // 2: login limits, known addresses, web sessions.
    r#"
-- Fixed-window counters of the guessing limits (ratelimit.rs), shared by
-- every server: `key` is a JSON array naming what is counted, times are
-- the database's clock in milliseconds.
CREATE TABLE login_limits (
    key          text PRIMARY KEY,
    window_start bigint NOT NULL,
    counted      integer NOT NULL DEFAULT 0,
    in_flight    integer NOT NULL DEFAULT 0
);
CREATE INDEX login_limits_by_start ON login_limits (window_start);

-- Where each user logged in from lately (users/known.rs), Unix seconds.
CREATE TABLE known_addresses (
    account    bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address    text NOT NULL,
    last_login bigint NOT NULL,
    PRIMARY KEY (account, address)
);

-- Signed-in browsers (http/sessions.rs): the SHA-256 of the cookie's
-- token, never the token. Times in the database's milliseconds.
CREATE TABLE web_sessions (
    token_hash bytea PRIMARY KEY,
    seq        bigserial NOT NULL,
    account    bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    csrf       text NOT NULL,
    created_at bigint NOT NULL,
    last_seen  bigint NOT NULL
);
CREATE INDEX web_sessions_by_account ON web_sessions (account, seq);
CREATE INDEX web_sessions_by_last_seen ON web_sessions (last_seen);
"#,
    // 3: file bytes in S3 (`serve --blobs`): an unfinished upload's
    // multipart upload, the parts it has sent, and the bytes after them
    // when it stopped; a retired upload's id, for the sweeper to abort it.
    r#"
ALTER TABLE staged ADD COLUMN upload_id text, ADD COLUMN parts jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN tail bytea;
ALTER TABLE retired ADD COLUMN upload_id text;
"#,
    // 4: which file names a blob, for the sweeper to find local blobs no
    // row names (an upload in one go cut short by a crash before its
    // commit).
    r#"
CREATE INDEX nodes_by_blob ON nodes (blob) WHERE blob IS NOT NULL;
"#,
];
