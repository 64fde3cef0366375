//! A fresh database for one test: tests that need PostgreSQL read a
//! superuser URL from `NETDISK_TEST_PG`, create a database of a random name
//! on that server, and drop it when done. Without the variable such a test
//! says it is skipped and passes, except in CI (`CI=true`), where it fails:
//! a CI run must not pass without having run them.

use std::sync::atomic::{AtomicU64, Ordering};

use postgres::NoTls;

/// The variable naming the test server.
pub const ENV: &str = "NETDISK_TEST_PG";

/// A database made for one test, dropped (with its connections) on drop.
pub struct TestDb {
    admin: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl TestDb {
    /// A new empty database, or `None` (after a skip notice) when
    /// `NETDISK_TEST_PG` is unset outside CI.
    ///
    /// # Panics
    /// If the variable is unset in CI, or the server cannot be reached.
    pub fn create(test: &str) -> Option<TestDb> {
        let Ok(admin) = std::env::var(ENV) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {ENV} is not set, and CI=true: PostgreSQL tests must run");
            }
            eprintln!("skipped {test}: set {ENV} to a PostgreSQL superuser URL to run it");
            return None;
        };
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut random = [0u8; 6];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .expect("randomness");
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!(
            "netdisk_test_{}_{}_{suffix}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = postgres::Client::connect(&admin, NoTls)
            .unwrap_or_else(|e| panic!("{test}: cannot reach {ENV}: {e}"));
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| drop_stale(&mut client));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("{test}: cannot create a database: {e}"));
        let url = with_dbname(&admin, &name);
        Some(TestDb { admin, name, url })
    }

    /// A pool on the database, with the schema applied.
    ///
    /// # Panics
    /// If the database cannot be opened.
    pub fn pool(&self) -> super::Pool {
        super::open(&self.url).expect("open the test database")
    }

    /// A pool whose connections are named as those of the server
    /// `server` (see [`super::server_name`]).
    ///
    /// # Panics
    /// If the database cannot be opened.
    pub fn pool_as(&self, server: &str) -> super::Pool {
        super::open_as(&self.url, &super::server_name(server)).expect("open the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Drops the test databases of test processes that are gone (killed
/// before their databases' drop ran, or whose databases lived to the end).
fn drop_stale(client: &mut postgres::Client) {
    let Ok(rows) = client.query(
        "SELECT datname FROM pg_database WHERE datname LIKE 'netdisk\\_test\\_%'",
        &[],
    ) else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// `url` naming the database `name` instead of its own.
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn the_url_names_the_new_database() {
        assert_eq!(
            with_dbname("postgres://nd@127.0.0.1:55432/dev", "x"),
            "postgres://nd@127.0.0.1:55432/x"
        );
        assert_eq!(
            with_dbname("postgres://nd@h/dev?sslmode=disable", "x"),
            "postgres://nd@h/x?sslmode=disable"
        );
        assert_eq!(with_dbname("postgres://nd@h", "x"), "postgres://nd@h/x");
    }
}
