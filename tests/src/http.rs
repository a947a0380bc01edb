//! A small HTTP/1.1 file server on the loopback, for the declared-asset
//! tests (there is no network here): it serves files by path, answers
//! `Range: bytes=N-` requests with 206 (unless told not to), and can drop
//! a connection in the middle of a body or send slowly, as a real server
//! or network would. Every request is recorded.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// The first `n` answers of a file close the connection after this
    /// many body bytes (the headers promise all of it).
    pub drop_after: Option<(usize, u64)>,
    /// Ignore `Range` and always send the whole file with 200.
    pub no_ranges: bool,
    /// Pause this long before each 64 KiB of body.
    pub slow: Option<Duration>,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    faults: Faults,
    requests: Vec<Request>,
    dropped: usize,
}

/// The server; stopped when dropped.
pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `files` (path → bytes) on 127.0.0.1, on a free port.
    pub fn start(files: &[(&str, Vec<u8>)], faults: Faults) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            files: files
                .iter()
                .map(|(p, b)| (p.to_string(), b.clone()))
                .collect(),
            faults,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(stream, &st));
            }
        });
        Server {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The URL of `path` (`/name`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers the requests of one connection (keep-alive).
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut range = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("range") {
                    range = Some(value.trim().to_string());
                }
            }
        }
        if !answer(&mut out, &path, range, state) {
            return;
        }
    }
}

/// Writes one answer; whether the connection stays open.
fn answer(out: &mut TcpStream, path: &str, range: Option<String>, state: &Mutex<State>) -> bool {
    let (body, faults, drop_at) = {
        let mut st = state.lock().unwrap();
        st.requests.push(Request {
            path: path.to_string(),
            range: range.clone(),
        });
        let faults = st.faults;
        let drop_at = match faults.drop_after {
            Some((times, at)) if st.dropped < times && st.files.contains_key(path) => {
                st.dropped += 1;
                Some(at)
            }
            _ => None,
        };
        (st.files.get(path).cloned(), faults, drop_at)
    };
    let Some(body) = body else {
        let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return true;
    };
    let start = range
        .as_deref()
        .filter(|_| !faults.no_ranges)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n <= body.len());
    let head = match start {
        Some(n) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {n}-{}/{}\r\n\r\n",
            body.len() - n,
            body.len().saturating_sub(1),
            body.len()
        ),
        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()),
    };
    if out.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let rest = &body[start.unwrap_or(0)..];
    let limit = drop_at.map_or(rest.len(), |at| (at as usize).min(rest.len()));
    for chunk in rest[..limit].chunks(64 * 1024) {
        // Before each chunk: a small body is slow too.
        if let Some(pause) = faults.slow {
            std::thread::sleep(pause);
        }
        if out.write_all(chunk).is_err() {
            return false;
        }
    }
    if drop_at.is_some() {
        let _ = out.flush();
        let _ = out.shutdown(std::net::Shutdown::Both);
        return false;
    }
    true
}
