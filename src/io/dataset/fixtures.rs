//! Small datasets for this module's unit tests.

use std::ops::Range;

use ndarray::{Array1, Array2};

use super::DatasetMeta;
use crate::data::{CsrMatrix, Dataset, Features, Task};

pub(crate) fn dense_ds(rows: usize, cols: usize, task: Task) -> Dataset {
    let x = Array2::from_shape_fn((rows, cols), |(i, j)| (i * cols + j) as f64 * 0.5 - 3.0);
    let y = Array1::from_shape_fn(rows, |i| match task {
        Task::Binary => {
            if i % 3 == 0 {
                1.0
            } else {
                -1.0
            }
        }
        Task::Multiclass { classes } => (i % classes) as f64,
        Task::Regression => i as f64 * 0.25,
    });
    Dataset::new(Features::Dense(x), y, task).unwrap()
}

pub(crate) fn csr_ds(rows: usize, cols: usize) -> Dataset {
    let mut indptr = vec![0];
    let (mut idx, mut val) = (vec![], vec![]);
    for r in 0..rows {
        for c in 0..cols {
            if (r * 7 + c * 3) % 5 == 0 {
                idx.push(c as u32);
                val.push((r + c) as f64 + 0.5);
            }
        }
        indptr.push(idx.len());
    }
    let x = CsrMatrix::new(rows, cols, indptr, idx, val).unwrap();
    let y = Array1::from_shape_fn(rows, |i| if i % 2 == 0 { 1.0 } else { -1.0 });
    Dataset::new(Features::Sparse(x), y, Task::Binary).unwrap()
}

pub(crate) fn stack(d: &Dataset, ranges: &[Range<usize>]) -> Dataset {
    let parts: Vec<Dataset> = ranges.iter().map(|r| d.slice_rows(r.clone())).collect();
    let xs: Vec<&Features> = parts.iter().map(|p| &p.x).collect();
    let ys: Vec<f64> = parts.iter().flat_map(|p| p.y.iter().copied()).collect();
    Dataset {
        x: Features::vstack(&xs).unwrap(),
        y: Array1::from(ys),
        task: d.task,
    }
}

pub(crate) fn meta() -> DatasetMeta {
    DatasetMeta {
        source: "unit test".into(),
        sha256: "abc".into(),
        license: "CC0".into(),
        image: None,
    }
}
