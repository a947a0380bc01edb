//! The switch with peers that speak like QEMU's dgram netdev: a datagram
//! socket bound at the member's path, sending each frame to the switch.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use super::*;

/// A member's end, as QEMU's `-netdev dgram` would have it.
struct Peer {
    socket: UnixDatagram,
    switch: std::path::PathBuf,
    mac: [u8; 6],
}

impl Peer {
    fn join(net: &Network, member: &str) -> Peer {
        let socket = UnixDatagram::bind(net.dir.path().join(format!("{member}.sock"))).unwrap();
        // Like QEMU: not connected (which would refuse the switch's
        // frames from other addresses), each frame sent to the switch.
        Peer {
            socket,
            switch: net.dir.path().join(switch::SWITCH_SOCKET),
            mac: net.mac_of(member).unwrap().0,
        }
    }

    fn send(&self, to: [u8; 6], payload: &[u8]) {
        let mut frame = to.to_vec();
        frame.extend(self.mac);
        frame.extend([0x08, 0x00]);
        frame.extend(payload);
        self.socket.send_to(&frame, &self.switch).unwrap();
    }

    /// The payloads that arrive: the first within 10 s (a loaded host may
    /// keep the switch's thread waiting), then any more within 300 ms of
    /// each other.
    fn received(&self) -> Vec<Vec<u8>> {
        self.receive(Duration::from_secs(10))
    }

    /// Whether nothing arrives within 300 ms.
    fn nothing_received(&self) -> bool {
        self.receive(QUIET).is_empty()
    }

    fn receive(&self, first: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0; 70_000];
        self.socket.set_read_timeout(Some(first)).unwrap();
        while let Ok(n) = self.socket.recv(&mut buf) {
            got.push(buf[14..n].to_vec());
            self.socket.set_read_timeout(Some(QUIET)).unwrap();
        }
        got
    }
}

/// How long a peer listens for more (or for nothing).
const QUIET: Duration = Duration::from_millis(300);

const BROADCAST: [u8; 6] = [0xff; 6];

