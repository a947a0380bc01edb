//! QMP event matching ([`event_match`]) and waiting over a queue.
//!
//! Events follow the seed's (`QEMUMachine`) cache semantics: events that
//! arrive while waiting for something else are kept, in order, and are
//! returned by later waits and by `get_qmp_event(s)`.
//!
//! ```
//! use qemu_test::event_match;
//! use serde_json::json;
//!
//! let event = json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}});
//! assert!(event_match(&event, &json!({"data": {"guest": true}})));
//! assert!(!event_match(&event, &json!({"data": {"guest": false}})));
//! assert!(event_match(&event, &json!(null)));
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::deadline::DeadlineCap;
use crate::error::{EventError, QmpError};
use crate::qmp::QmpClient;

/// Whether `event` matches `pattern`, with the seed's semantics:
///
/// - a `null` pattern matches anything;
/// - an object pattern matches an object that has each of the pattern's
///   keys, with values that match recursively (extra keys in the event are
///   ignored);
/// - any other pattern matches a value equal to it.
///
/// Numbers compare by value (`1` matches `1.0`), as in Python.
///
/// Deliberate deviations, each an accident of the seed's duck typing: in
/// the seed a list or string pattern is iterated like a dict (Python's
/// `for key in match`), so `[0]` "matches" lists by their elements' indices
/// and an empty list or string matches anything. Here lists and strings
/// compare by equality. And `true` never matches `1` (Python's `True == 1`).
/// The tests check agreement with a model of the seed everywhere else.
pub fn event_match(event: &Value, pattern: &Value) -> bool {
    match pattern {
        Value::Null => true,
        // The seed iterates zero keys and returns True, whatever the event.
        Value::Object(pattern) if pattern.is_empty() => true,
        Value::Object(pattern) => match event {
            Value::Object(event) => pattern
                .iter()
                .all(|(key, want)| event.get(key).is_some_and(|got| event_match(got, want))),
            _ => false,
        },
        other => json_eq(other, event),
    }
}

/// Equality as the seed's Python sees decoded JSON: numbers compare by
/// value (`1 == 1.0`), containers element by element. Unlike Python,
/// `true` is not equal to `1`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// How long to wait for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    /// Do not wait: return what is queued (the seed's `wait=False`).
    #[default]
    No,
    /// Wait with no deadline (the seed's `wait=True`); still bounded by
    /// the test's deadline under the runner.
    Forever,
    /// Wait up to this long (the seed's `wait=<float>`).
    For(Duration),
}

impl From<bool> for Wait {
    fn from(wait: bool) -> Self {
        if wait {
            Wait::Forever
        } else {
            Wait::No
        }
    }
}

impl From<Duration> for Wait {
    fn from(d: Duration) -> Self {
        Wait::For(d)
    }
}

impl Wait {
    pub(crate) fn is_no_wait(self) -> bool {
        self == Wait::No
    }

    /// The deadline for this wait, capped; `None` for `No` and for an
    /// uncapped `Forever`.
    pub(crate) fn deadline(self, cap: &DeadlineCap) -> Option<Instant> {
        match self {
            Wait::No => None,
            Wait::Forever => cap.get(),
            Wait::For(d) => Some(cap.after(d).0),
        }
    }
}

/// The events seen but not yet returned, in arrival order (the seed's
/// `_events`).
#[derive(Debug, Default)]
pub(crate) struct EventCache {
    events: VecDeque<Value>,
}

impl EventCache {
    pub(crate) fn pop(&mut self) -> Option<Value> {
        self.events.pop_front()
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Value> + '_ {
        self.events.drain(..)
    }

    pub(crate) fn clear(&mut self) {
        self.events.clear();
    }

    pub(crate) fn extend(&mut self, events: impl IntoIterator<Item = Value>) {
        self.events.extend(events);
    }

