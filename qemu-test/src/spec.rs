//! The declarative description of one VM: what the `#[qemu_test]`
//! attribute's arguments become, and what the runner launches.
//!
//! A [`VmSpec`] is plain data with fluent `with_*` setters; it does not start
//! anything. The runner resolves it (QEMU binary, accelerator) into a
//! [`MachineBuilder`](crate::machine::MachineBuilder).
//!
//! ```
//! use qemu_test::{guest, spec::VmSpec};
//! use std::time::Duration;
//!
//! let spec = VmSpec::new()
//!     .with_machine("virt")
//!     .with_kernel(&guest::ECHO_SHELL_AARCH64)
//!     .with_console()
//!     .with_timeout(Duration::from_secs(30));
//! assert_eq!(spec.qemu_binary_name().as_deref(), Some("qemu-system-aarch64"));
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{AssetError, GuestError};
use crate::guest::{self, Asset, Guest, LinuxGuest, Load};
use crate::qemu_opts::escape_opt;
use crate::requires::Requirement;

/// The name of the test's own VM on its networks (siblings go by theirs).
pub const MAIN: &str = "main";

/// The default per-test timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A guest image: a file on disk, one of the built-in [`Guest`]s, or a
/// declared [`Asset`] (fetched into the cache before the test starts).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Image {
    /// A file path.
    Path(PathBuf),
    /// A built-in guest, written to the cache when the VM is launched.
    Guest(&'static Guest),
    /// A file declared by URL and SHA-256.
    Asset(Asset),
}

impl Image {
    /// The asset this image is, if it is one.
    pub fn asset(&self) -> Option<&Asset> {
        match self {
            Image::Asset(asset) => Some(asset),
            _ => None,
        }
    }

    /// The file's path: a path as given, a built-in guest written to the
    /// cache, an asset from the cache (fetched now if it is not there).
    pub fn path(&self) -> Result<PathBuf, GuestError> {
        match self {
            Image::Path(path) => Ok(path.clone()),
            Image::Guest(guest) => guest.path().map_err(|e| GuestError::Build {
                guest: guest.name.to_string(),
                cause: e.to_string(),
            }),
            Image::Asset(asset) => Ok(asset.path()?),
        }
    }
}

// `kernel = MY_ASSET` borrows the `static` or `const` it names.
impl From<&Asset> for Image {
    fn from(asset: &Asset) -> Self {
        Image::Asset(asset.clone())
    }
}
impl From<Asset> for Image {
    fn from(asset: Asset) -> Self {
        Image::Asset(asset)
    }
}

impl From<&'static Guest> for Image {
    fn from(guest: &'static Guest) -> Self {
        Image::Guest(guest)
    }
}
impl From<&str> for Image {
    fn from(path: &str) -> Self {
        Image::Path(path.into())
    }
}
impl From<String> for Image {
    fn from(path: String) -> Self {
        Image::Path(path.into())
    }
}
impl From<PathBuf> for Image {
    fn from(path: PathBuf) -> Self {
        Image::Path(path)
    }
}
impl From<&std::path::Path> for Image {
    fn from(path: &std::path::Path) -> Self {
        Image::Path(path.to_path_buf())
    }
}

// `#[qemu_test(kernel = SOME_PATH)]` borrows the item a path names (it may
// be a `static Guest`), so a constant or static of the user's of any path
// type arrives borrowed: `&&str` for `const KERNEL: &str = "..."`.
impl From<&&str> for Image {
    fn from(path: &&str) -> Self {
        Image::Path(path.into())
    }
}
impl From<&String> for Image {
    fn from(path: &String) -> Self {
        Image::Path(path.into())
    }
}
impl From<&PathBuf> for Image {
    fn from(path: &PathBuf) -> Self {
        Image::Path(path.clone())
    }
}
impl From<&&std::path::Path> for Image {
    fn from(path: &&std::path::Path) -> Self {
        Image::Path(path.to_path_buf())
    }
}
impl From<&&'static Guest> for Image {
    fn from(guest: &&'static Guest) -> Self {
        Image::Guest(guest)
    }
}

