//! Where a remote user can reach the server: what the start-up lines show.
//! A wildcard bind (`0.0.0.0`, `::`) is listed as this host's name and the
//! address it reaches the network from, not as loopback, which no other
//! machine can open; only a host with neither shows loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// The `host:port`s to open the server at, best first.
pub fn addresses(bound: SocketAddr) -> Vec<String> {
    let port = bound.port();
    if !bound.ip().is_unspecified() {
        return vec![bound.to_string()];
    }
    let mut out = Vec::new();
    if let Some(name) = host_name() {
        out.push(format!("{name}:{port}"));
    }
    let v6 = bound.is_ipv6();
    // `::` takes IPv4 too (unless the system says otherwise).
    for ip in [outbound(false), if v6 { outbound(true) } else { None }]
        .into_iter()
        .flatten()
    {
        out.push(SocketAddr::new(ip, port).to_string());
    }
    if out.is_empty() {
        let lo = if v6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        out.push(SocketAddr::new(lo, port).to_string());
    }
    out
}

/// This host's name, unless it is empty or only names loopback.
fn host_name() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.trim().to_string();
    let usable = !name.is_empty()
        && name != "localhost"
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    usable.then_some(name)
}

/// The address this host reaches the network from: the source a UDP
/// socket "connected" to a documentation address gets (nothing is sent).
/// `None` without a route.
fn outbound(v6: bool) -> Option<IpAddr> {
    let (any, far): (SocketAddr, SocketAddr) = if v6 {
        (
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            ("2001:db8::1".parse::<Ipv6Addr>().ok()?, 9).into(),
        )
    } else {
        (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            (Ipv4Addr::new(192, 0, 2, 1), 9).into(),
        )
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(far).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_is_never_shown_as_loopback_or_itself_when_there_is_more() {
        let named = addresses("192.168.1.5:9000".parse().unwrap());
        assert_eq!(named, ["192.168.1.5:9000"]);
        for bound in ["0.0.0.0:9000", "[::]:9000"] {
            let shown = addresses(bound.parse().unwrap());
            assert!(!shown.is_empty());
            assert!(shown.iter().all(|a| a.ends_with(":9000")), "{shown:?}");
            assert!(shown.iter().all(|a| !a.starts_with("0.0.0.0")), "{shown:?}");
            if host_name().is_some() {
                assert!(shown.iter().all(|a| !a.contains("127.0.0.1")), "{shown:?}");
            }
        }
    }
}
