//! Launching QEMU, in named steps: decide where the logs go → open the
//! monitor's, the console's and the data channel's transports → build the
//! command line → spawn → attach the console and the data channel →
//! connect QMP → load a saved state, if asked.
//! Whatever a failed step leaves is undone by [`Pending::abort`].

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::cmdline::{self, BaseArgs, ChannelArg, ConsoleArg, MonitorArg};
use super::owned_dir::{self, OwnedDir};
use super::{shell_join, Machine, MonitorAddr, QemuLog, Running, SOCK_DIR_PREFIX, TEMP_DIR_PREFIX};
use crate::channel::DataChannel;
use crate::console::{Console, Drain, Ends};
use crate::deadline::DeadlineCap;
use crate::error::{Error, QmpError, Result};
use crate::os::{self, Signal};
use crate::qmp::{QmpClient, Stream, Transcript};
use crate::timeline;

impl Machine {
    /// Starts QEMU and connects to its monitor.
    ///
    /// On failure QEMU is stopped and the error is [`Error::Launch`] with
    /// QEMU's exit code, command line and output.
    pub fn launch(&mut self) -> Result<()> {
        if self.run.is_some() {
            return Err(Error::State("the machine is already launched"));
        }
        self.exit_code = None;
        self.iolog = None;
        self.quit_issued = false;
        self.user_killed = false;
        self.events.clear();
        self.console_handle = Console::detached();
        self.channel_handle = DataChannel::detached();
        let mut pending = Pending::default();
        let started = Instant::now();
        let launched = self.try_launch(&mut pending);
        self.timeline.step("launch", started, || match &launched {
            Ok(()) => timeline::detail([("pid", self.pid().into())]),
            Err(e) => timeline::detail([("error", timeline::excerpt(&e.to_string(), 200).into())]),
        });
        match launched {
            Ok(()) => Ok(()),
            Err(cause) => {
                let (exit_code, output) = pending.abort();
                self.kill_switch.disarm();
                self.exit_code = exit_code;
                self.iolog = Some(output.clone());
                self.console_handle = Console::detached();
                self.channel_handle = DataChannel::detached();
                Err(Error::Launch {
                    exit_code,
                    command_line: shell_join(&self.full_args),
                    command: self.full_args.clone(),
                    output,
                    cause: Box::new(cause),
                })
            }
        }
    }

    /// The launch, step by step; what each step starts is kept in `p`
    /// until the machine runs.
    fn try_launch(&mut self, p: &mut Pending) -> Result<()> {
        let started = Instant::now();
        let dirs = self.prepare_dirs(p)?;
        let mut qemu_fds = Vec::new();
        let monitor = self.open_monitor(&dirs, p, &mut qemu_fds)?;
        let console = self.open_console(&mut qemu_fds)?;
        let channel = self.open_channel(&mut qemu_fds)?;
        self.full_args = self.command_line_for(
            monitor.arg(),
            console.as_ref().map(ConsoleEnds::arg),
            channel.as_ref().map(|c| c.1),
        );
        let (ends, qemu_stdio) = match console {
            Some(console) => {
                let (ends, stdio) = console.split();
                (Some(ends), stdio)
            }
            None => (None, None),
        };
        let pid = self.spawn(p, qemu_fds, qemu_stdio)?;
        let console = match ends {
            Some(ends) => Some(self.attach_console(ends, &dirs, p)?),
            None => None,
        };
        let channel = match channel {
            Some((stream, _)) => self.attach_channel(stream, &dirs)?,
            None => DataChannel::detached(),
        };
        self.timeline
            .step("launch.spawn", started, serde_json::Map::new);
        let started = Instant::now();
        let qmp = self.connect_qmp(monitor, pid, &dirs)?.map(Arc::new);
        self.timeline
            .step("launch.qmp", started, serde_json::Map::new);
        if let Some(path) = self.restore_from.clone() {
            let qmp = qmp.as_ref().ok_or(Error::State(
                "restoring a saved state needs the QMP monitor (set_qmp_monitor(true))",
            ))?;
            let started = Instant::now();
            self.incoming(qmp, &path)?;
            self.hot_plug(qmp)?;
            self.timeline
                .step("launch.restore", started, serde_json::Map::new);
        }
        self.console_handle = console.unwrap_or_else(Console::detached);
        self.channel_handle = channel;
        self.run = Some(Running {
            child: p.child.take().expect("child was set above"),
            qmp,
            drain: p.drain.take(),
            qemu_log: p.qemu_log.take().expect("the log was set above"),
            sock_base: dirs.sock_base,
            temp_base: dirs.temp_base,
            sock_dir: match p.sock_dir.take() {
                Some(dir) => OnceLock::from(Some(dir)),
                None => OnceLock::new(),
            },
            temp_dir: OnceLock::new(),
        });
        self.remote
            .set(self.run.as_ref().and_then(|r| r.qmp.clone()));
        self.attach_crash_listener();
        Ok(())
    }

