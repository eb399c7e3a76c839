//! Decoding every cluster-protocol message never panics; what decodes re-encodes to a
//! message that decodes to the same value.
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
});
