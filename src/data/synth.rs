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
//!
//! With `zipf` = a (and p < 1), columns are skewed like one-hot categorical data (Amazon Employee
//! Access: ~240,000 columns, ~44 non-zeros per row): every row has exactly K = max(1, round(p·d))
//! distinct columns, each drawn from P(j) ∝ 1/(j + 1)^a (repeats drawn again). For `Logistic`
//! the mean vector μ is then scaled so that a row's present features carry E[Σ_{j∈row} μ_j²] = 1
//! (with P(j ∈ row) ≈ min(1, K·P(j))), so the classes stay as separable however wide the data;
//! without `zipf` μ keeps unit norm, as before.

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
    /// Zipf exponent a of the column distribution (None: uniform columns); needs sparsity < 1.
    pub zipf: Option<f64>,
}

/// How the columns of a sparse row are drawn.
#[derive(Debug, Clone)]
enum Columns {
    /// Every column, dense.
    All,
    /// Each column independently with the probability of this geometric gap distribution.
    Uniform(Geometric),
    /// Exactly `per_row` distinct columns from the cumulative distribution `cdf` (Zipf).
    Zipf { cdf: Vec<f64>, per_row: usize },
}

/// Most draws a Zipf row may take to find its distinct columns (per column).
const ZIPF_TRIES: usize = 1000;

