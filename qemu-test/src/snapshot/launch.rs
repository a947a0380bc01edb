//! Booted snapshots through a [`Machine`]: its snapshot key, and launching
//! from a snapshot (made by this machine first if needed). The machine
//! saves and loads states (`machine::migrate`); this module knows the
//! store and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::{file_identity, Snapshot, SnapshotKey, SnapshotStore};
use crate::error::{BoxError, Error, Result, SnapshotError};
use crate::machine::Machine;

/// How long saving the state may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

impl Machine {
    /// The [`SnapshotKey`] named `name` for this machine as configured: the
    /// qemu-test version, the QEMU binary (path, size, mtime), the wrapper,
    /// the machine type, the console, the data channel, every argument, the
    /// spare hotplug ports, and the identity of every file an argument
    /// names (`-kernel PATH`, `file=PATH,...`). Not its NICs and shares
    /// ([`add_nic`](Machine::add_nic), [`add_share`](Machine::add_share)):
    /// a restored machine gets its own, hot-plugged.
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
        let binary = locate(self.binary());
        let files: Vec<Value> = self
            .wrapper()
            .iter()
            .chain(self.args())
            .flat_map(|arg| named_files(arg))
            .map(|path| file_identity(path.as_path()))
            .collect();
        Ok(SnapshotKey::new(name)?
            .with("qemu-test", env!("CARGO_PKG_VERSION"))
            .with(
                "binary",
                json!({"name": self.binary(), "file": file_identity(&binary)}),
            )
            .with("wrapper", self.wrapper().to_vec())
            .with("machine", self.machine_type().map(str::to_string))
            .with("console", json!(self.console_config()))
            .with("data_channel", self.has_data_channel())
            .with("qmp", self.has_qmp_monitor())
            .with("args", self.args().to_vec())
            .with("hotplug_ports", self.hotplug_port_args())
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
        if self.is_launched() {
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
        // Saved without its NICs and shares: restores plug them in.
        let plugs = self.take_plugs();
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
        self.put_plugs(plugs);
        self.forget_mapped_ram();
        made
    }

    /// Launches with `state` loaded, then forgets it (a later `launch`
    /// boots normally).
    pub(crate) fn launch_restored(&mut self, state: &Path) -> Result<()> {
        self.restore_snapshot(state);
        let launched = self.launch();
        self.restore_from(None);
        self.forget_mapped_ram();
        launched
    }
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

    #[test]
    fn nics_and_shares_are_not_in_the_key_but_hotplug_ports_are() {
        let vm = || {
            let mut vm = Machine::builder("qemu-system-x86_64").build();
            vm.set_machine("q35").set_hotplug_ports(2);
            vm
        };
        let id = vm().snapshot_key("s").unwrap().id();
        let mut plugged = vm();
        plugged
            .add_nic("lan", "52:54:00:00:01:01", json!({"type": "dgram"}))
            .add_forward_nic("52:54:00:ff:01:01", &[80])
            .add_share(crate::machine::Share::new("/srv", "data"));
        assert_eq!(id, plugged.snapshot_key("s").unwrap().id());
        let mut more_ports = vm();
        more_ports.set_hotplug_ports(3);
        assert_ne!(id, more_ports.snapshot_key("s").unwrap().id());
    }
}
