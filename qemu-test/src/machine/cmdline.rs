//! Building QEMU's command line: the base arguments a [`Machine`] adds
//! (display, monitor, machine type, console, data channel) in front of the
//! user's.
//!
//! [`Machine`]: super::Machine

use std::net::SocketAddr;
use std::path::Path;

use crate::qemu_opts::{escape_opt, target_arch};

/// Where the QMP monitor's QEMU end is, as resolved at launch.
#[derive(Debug, Clone)]
pub(crate) enum MonitorArg {
    /// An inherited socketpair fd.
    Fd(i32),
    /// A Unix socket path QEMU connects to.
    Path(String),
    /// A loopback TCP address QEMU connects to.
    Tcp(SocketAddr),
}

/// Where the console's QEMU end is.
#[derive(Debug, Clone)]
pub(crate) enum ConsoleArg {
    /// An inherited socketpair fd.
    Fd(i32),
    /// QEMU's stdio: pipes, or a terminal (for `repro.sh`).
    Stdio,
}

/// Where the data channel's QEMU end is.
#[derive(Debug, Clone)]
pub(crate) enum ChannelArg {
    /// An inherited socketpair fd.
    Fd(i32),
    /// A Unix socket QEMU listens on (for `repro.sh`).
    Listen(String),
}

/// Whether QEMU arguments use QEMU's stdio themselves (a `stdio`
/// chardev, serial port or monitor, `-nographic`, a curses display), so
/// that the console must not.
pub(crate) fn args_use_stdio(args: &[String]) -> bool {
    args.iter()
        .any(|a| a.contains("stdio") || a == "-nographic" || a.contains("curses"))
}

/// Everything the base arguments depend on.
#[derive(Debug, Clone, Default)]
pub(crate) struct BaseArgs<'a> {
    pub binary: &'a str,
    pub monitor: Option<MonitorArg>,
    pub machine: Option<&'a str>,
    pub console: Option<(ConsoleArg, Option<&'a str>, u32)>,
    pub channel: Option<ChannelArg>,
}

/// Targets with no VGA device, where `-vga none` is pointless (and rejected
/// by some QEMU versions): `-vga none` is only passed to the others.
const NO_VGA_TARGETS: &[&str] = &[
    "aarch64",
    "arm",
    "riscv32",
    "riscv64",
    "s390x",
    "microblaze",
    "avr",
    "rx",
    "tricore",
    "or1k",
    "xtensa",
    "m68k",
    "sh4",
    "loongarch64",
];

fn has_vga(binary: &str) -> bool {
    let target = target_arch(Path::new(binary)).unwrap_or("");
    let target = target.trim_end_matches("eb").trim_end_matches("el");
    !NO_VGA_TARGETS.contains(&target)
}

/// The arguments a machine puts before the user's, like the seed's
/// `_base_args`.
pub(crate) fn base_args(b: &BaseArgs<'_>) -> Vec<String> {
    let mut args: Vec<String> = vec!["-display".into(), "none".into()];
    if has_vga(b.binary) {
        args.extend(["-vga".into(), "none".into()]);
    }
    if let Some(monitor) = &b.monitor {
        let chardev = match monitor {
            MonitorArg::Fd(fd) => format!("socket,id=mon,fd={fd}"),
            MonitorArg::Path(path) => format!("socket,id=mon,path={}", escape_opt(path)),
            MonitorArg::Tcp(addr) => {
                format!("socket,id=mon,host={},port={}", addr.ip(), addr.port())
            }
        };
        args.extend([
            "-chardev".into(),
            chardev,
            "-mon".into(),
            "chardev=mon,mode=control".into(),
        ]);
    }
    if let Some(machine) = b.machine {
        args.extend(["-machine".into(), machine.into()]);
    }
    if let Some((console, device, index)) = &b.console {
        for _ in 0..*index {
            args.extend(["-serial".into(), "null".into()]);
        }
        let chardev = match console {
            ConsoleArg::Fd(fd) => format!("socket,id=console,fd={fd}"),
            ConsoleArg::Stdio => "stdio,id=console,signal=off".to_string(),
        };
        args.extend(["-chardev".into(), chardev]);
        match device {
            None => args.extend(["-serial".into(), "chardev:console".into()]),
            Some(device) => args.extend(["-device".into(), format!("{device},chardev=console")]),
        }
    }
    if let Some(channel) = &b.channel {
        args.extend(channel_args(channel));
    }
    args
}

/// The data channel: a virtio-serial port named
/// [`PORT_NAME`](crate::channel::PORT_NAME) on a PCI `virtio-serial`
/// controller of its own.
fn channel_args(channel: &ChannelArg) -> [String; 6] {
    let chardev = match channel {
        ChannelArg::Fd(fd) => format!("socket,id=qt-data,fd={fd}"),
        ChannelArg::Listen(path) => {
            format!(
                "socket,id=qt-data,path={},server=on,wait=off",
                escape_opt(path)
            )
        }
    };
    [
        "-device".into(),
        "virtio-serial-pci,id=qt-vser".into(),
        "-chardev".into(),
        chardev,
        "-device".into(),
        format!(
            "virtserialport,bus=qt-vser.0,chardev=qt-data,name={}",
            crate::channel::PORT_NAME
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vga_only_where_there_is_vga() {
        assert!(has_vga("qemu-system-x86_64"));
        assert!(has_vga("/usr/bin/qemu-system-i386"));
        assert!(!has_vga("/usr/bin/qemu-system-aarch64"));
        assert!(!has_vga("qemu-system-riscv64"));
    }

    #[test]
    fn base_args_like_the_seed() {
        let args = base_args(&BaseArgs {
            binary: "qemu-system-x86_64",
            monitor: Some(MonitorArg::Path("/s/q,m.sock".into())),
            machine: Some("q35"),
            console: Some((ConsoleArg::Fd(7), Some("isa-serial"), 2)),
            channel: None,
        });
        assert_eq!(
            args,
            [
                "-display",
                "none",
                "-vga",
                "none",
                "-chardev",
                "socket,id=mon,path=/s/q,,m.sock",
                "-mon",
                "chardev=mon,mode=control",
                "-machine",
                "q35",
                "-serial",
                "null",
                "-serial",
                "null",
                "-chardev",
                "socket,id=console,fd=7",
                "-device",
                "isa-serial,chardev=console"
            ]
        );
        let args = base_args(&BaseArgs {
            binary: "qemu-system-aarch64",
            monitor: Some(MonitorArg::Fd(3)),
            channel: Some(ChannelArg::Fd(9)),
            ..Default::default()
        });
        assert_eq!(
            args,
            [
                "-display",
                "none",
                "-chardev",
                "socket,id=mon,fd=3",
                "-mon",
                "chardev=mon,mode=control",
                "-device",
                "virtio-serial-pci,id=qt-vser",
                "-chardev",
                "socket,id=qt-data,fd=9",
                "-device",
                "virtserialport,bus=qt-vser.0,chardev=qt-data,name=org.qemu-test.data"
            ]
        );
    }
}
