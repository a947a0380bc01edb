//! UEFI firmware from the host: OVMF for x86_64 (Debian's `ovmf`), AAVMF
//! for aarch64 (`qemu-efi-aarch64`), found the way libvirt finds it, through
//! QEMU's firmware descriptors (`docs/interop/firmware.json`):
//! `/usr/share/qemu/firmware`, `/etc/qemu/firmware`, then
//! `$XDG_CONFIG_HOME/qemu/firmware`, the files taken in the order of their
//! names, one of a later dir replacing one of the same name. The first that
//! offers UEFI on flash for the architecture and machine type, without
//! Secure Boot or SMM, is used; without descriptors, the packages' usual
//! files.
//!
//! A machine boots it with the code read-only and a copy of its own of the
//! variable-store template (sparse: AAVMF's 64 MiB template is all zeros),
//! so no test changes the host's files or another test's variables.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::AssetError;

/// The host's UEFI firmware for one architecture and machine type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Uefi {
    /// The code, mapped read-only (`-drive if=pflash,unit=0`).
    pub(crate) code: PathBuf,
    /// The code's format (`raw`, `qcow2`).
    pub(crate) code_format: String,
    /// The variable-store template, copied for each machine.
    pub(crate) vars: PathBuf,
    /// The template's format.
    pub(crate) vars_format: String,
}

/// The host's UEFI firmware for `arch` (`x86_64`, `aarch64`) and
/// `machine` (`q35`, `pc-q35-7.2`, `virt`, ...).
pub(crate) fn host_uefi(arch: &str, machine: &str) -> Result<Uefi, AssetError> {
    let found = descriptors()
        .iter()
        .find_map(|(_, d)| usable(d, arch, machine))
        .or_else(|| well_known(arch));
    found.ok_or_else(|| AssetError::Unavailable {
        what: format!("UEFI firmware for {arch} (machine {machine})"),
        reason: format!(
            "no QEMU firmware descriptor in {} offers it (UEFI on flash, without Secure Boot), and \
             none of the usual files is there; {}",
            search_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            match arch {
                "aarch64" => "install Debian's qemu-efi-aarch64 package (`cargo xtask setup` does)",
                "x86_64" | "i386" => "install Debian's ovmf package (`cargo xtask setup` does)",
                _ => "qemu-test knows UEFI firmware for x86_64 and aarch64",
            }
        ),
    })
}

/// The descriptor dirs, lowest priority first.
fn search_dirs() -> Vec<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    let mut dirs = vec![
        PathBuf::from("/usr/share/qemu/firmware"),
        PathBuf::from("/etc/qemu/firmware"),
    ];
    dirs.extend(config.map(|c| c.join("qemu/firmware")));
    dirs
}

/// Every descriptor, by file name, in priority order (an empty file of a
/// later dir hides the name).
fn descriptors() -> Vec<(String, Value)> {
    let mut by_name: std::collections::BTreeMap<String, Option<Value>> = Default::default();
    for dir in search_dirs() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") {
                continue;
            }
            let text = fs::read(entry.path()).unwrap_or_default();
            by_name.insert(name, serde_json::from_slice(&text).ok());
        }
    }
    by_name
        .into_iter()
        .filter_map(|(name, d)| Some((name, d?)))
        .collect()
}

/// The firmware a descriptor offers, if it suits.
fn usable(d: &Value, arch: &str, machine: &str) -> Option<Uefi> {
    let has = |list: &str, what: &str| {
        d[list]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i == what))
    };
    let plain = ![
        "secure-boot",
        "enrolled-keys",
        "requires-smm",
        "amd-sev-es",
        "intel-tdx",
    ]
    .iter()
    .any(|f| has("features", f));
    let mapping = &d["mapping"];
    let split = mapping["mode"].as_str().is_none_or(|m| m == "split");
    if !has("interface-types", "uefi") || !plain || mapping["device"] != "flash" || !split {
        return None;
    }
    let targets = d["targets"].as_array()?;
    let fits = targets.iter().any(|t| {
        t["architecture"] == arch
            && t["machines"].as_array().is_some_and(|ms| {
                ms.iter()
                    .filter_map(Value::as_str)
                    .any(|g| machine_fits(g, machine))
            })
    });
    let file = |key: &str| {
        let part = &mapping[key];
        let path = PathBuf::from(part["filename"].as_str()?);
        path.is_file()
            .then(|| (path, part["format"].as_str().unwrap_or("raw").to_string()))
    };
    let ((code, code_format), (vars, vars_format)) = (file("executable")?, file("nvram-template")?);
    fits.then_some(Uefi {
        code,
        code_format,
        vars,
        vars_format,
    })
}

/// Whether a descriptor's machine glob (`pc-q35-*`) covers `machine`,
/// which may be an alias (`q35`, `pc`, `virt`).
fn machine_fits(glob: &str, machine: &str) -> bool {
    let versioned = match machine {
        "q35" => "pc-q35-0",
        "pc" => "pc-i440fx-0",
        "virt" => "virt-0",
        other => other,
    };
    glob_match(glob.as_bytes(), machine.as_bytes())
        || glob_match(glob.as_bytes(), versioned.as_bytes())
}

