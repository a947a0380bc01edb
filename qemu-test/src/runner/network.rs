//! A test's networks and port forwards, from its spec: the networks made
//! for the test (and stopped with it), each VM's NICs, and the guest side
//! of a Linux guest (interfaces named after their networks, addresses,
//! `/etc/hosts`, host name) set through its shell, the same way after a
//! boot and after a restore (when the NICs were hot-plugged a moment ago).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{BoxError, NetError};
use crate::guest::LINUX_READY;
use crate::machine::{Machine, FORWARD_NIC};
use crate::net::{self, Network, FORWARD_GUEST_ADDRESS};
use crate::shell::Shell;
use crate::spec::VmSpec;

/// How long a guest may take to show a NIC (hot-plugged after a restore:
/// about 0.3 s) or to bring a link up.
const NIC_TIMEOUT: Duration = Duration::from_secs(20);

/// The networks of one test, shared by its VMs and the runner.
pub(crate) type Networks = Arc<Vec<Network>>;

/// What a test's VMs get besides their spec's arguments: the networks,
/// the program dir, whether the runner sets up the guest side.
#[derive(Debug, Clone, Default)]
pub(crate) struct Devices {
    pub(crate) networks: Networks,
    pub(crate) programs: Option<std::path::PathBuf>,
    pub(crate) configures_guest: bool,
}

impl Devices {
    /// Gives `machine`, member `member`, its NICs and shares.
    pub(crate) fn attach(
        &self,
        machine: &mut Machine,
        spec: &VmSpec,
        member: &str,
        cwd: &Path,
    ) -> Result<(), NetError> {
        attach(machine, spec, &self.networks, member)?;
        super::share::attach(machine, spec, self.programs.as_deref(), cwd)
    }

    /// Sets up member `member`'s guest side: networks, then mounts.
    pub(crate) fn configure(
        &self,
        shell: &Shell,
        spec: &VmSpec,
        member: &str,
    ) -> Result<(), BoxError> {
        if !self.configures_guest {
            return Ok(());
        }
        configure(shell, spec, &self.networks, member)?;
        super::share::mount(shell, spec, self.programs.is_some())
    }
}

/// Makes the networks `spec` declares, for its members, with their
/// captures in `artifacts` (`net-<name>.pcap`).
pub(crate) fn create(spec: &VmSpec, artifacts: &Path) -> Result<Networks, NetError> {
    let members = spec.members();
    let networks = spec
        .networks
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let pcap = artifacts.join(format!("net-{name}.pcap"));
            Network::create(name, index, &members, &pcap)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(networks))
}

/// Stops every switch: their captures are complete.
pub(crate) fn stop(networks: &Networks) {
    for network in networks.iter() {
        network.stop();
    }
}

/// Gives `machine`, member `member` of the test, its NICs: one per
/// network, and the port-forward NIC if the spec asks for one.
pub(crate) fn attach(
    machine: &mut Machine,
    spec: &VmSpec,
    networks: &[Network],
    member: &str,
) -> Result<(), NetError> {
    for network in networks {
        let mac = network.mac_of(member)?.to_string();
        machine.add_nic(network.name(), &mac, network.netdev(member)?);
    }
    if let Some(ports) = &spec.forward {
        machine.add_forward_nic(&forward_mac(spec, member).to_string(), ports);
    }
    Ok(())
}

fn forward_mac(spec: &VmSpec, member: &str) -> net::Mac {
    let index = spec.members().iter().position(|m| m == member).unwrap_or(0);
    net::forward_mac(index)
}

/// Whether the runner sets up the guest side: a Linux guest of the crate's
/// whose shell answers on the console.
pub(crate) fn configures_guest(spec: &VmSpec) -> bool {
    let linux = spec.builtin_guest().and_then(|g| g.ready) == Some(LINUX_READY);
    let anything = !spec.networks.is_empty()
        || spec.forward.is_some()
        || !spec.shares.is_empty()
        || super::share::guest_has_9p(spec);
    linux && spec.console.is_some() && anything
}

/// Sets up member `member`'s guest side through `shell`: each NIC found by
/// its MAC and named after its network (the port-forward NIC `forward`),
/// its address, every member's name in `/etc/hosts`, the host name.
pub(crate) fn configure(
    shell: &Shell,
    spec: &VmSpec,
    networks: &[Network],
    member: &str,
) -> Result<(), BoxError> {
    let script = guest_script(spec, networks, member)?;
    shell.with_timeout(NIC_TIMEOUT).succeed(&script)?;
    Ok(())
}

/// The script [`configure`] runs.
fn guest_script(spec: &VmSpec, networks: &[Network], member: &str) -> Result<String, NetError> {
    // Waits for the NIC with MAC $1 (a hot-plugged one appears a moment
    // after the restore) and names it $2.
    let mut script = String::from(
        "qt_nic() { n=; t=0; while :; do for d in /sys/class/net/*; do \
         [ \"$(cat $d/address)\" = \"$1\" ] && n=${d##*/}; done; [ -n \"$n\" ] && break; \
         t=$((t+1)); [ $t -gt 300 ] && { echo \"no NIC with MAC $1\" >&2; return 1; }; \
         sleep 0.05; done; [ \"$n\" = \"$2\" ] || ip link set \"$n\" name \"$2\"; }\n",
    );
    for network in networks {
        let (name, mac) = (network.name(), network.mac_of(member)?);
        let address = network.address_of(member)?;
        let prefix = net::PREFIX;
        writeln!(
            script,
            "qt_nic {mac} {name} && ip addr add {address}/{prefix} dev {name} && ip link set {name} up || exit 1"
        )
        .expect("a String takes writes");
    }
    if spec.forward.is_some() {
        let mac = forward_mac(spec, member);
        writeln!(
            script,
            "qt_nic {mac} {FORWARD_NIC} && ip addr add {FORWARD_GUEST_ADDRESS}/24 dev {FORWARD_NIC} && ip link set {FORWARD_NIC} up || exit 1"
        )
        .expect("a String takes writes");
    }
    let mut hosts = vec!["127.0.0.1 localhost".to_string()];
    for (n, network) in networks.iter().enumerate() {
        for other in network.members() {
            let address = network.address_of(other)?;
            // Bare names resolve on the first network; `name.net` on each.
            match n {
                0 => hosts.push(format!("{address} {other} {other}.{}", network.name())),
                _ => hosts.push(format!("{address} {other}.{}", network.name())),
            }
        }
    }
    let lines: Vec<String> = hosts.iter().map(|h| format!("'{h}'")).collect();
    writeln!(script, "printf '%s\\n' {} >/etc/hosts", lines.join(" ")).expect("writes");
    if !networks.is_empty() {
        writeln!(script, "hostname {member}").expect("writes");
    }
    Ok(script)
}

/// Sets the link of `machine`'s NIC on `network` up or down (QMP
/// `set_link`); up, waits (through `shell`, if there is one) until the
/// guest has taken the link up again and passes traffic.
pub(crate) fn set_link(
    machine: &mut Machine,
    shell: Option<Shell>,
    network: &str,
    up: bool,
) -> Result<(), BoxError> {
    machine.set_link(network, up)?;
    if let (true, Some(shell)) = (up, shell) {
        let check = format!("grep -qx up /sys/class/net/{network}/operstate");
        shell.wait_until_succeeds(&check, NIC_TIMEOUT)?;
    }
    Ok(())
}
