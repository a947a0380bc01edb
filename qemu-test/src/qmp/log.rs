//! The QMP transcript: every message both ways, time-stamped, one JSON
//! object per line (`qmp.jsonl`).
//!
//! Each line is `{"time": <unix seconds>, "dir": "send"|"recv", "msg": ...}`;
//! bytes that were not a QMP message are logged as `"raw"` instead of
//! `"msg"`. A message is logged as the very bytes that crossed the wire
//! (they are valid JSON: the client produced or parsed them), so logging
//! costs no second serialization.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

/// Direction of a logged message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dir {
    Send,
    Recv,
}

/// An append-only transcript file.
#[derive(Debug)]
pub(crate) struct Transcript {
    file: Mutex<File>,
}

impl Transcript {
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Transcript {
            file: Mutex::new(file),
        })
    }

    /// Logs one QMP message, given as the JSON text of an object.
    pub(crate) fn message(&self, dir: Dir, json: &[u8]) {
        self.append_after(&entry(dir, json), || ());
    }

    /// Logs bytes that were not a QMP message (or an out-of-band action).
    pub(crate) fn raw(&self, dir: Dir, what: &str) {
        self.append_after(&raw_entry(dir, what), || ());
    }

    /// Appends `lines` (made by [`entry`] or [`raw_entry`]), running
    /// `first` beforehand while holding the file: whatever `first` sets in
    /// motion cannot log anything ahead of `lines`. Incoming messages are
    /// handed over this way, so waiters are woken before the disk write
    /// yet a command sent in answer still comes after them.
    pub(crate) fn append_after<R>(&self, lines: &[u8], first: impl FnOnce() -> R) -> R {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let out = first();
        // One write, so the file is complete up to the last line even if
        // the process dies. A failing transcript must not fail the test:
        // the message itself went through.
        let _ = file.write_all(lines);
        out
    }
}

/// The transcript line for one QMP message (`json`, the text of an
/// object), time-stamped now.
pub(crate) fn entry(dir: Dir, json: &[u8]) -> Vec<u8> {
    let mut line = prefix(dir).into_bytes();
    line.reserve(json.len() + 9);
    line.extend_from_slice(b"\"msg\":");
    line.extend_from_slice(json);
    line.extend_from_slice(b"}\n");
    line
}

/// The transcript line for something that was not a QMP message,
/// time-stamped now.
pub(crate) fn raw_entry(dir: Dir, what: &str) -> Vec<u8> {
    let mut line = prefix(dir).into_bytes();
    line.extend_from_slice(b"\"raw\":");
    // A string always serializes.
    let _ = serde_json::to_writer(&mut line, what);
    line.extend_from_slice(b"}\n");
    line
}

/// `{"time":<now>,"dir":"<dir>",` (the line up to its last field).
fn prefix(dir: Dir) -> String {
    // `Display` of an `f64` never uses an exponent, so this is JSON.
    format!("{{\"time\":{},\"dir\":\"{}\",", now(), dir.as_str())
}

impl Dir {
    fn as_str(self) -> &'static str {
        match self {
            Dir::Send => "send",
            Dir::Recv => "recv",
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn lines_are_json_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let t = Transcript::create(&path).unwrap();
        t.message(Dir::Send, br#"{"execute":"query-status"}"#);
        t.message(Dir::Recv, br#"{"return": {"running": false}}"#);
        t.raw(Dir::Recv, "bad \"bytes\"\n");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["dir"], "send");
        assert_eq!(lines[0]["msg"]["execute"], "query-status");
        assert_eq!(lines[1]["dir"], "recv");
        assert_eq!(lines[1]["msg"]["return"]["running"], false);
        assert_eq!(lines[2]["raw"], "bad \"bytes\"\n");
        assert!(lines.iter().all(|l| l["time"].as_f64().unwrap() > 1.0e9));
    }
}
