//! A test's timeline: each step it took, when it started and how long it
//! ran, so that a slow test shows where its time went.
//!
//! The runner gives every test's machine a [`Timeline`]; the machine hands
//! it to its QMP client and its console, and those record their steps:
//! the launch and its phases, each QMP command (its name and result: the
//! transcript, `qmp.jsonl`, has the messages), each event wait, each
//! console wait and what it matched, each shell command with its status.
//! The runner adds its own steps (waiting for the host budget, the body,
//! the evidence, the teardown, the verdict) and writes `timeline.jsonl`
//! into a kept artifact dir: one JSON object per line,
//!
//! ```text
//! {"t":0.0,"step":"start","test":"boot::echoes","unix":1796491363.655}
//! {"t":0.000412,"step":"queue","ms":0.051}
//! {"t":0.000913,"step":"launch","ms":38.2}
//! {"t":0.04,"step":"console","ms":97.1,"wait":"\"login:\"","matched":"login:"}
//! {"t":0.14,"step":"qmp","ms":0.21,"command":"query-status"}
//! ```
//!
//! `t` is the step's start in seconds since the test started (`unix` says
//! when that was, to line the timeline up with the transcript's time
//! stamps), `ms` its duration, `vm` the sibling it belongs to (none: the
//! test's own VM). A machine without a timeline (the default outside the
//! runner) records nothing and pays one branch per step. Steps are kept
//! in memory until the file is written; past [`MAX_STEPS`] they are only
//! counted.

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_core::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The most steps one timeline keeps; later ones are counted, not kept.
pub(crate) const MAX_STEPS: usize = 100_000;

/// Where a machine records its steps (nowhere, by default). Cheap to
/// clone; clones share the steps.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    inner: Option<Arc<Inner>>,
    /// The sibling machine this handle records for (`None`: the test's
    /// own).
    vm: Option<Arc<str>>,
}

#[derive(Debug)]
struct Inner {
    origin: Instant,
    /// `origin` as Unix time, in seconds.
    unix: f64,
    steps: Mutex<Steps>,
}

#[derive(Debug, Default)]
struct Steps {
    list: Vec<Step>,
    dropped: u64,
}

/// One step.
#[derive(Debug)]
struct Step {
    at: Duration,
    took: Option<Duration>,
    step: &'static str,
    vm: Option<Arc<str>>,
    detail: Map<String, Value>,
}

impl Timeline {
    /// A timeline that starts now.
    pub(crate) fn start() -> Timeline {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Timeline {
            inner: Some(Arc::new(Inner {
                origin: Instant::now(),
                unix,
                steps: Mutex::default(),
            })),
            vm: None,
        }
    }

    /// A handle on the same timeline whose steps belong to the sibling
    /// machine `name`.
    pub(crate) fn for_vm(&self, name: &str) -> Timeline {
        Timeline {
            inner: self.inner.clone(),
            vm: Some(name.into()),
        }
    }

    /// Records `step`, which started at `started` and ends now, with the
    /// fields `detail` makes (called only when recording).
    pub(crate) fn step(
        &self,
        step: &'static str,
        started: Instant,
        detail: impl FnOnce() -> Map<String, Value>,
    ) {
        if let Some(inner) = &self.inner {
            let took = started.elapsed();
            self.push(inner, step, started, Some(took), detail());
        }
    }

    /// Records `step`, a moment rather than a span, happening now.
    pub(crate) fn mark(&self, step: &'static str, detail: impl FnOnce() -> Map<String, Value>) {
        if let Some(inner) = &self.inner {
            self.push(inner, step, Instant::now(), None, detail());
        }
    }

    fn push(
        &self,
        inner: &Inner,
        step: &'static str,
        started: Instant,
        took: Option<Duration>,
        detail: Map<String, Value>,
    ) {
        let mut steps = inner.lock();
        if steps.list.len() >= MAX_STEPS {
            steps.dropped += 1;
            return;
        }
        steps.list.push(Step {
            at: started.saturating_duration_since(inner.origin),
            took,
            step,
            vm: self.vm.clone(),
            detail,
        });
    }

