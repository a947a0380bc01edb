//! # qemu-test
//!
//! Integration tests that run inside QEMU virtual machines. One attribute
//! turns a function into a VM test; `cargo test` boots a real VM for it,
//! drives it over QMP and the serial console, and on failure leaves
//! everything needed to understand it on disk.
//!
//! ```no_run
//! use qemu_test::prelude::*;
//!
//! #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64)]
//! fn guest_echoes(vm: &mut Vm) -> TestResult {
//!     vm.console().wait_for("login:")?;
//!     vm.console().exec_and_wait("hello", "you said: hello")?;
//!     let status = vm.command("query-status", json!({}))?;
//!     assert_eq!(status["running"], true);
//!     Ok(())
//! }
//!
//! qemu_test::main!();
//! ```
//!
//! The file is a test target with `harness = false`, and
//! [`main!`](crate::main) makes its `main`; the [guide] shows
//! the whole set-up.
//!
//! # Where to read on
//!
//! The [guide] is the reference for users, one chapter per topic:
//!
//! - [`guide::attribute`]: the test function and every key of
//!   [`#[qemu_test]`](qemu_test);
//! - [`guide::runner`]: names, deadlines, artifacts, failure messages,
//!   scheduling, skips;
//! - [`guide::configuration`]: the `QEMU_TEST_*` variables;
//! - [`guide::snapshots`]: booted snapshots;
//! - [`guide::linux`]: the built-in guests, the Linux guests and
//!   [`Shell`];
//! - [`guide::machine`]: [`Machine`] without the attribute;
//! - [`guide::ci`]: nextest, JUnit, CI.
//!
//! The modules, from the bottom up:
//!
//! | module | what it is for |
//! | --- | --- |
//! | [`qmp`] | the QMP client: commands, replies, events and waiting for them |
//! | [`events`] | matching QMP events against patterns ([`event_match`]) |
//! | [`console`] | the guest serial console: draining, logging, pattern waits, input |
//! | [`machine`] | one QEMU process: launch, QMP, console, shutdown; mirrors QEMU's Python `QEMUMachine` |
//! | [`shell`] | commands in a Linux guest over the console ([`Shell`]) |
//! | [`snapshot`] | booted snapshots: the store, the key, launching from one |
//! | [`spec`] | [`VmSpec`], what the attribute's arguments become |
//! | [`guest`] | the built-in test guests |
//! | [`runner`] | the test runner behind [`main!`](crate::main): [`Vm`], [`Skip`], [`Sibling`] |
//! | [`error`] | the error types, one enum per failure domain |
//!
//! Test files need only the [`prelude`].
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `regex` | off | regular-expression console patterns: `Pattern::regex` and `Console::wait_for_regex` (the `regex` crate, the largest part of a cold build that most suites do without; text patterns need no feature) |

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cache;
pub mod channel;
pub mod console;
mod deadline;
pub mod error;
pub mod events;
pub mod guest;
pub mod guide;
pub mod machine;
pub mod net;
mod os;
mod qemu_opts;
pub mod qmp;
pub mod requires;
pub mod runner;
pub mod shell;
pub mod snapshot;
pub mod spec;
mod timeline;

pub use channel::DataChannel;
pub use console::{Console, Crash, Pattern};
pub use error::{
    AssetError, BoxError, ConsoleError, Error, EventError, GuestError, NetError, QmpError, Result,
    SetupError, ShellError, SiblingError, SnapshotError, TestResult,
};
pub use events::event_match;
pub use machine::{Machine, MachineBuilder, MonitorAddr, Wait};
pub use qemu_test_macros::qemu_test;
pub use runner::{Sibling, Skip, Vm};
pub use serde_json::{json, Value};
pub use shell::Shell;
pub use spec::VmSpec;

/// Everything a test file needs: `use qemu_test::prelude::*;`.
pub mod prelude {
    pub use crate::console::Pattern;
    pub use crate::error::{Error, TestResult};
    pub use crate::guest;
    pub use crate::machine::Machine;
    pub use crate::runner::{Skip, Vm};
    pub use qemu_test_macros::qemu_test;
    pub use serde_json::{json, Value};
    pub use std::time::Duration;
}

/// Expands to the `main` of a test binary (`harness = false`) that runs
/// every `#[qemu_test]` in it through the runner, naming the binary by its
/// package and target (see [`runner::run_suite`]).
///
/// ```no_run
/// qemu_test::main!();
/// ```
#[macro_export]
macro_rules! main {
    () => {
        fn main() -> ::std::process::ExitCode {
            // Expanded in the user's crate: these are its package and target.
            $crate::runner::run_suite(
                ::core::env!("CARGO_PKG_NAME"),
                match ::core::option_env!("CARGO_BIN_NAME") {
                    ::core::option::Option::Some(bin) => bin,
                    ::core::option::Option::None => ::core::env!("CARGO_CRATE_NAME"),
                },
            )
        }
    };
}

/// Implementation details used by the code `#[qemu_test]` expands to. Not
/// public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runner::outcome::BodyResult;
    pub use crate::runner::registry::{Body, IntoOutcome, Setup, ShouldFail, TestDef, TESTS};
    pub use linkme;
}
