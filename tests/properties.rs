//! Property tests: `event_match` against a model of the seed's Python
//! semantics, and the QMP line reader against arbitrary input.

use proptest::prelude::*;
use qemu_test::event_match;
use serde_json::{Map, Value};

/// Python's `match == event` on decoded JSON (numbers by value; booleans
/// are kept apart from numbers, the one documented deviation).
fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| py_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => a == b,
    }
}

struct TypeError;

/// Python's `key in container`.
fn py_in(key: &str, container: &Value) -> Result<bool, TypeError> {
    match container {
        Value::Object(m) => Ok(m.contains_key(key)),
        Value::String(s) => Ok(s.contains(key)),
        Value::Array(items) => Ok(items.iter().any(|i| i.as_str() == Some(key))),
        _ => Err(TypeError),
    }
}

/// Python's `container[key]` for a string key.
fn py_index<'a>(container: &'a Value, key: &str) -> Result<&'a Value, TypeError> {
    match container {
        Value::Object(m) => m.get(key).ok_or(TypeError),
        _ => Err(TypeError),
    }
}

/// The seed's `QEMUMachine.event_match`, transcribed, for patterns with
/// no lists and no empty strings (where list indexing cannot happen).
fn seed_match(event: &Value, pattern: &Value) -> bool {
    if pattern.is_null() {
        return true;
    }
    let keys: Vec<String> = match pattern {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::String(s) => s.chars().map(String::from).collect(),
        _ => return py_eq(pattern, event), // not iterable: TypeError
    };
    for key in keys {
        match py_in(&key, event) {
            Err(TypeError) => return py_eq(pattern, event),
            Ok(false) => return false,
            Ok(true) => {
                let (Ok(e), Ok(p)) = (py_index(event, &key), py_index(pattern, &key)) else {
                    return py_eq(pattern, event);
                };
                if !seed_match(e, p) {
                    return false;
                }
            }
        }
    }
    true
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a"),
        Just("b"),
        Just("event"),
        Just("data"),
        Just("ab")
    ]
    .prop_map(String::from)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::from),
        (-3i64..3).prop_map(|i| Value::from(i as f64)),
        prop_oneof![Just("a"), Just("b"), Just("ab"), Just("x")]
            .prop_map(|s: &str| Value::String(s.into())),
    ]
}

fn event_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Patterns: objects, scalars and non-empty strings; no lists.
fn pattern_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop::collection::btree_map(key(), inner, 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn event_match_agrees_with_the_seed(event in event_value(), pattern in pattern_value()) {
        prop_assert_eq!(event_match(&event, &pattern), seed_match(&event, &pattern),
            "event {} pattern {}", event, pattern);
    }

    #[test]
    fn an_event_matches_itself(event in event_value()) {
        prop_assert!(event_match(&event, &event));
    }

    #[test]
    fn qmp_client_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        use std::time::Duration;
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let _ = theirs.write_all(&bytes);
        drop(theirs);
        // Whatever the bytes, the result is a value or a typed error, and
        // it comes at once (EOF follows the bytes).
        let res = qemu_test::qmp::QmpClient::connect(ours.into(), Duration::from_secs(5), None);
        prop_assert!(res.is_err());
    }
}
