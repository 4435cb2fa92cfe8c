//! Input plumbing shared by the text converters: opening a file with transparent gzip / bzip2
//! decompression (detected by magic bytes, not the name), its SHA-256, a capped line reader
//! ([`MAX_LINE`], UTF-8 check, CRLF, 1-based line numbers) and small token helpers.
//!
//! Not done here: any format's syntax (see the `libsvm`, `idx` and `csv` modules).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::MAX_LINE;
use crate::io::IoError;

pub(crate) fn perr(path: &Path, line: u64, detail: impl Into<String>) -> IoError {
    IoError::Parse {
        path: path.to_path_buf(),
        line,
        detail: detail.into(),
    }
}

/// Open a file, transparently decompressing gzip or bzip2 (detected by magic bytes).
pub fn open_input(path: &Path) -> Result<Box<dyn BufRead>, IoError> {
    let f = fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    let meta = f.metadata().map_err(|e| IoError::os(path, e))?;
    if meta.is_dir() {
        return Err(IoError::layout(path, "is a directory, not an input file"));
    }
    let mut br = BufReader::with_capacity(1 << 16, f);
    let head = br.fill_buf().map_err(|e| IoError::os(path, e))?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(br),
        ))
    } else if head.starts_with(b"BZh") {
        Box::new(BufReader::with_capacity(
            1 << 16,
            bzip2::bufread::MultiBzDecoder::new(br),
        ))
    } else {
        Box::new(br)
    })
}

/// Hex SHA-256 of a file's bytes (as stored, i.e. of the compressed file).
pub fn sha256_file(path: &Path) -> Result<String, IoError> {
    let mut f = fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| IoError::os(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A line reader with a length cap, UTF-8 check, CRLF handling and 1-based line numbers.
pub(crate) struct Lines<'p, R> {
    r: R,
    path: &'p Path,
    buf: Vec<u8>,
    pub(crate) line: u64,
}

impl<'p, R: BufRead> Lines<'p, R> {
    pub(crate) fn new(r: R, path: &'p Path) -> Self {
        Lines {
            r,
            path,
            buf: Vec::new(),
            line: 0,
        }
    }

    /// The next line (number, text without its terminator), or `None` at the end.
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, &str)>, IoError> {
        self.buf.clear();
        let n = (&mut self.r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| {
                perr(
                    self.path,
                    self.line + 1,
                    format!("read error (corrupt or truncated compressed data?): {e}"),
                )
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            return Err(perr(
                self.path,
                self.line,
                format!("line is longer than {MAX_LINE} bytes"),
            ));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Ok(Some((self.line, s))),
            Err(e) => Err(perr(
                self.path,
                self.line,
                format!("not valid UTF-8 (at byte {} of the line)", e.valid_up_to()),
            )),
        }
    }
}

/// Parse a finite f64 (Rust's parser also accepts `nan`, `inf`: refused here).
pub(crate) fn parse_finite(tok: &str) -> Option<f64> {
    tok.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Shorten a token for an error message.
pub(crate) fn truncate(s: &str) -> String {
    const N: usize = 40;
    if s.chars().count() <= N {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(N).collect::<String>())
    }
}
