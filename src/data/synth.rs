//! Seeded synthetic datasets: Gaussian-mixture logistic data (Tandon et al.) and noisy linear regression.
//!
//! No I/O. Everything is drawn from one `ChaCha8Rng::seed_from_u64(seed)` stream in a fixed
//! order (model vector, then the training rows, then the test rows), so a seed reproduces the
//! same data on every platform.
//!
//! - `Logistic`: labels ±1 with equal probability, `x ~ N(y·μ, I)` for a random unit-norm μ
//!   (the two-Gaussian mixture of Tandon et al., "Gradient Coding", 2017).
//! - `Linear`: `x ~ N(0, I)`, `y = x·w* + 0.1·ε` with `w*_j ~ N(0, 1/(d·p))` (unit-ish target
//!   variance) and `ε ~ N(0, 1)`.
//!
//! With `sparsity` p < 1 each feature of a row is present with probability p (at least one per
//! row) and the rows are CSR; the features not present are zero (for `Logistic`, the mean
//! `y·μ_j` applies to present features only).

use ndarray::{Array1, Array2};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Geometric, StandardNormal};

use super::{CsrMatrix, DataError, Dataset, Features, Task};

/// Kinds of synthetic data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthKind {
    /// Two-component Gaussian mixture with ±1 labels.
    Logistic,
    /// y = X w* + 0.1 noise.
    Linear,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    pub kind: SynthKind,
    pub rows: usize,
    pub features: usize,
    /// Fraction of features present per row, in (0, 1]; below 1 the output is CSR.
    pub sparsity: f64,
    /// Rows of the test split (0: none).
    pub test_rows: usize,
    pub seed: u64,
}

/// Most stored entries of one generated split (8 bytes each dense: 64 GiB).
pub const MAX_ENTRIES: u64 = 1 << 33;

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// The column indices present in one row (sorted, at least one).
fn row_pattern(rng: &mut ChaCha8Rng, geo: &Option<Geometric>, d: usize, out: &mut Vec<u32>) {
    out.clear();
    match geo {
        None => out.extend(0..d as u32),
        Some(g) => {
            // Gaps between present features are geometric: O(nnz) draws instead of O(d).
            let mut j = g.sample(rng);
            while j < d as u64 {
                out.push(j as u32);
                j = j.saturating_add(1).saturating_add(g.sample(rng));
            }
            if out.is_empty() {
                out.push(rng.gen_range(0..d as u32));
            }
        }
    }
}

