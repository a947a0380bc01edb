//! Files to and from the guest: streamed by the agent when the shell uses
//! it; over the console, gzip and base64 typed in chunks one way, one
//! `cat` the other.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::time::Instant;

use base64::Engine as _;

use super::over_agent::Route;
use super::script::{nonce, quote};
use super::Shell;
use crate::error::ShellError;

/// How much of a (compressed) file one `copy_to_guest` command carries.
const COPY_CHUNK: usize = 32 * 1024;

impl Shell {
    /// Copies the host file `host` to `guest` (created or truncated, mode
    /// 0644 if new; parent directories must exist). Also checks the size
    /// in the guest. The whole copy has the shell's timeout.
    pub fn copy_to_guest(&self, host: impl AsRef<Path>, guest: &str) -> Result<(), ShellError> {
        let host = host.as_ref();
        let deadline = Instant::now() + self.timeout;
        let what = format!("{} -> guest:{guest}", host.display());
        let read_err = |source| ShellError::HostIo {
            action: "read",
            path: host.to_path_buf(),
            source,
        };
        if let Route::Agent(mut session) = self.route(deadline)? {
            let mut file = File::open(host).map_err(read_err)?;
            let len = file.metadata().map_err(read_err)?.len();
            return self.put_on_agent(&mut session, guest, &mut file, len, deadline, &what);
        }
        let data = std::fs::read(host).map_err(read_err)?;
        self.write_file_on_console(guest, &data, deadline)
            .map_err(|e| match e {
                ShellError::Copy { reason, .. } => ShellError::Copy { what, reason },
                other => other,
            })
    }

    /// Copies the guest file `guest` to the host file `host` (replaced
    /// only once the whole file arrived). The whole copy has the shell's
    /// timeout.
    pub fn copy_from_guest(&self, guest: &str, host: impl AsRef<Path>) -> Result<(), ShellError> {
        let host = host.as_ref();
        let deadline = Instant::now() + self.timeout;
        let what = format!("guest:{guest} -> {}", host.display());
        let write_err = |source| ShellError::HostIo {
            action: "write",
            path: host.to_path_buf(),
            source,
        };
        if let Route::Agent(mut session) = self.route(deadline)? {
            let dir = host
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let temp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
            let mut sink = BufWriter::with_capacity(1 << 20, temp);
            self.get_on_agent(&mut session, guest, &mut sink, deadline, &what)?;
            let temp = sink.into_inner().map_err(|e| write_err(e.into_error()))?;
            return temp
                .persist(host)
                .map(|_| ())
                .map_err(|e| write_err(e.error));
        }
        let data = self
            .read_file_on_console(guest, deadline)
            .map_err(|e| match e {
                ShellError::Copy { reason, .. } => ShellError::Copy { what, reason },
                other => other,
            })?;
        std::fs::write(host, data).map_err(write_err)
    }

    /// Writes `data` to the guest file `path` (created or truncated, mode
    /// 0644 if new), and checks its size there.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<(), ShellError> {
        let deadline = Instant::now() + self.timeout;
        match self.route(deadline)? {
            Route::Agent(mut session) => {
                let what = format!("{} bytes -> guest:{path}", data.len());
                let len = data.len() as u64;
                self.put_on_agent(&mut session, path, &mut &data[..], len, deadline, &what)
            }
            Route::Console => self.write_file_on_console(path, data, deadline),
        }
    }

    /// Reads the guest file `path`, byte-exact.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, ShellError> {
        let deadline = Instant::now() + self.timeout;
        match self.route(deadline)? {
            Route::Agent(mut session) => {
                let mut data = Vec::new();
                let what = format!("guest:{path}");
                self.get_on_agent(&mut session, path, &mut data, deadline, &what)?;
                Ok(data)
            }
            Route::Console => self.read_file_on_console(path, deadline),
        }
    }

    /// Writes `data` to the guest file `path` over the console:
    /// gzip-compressed on the host, typed as base64 into a temporary file
    /// in chunks of 32 KiB (one command each), unpacked with `gunzip`, and
    /// its size checked. The whole copy shares one deadline.
    fn write_file_on_console(
        &self,
        path: &str,
        data: &[u8],
        deadline: Instant,
    ) -> Result<(), ShellError> {
        let quoted = quote(path)?;
        let copy_err = |reason: String| ShellError::Copy {
            what: format!("{} bytes -> guest:{path}", data.len()),
            reason,
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data)
            .and_then(|()| gz.try_finish())
            .map_err(|e| copy_err(format!("gzip: {e}")))?;
        let packed = gz.get_ref();
        let temp = format!("/tmp/.qt-upload-{}", nonce());
        for (i, chunk) in packed.chunks(COPY_CHUNK).enumerate() {
            let redirect = if i == 0 { ">" } else { ">>" };
            let encoded = base64::engine::general_purpose::STANDARD.encode(chunk);
            let lines: Vec<&str> = encoded
                .as_bytes()
                .chunks(76)
                .map(|l| std::str::from_utf8(l).expect("base64 is ASCII"))
                .collect();
            // A base64 line's length is a multiple of 4, so no line can be
            // the 5-letter delimiter.
            let command = format!(
                "base64 -d {redirect}{temp} <<'QTEOF'\n{}\nQTEOF",
                lines.join("\n")
            );
            let out = self.run_on_console(&command, deadline)?;
            if out.status != 0 {
                return Err(copy_err(format!(
                    "exit status {}: {}",
                    out.status,
                    out.stderr.trim()
                )));
            }
        }
        let unpack = format!("gunzip -c {temp} >{quoted}; __qt_u=$?; rm -f {temp}; [ $__qt_u = 0 ] && wc -c <{quoted}");
        let out = self.run_on_console(&unpack, deadline)?;
        if out.status != 0 {
            return Err(copy_err(format!(
                "exit status {}: {}",
                out.status,
                out.stderr.trim()
            )));
        }
        let size = out.stdout.trim();
        if size != data.len().to_string() {
            return Err(copy_err(format!("the guest file has {size} bytes")));
        }
        Ok(())
    }

    /// Reads the guest file `path` over the console (one `cat`,
    /// byte-exact).
    fn read_file_on_console(&self, path: &str, deadline: Instant) -> Result<Vec<u8>, ShellError> {
        let out = self.run_on_console(&format!("cat -- {}", quote(path)?), deadline)?;
        if out.status != 0 {
            return Err(ShellError::Copy {
                what: format!("guest:{path}"),
                reason: format!("exit status {}: {}", out.status, out.stderr.trim()),
            });
        }
        Ok(out.raw)
    }
}
