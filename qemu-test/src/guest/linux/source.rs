//! Where a Linux guest's kernel and busybox come from: Debian's packages
//! (the default), or files the user names through the environment or the
//! API ([`LinuxSource`]).

use std::path::{Path, PathBuf};

use super::target::Target;
use super::Problem;

/// Where a Linux guest's kernel, its modules and busybox come from.
///
/// The default is [`LinuxSource::Debian`]. On a host without apt, or whose
/// archive has no Debian cloud kernel (Ubuntu), name the files instead,
/// either with [`LinuxBuilder::source`](super::LinuxBuilder::source) or,
/// for `kernel = guest::LINUX_X86_64` in a test, with these environment
/// variables:
///
/// | variable | what |
/// | --- | --- |
/// | `QEMU_TEST_LINUX_KERNEL` | the kernel: x86_64, a bzImage (`/boot/vmlinuz-*`, `arch/x86/boot/bzImage`) or a `vmlinux` with a PVH note; aarch64, an `Image` (or a gzip'd one) |
/// | `QEMU_TEST_BUSYBOX` | a statically linked busybox for the guest's architecture (Debian and Ubuntu: `/bin/busybox` of `busybox-static`) |
/// | `QEMU_TEST_LINUX_MODULES` | optional: that kernel's `lib/modules/<release>` directory, needed when it builds `virtio_pci`, `virtio_blk`, `button`, `evdev` or `virtio_net` as modules (built-in ones are found in its `modules.builtin`) |
///
/// These apply to the guest of the host's own architecture; a name with
/// the architecture appended (`QEMU_TEST_LINUX_KERNEL_AARCH64`,
/// `QEMU_TEST_BUSYBOX_X86_64`, `QEMU_TEST_LINUX_MODULES_AARCH64`) applies to
/// that guest only and comes first. The kernel and busybox go together:
/// one without the other is an error.
///
/// Modules must be `.ko` or `.ko.gz` files (decompress `.ko.xz` and
/// `.ko.zst` ones first).
///
/// ```no_run
/// use qemu_test::guest::{LinuxSource, LINUX_X86_64};
///
/// // Ubuntu: the running kernel (copied: /boot/vmlinuz-* is root's only)
/// // and busybox-static's program.
/// let source = LinuxSource::files("/var/tmp/vmlinuz", "/bin/busybox")
///     .with_modules(format!("/lib/modules/{}", "6.8.0-45-generic"));
/// let linux = LINUX_X86_64.linux().expect("a Linux guest");
/// let built = linux.builder().source(source).build()?;
/// println!("kernel at {}", built.files.kernel.display());
/// # Ok::<(), qemu_test::GuestError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinuxSource {
    /// Debian's cloud kernel (`linux-image-cloud-<arch>`) and
    /// `busybox-static`, fetched with apt through private package lists
    /// seeded from the host's apt sources (no root needed).
    Debian,
    /// A kernel, its modules and a busybox the user provides.
    Files {
        /// The kernel image.
        kernel: PathBuf,
        /// The kernel's `lib/modules/<release>` directory, if it has
        /// modules the guest needs.
        modules: Option<PathBuf>,
        /// A static busybox.
        busybox: PathBuf,
    },
}

impl LinuxSource {
    /// A kernel and a static busybox the user provides (no modules).
    pub fn files(kernel: impl Into<PathBuf>, busybox: impl Into<PathBuf>) -> LinuxSource {
        LinuxSource::Files {
            kernel: absolute(kernel.into()),
            modules: None,
            busybox: absolute(busybox.into()),
        }
    }

    /// Adds the kernel's `lib/modules/<release>` directory (for
    /// [`LinuxSource::Files`]; `Debian` is returned unchanged).
    pub fn with_modules(self, dir: impl Into<PathBuf>) -> LinuxSource {
        match self {
            LinuxSource::Files {
                kernel, busybox, ..
            } => LinuxSource::Files {
                kernel,
                modules: Some(absolute(dir.into())),
                busybox,
            },
            debian => debian,
        }
    }

