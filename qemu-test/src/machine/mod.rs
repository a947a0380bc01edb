//! Process lifetime of one QEMU: command line, launch, shutdown, kill,
//! wait, temp and log directories, fd passing.
//!
//! [`Machine`] mirrors QEMU's Python `QEMUMachine` (python/qemu/machine):
//!
//! | QEMUMachine | Machine |
//! | --- | --- |
//! | `QEMUMachine(binary, args, wrapper, name, ...)` | [`Machine::builder`] … [`MachineBuilder::build`], [`Machine::new`] |
//! | `launch()` | [`Machine::launch`] |
//! | `shutdown(hard, timeout)`, `kill()`, `wait(timeout)` | [`shutdown`](Machine::shutdown), [`shutdown_timeout`](Machine::shutdown_timeout), [`kill`](Machine::kill), [`wait`](Machine::wait) |
//! | `qmp(cmd, **args)`, `cmd(cmd, **args)` | [`qmp`](Machine::qmp), [`command`](Machine::command) |
//! | `get_qmp_event`, `get_qmp_events`, `event_wait`, `events_wait` | same names |
//! | `add_fd`, `send_fd_scm`, `add_monitor_null`, `set_qmp_monitor`, `set_machine`, `set_console`, `add_args` | same names |
//! | `console_socket`, `get_log`, `exitcode`, `get_pid`, `is_running` | [`console`](Machine::console), [`log`](Machine::log), [`exit_code`](Machine::exit_code), [`pid`](Machine::pid), [`is_running`](Machine::is_running) |
//! | `temp_dir`, `sock_dir` | [`temp_dir`](Machine::temp_dir), [`sock_dir`](Machine::sock_dir) (both made on first use: QMP uses a socketpair, the console pipes, and logs go to disk only with a log dir) |
//!
//! ```no_run
//! use qemu_test::{guest, Machine};
//! use serde_json::json;
//!
//! let mut vm = Machine::builder("qemu-system-aarch64")
//!     .args(["-cpu", "max", "-kernel"])
//!     .arg(guest::ECHO_SHELL_AARCH64.path()?.to_str().unwrap())
//!     .build();
//! vm.set_machine("virt");
//! vm.set_console(None, 0);
//! vm.launch()?;
//! vm.console().wait_for("login:")?;
//! assert_eq!(vm.command("query-status", json!({}))?["running"], true);
//! vm.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cmdline;
mod crash;
mod forward;
mod kill_switch;
mod launch;
mod lifetime;
mod migrate;
mod owned_dir;
mod plug;
mod remote;
mod screen;

use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::channel::DataChannel;
use crate::console::{Console, Drain};
use crate::deadline::DeadlineCap;
use crate::error::{Error, Result};
use crate::qemu_opts::escape_opt;
pub use crate::qmp::Wait;
use crate::qmp::{self, EventCache, QmpClient};
use crate::timeline::{self, Timeline};
use cmdline::{BaseArgs, ChannelArg, ConsoleArg};
pub(crate) use crash::CrashListener;
pub use crash::GuestCrash;
pub(crate) use kill_switch::KillSwitch;
use owned_dir::OwnedDir;
pub use plug::{Share, FORWARD_NIC};
pub(crate) use remote::Remote;

/// The default QMP timeout (as upstream's `qmp_timer`).
pub const DEFAULT_QMP_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time `shutdown()` waits for QEMU to exit.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time `wait(None)` waits for QEMU to exit on its own (as
/// upstream's `wait()`).
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the QMP monitor is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MonitorAddr {
    /// A `socketpair()` whose QEMU end is inherited (`-chardev socket,fd=N`):
    /// no path, no race (the default).
    #[default]
    SocketPair,
    /// A Unix socket at this path; a relative path is placed in the sock
    /// dir. We listen, QEMU connects.
    Unix(PathBuf),
    /// A TCP socket (use a loopback address; port 0 picks a free port). We
    /// listen, QEMU connects.
    Tcp(SocketAddr),
}

/// Configures a [`Machine`]; see [`Machine::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MachineBuilder {
    binary: String,
    args: Vec<String>,
    wrapper: Vec<String>,
    name: Option<String>,
    base_temp_dir: Option<PathBuf>,
    monitor: Option<MonitorAddr>,
    sock_dir: Option<PathBuf>,
    drain_console: bool,
    console_log: Option<PathBuf>,
    qmp_log: Option<PathBuf>,
    agent_log: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    qmp_timeout: Duration,
}

