//! Addressing on a test's networks: network `k` (declaration order, from
//! 0) is `10.99.k.0/24`, and member `i` (the test's VM, then its siblings
//! in declaration order) is `10.99.k.(i+1)` with MAC `52:54:00:kk:ii:01`.
//! The NIC that carries port forwards is `52:54:00:ff:ii:01` (slirp's
//! `10.0.2.15`). Frames never leave the test's switch, so every test uses
//! the same addresses without meeting the others.

use std::fmt;
use std::net::Ipv4Addr;

/// How many networks a test may declare (their index is a MAC byte, and
/// `ff` is the port-forward NIC's).
pub const MAX_NETWORKS: usize = 255;
/// How many VMs a network may hold (addresses `.1` to `.254`).
pub const MAX_MEMBERS: usize = 254;

/// The guest address of the port-forward NIC (slirp's default guest).
pub const FORWARD_GUEST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The address of member `member` on network `network`.
pub(crate) fn address(network: usize, member: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, network as u8, member as u8 + 1)
}

/// The MAC of member `member`'s NIC on network `network`.
pub(crate) fn mac(network: usize, member: usize) -> Mac {
    Mac([0x52, 0x54, 0x00, network as u8, member as u8, 0x01])
}

/// The MAC of member `member`'s port-forward NIC.
pub(crate) fn forward_mac(member: usize) -> Mac {
    Mac([0x52, 0x54, 0x00, 0xff, member as u8, 0x01])
}

/// The prefix length of every network.
pub(crate) const PREFIX: u8 = 24;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme() {
        assert_eq!(address(0, 0), Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(address(2, 253), Ipv4Addr::new(10, 99, 2, 254));
        assert_eq!(mac(0, 0).to_string(), "52:54:00:00:00:01");
        assert_eq!(mac(1, 10).to_string(), "52:54:00:01:0a:01");
        assert_eq!(forward_mac(2).to_string(), "52:54:00:ff:02:01");
        // Locally administered, unicast.
        assert_eq!(mac(3, 4).0[0] & 0b11, 0b10);
    }
}
