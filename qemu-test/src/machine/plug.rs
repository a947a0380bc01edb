//! Devices a machine gets at every launch that a saved state cannot hold:
//! NICs (their netdevs are the host's: sockets, slirp) and host shares
//! (9p: a mounted export blocks migration). A machine that boots has them
//! on its command line; a machine restored from a state has them
//! hot-plugged right after the restore, each on a spare PCIe root port
//! ([`set_hotplug_ports`](Machine::set_hotplug_ports)) that the saved
//! machine had too. They are left out of the snapshot key, so machines
//! with other NICs and shares (other sockets, MACs, directories) restore
//! the same snapshot.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::Machine;
use crate::error::{Error, NetError, Result};
use crate::qemu_opts::escape_opt;
use crate::qmp::QmpClient;

/// The id of the port-forward NIC and its netdev.
pub const FORWARD_NIC: &str = "forward";

/// A host directory shared into the guest over virtio-9p: the guest mounts
/// it with `mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 TAG
/// DIR`.
///
/// ```
/// use qemu_test::machine::Share;
///
/// let share = Share::new("/srv/data", "data").read_only();
/// assert_eq!(share.tag(), "data");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    host: PathBuf,
    tag: String,
    read_only: bool,
    mapped: bool,
}

impl Share {
    /// Shares `host` under the mount tag `tag`, read-write, with the
    /// guest's files owned by the user QEMU runs as
    /// (`security_model=none`).
    pub fn new(host: impl Into<PathBuf>, tag: impl Into<String>) -> Share {
        Share {
            host: host.into(),
            tag: tag.into(),
            read_only: false,
            mapped: false,
        }
    }

    /// Read-only: the guest's writes fail with `EROFS`.
    pub fn read_only(mut self) -> Share {
        self.read_only = true;
        self
    }

    /// Keeps the guest's owners and modes in extended attributes
    /// (`security_model=mapped-xattr`), so `chown` works in the guest.
    pub fn mapped_xattr(mut self) -> Share {
        self.mapped = true;
        self
    }

    /// The host directory.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// The mount tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Whether the guest may not write.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The `-fsdev` value: on the command line even of a restore (QEMU 7.2
    /// has no `fsdev_add`).
    fn fsdev(&self) -> String {
        format!(
            "local,id={},path={},security_model={}{}",
            self.fsdev_id(),
            escape_opt(&self.host.to_string_lossy()),
            if self.mapped { "mapped-xattr" } else { "none" },
            if self.read_only { ",readonly=on" } else { "" }
        )
    }

    fn fsdev_id(&self) -> String {
        format!("share-{}", self.tag)
    }
}

/// One device of [`Machine::plugs`].
#[derive(Debug, Clone)]
pub(crate) enum Plug {
    /// A NIC: its netdev (a QMP netdev object) and its device.
    Nic { netdev: Value, device: Value },
    /// A 9p share: its fsdev and its device.
    Share { share: Share, device: Value },
}

impl Plug {
    /// The device's id.
    pub(super) fn id(&self) -> Option<&str> {
        match self {
            Plug::Nic { device, .. } | Plug::Share { device, .. } => device["id"].as_str(),
        }
    }

    /// The arguments of a machine that boots with it.
    fn boot_args(&self) -> Vec<String> {
        match self {
            Plug::Nic { netdev, device } => vec![
                "-netdev".into(),
                netdev.to_string(),
                "-device".into(),
                device.to_string(),
            ],
            Plug::Share { share, device } => vec![
                "-fsdev".into(),
                share.fsdev(),
                "-device".into(),
                device.to_string(),
            ],
        }
    }

    /// The arguments of a machine restored with it (hot-plugged later).
    fn restore_args(&self) -> Vec<String> {
        match self {
            Plug::Nic { .. } => Vec::new(),
            Plug::Share { share, .. } => vec!["-fsdev".into(), share.fsdev()],
        }
    }

    /// Hot-plugs it on `bus` (`None`: the machine's default bus).
    fn hot_plug(&self, qmp: &QmpClient, bus: Option<&str>) -> Result<()> {
        let device = match self {
            Plug::Nic { netdev, device } => {
                qmp.command("netdev_add", netdev.clone())?;
                device
            }
            Plug::Share { device, .. } => device,
        };
        let mut device = device.clone();
        if let Some(bus) = bus {
            device["bus"] = bus.into();
        }
        qmp.command("device_add", device)?;
        Ok(())
    }
}

/// Whether the machine type hot-plugs PCI devices on PCIe root ports
/// (`q35`, Arm `virt`); others (`pc`) take them on their root bus.
fn needs_root_ports(machine: Option<&str>) -> bool {
    machine
        .is_some_and(|m| m.starts_with("q35") || m.starts_with("pc-q35") || m.starts_with("virt"))
}

