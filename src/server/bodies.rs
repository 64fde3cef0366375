//! Bodies in flight: how many workers may wait on the network at once,
//! which body gives way when they are all taken, and the rate floor.
//!
//! A worker that moves a body waits on its peer, and a peer can make that
//! wait as long as the rate floor allows, at almost no bandwidth. So only
//! `workers - reserve` workers may carry bodies at once (the reserve, a
//! quarter of the pool, is always there for logins, listings and the
//! like). When a body finds the places taken, a body that has been
//! running for [`GRACE`] and moves slower than [`slow_rate`] gives way (of
//! the address holding the most places, the slowest): it is cut (an upload
//! keeps its staged bytes and resumes later) and the newcomer takes its
//! place. A small body (at most [`SMALL`] bytes, which fits in the socket
//! buffers) that finds nobody to displace borrows a reserved worker for
//! [`GRACE`]; a bigger one waits for a place up to [`WAIT`] (a few may
//! wait at once), then is answered `BUSY`. Fast transfers are never cut
//! for others: they finish, and whoever waits gets their place.
//!
//! The rate floor is kept here too, on a clock of its own: the loop's
//! sweep looks at every body a few times a second and cuts one that moved
//! fewer than `min_rate` bytes a second over a whole window, whatever the
//! size of the reads and writes it is blocked in. Each body's bytes are
//! counted by the socket wrapper ([`crate::protocol::Timed`]) through its
//! [`Meter`], which also carries the cut to the worker: the worker's
//! blocked read or write gives up within a [`crate::protocol::TICK`].

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::limits::address_key;
use crate::error::Error;
pub use crate::protocol::{Cut, Meter};

/// How long a new body runs before it can be displaced (and how long a
/// small body may borrow a reserved worker).
pub const GRACE: Duration = Duration::from_secs(2);
/// Bodies this small may borrow a reserved worker.
pub const SMALL: u64 = 64 * 1024;
/// How long a body may wait for a place before it is answered `BUSY`.
pub const WAIT: Duration = Duration::from_secs(3);

struct Entry {
    meter: Arc<Meter>,
    /// The body's socket (a second descriptor of it), shut down when the
    /// body is cut, so that a read or `sendfile` blocked on it returns at
    /// once rather than at the end of its slice.
    socket: Option<TcpStream>,
    /// It sends (a download): a cut shuts down both ways, else only the
    /// reading side, so that the `TIMEOUT` frame can still go out.
    sends: bool,
    address: IpAddr,
    started: Instant,
    /// Start of the current floor window, and the bytes moved by then.
    window: (Instant, u64),
    /// Start of the current rate interval, and the bytes moved by then.
    mark: (Instant, u64),
    /// The rate over the last whole interval.
    recent: Option<f64>,
    /// Holds one of the counted slots (else it borrows a reserved worker
    /// until its deadline).
    counted: bool,
    deadline: Option<Instant>,
}

impl Entry {
    fn cut(&self, why: Cut) {
        if self.meter.cut().is_some() {
            return;
        }
        self.meter.set_cut(why);
        if let Some(s) = &self.socket {
            let how = if self.sends {
                Shutdown::Both
            } else {
                Shutdown::Read
            };
            let _ = s.shutdown(how);
        }
    }

    /// How fast it moves, in bytes a second: over the last whole
    /// [`GRACE`] the sweep measured (a download's first seconds fill the
    /// socket buffers at any reader's pace, so its average says little),
    /// else on average since it began.
    fn rate(&self, now: Instant) -> f64 {
        if let Some(r) = self.recent {
            return r;
        }
        let secs = (now - self.started).as_secs_f64().max(1e-3);
        self.meter.moved() as f64 / secs
    }

    /// Measures the rate of the interval that ends at `now`, every GRACE.
    fn mark(&mut self, now: Instant) {
        let (since, at) = self.mark;
        let secs = (now - since).as_secs_f64();
        if now - since >= GRACE {
            let moved = self.meter.moved();
            self.recent = Some(moved.saturating_sub(at) as f64 / secs);
            self.mark = (now, moved);
        }
    }
}

#[derive(Default)]
struct Table {
    next: u64,
    entries: HashMap<u64, Entry>,
    /// Bodies waiting for a place.
    waiting: usize,
}

