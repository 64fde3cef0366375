//! A first round trip through the protocol client.

use crate::support::*;

#[test]
fn register_put_get_round_trip() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    let data = bytes(100_000, 1);
    let off = c.put_begin("a.bin", data.len() as u64).unwrap();
    assert_eq!(off, 0);
    c.write_body(&data).unwrap();
    let ans = c.put_end(&md5(&data)).unwrap();
    assert_eq!(ans.md5, md5(&data));
    let got = c.get_begin("a.bin", 0).unwrap();
    assert_eq!(got.size, data.len() as u64);
    let mut back = vec![0u8; data.len()];
    c.read_body_exact(&mut back).unwrap();
    assert_eq!(back, data);
    assert!(!server.log().contains(PASSWORD));
}
