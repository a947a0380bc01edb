//! Private networks between a test's VMs, on the Linux guest: names,
//! partitions and their heal, link faults, isolation between tests, the
//! capture each network keeps.

use std::sync::{Condvar, Mutex};

use qemu_test::net::{read_pcap, Network};
use qemu_test::prelude::*;

/// The frames on `network` so far that carry an IPv4 packet from `from`.
fn ipv4_from(network: &Network, from: std::net::Ipv4Addr) -> TestResult<usize> {
    let frames = read_pcap(&std::fs::read(network.pcap())?)?;
    Ok(frames
        .iter()
        .filter(|r| r.frame.len() >= 34 && r.frame[12..14] == [0x08, 0x00])
        .filter(|r| r.frame[26..30] == from.octets())
        .count())
}

/// Three VMs on one network reach each other by name, over ICMP and TCP,
/// and the capture holds their traffic.
#[qemu_test(
    kernel = guest::LINUX_X86_64,
    console,
    siblings = ["server", "backup"],
    networks = ["lan"],
    timeout = "180s"
)]
fn three_vms_talk_by_name(vm: &mut Vm) -> TestResult {
    let server = vm.sibling("server")?;
    let backup = vm.sibling("backup")?;
    let shells = [
        ("main", vm.shell()),
        ("server", server.shell()),
        ("backup", backup.shell()),
    ];
    for (me, shell) in &shells {
        assert_eq!(shell.succeed("hostname")?.trim(), *me);
        for (peer, _) in &shells {
            if peer != me {
                shell.succeed(&format!("ping -c1 -W5 {peer}"))?;
            }
        }
    }
    let lan = vm.network("lan")?;
    assert_eq!(
        vm.shell()
            .succeed("ip -4 -o addr show lan")?
            .split_whitespace()
            .nth(3),
        Some("10.99.0.1/24")
    );
    // A TCP service by name: the server answers with its host name.
    server
        .shell()
        .succeed("nc -l -p 7000 -e hostname >/dev/null 2>&1 &")?;
    vm.shell()
        .wait_until_succeeds("nc server 7000 | grep -qx server", Duration::from_secs(10))?;
    for member in ["main", "server", "backup"] {
        let frames = ipv4_from(lan, lan.address_of(member)?)?;
        assert!(frames >= 2, "{member}: {frames} IPv4 frames in the capture");
    }
    let stats = lan.stats()?;
    assert_eq!(stats.macs.len(), 3, "{stats:?}");
    assert_eq!(stats.strangers, 0);
    Ok(())
}

/// A partition cuts the network in two, instantly, and healing it joins
/// them again; so do a cable cut at the switch and a link fault at the NIC.
#[qemu_test(
    kernel = guest::LINUX_X86_64,
    console,
    siblings = ["b", "c"],
    networks = ["lan"],
    timeout = "180s"
)]
fn partition_and_heal(vm: &mut Vm) -> TestResult {
    let b = vm.sibling("b")?;
    let c = vm.sibling("c")?;
    let (a_sh, b_sh, c_sh) = (vm.shell(), b.shell(), c.shell());
    a_sh.succeed("ping -c1 -W5 b && ping -c1 -W5 c")?;
    b_sh.succeed("ping -c1 -W5 c")?;

    vm.network("lan")?.partition(&[&["main"], &["b", "c"]])?;
    a_sh.fail("ping -c1 -W1 b")?;
    a_sh.fail("ping -c1 -W1 c")?;
    b_sh.succeed("ping -c1 -W2 c")?;
    c_sh.fail("ping -c1 -W1 main")?;

    vm.network("lan")?.heal()?;
    a_sh.succeed("ping -c1 -W2 b && ping -c1 -W2 c")?;
    c_sh.succeed("ping -c1 -W2 main")?;

    // The cable pulled at the switch: the guest keeps its carrier.
    vm.network("lan")?.disconnect("c")?;
    a_sh.fail("ping -c1 -W1 c")?;
    assert_eq!(c_sh.succeed("cat /sys/class/net/lan/carrier")?.trim(), "1");
    vm.network("lan")?.reconnect("c")?;
    a_sh.succeed("ping -c1 -W2 c")?;

    // A link fault at the NIC: the guest sees it; up, traffic resumes.
    vm.set_link("lan", false)?;
    assert_eq!(a_sh.succeed("cat /sys/class/net/lan/carrier")?.trim(), "0");
    a_sh.fail("ping -c1 -W1 b")?;
    vm.set_link("lan", true)?;
    a_sh.succeed("ping -c1 -W2 b")?;

    let stats = vm.network("lan")?.stats()?;
    assert!(stats.ports["main"].blocked > 0, "{stats:?}");
    assert!(matches!(
        vm.network("lan")?.partition(&[&["main", "d"]]),
        Err(qemu_test::NetError::UnknownMember { .. })
    ));
    assert!(vm.network("wan").is_err());
    Ok(())
}

/// Both isolation tests wait here for each other (so that their VMs and
/// networks run at the same time), twice.
fn rendezvous(round: u32) -> TestResult {
    static ARRIVED: Mutex<[u32; 2]> = Mutex::new([0, 0]);
    static CHANGED: Condvar = Condvar::new();
    let mut arrived = ARRIVED.lock().unwrap();
    arrived[round as usize] += 1;
    CHANGED.notify_all();
    let (arrived, waited) = CHANGED
        .wait_timeout_while(arrived, Duration::from_secs(150), |a| a[round as usize] < 2)
        .unwrap();
    if waited.timed_out() {
        return Err(
            format!("the other isolation test did not come (round {round}: {arrived:?})").into(),
        );
    }
    Ok(())
}

