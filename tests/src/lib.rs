//! Shared helpers for the framework's own integration tests (`tests/*.rs`).

pub mod http;

use std::path::Path;

/// Whether process `pid` still exists (and is not a zombie we own).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state is the field after the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some(Some('Z')) | Some(Some('X')))
        }
        Err(_) => false,
    }
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

/// A `qemu-system-x86_64 -S -nodefaults` machine: QMP only, no guest code
/// runs; the cheapest real QEMU.
pub fn stopped_x86() -> qemu_test::Machine {
    qemu_test::Machine::builder("qemu-system-x86_64")
        .args(["-S", "-nodefaults"])
        .build()
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a real pid");
    rustix::process::kill_process(pid, signal).expect("signalling a process of ours");
}

/// A `-name` value with everything a shell or a careless quoter could
/// mangle: spaces, both quotes, `$(…)`, backticks, a redirection, glob and
/// brace characters, `#`, `;`, `&`, `|`, a backslash, a tab, a newline,
/// non-ASCII (including U+00A0, which old `shlex` left unquoted) and
/// option-like words. Its commas are doubled, QEMU's own escaping in an
/// option value: QEMU reports it as [`WEIRD_NAME`].
///
/// The command substitutions would create `pwned-*` files in the current
/// directory if a shell ever ran them.
///
/// `tests/security_fixture.rs` has the same text in an attribute (which
/// takes literals only) and checks that the two agree.
pub const WEIRD_NAME_ARG: &str = "sp ace 'sq' \"dq\" $(touch pwned-dollar) `touch pwned-backtick` >pwned-redirect ü ☃ \u{a0} {a,,b} *? ~ ! # ; & | \\ tab\there nl\nline ,,comma -x --y=z";

/// [`WEIRD_NAME_ARG`] as QEMU parses it (`query-name`): commas undoubled.
pub fn weird_name() -> String {
    WEIRD_NAME_ARG.replace(",,", ",")
}

/// Polls `ready` every 20 ms until it is true; panics after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A QMP client good enough for a test: one reply at a time, events
/// skipped. For QEMUs the framework did not start (`repro.sh`'s).
pub struct Qmp(std::io::BufReader<std::os::unix::net::UnixStream>);

impl Qmp {
    /// Connects to the QMP server on `path` and negotiates capabilities.
    ///
    /// Retries for up to 20 s while the socket is missing or refuses: QEMU
    /// binds the path a moment before it listens on it.
    pub fn connect(path: &Path) -> Qmp {
        use std::io::ErrorKind::{ConnectionRefused, NotFound};
        let started = std::time::Instant::now();
        let stream = loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(e)
                    if matches!(e.kind(), ConnectionRefused | NotFound)
                        && started.elapsed() < std::time::Duration::from_secs(20) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("connecting to {}: {e}", path.display()),
            }
        };
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut qmp = Qmp(std::io::BufReader::new(stream));
        assert!(qmp.read()["QMP"].is_object());
        qmp.execute("qmp_capabilities");
        qmp
    }

    fn read(&mut self) -> serde_json::Value {
        use std::io::BufRead;
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// Runs `cmd` (no arguments) and returns the whole reply.
    pub fn execute(&mut self, cmd: &str) -> serde_json::Value {
        self.try_execute(cmd)
            .unwrap_or_else(|e| panic!("QMP {cmd}: {e}"))
    }

    /// [`execute`](Self::execute), with a failure to send or to read the
    /// reply as an error: for a test that then says what became of QEMU.
    pub fn try_execute(&mut self, cmd: &str) -> std::io::Result<serde_json::Value> {
        use std::io::{BufRead, Write};
        // One write: QEMU acts on a command at its closing brace, so a
        // `quit` written in two pieces (what `writeln!` does) can find
        // QEMU gone before its newline, and fail with EPIPE.
        let line = format!("{}\n", serde_json::json!({ "execute": cmd }));
        self.0.get_mut().write_all(line.as_bytes())?;
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let msg: serde_json::Value = serde_json::from_str(&line)?;
            if msg.get("event").is_none() {
                return Ok(msg);
            }
        }
    }
}

