//! Saving and loading the whole VM state (a migration to and from a file,
//! through passed fds), and keeping guest RAM in a file of its own beside
//! the state, which is what makes booted snapshots cheap to restore.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::Machine;
use crate::error::{Error, Result};
use crate::qmp::{EventCache, QmpClient};

/// The guest RAM's file, next to the saved state.
const RAM_FILE: &str = "ram";

/// Guest RAM kept in a file instead of the migration stream: mapped shared
/// while a snapshot is made (the file then holds the RAM as saved, and QEMU
/// leaves it out of the stream: `x-ignore-shared`), mapped private (copy on
/// write) when restored. A restore then reads no RAM at all: the guest
/// faults in the pages it touches from the page cache, which every restored
/// machine shares, and the file never changes.
#[derive(Debug, Clone)]
pub(crate) struct MappedRam {
    path: PathBuf,
    /// The backend's id: the machine's own RAM id, so a state saved later
    /// from a restored machine still loads into one without the file.
    id: &'static str,
    bytes: u64,
    shared: bool,
}

impl MappedRam {
    /// The arguments that put the RAM in the file.
    pub(crate) fn args(&self) -> [String; 4] {
        [
            "-object".into(),
            format!(
                "memory-backend-file,id={},size={},mem-path={},share={}",
                self.id,
                self.bytes,
                crate::qemu_opts::escape_opt(&self.path.to_string_lossy()),
                if self.shared { "on" } else { "off" }
            ),
            "-machine".into(),
            format!("memory-backend={}", self.id),
        ]
    }
}

impl Machine {
    /// Saves the whole VM state (devices and RAM) to `path`: stops the
    /// guest, then migrates it into the file through a passed fd (QEMU
    /// runs no shell). Afterwards the VM stays stopped (`postmigrate`, once QEMU has
    /// finished);
    /// shut it down, or `cont` to go on. A machine with the same command
    /// line and [`restore_from`](Self::restore_from) set resumes from it.
    ///
    /// ```no_run
    /// # fn demo(vm: &mut qemu_test::Machine) -> qemu_test::Result<()> {
    /// vm.save_state("target/booted.state".as_ref(), std::time::Duration::from_secs(60))?;
    /// vm.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn save_state(&mut self, path: &Path, timeout: Duration) -> Result<()> {
        let file = File::create(path)
            .map_err(|e| Error::io(format!("creating the state file {}", path.display()), e))?;
        let run = self.run.as_ref().ok_or(Error::State(
            "the machine is not running: call launch() first",
        ))?;
        let qmp = run
            .qmp
            .as_ref()
            .ok_or(Error::State("saving the state needs the QMP monitor"))?;
        qmp.command(
            "migrate-set-capabilities",
            self.migration_capabilities(false),
        )?;
        qmp.command("stop", Value::Null)?;
        qmp.send_fd_scm(file.as_fd())?;
        qmp.command("getfd", serde_json::json!({"fdname": "qemu-test-state"}))?;
        qmp.command("migrate", serde_json::json!({"uri": "fd:qemu-test-state"}))?;
        let qmp = self.run.as_ref().and_then(|r| r.qmp.as_deref());
        wait_migration(&mut self.events, qmp, timeout)
    }

    /// Makes the next [`launch`](Self::launch) resume the state saved by
    /// [`save_state`](Self::save_state) in `path` (`None`: boot normally).
    /// QEMU starts with `-incoming defer`, loads the file through a passed
    /// fd, and the guest is resumed (`cont`) before `launch` returns. The
    /// command line must match the one the state was saved with.
    pub fn restore_from(&mut self, path: Option<PathBuf>) -> &mut Self {
        self.restore_from = path;
        self
    }

    pub(super) fn incoming(&mut self, qmp: &QmpClient, path: &Path) -> Result<()> {
        let file = File::open(path)
            .map_err(|e| Error::io(format!("opening the state file {}", path.display()), e))?;
        let timeout = self.cfg.qmp_timeout.max(Duration::from_secs(60));
        qmp.command(
            "migrate-set-capabilities",
            self.migration_capabilities(true),
        )?;
        qmp.send_fd_scm(file.as_fd())?;
        qmp.command("getfd", serde_json::json!({"fdname": "qemu-test-state"}))?;
        qmp.command(
            "migrate-incoming",
            serde_json::json!({"uri": "fd:qemu-test-state"}),
        )?;
        wait_migration(&mut self.events, Some(qmp), timeout)?;
        qmp.command("cont", Value::Null)?;
        Ok(())
    }

    /// Before the launch that makes a snapshot saved to `state`: keeps the
    /// guest RAM in a file next to it, if this machine's memory allows (see
    /// [`mappable_ram`]); otherwise the RAM goes into the state as usual.
    pub(crate) fn map_ram_for_saving(&mut self, state: &Path) {
        self.ram = mappable_ram(
            &self.cfg.binary,
            self.machine_type.as_deref(),
            &self.cfg.args,
        )
        .map(|(id, bytes)| MappedRam {
            path: state.with_file_name(RAM_FILE),
            id,
            bytes,
            shared: true,
        });
    }

    /// Drops the RAM file set up for the last launch: the next launch
    /// keeps the RAM in QEMU's own memory again.
    pub(crate) fn forget_mapped_ram(&mut self) {
        self.ram = None;
    }

    /// Before the launch that restores the snapshot saved in `state`: loads
    /// it, with the guest RAM mapped from its file if it was saved so.
    pub(crate) fn restore_snapshot(&mut self, state: &Path) {
        self.restore_from(Some(state.to_path_buf()));
        let path = state.with_file_name(RAM_FILE);
        self.ram = std::fs::metadata(&path).ok().and_then(|meta| {
            let (id, _) = mappable_ram(
                &self.cfg.binary,
                self.machine_type.as_deref(),
                &self.cfg.args,
            )?;
            Some(MappedRam {
                path,
                id,
                bytes: meta.len(),
                shared: false,
            })
        });
    }

    /// The capabilities set before saving (`incoming: false`) or loading a
    /// state: events, and leaving out RAM that lives in a file: when saving
    /// a snapshot's RAM to its file, and when restoring one. Set either way,
    /// as QEMU keeps it from the restore: a state saved later from a
    /// restored machine has its RAM in the stream, loadable by any machine
    /// with the same arguments.
    pub(crate) fn migration_capabilities(&self, incoming: bool) -> Value {
        let ignore_shared = self.ram.as_ref().is_some_and(|ram| ram.shared || incoming);
        json!({ "capabilities": [
            {"capability": "events", "state": true},
            {"capability": "x-ignore-shared", "state": ignore_shared},
        ]})
    }
}

