//! `config::parse` on arbitrary text: every input gives a config or a list of
//! problems with positions, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match meetsync::config::parse(text, Path::new("/fuzz/meetsync.toml")) {
        Ok(cfg) => {
            let _ = format!("{cfg:?}");
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            for p in &e.problems {
                assert!(p.line >= 1 && p.column >= 1);
            }
            let _ = e.to_string();
        }
    }
});