/// `cmd` as the suite runs a `qemu_test::main!()` fixture: no inherited
/// `QEMU_TEST_*` settings (except `QEMU_TEST_CACHE_DIR`) or `NEXTEST*`, no
/// `RUST_BACKTRACE`, artifacts under `root` (`QEMU_TEST_ARTIFACTS`), then
/// `envs`.
pub fn isolated(
    mut cmd: std::process::Command,
    envs: &[(&str, &str)],
    root: &Path,
) -> std::process::Command {
    // Nor nextest's marker, should this suite itself run under nextest:
    // the fixture is not one of its test processes.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| {
            (n.starts_with("QEMU_TEST_") && n != "QEMU_TEST_CACHE_DIR") || n.starts_with("NEXTEST")
        }) {
            cmd.env_remove(name);
        }
    }
    cmd.env("QEMU_TEST_ARTIFACTS", root)
        .env_remove("RUST_BACKTRACE")
        .envs(envs.iter().copied());
    cmd
}

/// The failure section libtest prints for `test` in `stdout` (a
/// `qemu_test::main!()` binary's output); panics if there is none.
pub fn failure_section<'a>(stdout: &'a str, test: &str) -> &'a str {
    let header = format!("---- {test} ----\n");
    let start = stdout
        .find(&header)
        .unwrap_or_else(|| panic!("no failure section for {test}:\n{stdout}"))
        + header.len();
    let rest = &stdout[start..];
    let end = rest
        .find("\n---- ")
        .or_else(|| rest.find("\n\nfailures:"))
        .unwrap_or(rest.len());
    rest[..end].trim_end()
}

/// One `<testcase>` of a JUnit report, as the tests read it.
#[derive(Debug, Clone, Default)]
pub struct JunitCase {
    pub name: String,
    pub classname: String,
    /// `time`, in seconds.
    pub time: f64,
    /// `<property name value>`, in order.
    pub properties: Vec<(String, String)>,
    /// `<failure>`: its `message`, `type` and text.
    pub failure: Option<(String, String, String)>,
    /// `<skipped message>`.
    pub skipped: Option<String>,
    pub system_out: Option<String>,
    pub system_err: Option<String>,
}

impl JunitCase {
    /// The value of property `name`.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A JUnit report's one `<testsuite>`: its attributes, and its cases.
#[derive(Debug, Clone, Default)]
pub struct JunitSuite {
    pub name: String,
    pub tests: usize,
    pub failures: usize,
    pub skipped: usize,
    pub cases: Vec<JunitCase>,
}

impl JunitSuite {
    /// Parses the report in `xml` (panics, showing it, if it is not one).
    pub fn parse(xml: &str) -> JunitSuite {
        let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap_or_else(|| panic!("no <testsuite>:\n{xml}"));
        let number = |name| suite.attribute(name).unwrap().parse().unwrap();
        let cases = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .map(|case| {
                let child = |tag| case.children().find(|n| n.has_tag_name(tag));
                let text = |tag| child(tag).map(|n| n.text().unwrap_or("").to_string());
                JunitCase {
                    name: case.attribute("name").unwrap().into(),
                    classname: case.attribute("classname").unwrap_or("").into(),
                    time: case.attribute("time").unwrap().parse().unwrap(),
                    properties: child("properties")
                        .into_iter()
                        .flat_map(|p| p.children().filter(|n| n.has_tag_name("property")))
                        .map(|p| {
                            let attr = |a| p.attribute(a).unwrap().to_string();
                            (attr("name"), attr("value"))
                        })
                        .collect(),
                    failure: child("failure").map(|f| {
                        let attr = |a| f.attribute(a).unwrap_or("").to_string();
                        (attr("message"), attr("type"), f.text().unwrap_or("").into())
                    }),
                    skipped: child("skipped")
                        .map(|s| s.attribute("message").unwrap_or("").to_string()),
                    system_out: text("system-out"),
                    system_err: text("system-err"),
                }
            })
            .collect();
        JunitSuite {
            name: suite.attribute("name").unwrap().into(),
            tests: number("tests"),
            failures: number("failures"),
            skipped: number("skipped"),
            cases,
        }
    }

    /// The case named `name` (panics if there is none).
    pub fn case(&self, name: &str) -> &JunitCase {
        self.cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no test case {name} in {self:#?}"))
    }
}

/// The workspace's root directory.
pub fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The cargo target dir the running test binary is in
/// (`<target>/debug/deps/<exe>`).
pub fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace().join("target"))
}

