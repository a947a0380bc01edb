//! Raw QMP clients, the baselines of P1 and P2 (and their diagnostics):
//! blocking `write_all` + `read_line` on a pipe or a Unix socket, no
//! threads, no transcript. Also qemu-test's own `QmpClient` on a raw
//! QEMU's socket, to tell the client's cost from the rest of `Machine`'s.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::QEMU_ARGS;

/// Kills and reaps a raw QEMU on every path out of a benchmark.
pub(super) struct Reaped(pub(super) Child);

impl Reaped {
    /// Waits for QEMU to exit; an unsuccessful exit is an error.
    pub(super) fn wait_success(&mut self) -> Result<(), String> {
        let exit = self
            .0
            .wait()
            .map_err(|e| format!("waiting for QEMU: {e}"))?;
        if exit.success() {
            Ok(())
        } else {
            Err(format!("raw QEMU exited with {exit}"))
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads one QMP message (a line of JSON).
pub(super) fn read_message(reader: &mut impl BufRead, line: &mut String) -> Result<Value, String> {
    line.clear();
    let n = reader
        .read_line(line)
        .map_err(|e| format!("reading from QEMU: {e}"))?;
    if n == 0 {
        return Err("QEMU closed the QMP connection".into());
    }
    serde_json::from_str(line).map_err(|e| format!("bad QMP message {line:?}: {e}"))
}

/// Sends `request` and reads until its reply, skipping events. `Ok(None)`
/// if QEMU closed the connection instead (as it may after `quit`).
pub(super) fn exchange(
    writer: &mut impl Write,
    reader: &mut impl BufRead,
    line: &mut String,
    request: &[u8],
) -> Result<Option<Value>, String> {
    writer
        .write_all(request)
        .map_err(|e| format!("writing to QEMU: {e}"))?;
    loop {
        match read_message(reader, line) {
            Ok(msg) if msg.get("return").is_some() => return Ok(Some(msg)),
            Ok(msg) if msg.get("error").is_some() => return Err(format!("QMP error: {msg}")),
            Ok(_event) => continue,
            Err(_) if request.starts_with(QUIT) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

pub(super) const CAPABILITIES: &[u8] = b"{\"execute\":\"qmp_capabilities\"}\n";
pub(super) const QUERY_STATUS: &[u8] = b"{\"execute\":\"query-status\"}\n";
pub(super) const QUIT: &[u8] = b"{\"execute\":\"quit\"}\n";

pub(super) fn check_status(status: &Value) -> Result<(), String> {
    match status["status"].as_str() {
        Some("prelaunch") => Ok(()),
        _ => Err(format!("unexpected query-status result {status}")),
    }
}

/// A QEMU whose monitor is a plain blocking Unix-socket client of ours.
pub(super) struct RawQmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    line: String,
    child: Reaped,
    _dir: tempfile::TempDir,
}

/// Starts a QEMU whose monitor connects to a Unix socket we listen on, and
/// returns our end of it, before the greeting is read.
pub(super) fn start_socket_qemu(
    qemu: &Path,
) -> Result<(UnixStream, Reaped, tempfile::TempDir), String> {
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let path = dir.path().join("qmp.sock");
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("listening on {}: {e}", path.display()))?;
    let chardev = format!(
        "socket,id=mon,path={}",
        path.to_string_lossy().replace(',', ",,")
    );
    let child = Command::new(qemu)
        .args(["-display", "none", "-vga", "none"])
        .args(QEMU_ARGS)
        .args(["-chardev", &chardev, "-mon", "chardev=mon,mode=control"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
    let child = Reaped(child);
    // QEMU connects to us; don't wait forever if it never does.
    let mut fds = [rustix::event::PollFd::new(
        &listener,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    let ready = rustix::event::poll(&mut fds, Some(&timeout)).map_err(|e| format!("poll: {e}"))?;
    if ready == 0 {
        return Err("QEMU did not connect to the QMP socket within 30 s".into());
    }
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    Ok((stream, child, dir))
}

impl RawQmp {
    pub(super) fn start(qemu: &Path) -> Result<RawQmp, String> {
        let (stream, child, dir) = start_socket_qemu(qemu)?;
        let writer = stream.try_clone().map_err(|e| format!("dup: {e}"))?;
        let mut raw = RawQmp {
            writer,
            reader: BufReader::new(stream),
            line: String::new(),
            child,
            _dir: dir,
        };
        let greeting = read_message(&mut raw.reader, &mut raw.line)?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        exchange(
            &mut raw.writer,
            &mut raw.reader,
            &mut raw.line,
            CAPABILITIES,
        )?;
        Ok(raw)
    }

    /// Sends `request` (a `query-status`) and reads its reply.
    pub(super) fn query_status(&mut self, request: &[u8]) -> Result<Value, String> {
        let reply = exchange(&mut self.writer, &mut self.reader, &mut self.line, request)?;
        Ok(reply.unwrap_or_default())
    }

    /// QEMU's pid.
    pub(super) fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub(super) fn quit(mut self) -> Result<(), String> {
        exchange(&mut self.writer, &mut self.reader, &mut self.line, QUIT)?;
        self.child.wait_success()
    }
}

/// qemu-test's QMP client alone (no transcript) on a raw QEMU's socket:
/// separates the client's cost from the rest of [`Machine`]. Diagnostic.
pub(super) struct ClientOnly {
    client: qemu_test::qmp::QmpClient,
    child: Reaped,
    _dir: tempfile::TempDir,
}

impl ClientOnly {
    pub(super) fn start(qemu: &Path) -> Result<ClientOnly, String> {
        let (stream, child, dir) = start_socket_qemu(qemu)?;
        let client = qemu_test::qmp::QmpClient::connect(
            qemu_test::qmp::Stream::Unix(stream),
            Duration::from_secs(30),
            None,
        )
        .map_err(|e| format!("QMP client: {e}"))?;
        Ok(ClientOnly {
            client,
            child,
            _dir: dir,
        })
    }

    pub(super) fn timed_query_status(&mut self) -> Result<Duration, String> {
        let t = Instant::now();
        let status = self
            .client
            .command("query-status", json!({}))
            .map_err(|e| format!("query-status: {e}"))?;
        let elapsed = t.elapsed();
        check_status(&status)?;
        Ok(elapsed)
    }

    /// QEMU's pid.
    pub(super) fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub(super) fn quit(mut self) -> Result<(), String> {
        // QEMU may close the socket before its reply arrives.
        let _ = self.client.qmp("quit", json!({}));
        self.child.wait_success()
    }
}
