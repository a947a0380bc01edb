//! A shared upper bound on every wait of one machine.
//!
//! The runner gives each test one deadline; console waits, QMP calls and
//! event waits of that test's machine never wait past it, whatever timeout
//! they were given.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A cloneable, settable deadline cap.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeadlineCap(Arc<Mutex<Option<Instant>>>);

impl DeadlineCap {
    pub(crate) fn set(&self, deadline: Option<Instant>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }

    pub(crate) fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The deadline for a wait of `timeout` starting now, and the timeout
    /// actually in force (shortened by the cap).
    pub(crate) fn after(&self, timeout: Duration) -> (Instant, Duration) {
        let now = Instant::now();
        let wanted = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(86400 * 365));
        match self.get() {
            Some(cap) if cap < wanted => (cap, cap.saturating_duration_since(now)),
            _ => (wanted, timeout),
        }
    }
}
