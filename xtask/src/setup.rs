//! `cargo xtask setup`: make sure the host has what the tests need.
//!
//! Programs are looked up the way a shell's `command -v` does (QEMU also in
//! `$QEMU_TEST_QEMU_DIR` first, as the framework itself does); the guest
//! agent's C compilers must also find a static C library. Missing ones
//! are installed from Debian/Ubuntu packages when running as root, otherwise
//! the exact `sudo` command is printed. Nothing is installed, and `apt-get`
//! is not run, when everything is already there.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::util;

/// A program the tests (or the guest builds) need, and the Debian package
/// that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

/// What every VM test needs.
pub const QEMU: &[Tool] = &[
    Tool {
        program: "qemu-system-aarch64",
        package: "qemu-system-arm",
    },
    Tool {
        program: "qemu-system-x86_64",
        package: "qemu-system-x86",
    },
];

/// What the tests of declared assets and UEFI guests need
/// (`tests/assets.rs`): `qemu-img` for a disk image's overlay, and the UEFI
/// firmware (a path: a file the package installs).
pub const ASSET_TOOLS: &[Tool] = &[
    Tool {
        program: "qemu-img",
        package: "qemu-utils",
    },
    Tool {
        program: "/usr/share/OVMF/OVMF_CODE_4M.fd",
        package: "ovmf",
    },
    Tool {
        program: "/usr/share/AAVMF/AAVMF_CODE.fd",
        package: "qemu-efi-aarch64",
    },
];

/// What rebuilding the built-in guests needs (`cargo xtask guests`); the
/// committed guest binaries mean ordinary test runs do not. The host's own
/// unprefixed binutils stand in for the tools of its own architecture, as
/// in `guests.rs`.
pub const GUEST_TOOLS: &[Tool] = &[
    Tool {
        program: "aarch64-linux-gnu-as",
        package: "binutils-aarch64-linux-gnu",
    },
    Tool {
        program: "aarch64-linux-gnu-ld",
        package: "binutils-aarch64-linux-gnu",
    },
    Tool {
        program: "aarch64-linux-gnu-objcopy",
        package: "binutils-aarch64-linux-gnu",
    },
    Tool {
        program: "x86_64-linux-gnu-as",
        package: "binutils-x86-64-linux-gnu",
    },
    Tool {
        program: "x86_64-linux-gnu-ld",
        package: "binutils-x86-64-linux-gnu",
    },
    Tool {
        program: "x86_64-linux-gnu-objcopy",
        package: "binutils-x86-64-linux-gnu",
    },
];

/// The binutils prefix of the host's own architecture.
fn host_prefix() -> Option<&'static str> {
    if cfg!(target_arch = "x86_64") {
        Some("x86_64-linux-gnu-")
    } else if cfg!(target_arch = "aarch64") {
        Some("aarch64-linux-gnu-")
    } else {
        None
    }
}

/// The guest agent's compilers (`agent.rs`) that are missing, or cannot
/// link statically: what each needs, and the Debian packages that provide
/// it.
pub fn missing_agent_toolchains() -> Vec<(String, [&'static str; 2])> {
    crate::agent::TARGETS
        .iter()
        .filter(|t| {
            !t.find_compiler()
                .is_some_and(|c| crate::agent::has_static_libc(&c))
        })
        .map(|t| {
            (
                format!("a static C toolchain for {} ({})", t.arch, t.compiler),
                t.packages(),
            )
        })
        .collect()
}

/// What to ensure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also the guest build tools (implied under CI).
    pub guests: bool,
}

fn locate(tool: &Tool) -> Option<PathBuf> {
    if tool.program.starts_with('/') {
        let path = PathBuf::from(tool.program);
        return path.is_file().then_some(path);
    }
    if tool.program.starts_with("qemu-system-") {
        return util::find_qemu(tool.program);
    }
    util::find_on_path(tool.program).or_else(|| {
        let native = tool.program.strip_prefix(host_prefix()?)?;
        util::find_on_path(native)
    })
}

/// The tools in `tools` that cannot be found.
pub fn missing(tools: &[Tool]) -> Vec<Tool> {
    tools
        .iter()
        .filter(|t| locate(t).is_none())
        .copied()
        .collect()
}

/// The packages providing `tools`, each once, in order.
fn packages(tools: &[Tool]) -> Vec<&'static str> {
    let mut pkgs: Vec<&'static str> = Vec::new();
    for t in tools {
        if !pkgs.contains(&t.package) {
            pkgs.push(t.package);
        }
    }
    pkgs
}

fn install_args(pkgs: &[&str]) -> Vec<String> {
    ["install", "-y", "--no-install-recommends"]
        .iter()
        .map(|s| s.to_string())
        .chain(pkgs.iter().map(|p| p.to_string()))
        .collect()
}

