//! Which transport an operation takes (finding out, once per launch,
//! whether an agent answers on the data channel), and the Shell's
//! operations over the agent: a command, a file written, a file read.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::agent::{end_result, errno_text, exit_status, shell_error, Fail, Frame, Session};
use super::frame::{self, Kind};
use super::{Output, Shell};
use crate::channel::Presence;
use crate::error::ShellError;

/// How long the first operation waits for the agent before it also
/// starts probing the console's shell (a restored guest's agent answers
/// in milliseconds; a booting guest's starts before its console shell).
const FIRST_WAIT: Duration = Duration::from_secs(1);

/// How long the agent may take to answer once the console's shell has:
/// no answer by then means the guest has no agent.
const AGENT_GRACE: Duration = Duration::from_secs(5);

/// The agent's program name in the guest, for restarting it through the
/// console when it stops answering.
const AGENT_NAME: &str = "qemu-test-agent";

/// How long restarting a stuck agent through the console may take (init
/// starts a new one within about 2 s).
const REVIVE_WAIT: Duration = Duration::from_secs(15);

/// The longest command the agent can run: Linux's limit for one argument
/// of `exec` (`MAX_ARG_STRLEN`, 32 pages), less its NUL.
const MAX_COMMAND: usize = 32 * 4096 - 1;

/// The transport of one operation.
pub(super) enum Route<'a> {
    /// The agent answers: its session, held for the operation.
    Agent(Session<'a>),
    /// The console's shell.
    Console,
}