/// A disk image the VM gets through a qcow2 overlay of its own, made in the
/// machine's artifact dir (`disk0.qcow2`, `disk1.qcow2`, ...) with
/// `qemu-img`: the guest writes to the overlay, never to the image (an
/// asset in the cache, a file of the test's). A test that starts from a
/// booted snapshot uses the image itself under `-snapshot`, which writes
/// nothing to it either.
///
/// ```
/// use qemu_test::guest::Asset;
/// use qemu_test::spec::{Disk, VmSpec};
///
/// static ROOT: Asset = Asset::new(
///     "https://example.org/rootfs.qcow2",
///     "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
/// );
/// let spec = VmSpec::new()
///     .with_disk(&ROOT)
///     .with_disk(Disk::new("scratch.img").with_interface("ide"));
/// assert_eq!(spec.disks[0].interface, "virtio");
/// assert_eq!(spec.assets(), [&ROOT]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disk {
    /// The image.
    pub image: Image,
    /// The `-drive` interface: `virtio` (the default), `ide`, `scsi`,
    /// `none` (then attach it with a `-device` of your own, by its id
    /// `disk0`, `disk1`, ...).
    pub interface: String,
    /// More `-drive` options, verbatim (`media=cdrom`, `cache=unsafe`).
    pub options: Option<String>,
}

impl Disk {
    /// A disk on a virtio interface.
    pub fn new(image: impl Into<Image>) -> Disk {
        Disk {
            image: image.into(),
            interface: "virtio".to_string(),
            options: None,
        }
    }

    /// Sets the `-drive` interface (`if=`).
    pub fn with_interface(mut self, interface: impl Into<String>) -> Disk {
        self.interface = interface.into();
        self
    }

    /// Adds `-drive` options, verbatim.
    pub fn with_options(mut self, options: impl Into<String>) -> Disk {
        self.options = Some(options.into());
        self
    }
}

impl<T: Into<Image>> From<T> for Disk {
    fn from(image: T) -> Disk {
        Disk::new(image)
    }
}

/// The firmware a VM boots: UEFI with a variable store of its own.
///
/// `Uefi` is the host's (OVMF for x86_64 from Debian's `ovmf`, AAVMF for
/// aarch64 from `qemu-efi-aarch64`, found through QEMU's firmware
/// descriptors); `UefiFiles` is firmware of the test's own (paths or
/// [`Asset`]s). Each machine gets the code read-only and a copy of the
/// variable-store template in its artifact dir (`efivars.fd`), so no test
/// changes the template or sees another test's variables. On a host
/// without the firmware the test is skipped, with the package to install.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Firmware {
    /// The host's UEFI firmware for the test's architecture and machine.
    Uefi,
    /// UEFI firmware from these files: the code (`-drive if=pflash`,
    /// read-only) and the variable-store template, both raw.
    UefiFiles {
        /// The firmware code.
        code: Image,
        /// The variable-store template, copied for each machine.
        vars: Image,
    },
}

/// Which accelerator to use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accel {
    /// KVM when a probe VM really boots with it, else TCG (the default).
    #[default]
    Auto,
    /// Hardware virtualization; the test is skipped (or fails under
    /// `QEMU_TEST_REQUIRE=1`) when it does not work.
    Kvm,
    /// Software emulation, always available.
    Tcg,
    /// Any other `-accel` value, passed through.
    Other(String),
}

impl From<&str> for Accel {
    fn from(s: &str) -> Self {
        match s {
            "auto" => Accel::Auto,
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            other => Accel::Other(other.to_string()),
        }
    }
}

/// `-smp` as QEMU takes it (`2`, or `1,sockets=2,cores=2,maxcpus=8`), and
/// the vCPUs the guest starts with: what the scheduler reserves host cores
/// for (not `maxcpus`: more vCPUs need hotplug).
///
/// ```
/// use qemu_test::spec::Smp;
///
/// assert_eq!(Smp::from(2).cpus(), 2);
/// let smp = Smp::from("1,sockets=2,cores=2,threads=2,maxcpus=8");
/// assert_eq!((smp.cpus(), smp.value()), (1, "1,sockets=2,cores=2,threads=2,maxcpus=8"));
/// // Without a count, QEMU starts `maxcpus`, else the whole topology.
/// assert_eq!(Smp::from("sockets=2,cores=2").cpus(), 4);
/// assert_eq!(Smp::from("maxcpus=3").cpus(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smp {
    value: String,
    cpus: u32,
}

impl Smp {
    /// The value passed to `-smp`.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The vCPUs the guest starts with, as QEMU computes them (at least 1;
    /// a value QEMU would reject counts as 1, and QEMU reports it at
    /// launch).
    pub fn cpus(&self) -> u32 {
        self.cpus
    }
}

impl From<u32> for Smp {
    fn from(cpus: u32) -> Smp {
        let cpus = cpus.max(1);
        Smp {
            value: cpus.to_string(),
            cpus,
        }
    }
}

