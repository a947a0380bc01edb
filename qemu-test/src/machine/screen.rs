//! Screenshots: [`Machine::screendump`] saves what the machine's display
//! shows, through QMP's `screendump`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::Machine;
use crate::error::{Error, Result};
use crate::qmp::{self, QmpClient};

impl Machine {
    /// Saves what the machine's display shows to `path`: a PNG image, or a
    /// PPM one if `path` ends in `.ppm` (QEMU writes the file itself; PNG
    /// needs QEMU 7.1 or later).
    ///
    /// The runner's VMs start with `-display none -vga none`, so a test
    /// that wants a picture adds a display device (`-vga std`,
    /// `-device VGA`, `-device virtio-gpu-pci`, `-device ramfb`...); QEMU
    /// draws into it without a window. Without one the error is
    /// [`Error::NoDisplay`]. A failing, timed-out or crashed test whose VM
    /// has a display keeps a `screen.png` of its last picture anyway.
    ///
    /// ```no_run
    /// use qemu_test::prelude::*;
    ///
    /// #[qemu_test(arch = "x86_64", machine = "pc", args = ["-vga", "std"])]
    /// fn shows_the_bios(vm: &mut Vm) -> TestResult {
    ///     std::thread::sleep(Duration::from_secs(2));
    ///     vm.screendump(vm.artifacts().join("bios.png"))?;
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub fn screendump(&self, path: impl AsRef<Path>) -> Result<()> {
        screendump(self.qmp_client()?, path.as_ref(), None)
    }
}

/// `screendump` to `path` (made absolute: QEMU resolves a relative path
/// against its own working directory), as PNG unless `path` ends in
/// `.ppm`; with `uncapped`, a timeout that ignores the machine's deadline.
pub(super) fn screendump(qmp: &QmpClient, path: &Path, uncapped: Option<Duration>) -> Result<()> {
    let path = absolute(path);
    let ppm = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ppm"));
    let mut args = json!({ "filename": path.to_string_lossy() });
    if !ppm {
        args["format"] = json!("png");
    }
    let reply = match uncapped {
        Some(timeout) => qmp.qmp_uncapped("screendump", args, timeout)?,
        None => qmp.qmp("screendump", args)?,
    };
    match qmp::reply_to_result("screendump", reply) {
        Ok(_) => Ok(()),
        Err(Error::Qmp { desc, .. }) if no_display(&desc) => Err(Error::NoDisplay),
        Err(e) => Err(e),
    }
}

/// QEMU's words for a machine without a display (7.2: "There is no
/// console to take a screendump from"; older: "There is no QemuConsole I
/// can screendump from.").
fn no_display(desc: &str) -> bool {
    desc.starts_with("There is no console") || desc.starts_with("There is no QemuConsole")
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}