/// Generate the training split and, if `test_rows > 0`, a test split from the same distribution.
pub fn generate(spec: &SynthSpec) -> Result<(Dataset, Option<Dataset>), DataError> {
    let d = spec.features;
    if spec.rows == 0 {
        return Err(DataError::Invalid("--rows must be at least 1".into()));
    }
    if d == 0 || d > u32::MAX as usize {
        return Err(DataError::Invalid(format!(
            "--features must be in 1..={} (got {d})",
            u32::MAX
        )));
    }
    let p = spec.sparsity;
    if !(p > 0.0 && p <= 1.0) {
        return Err(DataError::Invalid(format!(
            "--sparsity must be in (0, 1] (got {p})"
        )));
    }
    for (what, rows) in [("--rows", spec.rows), ("--test-rows", spec.test_rows)] {
        let expected = (rows as f64) * (d as f64) * p;
        if expected > MAX_ENTRIES as f64 {
            return Err(DataError::Invalid(format!(
                "{what} {rows} x {d} features at sparsity {p} is about {expected:.3e} entries, over the cap of {MAX_ENTRIES}"
            )));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    // The model vector: μ (unit norm) or w*.
    let mut v: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
    match spec.kind {
        SynthKind::Logistic => {
            let norm = v
                .iter()
                .map(|a| a * a)
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE);
            v.iter_mut().for_each(|a| *a /= norm);
        }
        SynthKind::Linear => {
            let s = 1.0 / ((d as f64) * p).sqrt();
            v.iter_mut().for_each(|a| *a *= s);
        }
    }
    let geo = if p < 1.0 {
        Some(Geometric::new(p).map_err(|e| DataError::Invalid(format!("--sparsity {p}: {e}")))?)
    } else {
        None
    };
    let train = split(spec, &v, &geo, spec.rows, &mut rng)?;
    let test = if spec.test_rows > 0 {
        Some(split(spec, &v, &geo, spec.test_rows, &mut rng)?)
    } else {
        None
    };
    Ok((train, test))
}

fn split(
    spec: &SynthSpec,
    v: &[f64],
    geo: &Option<Geometric>,
    rows: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Dataset, DataError> {
    let d = spec.features;
    let mut y = Vec::with_capacity(rows);
    let mut pattern = Vec::new();
    let mut indptr = vec![0usize];
    let (mut indices, mut data) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        row_pattern(rng, geo, d, &mut pattern);
        match spec.kind {
            SynthKind::Logistic => {
                let label: f64 = if rng.gen::<bool>() { 1.0 } else { -1.0 };
                for &j in &pattern {
                    data.push(label * v[j as usize] + normal(rng));
                }
                y.push(label);
            }
            SynthKind::Linear => {
                let mut dot = 0.0;
                for &j in &pattern {
                    let x = normal(rng);
                    dot += x * v[j as usize];
                    data.push(x);
                }
                y.push(dot + 0.1 * normal(rng));
            }
        }
        indices.extend_from_slice(&pattern);
        indptr.push(data.len());
    }
    let task = match spec.kind {
        SynthKind::Logistic => Task::Binary,
        SynthKind::Linear => Task::Regression,
    };
    let x = if geo.is_some() {
        Features::Sparse(CsrMatrix::new(rows, d, indptr, indices, data)?)
    } else {
        Features::Dense(
            Array2::from_shape_vec((rows, d), data)
                .map_err(|e| DataError::Invalid(e.to_string()))?,
        )
    };
    Dataset::new(x, Array1::from(y), task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: SynthKind, sparsity: f64, seed: u64) -> SynthSpec {
        SynthSpec {
            kind,
            rows: 400,
            features: 20,
            sparsity,
            test_rows: 50,
            seed,
        }
    }

    #[test]
    fn deterministic_by_seed() {
        for kind in [SynthKind::Logistic, SynthKind::Linear] {
            for p in [1.0, 0.2] {
                let a = generate(&spec(kind, p, 7)).unwrap();
                let b = generate(&spec(kind, p, 7)).unwrap();
                let c = generate(&spec(kind, p, 8)).unwrap();
                assert_eq!(a, b);
                assert_ne!(a.0, c.0);
                assert_eq!(a.0.n_rows(), 400);
                assert_eq!(a.1.as_ref().unwrap().n_rows(), 50);
                assert_eq!(a.0.x.is_sparse(), p < 1.0);
            }
        }
    }

    #[test]
    fn logistic_is_a_balanced_separable_mixture() {
        let (d, _) = generate(&SynthSpec {
            rows: 4000,
            ..spec(SynthKind::Logistic, 1.0, 3)
        })
        .unwrap();
        assert_eq!(d.task, Task::Binary);
        let pos = d.y.iter().filter(|&&v| v == 1.0).count();
        assert!((1800..2200).contains(&pos), "{pos}");
        // Class means differ by about 2μ with |μ| = 1.
        let Features::Dense(x) = &d.x else { panic!() };
        let mut diff = [0.0; 20];
        for (r, row) in x.outer_iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                diff[j] += d.y[r] * v / 4000.0;
            }
        }
        let norm = diff.iter().map(|a| a * a).sum::<f64>().sqrt();
        assert!((0.8..1.2).contains(&norm), "{norm}");
    }

    #[test]
    fn sparse_rows_have_about_p_nonzeros_and_at_least_one() {
        let (d, _) = generate(&SynthSpec {
            features: 200,
            ..spec(SynthKind::Linear, 0.05, 1)
        })
        .unwrap();
        let Features::Sparse(m) = &d.x else { panic!() };
        let density = m.nnz() as f64 / (400.0 * 200.0);
        assert!((0.04..0.06).contains(&density), "{density}");
        assert!((0..m.n_rows()).all(|r| !m.row(r).0.is_empty()));
        let (d, _) = generate(&SynthSpec {
            features: 3,
            ..spec(SynthKind::Logistic, 0.001, 1)
        })
        .unwrap();
        let Features::Sparse(m) = &d.x else { panic!() };
        assert_eq!(m.nnz(), 400);
    }

    #[test]
    fn linear_targets_follow_the_model() {
        let (d, _) = generate(&spec(SynthKind::Linear, 1.0, 5)).unwrap();
        assert_eq!(d.task, Task::Regression);
        let var = d.y.iter().map(|v| v * v).sum::<f64>() / 400.0;
        assert!((0.5..2.0).contains(&var), "{var}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        for (s, want) in [
            (
                SynthSpec {
                    rows: 0,
                    ..spec(SynthKind::Linear, 1.0, 1)
                },
                "--rows",
            ),
            (
                SynthSpec {
                    features: 0,
                    ..spec(SynthKind::Linear, 1.0, 1)
                },
                "--features",
            ),
            (spec(SynthKind::Linear, 0.0, 1), "--sparsity"),
            (spec(SynthKind::Linear, f64::NAN, 1), "--sparsity"),
            (spec(SynthKind::Linear, 1.5, 1), "--sparsity"),
            (
                SynthSpec {
                    rows: 1 << 20,
                    features: 1 << 20,
                    ..spec(SynthKind::Linear, 1.0, 1)
                },
                "over the cap",
            ),
        ] {
            let e = generate(&s).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
