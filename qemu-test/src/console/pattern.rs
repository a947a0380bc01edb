//! What a console wait looks for ([`Pattern`]: text or, with the `regex`
//! feature, a regular expression; optionally a failure) and what it found
//! ([`Match`]).

use std::fmt;

#[cfg(feature = "regex")]
use regex::bytes::Regex;

#[cfg(feature = "regex")]
use crate::error::ConsoleError;

/// What a console wait looks for.
#[derive(Clone)]
pub struct Pattern {
    kind: Kind,
    pub(super) failure: bool,
}

#[derive(Clone)]
enum Kind {
    Text(Vec<u8>),
    #[cfg(feature = "regex")]
    Regex(Regex),
}

impl Pattern {
    /// Literal text (bytes).
    pub fn text(text: impl AsRef<[u8]>) -> Self {
        Pattern {
            kind: Kind::Text(text.as_ref().to_vec()),
            failure: false,
        }
    }

    /// A regular expression over the output bytes (`regex::bytes` syntax).
    ///
    /// Needs the `regex` feature (`qemu-test = { ..., features = ["regex"] }`).
    #[cfg(feature = "regex")]
    #[cfg_attr(docsrs, doc(cfg(feature = "regex")))]
    pub fn regex(re: &str) -> Result<Self, ConsoleError> {
        Ok(Pattern {
            kind: Kind::Regex(Regex::new(re)?),
            failure: false,
        })
    }

    /// Marks this pattern as a failure: if it appears first, the wait fails
    /// at once with [`ConsoleError::Failure`](crate::ConsoleError::Failure) (like QEMU functional tests'
    /// `failure_message`).
    pub fn fails(mut self) -> Self {
        self.failure = true;
        self
    }

    /// Whether this is a failure pattern.
    pub fn is_failure(&self) -> bool {
        self.failure
    }

    /// The first match in `hay` at or after `from`: (start, end).
    pub(super) fn find(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        match &self.kind {
            Kind::Text(t) if t.is_empty() => Some((from, from)),
            Kind::Text(t) => {
                memchr::memmem::find(&hay[from..], t).map(|i| (from + i, from + i + t.len()))
            }
            #[cfg(feature = "regex")]
            Kind::Regex(re) => re.find_at(hay, from).map(|m| (m.start(), m.end())),
        }
    }

    /// For text, how far back from the end of the already searched output
    /// a match may still start (a match can straddle old and new bytes).
    pub(super) fn overlap(&self) -> Option<usize> {
        match &self.kind {
            Kind::Text(t) => Some(t.len().saturating_sub(1)),
            #[cfg(feature = "regex")]
            Kind::Regex(_) => None,
        }
    }
}

impl From<&str> for Pattern {
    fn from(s: &str) -> Self {
        Pattern::text(s)
    }
}
impl From<String> for Pattern {
    fn from(s: String) -> Self {
        Pattern::text(s)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Text(t) => write!(f, "{:?}", String::from_utf8_lossy(t)),
            #[cfg(feature = "regex")]
            Kind::Regex(re) => write!(f, "regex /{}/", re.as_str()),
        }
    }
}

/// A successful console wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Which pattern matched (its index in the list given).
    pub index: usize,
    /// The matched bytes.
    pub matched: Vec<u8>,
    /// Everything printed between the previous cursor and the match.
    pub before: Vec<u8>,
}

impl Match {
    /// The matched text, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.matched).into_owned()
    }
}