impl Machine {
    /// Adds a virtio NIC with `id` (its device's and its netdev's id, for
    /// QMP `set_link`) and MAC `mac` on `netdev`, a QMP netdev object
    /// (`{"type": "user", ...}`, `{"type": "dgram", ...}`; its `id` is
    /// set here). A booting machine gets it on its command line, a restored one
    /// has it hot-plugged right after the restore.
    ///
    /// ```
    /// let mut vm = qemu_test::Machine::new("qemu-system-x86_64");
    /// vm.add_nic("lan", "52:54:00:00:00:01", serde_json::json!({"type": "user", "restrict": true}));
    /// ```
    pub fn add_nic(&mut self, id: &str, mac: &str, netdev: Value) -> &mut Self {
        let mut netdev = netdev;
        netdev["id"] = id.into();
        let device = json!({"driver": "virtio-net-pci", "netdev": id, "id": id, "mac": mac});
        self.plugs.push(Plug::Nic { netdev, device });
        self
    }

    /// Adds the port-forward NIC (id [`FORWARD_NIC`], MAC `mac`): a slirp
    /// netdev with `restrict=on` (the guest reaches neither the host nor
    /// the outside) forwarding a free host port on 127.0.0.1 to each of
    /// `guest_ports` on the guest's `10.0.2.15`. The host ports are the
    /// kernel's choice: read them with [`forward`](Self::forward).
    pub fn add_forward_nic(&mut self, mac: &str, guest_ports: &[u16]) -> &mut Self {
        let forwards: Vec<Value> = guest_ports
            .iter()
            .map(|port| json!({"str": format!("tcp:127.0.0.1:0-10.0.2.15:{port}")}))
            .collect();
        let mut netdev = json!({"type": "user", "restrict": true});
        if !forwards.is_empty() {
            netdev["hostfwd"] = forwards.into();
        }
        self.add_nic(FORWARD_NIC, mac, netdev)
    }

    /// Shares a host directory into the guest over virtio-9p (see
    /// [`Share`]).
    pub fn add_share(&mut self, share: Share) -> &mut Self {
        let device = json!({
            "driver": "virtio-9p-pci",
            "fsdev": share.fsdev_id(),
            "mount_tag": share.tag,
            "id": share.fsdev_id(),
        });
        self.plugs.push(Plug::Share { share, device });
        self
    }

    /// Gives the machine `count` empty PCIe root ports (`q35`, Arm `virt`;
    /// other machine types hot-plug on their root bus and get none), so
    /// that NICs and shares can be hot-plugged after a restore. They are
    /// part of the snapshot key: the saved machine needs them too.
    pub fn set_hotplug_ports(&mut self, count: u32) -> &mut Self {
        self.hotplug_ports = count;
        self
    }

    /// The root ports' ids, in plugging order.
    fn hotplug_port_ids(&self) -> Vec<String> {
        match needs_root_ports(self.machine_type.as_deref()) {
            true => (1..=self.hotplug_ports)
                .map(|n| format!("qt-hp{n}"))
                .collect(),
            false => Vec::new(),
        }
    }

    /// The root ports' arguments (also in the saved machine's).
    pub(crate) fn hotplug_port_args(&self) -> Vec<String> {
        self.hotplug_port_ids()
            .iter()
            .enumerate()
            .flat_map(|(n, id)| {
                [
                    "-device".to_string(),
                    format!("pcie-root-port,id={id},bus=pcie.0,chassis={}", 200 + n),
                ]
            })
            .collect()
    }

    /// The plugged devices' arguments for this launch: all of them when
    /// the machine boots, only the shares' backends when it is restored.
    pub(super) fn plug_args(&self) -> Vec<String> {
        let restoring = self.restore_from.is_some();
        self.plugs
            .iter()
            .flat_map(|plug| match restoring {
                true => plug.restore_args(),
                false => plug.boot_args(),
            })
            .collect()
    }

    /// The plugged devices' arguments for a machine that boots (`repro.sh`).
    pub(super) fn plug_boot_args(&self) -> Vec<String> {
        self.plugs.iter().flat_map(Plug::boot_args).collect()
    }

    /// After a restore: hot-plugs every NIC and share, in order, each on
    /// its own root port.
    pub(super) fn hot_plug(&self, qmp: &QmpClient) -> Result<()> {
        if self.plugs.is_empty() {
            return Ok(());
        }
        let ports = self.hotplug_port_ids();
        if needs_root_ports(self.machine_type.as_deref()) && ports.len() < self.plugs.len() {
            return Err(Error::Net(NetError::HotplugPorts {
                needed: self.plugs.len(),
                have: ports.len(),
            }));
        }
        for (n, plug) in self.plugs.iter().enumerate() {
            plug.hot_plug(qmp, ports.get(n).map(String::as_str))?;
        }
        Ok(())
    }

    /// Takes the NICs and shares away (a machine that makes a snapshot
    /// boots without them).
    pub(crate) fn take_plugs(&mut self) -> Vec<Plug> {
        std::mem::take(&mut self.plugs)
    }

    /// Gives back what [`take_plugs`](Self::take_plugs) took.
    pub(crate) fn put_plugs(&mut self, plugs: Vec<Plug>) {
        self.plugs = plugs;
    }

    /// Sets the link of NIC `id` up or down (QMP `set_link`): down, the
    /// guest sees its carrier go at once; up, Linux resumes traffic when
    /// its link watch runs, up to a second later.
    pub fn set_link(&mut self, id: &str, up: bool) -> Result<()> {
        self.command("set_link", json!({"name": id, "up": up}))?;
        Ok(())
    }
}
