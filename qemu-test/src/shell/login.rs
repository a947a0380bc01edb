//! Logging in on a serial console: for a guest that asks for a user and a
//! password (getty and login) before it gives a shell, such as an image a
//! test made itself or a distribution's.

use super::Shell;
use crate::error::ShellError;

impl Shell {
    /// Logs in on the console's `login:` prompt as `user` with
    /// `password`, then synchronizes with the shell that starts (see the
    /// [module docs](crate::shell)): from then on the shell's commands run
    /// as that user. Each wait takes the shell's timeout. A refused login
    /// is [`ShellError::Login`].
    ///
    /// ```no_run
    /// # fn demo(vm: &qemu_test::Vm) -> qemu_test::TestResult {
    /// let shell = vm.shell();
    /// shell.login("tester", "secret")?;
    /// assert_eq!(shell.succeed("id -un")?, "tester\n");
    /// # Ok(()) }
    /// ```
    pub fn login(&self, user: &str, password: &str) -> Result<(), ShellError> {
        let console = self.console().with_timeout(self.timeout());
        console.wait_for("login:")?;
        console.send_line(user)?;
        console.wait_for("assword:")?;
        let before = console.output_bytes().len();
        console.send_line(password)?;
        let synced = self.sync();
        let after = console.output_bytes();
        let refused = after
            .get(before..)
            .is_some_and(|said| String::from_utf8_lossy(said).contains("Login incorrect"));
        match (synced, refused) {
            (_, true) => Err(ShellError::Login {
                user: user.into(),
                tail: console.tail(10),
            }),
            (synced, false) => synced,
        }
    }
}
