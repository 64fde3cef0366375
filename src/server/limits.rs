//! Per-address limits: which peers may speak plaintext, and how many
//! connections one address (an IPv6 /64) and everyone together may hold.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A set of peer addresses: `any`, `none`, or a comma-separated list of
/// addresses and CIDR blocks (`127.0.0.0/8,::1,10.0.0.0/8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSet {
    blocks: Vec<(IpAddr, u8)>,
}

impl PeerSet {
    /// The default of `--plaintext-from`: the loopback addresses, where
    /// traffic never leaves the host.
    pub fn loopback() -> PeerSet {
        "127.0.0.0/8,::1".parse().expect("a valid default")
    }

    /// The empty set (`none`).
    pub fn none() -> PeerSet {
        PeerSet { blocks: Vec::new() }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether `ip` is in the set. An IPv4 peer on an IPv6 socket
    /// (`::ffff:127.0.0.1`) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.blocks
            .iter()
            .any(|&(net, bits)| same_prefix(net, ip, bits))
    }
}

impl FromStr for PeerSet {
    type Err = String;

    fn from_str(s: &str) -> Result<PeerSet, String> {
        match s.trim() {
            "none" => return Ok(PeerSet { blocks: Vec::new() }),
            "any" => {
                return Ok(PeerSet {
                    blocks: vec![
                        (IpAddr::from([0, 0, 0, 0]), 0),
                        (IpAddr::from(Ipv6Addr::UNSPECIFIED), 0),
                    ],
                })
            }
            _ => {}
        }
        let mut blocks = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (addr, bits) = match part.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (part, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("{part:?} is not an address or CIDR block"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|&b| b <= max)
                    .ok_or_else(|| format!("{part:?}: prefix length must be 0..={max}"))?,
                None => max,
            };
            blocks.push((ip.to_canonical(), bits));
        }
        if blocks.is_empty() {
            return Err("expected `any`, `none` or addresses like 127.0.0.0/8,::1".into());
        }
        Ok(PeerSet { blocks })
    }
}

impl fmt::Display for PeerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.blocks.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self
            .blocks
            .iter()
            .map(|(ip, bits)| format!("{ip}/{bits}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn same_prefix(net: IpAddr, ip: IpAddr, bits: u8) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// Whom a per-address limit counts as one: an IPv4 address, or an IPv6
/// /64 (one household or host gets a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Connection counts, in all and per address.
pub struct Slots {
    max_total: usize,
    max_per_address: usize,
    counts: Arc<Mutex<Counts>>,
}

/// Why a connection was not given a slot.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// `--max-connections` connections are open.
    Total,
    /// `--max-per-address` connections are open from this address.
    Address,
}

impl Slots {
    /// Limits of `max_total` connections, `max_per_address` from one address.
    pub fn new(max_total: usize, max_per_address: usize) -> Slots {
        Slots {
            max_total,
            max_per_address,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for a connection from `ip`; it is given back when the
    /// [`Slot`] drops, wherever the connection is then.
    ///
    /// # Errors
    /// Which limit is reached.
    pub fn take(&self, ip: IpAddr) -> Result<Slot, Full> {
        let key = address_key(ip);
        let mut c = lock(&self.counts);
        if c.total >= self.max_total {
            return Err(Full::Total);
        }
        let n = c.per_address.entry(key).or_insert(0);
        if *n >= self.max_per_address {
            return Err(Full::Address);
        }
        *n += 1;
        c.total += 1;
        Ok(Slot {
            key: Some(key),
            counts: Arc::clone(&self.counts),
        })
    }

    /// Takes a slot that counts only towards the total: for a connection
    /// from a proxy (`--proxy-from`), whose own address carries every
    /// client's connections, until [`Slots::assign`] names the client.
    ///
    /// # Errors
    /// [`Full::Total`].
    pub fn take_total(&self) -> Result<Slot, Full> {
        let mut c = lock(&self.counts);
        if c.total >= self.max_total {
            return Err(Full::Total);
        }
        c.total += 1;
        Ok(Slot {
            key: None,
            counts: Arc::clone(&self.counts),
        })
    }

    /// Counts a slot from [`Slots::take_total`] towards `ip`'s limit too
    /// (a slot already counted for an address stays as it is).
    ///
    /// # Errors
    /// [`Full::Address`]; the slot then still counts towards the total
    /// until it drops.
    pub fn assign(&self, slot: &mut Slot, ip: IpAddr) -> Result<(), Full> {
        if slot.key.is_some() {
            return Ok(());
        }
        let key = address_key(ip);
        let mut c = lock(&self.counts);
        let n = c.per_address.entry(key).or_insert(0);
        if *n >= self.max_per_address {
            if *n == 0 {
                c.per_address.remove(&key);
            }
            return Err(Full::Address);
        }
        *n += 1;
        slot.key = Some(key);
        Ok(())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        lock(&self.counts).total
    }
}

/// One connection's share of [`Slots`].
pub struct Slot {
    /// The address it counts for; `None` while only the total counts it.
    key: Option<IpAddr>,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = lock(&self.counts);
        c.total -= 1;
        let Some(key) = self.key else { return };
        if let Some(n) = c.per_address.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                c.per_address.remove(&key);
            }
        }
    }
}

