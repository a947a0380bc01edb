//! Reading what the console showed for one script: stderr, the exit
//! status, and stdout (as it is, or base64 checked against its size).

use base64::Engine as _;

use super::Output;
use crate::error::ShellError;

/// What the console showed for one script.
#[derive(Debug)]
pub(super) enum Parsed {
    /// The command's result.
    Done(Output),
    /// stdout was sent as it is and did not arrive intact (a kernel message
    /// came in between, or the terminal changed it): the shell must send it
    /// again, as base64.
    Resend {
        /// The command's exit status.
        status: i32,
        /// What the console showed before the status.
        stderr: String,
    },
}

/// Splits the framed console text (between the start and end markers) into
/// stderr, status and decoded stdout.
pub(super) fn parse(
    command: &str,
    framed: &[u8],
    status_marker: &[u8],
) -> Result<Parsed, ShellError> {
    let garbled = |reason: &str| ShellError::Garbled {
        command: command.to_string(),
        reason: reason.to_string(),
        raw: String::from_utf8_lossy(framed).into_owned(),
    };
    let at =
        memchr::memmem::find(framed, status_marker).ok_or_else(|| garbled("no status marker"))?;
    let stderr = String::from_utf8_lossy(&framed[..at]).replace("\r\n", "\n");
    let stderr = stderr.strip_prefix('\n').unwrap_or(&stderr).to_string();
    let after = &framed[at + status_marker.len()..];
    if let Some(header) = raw_header(after) {
        let status: i32 = digits(header.status).ok_or_else(|| garbled("malformed exit status"))?;
        let size: usize = digits(header.size).ok_or_else(|| garbled("malformed output size"))?;
        // The terminal turns each `\n` into `\r\n`; the shell sends no
        // `\r` of its own this way, and a kernel message or a changed
        // terminal setting shows in the size.
        let raw: Vec<u8> = after[header.end..]
            .iter()
            .copied()
            .filter(|&b| b != b'\r')
            .collect();
        if raw.len() != size {
            return Ok(Parsed::Resend { status, stderr });
        }
        return Ok(Parsed::Done(Output::new(status, raw, stderr.into_bytes())));
    }
    // `wc` prints the size after `printf` printed the status: a kernel
    // message may come in between.
    let rest = without_kernel_messages(after);
    let close = memchr::memchr(b'\n', &rest).ok_or_else(|| garbled("unterminated status line"))?;
    let fields =
        std::str::from_utf8(&rest[..close]).map_err(|_| garbled("status line is not text"))?;
    let (status, size) = fields
        .split_once('-')
        .ok_or_else(|| garbled("malformed status marker"))?;
    let status: i32 = status
        .trim()
        .parse()
        .map_err(|_| garbled("malformed exit status"))?;
    let size: usize = size
        .trim()
        .parse()
        .map_err(|_| garbled("no output size (can the guest write /tmp?)"))?;
    let text: Vec<u8> = rest[close + 1..]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| garbled("invalid base64 in stdout"))?;
    if raw.len() != size {
        return Err(garbled(&format!(
            "stdout decoded to {} bytes, the guest counted {size}",
            raw.len()
        )));
    }
    Ok(Parsed::Done(Output::new(status, raw, stderr.into_bytes())))
}

/// A number from ASCII digits (`None` if too big).
fn digits<T: std::str::FromStr>(digits: &[u8]) -> Option<T> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The status field and a stdout sent as it is: `S-rLEN:`, where a kernel
/// message may come between the two `printf`s (`S-[ 1.234] ...\nrLEN:`).
struct RawHeader<'a> {
    /// The exit status's digits.
    status: &'a [u8],
    /// The size's digits.
    size: &'a [u8],
    /// Where the text starts.
    end: usize,
}

