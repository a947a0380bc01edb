//! Reports of a run, read from each test's [`Record`](super::outcome::Record):
//! they format the typed outcome and never touch a VM.
//!
//! | module | report |
//! | --- | --- |
//! | `summary` | what libtest's own output leaves out, on stderr: why each test was skipped |
//! | `junit` | the JUnit XML file of one test binary (`QEMU_TEST_JUNIT=DIR`) |
//! | `html` | one self-contained HTML page per test binary run, and their index |
//! | `pages` | where the HTML pages go, and how nextest's processes share them |

pub(crate) mod html;
pub(crate) mod junit;
pub(crate) mod pages;
pub(crate) mod summary;
