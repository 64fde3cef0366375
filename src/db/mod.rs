//! PostgreSQL: the connection pool and the versioned schema (`serve --db`).
//!
//! Everything a server keeps about accounts, folders, files, unfinished
//! uploads, login limits and web sessions lives here when `--db` is given,
//! so that several servers in front of one database serve one disk. The
//! file bytes stay in the data directory (`blobs/`), keyed by a generated id,
//! never by the user's path: a rename is one `UPDATE`.
//!
//! The schema is a list of migrations ([`MIGRATIONS`]); each server applies
//! the ones the database lacks at start, in one transaction each, under an
//! advisory lock (two servers starting together never apply one twice), and
//! refuses to start against a database whose schema is newer than it knows.

mod schema;
#[doc(hidden)]
pub mod testing;
mod tls;

use std::time::Duration;

use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use schema::MIGRATIONS;

/// A pool of connections to one database.
pub type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;
/// One connection taken from the [`Pool`].
pub type Conn = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// Connections a server keeps open at most: one per worker would be 32 per
/// server, too many for a default PostgreSQL (100) behind a few servers.
/// Requests wait for one instead (at most [`CHECKOUT_WAIT`]).
pub const POOL_SIZE: u32 = 16;
/// How long a request waits for a free connection before `INTERNAL`.
pub const CHECKOUT_WAIT: Duration = Duration::from_secs(10);

/// Key of the advisory lock held while migrations run.
const MIGRATION_LOCK: i64 = 0x006e_6574_6469_736b; // "netdisk"

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Connects to `url`, applies the migrations it lacks, and returns a pool.
///
/// # Errors
/// If the database cannot be reached (the message names the URL without
/// its password), or its schema is newer than this server knows.
pub fn open(url: &str) -> anyhow::Result<Pool> {
    open_as(url, "netdisk")
}

/// The `application_name` of a server's connections: how other servers
/// tell that it is alive (see `disk::db`).
pub fn server_name(server: &str) -> String {
    format!("netdisk/{server}")
}

/// [`open`], the connections named `application_name`.
///
/// # Errors
/// As [`open`].
pub fn open_as(url: &str, application_name: &str) -> anyhow::Result<Pool> {
    let shown = redact(url);
    let (mut config, tls) = tls::settings(url, &shown)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name(application_name);
    let manager = PostgresConnectionManager::new(config.clone(), tls.clone());
    let pool = r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .min_idle(Some(1))
        .connection_timeout(CHECKOUT_WAIT)
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build_unchecked(manager);
    let mut conn = match pool.get() {
        Ok(c) => c,
        Err(_) => {
            // The pool hides the cause: connect once more to show it.
            let why = match config.connect(tls) {
                Ok(_) => "no connection within 10 s".to_string(),
                Err(e) => e.to_string(),
            };
            anyhow::bail!("cannot reach the database {shown}: {why}");
        }
    };
    migrate(&mut conn).map_err(|e| anyhow::anyhow!("database {shown}: {e}"))?;
    Ok(pool)
}

/// The schema version the database is at (0: empty).
///
/// # Errors
/// A database error.
pub fn version(conn: &mut postgres::Client) -> Result<i32, postgres::Error> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version integer NOT NULL,
             applied_at bigint NOT NULL
         )",
    )?;
    let row = conn.query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?;
    Ok(row.get(0))
}

/// Applies the migrations the database lacks.
///
/// # Errors
/// A database error, or a schema newer than [`MIGRATIONS`].
pub fn migrate(conn: &mut postgres::Client) -> anyhow::Result<()> {
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = migrate_locked(conn);
    let _ = conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}

fn migrate_locked(conn: &mut postgres::Client) -> anyhow::Result<()> {
    let at = version(conn)?;
    let known = MIGRATIONS.len() as i32;
    if at > known {
        anyhow::bail!(
            "its schema is version {at}, newer than this netdisk knows ({known}): \
             upgrade netdisk, or point --db at another database"
        );
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(at as usize) {
        let version = n as i32 + 1;
        let mut tx = conn.transaction()?;
        tx.batch_execute(sql)
            .map_err(|e| anyhow::anyhow!("migration {version} failed: {e}"))?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
            &[&version, &now()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The database's clock in milliseconds, as SQL: every server that shares
/// the database agrees on it (limits and sessions use it). `now()` is the
/// start of the transaction: one value however often a statement uses it.
pub const NOW_MS: &str = "(extract(epoch from now()) * 1000)::bigint";

/// Unix seconds now, as the schema stores times.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A database error as the error a request answers with: `INTERNAL`,
/// naming what failed (never a password: errors carry no URL).
impl From<postgres::Error> for crate::error::Error {
    fn from(e: postgres::Error) -> Self {
        crate::error::Error::Internal(format!("database: {e}"))
    }
}

impl From<r2d2::Error> for crate::error::Error {
    fn from(e: r2d2::Error) -> Self {
        crate::error::Error::Internal(format!("database: no connection: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::redact;
    use super::testing::TestDb;

    #[test]
    fn every_migration_applies_and_a_second_open_applies_none() {
        let Some(db) = TestDb::create("every_migration_applies") else {
            return;
        };
        let pool = db.pool();
        let mut conn = pool.get().unwrap();
        assert_eq!(
            super::version(&mut conn).unwrap(),
            super::MIGRATIONS.len() as i32
        );
        drop(conn);
        drop(pool);
        let again = db.pool();
        let n: i64 = again
            .get()
            .unwrap()
            .query_one("SELECT count(*) FROM schema_version", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, super::MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redact("postgres://nd:s3cret@db.example:5432/netdisk"),
            "postgres://nd:***@db.example:5432/netdisk"
        );
        assert_eq!(
            redact("postgres://nd@localhost/netdisk"),
            "postgres://nd@localhost/netdisk"
        );
        assert_eq!(redact("host=/tmp user=nd"), "host=/tmp user=nd");
    }
}