/// Most stored entries of one generated split (8 bytes each dense: 64 GiB).
pub const MAX_ENTRIES: u64 = 1 << 33;

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// The column indices present in one row (sorted, at least one).
fn row_pattern(
    rng: &mut ChaCha8Rng,
    cols: &Columns,
    d: usize,
    out: &mut Vec<u32>,
) -> Result<(), DataError> {
    out.clear();
    match cols {
        Columns::All => out.extend(0..d as u32),
        Columns::Zipf { cdf, per_row } => {
            let mut tries = 0;
            while out.len() < *per_row {
                tries += 1;
                if tries > ZIPF_TRIES * per_row {
                    return Err(DataError::Invalid(format!(
                        "--zipf: could not draw {per_row} distinct columns per row in {tries} tries; lower the exponent or --sparsity"
                    )));
                }
                let u: f64 = rng.gen();
                let j = cdf.partition_point(|&c| c <= u).min(d - 1) as u32;
                if !out.contains(&j) {
                    out.push(j);
                }
            }
            out.sort_unstable();
        }
        Columns::Uniform(g) => {
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
    Ok(())
}

/// The cumulative Zipf distribution P(j) ∝ 1/(j + 1)^a over d columns (last entry 1).
fn zipf_cdf(d: usize, a: f64) -> Vec<f64> {
    let mut cdf: Vec<f64> = (0..d).map(|j| ((j + 1) as f64).powf(-a)).collect();
    let mut acc = 0.0;
    for c in cdf.iter_mut() {
        acc += *c;
        *c = acc;
    }
    cdf.iter_mut().for_each(|c| *c /= acc);
    cdf
}

/// The column distribution of `spec` (checked: zipf needs p < 1 and a finite exponent > 0).
fn columns(spec: &SynthSpec) -> Result<Columns, DataError> {
    let (p, d) = (spec.sparsity, spec.features);
    match spec.zipf {
        Some(a) if !(a.is_finite() && a > 0.0) => Err(DataError::Invalid(format!(
            "--zipf must be a finite exponent > 0 (got {a})"
        ))),
        Some(_) if p >= 1.0 => Err(DataError::Invalid(
            "--zipf needs --sparsity below 1 (each row has round(sparsity × features) columns)"
                .into(),
        )),
        Some(a) => Ok(Columns::Zipf {
            cdf: zipf_cdf(d, a),
            per_row: ((p * d as f64).round() as usize).clamp(1, d),
        }),
        None if p < 1.0 => {
            Ok(Columns::Uniform(Geometric::new(p).map_err(|e| {
                DataError::Invalid(format!("--sparsity {p}: {e}"))
            })?))
        }
        None => Ok(Columns::All),
    }
}

/// Scale μ so that E[Σ_{j∈row} μ_j²] = 1 under the Zipf columns, P(j ∈ row) ≈ min(1, K·P(j)).
fn scale_to_rows(v: &mut [f64], cols: &Columns) {
    if let Columns::Zipf { cdf, per_row } = cols {
        let mut prev = 0.0;
        let mut e = 0.0;
        for (x, &c) in v.iter().zip(cdf) {
            e += (*per_row as f64 * (c - prev)).min(1.0) * x * x;
            prev = c;
        }
        if e > 0.0 {
            let s = e.sqrt();
            v.iter_mut().for_each(|x| *x /= s);
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
    let cols = columns(spec)?;
    if spec.kind == SynthKind::Logistic {
        scale_to_rows(&mut v, &cols);
    }
    let train = split(spec, &v, &cols, spec.rows, &mut rng)?;
    let test = if spec.test_rows > 0 {
        Some(split(spec, &v, &cols, spec.test_rows, &mut rng)?)
    } else {
        None
    };
    Ok((train, test))
}

fn split(
    spec: &SynthSpec,
    v: &[f64],
    cols: &Columns,
    rows: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Dataset, DataError> {
    let d = spec.features;
    let mut y = Vec::with_capacity(rows);
    let mut pattern = Vec::new();
    let mut indptr = vec![0usize];
    let (mut indices, mut data) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        row_pattern(rng, cols, d, &mut pattern)?;
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
    let x = if !matches!(cols, Columns::All) {
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
            zipf: None,
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

    /// Zipf columns: exactly K distinct sorted columns a row, frequencies falling with the
    /// column index as 1/(j + 1)^a, deterministic by seed; the logistic classes stay separable
    /// (class means differ by about 2μ with E Σ_{j∈row} μ_j² = 1); bad exponents are refused.
    #[test]
    fn zipf_columns_are_skewed_with_k_per_row_and_separable() {
        let zspec = |seed| SynthSpec {
            rows: 4000,
            features: 1000,
            sparsity: 0.01,
            zipf: Some(1.0),
            ..spec(SynthKind::Logistic, 0.01, seed)
        };
        let (d, t) = generate(&zspec(4)).unwrap();
        assert_eq!(generate(&zspec(4)).unwrap().0, d);
        assert!(t.is_some());
        let Features::Sparse(m) = &d.x else { panic!() };
        let mut freq = vec![0usize; 1000];
        for r in 0..m.n_rows() {
            let (idx, _) = m.row(r);
            assert_eq!(idx.len(), 10, "row {r}");
            assert!(idx.windows(2).all(|w| w[0] < w[1]));
            idx.iter().for_each(|&j| freq[j as usize] += 1);
        }
        // Column 0 in nearly every row; the head falls off as 1/(j + 1).
        assert!(freq[0] > 3000, "{}", freq[0]);
        let head: usize = freq[10..20].iter().sum();
        let tail: usize = freq[100..110].iter().sum();
        assert!(head > 5 * tail, "{head} vs {tail}");
        // Separability: a classifier with the true direction beats chance clearly.
        let mut mean_diff = vec![0.0; 1000];
        for r in 0..m.n_rows() {
            let (idx, val) = m.row(r);
            for (&j, &x) in idx.iter().zip(val) {
                mean_diff[j as usize] += d.y[r] * x;
            }
        }
        let correct = (0..m.n_rows())
            .filter(|&r| {
                let (idx, val) = m.row(r);
                let s: f64 = idx
                    .iter()
                    .zip(val)
                    .map(|(&j, &x)| mean_diff[j as usize] * x)
                    .sum();
                s * d.y[r] > 0.0
            })
            .count();
        assert!(correct > 2800, "{correct} of 4000");
        for (a, p, want) in [
            (0.0, 0.01, "--zipf must be a finite exponent"),
            (f64::NAN, 0.01, "--zipf must be a finite exponent"),
            (1.0, 1.0, "--zipf needs --sparsity below 1"),
        ] {
            let s = SynthSpec {
                zipf: Some(a),
                sparsity: p,
                ..zspec(1)
            };
            let e = generate(&s).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
