//! Building QEMU's command line: the base arguments a [`Machine`] adds
//! (display, monitor, machine type, console) in front of the user's.
//!
//! [`Machine`]: super::Machine

use std::net::SocketAddr;
use std::path::Path;

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
    /// QEMU's stdio (for `repro.sh`).
    Stdio,
}

/// Everything the base arguments depend on.
#[derive(Debug, Clone, Default)]
pub(crate) struct BaseArgs<'a> {
    pub binary: &'a str,
    pub monitor: Option<MonitorArg>,
    pub machine: Option<&'a str>,
    pub console: Option<(ConsoleArg, Option<&'a str>, u32)>,
}

/// Escapes a value for a QEMU option list: commas are doubled.
///
/// ```text
/// /tmp/a,b.sock -> /tmp/a,,b.sock
/// ```
pub(crate) fn escape_opt(value: &str) -> String {
    value.replace(',', ",,")
}

/// The size in bytes an `-m` value sets, `[size=]N[unit][,options]`: a
/// bare number is MiB, as QEMU reads it; `K`, `M`, `G`, `T` suffixes (with
/// an optional `B`/`iB`). Options after the size are ignored.
///
/// ```text
/// 256 -> 256 MiB    size=1G,slots=2,maxmem=4G -> 1 GiB    1.5G -> None
/// ```
pub(crate) fn memory_bytes(value: &str) -> Option<u64> {
    let value = value.trim();
    let size = value.strip_prefix("size=").unwrap_or(value);
    let size = size.split(',').next()?;
    let (digits, unit) = size.split_at(
        size.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(size.len()),
    );
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 20,
        "K" | "KB" | "KIB" => 10,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
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
    let file = Path::new(binary)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or(binary);
    let target = file.strip_prefix("qemu-system-").unwrap_or("");
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
            ConsoleArg::Stdio => "stdio,id=console".to_string(),
        };
        args.extend(["-chardev".into(), chardev]);
        match device {
            None => args.extend(["-serial".into(), "chardev:console".into()]),
            Some(device) => args.extend(["-device".into(), format!("{device},chardev=console")]),
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_are_doubled() {
        assert_eq!(escape_opt("/tmp/a,b,,c"), "/tmp/a,,b,,,,c");
    }

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
                "chardev=mon,mode=control"
            ]
        );
    }
}
