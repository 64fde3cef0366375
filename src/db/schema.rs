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
];
