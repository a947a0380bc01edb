//! Files to and from the guest over the shell: gzip and base64 typed in
//! chunks one way, one `cat` the other.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use base64::Engine as _;

use super::script::{nonce, quote};
use super::Shell;
use crate::error::ShellError;

/// How much of a (compressed) file one `copy_to_guest` command carries.
const COPY_CHUNK: usize = 32 * 1024;

impl Shell {
    /// Copies the host file `host` to `guest` (created or truncated; parent
    /// directories must exist). Also checks the size in the guest.
    pub fn copy_to_guest(&self, host: impl AsRef<Path>, guest: &str) -> Result<(), ShellError> {
        let host = host.as_ref();
        let data = std::fs::read(host).map_err(|source| ShellError::HostIo {
            action: "read",
            path: host.to_path_buf(),
            source,
        })?;
        self.write_file(guest, &data).map_err(|e| match e {
            ShellError::Copy { reason, .. } => ShellError::Copy {
                what: format!("{} -> guest:{guest}", host.display()),
                reason,
            },
            other => other,
        })
    }

    /// Copies the guest file `guest` to the host file `host`.
    pub fn copy_from_guest(&self, guest: &str, host: impl AsRef<Path>) -> Result<(), ShellError> {
        let host = host.as_ref();
        let data = self.read_file(guest).map_err(|e| match e {
            ShellError::Copy { reason, .. } => ShellError::Copy {
                what: format!("guest:{guest} -> {}", host.display()),
                reason,
            },
            other => other,
        })?;
        std::fs::write(host, data).map_err(|source| ShellError::HostIo {
            action: "write",
            path: host.to_path_buf(),
            source,
        })
    }

    /// Writes `data` to the guest file `path` (created or truncated):
    /// gzip-compressed on the host, typed as base64 into a temporary file
    /// in chunks of 32 KiB (one command each), unpacked with `gunzip`, and
    /// its size checked. The whole copy shares one deadline.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<(), ShellError> {
        let deadline = Instant::now() + self.timeout;
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
            let out = self.run_until(&command, deadline)?;
            if out.status != 0 {
                return Err(copy_err(format!(
                    "exit status {}: {}",
                    out.status,
                    out.stderr.trim()
                )));
            }
        }
        let unpack = format!("gunzip -c {temp} >{quoted}; __qt_u=$?; rm -f {temp}; [ $__qt_u = 0 ] && wc -c <{quoted}");
        let out = self.run_until(&unpack, deadline)?;
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

    /// Reads the guest file `path` (one `cat`, byte-exact).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, ShellError> {
        let out = self.run(&format!("cat -- {}", quote(path)?))?;
        if out.status != 0 {
            return Err(ShellError::Copy {
                what: format!("guest:{path}"),
                reason: format!("exit status {}: {}", out.status, out.stderr.trim()),
            });
        }
        Ok(out.raw)
    }
}
