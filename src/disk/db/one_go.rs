//! Uploads in one go (PROTOCOL.md, "Small uploads in one go") on local
//! blobs. Their answer comes after their body, so the claim, the quota and
//! the bounds on files and unfinished uploads are checked when they commit,
//! a group of them in one transaction, rather than in one transaction
//! before each body and another after it (which cost a small file about
//! twenty round trips to the database).
//!
//! Until the commit a claim is this server's alone: another upload of the
//! name here is `LOCKED` at once, and a user holds at most `--max-staged`
//! of them here (the bytes waiting, at most 4 MiB each, in blobs of their
//! own). An upload of the name on another server is seen at the commit,
//! as a staged row its live server holds, and answered `LOCKED` then. The
//! quota and the bounds are checked at the commit under the account's row
//! lock, in the group's order, each file counting those before it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{ancestors, int, parent, uint, DbDisk, DbLock, DbVerified, Inner, CLAIM_LAPSES, LIVE};
use crate::db::now;
use crate::disk::blobs::Blobs;
use crate::disk::UploadLock;
use crate::error::Error;

/// What a claim checked at its commit carries until then.
#[derive(Clone)]
pub struct Deferred {
    pub key: String,
    pub quota: Option<u64>,
}

/// The result of one placed upload: its MD5, and the folder to sync.
pub type Placed = Result<(String, Option<PathBuf>), Error>;

impl DbDisk {
    /// Claims `name` for an upload in one go, on this server only.
    ///
    /// # Errors
    /// `LOCKED` if this server uploads the name now; `QUOTA_EXCEEDED` if
    /// the user holds `--max-staged` such claims here.
    pub(super) fn lock_deferred(
        &self,
        key: &str,
        name: &str,
        size: u64,
        quota: Option<u64>,
    ) -> Result<UploadLock, Error> {
        if quota.is_none() {
            int(size)?;
        }
        let inner = &self.inner;
        let blob = Blobs::new_key()?;
        {
            let entry = (key.to_string(), name.to_string());
            let mut pending = inner.pending();
            if pending.contains(&entry) {
                return Err(Error::Locked);
            }
            let mine = pending.iter().filter(|(k, _)| k == key).count();
            if mine >= inner.max_staged {
                return Err(Error::TooManyStaged(mine));
            }
            pending.insert(entry);
        }
        Ok(UploadLock::Db(DbLock {
            inner: Arc::downgrade(inner),
            account: 0,
            path: name.to_string(),
            size,
            holder: String::new(),
            blob,
            fresh: true,
            gone: Arc::default(),
            deferred: Some(Deferred {
                key: key.to_string(),
                quota,
            }),
        }))
    }
}

/// Commits uploads in one go whose claims were deferred, of one user, in
/// one transaction; each gets its own answer, in order. Those refused
/// lose their bytes.
pub(super) fn commit(mut items: Vec<DbVerified>) -> Vec<Placed> {
    let Some(first) = items.first() else {
        return Vec::new();
    };
    let inner = Arc::clone(&first.upload.inner);
    let key = first.upload.deferred.as_ref().map(|d| d.key.clone());
    if items
        .iter()
        .any(|i| i.upload.deferred.as_ref().map(|d| &d.key) != key.as_ref())
    {
        // Not one user's: one by one.
        return items.into_iter().flat_map(|i| commit(vec![i])).collect();
    }
    let (verdicts, freed) = match transaction(&inner, &items) {
        Ok(done) => done,
        Err(e) => {
            let words = e.to_string();
            let mut all = vec![Err(e)];
            all.extend((1..items.len()).map(|_| Err(Error::Internal(words.clone()))));
            (all, Vec::new())
        }
    };
    let mut placed = Vec::with_capacity(items.len());
    for (item, verdict) in items.drain(..).zip(verdicts) {
        let DbVerified { mut upload, md5 } = item;
        placed.push(match verdict {
            Ok(()) => {
                upload.settled = true;
                upload.gone.store(true, Ordering::Release);
                let dir = inner.blobs().and_then(|b| b.dir_of(&upload.blob));
                dir.map(|d| (md5, Some(d)))
            }
            Err(e) => {
                // The transaction dropped what the name had staged
                // (unless `LOCKED`): only these bytes are left.
                upload.drop_bytes();
                Err(e)
            }
        });
    }
    inner.free(Some(&freed));
    placed
}

/// A file of the group as the transaction sees it.
struct Node {
    is_dir: bool,
    size: i64,
    blob: Option<String>,
}

