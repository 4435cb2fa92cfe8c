//! FI-5/FI-6: `Header::parse` on any message (bytes read as little-endian f64 values): an error,
//! or a header that writes back to the same values.
#![no_main]
use gradcode::comm::protocol::{Header, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let buf: Vec<f64> = data
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    if let Ok(h) = Header::parse(&buf) {
        assert_eq!(h.len, buf.len() - HEADER_LEN);
        let mut again = vec![0.0; buf.len()];
        h.write(&mut again);
        assert_eq!(Header::parse(&again), Ok(h));
    }
});