/// The bodies in flight, and their limits.
pub struct Bodies {
    table: Mutex<Table>,
    /// Signalled when a body leaves.
    left: Condvar,
    /// Places: bodies that may wait on the network at once.
    cap: usize,
    /// Small bodies that may borrow a reserved worker at once.
    borrow: usize,
    /// Bodies that may wait (on a reserved worker) for a place.
    wait: usize,
    min_rate: u64,
    window: Duration,
}

/// A body's place among those in flight; dropping it leaves.
pub struct Ticket {
    bodies: Arc<Bodies>,
    id: u64,
    meter: Arc<Meter>,
}

impl Ticket {
    /// Marks the body as one the server sends.
    pub fn sends(&self) {
        if let Some(e) = self.bodies.lock().entries.get_mut(&self.id) {
            e.sends = true;
        }
    }

    /// The meter the socket counts this body's bytes on.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.bodies.lock().entries.remove(&self.id);
        self.bodies.left.notify_one();
    }
}

/// Below this average rate a body may be displaced when slots run out:
/// sixteen times the floor, at least 64 KiB/s. A transfer that moves
/// faster is never cut for another.
pub fn slow_rate(min_rate: u64) -> f64 {
    (min_rate.max(4096) * 16) as f64
}

impl Bodies {
    /// The limits for a pool of `workers`, with the rate floor of
    /// `min_rate` bytes a second over `window` (0: no floor).
    pub fn new(workers: usize, min_rate: u64, window: Duration) -> Bodies {
        let reserve = if workers >= 2 {
            (workers / 4).max(1)
        } else {
            0
        };
        let cap = (workers - reserve).max(1);
        Bodies {
            table: Mutex::default(),
            left: Condvar::new(),
            cap,
            borrow: (reserve / 2).max(1),
            wait: reserve.saturating_sub(1),
            min_rate,
            window,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counted slots (for the log and the tests).
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Admits a body of `len` bytes from `ip`:
    /// into a free place, or the place of a slow body that has had its
    /// grace, or (small) a borrowed one; else it waits up to [`WAIT`] for
    /// a place, if few bodies wait already.
    ///
    /// # Errors
    /// `BUSY` when every place is held by bodies that move.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, len: u64) -> Result<Ticket, Error> {
        self.admit_on(ip, len, None)
    }

    /// [`Bodies::admit`] for a body on `socket` (see [`Entry::socket`]).
    ///
    /// # Errors
    /// As [`Bodies::admit`].
    pub fn admit_on(
        self: &Arc<Self>,
        ip: IpAddr,
        len: u64,
        socket: Option<TcpStream>,
    ) -> Result<Ticket, Error> {
        let address = address_key(ip);
        let give_up = Instant::now() + WAIT;
        let mut t = self.lock();
        let mut waiting = false;
        let placed = loop {
            let now = Instant::now();
            if let Some(counted) = self.place(&mut t, now, address) {
                break Some(counted);
            }
            if len <= SMALL && t.entries.values().filter(|e| !e.counted).count() < self.borrow {
                break Some(false);
            }
            if now >= give_up || (!waiting && t.waiting >= self.wait) {
                break None;
            }
            if !waiting {
                waiting = true;
                t.waiting += 1;
            }
            // Woken when a body leaves; and a few times a second, as the
            // bodies in place come out of their grace.
            let nap = give_up
                .saturating_duration_since(now)
                .min(Duration::from_millis(250));
            t = self
                .left
                .wait_timeout(t, nap)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        if waiting {
            t.waiting -= 1;
        }
        let Some(counted) = placed else {
            return Err(Error::Busy(
                "the server is busy with other transfers; try again shortly".into(),
            ));
        };
        let now = Instant::now();
        let meter = Arc::new(Meter::default());
        let id = t.next;
        t.next += 1;
        t.entries.insert(
            id,
            Entry {
                meter: Arc::clone(&meter),
                socket,
                sends: false,
                address,
                started: now,
                window: (now, 0),
                mark: (now, 0),
                recent: None,
                counted,
                deadline: (!counted).then_some(now + GRACE),
            },
        );
        drop(t);
        Ok(Ticket {
            bodies: Arc::clone(self),
            id,
            meter,
        })
    }

    /// A place for a body from `address`: `Some(true)` if one is free or
    /// was freed by displacing a slow body past its grace: one of the
    /// address that holds the most places (the newcomer's counting as
    /// one more), the slowest of those.
    fn place(&self, t: &mut Table, now: Instant, address: IpAddr) -> Option<bool> {
        if t.entries.values().filter(|e| e.counted).count() < self.cap {
            return Some(true);
        }
        let mut held: HashMap<IpAddr, usize> = HashMap::from([(address, 1)]);
        for e in t.entries.values().filter(|e| e.counted) {
            *held.entry(e.address).or_default() += 1;
        }
        let slow = slow_rate(self.min_rate);
        let victim = t
            .entries
            .values_mut()
            .filter(|e| e.counted && now - e.started >= GRACE)
            .map(|e| (held[&e.address], e.rate(now), e))
            .filter(|(_, rate, _)| *rate < slow)
            .min_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)))?
            .2;
        victim.cut(Cut::Displaced);
        // Its place is the newcomer's now; it leaves within a tick.
        victim.counted = false;
        victim.deadline = Some(now);
        Some(true)
    }

    /// Cuts every body below the rate floor over its last window, and
    /// every small body past its borrowed time. Returns the cuts made.
    pub fn sweep(&self, now: Instant) -> Vec<Cut> {
        let mut cuts = Vec::new();
        let mut t = self.lock();
        for e in t.entries.values_mut() {
            if e.meter.cut().is_some() {
                continue;
            }
            e.mark(now);
            if e.deadline.is_some_and(|d| now >= d) {
                e.cut(Cut::Borrowed);
                cuts.push(Cut::Borrowed);
                continue;
            }
            if self.min_rate == 0 {
                continue;
            }
            let (since, at) = e.window;
            let elapsed = now - since;
            if elapsed < self.window {
                continue;
            }
            let moved = e.meter.moved();
            let floor = (self.min_rate as f64 * elapsed.as_secs_f64()) as u64;
            if moved.saturating_sub(at) < floor {
                e.cut(Cut::Floor);
                cuts.push(Cut::Floor);
            } else {
                e.window = (now, moved);
            }
        }
        cuts
    }

    /// Bodies in flight (counted, borrowing).
    pub fn in_flight(&self) -> (usize, usize) {
        let t = self.lock();
        let counted = t.entries.values().filter(|e| e.counted).count();
        (counted, t.entries.len() - counted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    fn age(bodies: &Bodies, by: Duration) {
        for e in bodies.lock().entries.values_mut() {
            e.started -= by;
            e.window.0 -= by;
            e.mark.0 -= by;
        }
    }

    /// A download fills the socket buffers fast and then moves nothing: it
    /// gives way once the sweep has measured an interval of that.
    #[test]
    fn a_burst_then_nothing_gives_way_by_its_recent_rate() {
        let bodies = Arc::new(Bodies::new(2, 4096, Duration::from_secs(30)));
        let unread = bodies.admit(ip(2), 1 << 30).unwrap();
        unread.meter().add(8 << 20);
        age(&bodies, GRACE);
        bodies.sweep(Instant::now());
        assert!(
            matches!(bodies.admit(ip(3), 1 << 30), Err(Error::Busy(_))),
            "fast so far"
        );
        age(&bodies, GRACE);
        bodies.sweep(Instant::now());
        let _newcomer = bodies.admit(ip(3), 1 << 30).unwrap();
        assert_eq!(unread.meter().cut(), Some(Cut::Displaced));
    }

    #[test]
    fn a_pool_keeps_a_quarter_for_requests_without_bodies() {
        assert_eq!(Bodies::new(32, 4096, Duration::from_secs(30)).cap(), 24);
        assert_eq!(Bodies::new(4, 4096, Duration::from_secs(30)).cap(), 3);
        assert_eq!(Bodies::new(2, 4096, Duration::from_secs(30)).cap(), 1);
        assert_eq!(Bodies::new(1, 4096, Duration::from_secs(30)).cap(), 1);
    }

    #[test]
    fn a_slow_body_gives_way_and_a_fast_one_does_not() {
        // Six places; one body may wait, one small one borrow.
        let bodies = Arc::new(Bodies::new(8, 4096, Duration::from_secs(30)));
        let slow: Vec<_> = (0..3)
            .map(|_| bodies.admit(ip(2), 1 << 30).unwrap())
            .collect();
        let fast: Vec<_> = (0..3)
            .map(|_| bodies.admit(ip(3), 1 << 30).unwrap())
            .collect();
        for t in &fast {
            t.meter().add(100 << 20);
        }
        // All too young to give way: a small body borrows; a big one
        // waits, and gets the place of one that leaves.
        let small = bodies.admit(ip(4), 4096).unwrap();
        assert_eq!(bodies.in_flight(), (6, 1));
        drop(small);
        let waiter = {
            let bodies = Arc::clone(&bodies);
            std::thread::spawn(move || bodies.admit(ip(4), 1 << 30).map(|_| ()))
        };
        while bodies.lock().waiting == 0 {
            std::thread::yield_now();
        }
        drop(fast);
        waiter.join().unwrap().unwrap();
        // Past their grace, the slow ones give way one at a time.
        let fast: Vec<_> = (0..3)
            .map(|_| bodies.admit(ip(3), 1 << 30).unwrap())
            .collect();
        for t in &fast {
            t.meter().add(100 << 20);
        }
        age(&bodies, GRACE);
        let newcomer = bodies.admit(ip(4), 1 << 30).unwrap();
        let cut: Vec<_> = slow.iter().filter(|t| t.meter().cut().is_some()).collect();
        assert_eq!(cut.len(), 1, "one slow body gave way");
        assert_eq!(cut[0].meter().cut(), Some(Cut::Displaced));
        assert!(fast.iter().all(|t| t.meter().cut().is_none()));
        assert_eq!(bodies.in_flight(), (6, 1), "the cut one no longer counts");
        drop((newcomer, slow, fast));
        assert_eq!(bodies.in_flight(), (0, 0));
    }

    #[test]
    fn the_address_holding_most_places_gives_way_first() {
        let bodies = Arc::new(Bodies::new(4, 4096, Duration::from_secs(30)));
        let other = bodies.admit(ip(3), 1 << 30).unwrap();
        let mine: Vec<_> = (0..2)
            .map(|_| bodies.admit(ip(2), 1 << 30).unwrap())
            .collect();
        // The other address's body is the slowest, but holds one place.
        for t in &mine {
            t.meter().add(1000);
        }
        age(&bodies, GRACE);
        let third = bodies.admit(ip(2), 1 << 30).unwrap();
        assert!(
            other.meter().cut().is_none(),
            "another address keeps its body"
        );
        assert_eq!(mine.iter().filter(|t| t.meter().cut().is_some()).count(), 1);
        drop(third);
    }

    #[test]
    fn without_anyone_to_displace_a_big_body_is_busy() {
        // Two workers: one place, nobody waits, one small body borrows.
        let bodies = Arc::new(Bodies::new(2, 4096, Duration::from_secs(30)));
        let fast = bodies.admit(ip(2), 1 << 30).unwrap();
        fast.meter().add(1 << 30);
        age(&bodies, GRACE);
        assert!(matches!(bodies.admit(ip(3), 1 << 30), Err(Error::Busy(_))));
        assert!(fast.meter().cut().is_none());
        let _small = bodies.admit(ip(3), 100).unwrap();
        assert!(matches!(bodies.admit(ip(4), 100), Err(Error::Busy(_))));
    }

    #[test]
    fn the_floor_cuts_a_body_that_crawls_over_a_whole_window() {
        let window = Duration::from_secs(30);
        let bodies = Arc::new(Bodies::new(8, 1000, window));
        let crawl = bodies.admit(ip(2), 1 << 20).unwrap();
        let walk = bodies.admit(ip(3), 1 << 20).unwrap();
        assert!(
            bodies.sweep(Instant::now()).is_empty(),
            "the window has not passed"
        );
        crawl.meter().add(10_000);
        walk.meter().add(40_000);
        age(&bodies, window);
        assert_eq!(bodies.sweep(Instant::now()), vec![Cut::Floor]);
        assert_eq!(crawl.meter().cut(), Some(Cut::Floor));
        assert_eq!(walk.meter().cut(), None, "a new window begins for it");
        age(&bodies, window);
        assert_eq!(
            bodies.sweep(Instant::now()),
            vec![Cut::Floor],
            "then nothing moved"
        );
    }

    #[test]
    fn a_borrowed_worker_is_given_back_in_time() {
        let bodies = Arc::new(Bodies::new(2, 0, Duration::from_secs(30)));
        let _big = bodies.admit(ip(2), 1 << 30).unwrap();
        let small = bodies.admit(ip(3), 100).unwrap();
        assert!(bodies.sweep(Instant::now()).is_empty());
        assert_eq!(bodies.sweep(Instant::now() + GRACE), vec![Cut::Borrowed]);
        assert_eq!(small.meter().cut(), Some(Cut::Borrowed));
    }
}