impl MachineBuilder {
    /// Appends arguments, passed to QEMU verbatim.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    /// Runs QEMU under a wrapper command, e.g. `["gdb", "--args"]` or
    /// `["valgrind"]`.
    pub fn wrapper<I, S>(mut self, wrapper: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.wrapper = wrapper.into_iter().map(Into::into).collect();
        self
    }
    /// Names the machine (log file names); default `qemu-machine-<random>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Where the private temp dir is created; default `$TMPDIR`.
    pub fn base_temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_temp_dir = Some(dir.into());
        self
    }
    /// Where the QMP monitor listens; default a socketpair.
    pub fn monitor(mut self, addr: MonitorAddr) -> Self {
        self.monitor = Some(addr);
        self
    }
    /// Where the private socket dir is created (on first use: see
    /// [`Machine::sock_dir`]); default the base temp dir.
    pub fn sock_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sock_dir = Some(dir.into());
        self
    }
    /// Whether to write the console's output to a log file in the log dir
    /// (default true; a machine without a log dir or
    /// [`console_log`](Self::console_log) writes none). The output is
    /// always drained into memory, so QEMU never blocks.
    pub fn drain_console(mut self, drain: bool) -> Self {
        self.drain_console = drain;
        self
    }
    /// The console log file; default `<log dir>/<name>-console.log` when
    /// there is a log dir.
    pub fn console_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.console_log = Some(path.into());
        self
    }
    /// The QMP transcript file; default `<log dir>/<name>-qmp.jsonl` when
    /// there is a log dir, else none.
    pub fn qmp_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.qmp_log = Some(path.into());
        self
    }
    /// The data channel's log (one line per request to the guest agent);
    /// default `<log dir>/<name>-agent.log` when there is a log dir. Only
    /// written with a data channel ([`Machine::set_data_channel`]).
    pub fn agent_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent_log = Some(path.into());
        self
    }
    /// Where QEMU's output (`<name>.log`), the console log, the QMP
    /// transcript and the agent log go. Default none: nothing is written to disk, QEMU's
    /// output is kept in memory ([`Machine::log`]) as the console's is
    /// ([`Machine::console`]), and there is no transcript. (A launch so
    /// makes no file or directory at all: on a busy disk-backed `/tmp`
    /// that work cost more than the rest of the launch outside QEMU.)
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }
    /// The QMP timeout: handshake and each command (default 30 s).
    pub fn qmp_timeout(mut self, timeout: Duration) -> Self {
        self.qmp_timeout = timeout;
        self
    }
    /// Finishes the configuration. Nothing is started until
    /// [`Machine::launch`].
    pub fn build(self) -> Machine {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("qemu-machine-{:08x}", random_u32()));
        Machine {
            name,
            cfg: self,
            machine_type: None,
            console: None,
            data_channel: false,
            channel_handle: DataChannel::detached(),
            pass_fds: Vec::new(),
            cap: DeadlineCap::default(),
            run: None,
            console_handle: Console::detached(),
            events: EventCache::default(),
            exit_code: None,
            iolog: None,
            full_args: Vec::new(),
            quit_issued: false,
            user_killed: false,
            restore_from: None,
            ram: None,
            kill_switch: KillSwitch::default(),
            remote: Remote::default(),
            crash_listener: None,
            timeline: Timeline::default(),
            plugs: Vec::new(),
            hotplug_ports: 0,
        }
    }
}

/// What exists only while QEMU runs.
#[derive(Debug)]
struct Running {
    child: Child,
    qmp: Option<Arc<QmpClient>>,
    drain: Option<Drain>,
    qemu_log: QemuLog,
    /// Where the socket dir is (or would be) created.
    sock_base: PathBuf,
    /// Where the temp dir is (or would be) created.
    temp_base: PathBuf,
    // Dropped (and removed) at shutdown, after everything above.
    /// Created on first use (see [`Machine::sock_dir`]); `Some(None)` if
    /// that failed.
    sock_dir: OnceLock<Option<OwnedDir>>,
    /// Created on first use (see [`Machine::temp_dir`]), likewise.
    temp_dir: OnceLock<Option<OwnedDir>>,
}