    /// The source the environment names for `target` (see the table
    /// above), else `Debian`.
    pub(crate) fn from_env(target: &Target) -> Result<LinuxSource, Problem> {
        let kernel = setting(target, "QEMU_TEST_LINUX_KERNEL");
        let busybox = setting(target, "QEMU_TEST_BUSYBOX");
        let modules = setting(target, "QEMU_TEST_LINUX_MODULES");
        match (kernel, busybox) {
            (None, None) => match modules {
                None => Ok(LinuxSource::Debian),
                Some((var, _)) => Err(Problem::Config(format!(
                    "{var} is set, but no kernel: set {} and {} too",
                    var_name(target, "QEMU_TEST_LINUX_KERNEL"),
                    var_name(target, "QEMU_TEST_BUSYBOX")
                ))),
            },
            (Some((_, kernel)), Some((_, busybox))) => {
                let source = LinuxSource::files(kernel, busybox);
                Ok(match modules {
                    Some((_, dir)) => source.with_modules(dir),
                    None => source,
                })
            }
            (Some((var, _)), None) | (None, Some((var, _))) => {
                let (kernel, busybox) = (
                    var_name(target, "QEMU_TEST_LINUX_KERNEL"),
                    var_name(target, "QEMU_TEST_BUSYBOX"),
                );
                Err(Problem::Config(format!(
                    "{var} is set, but the guest needs both a kernel and a static busybox: \
                     set {kernel} and {busybox}"
                )))
            }
        }
    }
}

/// `NAME_<ARCH>`, else (for the host's architecture) `NAME`: the variable
/// that is set and its value.
fn setting(target: &Target, name: &str) -> Option<(String, PathBuf)> {
    let own = format!("{name}_{}", target.env_suffix);
    let mut names = vec![own];
    if target.is_host() {
        names.push(name.to_string());
    }
    names.into_iter().find_map(|var| {
        let value = std::env::var_os(&var).filter(|v| !v.is_empty())?;
        Some((var, PathBuf::from(value)))
    })
}

/// The variable a user sets for `target`: the plain name on the host's
/// architecture, else the suffixed one.
pub(crate) fn var_name(target: &Target, name: &str) -> String {
    if target.is_host() {
        name.to_string()
    } else {
        format!("{name}_{}", target.env_suffix)
    }
}

/// What to set instead of building from Debian packages.
pub(crate) fn how_to_point_at_files(target: &Target) -> String {
    let kernel_kind = match target.arch {
        "x86_64" => "a bzImage, or a vmlinux with a PVH note",
        _ => "an arm64 Image",
    };
    format!(
        "point it at a kernel and a static busybox instead: {}=<{kernel_kind}>, {}=<a static \
         busybox for {}> and, if that kernel builds {} as modules, {}=<its lib/modules/<release> \
         directory> (see qemu_test::guest::LinuxSource)",
        var_name(target, "QEMU_TEST_LINUX_KERNEL"),
        var_name(target, "QEMU_TEST_BUSYBOX"),
        target.arch,
        target.modules.join(", "),
        var_name(target, "QEMU_TEST_LINUX_MODULES"),
    )
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(&path))
        .unwrap_or(path)
}

/// Reads a file the user named; the error names the setting's value.
pub(crate) fn read_user_file(what: &str, path: &Path) -> Result<Vec<u8>, Problem> {
    std::fs::read(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (on Ubuntu /boot/vmlinuz-* is readable by root only: copy it and make the copy \
             readable)"
        } else {
            ""
        };
        Problem::Config(format!(
            "cannot read the {what} {}: {e}{hint}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::linux::target::{AARCH64, X86_64};

    #[test]
    fn sources_say_what_to_set() {
        let host = if X86_64.is_host() { &X86_64 } else { &AARCH64 };
        let other = if X86_64.is_host() { &AARCH64 } else { &X86_64 };
        assert_eq!(var_name(host, "QEMU_TEST_BUSYBOX"), "QEMU_TEST_BUSYBOX");
        assert_eq!(
            var_name(other, "QEMU_TEST_BUSYBOX"),
            format!("QEMU_TEST_BUSYBOX_{}", other.env_suffix)
        );
        let text = how_to_point_at_files(&X86_64);
        assert!(
            text.contains("bzImage") && text.contains("virtio_blk"),
            "{text}"
        );
    }

    #[test]
    fn files_are_made_absolute_and_take_modules() {
        let s = LinuxSource::files("k", "/bin/busybox").with_modules("/lib/modules/x");
        match s {
            LinuxSource::Files {
                kernel,
                modules,
                busybox,
            } => {
                assert!(kernel.is_absolute() && kernel.ends_with("k"));
                assert_eq!(modules.as_deref(), Some(Path::new("/lib/modules/x")));
                assert_eq!(busybox, Path::new("/bin/busybox"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(LinuxSource::Debian.with_modules("/x"), LinuxSource::Debian);
    }
}