/// Reads a [`RawHeader`] at the start of `text`.
fn raw_header(text: &[u8]) -> Option<RawHeader<'_>> {
    let status = leading_digits(text);
    let mut at = status.len();
    if status.is_empty() || text.get(at) != Some(&b'-') {
        return None;
    }
    at += 1;
    while let Some(KernelMessage { len, whole: true }) = kernel_message(&text[at..]) {
        at += len;
    }
    let rest = text[at..].strip_prefix(b"r")?;
    let size = leading_digits(rest);
    if size.is_empty() || rest.get(size.len()) != Some(&b':') {
        return None;
    }
    Some(RawHeader {
        status,
        size,
        end: at + 1 + size.len() + 1,
    })
}

/// A kernel message at the start of some text: `[   12.345678] text`.
struct KernelMessage {
    /// Its length, with the `\n` that ends it if there is one.
    len: usize,
    /// Whether it ends with a `\n` (rather than with the text).
    whole: bool,
}

/// The kernel message `text` starts with: `[`, spaces, digits, `.`, digits,
/// `]`, then the rest of the line.
fn kernel_message(text: &[u8]) -> Option<KernelMessage> {
    let rest = text.strip_prefix(b"[")?;
    let rest = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    let seconds = leading_digits(rest);
    let rest = rest[seconds.len()..].strip_prefix(b".")?;
    let fraction = leading_digits(rest);
    let rest = rest[fraction.len()..].strip_prefix(b"]")?;
    if seconds.is_empty() || fraction.is_empty() {
        return None;
    }
    let stamp = text.len() - rest.len();
    Some(match memchr::memchr(b'\n', rest) {
        Some(newline) => KernelMessage {
            len: stamp + newline + 1,
            whole: true,
        },
        None => KernelMessage {
            len: text.len(),
            whole: false,
        },
    })
}

/// `text` without the kernel messages (`[   12.345678] text`, each with
/// its `\n`) that may interleave with base64 text.
fn without_kernel_messages(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    while let Some(bracket) = memchr::memchr(b'[', &text[at..]).map(|i| at + i) {
        out.extend_from_slice(&text[at..bracket]);
        match kernel_message(&text[bracket..]) {
            Some(message) => at = bracket + message.len,
            None => {
                out.push(b'[');
                at = bracket + 1;
            }
        }
    }
    out.extend_from_slice(&text[at..]);
    out
}