impl Shell {
    /// The transport for an operation that must end by `deadline`: the
    /// agent if the data channel has one (found out on first use), else
    /// the console.
    pub(super) fn route(&self, deadline: Instant) -> Result<Route<'_>, ShellError> {
        if self.console_only {
            return Ok(Route::Console);
        }
        let Some(link) = self.channel.lock() else {
            return Ok(Route::Console);
        };
        let mut session = Session::new(link, &self.channel, &self.console);
        if session.link.presence == Presence::Unknown {
            let presence = self.detect(&mut session, deadline)?;
            session.link.presence = presence;
        }
        Ok(match session.link.presence {
            Presence::Present => Route::Agent(session),
            Presence::Absent | Presence::Unknown => Route::Console,
        })
    }

    /// Whether an agent answers: a PING right away; then, while waiting
    /// for its PONG, the console's shell is probed too, and once that
    /// answers the agent gets [`AGENT_GRACE`] more.
    fn detect(&self, s: &mut Session<'_>, deadline: Instant) -> Result<Presence, ShellError> {
        let fail =
            |f: Fail, s: &Session<'_>| shell_error(f, "answering on the data channel", s.tail());
        let ping = s.ping(deadline).map_err(|f| fail(f, s))?;
        let first = deadline.min(Instant::now() + FIRST_WAIT);
        if let Some(busy) = s.await_pong(&ping, first).map_err(|f| fail(f, s))? {
            return Ok(self.found(s, busy, "at once"));
        }
        if !self.console.is_configured() {
            return match s.await_pong(&ping, deadline).map_err(|f| fail(f, s))? {
                Some(busy) => Ok(self.found(s, busy, "without a console")),
                None => Err(ShellError::NotReady {
                    timeout: deadline.saturating_duration_since(Instant::now()),
                    tail: "no agent answered on the data channel, and the machine has no console"
                        .into(),
                }),
            };
        }
        let mut pong = None;
        let console = {
            let mut state = self.lock();
            let mut answered = || {
                pong = pong.or(s.await_pong(&ping, Instant::now()).unwrap_or(None));
                pong.is_some()
            };
            self.sync_locked_unless(&mut state, deadline, &mut answered)
        };
        // The PONG may have come while the console was probed.
        if let Some(busy) = pong.or(s
            .await_pong(&ping, Instant::now())
            .map_err(|f| fail(f, s))?)
        {
            return Ok(self.found(s, busy, "while the console was probed"));
        }
        console?;
        let grace = deadline.min(Instant::now() + AGENT_GRACE);
        if let Some(busy) = s.await_pong(&ping, grace).map_err(|f| fail(f, s))? {
            return Ok(self.found(s, busy, "after the console's shell"));
        }
        s.channel.note(&format!(
            "no agent answered within {AGENT_GRACE:?} of the console's shell: the shell uses the console"
        ));
        Ok(Presence::Absent)
    }

    /// The agent answered; `busy` is a request it still runs (a machine
    /// restored from a snapshot saved while one ran), stopped before the
    /// first request.
    fn found(&self, s: &mut Session<'_>, busy: u32, when: &str) -> Presence {
        s.channel.note(&format!("the agent answered {when}"));
        // A shell answers in the guest (the runner's evidence asks).
        self.console.mark_shell_answered();
        if busy != 0 {
            s.link.unfinished = Some(busy);
        }
        Presence::Present
    }

    /// Resynchronizes with the agent (a PING) within `deadline`.
    pub(super) fn sync_agent(
        &self,
        s: &mut Session<'_>,
        deadline: Instant,
    ) -> Result<(), ShellError> {
        self.ready(s, deadline, "answering a PING")
    }

    /// Makes the agent ready for a request (in step, idle; see
    /// [`Session::ensure_synced`]). An agent that does not answer, or
    /// cannot stop an earlier request, is restarted through the console.
    fn ready(&self, s: &mut Session<'_>, deadline: Instant, what: &str) -> Result<(), ShellError> {
        match s.ensure_synced(deadline) {
            Ok(()) => Ok(()),
            Err(f @ (Fail::Closed | Fail::Panic(_) | Fail::Io(_))) => {
                Err(shell_error(f, what, s.tail()))
            }
            Err(f) if self.revive(s) => {
                s.channel
                    .note(&format!("(after: {})", shell_error(f, what, String::new())));
                Ok(())
            }
            Err(f) => Err(shell_error(f, what, s.tail())),
        }
    }

    /// Kills a stuck agent through the console's shell (init starts a new
    /// one) and waits for the new one; whether it answers.
    fn revive(&self, s: &mut Session<'_>) -> bool {
        if !self.console.is_configured() {
            return false;
        }
        s.channel
            .note("the agent does not answer: killing it through the console, init restarts it");
        let deadline = s.channel.capped(Instant::now() + REVIVE_WAIT);
        let kill = format!("kill -KILL $(pidof {AGENT_NAME}) 2>/dev/null; true");
        if self.run_on_console(&kill, deadline).is_err() {
            return false;
        }
        s.link.unfinished = None;
        s.link.synced = false;
        let revived = s.ensure_synced(deadline).is_ok();
        s.channel.note(if revived {
            "a new agent answers"
        } else {
            "no new agent answers"
        });
        revived
    }

    /// Runs `command` through the agent.
    pub(super) fn run_on_agent(
        &self,
        s: &mut Session<'_>,
        command: &str,
        deadline: Instant,
    ) -> Result<Output, ShellError> {
        check_command(command)?;
        let what = || format!("running {command:?}");
        let started = Instant::now();
        self.ready(s, deadline, &what())?;
        let id = s.link.next_id();
        let mut got = Collected::default();
        let ended = self.collect(s, id, command, deadline, &mut got);
        let took = started.elapsed();
        let result = match ended {
            Ok(Ended::Exit(status)) => Ok(Output::new(
                status,
                std::mem::take(&mut got.stdout),
                std::mem::take(&mut got.stderr),
            )),
            Ok(Ended::Limit) => {
                s.stop(id, &mut |_| {});
                Err(ShellError::OutputLimit {
                    command: command.to_string(),
                    limit: self.output_limit,
                })
            }
            Err(Fail::Timeout) => {
                let recovered = s.stop(id, &mut |f| got.take(f)) || self.revive(s);
                Err(ShellError::Timeout {
                    command: command.to_string(),
                    timeout: deadline.saturating_duration_since(started),
                    recovered,
                    tail: s.tail(),
                })
            }
            Err(f) => Err(shell_error(f, &what(), s.tail())),
        };
        let (stdout, stderr) = match &result {
            Ok(out) => (out.stdout_bytes().len(), out.stderr_bytes()),
            Err(_) => (got.stdout.len(), &got.stderr[..]),
        };
        s.channel
            .note(&run_note(id, command, &result, stdout, stderr, took));
        result
    }

    /// Sends RUN and collects its output into `got` until EXIT (or the
    /// output limit).
    fn collect(
        &self,
        s: &mut Session<'_>,
        id: u32,
        command: &str,
        deadline: Instant,
        got: &mut Collected,
    ) -> Result<Ended, Fail> {
        s.send(&frame::frame(Kind::Run, id, command.as_bytes()), deadline)?;
        loop {
            let f = s.recv_for(id, deadline)?;
            match f.kind {
                Kind::Exit if f.payload.len() == 4 => {
                    return Ok(Ended::Exit(exit_status(frame::u32_at(&f.payload, 0))))
                }
                Kind::Out | Kind::Err => got.take(f),
                Kind::Error => return Err(refused(&f)),
                other => return Err(unexpected(other)),
            }
            if got.stdout.len() + got.stderr.len() > self.output_limit {
                return Ok(Ended::Limit);
            }
        }
    }

    /// Writes `len` bytes from `source` to the guest file `path` through
    /// the agent; `what` names the copy in errors.
    pub(super) fn put_on_agent(
        &self,
        s: &mut Session<'_>,
        path: &str,
        source: &mut dyn Read,
        len: u64,
        deadline: Instant,
        what: &str,
    ) -> Result<(), ShellError> {
        check_path(path)?;
        let started = Instant::now();
        self.ready(s, deadline, what)?;
        let id = s.link.next_id();
        let result = match s.put(id, path, source, len, deadline) {
            Ok(f) => copy_end(&f, Some(len), what).map(|_| ()),
            Err(fail) => Err(self.copy_failed(s, id, fail, what, started, deadline)),
        };
        s.channel
            .note(&copy_note(id, what, &result, started.elapsed()));
        result
    }

    /// Reads the guest file `path` into `sink` through the agent; returns
    /// its size.
    pub(super) fn get_on_agent(
        &self,
        s: &mut Session<'_>,
        path: &str,
        sink: &mut dyn Write,
        deadline: Instant,
        what: &str,
    ) -> Result<u64, ShellError> {
        check_path(path)?;
        let started = Instant::now();
        self.ready(s, deadline, what)?;
        let id = s.link.next_id();
        let result = match s.get(id, path, sink, deadline) {
            Ok(f) => copy_end(&f, None, what),
            Err(fail) => Err(self.copy_failed(s, id, fail, what, started, deadline)),
        };
        s.channel
            .note(&copy_note(id, what, &result, started.elapsed()));
        result
    }

    /// A copy cut short: the agent is told to stop it, and the error says
    /// why.
    fn copy_failed(
        &self,
        s: &mut Session<'_>,
        id: u32,
        fail: Fail,
        what: &str,
        started: Instant,
        deadline: Instant,
    ) -> ShellError {
        let recovered = match fail {
            Fail::Closed | Fail::Panic(_) => false,
            _ => s.stop(id, &mut |_| {}) || self.revive(s),
        };
        match fail {
            Fail::Timeout => ShellError::Timeout {
                command: what.to_string(),
                timeout: deadline.saturating_duration_since(started),
                recovered,
                tail: s.tail(),
            },
            other => shell_error(other, what, s.tail()),
        }
    }
}

