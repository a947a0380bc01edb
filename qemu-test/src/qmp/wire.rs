//! QMP framing: one JSON object per line, bounded in size.
//!
//! [`Framer`] cuts the bytes read from the socket into messages. It never
//! reads by itself: whoever holds it feeds it with [`Framer::fill`] (one
//! non-blocking read) and takes the complete messages with
//! [`Framer::next_message`], so a reader can stop between any two reads
//! and another carry on where it left off.

use std::io;
use std::ops::Range;

use serde_json::Value;

use crate::error::QmpError;

/// The largest QMP message accepted, in bytes (16 MiB). QEMU's own replies
/// are far smaller (the largest, `query-qmp-schema`, is about 200 KiB); a
/// peer that sends more is treated as broken, so memory stays bounded.
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// How much of offending input an error shows.
const EXCERPT: usize = 200;

/// The framer's usual buffer size, and the least room it reads into.
const CHUNK: usize = 64 * 1024;

/// What one [`Framer::fill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Some bytes arrived.
    Read,
    /// Nothing to read yet.
    WouldBlock,
    /// The peer closed the connection cleanly between messages.
    Eof,
}

/// One message cut from the stream.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    /// The parsed JSON object.
    pub(crate) value: Value,
    /// The bytes it was parsed from, without surrounding white space.
    pub(crate) text: &'a [u8],
}

/// Buffers what was read and cuts it into lines of at most `max` bytes.
#[derive(Debug)]
pub(crate) struct Framer {
    /// Always initialized; `start..end` holds bytes not yet taken.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How many bytes from `start` are known to hold no newline.
    scanned: usize,
    max: usize,
}

impl Framer {
    /// A framer for messages of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Framer {
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            scanned: 0,
            max,
        }
    }

    /// Takes the next complete message out of the buffer, skipping blank
    /// lines; `None` until more bytes arrive.
    pub(crate) fn next_message(&mut self) -> Result<Option<Message<'_>>, QmpError> {
        let line = loop {
            let Some(line) = self.next_line()? else {
                return Ok(None);
            };
            if !self.buf[line.clone()].iter().all(u8::is_ascii_whitespace) {
                break line;
            }
        };
        let text = self.buf[line].trim_ascii();
        let value = parse_message(text)?;
        Ok(Some(Message { value, text }))
    }

    /// Whether a complete line is buffered (so reading can wait).
    pub(crate) fn has_line(&self) -> bool {
        memchr::memchr(b'\n', &self.buf[self.start + self.scanned..self.end]).is_some()
    }

    fn next_line(&mut self) -> Result<Option<Range<usize>>, QmpError> {
        let from = self.start + self.scanned;
        match memchr::memchr(b'\n', &self.buf[from..self.end]) {
            Some(i) => {
                let line = self.start..from + i + 1;
                if line.len() > self.max {
                    return Err(QmpError::TooLong { max: self.max });
                }
                self.start = line.end;
                self.scanned = 0;
                Ok(Some(line))
            }
            None => {
                self.scanned = self.end - self.start;
                if self.scanned > self.max {
                    return Err(QmpError::TooLong { max: self.max });
                }
                Ok(None)
            }
        }
    }

    /// Reads once with `read` (which must not block: it reports
    /// `WouldBlock` instead) into the buffer. Take every buffered message
    /// first: a line is checked against the maximum when taken, so
    /// memory stays bounded only if lines are taken between reads.
    pub(crate) fn fill(
        &mut self,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> Result<Fill, QmpError> {
        self.make_room();
        let n = loop {
            match read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fill::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(QmpError::Io {
                        context: "reading from the QMP socket".into(),
                        source,
                    })
                }
            }
        };
        if n > 0 {
            self.end += n;
            return Ok(Fill::Read);
        }
        let rest = &self.buf[self.start..self.end];
        if rest.iter().all(u8::is_ascii_whitespace) {
            Ok(Fill::Eof)
        } else {
            Err(malformed(
                "connection closed in the middle of a message",
                rest,
            ))
        }
    }

    /// Makes at least [`CHUNK`] bytes of room after `end`: back to the
    /// start of the buffer when it is empty, the pending bytes moved to
    /// the front, or a bigger buffer for a long message (and back to the
    /// usual size after one).
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
            if self.buf.len() > CHUNK {
                self.buf = vec![0; CHUNK];
            }
        }
        if self.buf.len() - self.end >= CHUNK {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < CHUNK {
            let len = (self.buf.len() * 2).max(self.end + CHUNK);
            self.buf.resize(len, 0);
        }
    }
}

/// Appends the command `{"execute": cmd, "arguments": args, "id": id}` to
/// `out` (without a newline), leaving out `arguments` and `id` when `None`.
/// Written straight from the parts, so a command costs no intermediate
/// `Value`.
pub(crate) fn encode_command(
    out: &mut Vec<u8>,
    cmd: &str,
    args: Option<&Value>,
    id: Option<&str>,
) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"execute\":");
    serde_json::to_writer(&mut *out, cmd)?;
    if let Some(args) = args {
        out.extend_from_slice(b",\"arguments\":");
        serde_json::to_writer(&mut *out, args)?;
    }
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        serde_json::to_writer(&mut *out, id)?;
    }
    out.push(b'}');
    Ok(())
}

