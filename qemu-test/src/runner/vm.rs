//! [`Vm`]: what a `#[qemu_test]` body receives.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{BoxError, NetError, Result};
use crate::machine::Machine;
use crate::net::Network;
use crate::runner::network::{self, Devices};
use crate::runner::sibling::{Sibling, Siblings};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How long teardown waits for QEMU to quit gracefully before killing it.
pub(crate) const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A launched [`Machine`] plus the test's artifact directory; what a
/// `#[qemu_test]` body receives.
///
/// `Vm` derefs to [`Machine`], so the whole machine API is there: QMP
/// ([`command`](Machine::command), [`event_wait`](Machine::event_wait)),
/// the [`console`](Machine::console), [`shutdown`](Machine::shutdown)...
/// Every wait is capped by the test's deadline (`timeout = "..."`, 60 s by
/// default), so none can outlive the test.
///
/// The runner launches the machine before the body and tears it down after
/// it (a graceful `quit`, then a kill after 5 s); a guest that powered off
/// by itself, or a body that shut the machine down, is fine.
///
/// ```no_run
/// use qemu_test::prelude::*;
///
/// #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
/// fn echoes(vm: &mut Vm) -> TestResult {
///     vm.console().wait_for("login:")?;
///     vm.console().exec_and_wait("hi", "you said: hi")?;
///     assert_eq!(vm.command("query-status", json!({}))?["running"], true);
///     // Files written here are kept with the logs if the test fails.
///     std::fs::write(vm.artifacts().join("notes.txt"), "said hi")?;
///     Ok(())
/// }
///
/// qemu_test::main!();
/// ```
#[derive(Debug)]
pub struct Vm {
    machine: Machine,
    artifacts: PathBuf,
    test_name: String,
    siblings: Siblings,
    /// Set when the body expects its guest to crash.
    crash_expected: Arc<AtomicBool>,
    /// The test's networks and program dir.
    devices: Devices,
}

impl Vm {
    pub(crate) fn new(
        machine: Machine,
        artifacts: PathBuf,
        test_name: String,
        siblings: Siblings,
        crash_expected: Arc<AtomicBool>,
        devices: Devices,
    ) -> Vm {
        Vm {
            machine,
            artifacts,
            test_name,
            siblings,
            crash_expected,
            devices,
        }
    }

    /// The test's private network `name` (declared with `networks =
    /// ["name"]`): its members' addresses, partitions and cuts, its
    /// capture. See [`net`](crate::net).
    ///
    /// ```no_run
    /// # fn demo(vm: &qemu_test::Vm) -> qemu_test::TestResult {
    /// let lan = vm.network("lan")?;
    /// lan.partition(&[&["main"], &["b", "c"]])?;
    /// vm.shell().fail("ping -c1 -W1 b")?;
    /// lan.heal()?;
    /// # Ok(()) }
    /// ```
    pub fn network(&self, name: &str) -> std::result::Result<&Network, NetError> {
        let networks = &self.devices.networks;
        networks
            .iter()
            .find(|n| n.name() == name)
            .ok_or_else(|| NetError::Undeclared {
                name: name.into(),
                declared: networks.iter().map(|n| n.name().to_string()).collect(),
            })
    }

    /// Every network of the test, in declaration order.
    pub fn networks(&self) -> &[Network] {
        &self.devices.networks
    }

    /// Makes the host program `program` (say, one your crate's build made)
    /// runnable in the guest, with the shared libraries it needs; returns
    /// its path in the guest, to run like any command there. On a guest
    /// with 9p ([`LINUX_X86_64_GENERIC`](crate::guest::LINUX_X86_64_GENERIC))
    /// it goes through the test's program dir (`<artifacts>/host/`, shared
    /// read-only and mounted at `/run/qemu-test/host`): a few milliseconds
    /// whatever its size. Elsewhere it is copied over the console, at
    /// about 60 KiB/s. The guest's glibc must be able to run it: the Linux
    /// guests take the host's own libraries along (found with `ldd`).
    ///
    /// ```no_run
    /// # fn demo(vm: &qemu_test::Vm) -> qemu_test::TestResult {
    /// let tool = vm.install("target/debug/my-tool")?;
    /// vm.shell().succeed(&format!("{tool} --version"))?;
    /// # Ok(()) }
    /// ```
    pub fn install(&self, program: impl AsRef<Path>) -> std::result::Result<String, BoxError> {
        super::share::install(
            &self.shell(),
            self.devices.programs.as_deref(),
            program.as_ref(),
        )
    }

    /// Takes the VM's NIC on `network` down (`false`: the guest loses its
    /// carrier at once, nothing goes in or out) or up again (QMP
    /// `set_link`, on the NIC whose id is the network's name). Up, it
    /// returns once the Linux guest has the link up and passes traffic
    /// again (its link watch runs up to a second later). For a cut at the
    /// switch that the guest does not notice, see
    /// [`Network::disconnect`].
    ///
    /// ```no_run
    /// # fn demo(vm: &mut qemu_test::Vm) -> qemu_test::TestResult {
    /// vm.set_link("lan", false)?;
    /// vm.shell().fail("ping -c1 -W1 b")?;
    /// vm.set_link("lan", true)?;
    /// vm.shell().succeed("ping -c1 -W2 b")?;
    /// # Ok(()) }
    /// ```
    pub fn set_link(&mut self, network: &str, up: bool) -> std::result::Result<(), BoxError> {
        let shell = self.devices.configures_guest.then(|| self.shell());
        network::set_link(&mut self.machine, shell, network, up)
    }