/// Waits until the switch has handled `frames` frames in all. (A control
/// request such as `stats` comes on a socket of its own, and may be
/// answered before a frame sent just before it is read.)
fn handled(net: &Network, frames: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while net.stats().unwrap().frames < frames {
        assert!(
            std::time::Instant::now() < deadline,
            "the switch did not handle {frames} frames"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn network(members: &[&str]) -> (Network, tempfile::TempDir) {
    let artifacts = tempfile::tempdir().unwrap();
    let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    let net = Network::create("lan", 0, &members, &artifacts.path().join("net-lan.pcap")).unwrap();
    (net, artifacts)
}

#[test]
fn floods_then_learns() {
    let (net, _artifacts) = network(&["main", "b", "c"]);
    let [a, b, c] = ["main", "b", "c"].map(|m| Peer::join(&net, m));
    a.send(BROADCAST, b"who has");
    assert_eq!(b.received(), [b"who has".to_vec()]);
    assert_eq!(c.received(), [b"who has".to_vec()]);
    assert!(a.nothing_received(), "not back to the sender");
    b.send(a.mac, b"is at");
    assert_eq!(a.received(), [b"is at".to_vec()]);
    // Learnt both ways: unicast now goes to one port only.
    a.send(b.mac, b"ping");
    assert_eq!(b.received(), [b"ping".to_vec()]);
    assert!(c.nothing_received());
    let stats = net.stats().unwrap();
    assert_eq!((stats.frames, stats.flooded), (3, 1));
    assert_eq!(stats.macs["52:54:00:00:00:01"], "main");
    assert_eq!(stats.ports["b"].received, 1);
}

#[test]
fn partitions_cuts_and_heal() {
    let (net, _artifacts) = network(&["main", "b", "c"]);
    let [a, b, c] = ["main", "b", "c"].map(|m| Peer::join(&net, m));
    net.partition(&[&["main", "b"], &["c"]]).unwrap();
    a.send(BROADCAST, b"1");
    assert_eq!(b.received().len(), 1);
    assert!(c.nothing_received());
    c.send(BROADCAST, b"2");
    assert!(a.nothing_received() && b.nothing_received());
    net.heal().unwrap();
    c.send(BROADCAST, b"3");
    assert_eq!((a.received().len(), b.received().len()), (1, 1));
    net.disconnect("b").unwrap();
    a.send(BROADCAST, b"4");
    assert!(b.nothing_received());
    assert_eq!(c.received().len(), 1);
    net.reconnect("b").unwrap();
    a.send(BROADCAST, b"5");
    assert_eq!(b.received().len(), 1);
    assert!(matches!(
        net.partition(&[&["main", "bb"]]),
        Err(NetError::UnknownMember { member, .. }) if member == "bb"
    ));
    let stats = net.stats().unwrap();
    let blocked = |m: &str| stats.ports[m].blocked;
    assert_eq!((blocked("main"), blocked("b"), blocked("c")), (1, 2, 1));
}

#[test]
fn strangers_are_not_served() {
    let (net, _artifacts) = network(&["main", "b"]);
    let b = Peer::join(&net, "b");
    let stranger = UnixDatagram::bind(net.dir.path().join("intruder.sock")).unwrap();
    let mut frame = BROADCAST.to_vec();
    frame.extend([0x52, 0x54, 0, 9, 9, 1, 8, 0]);
    stranger
        .send_to(&frame, net.dir.path().join(switch::SWITCH_SOCKET))
        .unwrap();
    assert!(b.nothing_received());
    assert_eq!(net.stats().unwrap().strangers, 1);
}

#[test]
fn a_burst_waits_for_a_slow_reader_instead_of_being_lost() {
    let (net, _artifacts) = network(&["main", "b"]);
    let [a, b] = ["main", "b"].map(|m| Peer::join(&net, m));
    b.send(BROADCAST, b"hello"); // so that the switch knows b's MAC
    a.received();
    // Far more than the receiver's socket queue (10 datagrams) holds.
    for i in 0..400u32 {
        a.send(b.mac, &i.to_le_bytes());
    }
    std::thread::sleep(Duration::from_millis(200));
    let got = b.received();
    let expected: Vec<Vec<u8>> = (0..400u32).map(|i| i.to_le_bytes().to_vec()).collect();
    assert_eq!(got, expected, "all frames, in order");
    assert_eq!(net.stats().unwrap().ports["b"].lost, 0);
}

#[test]
fn a_member_that_comes_later_or_again_is_reached() {
    let (net, _artifacts) = network(&["main", "b"]);
    let a = Peer::join(&net, "main");
    a.send(BROADCAST, b"early"); // b's QEMU is not there yet: lost
    handled(&net, 1);
    let b = Peer::join(&net, "b");
    a.send(BROADCAST, b"now");
    assert_eq!(b.received(), [b"now".to_vec()]);
    // A restore binds the path anew.
    drop(b);
    std::fs::remove_file(net.dir.path().join("b.sock")).unwrap();
    let b = Peer::join(&net, "b");
    a.send(BROADCAST, b"again");
    assert_eq!(b.received(), [b"again".to_vec()]);
    assert_eq!(net.stats().unwrap().ports["b"].lost, 1);
}

#[test]
fn the_capture_holds_every_frame_received() {
    let (net, _artifacts) = network(&["main", "b"]);
    let [a, b] = ["main", "b"].map(|m| Peer::join(&net, m));
    net.disconnect("b").unwrap();
    a.send(BROADCAST, b"one");
    b.send(a.mac, b"two");
    handled(&net, 2);
    net.stop();
    let records = read_pcap(&std::fs::read(net.pcap()).unwrap()).unwrap();
    let payloads: Vec<&[u8]> = records.iter().map(|r| &r.frame[14..]).collect();
    assert_eq!(payloads, [b"one".as_slice(), b"two"]);
    assert!(records[0].time <= records[1].time);
}

#[test]
fn names_and_addresses() {
    let (net, _artifacts) = network(&["main", "b"]);
    assert_eq!(net.address_of("b").unwrap(), Ipv4Addr::new(10, 99, 0, 2));
    assert_eq!(net.subnet(), Ipv4Addr::new(10, 99, 0, 0));
    assert!(net.address_of("c").is_err());
    let artifacts = tempfile::tempdir().unwrap();
    for bad in ["", "Lan", "0lan", "a-very-long-name", "l an"] {
        let made = Network::create(bad, 0, &[], &artifacts.path().join("x.pcap"));
        assert!(matches!(made, Err(NetError::InvalidName { .. })), "{bad:?}");
    }
    let netdev = net.netdev("b").unwrap();
    assert_eq!(netdev["type"], "dgram");
    assert!(netdev["local"]["path"]
        .as_str()
        .unwrap()
        .ends_with("/b.sock"));
    let dir = net.dir.path().to_path_buf();
    drop(net);
    assert!(!dir.exists(), "the socket dir goes with the network");
}