/// Where QEMU's stdout and stderr go.
#[derive(Debug)]
enum QemuLog {
    /// `<log dir>/<name>.log`.
    File(PathBuf),
    /// A file in memory (no log dir).
    Memory(File),
}

impl QemuLog {
    /// Everything QEMU wrote so far, lossily decoded.
    fn read(&self) -> String {
        match self {
            QemuLog::File(path) => read_lossy(path),
            QemuLog::Memory(file) => {
                // QEMU shares the file's offset (its stdout is the same
                // open file): read by position, never move it.
                use std::os::unix::fs::FileExt;
                let mut bytes = Vec::new();
                let mut chunk = vec![0; 64 * 1024];
                loop {
                    match file.read_at(&mut chunk, bytes.len() as u64) {
                        Ok(0) => break,
                        Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}

/// The name prefix of a machine's socket dir (`<base>/qemu-sock-XXXXXX`).
const SOCK_DIR_PREFIX: &str = "qemu-sock-";
/// The name prefix of a machine's temp dir (`<base>/qemu-machine-XXXXXX`).
const TEMP_DIR_PREFIX: &str = "qemu-machine-";

/// One QEMU process, launched, driven over QMP and the console, and shut
/// down; see the [module docs](self) for the mapping to `QEMUMachine`.
///
/// Dropping a running `Machine` kills QEMU (its whole process group) and
/// reaps it; no outcome leaves a QEMU process behind.
#[derive(Debug)]
pub struct Machine {
    name: String,
    cfg: MachineBuilder,
    machine_type: Option<String>,
    console: Option<(Option<String>, u32)>,
    /// Whether launches get a data channel.
    data_channel: bool,
    pass_fds: Vec<OwnedFd>,
    cap: DeadlineCap,
    run: Option<Running>,
    console_handle: Console,
    channel_handle: DataChannel,
    events: EventCache,
    exit_code: Option<i32>,
    iolog: Option<String>,
    full_args: Vec<String>,
    quit_issued: bool,
    restore_from: Option<PathBuf>,
    /// Guest RAM in a file, for booted snapshots.
    ram: Option<migrate::MappedRam>,
    user_killed: bool,
    kill_switch: KillSwitch,
    /// The current QMP client, for other threads (the watchdog).
    remote: Remote,
    /// Told about the guest's crash signs (the runner's watchdog).
    crash_listener: Option<CrashListener>,
    /// Where the launch, QMP commands, event and console waits are
    /// recorded (the runner's per-test timeline; nowhere by default).
    timeline: Timeline,
    /// NICs and shares: booted with, or hot-plugged after a restore.
    plugs: Vec<plug::Plug>,
    /// Spare PCIe root ports for hot-plugging after a restore.
    hotplug_ports: u32,
}

impl Machine {
    /// A machine with default settings.
    ///
    /// ```
    /// let mut vm = qemu_test::Machine::new("qemu-system-x86_64");
    /// assert!(!vm.is_running());
    /// ```
    pub fn new(binary: impl Into<String>) -> Machine {
        Machine::builder(binary).build()
    }

    /// Starts configuring a machine.
    ///
    /// ```
    /// use std::time::Duration;
    /// let vm = qemu_test::Machine::builder("qemu-system-x86_64")
    ///     .args(["-S"])
    ///     .name("demo")
    ///     .qmp_timeout(Duration::from_secs(10))
    ///     .build();
    /// assert_eq!(vm.name(), "demo");
    /// ```
    pub fn builder(binary: impl Into<String>) -> MachineBuilder {
        MachineBuilder {
            binary: binary.into(),
            args: Vec::new(),
            wrapper: Vec::new(),
            name: None,
            base_temp_dir: None,
            monitor: Some(MonitorAddr::SocketPair),
            sock_dir: None,
            drain_console: true,
            console_log: None,
            qmp_log: None,
            agent_log: None,
            log_dir: None,
            qmp_timeout: DEFAULT_QMP_TIMEOUT,
        }
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The QEMU binary, as given to [`Machine::builder`]: a name looked up
    /// on `PATH`, or a path.
    pub fn binary(&self) -> &str {
        &self.cfg.binary
    }

    /// The machine type set with [`set_machine`](Self::set_machine).
    pub fn machine_type(&self) -> Option<&str> {
        self.machine_type.as_deref()
    }

    /// The wrapper command QEMU runs under (empty for none).
    pub(crate) fn wrapper(&self) -> &[String] {
        &self.cfg.wrapper
    }

    /// The console as set with [`set_console`](Self::set_console): the
    /// device type (`None`: the default serial port) and the index.
    pub(crate) fn console_config(&self) -> Option<(Option<&str>, u32)> {
        self.console.as_ref().map(|(d, i)| (d.as_deref(), *i))
    }

    /// Whether launches get a data channel
    /// ([`set_data_channel`](Self::set_data_channel)).
    pub fn has_data_channel(&self) -> bool {
        self.data_channel
    }

    /// Whether the machine gets a QMP monitor at launch.
    pub(crate) fn has_qmp_monitor(&self) -> bool {
        self.cfg.monitor.is_some()
    }

    /// Whether [`launch`](Self::launch) succeeded and QEMU has not been
    /// shut down since (it may have exited by itself).
    pub(crate) fn is_launched(&self) -> bool {
        self.run.is_some()
    }

    /// The user's arguments (without the base arguments the machine adds).
    pub fn args(&self) -> &[String] {
        &self.cfg.args
    }

    /// The whole command line of the last launch (wrapper, binary, base and
    /// user arguments); empty before the first launch.
    pub fn command_line(&self) -> &[String] {
        &self.full_args
    }

    /// A command line that relaunches this machine by hand (for
    /// `repro.sh`): the same binary and arguments, with the QMP monitor
    /// listening on the Unix socket `qmp_socket` (QEMU as the server, not
    /// waiting) and the console on QEMU's stdio instead of inherited fds.
    /// Fds given to [`add_fd`](Self::add_fd) cannot be reproduced.
    ///
    /// ```
    /// let mut vm = qemu_test::Machine::builder("qemu-system-x86_64").args(["-S"]).build();
    /// vm.set_console(None, 0);
    /// let args = vm.repro_command(std::path::Path::new("/tmp/qmp.sock"));
    /// assert!(args.contains(&"stdio,id=console,signal=off".to_string()));
    /// ```
    pub fn repro_command(&self, qmp_socket: &Path) -> Vec<String> {
        let mut args = vec![self.cfg.binary.clone()];
        args.extend(cmdline::base_args(&BaseArgs {
            binary: &self.cfg.binary,
            monitor: None,
            machine: self.machine_type.as_deref(),
            console: self
                .console
                .as_ref()
                .map(|(device, index)| (ConsoleArg::Stdio, device.as_deref(), *index)),
            channel: self.data_channel.then(|| {
                ChannelArg::Listen(
                    qmp_socket
                        .with_file_name("agent.sock")
                        .to_string_lossy()
                        .into(),
                )
            }),
        }));
        if self.cfg.monitor.is_some() {
            args.push("-qmp".into());
            args.push(format!(
                "unix:{},server=on,wait=off",
                escape_opt(&qmp_socket.to_string_lossy())
            ));
        }
        args.extend(self.hotplug_port_args());
        args.extend(self.cfg.args.iter().cloned());
        args.extend(self.plug_boot_args());
        args
    }

    /// Appends arguments (takes effect at the next launch).
    pub fn add_args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cfg.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the machine type (`-machine`).
    pub fn set_machine(&mut self, machine: impl Into<String>) -> &mut Self {
        self.machine_type = Some(machine.into());
        self
    }

    /// Attaches a console: to the machine's default serial port
    /// (`device_type = None`, after `console_index` null ports) or to a
    /// `-device <device_type>,chardev=console`.
    pub fn set_console(&mut self, device_type: Option<&str>, console_index: u32) -> &mut Self {
        self.console = Some((device_type.map(str::to_string), console_index));
        self
    }

    /// Gives each launch a data channel (or not, the default): a
    /// `virtio-serial-pci` controller with one port, named
    /// [`PORT_NAME`](crate::channel::PORT_NAME), on a socketpair the
    /// machine owns. A guest agent on it serves [`Shell`](crate::Shell)
    /// commands and copies far faster than the console
    /// ([`data_channel`](Self::data_channel)); the built-in Linux guests
    /// run one, and the runner sets this for them. The machine type needs
    /// PCI (`q35`, `pc`, Arm `virt`, ...).
    pub fn set_data_channel(&mut self, enabled: bool) -> &mut Self {
        self.data_channel = enabled;
        self
    }

    /// Enables (the default) or disables the QMP monitor. Without it,
    /// `qmp()` and events fail and `shutdown()` sends SIGTERM.
    pub fn set_qmp_monitor(&mut self, enabled: bool) -> &mut Self {
        self.cfg.monitor = if enabled {
            Some(self.cfg.monitor.clone().unwrap_or_default())
        } else {
            None
        };
        self
    }

    /// Adds `-monitor null`.
    pub fn add_monitor_null(&mut self) -> &mut Self {
        self.cfg.args.extend(["-monitor".into(), "null".into()]);
        self
    }

    /// Passes `fd` to QEMU at launch and adds it to fd set `fdset`
    /// (`-add-fd fd=N,set=S,opaque=O`). The fd is duplicated, so the caller
    /// may close its own.
    pub fn add_fd(&mut self, fd: impl AsFd, fdset: u32, opaque: &str) -> Result<&mut Self> {
        let fd = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("duplicating a fd for add_fd", e))?;
        let raw = fd.as_raw_fd();
        self.pass_fds.push(fd);
        let mut value = format!("fd={raw},set={fdset}");
        if !opaque.is_empty() {
            value.push_str(&format!(",opaque={}", escape_opt(opaque)));
        }
        self.cfg.args.extend(["-add-fd".into(), value]);
        Ok(self)
    }

    /// Sends `fd` to QEMU over the QMP socket with `SCM_RIGHTS`; follow with
    /// `getfd` (`{"fdname": ...}`) or `add-fd` to use it.
    pub fn send_fd_scm(&self, fd: impl AsFd) -> Result<()> {
        Ok(self.qmp_client()?.send_fd_scm(fd.as_fd())?)
    }

    /// Opens `path` and sends its fd like [`send_fd_scm`](Self::send_fd_scm).
    pub fn send_file_scm(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = File::open(path)
            .map_err(|e| Error::io(format!("opening {} to pass it to QEMU", path.display()), e))?;
        self.send_fd_scm(&file)
    }

    /// Caps every wait of this machine (QMP, events, console) at
    /// `deadline`; `None` removes the cap. The runner sets it to the test's
    /// deadline.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.cap.set(deadline);
    }

    /// The private temp dir (mode 0700) while running: in the base dir set
    /// with [`MachineBuilder::base_temp_dir`], else in `$TMPDIR`. Yours to
    /// use; the machine keeps nothing there.
    ///
    /// Created on first use, as the socket dir is (see
    /// [`sock_dir`](Self::sock_dir)). It holds a lock file,
    /// `.qemu-test-owner`: a dir whose lock nobody holds (its process was
    /// killed) is removed by a later process's first launch. Removed at
    /// shutdown. `None` when not running, or if the dir cannot be created.
    pub fn temp_dir(&self) -> Option<&Path> {
        let run = self.run.as_ref()?;
        run.temp_dir
            .get_or_init(|| OwnedDir::create(&run.temp_base, TEMP_DIR_PREFIX).ok())
            .as_ref()
            .map(OwnedDir::path)
    }

    /// The temp dir if it was made (see [`temp_dir`](Self::temp_dir)),
    /// without making it.
    pub(crate) fn made_temp_dir(&self) -> Option<&Path> {
        let run = self.run.as_ref()?;
        run.temp_dir.get()?.as_ref().map(OwnedDir::path)
    }

    /// The private socket dir (mode 0700) while running: in the base dir
    /// set with [`MachineBuilder::sock_dir`], else in the base temp dir.
    ///
    /// Created on first use, by this call or by a launch whose monitor
    /// listens on a Unix socket path: the default machine talks to QEMU
    /// over a socketpair and pipes and needs no dir, and sparing the file system work
    /// (a dir, a lock file, their removal) matters on a disk-backed `/tmp`.
    /// Like the temp dir, it holds a lock file and is removed at shutdown.
    /// `None` when not running, or if the dir cannot be created.
    ///
    /// ```no_run
    /// # fn demo(vm: &qemu_test::Machine) {
    /// let sock = vm.sock_dir().expect("running").join("extra.sock");
    /// # }
    /// ```
    pub fn sock_dir(&self) -> Option<&Path> {
        let run = self.run.as_ref()?;
        run.sock_dir
            .get_or_init(|| OwnedDir::create(&run.sock_base, SOCK_DIR_PREFIX).ok())
            .as_ref()
            .map(OwnedDir::path)
    }

    /// The socket dir if it was made (see [`sock_dir`](Self::sock_dir)),
    /// without making it.
    pub(crate) fn made_sock_dir(&self) -> Option<&Path> {
        let run = self.run.as_ref()?;
        run.sock_dir.get()?.as_ref().map(OwnedDir::path)
    }

    /// The log dir, if one was configured ([`MachineBuilder::log_dir`]).
    pub fn log_dir(&self) -> Option<&Path> {
        self.cfg.log_dir.as_deref()
    }

    /// A handle that kills this machine's QEMU from any thread, whichever
    /// launch it is from (the runner's watchdog uses it at the deadline).
    pub(crate) fn kill_switch(&self) -> KillSwitch {
        self.kill_switch.clone()
    }

    /// Records this machine's steps in `timeline` from the next launch on
    /// (the runner's per-test `timeline.jsonl`).
    pub(crate) fn set_timeline(&mut self, timeline: Timeline) {
        self.timeline = timeline;
    }

    /// A handle on the QMP monitor of this machine's QEMU from any thread,
    /// whichever launch it is from (the runner's watchdog takes a failing
    /// test's screenshot through it).
    pub(crate) fn remote(&self) -> Remote {
        self.remote.clone()
    }

    /// QEMU's process id while launched (the wrapper's, with a wrapper).
    pub fn pid(&self) -> Option<u32> {
        self.run.as_ref().map(|r| r.child.id())
    }

    /// Whether QEMU is running (launched and not exited).
    pub fn is_running(&mut self) -> bool {
        match self.run.as_mut() {
            // Not reaped here: `kill` and drop still signal its pid.
            Some(r) => crate::os::child_state(r.child.id()) == crate::os::ChildState::Running,
            None => false,
        }
    }

    /// QEMU's exit code after shutdown: the code, or minus the signal that
    /// killed it (like Python's `returncode`); `None` before.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    /// What QEMU printed on stdout and stderr: the log file while running,
    /// the saved copy after shutdown.
    pub fn log(&self) -> String {
        if let Some(run) = &self.run {
            return run.qemu_log.read();
        }
        self.iolog.clone().unwrap_or_default()
    }

    /// The console (a detached one, whose operations fail, if the machine
    /// has none or is not running).
    pub fn console(&self) -> Console {
        self.console_handle.clone()
    }

    /// The data channel of the current launch (a detached one, see
    /// [`DataChannel::is_attached`], if the machine has none or is not
    /// running). `vm.shell()` uses it.
    pub fn data_channel(&self) -> DataChannel {
        self.channel_handle.clone()
    }

    /// The QMP client while running with a monitor.
    pub fn qmp_client(&self) -> Result<&QmpClient> {
        match &self.run {
            None => Err(Error::State(
                "the machine is not running: call launch() first",
            )),
            Some(Running { qmp: None, .. }) => Err(Error::State(
                "the machine has no QMP monitor (set_qmp_monitor(false))",
            )),
            Some(Running { qmp: Some(q), .. }) => Ok(q),
        }
    }

    /// Sends a QMP command and returns the whole reply (`{"return": ...}`
    /// or `{"error": ...}`). `args` is a JSON object, or `null`.
    ///
    /// ```no_run
    /// # let mut vm = qemu_test::Machine::new("qemu-system-x86_64");
    /// let reply = vm.qmp("query-status", serde_json::json!({}))?;
    /// assert!(reply.get("return").is_some());
    /// # Ok::<(), qemu_test::Error>(())
    /// ```
    pub fn qmp(&mut self, cmd: &str, args: Value) -> Result<Value> {
        if cmd == "quit" {
            self.quit_issued = true;
        }
        Ok(self.qmp_client()?.qmp(cmd, args)?)
    }

    /// Sends a QMP command and returns its `return` value, or
    /// [`Error::Qmp`] with QEMU's error class and description.
    ///
    /// ```no_run
    /// # let mut vm = qemu_test::Machine::new("qemu-system-x86_64");
    /// let status = vm.command("query-status", serde_json::json!({}))?;
    /// println!("{}", status["status"]);
    /// # Ok::<(), qemu_test::Error>(())
    /// ```
    pub fn command(&mut self, cmd: &str, args: Value) -> Result<Value> {
        let reply = self.qmp(cmd, args)?;
        qmp::reply_to_result(cmd, reply)
    }

    /// The oldest unread event (cached ones first), waiting as `wait` says
    /// (`false`, `true`, or a `Duration`).
    pub fn get_qmp_event(&mut self, wait: impl Into<Wait>) -> Result<Option<Value>> {
        if let Some(event) = self.events.pop() {
            return Ok(Some(event));
        }
        match &self.run {
            Some(Running { qmp: Some(q), .. }) => Ok(q.pull_event(wait.into())?),
            _ => Ok(None),
        }
    }

    /// All unread events: new ones (waiting for one as `wait` says), then
    /// the cached ones (the seed's order).
    pub fn get_qmp_events(&mut self, wait: impl Into<Wait>) -> Result<Vec<Value>> {
        let mut events = match &self.run {
            Some(Running { qmp: Some(q), .. }) => q.get_events(wait.into())?,
            _ => Vec::new(),
        };
        events.extend(self.events.drain());
        Ok(events)
    }

    /// Drops every unread event.
    pub fn clear_events(&mut self) {
        self.events.clear();
        if let Some(Running { qmp: Some(q), .. }) = &self.run {
            q.clear_events();
        }
    }

    /// Waits for event `name` (matching `pattern` with [`event_match`],
    /// if given) for up to `timeout`; other events seen meanwhile are kept.
    ///
    /// [`event_match`]: crate::event_match
    ///
    /// ```no_run
    /// # let mut vm = qemu_test::Machine::new("qemu-system-x86_64");
    /// # use std::time::Duration;
    /// vm.command("system_reset", serde_json::json!({}))?;
    /// let event = vm.event_wait("RESET", Duration::from_secs(5), None)?;
    /// # Ok::<(), qemu_test::Error>(())
    /// ```
    pub fn event_wait(
        &mut self,
        name: &str,
        timeout: Duration,
        pattern: Option<Value>,
    ) -> Result<Value> {
        self.events_wait(&[(name, pattern)], timeout)
    }

    /// Waits for the first of several events (name, optional pattern).
    pub fn events_wait(
        &mut self,
        events: &[(&str, Option<Value>)],
        timeout: Duration,
    ) -> Result<Value> {
        let started = Instant::now();
        let wanted: Vec<(&str, Option<&Value>)> =
            events.iter().map(|(n, p)| (*n, p.as_ref())).collect();
        // Not running: only the events kept from before shutdown match.
        let qmp = self.run.as_ref().and_then(|r| r.qmp.as_deref());
        let got = self.events.wait_any(qmp, &wanted, timeout);
        self.timeline.step("event", started, || {
            let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
            let outcome = match &got {
                Ok(event) => ("matched", event["event"].clone()),
                Err(e) => ("error", e.to_string().into()),
            };
            timeline::detail([("wait", names.join(" or ").into()), outcome])
        });
        Ok(got?)
    }
}

/// Quotes a command line for display and `repro.sh`.
pub(crate) fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            shlex::try_quote(a)
                .map(|q| q.into_owned())
                .unwrap_or_else(|_| format!("{a:?}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Mode 0700: directories only we can enter.
fn private() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(0o700)
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) as u32
}