/// A staged row of a name in the group.
struct StagedRow {
    size: i64,
    blob: String,
    held: bool,
}

/// Each upload's verdict, in order.
type Verdicts = Vec<Result<(), Error>>;

/// The group's transaction: each upload's verdict, and the blobs it
/// retired (to free once committed).
fn transaction(inner: &Inner, items: &[DbVerified]) -> Result<(Verdicts, Vec<String>), Error> {
    let deferred = items[0]
        .upload
        .deferred
        .as_ref()
        .ok_or_else(|| Error::Internal("not an upload in one go".into()))?;
    let mut c = inner.pool.get()?;
    let mut tx = c.transaction()?;
    let row = tx
        .query_opt(
            "SELECT id, used_files, used_bytes, staged_count, staged_bytes
             FROM accounts WHERE key = $1 FOR UPDATE",
            &[&deferred.key],
        )?
        .ok_or_else(|| Error::Internal(format!("no account {:?}", deferred.key)))?;
    let account: i64 = row.get(0);
    let (mut files, mut used, mut count, mut bytes): (i64, i64, i32, i64) =
        (row.get(1), row.get(2), row.get(3), row.get(4));
    let names: Vec<String> = items.iter().map(|i| i.upload.path.clone()).collect();
    let mut wanted: Vec<String> = names.iter().flat_map(|n| ancestors(n)).collect();
    wanted.extend(names.iter().cloned());
    wanted.sort();
    wanted.dedup();
    let mut nodes: HashMap<String, Node> = tx
        .query(
            "SELECT path, is_dir, size, blob FROM nodes WHERE account = $1 AND path = ANY($2)",
            &[&account, &wanted],
        )?
        .into_iter()
        .map(|r| {
            let node = Node {
                is_dir: r.get(1),
                size: r.get(2),
                blob: r.get(3),
            };
            (r.get(0), node)
        })
        .collect();
    let mut staged: HashMap<String, StagedRow> = tx
        .query(
            &format!(
                "SELECT path, size, blob, {}, holder FROM staged
                 WHERE account = $1 AND path = ANY($2) FOR UPDATE",
                LIVE.replace("$9", "$3")
            ),
            &[&account, &names, &(now() - CLAIM_LAPSES)],
        )?
        .into_iter()
        .map(|r| {
            let holder: Option<String> = r.get(4);
            let held = r.get::<_, bool>(3) && !holder.is_some_and(|h| inner.orphaned(&h));
            let row = StagedRow {
                size: r.get(1),
                blob: r.get(2),
                held,
            };
            (r.get(0), row)
        })
        .collect();

    let at = now();
    let (mut dropped, mut retired, mut made) = (Vec::new(), Vec::new(), Vec::new());
    let mut stored: Vec<(String, i64, String, String)> = Vec::new();
    let (files_before, used_before, count_before, bytes_before) = (files, used, count, bytes);
    let mut verdicts = Vec::with_capacity(items.len());
    for item in items {
        let up = &item.upload;
        let path = up.path.as_str();
        // What an earlier upload of the name staged goes, whatever the
        // answer, unless the answer is `LOCKED` (PROTOCOL.md).
        if let Some(row) = staged.remove(path) {
            if row.held {
                staged.insert(path.to_string(), row);
                verdicts.push(Err(Error::Locked));
                continue;
            }
            dropped.push(path.to_string());
            retired.push(row.blob);
            count -= 1;
            bytes -= row.size;
        }
        let quota = up.deferred.as_ref().and_then(|d| d.quota);
        let verdict = check(
            &nodes,
            path,
            up.size,
            quota,
            inner,
            (files, used, count, bytes),
        );
        let replaced = match verdict {
            Ok(replaced) => replaced,
            Err(e) => {
                verdicts.push(Err(e));
                continue;
            }
        };
        let size = i64::try_from(up.size).unwrap_or(i64::MAX);
        match replaced {
            Some((old_size, old_blob)) => {
                used += size - old_size;
                stored.retain(|(p, ..)| p != path);
                if let Some(b) = old_blob.filter(|b| *b != up.blob) {
                    retired.push(b);
                }
            }
            None => {
                files += 1;
                used += size;
            }
        }
        for a in ancestors(path) {
            if !nodes.contains_key(&a) {
                nodes.insert(
                    a.clone(),
                    Node {
                        is_dir: true,
                        size: 0,
                        blob: None,
                    },
                );
                made.push(a);
            }
        }
        nodes.insert(
            path.to_string(),
            Node {
                is_dir: false,
                size,
                blob: Some(up.blob.clone()),
            },
        );
        stored.push((path.to_string(), size, item.md5.clone(), up.blob.clone()));
        verdicts.push(Ok(()));
    }

    if !dropped.is_empty() {
        tx.execute(
            "DELETE FROM staged WHERE account = $1 AND path = ANY($2)",
            &[&account, &dropped],
        )?;
    }
    if !made.is_empty() {
        let parents: Vec<String> = made.iter().map(|p| parent(p).to_string()).collect();
        tx.execute(
            "INSERT INTO nodes (account, path, parent, is_dir, mtime)
             SELECT $1, p, q, true, $4 FROM unnest($2::text[], $3::text[]) AS t(p, q)
             ON CONFLICT DO NOTHING",
            &[&account, &made, &parents, &at],
        )?;
    }
    if !stored.is_empty() {
        let paths: Vec<&str> = stored.iter().map(|s| s.0.as_str()).collect();
        let parents: Vec<&str> = paths.iter().map(|p| parent(p)).collect();
        let sizes: Vec<i64> = stored.iter().map(|s| s.1).collect();
        let md5s: Vec<&str> = stored.iter().map(|s| s.2.as_str()).collect();
        let blobs: Vec<&str> = stored.iter().map(|s| s.3.as_str()).collect();
        tx.execute(
            "INSERT INTO nodes (account, path, parent, is_dir, size, mtime, md5, blob)
             SELECT $1, p, q, false, s, $5, m, b
             FROM unnest($2::text[], $3::text[], $4::bigint[], $6::text[], $7::text[])
                  AS t(p, q, s, m, b)
             ON CONFLICT (account, path) DO UPDATE SET
                 size = EXCLUDED.size, mtime = EXCLUDED.mtime, md5 = EXCLUDED.md5,
                 blob = EXCLUDED.blob, props = NULL",
            &[&account, &paths, &parents, &sizes, &at, &md5s, &blobs],
        )?;
    }
    if (files, used, count, bytes) != (files_before, used_before, count_before, bytes_before) {
        tx.execute(
            "UPDATE accounts SET used_files = used_files + $2, used_bytes = used_bytes + $3,
                 staged_count = staged_count + $4, staged_bytes = staged_bytes + $5
             WHERE id = $1",
            &[
                &account,
                &(files - files_before),
                &(used - used_before),
                &(count - count_before),
                &(bytes - bytes_before),
            ],
        )?;
    }
    if !retired.is_empty() {
        tx.execute(
            "INSERT INTO retired (blob, since) SELECT unnest($1::text[]), $2
             ON CONFLICT DO NOTHING",
            &[&retired, &at],
        )?;
    }
    tx.commit()?;
    Ok((verdicts, retired))
}

