//! Reports of a run, read from each test's [`Record`](super::outcome::Record):
//! they format the typed outcome and never touch a VM.
//!
//! | module | report |
//! | --- | --- |
//! | `summary` | what libtest's own output leaves out, on stderr: why each test was skipped |
//! | `junit` | the JUnit XML file of one test binary (`QEMU_TEST_JUNIT=DIR`) |

pub(crate) mod junit;
pub(crate) mod summary;
