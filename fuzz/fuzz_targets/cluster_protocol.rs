//! Decoding every cluster-protocol message never panics; what decodes re-encodes to a
//! message that decodes to the same value. The same bytes as text go through the values
//! that arrive from the network or a command line as strings: the deadline header,
//! `Retry-After`, `--since` and durations — none may panic or overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core::protocol::{AttributeValues, CallScript, Deployment, ErrorBody, GetAttributes, Health, ParkedList, ScriptResult, SetAttributes};

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let again: T = serde_json::from_slice(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(again, value);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<CallScript>(data);
    round_trip::<GetAttributes>(data);
    round_trip::<SetAttributes>(data);
    round_trip::<ScriptResult>(data);
    round_trip::<AttributeValues>(data);
    round_trip::<Health>(data);
    round_trip::<ParkedList>(data);
    round_trip::<ErrorBody>(data);
    if let Ok(d) = serde_json::from_slice::<Deployment>(data) {
        let _ = d.content_hash();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(deadline) = switchyard_core::Deadline::from_header_value(text) {
            assert!(deadline.remaining() <= switchyard_core::deadline::MAX_BUDGET);
        }
        let asked = switchyard_core::classify::parse_retry_after(text);
        let policy = switchyard_core::RetryPolicy::default();
        assert!(policy.delay(asked) <= policy.max_retry_after.max(policy.interval));
        let _ = switchyard_api::failure_log::parse_since(text);
        let _ = switchyard_core::units::parse_duration(text);
    }
});
