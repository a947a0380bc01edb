//! The QMP transcript: every message both ways, time-stamped, one JSON
//! object per line (`qmp.jsonl`).
//!
//! Each line is `{"time": <unix seconds>, "dir": "send"|"recv", "msg": ...}`;
//! bytes that were not a QMP message are logged as `"raw"` instead of
//! `"msg"`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{json, Value};

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

    pub(crate) fn message(&self, dir: Dir, msg: &Value) {
        self.write(json!({ "time": now(), "dir": dir.as_str(), "msg": msg }));
    }

    pub(crate) fn raw(&self, dir: Dir, what: &str) {
        self.write(json!({ "time": now(), "dir": dir.as_str(), "raw": what }));
    }

    fn write(&self, entry: Value) {
        let mut line = entry.to_string();
        line.push('\n');
        // One write per line, so the file is complete up to the last
        // message even if the process dies. A failing transcript must not
        // fail the test: the message itself went through.
        let _ = self
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(line.as_bytes());
    }
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
