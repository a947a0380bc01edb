//! The QMP client against a fake, broken QMP peer: faults QEMU will not
//! produce on demand. Each must end in a typed error within its deadline,
//! never a panic or a hang.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use qemu_test::qmp::{QmpClient, MAX_MESSAGE_SIZE};
use qemu_test::QmpError;
use serde_json::{json, Value};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\r\n";
const SHORT: Duration = Duration::from_millis(300);

/// Runs `peer` on the far end of a socketpair and connects a client.
fn with_peer(
    timeout: Duration,
    peer: impl FnOnce(UnixStream) + Send + 'static,
) -> Result<QmpClient, QmpError> {
    let (ours, theirs) = UnixStream::pair().unwrap();
    thread::spawn(move || peer(theirs));
    QmpClient::connect(ours.into(), timeout, None)
}

/// A peer that greets, accepts capabilities, then hands over.
fn negotiated(peer: impl FnOnce(BufReader<UnixStream>, UnixStream) + Send + 'static) -> QmpClient {
    with_peer(Duration::from_secs(5), move |mut s| {
        s.write_all(GREETING).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let caps = read_cmd(&mut r);
        reply(&mut s, &caps, json!({}));
        peer(r, s);
    })
    .expect("handshake with the fake peer")
}

fn read_cmd(r: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

/// Answers `cmd` as QEMU does: its `id` echoed if it had one.
fn reply(s: &mut UnixStream, cmd: &Value, ret: Value) {
    let mut msg = json!({ "return": ret });
    if let Some(id) = cmd.get("id") {
        msg["id"] = id.clone();
    }
    let _ = s.write_all(format!("{msg}\r\n").as_bytes());
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

#[test]
fn no_greeting_times_out() {
    let (res, took) = timed(|| {
        with_peer(SHORT, |s| {
            thread::sleep(Duration::from_secs(3));
            drop(s);
        })
    });
    match res {
        Err(QmpError::Timeout { command, .. }) => assert_eq!(command, "greeting"),
        other => panic!("{other:?}"),
    }
    assert!(
        took < Duration::from_secs(3),
        "gave up at its deadline, took {took:?}"
    );
}

#[test]
fn a_greeting_that_never_ends_times_out() {
    let res = with_peer(SHORT, |mut s| {
        s.write_all(b"{\"QMP\": {\"version\": ").unwrap();
        thread::sleep(Duration::from_secs(3));
    });
    assert!(matches!(res, Err(QmpError::Timeout { .. })), "{res:?}");
}

#[test]
fn garbage_is_malformed() {
    let res = with_peer(SHORT * 10, |mut s| {
        let _ = s.write_all(b"\x00\x01garbage!!\r\n");
        thread::sleep(Duration::from_secs(1));
    });
    match res {
        Err(QmpError::Greeting(msg)) => assert!(
            msg.contains("malformed") && msg.contains("garbage"),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_utf8_is_malformed() {
    let res = with_peer(SHORT * 10, |mut s| {
        let _ = s.write_all(b"{\"QMP\": \"\xff\xfe\"}\n");
        thread::sleep(Duration::from_secs(1));
    });
    assert!(
        matches!(res, Err(QmpError::Greeting(ref m)) if m.contains("invalid JSON")),
        "{res:?}"
    );
}

#[test]
fn a_greeting_that_is_not_qmp_is_refused() {
    let res = with_peer(SHORT * 10, |mut s| {
        let _ = s.write_all(b"{\"hello\": 1}\n");
        thread::sleep(Duration::from_secs(1));
    });
    assert!(
        matches!(res, Err(QmpError::Greeting(ref m)) if m.contains("expected")),
        "{res:?}"
    );
}

#[test]
fn truncated_reply_then_eof_fails_the_command() {
    let qmp = negotiated(|mut r, mut s| {
        let _cmd = read_cmd(&mut r);
        s.write_all(b"{\"return\": {\"stat").unwrap();
    });
    let err = qmp.qmp("query-status", json!({})).unwrap_err();
    match err {
        QmpError::Closed {
            reason: Some(reason),
        } => assert!(reason.contains("middle of a message"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Later commands fail at once, too.
    assert!(matches!(
        qmp.qmp("query-status", json!({})),
        Err(QmpError::Closed { .. })
    ));
}

#[test]
fn peer_closing_mid_reply_fails_the_command() {
    let qmp = negotiated(|mut r, s| {
        let _cmd = read_cmd(&mut r);
        drop(s);
        drop(r);
    });
    let (res, took) = timed(|| qmp.qmp("query-status", json!({})));
    assert!(
        matches!(res, Err(QmpError::Closed { .. }) | Err(QmpError::Io { .. })),
        "{res:?}"
    );
    assert!(took < Duration::from_secs(5));
}

#[test]
fn a_huge_line_is_refused_with_bounded_memory() {
    let qmp = negotiated(|mut r, mut s| {
        let _cmd = read_cmd(&mut r);
        let chunk = vec![b' '; 1 << 20];
        // 64 MiB of one line; the client stops reading after 16 MiB.
        for _ in 0..64 {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let err = qmp
        .qmp_timeout("query-status", json!({}), Duration::from_secs(30))
        .unwrap_err();
    match err {
        QmpError::Closed {
            reason: Some(reason),
        } => {
            assert!(reason.contains(&MAX_MESSAGE_SIZE.to_string()), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn replies_with_unknown_ids_are_stray() {
    let qmp = negotiated(|mut r, mut s| {
        let _cmd = read_cmd(&mut r);
        s.write_all(b"{\"return\": {}, \"id\": \"someone-else\"}\r\n")
            .unwrap();
        thread::sleep(Duration::from_secs(2));
    });
    let err = qmp
        .qmp_timeout("query-status", json!({}), SHORT)
        .unwrap_err();
    assert!(
        matches!(err, QmpError::Timeout { ref command, .. } if command == "query-status"),
        "{err:?}"
    );
    assert_eq!(qmp.stray_replies(), 1);
}

#[test]
fn a_lone_command_goes_without_an_id() {
    let (seen_tx, seen) = mpsc::channel();
    let qmp = with_peer(Duration::from_secs(5), move |mut s| {
        s.write_all(GREETING).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        for ret in ["caps", "first", "second"] {
            let cmd = read_cmd(&mut r);
            seen_tx.send(cmd.clone()).unwrap();
            reply(&mut s, &cmd, json!(ret));
        }
        thread::sleep(Duration::from_secs(1));
    })
    .unwrap();
    assert_eq!(
        qmp.qmp("first", json!({"a": 1})).unwrap()["return"],
        "first"
    );
    assert_eq!(qmp.qmp("second", Value::Null).unwrap()["return"], "second");
    let seen: Vec<Value> = seen.try_iter().collect();
    assert_eq!(
        seen,
        [
            json!({"execute": "qmp_capabilities"}),
            json!({"execute": "first", "arguments": {"a": 1}}),
            json!({"execute": "second"}),
        ]
    );
    assert_eq!(qmp.stray_replies(), 0);
}

#[test]
fn a_reply_without_an_id_that_nobody_waits_for_is_stray_not_misrouted() {
    let qmp = negotiated(|mut r, mut s| {
        // Unprompted, while no command is in flight.
        s.write_all(b"{\"return\": \"made up\"}\r\n").unwrap();
        let cmd = read_cmd(&mut r);
        reply(&mut s, &cmd, json!("mine"));
        thread::sleep(Duration::from_secs(1));
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while qmp.stray_replies() == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(qmp.stray_replies(), 1, "the made-up reply was counted");
    assert_eq!(
        qmp.qmp("query-status", json!({})).unwrap()["return"],
        "mine"
    );
    assert_eq!(qmp.stray_replies(), 1);
}

#[test]
fn a_late_reply_without_an_id_is_not_taken_for_the_next_commands() {
    let (seen_tx, seen) = mpsc::channel();
    let qmp = negotiated(move |mut r, mut s| {
        let first = read_cmd(&mut r);
        // The client gives up on `first` and sends `second` before the
        // late reply to `first` arrives: `second` must carry an id.
        let second = read_cmd(&mut r);
        reply(&mut s, &first, json!("late"));
        reply(&mut s, &second, json!("second"));
        // The late reply freed the slot: `third` goes without an id.
        let third = read_cmd(&mut r);
        reply(&mut s, &third, json!("third"));
        seen_tx.send([first, second, third]).unwrap();
        thread::sleep(Duration::from_secs(1));
    });
    assert!(matches!(
        qmp.qmp_timeout("first", json!({}), SHORT),
        Err(QmpError::Timeout { .. })
    ));
    assert_eq!(qmp.qmp("second", json!({})).unwrap()["return"], "second");
    assert_eq!(qmp.stray_replies(), 1, "the late reply is stray");
    assert_eq!(qmp.qmp("third", json!({})).unwrap()["return"], "third");
    let [first, second, third] = seen.recv().unwrap();
    assert!(first.get("id").is_none(), "{first}");
    assert!(second.get("id").is_some(), "{second}");
    assert!(third.get("id").is_none(), "{third}");
}

#[test]
fn concurrent_commands_are_told_apart_even_answered_out_of_order() {
    const THREADS: usize = 4;
    let qmp = negotiated(|mut r, mut s| {
        // Every caller's command first, then the replies, newest first.
        let cmds: Vec<Value> = (0..THREADS).map(|_| read_cmd(&mut r)).collect();
        let bare = cmds.iter().filter(|c| c.get("id").is_none()).count();
        assert!(bare <= 1, "more than one command without an id: {cmds:?}");
        for cmd in cmds.iter().rev() {
            let name = cmd["execute"].clone();
            reply(&mut s, cmd, name);
        }
        thread::sleep(Duration::from_secs(1));
    });
    thread::scope(|scope| {
        let qmp = &qmp;
        let callers: Vec<_> = (0..THREADS)
            .map(|i| {
                scope.spawn(move || {
                    let name = format!("cmd-{i}");
                    let reply = qmp.qmp(&name, json!({})).unwrap();
                    assert_eq!(reply["return"], name.as_str());
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
    });
    assert_eq!(qmp.stray_replies(), 0);
}

#[test]
fn a_reply_after_the_deadline_is_a_timeout_and_does_not_confuse_the_next() {
    let qmp = negotiated(|mut r, mut s| {
        let first = read_cmd(&mut r);
        thread::sleep(Duration::from_millis(600));
        reply(&mut s, &first, json!("late"));
        let second = read_cmd(&mut r);
        reply(&mut s, &second, json!("second"));
        thread::sleep(Duration::from_secs(1));
    });
    assert!(matches!(
        qmp.qmp_timeout("first", json!({}), SHORT),
        Err(QmpError::Timeout { .. })
    ));
    thread::sleep(Duration::from_millis(500));
    let reply = qmp.qmp("second", json!({})).unwrap();
    assert_eq!(reply["return"], "second");
}

#[test]
fn an_event_flood_while_a_command_is_pending() {
    const EVENTS: usize = 100_000;
    let qmp = negotiated(|mut r, mut s| {
        let cmd = read_cmd(&mut r);
        let mut buf = Vec::new();
        for i in 0..EVENTS {
            buf.extend_from_slice(
                format!("{{\"event\": \"FLOOD\", \"data\": {{\"i\": {i}}}}}\r\n").as_bytes(),
            );
        }
        s.write_all(&buf).unwrap();
        reply(&mut s, &cmd, json!("done"));
        thread::sleep(Duration::from_secs(2));
    });
    let reply = qmp
        .qmp_timeout("query-status", json!({}), Duration::from_secs(30))
        .unwrap();
    assert_eq!(reply["return"], "done");
    let events = qmp.get_events(qemu_test::Wait::No).unwrap();
    let dropped = qmp.dropped_events() as usize;
    assert_eq!(events.len() + dropped, EVENTS);
    assert_eq!(events.len(), qemu_test::qmp::MAX_QUEUED_EVENTS);
    // The oldest were dropped; the newest are kept in order.
    assert_eq!(events.last().unwrap()["data"]["i"], EVENTS - 1);
    assert_eq!(events[0]["data"]["i"], dropped);
}