/// One upload's checks against what the group has made so far, as
/// `lock_upload` makes them; the file it replaces (size, blob), if any.
fn check(
    nodes: &HashMap<String, Node>,
    path: &str,
    size: u64,
    quota: Option<u64>,
    inner: &Inner,
    (files, used, count, bytes): (i64, i64, i32, i64),
) -> Result<Option<(i64, Option<String>)>, Error> {
    for a in ancestors(path) {
        if nodes.get(&a).is_some_and(|n| !n.is_dir) {
            return Err(Error::NotAFolder(a));
        }
    }
    let replaced = match nodes.get(path) {
        Some(n) if n.is_dir => return Err(Error::IsAFolder),
        Some(n) => Some((n.size, n.blob.clone())),
        None => None,
    };
    let others = usize::try_from(count).unwrap_or(0);
    if others >= inner.max_staged {
        return Err(Error::TooManyStaged(others));
    }
    if replaced.is_none() && uint(files).saturating_add(others as u64) >= inner.max_files {
        return Err(Error::TooManyFiles(inner.max_files));
    }
    if let Some(quota) = quota {
        let taken = uint(used)
            .saturating_sub(replaced.as_ref().map_or(0, |r| uint(r.0)))
            .saturating_add(uint(bytes));
        if taken.saturating_add(size) > quota {
            return Err(Error::QuotaExceeded {
                needs: size,
                left: quota.saturating_sub(taken),
                quota,
            });
        }
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::super::tests::{disk, stage};
    use super::super::DbDisk;
    use crate::disk::{Disk, Verified};
    use crate::error::Error;

    /// An upload in one go of `data`, received and checked, not placed.
    fn ready(disk: &DbDisk, name: &str, data: &[u8], quota: Option<u64>) -> Verified {
        let lock = disk
            .lock_one_go("alice", name, data.len() as u64, quota)
            .unwrap();
        let mut up = disk.begin_fresh_upload(&lock).unwrap();
        let mut left = data;
        up.receive(|buf| {
            let n = left.len().min(buf.len());
            buf[..n].copy_from_slice(&left[..n]);
            left = &left[n..];
            (n, Ok(()))
        })
        .unwrap();
        // The commit needs no claim of its own.
        let v = up
            .verify(&crate::protocol::md5_hex(Md5::digest(data)))
            .unwrap();
        drop(lock);
        v
    }

    #[test]
    fn a_group_commits_in_order_each_counting_those_before_it() {
        let Some((_db, _root, disk)) = disk("one_go_group_in_order") else {
            return;
        };
        let group = vec![
            ready(&disk, "a", b"0123456789", Some(25)),
            ready(&disk, "dir/b", b"0123456789", Some(25)),
            // 30 bytes with the two before: over the quota.
            ready(&disk, "c", b"0123456789", Some(25)),
            // Under a file of the group.
            ready(&disk, "a/x", b"1", Some(25)),
        ];
        let placed = Verified::place_all(group);
        assert!(placed[0].is_ok(), "{:?}", placed[0]);
        assert!(placed[1].is_ok(), "{:?}", placed[1]);
        assert!(
            matches!(
                placed[2],
                Err(Error::QuotaExceeded {
                    needs: 10,
                    left: 5,
                    quota: 25
                })
            ),
            "{:?}",
            placed[2]
        );
        assert!(matches!(&placed[3], Err(Error::NotAFolder(p)) if p == "a"));
        assert_eq!(disk.usage("alice").unwrap(), (2, 20));
        let names: Vec<String> = disk
            .list("alice")
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["a"], "the root's files");
        assert!(matches!(disk.open_file("alice", "c"), Err(Error::NotFound)));
        let opened = disk.open_file("alice", "dir/b").unwrap();
        assert_eq!(opened.size, 10);
    }

    #[test]
    fn an_upload_held_elsewhere_is_locked_at_the_commit_and_keeps_its_bytes() {
        let Some((db, root, disk)) = disk("one_go_locked_at_commit") else {
            return;
        };
        let other = DbDisk::open(
            db.pool_as("other"),
            root.path(),
            &super::super::tests::LIMITS,
            "other",
        )
        .unwrap();
        // Another server uploads "f" now.
        let held = other.lock_upload("alice", "f", 10, None).unwrap();
        let placed = Verified::place_all(vec![ready(&disk, "f", b"xy", None)]);
        assert!(matches!(placed[0], Err(Error::Locked)), "{:?}", placed[0]);
        assert!(other.uploading("alice", "f"));
        drop(held);
        // Here, a second claim of a name in one go is refused at once.
        let lock = disk.lock_one_go("alice", "g", 1, None).unwrap();
        assert!(matches!(
            disk.lock_one_go("alice", "g", 1, None),
            Err(Error::Locked)
        ));
        assert!(matches!(
            disk.lock_upload("alice", "g", 1, None),
            Err(Error::Locked)
        ));
        assert!(disk.uploading("alice", "g"));
        drop(lock);
        assert!(!disk.uploading("alice", "g"));
    }

    #[test]
    fn what_the_name_had_staged_goes_with_the_commit() {
        let Some((_db, _root, disk)) = disk("one_go_drops_staged") else {
            return;
        };
        stage(&disk, "f", 10, b"0123");
        assert_eq!(disk.staged_bytes("alice"), 4);
        let placed = Verified::place_all(vec![ready(&disk, "f", b"xy", None)]);
        assert!(placed[0].is_ok(), "{:?}", placed[0]);
        assert_eq!(disk.staged_bytes("alice"), 0);
        assert_eq!(disk.usage("alice").unwrap(), (1, 2));
        // And a mismatch drops it too, as the protocol says.
        stage(&disk, "g", 10, b"0123");
        let lock = disk.lock_one_go("alice", "g", 2, None).unwrap();
        let mut up = disk.begin_fresh_upload(&lock).unwrap();
        up.receive(|buf| {
            buf[..2].copy_from_slice(b"xy");
            (2, Ok(()))
        })
        .unwrap();
        assert!(matches!(
            up.verify(&"0".repeat(32)),
            Err(Error::ChecksumMismatch)
        ));
        assert_eq!(disk.staged_bytes("alice"), 0);
    }
}