/// Runs the setup; see the module docs.
pub fn setup(opts: Options) -> Result<(), String> {
    let guests = opts.guests || util::is_ci();
    let mut wanted: Vec<Tool> = QEMU.to_vec();
    wanted.extend_from_slice(ASSET_TOOLS);
    if guests {
        wanted.extend_from_slice(GUEST_TOOLS);
    }
    let (names, pkgs) = missing_with_packages(&wanted, guests);
    if !names.is_empty() {
        install(&names, &pkgs)?;
        // apt may remove a present tool to install a missing one: a
        // backported qemu-utils breaks Debian's own qemu-system-common, so
        // installing qemu-system-x86 removed it, and qemu-img with it. A
        // second round installs the removed package at the version that
        // now fits.
        let (names, pkgs) = missing_with_packages(&wanted, guests);
        if !names.is_empty() {
            install(&names, &pkgs)?;
        }
        let (still, _) = missing_with_packages(&wanted, guests);
        if !still.is_empty() {
            return Err(format!(
                "still missing after installing packages: {}",
                still.join(", ")
            ));
        }
    }
    report(guests);
    Ok(())
}

/// What of `wanted` (and, with `guests`, of the agent's toolchains) is
/// missing, and the packages that provide it.
fn missing_with_packages(wanted: &[Tool], guests: bool) -> (Vec<String>, Vec<&'static str>) {
    let absent = missing(wanted);
    let mut names: Vec<String> = absent.iter().map(|t| t.program.to_string()).collect();
    let mut pkgs = packages(&absent);
    if guests {
        for (name, needs) in missing_agent_toolchains() {
            names.push(name);
            for package in needs {
                if !pkgs.contains(&package) {
                    pkgs.push(package);
                }
            }
        }
    }
    (names, pkgs)
}

pub fn install(names: &[String], pkgs: &[&str]) -> Result<(), String> {
    println!("setup: missing {}", names.join(", "));
    let apt_get = util::find_on_path("apt-get");
    if apt_get.is_none() {
        return Err(format!(
            "missing {}; no apt-get on this machine: install the equivalent of the Debian packages {} \
             (or point QEMU_TEST_QEMU_DIR at a directory holding qemu-system-*)",
            names.join(", "),
            pkgs.join(" ")
        ));
    }
    if !util::is_root() {
        let install = shlex::try_join(
            ["sudo", "apt-get"]
                .into_iter()
                .chain(install_args(pkgs).iter().map(String::as_str)),
        )
        .unwrap_or_default();
        return Err(format!(
            "missing {}; not root, so not installing. Run:\n\n    sudo apt-get update\n    {install}\n\nthen run this command again",
            names.join(", ")
        ));
    }
    let apt_get = apt_get.expect("checked above");
    let apt = |args: &[String]| {
        let mut cmd = Command::new(&apt_get);
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        cmd
    };
    util::run(&mut apt(&["update".to_string()]))?;
    util::run(&mut apt(&install_args(pkgs)))?;
    Ok(())
}

fn report(guests: bool) {
    for tool in QEMU {
        let path = locate(tool).expect("checked by setup");
        let version = util::version_line(&path).unwrap_or_else(|| "(version unknown)".into());
        println!("setup: {:<22} {} — {version}", tool.program, path.display());
    }
    for tool in ASSET_TOOLS {
        let path = locate(tool).expect("checked by setup");
        println!("setup: {:<22} {}", tool.package, path.display());
    }
    let kvm = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => "/dev/kvm is usable (QEMU_TEST_ACCEL=auto uses KVM if a probe VM boots with it)"
            .to_string(),
        Err(e) => format!("/dev/kvm is not usable ({e}): VMs run under TCG"),
    };
    println!("setup: {kvm}");
    let absent = missing(GUEST_TOOLS);
    let compilers = missing_agent_toolchains();
    if absent.is_empty() {
        let path = locate(&GUEST_TOOLS[0]).expect("not missing");
        let version = util::version_line(&path).unwrap_or_else(|| "(version unknown)".into());
        println!(
            "setup: {:<22} {} — {version}",
            GUEST_TOOLS[0].program,
            path.display()
        );
    }
    for target in crate::agent::TARGETS {
        if let Some(compiler) = target.find_compiler() {
            let version =
                util::version_line(&compiler).unwrap_or_else(|| "(version unknown)".into());
            println!(
                "setup: agent compiler ({:<7}) {} — {version}",
                target.arch,
                compiler.display()
            );
        }
    }
    if (!absent.is_empty() || !compilers.is_empty()) && !guests {
        let names: Vec<String> = absent
            .iter()
            .map(|t| t.program.to_string())
            .chain(compilers.into_iter().map(|(name, _)| name))
            .collect();
        println!(
            "setup: guest build tools not found ({}); only needed to rebuild guests: `cargo xtask setup --guests`",
            names.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_once_in_order() {
        let mut tools = GUEST_TOOLS.to_vec();
        tools.extend_from_slice(QEMU);
        tools.extend_from_slice(ASSET_TOOLS);
        assert_eq!(
            packages(&tools),
            [
                "binutils-aarch64-linux-gnu",
                "binutils-x86-64-linux-gnu",
                "qemu-system-arm",
                "qemu-system-x86",
                "qemu-utils",
                "ovmf",
                "qemu-efi-aarch64"
            ]
        );
    }

    #[test]
    fn install_never_pulls_recommends() {
        assert_eq!(
            install_args(&["qemu-system-arm", "qemu-system-x86"]),
            [
                "install",
                "-y",
                "--no-install-recommends",
                "qemu-system-arm",
                "qemu-system-x86"
            ]
        );
    }
}
