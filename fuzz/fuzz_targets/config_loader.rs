//! The configuration loader never panics on any text: it returns a config or a list of
//! located errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A directory with no script files: references to scripts become located errors.
    if let Err(errors) = Config::parse(text, std::path::Path::new("/nonexistent/switchyard.toml")) {
        assert!(!errors.0.is_empty());
        for e in &errors.0 {
            assert!(e.line >= 1 && e.column >= 1);
        }
    }
});
