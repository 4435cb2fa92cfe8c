//! BI-4/BI-5: `parse_csv` on arbitrary bytes (label column: default, by position, by name).
#![no_main]
use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.csv");
    for label in [None, Some("0"), Some("y")] {
        if let Ok((split, header)) =
            gradcode::io::convert::parse_csv(Cursor::new(data), path, label)
        {
            assert!(header.len() >= 2);
            assert_eq!(split.labels().len(), split.n_rows());
        }
    }
});