/// Whether a snapshot can keep the guest RAM in a file, and if so the RAM
/// backend's id and size in bytes: the machine is one whose RAM id and
/// default size are known (`q35`, `pc`, their versions; `virt` on Arm), and
/// the arguments set no memory options beyond a plain `-m SIZE`.
fn mappable_ram(
    binary: &str,
    machine: Option<&str>,
    args: &[String],
) -> Option<(&'static str, u64)> {
    let machine = machine?;
    let target = crate::qemu_opts::target_arch(Path::new(binary))?;
    let versioned = |base: &str| {
        machine == base
            || machine
                .strip_prefix(base)
                .is_some_and(|v| v.starts_with('-'))
    };
    let id = match target {
        "x86_64" | "i386" if versioned("q35") || versioned("pc") || machine.starts_with("pc-") => {
            "pc.ram"
        }
        "aarch64" | "arm" if versioned("virt") => "mach-virt.ram",
        _ => return None,
    };
    let own_memory = |a: &String| {
        a.contains("memory-backend")
            || matches!(
                a.as_str(),
                "-mem-path"
                    | "-mem-prealloc"
                    | "-numa"
                    | "--mem-path"
                    | "--mem-prealloc"
                    | "--numa"
            )
    };
    if args.iter().any(own_memory) {
        return None;
    }
    let mut bytes = 128 << 20;
    for (i, arg) in args.iter().enumerate() {
        if arg == "-m" || arg == "--m" {
            // A plain size only: `slots`/`maxmem` add hotpluggable memory.
            let value = args.get(i + 1).filter(|v| !v.contains(','))?;
            bytes = crate::qemu_opts::memory_bytes(value)?;
        }
    }
    Some((id, bytes))
}

/// Waits for the migration to complete (`MIGRATION` events).
fn wait_migration(
    events: &mut EventCache,
    qmp: Option<&QmpClient>,
    timeout: Duration,
) -> Result<()> {
    let done = serde_json::json!({"data": {"status": "completed"}});
    let failed = serde_json::json!({"data": {"status": "failed"}});
    let event = events.wait_any(
        qmp,
        &[("MIGRATION", Some(&done)), ("MIGRATION", Some(&failed))],
        timeout,
    )?;
    if event["data"]["status"] == "completed" {
        return Ok(());
    }
    let detail = qmp
        .and_then(|q| q.command("query-migrate", Value::Null).ok())
        .and_then(|m| {
            m.get("error-desc")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "no detail from QEMU".into());
    Err(Error::Migration(detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_is_mapped_only_for_known_machines_and_plain_sizes() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let x86 = "/usr/bin/qemu-system-x86_64";
        assert_eq!(
            mappable_ram(x86, Some("q35"), &[]),
            Some(("pc.ram", 128 << 20))
        );
        assert_eq!(
            mappable_ram(x86, Some("pc-q35-7.2"), &args(&["-m", "1G"])),
            Some(("pc.ram", 1 << 30))
        );
        assert_eq!(
            mappable_ram(
                "qemu-system-aarch64",
                Some("virt"),
                &args(&["-m", "size=256"])
            ),
            Some(("mach-virt.ram", 256 << 20))
        );
        assert_eq!(mappable_ram(x86, None, &[]), None, "QEMU's default machine");
        assert_eq!(mappable_ram(x86, Some("microvm"), &[]), None);
        assert_eq!(mappable_ram("qemu-system-riscv64", Some("virt"), &[]), None);
        for own in [
            &["-m", "1G,slots=2,maxmem=4G"][..],
            &["-m", "1.5G"],
            &["-m"],
            &["-numa", "node"],
            &["-object", "memory-backend-ram,id=m,size=1G"],
            &["-mem-prealloc"],
        ] {
            assert_eq!(mappable_ram(x86, Some("q35"), &args(own)), None, "{own:?}");
        }
    }
}