    /// Says that the guest is going to crash on purpose: from now on a
    /// kernel panic, Oops or BUG does not fail the test (by default the
    /// runner fails it within a second, with the crash in the message).
    /// Then [`wait_for_guest_crash`](Machine::wait_for_guest_crash).
    ///
    /// ```no_run
    /// use qemu_test::prelude::*;
    ///
    /// #[qemu_test(console, kernel = guest::LINUX_X86_64)]
    /// fn sysrq_crashes_the_guest(vm: &mut Vm) -> TestResult {
    ///     vm.shell().succeed("true")?;
    ///     vm.expect_guest_crash();
    ///     vm.console().send_line("echo c > /proc/sysrq-trigger")?;
    ///     let crash = vm.wait_for_guest_crash(Duration::from_secs(30))?;
    ///     assert!(crash.to_string().contains("sysrq triggered crash"));
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub fn expect_guest_crash(&self) {
        self.crash_expected.store(true, Ordering::SeqCst);
    }

    /// The sibling machine named `name`. The first call for a name starts
    /// configuring it: a [`Machine`] like the test's own (the same QEMU,
    /// accelerator, machine type, kernel and arguments; its console, if the
    /// test has one), not launched, with its logs in `<artifacts>/<name>/`
    /// and capped by the test's deadline; siblings named in the attribute
    /// (`siblings = ["server"]`) come launched by the runner. The test
    /// declares how many it starts (`#[qemu_test(siblings = N)]`): their
    /// host budget is reserved with the test's own, and one more is refused
    /// ([`SiblingError`]). Names are 1 to 64 letters, digits, `-` or `_`.
    ///
    /// A sibling lives until the test ends: dropping the handle gives it
    /// back, and a later call with its name returns the same machine.
    ///
    /// ```no_run
    /// use qemu_test::prelude::*;
    ///
    /// // A migration: the destination listens on a port QEMU picks.
    /// #[qemu_test(arch = "x86_64", machine = "q35", args = ["-S"], siblings = 1)]
    /// fn migrates(vm: &mut Vm) -> TestResult {
    ///     let mut dest = vm.sibling("dest")?;
    ///     dest.add_args(["-incoming", "defer"]);
    ///     dest.launch()?;
    ///     dest.command("migrate-incoming", json!({"uri": "tcp:127.0.0.1:0"}))?;
    ///     let port = dest.command("query-migrate", json!({}))?["socket-address"][0]["port"]
    ///         .as_str().unwrap_or_default().to_string();
    ///     vm.command("migrate", json!({"uri": format!("tcp:127.0.0.1:{port}")}))?;
    ///     dest.event_wait("RESUME", Duration::from_secs(30), None).ok();
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    ///
    /// [`SiblingError`]: crate::error::SiblingError
    pub fn sibling(&self, name: &str) -> Result<Sibling> {
        Ok(self.siblings.get(name)?)
    }

    /// The test's artifact directory, `target/qemu-test/<package>/<test-binary>/<test-name>/`
    /// (`<test-name>.2/` while another run of the same test holds that):
    /// `qemu.log`, `console.log`, `qmp.jsonl`, `cmdline.txt`, `repro.sh`,
    /// `timeline.jsonl`, after a failure `screen.png` (a VM with a display)
    /// and `dmesg.txt` (a Linux guest), and anything the body writes
    /// there. Kept when the test fails.
    ///
    /// ```no_run
    /// # use qemu_test::prelude::*;
    /// # fn body(vm: &mut Vm) -> TestResult {
    /// let dump = vm.artifacts().join("memory.dump");
    /// vm.command("dump-guest-memory", json!({"paging": false, "protocol": format!("file:{}", dump.display())}))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    /// The test's name as the runner lists it (`module::function`).
    ///
    /// ```no_run
    /// # use qemu_test::prelude::*;
    /// # fn body(vm: &mut Vm) -> TestResult {
    /// println!("running {}", vm.test_name());
    /// # Ok(())
    /// # }
    /// ```
    pub fn test_name(&self) -> &str {
        &self.test_name
    }

    /// A [`Shell`](crate::shell::Shell): runs commands in a Linux guest
    /// such as [`LINUX_X86_64`](crate::guest::LINUX_X86_64) and returns
    /// their status and output, through the guest agent on the machine's
    /// data channel if one answers, else on the console.
    ///
    /// ```no_run
    /// # use qemu_test::prelude::*;
    /// # fn body(vm: &mut Vm) -> TestResult {
    /// assert_eq!(vm.shell().succeed("echo hi")?, "hi\n");
    /// # Ok(())
    /// # }
    /// ```
    pub fn shell(&self) -> crate::shell::Shell {
        crate::shell::Shell::with_data_channel(self.machine.console(), self.machine.data_channel())
    }

    /// Shuts the machine down after the body: graceful `quit` with
    /// [`TEARDOWN_TIMEOUT`], then a kill. Lifts the test's deadline first,
    /// so a test that ran out of time still gets a clean shutdown attempt.
    pub(crate) fn teardown(&mut self) -> Result<()> {
        self.machine.set_deadline(None);
        self.machine.shutdown_timeout(TEARDOWN_TIMEOUT)
    }
}

impl Deref for Vm {
    type Target = Machine;
    fn deref(&self) -> &Machine {
        &self.machine
    }
}

impl DerefMut for Vm {
    fn deref_mut(&mut self) -> &mut Machine {
        &mut self.machine
    }
}