impl From<&str> for Smp {
    fn from(value: &str) -> Smp {
        Smp {
            value: value.to_string(),
            cpus: crate::qemu_opts::smp_cpus(value).unwrap_or(1).max(1),
        }
    }
}

impl From<String> for Smp {
    fn from(value: String) -> Smp {
        Smp::from(value.as_str())
    }
}

/// Where the guest's serial console is attached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleSpec {
    /// A `-device` type such as `isa-serial`; `None` uses the machine's
    /// default serial port (`-serial chardev:console`).
    pub device: Option<String>,
    /// How many serial ports to fill with `null` before the console.
    pub index: u32,
}

/// The declarative description of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmSpec {
    /// An explicit QEMU binary (name looked up in `QEMU_TEST_QEMU_DIR` and
    /// `PATH`, or a path).
    pub binary: Option<String>,
    /// The target architecture: `qemu-system-<arch>`.
    pub arch: Option<String>,
    /// `-machine`.
    pub machine: Option<String>,
    /// `-cpu`; a built-in guest's own CPU model when `None`.
    pub cpu: Option<String>,
    /// `-smp`; its starting vCPUs are the host cores the scheduler reserves.
    pub smp: Smp,
    /// `-m`, as QEMU takes it (`256M`, `1G`, a number of MiB, or with
    /// hotplug options: `512M,slots=2,maxmem=4G`); its starting size is what
    /// the scheduler reserves.
    pub memory: Option<String>,
    /// The accelerator.
    pub accel: Accel,
    /// `-kernel` (or `-bios` for a built-in firmware guest).
    pub kernel: Option<Image>,
    /// `-initrd`.
    pub initrd: Option<Image>,
    /// `-append`.
    pub append: Option<String>,
    /// `-drive` values, one per drive.
    pub drives: Vec<String>,
    /// Disk images, each used through an overlay of its own ([`Disk`]).
    pub disks: Vec<Disk>,
    /// The firmware, when not QEMU's default.
    pub firmware: Option<Firmware>,
    /// Extra arguments, verbatim.
    pub args: Vec<String>,
    /// The serial console, if the test uses one.
    pub console: Option<ConsoleSpec>,
    /// The per-test deadline.
    pub timeout: Duration,
    /// The name of a booted snapshot to start from.
    pub snapshot: Option<String>,
    /// Whether the VM has a QMP monitor (default true). Without one, QEMU
    /// is only started: a launch that QEMU ends at once is the body's to
    /// judge (`vm.wait(None)`, `vm.exit_code()`, `vm.log()`).
    pub qmp: bool,
    /// Whether the runner launches the VM before the body (default true).
    /// With `false` the body gets the machine configured but not launched,
    /// adds what only it can know (a port, a socket path) and launches it.
    pub launch: bool,
    /// How many sibling machines the body may start
    /// ([`Vm::sibling`](crate::Vm::sibling)), each reserved at admission
    /// with the same vCPUs and memory as the test's own.
    pub siblings: u32,
    /// What the host must offer for the test to run (else it is skipped);
    /// see [`requires`](crate::requires).
    pub requires: Vec<Requirement>,
    /// The siblings' names, when the test names them (`siblings = ["b",
    /// "c"]`): the runner launches them with the test's VM (and restores
    /// them from its snapshot), and they join its networks.
    pub sibling_names: Vec<String>,
    /// The private networks every VM of the test is on, by name.
    pub networks: Vec<String>,
    /// Guest TCP ports to forward from the host (a port-forward NIC on
    /// each VM); `None`: no port-forward NIC.
    pub forward: Option<Vec<u16>>,
    /// Host directories shared into every VM of the test.
    pub shares: Vec<ShareSpec>,
}

/// A host directory shared into the guest (virtio-9p), mounted by the
/// Linux guest at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShareSpec {
    /// The host directory; a relative path is taken from the directory the
    /// tests run in (the package's, under cargo).
    pub host: PathBuf,
    /// Where the guest mounts it (absolute).
    pub guest: String,
    /// Whether the guest may only read it.
    pub read_only: bool,
}

