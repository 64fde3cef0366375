//! Accounts in PostgreSQL (`serve --db`): the `accounts` table, one
//! statement per lookup or change, nothing cached, so a change made by
//! another server (or `netdisk user … --db`) holds at once everywhere.

use postgres::Row;

use super::User;
use crate::db::Pool;
use crate::error::Error;

const COLUMNS: &str = "name, key, password_hash, created_at, quota";

/// The account in the first five columns of `row`: name, key,
/// password_hash, created_at, quota (as [`COLUMNS`] lists them).
pub(crate) fn user(row: &Row) -> User {
    let quota: Option<i64> = row.get(4);
    let created_at: i64 = row.get(3);
    User {
        name: row.get(0),
        key: row.get(1),
        password_hash: row.get(2),
        created_at: u64::try_from(created_at).unwrap_or(0),
        quota: quota.map(|q| u64::try_from(q).unwrap_or(0)),
    }
}

/// A quota as the schema stores it (bigint).
fn stored_quota(quota: Option<u64>) -> Option<i64> {
    quota.map(|q| i64::try_from(q).unwrap_or(i64::MAX))
}

pub(super) fn get(pool: &Pool, key: &str) -> Result<Option<User>, Error> {
    let row = pool.get()?.query_opt(
        &format!("SELECT {COLUMNS} FROM accounts WHERE key = $1"),
        &[&key],
    )?;
    Ok(row.as_ref().map(user))
}

