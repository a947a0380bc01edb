//! Booted snapshots through a [`Machine`]: its snapshot key, and launching
//! from a snapshot (made by this machine first if needed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::Machine;
use crate::error::{BoxError, Error, Result, SnapshotError};
use crate::snapshot::{file_identity, Snapshot, SnapshotKey, SnapshotStore};

/// How long saving the state may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// The [`SnapshotKey`] named `name` for this machine as configured: the
    /// qemu-test version, the QEMU binary (path, size, mtime), the wrapper,
    /// the machine type, the console, every argument, and the identity of
    /// every file an argument names (`-kernel PATH`, `file=PATH,...`).
    /// What a setup function does is not visible here: add it with
    /// [`SnapshotKey::with`].
    ///
    /// ```
    /// let mut vm = qemu_test::Machine::builder("qemu-system-x86_64").args(["-m", "256M"]).build();
    /// let key = vm.snapshot_key("booted")?;
    /// vm.add_args(["-smp", "2"]);
    /// assert_ne!(key.id(), vm.snapshot_key("booted")?.id());
    /// # Ok::<(), qemu_test::SnapshotError>(())
    /// ```
    pub fn snapshot_key(&self, name: &str) -> std::result::Result<SnapshotKey, SnapshotError> {
        let binary = locate(&self.cfg.binary);
        let files: Vec<Value> = self
            .cfg
            .wrapper
            .iter()
            .chain(&self.cfg.args)
            .flat_map(|arg| named_files(arg))
            .map(|path| file_identity(&path))
            .collect();
        Ok(SnapshotKey::new(name)?
            .with("qemu-test", env!("CARGO_PKG_VERSION"))
            .with(
                "binary",
                json!({"name": self.cfg.binary, "file": file_identity(&binary)}),
            )
            .with("wrapper", self.cfg.wrapper.clone())
            .with("machine", self.machine_type.clone())
            .with("console", json!(self.console))
            .with("qmp", self.cfg.monitor.is_some())
            .with("args", self.cfg.args.clone())
            .with("files", files))
    }

    /// Launches the machine from the snapshot filed under `key` in `store`,
    /// making it first if it does not exist: this machine is launched as
    /// configured, `setup` gets it ready (wait for a shell, configure the
    /// guest...), its state is saved and it is shut down. Then (and from
    /// then on, for every machine with the same key) QEMU starts with the
    /// state loaded and the guest resumes where `setup` left it: the
    /// console shows only what the guest prints after the restore.
    ///
    /// The guest RAM is kept in a file beside the state, mapped copy on
    /// write by each restore, when the machine allows it: `q35`, `pc` (and
    /// their versions) or Arm `virt`, and no memory arguments beyond a plain
    /// `-m SIZE`. Otherwise it is saved in the state.
    ///
    /// Concurrent callers (threads or processes) make the snapshot once.
    /// The machine's disks are not part of the state: if the guest writes
    /// to disks, add `-snapshot` to the arguments (or use fresh overlays),
    /// so each restored machine starts from the same disk contents as the
    /// state expects.
    ///
    /// ```no_run
    /// use qemu_test::snapshot::SnapshotStore;
    /// use qemu_test::{guest, Machine};
    ///
    /// let store = SnapshotStore::new("target/qemu-test/snapshots");
    /// let files = guest::linux_x86_64()?;
    /// let mut vm = Machine::builder("qemu-system-x86_64")
    ///     .args(files.args.iter().copied())
    ///     .args(["-m", "256M", "-kernel", &files.kernel.to_string_lossy()])
    ///     .args(["-initrd", &files.initrd.to_string_lossy(), "-append", files.append])
    ///     .build();
    /// vm.set_machine("q35").set_console(None, 0);
    /// let key = vm.snapshot_key("linux-shell")?.with("setup", "ready marker");
    /// vm.launch_snapshot(&store, &key, |vm| {
    ///     vm.console().wait_for(guest::LINUX_READY)?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(qemu_test::Shell::new(vm.console()).succeed("echo hi")?, "hi\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn launch_snapshot(
        &mut self,
        store: &SnapshotStore,
        key: &SnapshotKey,
        setup: impl FnOnce(&mut Machine) -> std::result::Result<(), BoxError>,
    ) -> Result<Snapshot> {
        if self.run.is_some() {
            return Err(Error::State("the machine is already launched"));
        }
        let snapshot = store.get_or_create(key, |state, logs| {
            let made = self.create_snapshot(state, setup);
            if made.is_err() {
                let _ = std::fs::write(logs.join("qemu.log"), self.log());
                let _ = std::fs::write(logs.join("console.log"), self.console().output());
            }
            made
        })?;
        self.launch_restored(snapshot.state())?;
        Ok(snapshot)
    }

    /// Boots, runs `setup`, saves to `state`, shuts down; kills QEMU on any
    /// failure.
    pub(crate) fn create_snapshot(
        &mut self,
        state: &Path,
        setup: impl FnOnce(&mut Machine) -> std::result::Result<(), BoxError>,
    ) -> std::result::Result<(), BoxError> {
        self.restore_from(None);
        self.map_ram_for_saving(state);
        let made = (|| -> std::result::Result<(), BoxError> {
            self.launch()?;
            setup(self)?;
            self.save_state(state, SAVE_TIMEOUT)?;
            self.shutdown()?;
            Ok(())
        })();
        if made.is_err() {
            self.kill();
        }
        self.ram = None;
        made
    }

    /// Launches with `state` loaded, then forgets it (a later `launch`
    /// boots normally).
    pub(crate) fn launch_restored(&mut self, state: &Path) -> Result<()> {
        self.restore_snapshot(state);
        let launched = self.launch();
        self.restore_from(None);
        self.ram = None;
        launched
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

/// The binary's path: as given when it has a `/`, else found on `PATH`.
fn locate(binary: &str) -> PathBuf {
    if binary.contains('/') {
        return PathBuf::from(binary);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(binary))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(binary))
}

