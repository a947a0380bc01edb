//! The switch: one thread per network, forwarding Ethernet frames between
//! QEMUs' `-netdev dgram` sockets in the network's directory.
//!
//! Each VM's netdev binds `<dir>/<member>.sock` and sends every frame, one
//! datagram, to `<dir>/switch.sock`; the sender's address names the port.
//! Only registered ports are served (a datagram from anything else is
//! dropped), and they are registered before their VM starts, so the first
//! flood (the first ARP request) reaches VMs that have not spoken yet.
//!
//! Frames to a port go through one socket connected to the port's path:
//! `poll` then says when that QEMU's receive queue (10 datagrams by
//! default) has room, and frames wait in a bounded queue meanwhile instead
//! of being lost. A port whose QEMU is not there yet, or was replaced (a
//! restore binds the path anew), is connected again on the next frame.
//!
//! MAC learning; broadcast, multicast and unknown unicast are flooded to
//! every other port the rules allow. Rules: partitions (frames flow only
//! within a group) and cut ports (the cable pulled at the switch: the
//! guest keeps its carrier). Every frame received is written to the pcap
//! before the rules apply, with one clock for all ports.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::pcap::PcapWriter;
use crate::os::{self, Interest};

/// Frames waiting for one port whose QEMU is busy; more are dropped.
const QUEUE: usize = 512;
/// Datagrams read per wake-up before the queues get their turn.
const BATCH: usize = 64;
/// The largest frame QEMU's dgram netdev sends (its buffer is 68 KiB).
const MAX_FRAME: usize = 69_632;
/// The switch's own socket in the network's dir.
pub(crate) const SWITCH_SOCKET: &str = "switch.sock";

/// Counters, per port and for the whole switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortStats {
    /// Frames received from the port.
    pub received: u64,
    /// Frames delivered to the port's QEMU.
    pub sent: u64,
    /// Frames for the port that were lost: its QEMU not there, its queue
    /// full.
    pub lost: u64,
    /// Frames the rules kept from the port (partitions, cuts).
    pub blocked: u64,
}

/// What the switch has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SwitchStats {
    /// Frames received from all ports.
    pub frames: u64,
    /// Frames flooded (broadcast, multicast, unknown destination).
    pub flooded: u64,
    /// Datagrams from senders that are not ports of this network.
    pub strangers: u64,
    /// Per port, by member name.
    pub ports: HashMap<String, PortStats>,
    /// The MACs learnt, and on which port.
    pub macs: HashMap<String, String>,
}

/// The forwarding rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    /// Port → group: frames flow only within a group; `None`: one network.
    pub(crate) groups: Option<HashMap<String, usize>>,
    /// Ports whose cable is pulled.
    pub(crate) cut: HashSet<String>,
}

impl Rules {
    /// Whether a frame may go from port `from` to port `to`.
    fn allows(&self, from: &str, to: &str) -> bool {
        if self.cut.contains(from) || self.cut.contains(to) {
            return false;
        }
        match &self.groups {
            None => true,
            Some(groups) => groups.get(from).is_some_and(|g| groups.get(to) == Some(g)),
        }
    }
}

/// A request to the switch thread; each carries where to answer.
enum Request {
    AddPort(String, mpsc::SyncSender<()>),
    Rules(Box<dyn FnOnce(&mut Rules) + Send>, mpsc::SyncSender<()>),
    Stats(mpsc::SyncSender<SwitchStats>),
    Stop,
}

