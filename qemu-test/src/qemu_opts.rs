//! QEMU's own syntax, shared by the spec, the machine and the runner:
//! escaping values in option lists, sizes as `-m` reads them, and the
//! target architecture in a `qemu-system-<arch>` binary's name.
//!
//! Pure functions on strings; nothing here starts or reads anything.

use std::ffi::OsStr;
use std::path::Path;

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

/// The vCPUs a `-smp` value starts the guest with, as QEMU 7.2 computes
/// them: `cpus` (or the leading number), else `maxcpus`, else the product
/// of the topology given (`sockets`, `dies`, `clusters`, `cores`,
/// `threads`, `books`, `drawers`; each 1 when left out). `None` if the value
/// is not `-smp` syntax.
///
/// ```text
/// 2 -> 2    1,sockets=2,cores=2,maxcpus=8 -> 1    sockets=2,cores=2 -> 4    maxcpus=3 -> 3
/// ```
pub(crate) fn smp_cpus(value: &str) -> Option<u32> {
    const TOPOLOGY: &[&str] = &[
        "sockets", "dies", "clusters", "cores", "threads", "books", "drawers",
    ];
    let (mut cpus, mut maxcpus, mut product) = (None, None, None::<u32>);
    for (i, part) in value.split(',').enumerate() {
        let (key, number) = match part.split_once('=') {
            Some((key, number)) => (key, number),
            None if i == 0 => ("cpus", part),
            None => return None,
        };
        let number: u32 = number.trim().parse().ok()?;
        match key.trim() {
            "cpus" => cpus = Some(number),
            "maxcpus" => maxcpus = Some(number),
            key if TOPOLOGY.contains(&key) => {
                product = Some(product.unwrap_or(1).checked_mul(number)?);
            }
            _ => return None,
        }
    }
    cpus.filter(|&n| n > 0).or(maxcpus).or(product)
}

/// The target architecture of a `qemu-system-<arch>` binary (a name or a
/// path).
///
/// ```text
/// /usr/bin/qemu-system-x86_64 -> x86_64    /opt/qemu -> None
/// ```
pub(crate) fn target_arch(binary: &Path) -> Option<&str> {
    binary
        .file_name()
        .and_then(OsStr::to_str)?
        .strip_prefix("qemu-system-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_are_doubled() {
        assert_eq!(escape_opt("/tmp/a,b,,c"), "/tmp/a,,b,,,,c");
    }

    #[test]
    fn memory_sizes_parse_like_qemu() {
        let mib = |m: &str| memory_bytes(m).map(|b| b >> 20);
        assert_eq!(mib("256"), Some(256));
        assert_eq!(mib("256M"), Some(256));
        assert_eq!(mib("1G"), Some(1024));
        assert_eq!(memory_bytes("2048k"), Some(2 << 20));
        assert_eq!(mib("size=512M,slots=2,maxmem=2G"), Some(512));
        assert_eq!(mib("1.5G"), None);
        assert_eq!(mib("lots"), None);
    }

    #[test]
    fn smp_values_count_like_qemu() {
        assert_eq!(smp_cpus("2"), Some(2));
        assert_eq!(smp_cpus("1,sockets=2,cores=2,threads=2,maxcpus=8"), Some(1));
        assert_eq!(smp_cpus("cpus=3,maxcpus=4"), Some(3));
        assert_eq!(smp_cpus("sockets=2,cores=2"), Some(4));
        assert_eq!(smp_cpus("maxcpus=3,sockets=3"), Some(3));
        assert_eq!(smp_cpus("2,bogus=1"), None);
        assert_eq!(smp_cpus("two"), None);
        assert_eq!(smp_cpus("1,2"), None);
    }

    #[test]
    fn target_arch_comes_from_the_file_name() {
        assert_eq!(
            target_arch(Path::new("/usr/bin/qemu-system-x86_64")),
            Some("x86_64")
        );
        assert_eq!(
            target_arch(Path::new("qemu-system-aarch64")),
            Some("aarch64")
        );
        assert_eq!(target_arch(Path::new("/opt/qemu")), None);
    }
}