/// How a command's RUN ended.
enum Ended {
    /// EXIT, with the shell's exit status.
    Exit(i32),
    /// The output passed the limit.
    Limit,
}

/// A command's output so far.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Collected {
    fn take(&mut self, f: Frame) {
        match f.kind {
            Kind::Out if self.stdout.is_empty() => self.stdout = f.payload,
            Kind::Out => self.stdout.extend_from_slice(&f.payload),
            Kind::Err => self.stderr.extend_from_slice(&f.payload),
            _ => {}
        }
    }
}

/// A command the agent cannot run is refused before anything is sent.
fn check_command(command: &str) -> Result<(), ShellError> {
    let invalid = |reason: String| ShellError::InvalidCommand {
        command: command.chars().take(200).collect(),
        reason,
    };
    if command.contains('\0') {
        return Err(invalid("it contains a NUL byte".into()));
    }
    if command.len() > MAX_COMMAND {
        return Err(invalid(format!(
            "it is {} bytes; Linux runs commands of at most {MAX_COMMAND} (write a longer script \
             to a file with copy_to_guest and run that)",
            command.len()
        )));
    }
    Ok(())
}

/// A guest path the agent can open.
fn check_path(path: &str) -> Result<(), ShellError> {
    if path.is_empty() || path.contains('\0') || path.len() > 4096 {
        return Err(ShellError::InvalidCommand {
            command: path.chars().take(200).collect(),
            reason: "a guest path must be 1 to 4096 bytes without NUL".into(),
        });
    }
    Ok(())
}

