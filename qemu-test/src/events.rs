//! QMP event matching: [`event_match`], pure. Waiting for events belongs
//! to the QMP client that owns the queue ([`qmp::Wait`](crate::qmp::Wait),
//! [`Machine::event_wait`](crate::Machine::event_wait)).
//!
//! ```
//! use qemu_test::event_match;
//! use serde_json::json;
//!
//! let event = json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}});
//! assert!(event_match(&event, &json!({"data": {"guest": true}})));
//! assert!(!event_match(&event, &json!({"data": {"guest": false}})));
//! assert!(event_match(&event, &json!(null)));
//! ```

use serde_json::Value;

/// Whether `event` matches `pattern`, with the seed's semantics:
///
/// - a `null` pattern matches anything;
/// - an object pattern matches an object that has each of the pattern's
///   keys, with values that match recursively (extra keys in the event are
///   ignored);
/// - any other pattern matches a value equal to it.
///
/// Numbers compare by value (`1` matches `1.0`), as in Python.
///
/// Deliberate deviations, each an accident of the seed's duck typing: in
/// the seed a list or string pattern is iterated like a dict (Python's
/// `for key in match`), so `[0]` "matches" lists by their elements' indices
/// and an empty list or string matches anything. Here lists and strings
/// compare by equality. And `true` never matches `1` (Python's `True == 1`).
/// The tests check agreement with a model of the seed everywhere else.
pub fn event_match(event: &Value, pattern: &Value) -> bool {
    match pattern {
        Value::Null => true,
        // The seed iterates zero keys and returns True, whatever the event.
        Value::Object(pattern) if pattern.is_empty() => true,
        Value::Object(pattern) => match event {
            Value::Object(event) => pattern
                .iter()
                .all(|(key, want)| event.get(key).is_some_and(|got| event_match(got, want))),
            _ => false,
        },
        other => json_eq(other, event),
    }
}

/// Equality as the seed's Python sees decoded JSON: numbers compare by
/// value (`1 == 1.0`), containers element by element. Unlike Python,
/// `true` is not equal to `1`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The cases of the seed's semantics, one by one.
    #[test]
    fn null_pattern_matches_anything() {
        for event in [
            json!(null),
            json!(1),
            json!("x"),
            json!([1]),
            json!({"event": "X"}),
        ] {
            assert!(event_match(&event, &Value::Null), "{event}");
        }
    }

    #[test]
    fn object_pattern_needs_each_key_recursively() {
        let ev = json!({"event": "BLOCK_JOB_COMPLETED", "data": {"device": "d0", "len": 5, "offset": 5}});
        assert!(event_match(&ev, &json!({})));
        assert!(event_match(&ev, &json!({"event": "BLOCK_JOB_COMPLETED"})));
        assert!(event_match(&ev, &json!({"data": {"device": "d0"}})));
        assert!(event_match(
            &ev,
            &json!({"data": {"device": "d0", "len": 5}})
        ));
        assert!(!event_match(&ev, &json!({"data": {"device": "d1"}})));
        assert!(
            !event_match(&ev, &json!({"data": {"missing": null}})),
            "missing key fails even for null"
        );
        assert!(
            event_match(&ev, &json!({"data": {"device": null}})),
            "null value matches any present value"
        );
        assert!(!event_match(&ev, &json!({"timestamp": {}})));
    }

    #[test]
    fn scalars_compare_equal() {
        assert!(event_match(&json!(5), &json!(5)));
        assert!(event_match(&json!(5.0), &json!(5)));
        assert!(event_match(&json!({"a": [1.0]}), &json!({"a": [1]})));
        assert!(
            !event_match(&json!(1), &json!(true)),
            "deviation: True == 1 in Python"
        );
        assert!(!event_match(&json!(5), &json!(6)));
        assert!(!event_match(&json!("5"), &json!(5)));
        assert!(event_match(&json!(true), &json!(true)));
        assert!(!event_match(&json!({"a": 1}), &json!(1)));
    }

    #[test]
    fn object_pattern_against_non_object() {
        assert!(!event_match(&json!(1), &json!({"a": 1})));
        assert!(!event_match(&json!([1]), &json!({"a": 1})));
        assert!(
            !event_match(&json!("a"), &json!({"a": 1})),
            "the seed's `key in str` then fails"
        );
        // An empty object pattern iterates zero keys: True for any event.
        assert!(event_match(&json!({}), &json!({})));
        assert!(event_match(&json!(7), &json!({})));
    }

    #[test]
    fn lists_and_strings_compare_equal() {
        assert!(event_match(&json!([1, 2]), &json!([1, 2])));
        assert!(!event_match(&json!([1, 2, 3]), &json!([1, 2])));
        assert!(event_match(&json!("abc"), &json!("abc")));
        assert!(!event_match(&json!("abcd"), &json!("abc")));
    }
}
