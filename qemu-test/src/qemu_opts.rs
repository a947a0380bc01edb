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
