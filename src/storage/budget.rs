//! One memory budget for every listing being built or sent (issue 16:
//! "listings that cannot be shared are unbounded in memory").
//!
//! A listing that cannot share another's frame (another user's folder,
//! or one changed since) holds its names and rows while it is built, and
//! its frame while it is sent: for a folder of 45,000 files with long
//! names about 30 MB. Before it reads a folder, a listing counts what the
//! folder holds (names only, no `stat`: cheap beside the listing itself)
//! and reserves what it will need from the budget, waiting while others
//! hold it; a listing bigger than the whole budget waits until it is
//! alone. Once built, its frame keeps its own size reserved for as long as
//! anyone holds it (the budget watches it through a `Weak`), and the rest
//! is given back. So however many users list at once, the listings
//! never hold more than the budget together (and one listing at most its
//! own size beyond it).
//!
//! A big listing (past [`BIG`]) also takes one of a few places to be
//! built in, one per core: building one is all CPU, and sixteen at once
//! would take every core from everyone else. Small listings need none.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::names;

/// The budget by default (`serve --listing-memory`).
pub const DEFAULT_BYTES: usize = 128 << 20;
/// Bytes a listing needs per entry beside its name: a row, and the JSON
/// fields of its entry in the frame.
pub const PER_ENTRY: usize = 48 + 112;
/// A listing estimated past this needs a place to be built in.
pub const BIG: usize = 256 << 10;
/// How long a listing waits for its share before `BUSY`.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often a waiting listing looks again (a frame dropped by a worker
/// gives its bytes back without a signal).
const LOOK_AGAIN: Duration = Duration::from_millis(50);

#[derive(Default)]
struct State {
    /// Bytes reserved by listings being built and by live frames.
    used: usize,
    /// Frames still held by someone, and the bytes each keeps reserved.
    frames: Vec<(Weak<Vec<u8>>, usize)>,
    /// The most ever reserved at once.
    high: usize,
    /// Big listings being built.
    building: usize,
}

/// The budget.
pub struct Budget {
    total: usize,
    /// Big listings that may be built at once.
    places: usize,
    state: Mutex<State>,
    freed: Condvar,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(DEFAULT_BYTES)
    }
}

impl Budget {
    /// A budget of `total` bytes (at least 1).
    pub fn new(total: usize) -> Budget {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Budget {
            total: total.max(1),
            places: cores,
            state: Mutex::default(),
            freed: Condvar::new(),
        }
    }

    /// Reserves `want` bytes (at most the whole budget), waiting up to
    /// [`PATIENCE`] for others to give theirs back.
    ///
    /// # Errors
    /// `BUSY` if they did not in time.
    pub fn reserve(&self, want: usize) -> Result<Charge<'_>, Error> {
        let place = want > BIG;
        let want = want.min(self.total);
        let deadline = Instant::now() + PATIENCE;
        let mut s = self.lock();
        loop {
            prune(&mut s);
            if s.used + want <= self.total && (!place || s.building < self.places) {
                s.used += want;
                s.high = s.high.max(s.used);
                s.building += usize::from(place);
                return Ok(Charge {
                    budget: self,
                    bytes: want,
                    place,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Busy(
                    "the server is listing too many folders at once; try again in a moment".into(),
                ));
            }
            s = self
                .freed
                .wait_timeout(s, left.min(LOOK_AGAIN))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The most reserved at once so far.
    pub fn high_water(&self) -> usize {
        self.lock().high
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each update is a few integer changes: nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, bytes: usize, place: bool) {
        let mut s = self.lock();
        s.used = s.used.saturating_sub(bytes);
        s.building -= usize::from(place && s.building > 0);
        drop(s);
        self.freed.notify_all();
    }
}

/// Gives back the bytes of frames nobody holds any more.
fn prune(s: &mut State) {
    let mut freed = 0;
    s.frames.retain(|(frame, bytes)| {
        let alive = frame.strong_count() > 0;
        if !alive {
            freed += bytes;
        }
        alive
    });
    s.used = s.used.saturating_sub(freed);
}

/// Bytes reserved by a listing being built; given back on drop.
pub struct Charge<'a> {
    budget: &'a Budget,
    bytes: usize,
    /// It holds a place to be built in.
    place: bool,
}

impl Charge<'_> {
    /// The listing is built into `frame`: as much of the reservation as
    /// the frame holds stays reserved while the frame lives, the rest is
    /// given back now.
    pub fn keep(mut self, frame: &Arc<Vec<u8>>) {
        let kept = frame.capacity().min(self.bytes);
        let mut s = self.budget.lock();
        s.frames.push((Arc::downgrade(frame), kept));
        drop(s);
        self.bytes -= kept;
        // Built: the place goes to the next (the rest of the bytes too).
        let (bytes, place) = (self.bytes, self.place);
        self.bytes = 0;
        self.place = false;
        self.budget.release(bytes, place);
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 || self.place {
            self.budget.release(self.bytes, self.place);
        }
    }
}

