//! `wordfreq [N]`: the N (default 3) most frequent words on stdin, one
//! `count word` line each, most frequent first (ties alphabetically).
//! The program examples/host_program.rs runs inside the guest; the
//! examples' build script compiles it (a dynamically linked Rust binary).

use std::collections::HashMap;
use std::io::Read;

fn main() {
    let top: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(3);
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("wordfreq: cannot read stdin: {e}");
        std::process::exit(1);
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (word, count) in ranked.into_iter().take(top) {
        println!("{count} {word}");
    }
}