    /// Where things go: the base dirs of the temp and socket dirs (both
    /// made on first use), the log dir, if any, and QEMU's log (a file
    /// there, else in memory; kept in `p`).
    fn prepare_dirs(&self, p: &mut Pending) -> Result<Dirs> {
        let temp_base = self
            .cfg
            .base_temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let sock_base = self.cfg.sock_dir.clone().unwrap_or(temp_base.clone());
        // Made on first use; abandoned ones go anyway.
        owned_dir::sweep_once(&temp_base, TEMP_DIR_PREFIX);
        owned_dir::sweep_once(&sock_base, SOCK_DIR_PREFIX);
        let log_dir = match &self.cfg.log_dir {
            Some(dir) => {
                os::create_private_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating the log dir {}", dir.display()), e))?;
                Some(dir.clone())
            }
            None => None,
        };
        p.qemu_log = Some(match &log_dir {
            Some(dir) => QemuLog::File(dir.join(format!("{}.log", self.name))),
            None => QemuLog::Memory(
                os::memory_file("qemu-test-qemu-log")
                    .map_err(|e| Error::io("creating QEMU's log in memory", e))?,
            ),
        });
        Ok(Dirs {
            temp_base,
            sock_base,
            log_dir,
        })
    }

    /// The monitor's transport: our end of a socketpair (QEMU's end goes to
    /// `qemu_fds`), or a socket we listen on for QEMU to connect to.
    fn open_monitor(
        &self,
        dirs: &Dirs,
        p: &mut Pending,
        qemu_fds: &mut Vec<OwnedFd>,
    ) -> Result<Monitor> {
        Ok(match &self.cfg.monitor {
            None => Monitor::None,
            Some(MonitorAddr::SocketPair) => {
                let (ours, theirs) =
                    UnixStream::pair().map_err(|e| Error::io("creating the QMP socketpair", e))?;
                let fd = theirs.as_raw_fd();
                qemu_fds.push(theirs.into());
                Monitor::Pair(Stream::Unix(ours), fd)
            }
            Some(MonitorAddr::Unix(path)) => {
                let sock_dir =
                    p.sock_dir
                        .insert(OwnedDir::create(&dirs.sock_base, SOCK_DIR_PREFIX).map_err(
                            |e| {
                                Error::io(
                                    format!(
                                        "creating a socket dir in {}",
                                        dirs.sock_base.display()
                                    ),
                                    e,
                                )
                            },
                        )?);
                let path = sock_dir.path().join(path);
                let listener = UnixListener::bind(&path)
                    .map_err(|e| Error::io(format!("listening on {}", path.display()), e))?;
                let arg = MonitorArg::Path(path.to_string_lossy().into_owned());
                Monitor::Listening(Listener::Unix(listener), arg)
            }
            Some(MonitorAddr::Tcp(addr)) => {
                let listener = TcpListener::bind(addr)
                    .map_err(|e| Error::io(format!("listening on {addr}"), e))?;
                let local = listener
                    .local_addr()
                    .map_err(|e| Error::io("reading the listening address", e))?;
                Monitor::Listening(Listener::Tcp(listener), MonitorArg::Tcp(local))
            }
        })
    }