/// A crate outside the workspace, as a user would have it, in a temp dir:
/// `manifest` (a `[package]` and the rest; `{qemu_test}` stands for the
/// path of the qemu-test crate) followed by the workspace's `[profile.*]`
/// sections, `src/lib.rs` empty, `files` (path, text), and the
/// workspace's `Cargo.lock`, so that nothing is downloaded and the
/// dependencies already built in [`target_dir`] are reused (see
/// [`scratch_cargo`]).
pub fn scratch_crate(manifest: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let profiles = text
        .find("\n[profile.")
        .map(|at| text[at..].to_string())
        .unwrap_or_default();
    let qemu_test = format!("{:?}", root.join("qemu-test").to_str().unwrap());
    let manifest = manifest.replace("{qemu_test}", &qemu_test) + &profiles;
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    for (path, text) in [("src/lib.rs", "")].iter().chain(files) {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    dir
}

/// `cargo ARGS` in a [`scratch_crate`], offline, with the workspace's
/// target dir and no inherited `QEMU_TEST_*` or nextest settings.
pub fn scratch_cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    scratch_cargo_env(dir, args, &[])
}

/// [`scratch_cargo`] with `envs` set.
pub fn scratch_cargo_env(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir());
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("QEMU_TEST_") || n.starts_with("NEXTEST"))
        {
            cmd.env_remove(name);
        }
    }
    cmd.envs(envs.iter().copied()).output().unwrap()
}

/// An HTML element as the tests read a page: its name, attributes,
/// children and text.
#[derive(Debug, Default, Clone)]
pub struct Element {
    pub name: String,
    pub attributes: std::collections::BTreeMap<String, String>,
    pub children: Vec<Element>,
    /// The text directly inside it.
    pub text: String,
}

impl Element {
    /// Every element below this one (depth first), this one first.
    pub fn all(&self) -> Vec<&Element> {
        let mut out = vec![self];
        for child in &self.children {
            out.extend(child.all());
        }
        out
    }

    /// The elements named `name` below this one.
    pub fn find(&self, name: &str) -> Vec<&Element> {
        self.all().into_iter().filter(|e| e.name == name).collect()
    }

    /// The element whose `id` is `id`.
    pub fn by_id(&self, id: &str) -> Option<&Element> {
        self.all()
            .into_iter()
            .find(|e| e.attributes.get("id").map(String::as_str) == Some(id))
    }

    /// All the text inside it.
    pub fn all_text(&self) -> String {
        let mut text = self.text.clone();
        for child in &self.children {
            text.push_str(&child.all_text());
        }
        text
    }
}

/// Parses an HTML page with a WHATWG tokenizer (html5gum) into elements;
/// panics on a tokenizer error, a missing doctype, or a tag closed out of
/// order.
pub fn parse_html(page: &str) -> Element {
    use html5gum::{Token, Tokenizer};
    const VOID: &[&str] = &["meta", "img", "br", "hr", "link", "input"];
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).expect("UTF-8");
    let mut stack = vec![Element::default()];
    let mut doctype = false;
    for token in Tokenizer::new(page) {
        match token.expect("a string reader cannot fail") {
            Token::Doctype(d) => doctype = text(&d.name) == "html",
            Token::StartTag(tag) => {
                let element = Element {
                    name: text(&tag.name),
                    attributes: tag
                        .attributes
                        .iter()
                        .map(|(k, v)| (text(k), text(&v.value)))
                        .collect(),
                    ..Element::default()
                };
                if VOID.contains(&element.name.as_str()) || tag.self_closing {
                    stack.last_mut().unwrap().children.push(element);
                } else {
                    stack.push(element);
                }
            }
            Token::EndTag(tag) => {
                let element = stack.pop().expect("an end tag without a start");
                assert_eq!(element.name, text(&tag.name), "tags closed out of order");
                stack.last_mut().unwrap().children.push(element);
            }
            Token::String(s) => stack.last_mut().unwrap().text.push_str(&text(&s.value)),
            Token::Comment(_) => {}
            Token::Error(e) => panic!("HTML error: {:?}", e.value),
        }
    }
    assert!(doctype, "no <!DOCTYPE html>");
    assert_eq!(stack.len(), 1, "unclosed elements");
    stack.pop().unwrap()
}
