//! The Shell's first transport, for every guest with a POSIX shell on
//! its console: commands typed as scripts that frame their output with
//! markers (see the [module docs](super) for what a script does).

use std::time::{Duration, Instant};

use super::parse::{parse, Parsed};
use super::script::{nonce, probe, quick_probe, resend_script, script};
use super::{Output, Shell, State};
use crate::console::Pattern;
use crate::error::{ConsoleError, ShellError};
use crate::timeline;

/// What the console shows when the guest kernel panics.
const PANIC: &str = "Kernel panic - not syncing";

/// After a timeout: the keys sent, each followed by a probe, and how long
/// to wait for its answer. Ctrl-C twice (SIGINT; the second also flushes a
/// probe a stuck command left queued), then Ctrl-\ (SIGQUIT).
const INTERRUPTS: [(&[u8], Duration); 3] = [
    (b"\x03", Duration::from_secs(2)),
    (b"\x03", Duration::from_secs(2)),
    (b"\x1c", Duration::from_secs(5)),
];

impl Shell {
    /// Runs `command` over the console (see the [module docs](super)).
    pub(super) fn run_on_console(
        &self,
        command: &str,
        deadline: Instant,
    ) -> Result<Output, ShellError> {
        let nonce = nonce();
        let script = script(command, &nonce)?;
        let mut state = self.lock();
        if !state.synced {
            self.sync_locked(&mut state, deadline)?;
        }
        let started = Instant::now();
        match self.exchange(&mut state, command, &script, &nonce, started, deadline)? {
            Parsed::Done(out) => Ok(out),
            Parsed::Resend { status, stderr } => {
                let nonce = self::nonce();
                let script = resend_script(&nonce, status);
                match self.exchange(&mut state, command, &script, &nonce, started, deadline)? {
                    Parsed::Done(out) => {
                        let mut all = stderr.into_bytes();
                        all.extend_from_slice(out.stderr_bytes());
                        Ok(out.with_stderr(all))
                    }
                    Parsed::Resend { .. } => Err(ShellError::Garbled {
                        command: command.to_string(),
                        reason: "stdout sent again did not come as base64".to_string(),
                        raw: self.console.tail(20),
                    }),
                }
            }
        }
    }