    /// The console's transport, if the machine has a console: pipes to
    /// QEMU's stdin and stdout, or, when QEMU's stdio is taken (a wrapper
    /// such as `gdb --args` runs in front of QEMU, or the user's arguments
    /// use stdio), a socketpair whose QEMU end goes to `qemu_fds`.
    fn open_console(&self, qemu_fds: &mut Vec<OwnedFd>) -> Result<Option<ConsoleEnds>> {
        if self.console.is_none() {
            return Ok(None);
        }
        if self.cfg.wrapper.is_empty() && !cmdline::args_use_stdio(&self.cfg.args) {
            let pipe = || os::pipe().map_err(|e| Error::io("creating the console's pipes", e));
            let (output, qemu_stdout) = pipe()?;
            let (qemu_stdin, input) = pipe()?;
            return Ok(Some(ConsoleEnds::Pipes {
                ours: Ends::Pipes { output, input },
                qemu_stdin,
                qemu_stdout,
            }));
        }
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| Error::io("creating the console socketpair", e))?;
        let fd = theirs.as_raw_fd();
        qemu_fds.push(theirs.into());
        Ok(Some(ConsoleEnds::Socket(ours, fd)))
    }

    /// The data channel's socketpair, if the machine has one: our end, and
    /// QEMU's end's fd (the end itself goes to `qemu_fds`).
    fn open_channel(&self, qemu_fds: &mut Vec<OwnedFd>) -> Result<Option<(UnixStream, RawFd)>> {
        if !self.data_channel {
            return Ok(None);
        }
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| Error::io("creating the data channel's socketpair", e))?;
        let fd = theirs.as_raw_fd();
        qemu_fds.push(theirs.into());
        Ok(Some((ours, fd)))
    }

    /// The whole command line: wrapper, binary, base arguments (display,
    /// monitor, machine, console, data channel), the restore's, the spare
    /// root ports, the user's, then the NICs and shares.
    fn command_line_for(
        &self,
        monitor: Option<MonitorArg>,
        console: Option<ConsoleArg>,
        channel: Option<RawFd>,
    ) -> Vec<String> {
        let base = cmdline::base_args(&BaseArgs {
            binary: &self.cfg.binary,
            monitor,
            machine: self.machine_type.as_deref(),
            console: self
                .console
                .as_ref()
                .zip(console)
                .map(|((device, index), arg)| (arg, device.as_deref(), *index)),
            channel: channel.map(ChannelArg::Fd),
        });
        let mut incoming: Vec<String> = match self.restore_from {
            Some(_) => vec!["-incoming".into(), "defer".into()],
            None => Vec::new(),
        };
        incoming.extend(self.ram.iter().flat_map(super::migrate::MappedRam::args));
        let ports = self.hotplug_port_args();
        let plugs = self.plug_args();
        self.cfg
            .wrapper
            .iter()
            .chain([&self.cfg.binary])
            .chain(&base)
            .chain(&incoming)
            .chain(&ports)
            .chain(&self.cfg.args)
            .chain(&plugs)
            .cloned()
            .collect()
    }

    /// Starts QEMU with its output in its log (its stdin and stdout the
    /// console's pipes, if given) and exactly `qemu_fds` (and the fds of
    /// [`add_fd`](Self::add_fd)) inherited; the child goes to `p`.
    fn spawn(
        &self,
        p: &mut Pending,
        qemu_fds: Vec<OwnedFd>,
        console_stdio: Option<(File, File)>,
    ) -> Result<u32> {
        let log_file = match p.qemu_log.as_ref().expect("prepare_dirs sets it") {
            QemuLog::File(path) => File::create(path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?,
            QemuLog::Memory(file) => file
                .try_clone()
                .map_err(|e| Error::io("duplicating QEMU's log", e))?,
        };
        let log_file2 = log_file
            .try_clone()
            .map_err(|e| Error::io("duplicating the log file", e))?;
        let mut cmd = Command::new(&self.full_args[0]);
        cmd.args(&self.full_args[1..]).stderr(log_file2);
        match console_stdio {
            Some((stdin, stdout)) => cmd.stdin(stdin).stdout(stdout),
            None => cmd.stdin(Stdio::null()).stdout(log_file),
        };
        let pass: Vec<RawFd> = qemu_fds
            .iter()
            .map(AsRawFd::as_raw_fd)
            .chain(self.pass_fds.iter().map(AsRawFd::as_raw_fd))
            .collect();
        let child = os::spawn(cmd, pass)
            .map_err(|e| Error::io(format!("starting {}", self.full_args[0]), e))?;
        // QEMU has its copies (the console's pipe ends went with `cmd`);
        // closing ours lets us see EOF when it exits.
        drop(qemu_fds);
        let pid = child.id();
        p.child = Some(child);
        self.kill_switch.arm(pid);
        Ok(pid)
    }

    /// Starts draining the console into memory and its log; the drain
    /// goes to `p`.
    fn attach_console(&self, ends: Ends, dirs: &Dirs, p: &mut Pending) -> Result<Console> {
        let log = match (&self.cfg.console_log, &dirs.log_dir, self.cfg.drain_console) {
            (Some(path), _, _) => Some(path.clone()),
            (None, Some(dir), true) => Some(dir.join(format!("{}-console.log", self.name))),
            (None, _, _) => None,
        };
        let log = match log {
            Some(path) => Some(
                File::create(&path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?,
            ),
            None => None,
        };
        let (console, drain) = Console::attach(ends, log, self.cap.clone())
            .map_err(|e| Error::io("starting the console drain thread", e))?;
        p.drain = Some(drain);
        Ok(console.timed(self.timeline.clone()))
    }

    /// Our end of the data channel, with its log.
    fn attach_channel(&self, stream: UnixStream, dirs: &Dirs) -> Result<DataChannel> {
        let path = match (&self.cfg.agent_log, &dirs.log_dir) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(dir)) => Some(dir.join(format!("{}-agent.log", self.name))),
            (None, None) => None,
        };
        let log = match path {
            Some(path) => Some(
                File::create(&path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?,
            ),
            None => None,
        };
        DataChannel::attach(stream, log, self.cap.clone())
            .map_err(|e| Error::io("setting up the data channel", e))
    }

    /// The QMP client, after the greeting and capabilities negotiation,
    /// with its transcript.
    fn connect_qmp(&self, monitor: Monitor, pid: u32, dirs: &Dirs) -> Result<Option<QmpClient>> {
        let stream = match monitor {
            Monitor::None => return Ok(None),
            Monitor::Pair(stream, _) => stream,
            Monitor::Listening(listener, _) => {
                listener.accept(pid, self.cfg.qmp_timeout, &self.cap)?
            }
        };
        let transcript_path = match (&self.cfg.qmp_log, &dirs.log_dir) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(dir)) => Some(dir.join(format!("{}-qmp.jsonl", self.name))),
            (None, None) => None,
        };
        let transcript = match transcript_path {
            Some(path) => Some(
                Transcript::create(&path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?
                    .into(),
            ),
            None => None,
        };
        let mut client =
            QmpClient::connect_with(stream, self.cfg.qmp_timeout, transcript, self.cap.clone())?;
        client.set_timeline(self.timeline.clone());
        Ok(Some(client))
    }
}