/// The existing files an argument names: the argument itself, or the value
/// of any `key=value` in a QEMU option string (`,,` is an escaped comma).
fn named_files(arg: &str) -> Vec<PathBuf> {
    let mut candidates = vec![arg.to_string()];
    let unescaped = arg.replace(",,", "\u{0}");
    for part in unescaped.split(',') {
        if let Some((_, value)) = part.split_once('=') {
            candidates.push(value.replace('\u{0}', ","));
        }
    }
    candidates
        .into_iter()
        .filter(|c| !c.is_empty() && c.len() < 4096)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_named_by_arguments_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("vmlinuz");
        let comma = dir.path().join("disk,1.img");
        std::fs::write(&plain, "k").unwrap();
        std::fs::write(&comma, "d").unwrap();
        assert_eq!(named_files(&plain.to_string_lossy()), [plain]);
        let drive = format!(
            "if=virtio,file={},format=raw",
            comma.to_string_lossy().replace(',', ",,")
        );
        assert_eq!(named_files(&drive), [comma]);
        assert!(named_files("-m").is_empty());
        assert!(named_files("file=/no/such/file").is_empty());
    }

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

    #[test]
    fn keys_follow_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("kernel");
        std::fs::write(&kernel, "v1").unwrap();
        let vm = || {
            let mut vm = Machine::builder("qemu-system-x86_64")
                .args(["-kernel", &kernel.to_string_lossy()])
                .build();
            vm.set_machine("q35");
            vm
        };
        let id = vm().snapshot_key("s").unwrap().id();
        assert_eq!(id, vm().snapshot_key("s").unwrap().id(), "stable");
        let mut console = vm();
        console.set_console(None, 0);
        assert_ne!(id, console.snapshot_key("s").unwrap().id());
        let mut other_machine = vm();
        other_machine.set_machine("pc");
        assert_ne!(id, other_machine.snapshot_key("s").unwrap().id());
        std::fs::write(&kernel, "v22").unwrap();
        assert_ne!(id, vm().snapshot_key("s").unwrap().id(), "kernel changed");
        assert!(vm().snapshot_key("no/slash").is_err());
    }
}
