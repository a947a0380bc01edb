//! The runtime crate's shape, checked from its sources: data flows one way
//! (no import cycle between modules, and none of the lower layers reaches
//! up into the runner), system calls stay in `os`, and functions stay short
//! enough to read as named steps.
//!
//! A module's imports are the `crate::…` and `super::…` paths its file
//! names outside comments; a path is credited to the deepest module it
//! names (`crate::runner::outcome::Failure` → `runner::outcome`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The runtime crate's `src`.
fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-test/src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `runner/outcome.rs` → `runner::outcome`; `runner/mod.rs` → `runner`;
/// `lib.rs` → `` (the crate root).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// The file's text without comments (line comments, doc comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal is rare enough in this crate
            // to not matter; a URL in a string would only hide a path.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths `code` names from `crate::` (and `super::`, resolved against
/// `module`), each as its list of segments; grouped imports are expanded.
fn paths(code: &str, module: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent_of(module))] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for tail in expand(rest) {
                let mut path = base.clone();
                path.extend(tail);
                found.push(path);
            }
        }
    }
    found
}

/// The parent module's segments (for a `super::` path in `module`'s file).
fn parent_of(module: &str) -> Vec<String> {
    let mut parts: Vec<String> = module.split("::").map(str::to_string).collect();
    parts.pop();
    parts.retain(|p| !p.is_empty());
    parts
}

/// The paths at the start of `text`: `a::b::C`, or `a::{b, c::d}` expanded.
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(next) if next.starts_with('{') => {
                let close = matching_brace(next);
                return split_group(&next[1..close])
                    .into_iter()
                    .flat_map(|item| expand(item.trim()))
                    .map(|tail| segments.iter().cloned().chain(tail).collect())
                    .collect();
            }
            Some(next) => rest = next,
            None => break,
        }
    }
    vec![segments]
}

fn matching_brace(text: &str) -> usize {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The items of a `{a, b::{c, d}}` group, split at top-level commas.
fn split_group(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

/// Module → the modules it imports (its own and its ancestors left out).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(&src());
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        let text = std::fs::read_to_string(file).unwrap();
        let mut deps = BTreeSet::new();
        for path in paths(&code(&text), &module) {
            // The deepest module the path names.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(target) = target {
                let ancestor = module == target || module.starts_with(&format!("{target}::"));
                if !ancestor && !target.is_empty() {
                    deps.insert(target);
                }
            }
        }
        graph.insert(module, deps);
    }
    graph
}

/// The cycles of `graph`: each strongly connected component of more than
/// one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.graph.contains_key(w) {
                    continue;
                }
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

/// The graph with every module folded into its top-level module.
fn top_level(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut folded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, deps) in graph {
        let entry = folded.entry(top(module)).or_default();
        entry.extend(deps.iter().map(|d| top(d)).filter(|d| *d != top(module)));
    }
    folded
}

#[test]
fn the_parser_reads_grouped_and_relative_imports() {
    let code = "use crate::runner::{outcome::{Failure, Outcome}, Vm};\nuse super::cmdline::X;\nlet a = crate::os::pidfd(1);";
    let found = paths(code, "machine::launch");
    let shown: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        shown,
        [
            "runner::outcome::Failure",
            "runner::outcome::Outcome",
            "runner::Vm",
            "os::pidfd",
            "machine::cmdline::X"
        ]
    );
    assert_eq!(module_of(&src().join("runner/mod.rs")), "runner");
    assert_eq!(
        module_of(&src().join("runner/outcome.rs")),
        "runner::outcome"
    );
    assert_eq!(module_of(&src().join("lib.rs")), "");
}

#[test]
fn no_import_cycles_between_modules() {
    let graph = graph();
    assert!(graph.contains_key("runner::trial"), "{graph:?}");
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles between modules: {found:?}");
    let found = cycles(&top_level(&graph));
    assert!(
        found.is_empty(),
        "import cycles between top-level modules: {found:?}"
    );
}

/// Data flows attribute → spec → runner → machine → body → outcome →
/// reports: the lower layers never import the ones above them.
#[test]
fn lower_layers_do_not_reach_up() {
    let top = top_level(&graph());
    let forbidden: &[(&str, &[&str])] = &[
        (
            "os",
            &[
                "machine", "runner", "spec", "snapshot", "qmp", "console", "shell", "guest",
            ],
        ),
        ("events", &["qmp", "machine", "runner", "spec", "snapshot"]),
        (
            "qmp",
            &["machine", "runner", "spec", "snapshot", "console", "shell"],
        ),
        (
            "console",
            &["machine", "runner", "spec", "snapshot", "qmp", "shell"],
        ),
        (
            "machine",
            &["runner", "spec", "snapshot", "shell", "guest", "net"],
        ),
        ("snapshot", &["runner", "spec"]),
        (
            "spec",
            &["machine", "runner", "snapshot", "qmp", "console", "shell"],
        ),
        (
            "guest",
            &[
                "machine", "runner", "spec", "snapshot", "qmp", "console", "shell",
            ],
        ),
        ("shell", &["machine", "runner", "spec", "snapshot"]),
        (
            "net",
            &[
                "machine", "runner", "spec", "snapshot", "qmp", "console", "shell", "guest",
            ],
        ),
        (
            "channel",
            &[
                "machine", "runner", "spec", "snapshot", "qmp", "console", "shell", "guest",
            ],
        ),
        (
            "timeline",
            &[
                "machine", "runner", "spec", "snapshot", "qmp", "console", "shell", "guest",
            ],
        ),
    ];
    let mut wrong = Vec::new();
    for (module, not) in forbidden {
        for dep in top.get(*module).into_iter().flatten() {
            if not.contains(&dep.as_str()) {
                wrong.push(format!("{module} imports {dep}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn system_calls_only_in_os() {
    let mut wrong = Vec::new();
    for file in rust_files(&src()) {
        let module = module_of(&file);
        if module == "os" || module.starts_with("os::") {
            continue;
        }
        if code(&std::fs::read_to_string(&file).unwrap()).contains("rustix") {
            wrong.push(module);
        }
    }
    assert!(wrong.is_empty(), "rustix used outside os: {wrong:?}");
}

/// Functions read as named steps: none is longer than 80 lines.
#[test]
fn functions_are_short() {
    const LIMIT: usize = 80;
    let mut long = Vec::new();
    for file in rust_files(&src()) {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "const fn ",
            ]
            .iter()
            .any(|p| trimmed.starts_with(p));
            if !is_fn {
                continue;
            }
            let (mut depth, mut opened) = (0i32, false);
            for (j, body_line) in lines.iter().enumerate().skip(i) {
                for c in body_line.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if !opened && body_line.trim_end().ends_with(';') {
                    break;
                }
                if opened && depth == 0 {
                    if j - i + 1 > LIMIT {
                        long.push(format!(
                            "{}:{} ({} lines)",
                            file.display(),
                            i + 1,
                            j - i + 1
                        ));
                    }
                    break;
                }
            }
        }
    }
    assert!(long.is_empty(), "functions over {LIMIT} lines: {long:#?}");
}