impl ShareSpec {
    /// `"host:/guest"` or `"host:/guest:ro"` (`:rw`, the default, also
    /// works), as `shares = [...]` takes it.
    ///
    /// ```
    /// use qemu_test::spec::ShareSpec;
    ///
    /// let share = ShareSpec::parse("testdata:/mnt/data:ro").unwrap();
    /// assert_eq!((share.guest.as_str(), share.read_only), ("/mnt/data", true));
    /// assert!(ShareSpec::parse("testdata").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<ShareSpec, String> {
        let mut parts = text.rsplitn(3, ':').collect::<Vec<_>>();
        parts.reverse();
        let (host, guest, read_only) = match parts.as_slice() {
            [host, guest, "ro"] => (*host, *guest, true),
            [host, guest, "rw"] => (*host, *guest, false),
            [a, b, c] if c.starts_with('/') => (&text[..a.len() + 1 + b.len()], *c, false),
            [host, guest] => (*host, *guest, false),
            _ => {
                return Err(format!(
                    "{text:?}: expected \"HOST_DIR:/GUEST_DIR\" or \"HOST_DIR:/GUEST_DIR:ro\""
                ))
            }
        };
        let safe = |c: char| c.is_ascii_alphanumeric() || "/_-.+@".contains(c);
        if host.is_empty() || !guest.starts_with('/') || !guest.chars().all(safe) {
            return Err(format!(
                "{text:?}: expected \"HOST_DIR:/GUEST_DIR\" with an absolute guest path of letters, digits and /_-.+@"
            ));
        }
        Ok(ShareSpec {
            host: host.into(),
            guest: guest.into(),
            read_only,
        })
    }
}

impl Default for VmSpec {
    fn default() -> Self {
        VmSpec {
            binary: None,
            arch: None,
            machine: None,
            cpu: None,
            smp: Smp::from(1),
            memory: None,
            accel: Accel::Auto,
            kernel: None,
            initrd: None,
            append: None,
            drives: Vec::new(),
            disks: Vec::new(),
            firmware: None,
            args: Vec::new(),
            console: None,
            timeout: DEFAULT_TIMEOUT,
            snapshot: None,
            qmp: true,
            launch: true,
            siblings: 0,
            requires: Vec::new(),
            sibling_names: Vec::new(),
            networks: Vec::new(),
            forward: None,
            shares: Vec::new(),
        }
    }
}

