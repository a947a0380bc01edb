//! A host-built, dynamically linked program that tests/shares.rs runs in
//! the guest: it uses std's threads, a TCP connection over loopback and
//! the file system, and prints what it saw.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
    let addr = listener.local_addr().expect("local address");
    let server = std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().expect("accept");
        let mut got = String::new();
        peer.read_to_string(&mut got).expect("read");
        got
    });
    let mut client = TcpStream::connect(addr).expect("connect");
    client.write_all(args.join(" ").as_bytes()).expect("write");
    drop(client);
    let echoed = server.join().expect("the server thread");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("echoed {echoed:?} on {}", release.trim());
}