/// The console's transport as opened before the spawn.
enum ConsoleEnds {
    /// Our ends of the pipes, and QEMU's (its stdin and stdout).
    Pipes {
        ours: Ends,
        qemu_stdin: File,
        qemu_stdout: File,
    },
    /// Our end of a socketpair, and the fd of QEMU's end.
    Socket(UnixStream, RawFd),
}

impl ConsoleEnds {
    /// The `-chardev` the command line gets.
    fn arg(&self) -> ConsoleArg {
        match self {
            ConsoleEnds::Pipes { .. } => ConsoleArg::Stdio,
            ConsoleEnds::Socket(_, fd) => ConsoleArg::Fd(*fd),
        }
    }

    /// Our ends, and QEMU's stdin and stdout if they are the console.
    fn split(self) -> (Ends, Option<(File, File)>) {
        match self {
            ConsoleEnds::Pipes {
                ours,
                qemu_stdin,
                qemu_stdout,
            } => (ours, Some((qemu_stdin, qemu_stdout))),
            ConsoleEnds::Socket(ours, _) => (Ends::Socket(ours), None),
        }
    }
}

/// Where a launch puts things.
struct Dirs {
    /// Where the temp dir is (or would be) created.
    temp_base: PathBuf,
    /// Where the socket dir is (or would be) created.
    sock_base: PathBuf,
    log_dir: Option<PathBuf>,
}

