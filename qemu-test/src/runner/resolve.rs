//! From a [`VmSpec`] to what can be launched: the QEMU binary's path, the
//! names the test gives checked against it, and the accelerator. (A
//! built-in guest's CPU model is the spec's business:
//! [`VmSpec::qemu_args`].)
//!
//! What the host lacks is [`Unrunnable::Missing`], a skip (a failure under
//! `QEMU_TEST_REQUIRE=1`): the QEMU binary, a usable KVM for `accel =
//! "kvm"`, a Linux guest this host cannot build. What the test got wrong is
//! [`Unrunnable::Invalid`], always a failure: no QEMU named at all, or a
//! machine type, CPU model or device type (`machine`, `cpu`, a `console`
//! device, a `-device` in `args`) that the binary does not have, with the
//! nearest names it does have (see [`catalog`](super::catalog)).
//!
//! These checks are cheap and run when the trials are built, so that a
//! test that cannot run here is listed as ignored; `accel = "auto"` is
//! decided when the test runs (it may need the KVM probe, see
//! [`super::accel`]).

use std::path::{Path, PathBuf};

use crate::error::SetupError;
use crate::runner::catalog::{self, Catalog};
use crate::runner::env::Config;
use crate::runner::outcome::Unrunnable;
use crate::runner::path::find_binary;
use crate::runner::{accel, requirements};
use crate::spec::{Accel, VmSpec};

/// A spec resolved against this host, minus the accelerator.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The QEMU binary, as an absolute path when it was found by name.
    pub(crate) binary: PathBuf,
    /// The spec.
    pub(crate) spec: VmSpec,
    /// The accelerator asked for (`QEMU_TEST_ACCEL` over the spec).
    pub(crate) accel: Accel,
}

/// The accelerator a test runs with, and why, when that is not obvious.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccelChoice {
    /// The `-accel` value.
    pub(crate) value: String,
    /// A note for the artifacts, e.g. why `auto` fell back to TCG.
    pub(crate) note: Option<String>,
    /// Whether the note is news to the user (KVM is there but broken), to
    /// print once on stderr too.
    pub(crate) surprising: bool,
}

/// Resolves everything but an `auto` accelerator: cheap enough to run for
/// every listed test.
pub(crate) fn plan(spec: &VmSpec, config: &Config) -> Result<Plan, Unrunnable> {
    let Some(name) = spec.qemu_binary_name() else {
        return Err(Unrunnable::Invalid(
            "the test does not say which QEMU to run: give #[qemu_test] an `arch` (e.g. arch = \"x86_64\"), \
             a `binary`, or a built-in guest as `kernel`"
                .into(),
        ));
    };
    let binary = find_binary(&name, config.qemu_dir.as_deref()).ok_or_else(|| {
        Unrunnable::Missing(
            SetupError::BinaryNotFound {
                binary: name.clone(),
            }
            .to_string(),
        )
    })?;
    check_names(spec, &binary)?;
    check_features(spec, &binary)?;
    requirements::check(&spec.requires, Some(&binary), config)?;
    // A Linux guest this host cannot build (no apt, no kernel given) is
    // missing like a binary: skipped, or failed under REQUIRE. Wrong
    // settings for it are the test run's mistake. (It is built, on first
    // use, when the test runs: `trial`.)
    spec.check_images().map_err(|e| match e.is_unavailable() {
        true => Unrunnable::Missing(e.to_string()),
        false => Unrunnable::Invalid(e.to_string()),
    })?;
    let spec = spec.clone();
    let accel = config.accel.clone().unwrap_or_else(|| spec.accel.clone());
    if accel == Accel::Kvm {
        if let Err(unusable) = accel::kvm_usable(&binary) {
            let reason = unusable.reason;
            return Err(Unrunnable::Missing(
                SetupError::Accel {
                    accel: "kvm".into(),
                    reason,
                }
                .to_string(),
            ));
        }
    }
    Ok(Plan {
        binary,
        spec,
        accel,
    })
}

/// Decides the accelerator of a planned test; `auto` may run the KVM probe
/// (once per binary and boot, see [`accel::kvm_usable`]).
pub(crate) fn choose_accel(plan: &Plan) -> AccelChoice {
    match &plan.accel {
        Accel::Auto => match accel::kvm_usable(&plan.binary) {
            Ok(()) => AccelChoice {
                value: "kvm".into(),
                note: None,
                surprising: false,
            },
            Err(unusable) => AccelChoice {
                value: "tcg".into(),
                note: Some(format!(
                    "accel = auto: using TCG because KVM is not usable: {}",
                    unusable.reason
                )),
                surprising: unusable.probed,
            },
        },
        Accel::Kvm => AccelChoice {
            value: "kvm".into(),
            note: None,
            surprising: false,
        },
        Accel::Tcg => AccelChoice {
            value: "tcg".into(),
            note: None,
            surprising: false,
        },
        Accel::Other(other) => AccelChoice {
            value: other.clone(),
            note: None,
            surprising: false,
        },
    }
}