/// The running switch: its thread, and how to talk to it.
#[derive(Debug)]
pub(crate) struct Switch {
    requests: mpsc::Sender<Request>,
    /// A datagram here wakes the thread up.
    waker: UnixDatagram,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

impl Switch {
    /// Binds `<dir>/switch.sock`, opens the capture at `pcap` and starts
    /// the thread (named after the network).
    pub(crate) fn start(name: &str, dir: &Path, pcap: &Path) -> io::Result<Switch> {
        let socket = UnixDatagram::bind(dir.join(SWITCH_SOCKET))?;
        socket.set_nonblocking(true)?;
        let capture = PcapWriter::new(BufWriter::new(File::create(pcap)?))?;
        let (waker, wakee) = UnixDatagram::pair()?;
        wakee.set_nonblocking(true)?;
        let (requests, inbox) = mpsc::channel();
        let mut state = State {
            dir: dir.to_path_buf(),
            socket,
            wakee,
            inbox,
            capture,
            ports: HashMap::new(),
            macs: HashMap::new(),
            rules: Rules::default(),
            stats: SwitchStats::default(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("qemu-test-net-{name}"))
            .spawn(move || state.run())?;
        Ok(Switch {
            requests,
            waker,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Serves `member`'s port from now on.
    pub(crate) fn add_port(&self, member: &str) -> io::Result<()> {
        self.ask(|answer| Request::AddPort(member.to_string(), answer))
    }

    /// Changes the rules; they apply to every frame from the moment this
    /// returns.
    pub(crate) fn change_rules(
        &self,
        change: impl FnOnce(&mut Rules) + Send + 'static,
    ) -> io::Result<()> {
        self.ask(|answer| Request::Rules(Box::new(change), answer))
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> io::Result<SwitchStats> {
        self.ask(Request::Stats)
    }

    fn ask<T>(&self, request: impl FnOnce(mpsc::SyncSender<T>) -> Request) -> io::Result<T> {
        let (answer, answered) = mpsc::sync_channel(1);
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the switch has stopped");
        self.requests.send(request(answer)).map_err(|_| gone())?;
        self.wake();
        answered.recv().map_err(|_| gone())
    }

    fn wake(&self) {
        // A full wake-up queue already wakes the thread.
        let _ = self.waker.send(&[0]);
    }

    /// Stops the thread; the capture is complete when this returns.
    pub(crate) fn stop(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = self.requests.send(Request::Stop);
            self.wake();
            let _ = thread.join();
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One port: a member's netdev.
#[derive(Debug)]
struct Port {
    path: PathBuf,
    /// Connected to `path` once its QEMU is there.
    out: Option<UnixDatagram>,
    queue: VecDeque<Vec<u8>>,
    stats: PortStats,
}

/// The switch thread's state.
struct State {
    dir: PathBuf,
    socket: UnixDatagram,
    wakee: UnixDatagram,
    inbox: mpsc::Receiver<Request>,
    capture: PcapWriter<BufWriter<File>>,
    ports: HashMap<String, Port>,
    /// MAC → port.
    macs: HashMap<[u8; 6], String>,
    rules: Rules,
    stats: SwitchStats,
}

impl State {
    fn run(&mut self) {
        let mut frame = vec![0u8; MAX_FRAME];
        loop {
            let waiting: Vec<String> = self
                .ports
                .iter()
                .filter(|(_, p)| !p.queue.is_empty() && p.out.is_some())
                .map(|(name, _)| name.clone())
                .collect();
            let ready = match self.poll(&waiting) {
                Ok(ready) => ready,
                Err(_) => return,
            };
            for (name, (_, writable)) in waiting.iter().zip(&ready[2..]) {
                if *writable {
                    self.flush_queue(name);
                }
            }
            // Frames first: what was sent before a request is handled
            // under the rules that were in force, and before the answer.
            if ready[0].0 || ready[1].0 {
                self.receive(&mut frame);
            }
            let _ = self.capture.flush();
            if ready[1].0 && !self.serve_requests() {
                return;
            }
        }
    }

    /// Waits for frames, requests, or room at a waiting port.
    fn poll(&self, waiting: &[String]) -> io::Result<Vec<(bool, bool)>> {
        let read = Interest {
            read: true,
            write: false,
        };
        let write = Interest {
            read: false,
            write: true,
        };
        let mut fds = vec![(self.socket.as_fd(), read), (self.wakee.as_fd(), read)];
        for name in waiting {
            if let Some(out) = &self.ports[name].out {
                fds.push((out.as_fd(), write));
            }
        }
        os::poll_ready(&fds, Some(Duration::from_secs(1)))
    }

    /// Handles the requests that came in; `false` to stop.
    fn serve_requests(&mut self) -> bool {
        let mut drain = [0u8; 64];
        while self.wakee.recv(&mut drain).is_ok() {}
        while let Ok(request) = self.inbox.try_recv() {
            match request {
                Request::AddPort(name, answer) => {
                    let path = self.dir.join(format!("{name}.sock"));
                    self.ports.entry(name).or_insert(Port {
                        path,
                        out: None,
                        queue: VecDeque::new(),
                        stats: PortStats::default(),
                    });
                    let _ = answer.send(());
                }
                Request::Rules(change, answer) => {
                    change(&mut self.rules);
                    let _ = answer.send(());
                }
                Request::Stats(answer) => {
                    let _ = answer.send(self.snapshot_stats());
                }
                Request::Stop => return false,
            }
        }
        true
    }

    fn snapshot_stats(&self) -> SwitchStats {
        let mut stats = self.stats.clone();
        stats.ports = self
            .ports
            .iter()
            .map(|(name, port)| (name.clone(), port.stats.clone()))
            .collect();
        stats.macs = self
            .macs
            .iter()
            .map(|(mac, port)| (super::addr::Mac(*mac).to_string(), port.clone()))
            .collect();
        stats
    }

    /// Reads up to a batch of frames and forwards each.
    fn receive(&mut self, buf: &mut [u8]) {
        for _ in 0..BATCH {
            let (len, from) = match self.socket.recv_from(buf) {
                Ok(got) => got,
                Err(_) => return,
            };
            let port = from
                .as_pathname()
                .filter(|p| p.parent() == Some(self.dir.as_path()))
                .and_then(|p| p.file_stem())
                .and_then(|s| s.to_str())
                .filter(|name| self.ports.contains_key(*name))
                .map(str::to_string);
            match port {
                Some(port) if len >= 14 => self.forward(&port, &buf[..len]),
                _ => self.stats.strangers += 1,
            }
        }
    }

    /// Captures, learns and forwards one frame from port `from`.
    fn forward(&mut self, from: &str, frame: &[u8]) {
        let _ = self.capture.write(SystemTime::now(), frame);
        self.stats.frames += 1;
        if let Some(port) = self.ports.get_mut(from) {
            port.stats.received += 1;
        }
        let dst: [u8; 6] = frame[0..6].try_into().expect("14 bytes at least");
        let src: [u8; 6] = frame[6..12].try_into().expect("14 bytes at least");
        if src[0] & 1 == 0 {
            self.macs.insert(src, from.to_string());
        }
        let known = (dst[0] & 1 == 0)
            .then(|| self.macs.get(&dst).cloned())
            .flatten();
        let targets: Vec<String> = match known {
            Some(port) => vec![port],
            None => {
                self.stats.flooded += 1;
                self.ports.keys().cloned().collect()
            }
        };
        for to in targets.iter().filter(|t| t.as_str() != from) {
            if self.rules.allows(from, to) {
                self.send(to, frame);
            } else if let Some(port) = self.ports.get_mut(to) {
                port.stats.blocked += 1;
            }
        }
    }

    /// Sends (or queues) one frame to port `to`.
    fn send(&mut self, to: &str, frame: &[u8]) {
        let Some(port) = self.ports.get_mut(to) else {
            return;
        };
        if !port.queue.is_empty() {
            if port.queue.len() < QUEUE {
                port.queue.push_back(frame.to_vec());
            } else {
                port.stats.lost += 1;
            }
            return;
        }
        // Twice: a port whose QEMU was replaced is connected again.
        for _ in 0..2 {
            if port.out.is_none() {
                port.out = connect(&port.path);
            }
            let Some(out) = &port.out else {
                port.stats.lost += 1;
                return;
            };
            match out.send(frame) {
                Ok(_) => {
                    port.stats.sent += 1;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    port.queue.push_back(frame.to_vec());
                    return;
                }
                Err(_) => port.out = None,
            }
        }
        port.stats.lost += 1;
    }

    /// Sends what waits for port `name` until its QEMU's queue is full.
    fn flush_queue(&mut self, name: &str) {
        let Some(port) = self.ports.get_mut(name) else {
            return;
        };
        while let (Some(frame), Some(out)) = (port.queue.front(), &port.out) {
            match out.send(frame) {
                Ok(_) => port.stats.sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    port.stats.lost += port.queue.len() as u64;
                    port.queue.clear();
                    port.out = None;
                    return;
                }
            }
            port.queue.pop_front();
        }
    }
}

/// A non-blocking socket connected to a port's path, if its QEMU is there.
fn connect(path: &Path) -> Option<UnixDatagram> {
    let out = UnixDatagram::unbound().ok()?;
    out.connect(path).ok()?;
    out.set_nonblocking(true).ok()?;
    Some(out)
}