    /// Types `script` (framed by `nonce`'s markers) and parses what the
    /// console shows until its end marker; a timeout interrupts it.
    fn exchange(
        &self,
        state: &mut State,
        command: &str,
        script: &str,
        nonce: &str,
        started: Instant,
        deadline: Instant,
    ) -> Result<Parsed, ShellError> {
        let start_marker = format!("@qt-{nonce}-start@");
        let status_marker = format!("@qt-{nonce}-status-");
        let end_marker = format!("@qt-{nonce}-end@");
        self.console.skip_to_end();
        self.console.send(script.as_bytes())?;
        // Only the end marker is awaited: the start marker is looked up in
        // what came before it (a line typed by hand before the script may
        // have eaten the `printf` that prints it).
        let framed = match self.wait(&end_marker, deadline) {
            Ok(m) => m,
            Err(ConsoleError::Timeout { .. }) => {
                let recovered = self.interrupt(state);
                return Err(ShellError::Timeout {
                    command: command.to_string(),
                    timeout: deadline.saturating_duration_since(started),
                    recovered,
                    tail: self.console.tail(20),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let framed = match memchr::memmem::find(&framed, start_marker.as_bytes()) {
            Some(at) => {
                // With echo on, the typed script shows up before the start
                // marker: turn echo off again (after a respawned shell, or
                // `stty echo`) next time.
                if memchr::memmem::find(&framed[..at], b"'-start@'").is_some() {
                    state.synced = false;
                }
                &framed[at + start_marker.len()..]
            }
            None => &framed[..],
        };
        parse(command, framed, status_marker.as_bytes())
    }

    /// Waits for `marker` (or a kernel panic) until `deadline`; returns
    /// what came before it.
    fn wait(&self, marker: &str, deadline: Instant) -> Result<Vec<u8>, ConsoleError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let patterns = [Pattern::text(marker), Pattern::text(PANIC).fails()];
        self.console
            .with_timeout(left)
            .wait_for_any(&patterns)
            .map(|m| m.before)
    }

    /// Sends probes until the shell answers one; then, unless that was the
    /// only probe and the shell did not echo it, turns echo off with a last
    /// probe that is answered after any queued ones.
    pub(super) fn sync_locked(
        &self,
        state: &mut State,
        deadline: Instant,
    ) -> Result<(), ShellError> {
        self.sync_locked_unless(state, deadline, &mut || false)
            .map(|_| ())
    }

    /// [`sync_locked`](Self::sync_locked), which also asks `done` between
    /// probes whether to stop waiting for the console (false then);
    /// recorded in the timeline.
    pub(super) fn sync_locked_unless(
        &self,
        state: &mut State,
        deadline: Instant,
        done: &mut dyn FnMut() -> bool,
    ) -> Result<bool, ShellError> {
        let started = Instant::now();
        let synced = self.sync_untimed(state, deadline, done);
        if matches!(synced, Ok(true)) {
            self.console.mark_shell_answered();
        }
        self.timeline
            .step("shell.ready", started, || match &synced {
                Ok(true) => serde_json::Map::new(),
                Ok(false) => timeline::detail([("stopped", "the guest agent answered".into())]),
                Err(e) => {
                    timeline::detail([("error", timeline::excerpt(&e.to_string(), 200).into())])
                }
            });
        synced
    }

    /// Waits for the shell to answer a probe (see [`sync`](Shell::sync)).
    fn sync_untimed(
        &self,
        state: &mut State,
        deadline: Instant,
        done: &mut dyn FnMut() -> bool,
    ) -> Result<bool, ShellError> {
        let started = Instant::now();
        let not_ready = |tail| ShellError::NotReady {
            timeout: deadline.saturating_duration_since(started),
            tail,
        };
        let nonce = nonce();
        let marker = format!("@qt-{nonce}-ready@");
        let mut interval = Duration::from_millis(500);
        let mut probes = 0;
        let answered = loop {
            // Shell builtins only: cheap even while TCG translates the
            // guest's code afresh (right after a snapshot is restored).
            self.console.send(quick_probe(&nonce))?;
            probes += 1;
            let wait_until = deadline.min(Instant::now() + interval);
            match self.wait(&marker, wait_until) {
                Ok(before) => break before,
                Err(ConsoleError::Timeout { .. }) if done() => return Ok(false),
                Err(ConsoleError::Timeout { .. }) if Instant::now() < deadline => {}
                Err(ConsoleError::Timeout { tail, .. }) => return Err(not_ready(tail)),
                Err(e) => return Err(e.into()),
            }
            interval = (interval * 2).min(Duration::from_secs(2));
        };
        // The typed probe shows up before its answer only if echo is on.
        let echoed = memchr::memmem::find(&answered, b"'-ready@'").is_some();
        if probes == 1 && !echoed {
            state.synced = true;
            return Ok(true);
        }
        let nonce = self::nonce();
        self.console.send(probe(&nonce, false))?;
        match self.wait(&format!("@qt-{nonce}-ready@"), deadline) {
            Ok(_) => {}
            Err(ConsoleError::Timeout { tail, .. }) => return Err(not_ready(tail)),
            Err(e) => return Err(e.into()),
        }
        state.synced = true;
        Ok(true)
    }

    /// After a timeout: Ctrl-C (then Ctrl-C again, then Ctrl-\), each
    /// followed by a probe; whether the shell answered one.
    fn interrupt(&self, state: &mut State) -> bool {
        state.synced = false;
        for (key, wait) in INTERRUPTS {
            let nonce = nonce();
            if self.console.send(key).is_err() || self.console.send(probe(&nonce, true)).is_err() {
                return false;
            }
            match self.wait(&format!("@qt-{nonce}-ready@"), Instant::now() + wait) {
                Ok(_) => {
                    state.synced = true;
                    return true;
                }
                Err(ConsoleError::Timeout { .. }) => {}
                Err(_) => return false,
            }
        }
        false
    }
}