/// The machine type's name in a `-machine` value (`virt,gic-version=3`,
/// `type=q35,accel=kvm`).
fn machine_type_name(value: &str) -> &str {
    value
        .split(',')
        .find_map(|part| part.strip_prefix("type="))
        .unwrap_or_else(|| value.split(',').next().unwrap_or(value))
}

/// Checks the machine type, CPU model and device types the spec names
/// against what `binary` has: a name it lacks is the test's mistake.
fn check_names(spec: &VmSpec, binary: &Path) -> Result<(), Unrunnable> {
    for (catalog, name) in named(spec) {
        let Some(known) = catalog::names(binary, catalog) else {
            continue;
        };
        if known
            .iter()
            .any(|k| k == name || k.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let error = SetupError::UnknownName {
            what: catalog.what(),
            name: name.to_string(),
            binary: binary.display().to_string(),
            option: catalog.option(),
            near: catalog::near(name, &known)
                .into_iter()
                .map(str::to_string)
                .collect(),
        };
        return Err(Unrunnable::Invalid(error.to_string()));
    }
    Ok(())
}

/// Checks that `binary` has the parts of QEMU the spec's features are
/// built on: an older QEMU gets a clear error, not QEMU's own at launch.
fn check_features(spec: &VmSpec, binary: &Path) -> Result<(), Unrunnable> {
    for (feature, catalog, name) in needed(spec) {
        let Some(known) = catalog::names(binary, catalog) else {
            continue;
        };
        if !known.iter().any(|k| k == name) {
            let error = SetupError::QemuLacks {
                feature,
                what: catalog.what(),
                name,
                binary: binary.display().to_string(),
                option: catalog.option(),
            };
            return Err(Unrunnable::Invalid(error.to_string()));
        }
    }
    Ok(())
}

/// What the spec's features need of QEMU: the attribute key, and the name
/// QEMU must list.
fn needed(spec: &VmSpec) -> Vec<(&'static str, Catalog, &'static str)> {
    let mut needed = Vec::new();
    if !spec.networks.is_empty() {
        // The switch's ports (QEMU 7.2 added `-netdev dgram`).
        needed.push(("networks", Catalog::Netdevs, "dgram"));
    }
    if spec.forward.is_some() {
        needed.push(("forward", Catalog::Netdevs, "user"));
    }
    if !spec.shares.is_empty() {
        needed.push(("shares", Catalog::Devices, "virtio-9p-pci"));
    }
    needed
}

/// The names a spec gives that a binary must have: its machine type, its
/// explicit CPU model (but `host`, which only KVM has: that is the
/// accelerator's business), its console's device type and every
/// `-device` type in its arguments.
fn named(spec: &VmSpec) -> Vec<(Catalog, &str)> {
    let mut names = Vec::new();
    if let Some(machine) = spec.effective_machine() {
        names.push((Catalog::Machines, machine_type_name(machine)));
    }
    if let Some(cpu) = spec.cpu.as_deref().map(option_head) {
        if cpu != "host" {
            names.push((Catalog::Cpus, cpu));
        }
    }
    let console = spec.console.as_ref().and_then(|c| c.device.as_deref());
    let devices = spec
        .args
        .windows(2)
        .filter(|w| w[0] == "-device")
        .map(|w| w[1].as_str());
    for device in console.into_iter().chain(devices) {
        let head = option_head(device);
        let head = head.strip_prefix("driver=").unwrap_or(head);
        if head != "help" && !device.contains("help") {
            names.push((Catalog::Devices, head));
        }
    }
    names
}

/// The part of an option value before its first `,` (`max,+sve` → `max`).
fn option_head(value: &str) -> &str {
    value.split(',').next().unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_a_spec_gives_are_checked() {
        let spec = VmSpec::new()
            .with_arch("x86_64")
            .with_machine("q35,accel=tcg")
            .with_cpu("Haswell,-hle")
            .with_console()
            .with_console_device("isa-debugcon,iobase=0x402")
            .with_args([
                "-device",
                "virtio-rng-pci",
                "-device",
                "driver=e1000,id=n",
                "-S",
            ]);
        assert_eq!(
            named(&spec),
            [
                (Catalog::Machines, "q35"),
                (Catalog::Cpus, "Haswell"),
                (Catalog::Devices, "isa-debugcon"),
                (Catalog::Devices, "virtio-rng-pci"),
                (Catalog::Devices, "e1000"),
            ]
        );
        let host = VmSpec::new().with_arch("x86_64").with_cpu("host");
        assert_eq!(named(&host), []);
    }

    /// Against a real QEMU: a typo is an error naming the near match.
    #[test]
    fn features_need_their_parts_of_qemu() {
        let spec = VmSpec::new()
            .with_arch("x86_64")
            .with_network("lan")
            .with_forward([80])
            .with_share("data:/data");
        assert_eq!(
            needed(&spec),
            [
                ("networks", Catalog::Netdevs, "dgram"),
                ("forward", Catalog::Netdevs, "user"),
                ("shares", Catalog::Devices, "virtio-9p-pci"),
            ]
        );
        assert_eq!(needed(&VmSpec::new().with_arch("x86_64")), []);
        // This host's QEMU has them all.
        if let Some(binary) = find_binary("qemu-system-x86_64", None) {
            assert!(check_features(&spec, &binary).is_ok());
        }
        // A QEMU before 7.2 has no `-netdev dgram`: a stand-in that lists
        // QEMU 7.0's backends (a fault the installed QEMU cannot show).
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("qemu-system-x86_64");
        let script = "#!/bin/sh\nprintf 'Available netdev backend types:\\nsocket\\nhubport\\ntap\\nuser\\n'\n";
        std::fs::write(&old, script).unwrap();
        std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let lan = VmSpec::new().with_arch("x86_64").with_network("lan");
        let Err(Unrunnable::Invalid(reason)) = check_features(&lan, &old) else {
            panic!("an old QEMU passed");
        };
        assert!(
            reason.starts_with("networks need QEMU's netdev backend `dgram`, which ")
                && reason.ends_with(
                    "use QEMU 7.2 or later, built with it (CI tests Debian bookworm's 7.2)"
                ),
            "{reason}"
        );
    }

    #[test]
    fn typos_are_errors_with_near_matches() {
        let Some(binary) = find_binary("qemu-system-x86_64", None) else {
            return;
        };
        let wrong = |spec: VmSpec| match check_names(&spec, &binary) {
            Err(Unrunnable::Invalid(reason)) => reason,
            other => panic!("{other:?}"),
        };
        let x86 = || VmSpec::new().with_arch("x86_64");
        let reason = wrong(x86().with_machine("q53"));
        assert!(
            reason.starts_with("machine type `q53` is not one "),
            "{reason}"
        );
        assert!(reason.contains(": did you mean `q35`? ("), "{reason}");
        assert!(
            reason.ends_with(" -machine help` lists them all)"),
            "{reason}"
        );
        let reason = wrong(x86().with_machine("pc").with_cpu("Haswel"));
        assert!(reason.contains("CPU model `Haswel`"), "{reason}");
        assert!(reason.contains("`Haswell`"), "{reason}");
        let reason = wrong(x86().with_args(["-device", "virtio-rng-pcii"]));
        assert!(reason.contains("device type `virtio-rng-pcii`"), "{reason}");
        assert!(
            reason.contains("did you mean `virtio-rng-pci`?"),
            "{reason}"
        );
        let fine = x86()
            .with_machine("pc")
            .with_cpu("max")
            .with_args(["-device", "virtio-rng-pci,id=r"]);
        assert!(check_names(&fine, &binary).is_ok());
    }

    #[test]
    fn machine_values_are_reduced_to_the_type() {
        assert_eq!(machine_type_name("virt"), "virt");
        assert_eq!(machine_type_name("virt,gic-version=3"), "virt");
        assert_eq!(machine_type_name("accel=kvm,type=q35"), "q35");
    }

    #[test]
    fn binaries_are_found_in_the_qemu_dir_first() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("qemu-system-fake");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        assert_eq!(
            find_binary("qemu-system-fake", Some(dir.path())),
            None,
            "not executable yet"
        );
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_binary("qemu-system-fake", Some(dir.path())),
            Some(fake.clone())
        );
        assert_eq!(find_binary(fake.to_str().unwrap(), None), Some(fake));
        assert_eq!(find_binary("qemu-system-surely-missing", None), None);
    }

    #[test]
    fn missing_binaries_are_reported_by_name() {
        let spec = VmSpec::new().with_arch("surely-missing");
        match plan(&spec, &Config::default()) {
            Err(Unrunnable::Missing(reason)) => {
                assert!(
                    reason.contains("qemu-system-surely-missing not found"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan(&VmSpec::new(), &Config::default()),
            Err(Unrunnable::Invalid(_))
        ));
    }
}