/// The monitor's transport, as opened before the spawn.
enum Monitor {
    /// No monitor (`set_qmp_monitor(false)`).
    None,
    /// Our end of a socketpair, and the fd of QEMU's end.
    Pair(Stream, RawFd),
    /// A socket QEMU connects to, and how QEMU is told about it.
    Listening(Listener, MonitorArg),
}

impl Monitor {
    /// The `-chardev` the command line gets.
    fn arg(&self) -> Option<MonitorArg> {
        match self {
            Monitor::None => None,
            Monitor::Pair(_, fd) => Some(MonitorArg::Fd(*fd)),
            Monitor::Listening(_, arg) => Some(arg.clone()),
        }
    }
}

/// What a launch in progress has started, to be undone on failure.
#[derive(Default)]
pub(super) struct Pending {
    child: Option<Child>,
    drain: Option<Drain>,
    qemu_log: Option<QemuLog>,
    sock_dir: Option<OwnedDir>,
}

impl Pending {
    /// Kills what was started; returns QEMU's exit code and output.
    fn abort(self) -> (Option<i32>, String) {
        let mut exit_code = None;
        if let Some(mut child) = self.child {
            // QEMU may be exiting by itself (a bad option): give it a
            // moment so its exit code is its own, then make sure.
            let status = match os::wait_timeout(&mut child, Some(Duration::from_millis(200))) {
                Ok(Some(status)) => Some(status),
                _ => {
                    let _ = os::kill_group(child.id(), Signal::Kill);
                    let _ = os::kill_one(child.id(), Signal::Kill);
                    child.wait().ok()
                }
            };
            exit_code = status.and_then(os::exit_code);
        }
        if let Some(d) = self.drain {
            d.finish();
        }
        let output = self
            .qemu_log
            .as_ref()
            .map(QemuLog::read)
            .unwrap_or_default();
        (exit_code, output)
    }
}

/// A socket we listen on for QEMU's monitor connection.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Accepts QEMU's connection, giving up when QEMU exits or the deadline
    /// passes.
    fn accept(self, pid: u32, timeout: Duration, cap: &DeadlineCap) -> Result<Stream> {
        let (deadline, timeout) = cap.after(timeout);
        let fd = match &self {
            Listener::Unix(l) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        };
        let pidfd = os::pidfd(pid);
        let mut fds = vec![fd];
        if let Some(p) = &pidfd {
            fds.push(p.as_fd());
        }
        let ready = os::poll_readable(&fds, Some(deadline))
            .map_err(|e| Error::io("waiting for QEMU to connect to QMP", e))?;
        let addr = self.describe();
        let io_err = |source: io::Error| QmpError::Connect {
            address: addr.clone(),
            source,
        };
        if !ready.contains(&0) {
            let why = if ready.is_empty() {
                format!("QEMU did not connect within {timeout:?}")
            } else {
                "QEMU exited".to_string()
            };
            return Err(io_err(io::Error::new(io::ErrorKind::TimedOut, why)).into());
        }
        let stream = match self {
            Listener::Unix(l) => Stream::Unix(l.accept().map_err(io_err)?.0),
            Listener::Tcp(l) => Stream::Tcp(l.accept().map_err(io_err)?.0),
        };
        Ok(stream)
    }

    fn describe(&self) -> String {
        match self {
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p: &Path| p.display().to_string()))
                .unwrap_or_default(),
            Listener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        }
    }
}