/// What listing `dir` (with `recursive`, its whole subtree) will take, by
/// its names alone. A folder that cannot be read counts as empty: the
/// listing itself then says why.
pub fn estimate(dir: &Path, recursive: bool) -> usize {
    let mut bytes = 0usize;
    let mut stack: Vec<(PathBuf, usize, usize)> = vec![(dir.to_path_buf(), 0, 0)];
    while let Some((folder, prefix, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let len = entry.file_name().len();
            // A name in the names buffer and again in the frame.
            let path = prefix + len + usize::from(prefix > 0);
            bytes = bytes.saturating_add(2 * path + PER_ENTRY);
            let descend = recursive
                && depth + 1 < names::MAX_PATH_COMPONENTS
                && path <= names::MAX_PATH_BYTES
                && entry.file_type().is_ok_and(|t| t.is_dir());
            if descend {
                stack.push((entry.path(), path, depth + 1));
            }
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn a_reservation_waits_for_another_to_be_given_back() {
        let b = Budget::new(100);
        let first = b.reserve(60).unwrap();
        thread::scope(|s| {
            let second = s.spawn(|| b.reserve(60).map(drop));
            drop(first);
            second.join().unwrap().unwrap();
        });
        // The second had its share only once the first gave its own back.
        assert_eq!(b.high_water(), 60);
    }

    #[test]
    fn a_frame_keeps_its_bytes_while_someone_holds_it() {
        let b = Budget::new(100);
        let frame = Arc::new(Vec::with_capacity(70));
        b.reserve(90).unwrap().keep(&frame);
        // 70 kept by the frame, 20 given back.
        drop(b.reserve(30).unwrap());
        assert_eq!(b.high_water(), 100);
        drop(frame);
        drop(b.reserve(100).unwrap());
    }

    #[test]
    fn big_listings_take_turns_for_a_place_small_ones_need_none() {
        let b = Budget {
            places: 1,
            ..Budget::new(100 * BIG)
        };
        let first = b.reserve(2 * BIG).unwrap();
        // A small one goes beside it at once.
        drop(b.reserve(BIG).unwrap());
        thread::scope(|s| {
            let second = s.spawn(|| b.reserve(2 * BIG).map(drop));
            first.keep(&Arc::new(Vec::new()));
            second.join().unwrap().unwrap();
        });
        // Never two big ones at once: at most 2 + 1 places' worth.
        assert!(b.high_water() <= 3 * BIG, "{}", b.high_water());
    }

    #[test]
    fn a_listing_bigger_than_the_budget_runs_alone() {
        let b = Budget::new(10);
        let big = b.reserve(1000).unwrap();
        assert_eq!(b.high_water(), 10);
        drop(big);
        drop(b.reserve(10).unwrap());
    }

    #[test]
    fn the_estimate_counts_names_and_entries() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("abc"), b"").unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/xy"), b"").unwrap();
        assert_eq!(estimate(dir.path(), false), 2 * 3 + 2 + 2 * PER_ENTRY);
        // "d/xy" is 4 bytes as a path.
        assert_eq!(
            estimate(dir.path(), true),
            2 * 3 + 2 + 2 * 4 + 3 * PER_ENTRY
        );
    }

    /// Eight users list their own folders at once, each listing about a
    /// third of the budget: all are answered in full, and the listings
    /// never held more than the budget together.
    #[test]
    fn listings_of_many_users_stay_within_the_budget_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = crate::storage::Storage::open(dir.path()).unwrap();
        let users: Vec<String> = (0..8).map(|i| format!("user{i}")).collect();
        for u in &users {
            s.create_home(u).unwrap();
            let files = dir.path().join("users").join(u).join("files");
            for i in 0..100 {
                fs::write(files.join(format!("{i:03}{}", "x".repeat(100))), b"").unwrap();
            }
        }
        let one = estimate(&dir.path().join("users/user0/files"), false);
        s.set_listing_memory(3 * one);
        let s = &s;
        thread::scope(|scope| {
            for u in &users {
                scope.spawn(move || {
                    for _ in 0..3 {
                        let frame = s
                            .shared_listing(u, "", false, |l| {
                                serde_json::to_vec(l).map_err(|e| Error::Internal(e.to_string()))
                            })
                            .unwrap();
                        let listed: serde_json::Value = serde_json::from_slice(&frame).unwrap();
                        assert_eq!(listed.as_array().unwrap().len(), 100);
                        // A new change each time: nothing is shared.
                        s.changed(u);
                    }
                });
            }
        });
        let high = s.listing_memory_high_water();
        assert!(high <= 3 * one, "{high} > {}", 3 * one);
        assert!(high >= one, "{high}");
    }
}
