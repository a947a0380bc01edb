//! QMP framing: one JSON object per line, bounded in size.

use std::io::{BufRead, Read};

use serde_json::Value;

use crate::error::QmpError;

/// The largest QMP message accepted, in bytes (16 MiB). QEMU's own replies
/// are far smaller (the largest, `query-qmp-schema`, is about 200 KiB); a
/// peer that sends more is treated as broken, so memory stays bounded.
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// How much of offending input an error shows.
const EXCERPT: usize = 200;

/// What a stream yielded next.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A JSON object.
    Message(serde_json::Map<String, Value>),
    /// The peer closed the connection cleanly between messages.
    Eof,
}

/// Reads the next message from `reader`, skipping blank lines.
pub(crate) fn read_message(reader: &mut impl BufRead, max: usize) -> Result<Frame, QmpError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .by_ref()
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| QmpError::Io {
                context: "reading from the QMP socket".into(),
                source,
            })?;
        if n == 0 {
            return Ok(Frame::Eof);
        }
        if line.len() > max {
            return Err(QmpError::TooLong { max });
        }
        if line.last() != Some(&b'\n') {
            return Err(malformed(
                "connection closed in the middle of a message",
                &line,
            ));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return parse_message(&line).map(Frame::Message);
    }
}

/// Parses one line as a QMP message (a JSON object).
pub(crate) fn parse_message(line: &[u8]) -> Result<serde_json::Map<String, Value>, QmpError> {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(map)) => Ok(map),
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
    use std::io::Cursor;

    fn read_all(input: &[u8], max: usize) -> Vec<Result<String, String>> {
        let mut r = Cursor::new(input.to_vec());
        let mut out = Vec::new();
        loop {
            match read_message(&mut r, max) {
                Ok(Frame::Message(m)) => out.push(Ok(Value::Object(m).to_string())),
                Ok(Frame::Eof) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn reads_lines_and_skips_blanks() {
        let got = read_all(b"{\"a\":1}\r\n\r\n  \n{\"b\":[1,2]}\n", 100);
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
        let got = read_all(b"{\"a\":1}\n{\"ret", 100);
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
        let got = read_all(&big, 20);
        assert_eq!(
            got,
            [Err(
                "QMP message longer than the maximum of 20 bytes".to_string()
            )]
        );
    }

    #[test]
    fn non_objects_and_garbage_are_errors() {
        assert!(read_all(b"[1]\n", 100)[0]
            .as_ref()
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(read_all(b"\xff\xfe\n", 100)[0]
            .as_ref()
            .unwrap_err()
            .contains("invalid JSON"));
    }
}