/// Shell-style `*` and `?` matching.
fn glob_match(glob: &[u8], name: &[u8]) -> bool {
    match (glob.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&glob[1..], name) || (!name.is_empty() && glob_match(glob, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&glob[1..], &name[1..]),
        (Some(g), Some(n)) if g == n => glob_match(&glob[1..], &name[1..]),
        _ => false,
    }
}

/// The packages' usual files, when there are no descriptors.
fn well_known(arch: &str) -> Option<Uefi> {
    let pairs: &[(&str, &str)] = match arch {
        "x86_64" => &[
            (
                "/usr/share/OVMF/OVMF_CODE_4M.fd",
                "/usr/share/OVMF/OVMF_VARS_4M.fd",
            ),
            (
                "/usr/share/OVMF/OVMF_CODE.fd",
                "/usr/share/OVMF/OVMF_VARS.fd",
            ),
            (
                "/usr/share/edk2/ovmf/OVMF_CODE.fd",
                "/usr/share/edk2/ovmf/OVMF_VARS.fd",
            ),
        ],
        "aarch64" => &[
            (
                "/usr/share/AAVMF/AAVMF_CODE.fd",
                "/usr/share/AAVMF/AAVMF_VARS.fd",
            ),
            (
                "/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw",
                "/usr/share/edk2/aarch64/vars-template-pflash.raw",
            ),
        ],
        _ => &[],
    };
    pairs
        .iter()
        .map(|(code, vars)| (PathBuf::from(code), PathBuf::from(vars)))
        .find(|(code, vars)| code.is_file() && vars.is_file())
        .map(|(code, vars)| Uefi {
            code,
            code_format: "raw".into(),
            vars,
            vars_format: "raw".into(),
        })
}

/// Copies `from` to `to` leaving holes where `from` has blocks of zeros
/// (a variable store is mostly empty).
pub(crate) fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    const BLOCK: usize = 64 * 1024;
    let mut input = File::open(from)?;
    let _ = fs::remove_file(to);
    let mut output = File::create(to)?;
    let mut buf = vec![0u8; BLOCK];
    let mut at = 0u64;
    loop {
        let n = read_full(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            output.seek(SeekFrom::Start(at))?;
            output.write_all(&buf[..n])?;
        }
        at += n as u64;
    }
    output.set_len(at)?;
    output.sync_all()
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_globs_cover_aliases() {
        assert!(machine_fits("pc-q35-*", "q35"));
        assert!(machine_fits("pc-q35-*", "pc-q35-7.2"));
        assert!(!machine_fits("pc-q35-*", "pc"));
        assert!(machine_fits("pc-i440fx-*", "pc"));
        assert!(machine_fits("virt-*", "virt"));
        assert!(machine_fits("virt-*", "virt-7.2"));
        assert!(!machine_fits("virt-*", "sbsa-ref"));
        assert!(glob_match(b"a?c*", b"abcdef"));
    }

    #[test]
    fn descriptors_are_chosen_by_target_and_features() {
        let dir = tempfile::tempdir().unwrap();
        let (code, vars) = (dir.path().join("CODE.fd"), dir.path().join("VARS.fd"));
        fs::write(&code, b"code").unwrap();
        fs::write(&vars, b"vars").unwrap();
        let descriptor = |features: &[&str], machines: &[&str]| {
            serde_json::json!({
                "interface-types": ["uefi"],
                "mapping": {
                    "device": "flash",
                    "executable": {"filename": code, "format": "raw"},
                    "nvram-template": {"filename": vars, "format": "raw"},
                },
                "targets": [{"architecture": "x86_64", "machines": machines}],
                "features": features,
            })
        };
        let plain = descriptor(&["acpi-s3"], &["pc-q35-*"]);
        let found = usable(&plain, "x86_64", "q35").expect("suits");
        assert_eq!((found.code, found.vars), (code.clone(), vars.clone()));
        assert!(usable(&plain, "aarch64", "q35").is_none());
        assert!(usable(&plain, "x86_64", "pc").is_none());
        let secure = descriptor(&["secure-boot", "requires-smm"], &["pc-q35-*"]);
        assert!(usable(&secure, "x86_64", "q35").is_none());
    }

    /// Against the host's packages, when installed.
    #[test]
    fn the_host_firmware_is_found() {
        match host_uefi("x86_64", "q35") {
            Ok(uefi) => assert!(uefi.code.is_file() && uefi.vars.is_file()),
            Err(e) => assert!(e.to_string().contains("ovmf package"), "{e}"),
        }
        let error = host_uefi("riscv64", "virt").unwrap_err();
        assert!(error.is_unavailable(), "{error}");
    }

    #[test]
    fn sparse_copies_are_equal() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("vars");
        let mut data = vec![0u8; 300 * 1024];
        data[70_000] = 1;
        data[300 * 1024 - 1] = 2;
        fs::write(&from, &data).unwrap();
        let to = dir.path().join("copy");
        copy_sparse(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), data);
        fs::write(&from, vec![0u8; 100 * 1024]).unwrap();
        copy_sparse(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), vec![0u8; 100 * 1024]);
    }
}