    /// Writes the timeline to `path` as JSON lines, in the order the steps
    /// started; the first line says which test and when it started.
    pub(crate) fn write(&self, path: &Path, test: &str) -> io::Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let mut steps = std::mem::take(&mut *inner.lock());
        // Steps are recorded when they end: a wait that outlasted the
        // steps inside it (the body) is recorded after them.
        steps.list.sort_by_key(|s| s.at);
        let mut out = io::BufWriter::new(std::fs::File::create(path)?);
        let head = detail([("test", test.into()), ("unix", round(inner.unix, 3).into())]);
        line(&mut out, &Line::at_start("start", &head))?;
        for step in &steps.list {
            line(&mut out, &step.line())?;
        }
        if steps.dropped > 0 {
            let note = detail([("count", steps.dropped.into())]);
            line(&mut out, &Line::at_start("dropped", &note))?;
        }
        out.flush()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Steps> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One line of `timeline.jsonl`: the common fields first, in this order,
/// then the step's details.
struct Line<'a> {
    t: f64,
    step: &'a str,
    ms: Option<f64>,
    vm: Option<&'a str>,
    detail: &'a Map<String, Value>,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("t", &self.t)?;
        map.serialize_entry("step", self.step)?;
        if let Some(ms) = self.ms {
            map.serialize_entry("ms", &ms)?;
        }
        if let Some(vm) = self.vm {
            map.serialize_entry("vm", vm)?;
        }
        for (key, value) in self.detail {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'a> Line<'a> {
    /// A line without a time of its own.
    fn at_start(step: &'a str, detail: &'a Map<String, Value>) -> Line<'a> {
        Line {
            t: 0.0,
            step,
            ms: None,
            vm: None,
            detail,
        }
    }
}

impl Step {
    fn line(&self) -> Line<'_> {
        Line {
            // 0.1 ms: a step's start is for finding it; `ms` is exact.
            t: round(self.at.as_secs_f64(), 4),
            step: self.step,
            ms: self.took.map(|d| round(d.as_secs_f64() * 1000.0, 3)),
            vm: self.vm.as_deref(),
            detail: &self.detail,
        }
    }
}

fn line(out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// `x` rounded to `places` decimals.
fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// A JSON object from `(key, value)` pairs: the detail of a step.
pub(crate) fn detail<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `text` cut to `max` characters (with `…`), for a step's detail.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_off_timeline_records_nothing() {
        let off = Timeline::default();
        off.mark("x", || panic!("no detail is made when off"));
        let dir = tempfile::tempdir().unwrap();
        off.write(&dir.path().join("t.jsonl"), "t").unwrap();
        assert!(!dir.path().join("t.jsonl").exists());
    }

    #[test]
    fn steps_are_written_in_start_order_as_json_lines() {
        let timeline = Timeline::start();
        let outer = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        let inner = Instant::now();
        timeline.step("qmp", inner, || detail([("command", json!("stop"))]));
        timeline
            .for_vm("dest")
            .mark("crash", || detail([("text", json!("Oops"))]));
        timeline.step("body", outer, Map::new);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline.jsonl");
        timeline.write(&path, "m::t").unwrap();
        let lines: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["step"], "start");
        assert_eq!(lines[0]["test"], "m::t");
        assert!(lines[0]["unix"].as_f64().unwrap() > 1.6e9);
        let steps: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["body", "qmp", "crash"]);
        assert_eq!(lines[2]["command"], "stop");
        assert!(lines[2]["ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(lines[3]["vm"], "dest");
        assert!(lines[3].get("ms").is_none());
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("héllo", 2), "hé…");
        assert_eq!(excerpt("hé", 2), "hé");
    }
}