/// Parses one line as a QMP message (a JSON object).
fn parse_message(line: &[u8]) -> Result<Value, QmpError> {
    // Checked as a whole first (quick for a short line), so the parser
    // need not check each string on its own.
    let text = std::str::from_utf8(line)
        .map_err(|e| malformed(&format!("invalid JSON (not UTF-8: {e})"), line))?;
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(malformed("not a JSON object", line)),
        Err(e) => Err(malformed(&format!("invalid JSON ({e})"), line)),
    }
}

fn malformed(reason: &str, bytes: &[u8]) -> QmpError {
    let cut = &bytes[..bytes.len().min(EXCERPT)];
    let mut excerpt = String::from_utf8_lossy(cut).trim_end().to_string();
    if bytes.len() > EXCERPT {
        excerpt.push('…');
    }
    QmpError::Malformed {
        reason: reason.to_string(),
        excerpt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` to a framer `step` bytes per read, with a `WouldBlock`
    /// between reads, and collects the messages (as JSON text) until the
    /// end or the first error.
    fn read_all(input: &[u8], max: usize, step: usize) -> Vec<Result<String, String>> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        let mut at = 0;
        let mut blocked = false;
        loop {
            loop {
                match framer.next_message() {
                    Ok(Some(m)) => {
                        assert_eq!(serde_json::from_slice::<Value>(m.text).unwrap(), m.value);
                        out.push(Ok(m.value.to_string()));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        return out;
                    }
                }
            }
            let fill = framer.fill(|buf| {
                if std::mem::take(&mut blocked) {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = step.min(input.len() - at).min(buf.len());
                buf[..n].copy_from_slice(&input[at..at + n]);
                at += n;
                blocked = true;
                Ok(n)
            });
            match fill {
                Ok(Fill::Eof) => return out,
                Ok(_) => {}
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    /// `read_all` with several read sizes, which must all agree.
    fn read_all_ways(input: &[u8], max: usize) -> Vec<Result<String, String>> {
        let whole = read_all(input, max, usize::MAX);
        for step in [1, 2, 7, 100] {
            assert_eq!(
                read_all(input, max, step),
                whole,
                "reading {step} at a time"
            );
        }
        whole
    }

    #[test]
    fn reads_lines_and_skips_blanks() {
        let got = read_all_ways(b"{\"a\":1}\r\n\r\n  \n{\"b\":[1,2]}\n", 100);
        assert_eq!(
            got,
            [
                Ok(r#"{"a":1}"#.to_string()),
                Ok(r#"{"b":[1,2]}"#.to_string())
            ]
        );
    }

    #[test]
    fn truncated_message_is_an_error() {
        let got = read_all_ways(b"{\"a\":1}\n{\"ret", 100);
        assert_eq!(got.len(), 2);
        assert!(
            got[1].as_ref().unwrap_err().contains("middle of a message"),
            "{got:?}"
        );
    }

    #[test]
    fn oversized_message_is_an_error() {
        let mut big = vec![b' '; 50];
        big.extend_from_slice(b"{}\n");
        let got = read_all_ways(&big, 20);
        assert_eq!(
            got,
            [Err(
                "QMP message longer than the maximum of 20 bytes".to_string()
            )]
        );
        // A line of exactly the maximum is fine.
        let mut line = vec![b' '; 17];
        line.extend_from_slice(b"{}\n");
        assert_eq!(read_all_ways(&line, 20), [Ok("{}".to_string())]);
    }

    #[test]
    fn long_messages_grow_the_buffer_and_short_ones_shrink_it() {
        let long = format!("{{\"s\":\"{}\"}}\n", "x".repeat(3 * CHUNK));
        let input = format!("{long}{{\"a\":1}}\n{long}");
        let got = read_all(input.as_bytes(), 4 * CHUNK, 5000);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(Result::is_ok));
        let mut framer = Framer::new(4 * CHUNK);
        let mut src = input.as_bytes();
        while framer
            .fill(|buf| std::io::Read::read(&mut src, buf))
            .unwrap()
            != Fill::Eof
        {
            while framer.next_message().unwrap().is_some() {}
        }
        assert_eq!(framer.buf.len(), CHUNK, "back to the usual size");
    }

    #[test]
    fn non_objects_and_garbage_are_errors() {
        assert!(read_all_ways(b"[1]\n", 100)[0]
            .as_ref()
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(read_all_ways(b"\xff\xfe\n", 100)[0]
            .as_ref()
            .unwrap_err()
            .contains("invalid JSON"));
    }

    #[test]
    fn commands_encode_as_json() {
        let encode = |cmd, args: Option<Value>, id| {
            let mut out = Vec::new();
            encode_command(&mut out, cmd, args.as_ref(), id).unwrap();
            serde_json::from_slice::<Value>(&out).unwrap()
        };
        assert_eq!(
            encode("query-status", None, None),
            serde_json::json!({"execute": "query-status"})
        );
        assert_eq!(
            encode(
                "a\"b",
                Some(serde_json::json!({"x": [1, "\n"]})),
                Some("qt-7")
            ),
            serde_json::json!({"execute": "a\"b", "arguments": {"x": [1, "\n"]}, "id": "qt-7"})
        );
    }
}