/// The result of a copy from its last frame: END with errno 0 (and `len`
/// bytes, if known) is the file's size.
fn copy_end(f: &Frame, len: Option<u64>, what: &str) -> Result<u64, ShellError> {
    let copy_err = |reason: String| ShellError::Copy {
        what: what.to_string(),
        reason,
    };
    match f.kind {
        Kind::End => {
            let (errno, bytes) = end_result(&f.payload).map_err(|_| {
                copy_err(format!(
                    "the agent sent an END of {} bytes",
                    f.payload.len()
                ))
            })?;
            if errno != 0 {
                return Err(copy_err(format!("in the guest: {}", errno_text(errno))));
            }
            match len {
                Some(len) if len != bytes => Err(copy_err(format!(
                    "the guest file got {bytes} of {len} bytes"
                ))),
                _ => Ok(bytes),
            }
        }
        Kind::Error => Err(copy_err(format!(
            "the agent refused it: {}",
            String::from_utf8_lossy(&f.payload)
        ))),
        other => Err(copy_err(format!("the agent answered with {other:?}"))),
    }
}

fn refused(f: &Frame) -> Fail {
    Fail::Protocol(format!(
        "refused the request: {}",
        String::from_utf8_lossy(&f.payload)
    ))
}

fn unexpected(kind: Kind) -> Fail {
    Fail::Protocol(format!("answered a command with a {kind:?} frame"))
}

/// The log line of a command.
fn run_note(
    id: u32,
    command: &str,
    result: &Result<Output, ShellError>,
    stdout: usize,
    stderr: &[u8],
    took: Duration,
) -> String {
    let end = match result {
        Ok(out) => format!("exit {}", out.status),
        Err(ShellError::Timeout { recovered, .. }) => {
            format!("timed out, killed (recovered: {recovered})")
        }
        Err(e) => format!("failed: {}", e.to_string().lines().next().unwrap_or("")),
    };
    let excerpt = String::from_utf8_lossy(&stderr[..stderr.len().min(300)]).into_owned();
    format!(
        "#{id} run {command:?}: {end}, stdout {stdout} B, stderr {} B {excerpt:?}, {:.1} ms",
        stderr.len(),
        took.as_secs_f64() * 1000.0
    )
}

/// The log line of a copy.
fn copy_note<T>(id: u32, what: &str, result: &Result<T, ShellError>, took: Duration) -> String {
    let end = match result {
        Ok(_) => "done".to_string(),
        Err(e) => format!("failed: {}", e.to_string().lines().next().unwrap_or("")),
    };
    format!(
        "#{id} copy {what}: {end}, {:.1} ms",
        took.as_secs_f64() * 1000.0
    )
}