impl VmSpec {
    /// An empty spec: one vCPU, QEMU's default memory, `accel = auto`, a
    /// 60 s timeout.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the QEMU binary (a name or a path).
    pub fn with_binary(mut self, binary: impl Into<String>) -> Self {
        self.binary = Some(binary.into());
        self
    }
    /// Sets the target architecture (`aarch64`, `x86_64`, ...).
    pub fn with_arch(mut self, arch: impl Into<String>) -> Self {
        self.arch = Some(arch.into());
        self
    }
    /// Sets the machine type.
    pub fn with_machine(mut self, machine: impl Into<String>) -> Self {
        self.machine = Some(machine.into());
        self
    }
    /// Sets the CPU model.
    pub fn with_cpu(mut self, cpu: impl Into<String>) -> Self {
        self.cpu = Some(cpu.into());
        self
    }
    /// Sets `-smp`: a number of vCPUs, or QEMU's syntax
    /// (`"1,sockets=2,cores=2,maxcpus=8"`).
    pub fn with_smp(mut self, smp: impl Into<Smp>) -> Self {
        self.smp = smp.into();
        self
    }
    /// Sets the memory size as QEMU's `-m` takes it.
    pub fn with_memory(mut self, memory: impl Into<String>) -> Self {
        self.memory = Some(memory.into());
        self
    }
    /// Sets the accelerator.
    pub fn with_accel(mut self, accel: impl Into<Accel>) -> Self {
        self.accel = accel.into();
        self
    }
    /// Sets the kernel (or built-in guest).
    pub fn with_kernel(mut self, kernel: impl Into<Image>) -> Self {
        self.kernel = Some(kernel.into());
        self
    }
    /// Sets the initrd.
    pub fn with_initrd(mut self, initrd: impl Into<Image>) -> Self {
        self.initrd = Some(initrd.into());
        self
    }
    /// Sets the kernel command line.
    pub fn with_append(mut self, append: impl Into<String>) -> Self {
        self.append = Some(append.into());
        self
    }
    /// Adds a `-drive` value.
    pub fn with_drive(mut self, drive: impl Into<String>) -> Self {
        self.drives.push(drive.into());
        self
    }
    /// Adds a disk image, used through an overlay of its own ([`Disk`]).
    pub fn with_disk(mut self, disk: impl Into<Disk>) -> Self {
        self.disks.push(disk.into());
        self
    }
    /// Sets the firmware ([`Firmware::Uefi`]: the host's UEFI).
    pub fn with_firmware(mut self, firmware: Firmware) -> Self {
        self.firmware = Some(firmware);
        self
    }
    /// Adds extra arguments, verbatim.
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// Attaches the serial console to the machine's default serial port.
    pub fn with_console(mut self) -> Self {
        self.console = Some(ConsoleSpec::default());
        self
    }
    /// Attaches the serial console to a `-device` of the given type.
    pub fn with_console_device(mut self, device: impl Into<String>) -> Self {
        self.console.get_or_insert_with(ConsoleSpec::default).device = Some(device.into());
        self
    }
    /// Attaches the serial console after `index` null serial ports.
    pub fn with_console_index(mut self, index: u32) -> Self {
        self.console.get_or_insert_with(ConsoleSpec::default).index = index;
        self
    }
    /// Sets the per-test timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Starts from the named booted snapshot.
    pub fn with_snapshot(mut self, name: impl Into<String>) -> Self {
        self.snapshot = Some(name.into());
        self
    }
    /// Gives the VM a QMP monitor (`true`, the default) or none.
    pub fn with_qmp(mut self, qmp: bool) -> Self {
        self.qmp = qmp;
        self
    }
    /// Has the runner launch the VM before the body (`true`, the default),
    /// or leaves that to the body.
    pub fn with_launch(mut self, launch: bool) -> Self {
        self.launch = launch;
        self
    }
    /// Adds what the host must offer for the test to run.
    pub fn with_requirements(mut self, requires: impl IntoIterator<Item = Requirement>) -> Self {
        self.requires.extend(requires);
        self
    }
    /// Lets the body start `count` sibling machines.
    pub fn with_siblings(mut self, count: u32) -> Self {
        self.siblings = count;
        self
    }
    /// Names the test's siblings: the runner launches them with the test's
    /// VM, configured like it, and they join its networks (member `i + 1`
    /// is the `i`th name; the test's VM is `main`).
    pub fn with_sibling_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sibling_names = names.into_iter().map(Into::into).collect();
        self.siblings = self.sibling_names.len() as u32;
        self
    }
    /// Puts every VM of the test on the private network `name` (see
    /// [`net`](crate::net)).
    pub fn with_network(mut self, name: impl Into<String>) -> Self {
        self.networks.push(name.into());
        self
    }
    /// Gives every VM of the test a port-forward NIC forwarding these
    /// guest TCP ports (more can be added at run time with
    /// [`Machine::forward`](crate::Machine::forward)).
    pub fn with_forward(mut self, guest_ports: impl IntoIterator<Item = u16>) -> Self {
        self.forward
            .get_or_insert_with(Vec::new)
            .extend(guest_ports);
        self
    }

    /// Shares a host directory into every VM of the test: `"host:/guest"`
    /// or `"host:/guest:ro"` (see [`ShareSpec::parse`]); a guest of the
    /// crate with 9p ([`LINUX_X86_64_GENERIC`](crate::guest::LINUX_X86_64_GENERIC))
    /// mounts it there. A malformed value is ignored here (the attribute
    /// checks it at compile time); use [`ShareSpec::parse`] to see why.
    pub fn with_share(mut self, share: &str) -> Self {
        if let Ok(share) = ShareSpec::parse(share) {
            self.shares.push(share);
        }
        self
    }

    /// The names of the test's VMs on its networks: `main`, then the named
    /// siblings.
    pub fn members(&self) -> Vec<String> {
        std::iter::once(MAIN.to_string())
            .chain(self.sibling_names.iter().cloned())
            .collect()
    }

    /// How many devices each VM hot-plugs after a snapshot restore: one
    /// NIC per network, the port-forward NIC, a 9p device per share and
    /// one for the program dir of a guest with 9p.
    pub fn hotplug_devices(&self) -> u32 {
        let programs = self
            .builtin_guest()
            .and_then(|g| g.linux())
            .is_some_and(|l| l.has_9p());
        self.networks.len() as u32
            + u32::from(self.forward.is_some())
            + self.shares.len() as u32
            + u32::from(programs)
    }

    /// The guest built into the crate, if the kernel is one.
    pub fn builtin_guest(&self) -> Option<&'static Guest> {
        match &self.kernel {
            Some(Image::Guest(g)) => Some(g),
            _ => None,
        }
    }

    /// The architecture: explicit, else the built-in guest's.
    pub fn effective_arch(&self) -> Option<&str> {
        self.arch
            .as_deref()
            .or(self.builtin_guest().map(|g| g.arch))
    }

    /// The machine type: explicit, else the built-in guest's.
    pub fn effective_machine(&self) -> Option<&str> {
        self.machine
            .as_deref()
            .or(self.builtin_guest().map(|g| g.machine))
    }

    /// The QEMU binary's name or path: `binary`, else
    /// `qemu-system-<arch>`; `None` when neither is known.
    pub fn qemu_binary_name(&self) -> Option<String> {
        self.binary
            .clone()
            .or_else(|| self.effective_arch().map(|a| format!("qemu-system-{a}")))
    }

    /// The memory in MiB the scheduler reserves: the starting size of `-m`
    /// parsed the way QEMU does (a bare number is MiB; `K`, `M`, `G`, `T`
    /// suffixes; `slots`/`maxmem` hotplug room is not counted), else
    /// QEMU's default of 128 MiB. Unparseable sizes count as the default;
    /// QEMU itself reports them at launch.
    pub fn memory_mib(&self) -> u64 {
        self.memory
            .as_deref()
            .and_then(crate::qemu_opts::memory_bytes)
            .map(|bytes| bytes.div_ceil(1 << 20))
            .unwrap_or(128)
    }

    /// The Linux guest the spec boots, if any.
    fn linux_guest(&self) -> Option<&'static LinuxGuest> {
        match self.builtin_guest().map(|g| &g.load) {
            Some(Load::Linux(linux)) => Some(linux),
            _ => None,
        }
    }

    /// Checks, without building anything, that the guest images the spec
    /// names can be had here: for a Linux guest such as
    /// [`LINUX_X86_64`](crate::guest::LINUX_X86_64) see
    /// [`LinuxGuest::check`]. The runner asks this when it lists the tests;
    /// [`GuestError::Unavailable`] makes a test skipped (a failure under
    /// `QEMU_TEST_REQUIRE=1`).
    ///
    /// A declared [`Asset`] must be in the cache or fetchable
    /// ([`Asset::check`]); disks need `qemu-img`; [`Firmware::Uefi`] the
    /// host's firmware. [`GuestError::is_unavailable`] errors make a test
    /// skipped, the others fail it.
    pub fn check_images(&self) -> Result<(), GuestError> {
        if let Some(linux) = self.linux_guest() {
            linux.check()?;
        }
        for asset in self.assets() {
            asset.check()?;
        }
        if !self.disks.is_empty() {
            guest::qemu_img_available()?;
        }
        if self.firmware == Some(Firmware::Uefi) {
            self.host_uefi()?;
        }
        Ok(())
    }

    /// Finds the guest images the spec names, building a Linux guest on
    /// first use ([`LinuxGuest::files`]) and fetching declared assets into
    /// the cache ([`Asset::path`]). The runner does this before a test's
    /// deadline starts and before it asks for its host budget.
    pub fn prepare_images(&self) -> Result<(), GuestError> {
        if let Some(linux) = self.linux_guest() {
            linux.files()?;
        }
        for asset in self.assets() {
            asset.path()?;
        }
        Ok(())
    }

    /// The declared assets the spec uses: its kernel, initrd, disks and
    /// firmware files that are [`Asset`]s, each once.
    pub fn assets(&self) -> Vec<&Asset> {
        let firmware = match &self.firmware {
            Some(Firmware::UefiFiles { code, vars }) => vec![code, vars],
            _ => Vec::new(),
        };
        let images = self
            .kernel
            .iter()
            .chain(&self.initrd)
            .chain(self.disks.iter().map(|d| &d.image))
            .chain(firmware);
        let mut assets: Vec<&Asset> = Vec::new();
        for asset in images.filter_map(Image::asset) {
            if !assets.contains(&asset) {
                assets.push(asset);
            }
        }
        assets
    }

    /// The arguments of the files each machine of the test has its own
    /// copy of, made in `dir` (the machine's artifact dir): the UEFI
    /// firmware's variable store (`efivars.fd`) and the disks' overlays
    /// (`disk0.qcow2`, ...). A spec that starts from a booted snapshot
    /// runs under `-snapshot`, which writes nothing to a drive's file: its
    /// machines use the template and the images themselves, the same for
    /// every test (as the snapshot's state expects).
    pub fn machine_files(&self, dir: &Path) -> Result<Vec<String>, GuestError> {
        let shared = self.snapshot.is_some();
        let mut args = Vec::new();
        if let Some(firmware) = &self.firmware {
            args.extend(self.firmware_args(firmware, dir, shared)?);
        }
        for (index, disk) in self.disks.iter().enumerate() {
            let image = disk.image.path()?;
            let escape = |p: &Path| escape_opt(&p.to_string_lossy());
            let file = if shared {
                format!("{},format={}", escape(&image), guest::image_format(&image)?)
            } else {
                let overlay = dir.join(format!("disk{index}.qcow2"));
                guest::make_overlay(&image, &overlay)?;
                format!("{},format=qcow2", escape(&overlay))
            };
            let mut drive = format!("file={file},if={},id=disk{index}", disk.interface);
            if let Some(options) = &disk.options {
                drive.push(',');
                drive.push_str(options);
            }
            args.extend(["-drive".to_string(), drive]);
        }
        Ok(args)
    }

    /// The pflash drives of `firmware`: the code read-only, the variable
    /// store copied into `dir` (or, `shared`, the template itself).
    fn firmware_args(
        &self,
        firmware: &Firmware,
        dir: &Path,
        shared: bool,
    ) -> Result<Vec<String>, GuestError> {
        let (code, code_format, vars, vars_format) = match firmware {
            Firmware::Uefi => {
                let uefi = self.host_uefi()?;
                (uefi.code, uefi.code_format, uefi.vars, uefi.vars_format)
            }
            Firmware::UefiFiles { code, vars } => (
                code.path()?,
                "raw".to_string(),
                vars.path()?,
                "raw".to_string(),
            ),
        };
        let vars = if shared {
            vars
        } else {
            let copy = dir.join("efivars.fd");
            guest::copy_sparse(&vars, &copy).map_err(|e| AssetError::Cache {
                url: vars.display().to_string(),
                cause: format!("cannot copy the variable store to {}: {e}", copy.display()),
            })?;
            copy
        };
        let escape = |p: &Path| escape_opt(&p.to_string_lossy());
        Ok(vec![
            "-drive".into(),
            format!(
                "if=pflash,unit=0,format={code_format},readonly=on,file={}",
                escape(&code)
            ),
            "-drive".into(),
            format!(
                "if=pflash,unit=1,format={vars_format},file={}",
                escape(&vars)
            ),
        ])
    }

    /// The host's UEFI firmware for the spec's architecture and machine
    /// (QEMU's default machine, `pc`, on x86 when it names none).
    fn host_uefi(&self) -> Result<guest::Uefi, GuestError> {
        let arch = self.effective_arch().unwrap_or("unknown");
        let machine = self.effective_machine().unwrap_or(match arch {
            "aarch64" | "arm" => "virt",
            _ => "pc",
        });
        let machine = machine.split(',').next().unwrap_or(machine);
        let machine = machine.strip_prefix("type=").unwrap_or(machine);
        Ok(guest::host_uefi(arch, machine)?)
    }

    /// The arguments this spec adds to QEMU's command line, after the
    /// machine and console arguments the [`Machine`](crate::machine::Machine)
    /// itself builds. `accel` is the resolved accelerator (`-accel` value).
    /// Built-in guests are materialized into the cache, a Linux guest found
    /// or built ([`prepare_images`](Self::prepare_images)); its failure is
    /// an `Other` error.
    pub fn qemu_args(&self, accel: Option<&str>) -> std::io::Result<Vec<String>> {
        let mut args = Vec::new();
        if let Some(accel) = accel {
            args.extend(["-accel".to_string(), accel.to_string()]);
        }
        if let Some(cpu) = self
            .cpu
            .as_deref()
            .or(self.builtin_guest().and_then(|g| g.cpu))
        {
            args.extend(["-cpu".to_string(), cpu.to_string()]);
        }
        args.extend(["-smp".to_string(), self.smp.value().to_string()]);
        if let Some(memory) = &self.memory {
            args.extend(["-m".to_string(), memory.clone()]);
        }
        // A Linux guest brings its initrd, kernel command line and QEMU
        // arguments; the spec's own `initrd` replaces the first, its
        // `append` and `args` come after the others.
        let linux = match self.linux_guest() {
            Some(linux) => Some(linux.files().map_err(std::io::Error::other)?),
            None => None,
        };
        if let Some(kernel) = &self.kernel {
            let flag = match kernel {
                Image::Guest(g) if g.load == Load::Bios => "-bios",
                _ => "-kernel",
            };
            let path = match &linux {
                Some(files) => files.kernel.to_string_lossy().into_owned(),
                None => image_path(kernel)?,
            };
            args.extend([flag.to_string(), path]);
        }
        if let Some(initrd) = &self.initrd {
            args.extend(["-initrd".to_string(), image_path(initrd)?]);
        } else if let Some(files) = &linux {
            args.extend([
                "-initrd".to_string(),
                files.initrd.to_string_lossy().into_owned(),
            ]);
        }
        match (&linux, &self.append) {
            (Some(files), Some(append)) => {
                args.extend(["-append".to_string(), format!("{} {append}", files.append)])
            }
            (Some(files), None) => args.extend(["-append".to_string(), files.append.to_string()]),
            (None, Some(append)) => args.extend(["-append".to_string(), append.clone()]),
            (None, None) => {}
        }
        if let Some(files) = &linux {
            args.extend(files.args.iter().map(|a| a.to_string()));
        }
        for drive in &self.drives {
            args.extend(["-drive".to_string(), drive.clone()]);
        }
        args.extend(self.args.iter().cloned());
        Ok(args)
    }
}

