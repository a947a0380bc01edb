//! Port forwards from the host to the guest, through the port-forward NIC
//! ([`Machine::add_forward_nic`]): QEMU binds host port 0 (the kernel picks
//! a free one, so concurrent tests never collide), and the real port is
//! read back from HMP `info usernet`. They close with QEMU.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::json;

use super::plug::FORWARD_NIC;
use super::Machine;
use crate::error::{NetError, Result};

impl Machine {
    /// The host address (on 127.0.0.1) that reaches TCP port `guest_port`
    /// of the guest's `10.0.2.15`, through the port-forward NIC: the
    /// forward made at launch for that port, else a new one added now.
    ///
    /// ```no_run
    /// # fn demo(vm: &mut qemu_test::Machine) -> qemu_test::Result<()> {
    /// let web = vm.forward(80)?;
    /// let reply = std::net::TcpStream::connect(web);
    /// # Ok(()) }
    /// ```
    pub fn forward(&mut self, guest_port: u16) -> Result<SocketAddr> {
        if !self.has_forward_nic() {
            return Err(NetError::NoForwardNic.into());
        }
        if let Some(port) = self.forwarded(guest_port)? {
            return Ok(local(port));
        }
        let rule = format!("hostfwd_add {FORWARD_NIC} tcp:127.0.0.1:0-10.0.2.15:{guest_port}");
        let said = self.hmp(&rule)?;
        match self.forwarded(guest_port)? {
            Some(port) => Ok(local(port)),
            None => Err(NetError::Forward {
                guest_port,
                usernet: format!("{rule}: {said}"),
            }
            .into()),
        }
    }

    /// The host port forwarded to `guest_port`, if any.
    fn forwarded(&mut self, guest_port: u16) -> Result<Option<u16>> {
        let usernet = self.hmp("info usernet")?;
        Ok(host_port(&usernet, FORWARD_NIC, guest_port))
    }

    fn has_forward_nic(&self) -> bool {
        self.plugs.iter().any(|plug| plug.id() == Some(FORWARD_NIC))
    }

    /// Runs a human monitor command through QMP; its text output.
    fn hmp(&mut self, command: &str) -> Result<String> {
        let out = self.command("human-monitor-command", json!({"command-line": command}))?;
        Ok(out.as_str().unwrap_or_default().to_string())
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The host port of the `TCP[HOST_FORWARD]` rule to `guest_port` in the
/// section of netdev `netdev` of `info usernet`:
///
/// ```text
/// Hub -1 (forward):
///   Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
///   TCP[HOST_FORWARD]  12       127.0.0.1 34331       10.0.2.15  8080     0     0
/// ```
fn host_port(usernet: &str, netdev: &str, guest_port: u16) -> Option<u16> {
    let header = format!("({netdev}):");
    let mut ours = false;
    for line in usernet.lines() {
        if line.starts_with("Hub") || line.starts_with("VLAN") {
            ours = line.trim_end().ends_with(&header);
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let ["TCP[HOST_FORWARD]", _fd, _src, host, _dst, guest, ..] = fields.as_slice() {
            if ours && guest.parse() == Ok(guest_port) {
                return host.parse().ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forwarded_port_of_our_netdev() {
        let usernet = "Hub -1 (mine):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n  TCP[HOST_FORWARD]  10       127.0.0.1  5555       10.0.2.15  8080     0     0\r\nHub -1 (forward):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n  TCP[ESTABLISHED]   14       127.0.0.1 40000       10.0.2.15  8080     0     0\r\n  TCP[HOST_FORWARD]  12       127.0.0.1 34331       10.0.2.15  8080     0     0\r\n  TCP[HOST_FORWARD]  13       127.0.0.1 34332       10.0.2.15    22     0     0\r\n";
        assert_eq!(host_port(usernet, "forward", 8080), Some(34331));
        assert_eq!(host_port(usernet, "forward", 22), Some(34332));
        assert_eq!(host_port(usernet, "forward", 80), None);
        assert_eq!(host_port(usernet, "mine", 8080), Some(5555));
        assert_eq!(host_port("", "forward", 8080), None);
    }
}
