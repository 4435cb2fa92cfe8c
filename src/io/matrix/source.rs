//! Where a user's matrix is: `FILE.h5` or `FILE.h5:/path/in/file`, as given on the command line
//! (`gradcode matvec --matrix`, `gradcode matmul --a/--b`).
//!
//! Parsing rule: when the whole string names an existing file, it is the file (its name may then
//! contain ':'); otherwise the string is split at its first ':' into the file and the path of the
//! object inside it (which may contain ':'; a missing leading '/' is added). So a file whose name
//! contains ':' is found only when it exists, and then cannot be combined with an in-file path.
//!
//! Not done here: opening or checking the file (see [`super::user`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::io::IoError;

/// A matrix named on the command line: a file and, optionally, the object inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixSource {
    /// The HDF5 file.
    pub file: PathBuf,
    /// The absolute path of a 2-D dataset or CSR group inside `file` (starts with '/'); `None`:
    /// `/X` of a gradcode dataset file, else the file's only 2-D dataset or CSR group.
    pub object: Option<String>,
}

impl MatrixSource {
    /// A whole file (the object is found in it).
    pub fn file(file: impl Into<PathBuf>) -> MatrixSource {
        MatrixSource {
            file: file.into(),
            object: None,
        }
    }
}

impl FromStr for MatrixSource {
    type Err = IoError;

    /// See the module documentation for the rule; an empty string, an empty file part or an
    /// empty in-file path is an error.
    fn from_str(s: &str) -> Result<MatrixSource, IoError> {
        let bad = |detail: &str| IoError::layout(&PathBuf::from(s), detail);
        if s.is_empty() {
            return Err(bad("empty matrix name (expected FILE.h5 or FILE.h5:/path)"));
        }
        if PathBuf::from(s).is_file() {
            return Ok(MatrixSource::file(s));
        }
        let Some((file, object)) = s.split_once(':') else {
            return Ok(MatrixSource::file(s));
        };
        if file.is_empty() {
            return Err(bad("no file before ':' (expected FILE.h5:/path)"));
        }
        let object = object.trim_start_matches('/');
        if object.is_empty() {
            return Err(bad(
                "no path after ':' (expected FILE.h5:/path/to/dataset, or FILE.h5 alone)",
            ));
        }
        Ok(MatrixSource {
            file: PathBuf::from(file),
            object: Some(format!("/{object}")),
        })
    }
}

impl fmt::Display for MatrixSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(o) => write!(f, "{}:{o}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> MatrixSource {
        s.parse().unwrap()
    }

    #[test]
    fn plain_files_in_file_paths_and_colons() {
        assert_eq!(parse("A.h5"), MatrixSource::file("A.h5"));
        let m = parse("dir/A.h5:/grp/M");
        assert_eq!(m.file, PathBuf::from("dir/A.h5"));
        assert_eq!(m.object.as_deref(), Some("/grp/M"));
        assert_eq!(m.to_string(), "dir/A.h5:/grp/M");
        assert_eq!(parse("A.h5:M").object.as_deref(), Some("/M"));
        // Split at the first ':': the in-file path keeps its own colons.
        assert_eq!(parse("A.h5:/g:1/M").object.as_deref(), Some("/g:1/M"));
        // A file that exists under the whole string is taken whole.
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("run:3.h5");
        std::fs::write(&odd, b"x").unwrap();
        let m = parse(odd.to_str().unwrap());
        assert_eq!((m.file, m.object), (odd.clone(), None));
        let m = parse(&format!("{}:/A", dir.path().join("missing.h5").display()));
        assert_eq!(m.object.as_deref(), Some("/A"));
        for (bad, want) in [
            ("", "empty matrix name"),
            (":/A", "no file before ':'"),
            ("A.h5:", "no path after ':'"),
            ("A.h5:/", "no path after ':'"),
        ] {
            let e = bad.parse::<MatrixSource>().unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
