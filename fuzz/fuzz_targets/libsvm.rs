//! BI-5: `parse_libsvm` on arbitrary bytes: an error or a split, never a panic, OOM or hang.
#![no_main]
use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.libsvm");
    if let Ok(split) = gradcode::io::convert::parse_libsvm(Cursor::new(data), path, None) {
        assert_eq!(split.labels().len(), split.n_rows());
    }
    // With a feature cap taken from the first byte.
    let cap = data.first().map_or(1, |&b| usize::from(b) + 1);
    let _ = gradcode::io::convert::parse_libsvm(Cursor::new(data), path, Some(cap));
});
