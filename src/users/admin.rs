//! Changes an admin makes to accounts with the server stopped (`netdisk
//! user`): a new password, a quota, a removal. Each goes through the same
//! atomic rewrite of `users.xlsx` as a registration; with `--db`, each is
//! one statement on the accounts table, made while servers run.

use std::io;
use std::sync::Arc;

use super::{pg, write_sheet, Password, User, UserStore};
use crate::error::Error;
use crate::names;
use crate::password;

impl UserStore {
    /// Every account, in the sheet's order (with `--db`: oldest first;
    /// none if the database cannot be asked).
    pub fn list(&self) -> Vec<Arc<User>> {
        self.try_list().unwrap_or_else(|e| {
            eprintln!("cannot list the accounts: {e}");
            Vec::new()
        })
    }

    /// Every account, in the sheet's order (with `--db`: oldest first).
    ///
    /// # Errors
    /// A database error.
    pub fn try_list(&self) -> Result<Vec<Arc<User>>, Error> {
        match &self.db {
            Some(pool) => Ok(pg::list(pool)?.into_iter().map(Arc::new).collect()),
            None => Ok(self.lock_state().list.clone()),
        }
    }

    /// Writes every account to `path` as a sheet with the columns of
    /// `users.xlsx` (`netdisk user export`), atomically.
    ///
    /// # Errors
    /// A database error, or if the file cannot be written.
    pub fn export(&self, path: &std::path::Path) -> Result<usize, Error> {
        let rows = self.try_list()?;
        write_sheet(path, &rows)?;
        Ok(rows.len())
    }

    /// Gives `name` a new password.
    ///
    /// # Errors
    /// `NOT_FOUND` for no such user, `WEAK_PASSWORD`, or an I/O error
    /// (then `users.xlsx` is unchanged).
    pub fn set_password(&self, name: &str, password: &Password) -> Result<Arc<User>, Error> {
        names::check_password(password.expose())?;
        let password_hash = self.hashers.install(|| password::hash(password))?;
        if let Some(pool) = &self.db {
            let key = names::canonical_user(name).map_err(|_| Error::NotFound)?;
            let user = pg::set_password(pool, &key, &password_hash)?;
            return user.map(Arc::new).ok_or(Error::NotFound);
        }
        self.change(name, |u| u.password_hash = password_hash)
    }

    /// Sets `name`'s own quota; `None` falls back to the server's.
    ///
    /// # Errors
    /// `NOT_FOUND` for no such user, or an I/O error.
    pub fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<Arc<User>, Error> {
        if let Some(pool) = &self.db {
            let key = names::canonical_user(name).map_err(|_| Error::NotFound)?;
            let user = pg::set_quota(pool, &key, quota)?;
            return user.map(Arc::new).ok_or(Error::NotFound);
        }
        self.change(name, |u| u.quota = quota)
    }

    /// Removes `name`'s account. `move_home` runs under the registration
    /// lock, after the sheet no longer holds the account, to take the
    /// user's folder out of reach.
    ///
    /// With `--db`, `move_home` runs first, while the account's rows are
    /// still there (the disk retires their blobs), then the account's row
    /// is deleted, and its folders, files, unfinished uploads, known
    /// addresses and web sessions with it (`ON DELETE CASCADE`).
    ///
    /// # Errors
    /// `NOT_FOUND` for no such user, or an I/O error (if the sheet could
    /// not be rewritten the account is kept; if only `move_home` failed, the
    /// account is gone and its folder is where it was; with `--db`, if
    /// `move_home` failed the account is kept).
    pub fn remove(
        &self,
        name: &str,
        move_home: impl FnOnce(&str) -> io::Result<()>,
    ) -> Result<Arc<User>, Error> {
        let key = names::canonical_user(name).map_err(|_| Error::NotFound)?;
        if let Some(pool) = &self.db {
            if self.try_get(&key)?.is_none() {
                return Err(Error::NotFound);
            }
            move_home(&key)?;
            return pg::delete(pool, &key)?.map(Arc::new).ok_or(Error::NotFound);
        }
        let _write = self.lock_write();
        let (rows, removed) = {
            let state = self.lock_state();
            let at = *state.index.get(&key).ok_or(Error::NotFound)?;
            let mut rows = state.list.clone();
            let removed = rows.remove(at);
            (rows, removed)
        };
        write_sheet(&self.path, &rows)?;
        self.replace_rows(rows);
        self.known.forget(&key)?;
        move_home(&key)?;
        Ok(removed)
    }

    /// Applies `edit` to a copy of `name`'s record and writes it out.
    fn change(&self, name: &str, edit: impl FnOnce(&mut User)) -> Result<Arc<User>, Error> {
        let key = names::canonical_user(name).map_err(|_| Error::NotFound)?;
        let _write = self.lock_write();
        let (mut rows, at) = {
            let state = self.lock_state();
            let at = *state.index.get(&key).ok_or(Error::NotFound)?;
            (state.list.clone(), at)
        };
        let mut user = User::clone(&rows[at]);
        edit(&mut user);
        let user = Arc::new(user);
        rows[at] = Arc::clone(&user);
        write_sheet(&self.path, &rows)?;
        self.replace_rows(rows);
        Ok(user)
    }

    fn replace_rows(&self, rows: Vec<Arc<User>>) {
        let mut state = self.lock_state();
        state.index = rows
            .iter()
            .enumerate()
            .map(|(i, u)| (u.key.clone(), i))
            .collect();
        state.list = rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(s)
    }

    #[test]
    fn passwd_quota_and_remove_are_written_to_the_sheet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        let store = UserStore::open(&path).unwrap();
        for name in ["Alice", "bob", "carol"] {
            store
                .create(name, &pw("first password"), |_| Ok(()))
                .unwrap();
        }
        store.set_password("ALICE", &pw("second password")).unwrap();
        store.set_quota("bob", Some(1000)).unwrap();
        let mut moved = Vec::new();
        store
            .remove("Bob", |k| {
                moved.push(k.to_string());
                Ok(())
            })
            .unwrap();
        assert_eq!(moved, ["bob"]);
        assert!(matches!(store.set_quota("bob", None), Err(Error::NotFound)));
        assert!(matches!(
            store.set_password("alice", &pw("short")),
            Err(Error::WeakPassword)
        ));

        let again = UserStore::open(&path).unwrap();
        let names: Vec<_> = again.list().iter().map(|u| u.name.clone()).collect();
        assert_eq!(names, ["Alice", "carol"]);
        assert!(again.login("alice", &pw("second password"), "p").is_ok());
        assert!(again.login("carol", &pw("first password"), "p").is_ok());
        assert!(again.get("bob").is_none());
        again.set_quota("carol", Some(5)).unwrap();
        again.set_quota("carol", None).unwrap();
        assert_eq!(
            UserStore::open(&path).unwrap().get("carol").unwrap().quota,
            None
        );
    }
}
