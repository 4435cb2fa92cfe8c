//! BI-6: `parse_idx` on arbitrary images + labels files. The first two bytes of the input say
//! where the images file ends and the labels file starts.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("gradcode-fuzz-idx-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let rest = &data[2..];
    let split = (usize::from(data[0]) | usize::from(data[1]) << 8) % (rest.len() + 1);
    let (images, labels) = (dir().join("images"), dir().join("labels"));
    std::fs::write(&images, &rest[..split]).expect("write images");
    std::fs::write(&labels, &rest[split..]).expect("write labels");
    if let Ok(s) = gradcode::io::convert::parse_idx(&images, &labels, true) {
        // Nothing larger than the file: one f64 per payload byte at most.
        assert!(s.n_rows() <= split);
    }
});