/// The ASCII digits `text` starts with.
fn leading_digits(text: &[u8]) -> &[u8] {
    &text[..text.iter().take_while(|b| b.is_ascii_digit()).count()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse`, for text that must parse to an output.
    fn parsed(framed: &[u8]) -> Result<Output, ShellError> {
        match parse("c", framed, b"@qt-n-status-")? {
            Parsed::Done(out) => Ok(out),
            other => panic!("expected an output, got {other:?}"),
        }
    }

    fn framed(stderr: &str, status: i32, stdout: &[u8], noise: Option<(usize, &str)>) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(stdout);
        let mut body: String = b64
            .as_bytes()
            .chunks(76)
            .map(|l| format!("{}\r\n", std::str::from_utf8(l).unwrap()))
            .collect();
        if let Some((at, msg)) = noise {
            body.insert_str(at.min(body.len()), msg);
        }
        format!(
            "\r\n{stderr}@qt-n-status-{status}-{}\r\n{body}",
            stdout.len()
        )
        .into_bytes()
    }

    #[test]
    fn parses_status_stdout_and_stderr() {
        let out = parsed(&framed("oops\r\n", 3, b"hello\n", None)).unwrap();
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (3, "hello\n", "oops\n")
        );
        let empty = parsed(&framed("", 0, b"", None)).unwrap();
        assert_eq!((empty.status, empty.stdout_bytes()), (0, &b""[..]));
    }

    #[test]
    fn binary_output_is_exact_and_kernel_messages_are_dropped() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        let noisy = framed(
            "",
            0,
            &data,
            Some((
                1000,
                "[   12.345678] virtio_blk virtio2: [vda] 2048 512-byte logical blocks\r\n",
            )),
        );
        let out = parsed(&noisy).unwrap();
        assert_eq!(out.stdout_bytes(), &data[..]);
    }

    #[test]
    fn the_size_may_be_padded_or_follow_a_kernel_message() {
        // BSD-style `wc` pads; the kernel may print between `printf` and `wc`.
        let f = b"\r\n@qt-n-status-0-[    3.141592] random: crng init done\r\n      3\r\naGkK\r\n";
        let out = parsed(f).unwrap();
        assert_eq!((out.status, out.stdout.as_str()), (0, "hi\n"));
    }

    #[test]
    fn a_short_or_corrupt_stdout_is_garbled() {
        let mut f = framed("", 0, b"0123456789", None);
        f.extend_from_slice(b"QUJD\r\n");
        assert!(matches!(parsed(&f), Err(ShellError::Garbled { .. })));
        let f = b"\r\nsh: can't create /tmp/.qt-n: Read-only file system\r\n@qt-n-status-1-\r\n";
        let err = parsed(f).unwrap_err();
        assert!(err.to_string().contains("/tmp"), "{err}");
        assert!(matches!(
            parsed(b"nothing"),
            Err(ShellError::Garbled { .. })
        ));
    }

    #[test]
    fn short_text_comes_as_it_is() {
        // The terminal's `\r\n`s are undone; marker look-alikes, tabs and
        // a missing final newline are kept.
        let f = b"\r\noops\r\n@qt-n-status-0-r15:a\tb\r\n@qt-m-end@x";
        let out = parsed(f).unwrap();
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (0, "a\tb\n@qt-m-end@x", "oops\n")
        );
        // A kernel message between the status and the text.
        let f = b"@qt-n-status-3-[    3.141592] random: crng init done\r\nr3:hi\n";
        let out = parsed(f).unwrap();
        assert_eq!((out.status, out.stdout.as_str()), (3, "hi\n"));
    }

    #[test]
    fn kernel_messages_are_recognized_and_removed() {
        let text = b"QUJD[    3.141592] random: crng init done\r\nREVG\r\n[1.5] x";
        assert_eq!(without_kernel_messages(text), b"QUJDREVG\r\n");
        // Only `[`, spaces, digits, `.`, digits, `]` start one.
        for kept in [
            &b"[x] a\n"[..],
            b"[ 1] a\n",
            b"[.5] a\n",
            b"[1.] a\n",
            b"[ 1.5 ] a\n",
        ] {
            assert_eq!(without_kernel_messages(kept), kept);
        }
        assert_eq!(without_kernel_messages(b"[[ 1.2] a\nb"), b"[b");
        let whole = kernel_message(b"[ 12.5] hi\nrest").unwrap();
        assert_eq!((whole.len, whole.whole), (11, true));
        let cut = kernel_message(b"[ 12.5] hi").unwrap();
        assert_eq!((cut.len, cut.whole), (10, false));
    }

    #[test]
    fn raw_headers_are_read() {
        let header = raw_header(b"12-r345:text").unwrap();
        assert_eq!(
            (header.status, header.size, header.end),
            (&b"12"[..], &b"345"[..], 8)
        );
        let header = raw_header(b"0-[ 1.2] a\n[ 3.4] b\nr5:hello").unwrap();
        assert_eq!((header.status, header.size), (&b"0"[..], &b"5"[..]));
        assert_eq!(&b"0-[ 1.2] a\n[ 3.4] b\nr5:hello"[header.end..], b"hello");
        for bad in [
            &b"-r5:"[..],
            b"1r5:",
            b"1-r:",
            b"1-r5",
            b"1-[ 1.2] a r5:",
            b"x1-r5:",
            b"1-5:",
        ] {
            assert!(
                raw_header(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn short_text_that_did_not_arrive_intact_is_sent_again() {
        // A kernel message inside the text, or a terminal that expands
        // tabs: the size differs, the text is asked for again as base64.
        for f in [
            &b"oops\r\n@qt-n-status-4-r3:h[    3.141592] random: crng init done\r\ni\n"[..],
            b"@qt-n-status-0-r3:a       b",
        ] {
            match parse("c", f, b"@qt-n-status-").unwrap() {
                Parsed::Resend { status, stderr } => {
                    assert!([0, 4].contains(&status));
                    assert!(stderr.is_empty() || stderr == "oops\n", "{stderr:?}");
                }
                other => panic!("expected a resend, got {other:?}"),
            }
        }
    }
}
