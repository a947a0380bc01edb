//! The Linux guests' architectures: which Debian packages each is built
//! from, which kernel modules it loads, what its kernel image is.

/// One guest architecture.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    /// The QEMU architecture (`qemu-system-<arch>`).
    pub(crate) arch: &'static str,
    /// Debian's name for it.
    pub(crate) deb_arch: &'static str,
    /// The kernel meta-package whose `Depends` names the real one.
    pub(crate) kernel_meta: &'static str,
    /// The busybox package.
    pub(crate) busybox: &'static str,
    /// Modules loaded at boot, by name; their dependencies are added.
    pub(crate) modules: &'static [&'static str],
    /// The guest agent for this architecture (`/bin/qemu-test-agent`):
    /// built from `guests/agent/agent.c` by `cargo xtask guests`, which
    /// also checks that these bytes match it.
    pub(crate) agent: &'static [u8],
    /// What the kernel package's `vmlinuz` is and what is booted instead.
    pub(crate) kernel: KernelImage,
    /// The ELF machine of its programs (`e_machine`), to check a busybox.
    pub(crate) elf_machine: u16,
    /// The suffix of its own settings (`QEMU_TEST_LINUX_KERNEL_<SUFFIX>`).
    pub(crate) env_suffix: &'static str,
}

/// The kernel image a target boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KernelImage {
    /// An x86 bzImage: its payload is unpacked to the `vmlinux` ELF, booted
    /// through the PVH entry point (or the bzImage itself, if that fails).
    BzImage,
    /// An arm64 `Image`, booted as it is.
    Arm64Image,
}

/// Kernel modules the x86_64 guest loads at boot. The cloud kernel builds
/// the serial console, PCIe hotplug, ext4 and tmpfs in, but not these:
/// `virtio_pci` + `virtio_blk` (block devices, including hot-plugged ones),
/// `button` + `evdev` (the ACPI power button, read by busybox `acpid`),
/// `virtio_net` (NICs: the test networks, port forwards), `virtio_console`
/// (the data channel's virtio-serial port, which the agent serves),
/// `pvpanic_pci` (tells QEMU of a kernel panic: the runner's
/// `pvpanic-pci` device and its `GUEST_PANICKED` event).
const MODULES_X86_64: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "button",
    "evdev",
    "virtio_net",
    "virtio_console",
    "pvpanic_pci",
];

/// Kernel modules the aarch64 guest loads at boot: block devices,
/// `evdev` for `acpid`, and the data channel's `virtio_console`. (`-M virt` booted with `-kernel` has a device tree,
/// not ACPI, and its power button needs `gpio_keys`, which the cloud
/// kernel does not build: `system_powerdown` does nothing there.) And
/// `virtio_net`, for NICs.
const MODULES_AARCH64: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "evdev",
    "virtio_net",
    "virtio_console",
];

pub(crate) static X86_64: Target = Target {
    arch: "x86_64",
    deb_arch: "amd64",
    kernel_meta: "linux-image-cloud-amd64",
    busybox: "busybox-static",
    modules: MODULES_X86_64,
    agent: include_bytes!("../images/agent-x86_64"),
    kernel: KernelImage::BzImage,
    elf_machine: 62,
    env_suffix: "X86_64",
};

/// Kernel modules the x86_64 guest with Debian's generic kernel loads:
/// the cloud guest's, and 9p over virtio (host shares), which the cloud
/// kernel does not build.
const MODULES_X86_64_GENERIC: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "button",
    "evdev",
    "virtio_net",
    "virtio_console",
    "pvpanic_pci",
    "9p",
    "9pnet_virtio",
];

pub(crate) static X86_64_GENERIC: Target = Target {
    arch: "x86_64",
    deb_arch: "amd64",
    kernel_meta: "linux-image-amd64",
    busybox: "busybox-static",
    modules: MODULES_X86_64_GENERIC,
    agent: include_bytes!("../images/agent-x86_64"),
    kernel: KernelImage::BzImage,
    elf_machine: 62,
    env_suffix: "X86_64_GENERIC",
};

pub(crate) static AARCH64: Target = Target {
    arch: "aarch64",
    deb_arch: "arm64",
    kernel_meta: "linux-image-cloud-arm64",
    busybox: "busybox-static",
    modules: MODULES_AARCH64,
    agent: include_bytes!("../images/agent-aarch64"),
    kernel: KernelImage::Arm64Image,
    elf_machine: 183,
    env_suffix: "AARCH64",
};

impl Target {
    /// Whether this is the architecture this program runs on (whose guest
    /// the unsuffixed `QEMU_TEST_LINUX_*` settings are for); a variant
    /// such as the generic-kernel guest takes only its suffixed ones.
    pub(crate) fn is_host(&self) -> bool {
        self.arch == std::env::consts::ARCH && self.env_suffix.eq_ignore_ascii_case(self.arch)
    }
}