/// Asks for the MAC of `10.99.0.<mine>` (ARP requests, flooded) while
/// the other test asks for `10.99.0.<theirs>` on its own network, with the
/// same addresses and MACs; checks that only its own requests reached its
/// capture.
fn isolated(vm: &mut Vm, mine: u8, theirs: u8) -> TestResult {
    let sh = vm.shell();
    rendezvous(0)?;
    sh.run(&format!("ping -c3 -W1 10.99.0.{mine}"))?;
    rendezvous(1)?;
    let lan = vm.network("lan")?;
    let frames = read_pcap(&std::fs::read(lan.pcap())?)?;
    let asked = |host: u8| {
        frames
            .iter()
            .filter(|r| r.frame.len() >= 42 && r.frame[12..14] == [0x08, 0x06])
            .filter(|r| r.frame[38..42] == [10, 99, 0, host])
            .count()
    };
    assert!(asked(mine) >= 1, "this test's ARP requests are missing");
    assert_eq!(
        asked(theirs),
        0,
        "the other test's ARP requests reached this network"
    );
    Ok(())
}

#[qemu_test(kernel = guest::LINUX_X86_64, console, networks = ["lan"], timeout = "180s")]
fn isolation_a(vm: &mut Vm) -> TestResult {
    isolated(vm, 111, 222)
}

#[qemu_test(kernel = guest::LINUX_X86_64, console, networks = ["lan"], timeout = "180s")]
fn isolation_b(vm: &mut Vm) -> TestResult {
    isolated(vm, 222, 111)
}

/// Three copies of one booted snapshot on one network: each gets its own
/// MAC, address and name after the restore (hot-plugged NICs), and a port
/// forward of its own.
#[qemu_test(
    kernel = guest::LINUX_X86_64,
    console,
    snapshot = "net-shell",
    siblings = ["b", "c"],
    networks = ["lan"],
    forward = [8080],
    timeout = "180s"
)]
fn three_restored_copies_do_not_collide(vm: &mut Vm) -> TestResult {
    let b = vm.sibling("b")?;
    let mut c = vm.sibling("c")?;
    let shells = [("main", vm.shell()), ("b", b.shell()), ("c", c.shell())];
    let mut macs = std::collections::HashSet::new();
    for (me, shell) in &shells {
        assert_eq!(shell.succeed("hostname")?.trim(), *me);
        assert!(macs.insert(shell.succeed("cat /sys/class/net/lan/address")?));
        for (peer, _) in &shells {
            if peer != me {
                shell.succeed(&format!("ping -c1 -W5 {peer}"))?;
            }
        }
        shell.succeed(&format!(
            "mkdir -p /www && echo {me} >/www/index.html && httpd -p 8080 -h /www"
        ))?;
    }
    assert!(http_get(vm.forward(8080)?)?.ends_with("main\n"));
    assert!(http_get(c.forward(8080)?)?.ends_with("c\n"));
    // The NICs were hot-plugged after the restore, not booted with.
    let cmdline = std::fs::read_to_string(vm.artifacts().join("cmdline.txt"))?;
    assert!(!cmdline.contains("virtio-net-pci"), "{cmdline}");
    Ok(())
}

/// `GET /` over HTTP/1.0; the whole reply.
fn http_get(addr: std::net::SocketAddr) -> TestResult<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// Port forwards from the host to guest HTTP servers: the declared one,
/// more added at run time, on two VMs at once; every host port is the
/// kernel's pick, none collides, each reaches its own guest and port.
#[qemu_test(
    kernel = guest::LINUX_X86_64,
    console,
    siblings = ["b"],
    forward = [8080],
    timeout = "180s"
)]
fn port_forwards_reach_guest_services(vm: &mut Vm) -> TestResult {
    let mut b = vm.sibling("b")?;
    const PORTS: [u16; 5] = [8080, 9001, 9002, 9003, 9004];
    for (sh, name) in [(vm.shell(), "main"), (b.shell(), "b")] {
        for port in PORTS {
            sh.succeed(&format!(
                "mkdir -p /www/{port} && echo {name}:{port} >/www/{port}/index.html && httpd -p {port} -h /www/{port}"
            ))?;
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (machine, name) in [(&mut **vm, "main"), (&mut *b, "b")] {
        for port in PORTS {
            let addr = machine.forward(port)?;
            assert!(addr.ip().is_loopback(), "{addr}");
            assert!(seen.insert(addr.port()), "host port {addr} given twice");
            // Asked again: the same forward.
            assert_eq!(machine.forward(port)?, addr);
            let reply = http_get(addr)?;
            assert!(
                reply.starts_with("HTTP/1.") && reply.ends_with(&format!("{name}:{port}\n")),
                "{reply}"
            );
        }
    }
    // The guest cannot reach the host through it (`restrict=on`).
    vm.shell().fail("wget -q -T 2 -O - http://10.0.2.2:1/ ")?;
    Ok(())
}

/// Without `forward`, a forward is a clear error.
#[qemu_test(kernel = guest::LINUX_X86_64, console, timeout = "120s")]
fn forward_needs_the_key(vm: &mut Vm) -> TestResult {
    let error = vm.forward(80).unwrap_err();
    assert!(error.to_string().contains("forward = [8080]"), "{error}");
    Ok(())
}

qemu_test::main!();
