//! Decoding outbox records never panics, whatever the bytes on disk; what decodes
//! encodes back to bytes that decode to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_layers::store_forward::{ParkedMessage, StoredMessage, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode::<StoredMessage>(data) {
        assert_eq!(decode::<StoredMessage>(&encode(&message)).unwrap(), message);
    }
    let _ = decode::<ParkedMessage>(data);
});
