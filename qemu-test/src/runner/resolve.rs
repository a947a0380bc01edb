//! From a [`VmSpec`] to what can be launched: the QEMU binary's path, the
//! machine type's support, and the accelerator. (A built-in guest's CPU
//! model is the spec's business: [`VmSpec::qemu_args`].)
//!
//! The cheap checks (binary lookup, `-machine help`, an explicitly requested
//! accelerator) run when the trials are built, so that a test that cannot
//! run here is listed as ignored; `accel = "auto"` is decided when the test
//! runs (it may need the KVM probe, see [`super::accel`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::SetupError;
use crate::runner::accel;
use crate::runner::env::Config;
use crate::runner::state::{fnv1a, state_dir};
use crate::snapshot::file_identity;
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

/// Why a spec cannot run here.
#[derive(Debug, Clone)]
pub(crate) enum Unrunnable {
    /// Something the host lacks: skipped, or a failure under
    /// `QEMU_TEST_REQUIRE=1`.
    Missing(String),
    /// The test itself is wrong: always a failure.
    Invalid(String),
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
    // A guest image that is not built (the Linux guest before `cargo xtask
    // guests`) is missing like a binary: skipped, or failed under REQUIRE.
    spec.check_images()
        .map_err(|e| Unrunnable::Missing(e.to_string()))?;
    if let Some(machine) = spec.effective_machine() {
        let wanted = machine_type_name(machine);
        if let Some(supported) = machine_types(&binary) {
            if !supported.iter().any(|m| m == wanted) {
                return Err(Unrunnable::Missing(
                    SetupError::Machine {
                        machine: wanted.to_string(),
                        binary: binary.display().to_string(),
                    }
                    .to_string(),
                ));
            }
        }
    }
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

/// Finds a QEMU binary: a name containing `/` is a path; otherwise
/// `QEMU_TEST_QEMU_DIR`, then each `PATH` entry.
pub(crate) fn find_binary(name: &str, qemu_dir: Option<&Path>) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    qemu_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&path_var))
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The machine type's name in a `-machine` value (`virt,gic-version=3`,
/// `type=q35,accel=kvm`).
fn machine_type_name(value: &str) -> &str {
    value
        .split(',')
        .find_map(|part| part.strip_prefix("type="))
        .unwrap_or_else(|| value.split(',').next().unwrap_or(value))
}

/// A binary's machine types, if `-machine help` worked.
type MachineTypes = Option<Arc<Vec<String>>>;

/// The machine types `binary` supports (`-machine help`); `None` when
/// that does not work, in which case the launch reports the problem.
///
/// Asked once per binary and process, and kept in a file of the state dir
/// keyed by the binary's [`file_identity`] (canonical path, size, mtime,
/// inode), as snapshot keys identify it, so that a nextest
/// run (one process per test) does not pay for a QEMU start (25-35 ms)
/// in every test. A failure is not kept.
fn machine_types(binary: &Path) -> MachineTypes {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, MachineTypes>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(binary) {
        return hit.clone();
    }
    let canonical = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    let key = fnv1a(file_identity(&canonical).to_string().as_bytes());
    let file = state_dir().join(format!("machine-types-{key:016x}.txt"));
    let kept = std::fs::read_to_string(&file)
        .ok()
        .map(|text| parse_kept(&text))
        .filter(|types| !types.is_empty());
    let types = kept.or_else(|| {
        let output = Command::new(binary)
            .args(["-machine", "help"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let types = parse_machine_help(&String::from_utf8_lossy(&output.stdout));
        keep(&file, &types);
        Some(types)
    });
    let types = types.map(Arc::new);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(binary.to_path_buf(), types.clone());
    types
}

/// The end line of a kept list. [`keep`]'s rename is atomic, but nothing is
/// fsynced: after a crash the file may be there with its data cut short,
/// and then it lacks this line and is asked again.
const KEPT_END: &str = "# end";

/// Writes `types` to `file`, one per line, through a temp file renamed into
/// place: concurrent readers see the whole list or none. Best effort.
fn keep(file: &Path, types: &[String]) {
    let text = format!("{}\n{KEPT_END}\n", types.join("\n"));
    let _ = crate::os::write_atomically(file, text.as_bytes());
}

/// A list [`keep`] wrote; empty if it is incomplete.
fn parse_kept(text: &str) -> Vec<String> {
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.pop() != Some(KEPT_END) {
        return Vec::new();
    }
    lines.into_iter().map(str::to_string).collect()
}

/// Parses `-machine help`: a header line, then `name   description` lines.
fn parse_machine_help(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with(char::is_whitespace))
        .filter(|line| !line.starts_with("Supported machines"))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_lists_round_trip_and_cut_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("machine-types-x.txt");
        let types = vec!["pc".to_string(), "q35".to_string()];
        keep(&file, &types);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(parse_kept(&text), types);
        assert!(parse_kept("pc\nq3").is_empty());
        assert!(parse_kept("").is_empty());
    }

    #[test]
    fn machine_help_is_parsed() {
        let text = "Supported machines are:\n\
                    microvm              microvm (i386)\n\
                    pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)\n\
                    q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)\n\
                    none                 empty machine\n";
        assert_eq!(parse_machine_help(text), ["microvm", "pc", "q35", "none"]);
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
