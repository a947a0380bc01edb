//! Private networks between a test's VMs: rootless, isolated from the host
//! and from other tests, with a packet capture of everything on them.
//!
//! A [`Network`] is a directory of Unix sockets and a switch thread in the
//! test process. Each member VM's NIC is a QEMU `-netdev dgram` on its own
//! socket in that directory, sending its frames to the switch's; nothing
//! else can reach it (no tap, no bridge, no multicast, no TCP port, no
//! root), so two tests' networks never see each other's frames even with
//! the same addresses. The runner makes one per name in `networks = [...]`
//! and tears it down with the test; see [`Vm::network`](crate::Vm::network).
//!
//! | module | concern |
//! | --- | --- |
//! | `switch` | the switch thread: ports, MAC learning, flooding, rules |
//! | `pcap` | the capture file format |
//! | `addr` | addresses and MACs by network and member index |
//!
//! Addressing: network `k` (in declaration order, from 0) is
//! `10.99.k.0/24`; member `i` (the test's VM first, then its siblings in
//! declaration order) is `10.99.k.(i+1)`, MAC `52:54:00:kk:ii:01`.
//!
//! ```no_run
//! use qemu_test::prelude::*;
//!
//! #[qemu_test(kernel = guest::LINUX_X86_64, console, siblings = ["b"], networks = ["lan"])]
//! fn split_brain(vm: &mut Vm) -> TestResult {
//!     let b = vm.sibling("b")?;
//!     vm.shell().succeed("ping -c1 -W2 b")?;
//!     let lan = vm.network("lan")?;
//!     lan.partition(&[&["main"], &["b"]])?;
//!     vm.shell().fail("ping -c1 -W1 b")?;
//!     lan.heal()?;
//!     b.shell().succeed("ping -c1 -W2 main")?;
//!     Ok(())
//! }
//! # fn main() {}
//! ```

mod addr;
mod pcap;
mod switch;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub(crate) use addr::{forward_mac, PREFIX};
pub use addr::{Mac, FORWARD_GUEST_ADDRESS, MAX_MEMBERS, MAX_NETWORKS};
pub use pcap::{read as read_pcap, Record};
pub use switch::{PortStats, SwitchStats};

use crate::error::NetError;
use switch::{Rules, Switch};

/// The longest path a Unix socket may have (`sun_path` less its NUL).
const SOCKET_PATH_MAX: usize = 107;

/// One private L2 network of a test, and its switch.
///
/// Members are named (the test's VM is `main`, siblings by their names);
/// rules name them too. Rules apply at the switch, at once, to every frame
/// after the call returns.
#[derive(Debug)]
pub struct Network {
    name: String,
    index: usize,
    members: Vec<String>,
    pcap: PathBuf,
    switch: Switch,
    // Last: removed after the switch has stopped.
    dir: tempfile::TempDir,
}

impl Network {
    /// Makes network `name`, the `index`th of its test, for `members`
    /// (each gets a port and an address in this order), capturing to
    /// `pcap`. The sockets go in a new private directory under the
    /// system's temp dir (`qt-net-XXXXXX`: socket paths are short).
    pub fn create(
        name: &str,
        index: usize,
        members: &[String],
        pcap: &Path,
    ) -> Result<Network, NetError> {
        check_name(name)?;
        if index >= MAX_NETWORKS || members.len() > MAX_MEMBERS {
            return Err(NetError::TooMany {
                what: format!(
                    "network {name:?} is number {} with {} members: at most {MAX_NETWORKS} networks of {MAX_MEMBERS} VMs",
                    index + 1,
                    members.len()
                ),
            });
        }
        let dir = socket_dir(members)?;
        let io = |context: String| move |source| NetError::Io { context, source };
        let switch = Switch::start(name, dir.path(), pcap)
            .map_err(io(format!("starting the switch of network {name:?}")))?;
        for member in members {
            switch
                .add_port(member)
                .map_err(io(format!("adding {member:?} to network {name:?}")))?;
        }
        Ok(Network {
            name: name.to_string(),
            index,
            members: members.to_vec(),
            pcap: pcap.to_path_buf(),
            switch,
            dir,
        })
    }

    /// The network's name (also the guest's interface name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its members, in address order.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The capture of every frame the switch received, in the test's
    /// artifact dir as `net-<name>.pcap` (tcpdump and Wireshark read it;
    /// so does [`read_pcap`]).
    pub fn pcap(&self) -> &Path {
        &self.pcap
    }