    /// Waits for the first event that matches one of `wanted` (name and
    /// pattern): cached events first, then new ones; non-matching new
    /// events are cached.
    pub(crate) fn wait_any(
        &mut self,
        qmp: Option<&QmpClient>,
        wanted: &[(&str, Option<&Value>)],
        timeout: Duration,
    ) -> Result<Value, EventError> {
        let matches = |event: &Value| {
            wanted.iter().any(|(name, pattern)| {
                event.get("event").and_then(Value::as_str) == Some(*name)
                    && pattern.is_none_or(|p| event_match(event, p))
            })
        };
        if let Some(pos) = self.events.iter().position(matches) {
            return Ok(self.events.remove(pos).expect("position is in range"));
        }
        let describe = || describe_wanted(wanted);
        let Some(qmp) = qmp else {
            return Err(EventError::Connection {
                wanted: describe(),
                source: QmpError::Closed {
                    reason: Some("the machine is not running".into()),
                },
            });
        };
        let (deadline, effective) = qmp.cap().after(timeout);
        let mut first = true;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Even a zero timeout looks once at what QEMU has sent.
            if left.is_zero() && !first {
                return Err(EventError::Timeout {
                    wanted: describe(),
                    timeout: effective,
                });
            }
            first = false;
            match qmp.pull_event(Wait::For(left)) {
                Ok(Some(event)) if matches(&event) => return Ok(event),
                Ok(Some(event)) => self.events.push_back(event),
                Ok(None) if qmp.is_connected() => {
                    return Err(EventError::Timeout {
                        wanted: describe(),
                        timeout: effective,
                    })
                }
                Ok(None) => {
                    return Err(EventError::Connection {
                        wanted: describe(),
                        source: QmpError::Closed {
                            reason: Some("QEMU closed the QMP connection".into()),
                        },
                    })
                }
                Err(source) => {
                    return Err(EventError::Connection {
                        wanted: describe(),
                        source,
                    })
                }
            }
        }
    }
}

fn describe_wanted(wanted: &[(&str, Option<&Value>)]) -> String {
    wanted
        .iter()
        .map(|(name, pattern)| match pattern {
            Some(p) => format!("{name} matching {p}"),
            None => name.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The cases of the seed's semantics, one by one.
    #[test]
    fn null_pattern_matches_anything() {
        for event in [
            json!(null),
            json!(1),
            json!("x"),
            json!([1]),
            json!({"event": "X"}),
        ] {
            assert!(event_match(&event, &Value::Null), "{event}");
        }
    }

    #[test]
    fn object_pattern_needs_each_key_recursively() {
        let ev = json!({"event": "BLOCK_JOB_COMPLETED", "data": {"device": "d0", "len": 5, "offset": 5}});
        assert!(event_match(&ev, &json!({})));
        assert!(event_match(&ev, &json!({"event": "BLOCK_JOB_COMPLETED"})));
        assert!(event_match(&ev, &json!({"data": {"device": "d0"}})));
        assert!(event_match(
            &ev,
            &json!({"data": {"device": "d0", "len": 5}})
        ));
        assert!(!event_match(&ev, &json!({"data": {"device": "d1"}})));
        assert!(
            !event_match(&ev, &json!({"data": {"missing": null}})),
            "missing key fails even for null"
        );
        assert!(
            event_match(&ev, &json!({"data": {"device": null}})),
            "null value matches any present value"
        );
        assert!(!event_match(&ev, &json!({"timestamp": {}})));
    }

    #[test]
    fn scalars_compare_equal() {
        assert!(event_match(&json!(5), &json!(5)));
        assert!(event_match(&json!(5.0), &json!(5)));
        assert!(event_match(&json!({"a": [1.0]}), &json!({"a": [1]})));
        assert!(
            !event_match(&json!(1), &json!(true)),
            "deviation: True == 1 in Python"
        );
        assert!(!event_match(&json!(5), &json!(6)));
        assert!(!event_match(&json!("5"), &json!(5)));
        assert!(event_match(&json!(true), &json!(true)));
        assert!(!event_match(&json!({"a": 1}), &json!(1)));
    }

    #[test]
    fn object_pattern_against_non_object() {
        assert!(!event_match(&json!(1), &json!({"a": 1})));
        assert!(!event_match(&json!([1]), &json!({"a": 1})));
        assert!(
            !event_match(&json!("a"), &json!({"a": 1})),
            "the seed's `key in str` then fails"
        );
        // An empty object pattern iterates zero keys: True for any event.
        assert!(event_match(&json!({}), &json!({})));
        assert!(event_match(&json!(7), &json!({})));
    }

    #[test]
    fn lists_and_strings_compare_equal() {
        assert!(event_match(&json!([1, 2]), &json!([1, 2])));
        assert!(!event_match(&json!([1, 2, 3]), &json!([1, 2])));
        assert!(event_match(&json!("abc"), &json!("abc")));
        assert!(!event_match(&json!("abcd"), &json!("abc")));
    }

    #[test]
    fn wait_converts_from_bool_and_duration() {
        assert_eq!(Wait::from(false), Wait::No);
        assert_eq!(Wait::from(true), Wait::Forever);
        assert_eq!(
            Wait::from(Duration::from_secs(1)),
            Wait::For(Duration::from_secs(1))
        );
    }
}
