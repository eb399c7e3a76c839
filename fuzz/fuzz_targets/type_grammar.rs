//! The type-grammar parser never panics, and what it accepts prints back to a string
//! that parses to the same type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core::types::Type;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ty) = Type::parse(text) {
        let printed = ty.to_string();
        assert_eq!(Type::parse(&printed).as_ref(), Ok(&ty), "{printed}");
    }
});