    /// The network's own address, `10.99.k.0`, with prefix length 24.
    pub fn subnet(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 99, self.index as u8, 0)
    }

    /// `member`'s address on this network.
    ///
    /// ```no_run
    /// # fn demo(vm: &qemu_test::Vm) -> qemu_test::TestResult {
    /// let b = vm.network("lan")?.address_of("b")?;
    /// vm.shell().succeed(&format!("ping -c1 {b}"))?;
    /// # Ok(()) }
    /// ```
    pub fn address_of(&self, member: &str) -> Result<Ipv4Addr, NetError> {
        Ok(addr::address(self.index, self.position(member)?))
    }

    /// The MAC of `member`'s NIC on this network.
    pub fn mac_of(&self, member: &str) -> Result<Mac, NetError> {
        Ok(addr::mac(self.index, self.position(member)?))
    }

    /// Splits the network: frames flow only between members of the same
    /// group; a member in no group reaches nobody. Replaces an earlier
    /// partition; [`heal`](Self::heal) ends it.
    ///
    /// ```no_run
    /// # fn demo(lan: &qemu_test::net::Network) -> qemu_test::TestResult {
    /// lan.partition(&[&["main", "b"], &["c"]])?;
    /// # Ok(()) }
    /// ```
    pub fn partition(&self, groups: &[&[&str]]) -> Result<(), NetError> {
        let mut map = HashMap::new();
        for (group, members) in groups.iter().enumerate() {
            for member in *members {
                self.position(member)?;
                map.insert(member.to_string(), group);
            }
        }
        self.rules(move |rules| rules.groups = Some(map))
    }

    /// Pulls `member`'s cable at the switch: nothing reaches it or leaves
    /// it, while its guest still sees a carrier (unlike
    /// [`Vm::set_link`](crate::Vm::set_link)).
    pub fn disconnect(&self, member: &str) -> Result<(), NetError> {
        self.position(member)?;
        let member = member.to_string();
        self.rules(move |rules| {
            rules.cut.insert(member);
        })
    }

    /// Plugs `member`'s cable back in (see [`disconnect`](Self::disconnect)).
    pub fn reconnect(&self, member: &str) -> Result<(), NetError> {
        self.position(member)?;
        let member = member.to_string();
        self.rules(move |rules| {
            rules.cut.remove(&member);
        })
    }

    /// Ends every partition and reconnects every member: one network
    /// again, from the next frame on.
    pub fn heal(&self) -> Result<(), NetError> {
        self.rules(|rules| *rules = Rules::default())
    }

    /// What the switch has done so far: frames, floods, per-member counts,
    /// the MACs it learnt.
    pub fn stats(&self) -> Result<SwitchStats, NetError> {
        self.switch.stats().map_err(|source| NetError::Io {
            context: format!("asking network {:?}'s switch", self.name),
            source,
        })
    }

    fn rules(&self, change: impl FnOnce(&mut Rules) + Send + 'static) -> Result<(), NetError> {
        self.switch
            .change_rules(change)
            .map_err(|source| NetError::Io {
                context: format!("changing network {:?}'s rules", self.name),
                source,
            })
    }

    fn position(&self, member: &str) -> Result<usize, NetError> {
        self.members
            .iter()
            .position(|m| m == member)
            .ok_or_else(|| NetError::UnknownMember {
                network: self.name.clone(),
                member: member.to_string(),
                members: self.members.clone(),
            })
    }

    /// Stops the switch: the capture is complete. Frames sent after this
    /// are lost. (Dropping the network does it too.)
    pub(crate) fn stop(&self) {
        self.switch.stop();
    }

    /// QEMU's `-netdev` (and `netdev_add`) object for `member`'s port: a
    /// dgram netdev on its socket, sending to the switch.
    pub(crate) fn netdev(&self, member: &str) -> Result<Value, NetError> {
        self.position(member)?;
        let unix = |path: PathBuf| json!({"type": "unix", "path": path.to_string_lossy()});
        Ok(json!({
            "type": "dgram",
            "id": self.device_id(),
            "local": unix(self.dir.path().join(format!("{member}.sock"))),
            "remote": unix(self.dir.path().join(switch::SWITCH_SOCKET)),
        }))
    }

    /// The id of every member's netdev and NIC on this network
    /// (`net-<name>`), for QMP `set_link`.
    pub(crate) fn device_id(&self) -> String {
        format!("net-{}", self.name)
    }
}

/// Network names name guest interfaces too: at most 15 bytes.
fn check_name(name: &str) -> Result<(), NetError> {
    let valid = (1..=15).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    match valid {
        true => Ok(()),
        false => Err(NetError::InvalidName { name: name.into() }),
    }
}

/// A new private dir for the sockets, short enough for every member's.
fn socket_dir(members: &[String]) -> Result<tempfile::TempDir, NetError> {
    let longest = members.iter().map(String::len).max().unwrap_or(0);
    let fits = |base: &Path| {
        base.as_os_str().len() + "/qt-net-XXXXXX/".len() + longest + 5 <= SOCKET_PATH_MAX
    };
    let base = [std::env::temp_dir(), PathBuf::from("/tmp")]
        .into_iter()
        .find(|base| fits(base))
        .ok_or_else(|| NetError::TooMany {
            what: format!("member names up to {longest} bytes do not fit a Unix socket path"),
        })?;
    tempfile::Builder::new()
        .prefix("qt-net-")
        .tempdir_in(&base)
        .map_err(|source| NetError::Io {
            context: format!("creating a network's socket dir in {}", base.display()),
            source,
        })
}

#[cfg(test)]
mod tests;
