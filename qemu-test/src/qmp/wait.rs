//! Waiting for QMP events, with the seed's (`QEMUMachine`) cache
//! semantics: events that arrive while waiting for something else are
//! kept, in order, and are returned by later waits and by
//! `get_qmp_event(s)`. What matches is [`event_match`]'s business.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::QmpClient;
use crate::deadline::DeadlineCap;
use crate::error::{EventError, QmpError};
use crate::events::event_match;

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