fn image_path(image: &Image) -> std::io::Result<String> {
    let path = match image {
        Image::Path(p) => p.clone(),
        Image::Guest(g) => g.path()?,
        Image::Asset(asset) => asset.path().map_err(std::io::Error::other)?,
    };
    Ok(path.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_path_constants_are_images() {
        // What `kernel = KERNEL` expands to for constants of the user's.
        const KERNEL: &str = "/boot/k";
        static GUEST: &Guest = &crate::guest::ECHO_SHELL_AARCH64;
        let string = String::from("/boot/s");
        let buf = PathBuf::from("/boot/b");
        let path = std::path::Path::new("/boot/p");
        let kernel = |image: Image| VmSpec::new().with_kernel(image).kernel.unwrap();
        assert_eq!(kernel((&KERNEL).into()), Image::Path("/boot/k".into()));
        assert_eq!(kernel((&string).into()), Image::Path("/boot/s".into()));
        assert_eq!(kernel((&buf).into()), Image::Path("/boot/b".into()));
        assert_eq!(kernel((&path).into()), Image::Path("/boot/p".into()));
        assert_eq!(
            kernel((&GUEST).into()),
            Image::Guest(&crate::guest::ECHO_SHELL_AARCH64)
        );
    }

    #[test]
    fn memory_sizes_parse_like_qemu() {
        let mib = |m: &str| VmSpec::new().with_memory(m).memory_mib();
        assert_eq!(mib("256"), 256);
        assert_eq!(mib("256M"), 256);
        assert_eq!(mib("1G"), 1024);
        assert_eq!(mib("2048k"), 2);
        assert_eq!(mib("size=512M,slots=2,maxmem=2G"), 512);
        assert_eq!(mib("lots"), 128);
        assert_eq!(VmSpec::new().memory_mib(), 128);
    }

    #[test]
    fn the_budget_is_what_the_guest_starts_with() {
        let spec = VmSpec::new()
            .with_memory("128M,slots=2,maxmem=1G")
            .with_smp("1,sockets=1,cores=2,maxcpus=2");
        assert_eq!((spec.smp.cpus(), spec.memory_mib()), (1, 128));
        let args = spec.qemu_args(None).unwrap();
        assert_eq!(
            args,
            [
                "-smp",
                "1,sockets=1,cores=2,maxcpus=2",
                "-m",
                "128M,slots=2,maxmem=1G"
            ]
        );
        assert_eq!(VmSpec::new().with_smp(0).smp.cpus(), 1);
    }

    #[test]
    fn binary_comes_from_binary_then_arch() {
        assert_eq!(VmSpec::new().qemu_binary_name(), None);
        assert_eq!(
            VmSpec::new()
                .with_arch("x86_64")
                .qemu_binary_name()
                .as_deref(),
            Some("qemu-system-x86_64")
        );
        assert_eq!(
            VmSpec::new()
                .with_arch("x86_64")
                .with_binary("/opt/q")
                .qemu_binary_name()
                .as_deref(),
            Some("/opt/q")
        );
    }

    #[test]
    fn args_are_verbatim_and_ordered() {
        let spec = VmSpec::new()
            .with_cpu("max")
            .with_memory("64M")
            .with_kernel("/k,with,commas")
            .with_append("console=ttyS0 quiet")
            .with_drive("file=a.img,if=virtio")
            .with_args(["-no-reboot", "$(x) 'q'"]);
        assert_eq!(
            spec.qemu_args(Some("tcg")).unwrap(),
            [
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-m",
                "64M",
                "-kernel",
                "/k,with,commas",
                "-append",
                "console=ttyS0 quiet",
                "-drive",
                "file=a.img,if=virtio",
                "-no-reboot",
                "$(x) 'q'"
            ]
        );
    }
}