pub(super) fn count(pool: &Pool) -> Result<usize, Error> {
    let n: i64 = pool
        .get()?
        .query_one("SELECT count(*) FROM accounts", &[])?
        .get(0);
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Every account, oldest first (as the sheet lists them).
pub(super) fn list(pool: &Pool) -> Result<Vec<User>, Error> {
    let rows = pool
        .get()?
        .query(&format!("SELECT {COLUMNS} FROM accounts ORDER BY id"), &[])?;
    Ok(rows.iter().map(user).collect())
}

/// Adds `u`; `false` if its key is taken (the UNIQUE key decides a race
/// between two servers registering one name).
pub(crate) fn insert(pool: &Pool, u: &User) -> Result<bool, Error> {
    let created_at = i64::try_from(u.created_at).unwrap_or(i64::MAX);
    let n = pool.get()?.execute(
        "INSERT INTO accounts (key, name, password_hash, created_at, quota)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (key) DO NOTHING",
        &[
            &u.key,
            &u.name,
            &u.password_hash,
            &created_at,
            &stored_quota(u.quota),
        ],
    )?;
    Ok(n == 1)
}

pub(super) fn set_password(pool: &Pool, key: &str, hash: &str) -> Result<Option<User>, Error> {
    let row = pool.get()?.query_opt(
        &format!("UPDATE accounts SET password_hash = $2 WHERE key = $1 RETURNING {COLUMNS}"),
        &[&key, &hash],
    )?;
    Ok(row.as_ref().map(user))
}

pub(super) fn set_quota(pool: &Pool, key: &str, quota: Option<u64>) -> Result<Option<User>, Error> {
    let row = pool.get()?.query_opt(
        &format!("UPDATE accounts SET quota = $2 WHERE key = $1 RETURNING {COLUMNS}"),
        &[&key, &stored_quota(quota)],
    )?;
    Ok(row.as_ref().map(user))
}

/// Deletes the account; its rows in every table that refers to it go
/// with it (`ON DELETE CASCADE`).
pub(super) fn delete(pool: &Pool, key: &str) -> Result<Option<User>, Error> {
    let row = pool.get()?.query_opt(
        &format!("DELETE FROM accounts WHERE key = $1 RETURNING {COLUMNS}"),
        &[&key],
    )?;
    Ok(row.as_ref().map(user))
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::thread;

    use super::super::{Password, UserStore};
    use crate::db::testing::TestDb;
    use crate::error::Error;
    use crate::ratelimit::MAX_PER_USER;

    fn pw(s: &str) -> Password {
        Password::new(s)
    }

    #[test]
    fn accounts_live_in_the_database_and_every_store_sees_each_change() {
        let Some(db) = TestDb::create("accounts_live_in_the_database") else {
            return;
        };
        let pool = db.pool();
        let a = UserStore::open_db(pool.clone()).unwrap();
        let b = UserStore::open_db(db.pool()).unwrap();
        let mut homes = Vec::new();
        a.register("Alice", &pw("correct horse"), "p", |k| {
            homes.push(k.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(homes, ["alice"]);
        assert!(matches!(
            b.register("ALICE", &pw("another pw"), "p", |_| Ok(())),
            Err(Error::UserExists)
        ));
        b.create("bob", &pw("first password"), |_| Ok(())).unwrap();
        assert_eq!((a.count(), b.count()), (2, 2));
        let names: Vec<_> = a.list().iter().map(|u| u.name.clone()).collect();
        assert_eq!(names, ["Alice", "bob"]);
        assert_eq!(
            b.login("alice", &pw("correct horse"), "p").unwrap().name,
            "Alice"
        );

        a.set_password("ALICE", &pw("second password")).unwrap();
        assert!(matches!(
            b.login("alice", &pw("correct horse"), "p"),
            Err(Error::AuthFailed)
        ));
        assert!(b.login("alice", &pw("second password"), "p").is_ok());
        a.set_quota("bob", Some(1000)).unwrap();
        assert_eq!(b.get("bob").unwrap().quota, Some(1000));
        b.set_quota("bob", None).unwrap();
        assert_eq!(a.get("bob").unwrap().quota, None);
        assert!(matches!(a.set_quota("nobody", None), Err(Error::NotFound)));
        assert!(matches!(
            a.set_password("nobody", &pw("a good password")),
            Err(Error::NotFound)
        ));

        let failed = a.create("carol", &pw("first password"), |_| {
            Err(std::io::Error::other("disk"))
        });
        assert!(failed.is_err());
        assert!(b.get("carol").is_none(), "a failed home takes the row back");
    }

    #[test]
    fn removing_an_account_runs_the_hook_first_then_cascades() {
        let Some(db) = TestDb::create("removing_an_account_cascades") else {
            return;
        };
        let pool = db.pool();
        let a = UserStore::open_db(pool.clone()).unwrap();
        let b = UserStore::open_db(db.pool()).unwrap();
        a.create("alice", &pw("first password"), |_| Ok(()))
            .unwrap();
        let mut conn = pool.get().unwrap();
        conn.execute(
            "INSERT INTO nodes (account, path, parent, is_dir, mtime)
             SELECT id, 'docs', '', true, 0 FROM accounts WHERE key = 'alice'",
            &[],
        )
        .unwrap();
        assert!(b.login("alice", &pw("first password"), "10.0.0.1").is_ok());
        let mut rows_in_hook = None;
        b.remove("Alice", |key| {
            let n: i64 = pool
                .get()
                .unwrap()
                .query_one(
                    "SELECT count(*) FROM nodes JOIN accounts ON id = account WHERE key = $1",
                    &[&key],
                )
                .unwrap()
                .get(0);
            rows_in_hook = Some(n);
            Ok(())
        })
        .unwrap();
        assert_eq!(rows_in_hook, Some(1), "the hook sees the rows");
        assert!(a.get("alice").is_none());
        for table in ["nodes", "known_addresses", "accounts"] {
            let n: i64 = conn
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "{table}");
        }
        assert!(matches!(
            a.remove("alice", |_| Ok(())),
            Err(Error::NotFound)
        ));

        a.create("bob", &pw("first password"), |_| Ok(())).unwrap();
        let kept = a.remove("bob", |_| Err(std::io::Error::other("disk")));
        assert!(kept.is_err());
        assert!(b.get("bob").is_some(), "a failed hook keeps the account");
    }

    #[test]
    fn two_servers_registering_one_name_at_once_make_one_account() {
        let Some(db) = TestDb::create("two_servers_registering_one_name") else {
            return;
        };
        let stores = [
            UserStore::open_db(db.pool()).unwrap(),
            UserStore::open_db(db.pool()).unwrap(),
        ];
        let go = Barrier::new(2);
        let results: Vec<_> = thread::scope(|s| {
            let handles: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(i, store)| {
                    let go = &go;
                    s.spawn(move || {
                        go.wait();
                        store
                            .register(
                                "Dave",
                                &pw("a fine password"),
                                &format!("10.0.0.{i}"),
                                |_| Ok(()),
                            )
                            .map(|_| ())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let made = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(made, 1, "{results:?}");
        assert!(results.iter().any(|r| matches!(r, Err(Error::UserExists))));
        assert_eq!(stores[0].count(), 1);
    }

    #[test]
    fn failed_logins_on_several_servers_count_once_and_spare_the_owner() {
        let Some(db) = TestDb::create("failed_logins_on_several_servers") else {
            return;
        };
        let a = UserStore::open_db(db.pool()).unwrap();
        let b = UserStore::open_db(db.pool()).unwrap();
        a.create("alice", &pw("the right one"), |_| Ok(())).unwrap();
        // The owner logs in from home on one server...
        assert!(a.login("alice", &pw("the right one"), "10.9.9.9").is_ok());
        // ...strangers guess on both...
        for i in 0..MAX_PER_USER {
            let store = if i % 2 == 0 { &a } else { &b };
            let r = store.login("alice", &pw("a wrong guess"), &format!("10.0.0.{i}"));
            assert!(matches!(r, Err(Error::AuthFailed)), "{r:?}");
        }
        for store in [&a, &b] {
            let r = store.login("alice", &pw("the right one"), "10.0.1.1");
            assert!(matches!(r, Err(Error::RateLimited(_))), "{r:?}");
        }
        // ...and the owner, known to both, still gets in on the other.
        assert!(b.login("alice", &pw("the right one"), "10.9.9.9").is_ok());
    }
}