fn lock(m: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    // Each update is a few integer steps that cannot panic half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn peer_sets_parse_and_match() {
        let lo = PeerSet::loopback();
        assert!(lo.contains(ip("127.0.0.1")));
        assert!(lo.contains(ip("127.3.4.5")));
        assert!(lo.contains(ip("::1")));
        assert!(lo.contains(ip("::ffff:127.0.0.1")));
        assert!(!lo.contains(ip("10.0.0.1")));
        assert!(!lo.contains(ip("::2")));
        let none: PeerSet = "none".parse().unwrap();
        assert!(!none.contains(ip("127.0.0.1")));
        let any: PeerSet = "any".parse().unwrap();
        assert!(any.contains(ip("8.8.8.8")) && any.contains(ip("2001:db8::1")));
        let lan: PeerSet = "10.0.0.0/8, 192.168.1.7".parse().unwrap();
        assert!(lan.contains(ip("10.200.1.1")) && lan.contains(ip("192.168.1.7")));
        assert!(!lan.contains(ip("192.168.1.8")));
        for bad in ["", "10.0.0.0/33", "x", "::1/129", "1.2.3.4/x"] {
            assert!(bad.parse::<PeerSet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ipv6_counts_per_64() {
        assert_eq!(address_key(ip("2001:db8:1:2:3::4")), ip("2001:db8:1:2::"));
        assert_eq!(address_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn slots_limit_per_address_and_in_all_and_come_back() {
        let slots = Slots::new(3, 2);
        let a1 = slots.take(ip("10.0.0.1")).unwrap();
        let _a2 = slots.take(ip("10.0.0.1")).unwrap();
        assert_eq!(slots.take(ip("10.0.0.1")).err(), Some(Full::Address));
        let _b = slots.take(ip("10.0.0.2")).unwrap();
        assert_eq!(slots.take(ip("10.0.0.3")).err(), Some(Full::Total));
        drop(a1);
        assert_eq!(slots.open(), 2);
        assert!(slots.take(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn proxied_slots_count_in_all_then_for_the_carried_address() {
        let slots = Slots::new(4, 1);
        // The proxy's own address is not capped...
        let mut a = slots.take_total().unwrap();
        let mut b = slots.take_total().unwrap();
        // ...the client it names is.
        slots.assign(&mut a, ip("10.0.0.1")).unwrap();
        assert_eq!(slots.assign(&mut b, ip("10.0.0.1")), Err(Full::Address));
        assert_eq!(slots.take(ip("10.0.0.1")).err(), Some(Full::Address));
        slots.assign(&mut b, ip("10.0.0.2")).unwrap();
        assert_eq!(slots.open(), 2);
        let _c = slots.take_total().unwrap();
        let _d = slots.take_total().unwrap();
        assert_eq!(slots.take_total().err(), Some(Full::Total));
        drop(a);
        assert_eq!(slots.open(), 3);
        assert!(slots.take(ip("10.0.0.1")).is_ok());
    }
}
