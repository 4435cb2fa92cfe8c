//! K-FAC preconditioning of a network's layers (Martens & Grosse 2015; GUIDE §8), by the eigen
//! method of kfac-pytorch (Pauloski et al., KAISA 2021).
//!
//! A layer with `units` outputs over `inputs` inputs has the gradient ∇W, a `units × (inputs+1)`
//! matrix (each unit's weights, then its bias: the models' parameter block, row-major, so the
//! block *is* the matrix). Its Kronecker factors are A = E[ā āᵀ] over the inputs with a 1 for the
//! bias and G = E[g gᵀ] over the pre-activation gradients; the Fisher block is A ⊗ G, and the
//! preconditioned gradient V solves G V A + γV = ∇W, i.e. vec(V) = (A ⊗ G + γI)⁻¹ vec(∇W). With
//! A = Q_A Λ_A Q_Aᵀ and G = Q_G Λ_G Q_Gᵀ:
//! V = Q_G [(Q_Gᵀ ∇W Q_A) ⊘ (λ_G λ_Aᵀ + γ)] Q_Aᵀ.
//!
//! [`LayerFactors`] keeps the running averages (decay ξ: F ← ξF + (1 − ξ)F_new; the first update
//! takes F_new as it is), the eigendecompositions of the last refresh (negative eigenvalues of
//! rounding clamped to 0, as kfac-pytorch does), and preconditions one block. [`precondition`]
//! does every layer and the KL clipping ν = min(1, √(κ / (lr² Σ_l ⟨V_l, ∇W_l⟩))).
//!
//! [`KfacState`] is what a run keeps between iterations (every layer's factors and the iteration
//! of the last factor update; checkpointed with the optimizer) and [`KfacSpec`] its settings
//! (`--kfac-*`): it folds the decoded factor *sums* in (packed upper triangles, [`packed_len`],
//! the layout the coded messages carry), refreshes the eigenbases, and preconditions a gradient.
//!
//! [`add_weighted_gram`] adds one block of rows' weighted outer products to a packed factor
//! sum (the models' `kfac_factors_into` call it per layer and row block).
//!
//! Not done here: computing the factors from a model's activations (the models do:
//! `Model::kfac_factors_into`, dense layers and the conv layers' KFC factors), their coded
//! decoding (`train::coded`).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};
use ndarray_linalg::{Eigh, UPLO};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of the K-FAC preconditioner.
#[derive(Debug, Error, PartialEq)]
pub enum KfacError {
    #[error("K-FAC: the eigendecomposition of layer {layer}'s {factor} factor ({n}×{n}) failed: {reason}")]
    Eigen {
        layer: usize,
        factor: &'static str,
        n: usize,
        reason: String,
    },
    #[error("K-FAC: {len} packed factor values, the layers need at least {need}")]
    Packed { len: usize, need: usize },
    #[error("K-FAC: layer {layer}'s {factor} factor is {rows}×{cols}, expected {n}×{n}")]
    Shape {
        layer: usize,
        factor: &'static str,
        rows: usize,
        cols: usize,
        n: usize,
    },
}

/// One symmetric factor, its running average and its last eigendecomposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    /// The running average.
    pub value: Array2<f64>,
    /// Eigenvectors (columns) of the last refresh.
    pub basis: Array2<f64>,
    /// Eigenvalues of the last refresh (clamped at 0).
    pub eigenvalues: Array1<f64>,
}

impl Factor {
    fn new(n: usize) -> Self {
        Factor {
            value: Array2::zeros((n, n)),
            basis: Array2::eye(n),
            eigenvalues: Array1::zeros(n),
        }
    }

    fn n(&self) -> usize {
        self.value.nrows()
    }
}

/// The factors of one layer: A over the `inputs + 1` inputs (bias last), G over the `units`.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerFactors {
    /// Index of the layer's first parameter.
    pub offset: usize,
    pub units: usize,
    pub inputs: usize,
    pub a: Factor,
    pub g: Factor,
    /// Whether a factor update has happened (the first one is taken as it is).
    pub updated: bool,
}

impl LayerFactors {
    /// Zero factors and identity eigenbases of the layer at `offset` with `units` units over
    /// `inputs` inputs.
    pub fn new(offset: usize, units: usize, inputs: usize) -> Self {
        LayerFactors {
            offset,
            units,
            inputs,
            a: Factor::new(inputs + 1),
            g: Factor::new(units),
            updated: false,
        }
    }

    /// Parameters of the layer.
    pub fn len(&self) -> usize {
        self.units * (self.inputs + 1)
    }

    /// Whether the layer has no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fold new estimates `a_new`, `g_new` into the running averages with `decay`.
    pub fn update(
        &mut self,
        layer: usize,
        a_new: ArrayView2<f64>,
        g_new: ArrayView2<f64>,
        decay: f64,
    ) -> Result<(), KfacError> {
        for (f, new, name) in [(&mut self.a, a_new, "A"), (&mut self.g, g_new, "G")] {
            let n = f.n();
            if new.dim() != (n, n) {
                return Err(KfacError::Shape {
                    layer,
                    factor: name,
                    rows: new.nrows(),
                    cols: new.ncols(),
                    n,
                });
            }
            if self.updated {
                f.value
                    .zip_mut_with(&new, |v, &x| *v = decay * *v + (1.0 - decay) * x);
            } else {
                f.value.assign(&new);
            }
        }
        self.updated = true;
        Ok(())
    }

    /// Eigendecompose both running averages (the symmetric eigensolver of LAPACK).
    pub fn refresh(&mut self, layer: usize) -> Result<(), KfacError> {
        for (f, name) in [(&mut self.a, "A"), (&mut self.g, "G")] {
            (f.eigenvalues, f.basis) = decompose(&f.value).map_err(|reason| KfacError::Eigen {
                layer,
                factor: name,
                n: f.n(),
                reason,
            })?;
        }
        Ok(())
    }

    /// `out = Q_G [(Q_Gᵀ ∇W Q_A) ⊘ (λ_G λ_Aᵀ + γ)] Q_Aᵀ` for the layer's gradient `grad` (its
    /// block, `units × (inputs + 1)` row-major); `scratch` holds `units × (inputs + 1)` values.
    pub fn precondition(
        &self,
        grad: ArrayView2<f64>,
        damping: f64,
        scratch: &mut Array2<f64>,
        out: &mut ArrayViewMut2<f64>,
    ) {
        let (qa, qg) = (&self.a.basis, &self.g.basis);
        // out = Q_Gᵀ ∇W, then scratch = out Q_A.
        general_mat_mul(1.0, &qg.t(), &grad, 0.0, out);
        general_mat_mul(1.0, &*out, qa, 0.0, scratch);
        for ((i, j), v) in scratch.indexed_iter_mut() {
            *v /= self.g.eigenvalues[i] * self.a.eigenvalues[j] + damping;
        }
        // out = Q_G scratch Q_Aᵀ.
        let mut tmp = Array2::zeros(scratch.dim());
        general_mat_mul(1.0, qg, &*scratch, 0.0, &mut tmp);
        general_mat_mul(1.0, &tmp, &qa.t(), 0.0, out);
    }
}

/// The eigenvalues (negative ones of rounding clamped to 0) and eigenvectors (columns,
/// row-major) of the symmetric `m`, from its upper triangle: the one eigensolver call of
/// rank 0's refresh and of a worker's share of it ([`eigen_packed`]), so both give the same
/// bits.
fn decompose(m: &Array2<f64>) -> Result<(Array1<f64>, Array2<f64>), String> {
    let (vals, vecs) = m.eigh(UPLO::Upper).map_err(|e| e.to_string())?;
    // Row-major, as a checkpoint reads it back: a resumed run multiplies the same layout.
    Ok((
        vals.mapv(|v| v.max(0.0)),
        vecs.as_standard_layout().into_owned(),
    ))
}

/// Spread the eigendecompositions of factors of sides `sizes` over `workers` workers, greedy
/// by cost (n³; KAISA's assignment): largest first, each to the least loaded worker (ties: the
/// lowest index). Returns each worker's factor indices in increasing order (the order of its
/// payload).
pub fn assign_eigen(sizes: &[usize], workers: usize) -> Vec<Vec<usize>> {
    let mut owned = vec![Vec::new(); workers];
    if workers == 0 {
        return owned;
    }
    let cost = |i: usize| (sizes[i] as f64).powi(3);
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&i, &j| cost(j).total_cmp(&cost(i)).then(i.cmp(&j)));
    let mut load = vec![0.0f64; workers];
    for i in order {
        let w = (0..workers)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .unwrap_or(0);
        load[w] += cost(i);
        owned[w].push(i);
    }
    for o in &mut owned {
        o.sort_unstable();
    }
    owned
}

/// The sides of the factors of layers `(units, inputs)` in refresh order: per layer A
/// (inputs + 1), then G (units).
pub fn factor_sides(layers: impl IntoIterator<Item = (usize, usize)>) -> Vec<usize> {
    let sides = layers
        .into_iter()
        .map(|(units, inputs)| [inputs + 1, units]);
    sides.flatten().collect()
}

/// Values a worker's eigen result carries for factors of sides `sizes`: per factor its n
/// eigenvalues, then its n×n basis row-major.
pub fn eigen_result_len(sizes: impl IntoIterator<Item = usize>) -> usize {
    sizes.into_iter().map(|n| n + n * n).sum()
}

/// A worker's share of a refresh: the factors packed in `packed` (upper triangles, sides
/// `sizes`, in order) eigendecomposed into `out` ([`eigen_result_len`] values).
pub fn eigen_packed(packed: &[f64], sizes: &[usize], out: &mut [f64]) -> Result<(), String> {
    let need = sizes.iter().map(|&n| tri(n)).sum::<usize>();
    let want = eigen_result_len(sizes.iter().copied());
    if packed.len() != need || out.len() != want {
        return Err(format!(
            "K-FAC eigen share: {} packed values and {} result values for sides {sizes:?} (expected {need} and {want})",
            packed.len(),
            out.len()
        ));
    }
    let (mut at, mut to) = (0, 0);
    for &n in sizes {
        let mut m = Array2::zeros((n, n));
        unpack_upper(&packed[at..at + tri(n)], n, 1.0, &mut m);
        at += tri(n);
        let (vals, basis) = decompose(&m)?;
        out[to..to + n].copy_from_slice(vals.as_slice().unwrap_or(&[]));
        to += n;
        for (o, &b) in out[to..to + n * n].iter_mut().zip(basis.iter()) {
            *o = b;
        }
        to += n * n;
    }
    Ok(())
}

/// Precondition every layer of `grad` into `out` (entries outside the layers are copied), then
/// scale by the KL clip ν when `kl_clip` = Some((lr, κ)). Returns ν (1 without clipping).
pub fn precondition(
    layers: &[LayerFactors],
    grad: &[f64],
    damping: f64,
    kl_clip: Option<(f64, f64)>,
    out: &mut [f64],
) -> f64 {
    out.copy_from_slice(grad);
    let mut vg = 0.0;
    for l in layers {
        let shape = (l.units, l.inputs + 1);
        let range = l.offset..l.offset + l.len();
        let g =
            ArrayView2::from_shape(shape, &grad[range.clone()]).unwrap_or_else(|_| unreachable!());
        let mut o =
            ArrayViewMut2::from_shape(shape, &mut out[range]).unwrap_or_else(|_| unreachable!());
        let mut scratch = Array2::zeros(shape);
        l.precondition(g, damping, &mut scratch, &mut o);
        vg += (&o * &g).sum();
    }
    let nu = match kl_clip {
        Some((lr, kappa)) if vg > 0.0 => (kappa / (lr * lr * vg)).sqrt().min(1.0),
        _ => 1.0,
    };
    if nu != 1.0 {
        for l in layers {
            for v in &mut out[l.offset..l.offset + l.len()] {
                *v *= nu;
            }
        }
    }
    nu
}

/// Where the eigendecompositions of a refresh run (`--kfac-eig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EigSite {
    /// All at rank 0.
    #[default]
    Rank0,
    /// Spread over the workers ([`assign_eigen`]), sent back.
    Workers,
    /// Measured: the first refresh at rank 0 (which needs every eigenbasis), the second spread
    /// over the workers, the third at rank 0; from the fourth on where its refresh was faster
    /// ([`EigAuto`]).
    Auto,
}

impl EigSite {
    /// The name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            EigSite::Rank0 => "rank0",
            EigSite::Workers => "workers",
            EigSite::Auto => "auto",
        }
    }
    /// Whether the workers are ready to answer eigen rounds (workers, auto).
    pub fn spreads(&self) -> bool {
        matches!(self, EigSite::Workers | EigSite::Auto)
    }
}

/// `--kfac-eig auto`: where each refresh of this process runs, from the measured times of the
/// second (workers; a round in which a factor fell back counts as infinitely slow) and third
/// (rank 0) refreshes. The first runs at rank 0: it has no previous
/// eigenbasis to fall back to, and it warms rank 0's eigensolver up, untimed (the workers' first
/// round, timed, carries their own warm-up). After a resume the measurement starts again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EigAuto {
    /// Refreshes of this process so far.
    refreshes: u64,
    /// Seconds of the workers' timed round and of rank 0's timed refresh.
    workers_s: Option<f64>,
    rank0_s: Option<f64>,
}

impl EigAuto {
    /// Where the next refresh runs.
    pub fn next(&self) -> EigSite {
        match (self.refreshes, self.workers_s, self.rank0_s) {
            (1, _, _) => EigSite::Workers,
            (0 | 2, _, _) => EigSite::Rank0,
            (_, Some(w), Some(r)) if w < r => EigSite::Workers,
            _ => EigSite::Rank0,
        }
    }
    /// Record a refresh at `site` that took `seconds` (infinite: a round that fell back);
    /// returns the choice when this refresh completed the measurement (the third) or, on the
    /// workers after it, fell back (rank 0 from then on), for the log.
    pub fn record(&mut self, site: EigSite, seconds: f64) -> Option<(EigSite, f64, f64)> {
        let n = self.refreshes;
        self.refreshes += 1;
        match (n, site) {
            (1, EigSite::Workers) => self.workers_s = Some(seconds),
            (2, EigSite::Rank0) => self.rank0_s = Some(seconds),
            (3.., EigSite::Workers) if seconds.is_infinite() => self.workers_s = Some(seconds),
            _ => return None,
        }
        if self.refreshes < 3 {
            return None;
        }
        Some((
            self.next(),
            self.workers_s.unwrap_or(f64::INFINITY),
            self.rank0_s.unwrap_or(f64::INFINITY),
        ))
    }
}

/// K-FAC's settings (`--kfac-decay`, `--kfac-damping`, `--kfac-kl-clip`,
/// `--kfac-update-every`, `--kfac-inv-every`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KfacSpec {
    /// Running-average decay ξ of the factors.
    pub decay: f64,
    /// Damping γ added to λ_G λ_Aᵀ.
    pub damping: f64,
    /// KL clip κ (0: no clipping).
    pub kl_clip: f64,
    /// Fold new factors in every this many iterations.
    pub update_every: u64,
    /// Eigendecompose the factors every this many iterations.
    pub inv_every: u64,
}

impl Default for KfacSpec {
    /// ξ = 0.95, γ = 0.003, κ = 0.001, factors every iteration, eigenbases every 10
    /// (kfac-pytorch's decay and clip; KAISA's damping).
    fn default() -> Self {
        KfacSpec {
            decay: 0.95,
            damping: 0.003,
            kl_clip: 0.001,
            update_every: 1,
            inv_every: 10,
        }
    }
}

impl KfacSpec {
    /// Whether iteration `t` carries new factors.
    pub fn updates_at(&self, t: u64) -> bool {
        t % self.update_every.max(1) == 0
    }
    /// Whether iteration `t` refreshes the eigenbases (after folding its factors in).
    pub fn refreshes_at(&self, t: u64) -> bool {
        t % self.inv_every.max(1) == 0
    }
}

/// Values of the packed upper triangle of an n×n symmetric matrix.
pub fn tri(n: usize) -> usize {
    n * (n + 1) / 2
}

/// Values of every layer's packed factors: per layer the upper triangle of A, row by row, then
/// that of G (`layers` as (units, inputs)).
pub fn packed_len(layers: impl IntoIterator<Item = (usize, usize)>) -> usize {
    layers
        .into_iter()
        .map(|(units, inputs)| tri(inputs + 1) + tri(units))
        .sum()
}

/// Values rank 0 (or the serial reference) holds for K-FAC on layers `(units, inputs)`, so
/// that a run is sized before anything is allocated: per layer A and G's running averages,
/// eigenbases and eigenvalues; for the largest layer the unpacked new factors, the eigensolver's
/// copy and workspace (at most 3n² + 8n for an n×n factor) and the preconditioning scratch (two
/// blocks); the preconditioned gradient (`dim` values). The packed factor sums the messages
/// carry are not counted here ([`packed_len`] per message). `None` on overflow.
pub fn rank0_values(layers: impl IntoIterator<Item = (usize, usize)>, dim: u128) -> Option<u128> {
    let (mut kept, mut unpacked, mut side, mut block) = (0u128, 0u128, 0u128, 0u128);
    for (units, inputs) in layers {
        let (g, a) = (units as u128, (inputs as u128).checked_add(1)?);
        let squares = a.checked_mul(a)?.checked_add(g.checked_mul(g)?)?;
        kept = kept.checked_add(squares.checked_mul(2)?.checked_add(a + g)?)?;
        unpacked = unpacked.max(squares);
        side = side.max(a.max(g));
        block = block.max(g.checked_mul(a)?);
    }
    let eigen = side
        .checked_mul(side)?
        .checked_mul(3)?
        .checked_add(side * 8)?;
    kept.checked_add(unpacked)?
        .checked_add(eigen)?
        .checked_add(block.checked_mul(2)?)?
        .checked_add(dim)
}

/// Write the upper triangle of `m` row by row into the front of `out`; the values written.
pub fn pack_upper(m: ArrayView2<f64>, out: &mut [f64]) -> usize {
    let n = m.nrows();
    let mut k = 0;
    for i in 0..n {
        for j in i..n {
            out[k] = m[(i, j)];
            k += 1;
        }
    }
    k
}

/// `out` (a packed upper triangle, n(n + 1)/2 values) += the upper triangle of
/// Σ_i c(i) v_i v_iᵀ over the rows v_i of `v` (r × n): one GEMM Vᵀ (c ⊙ V). `scaled` (r·n
/// values) and `square` (n² values) are the caller's scratch, so nothing is allocated.
pub fn add_weighted_gram(
    v: ArrayView2<f64>,
    c: impl Fn(usize) -> f64,
    scaled: &mut [f64],
    square: &mut [f64],
    out: &mut [f64],
) {
    let (r, n) = v.dim();
    let mut vc =
        ArrayViewMut2::from_shape((r, n), &mut scaled[..r * n]).unwrap_or_else(|_| unreachable!());
    for (i, (mut dst, src)) in vc.outer_iter_mut().zip(v.outer_iter()).enumerate() {
        let ci = c(i);
        dst.zip_mut_with(&src, |d, &s| *d = s * ci);
    }
    let mut sq =
        ArrayViewMut2::from_shape((n, n), &mut square[..n * n]).unwrap_or_else(|_| unreachable!());
    general_mat_mul(1.0, &v.t(), &vc, 0.0, &mut sq);
    let mut k = 0;
    for i in 0..n {
        for (o, &s) in out[k..k + n - i].iter_mut().zip(sq.row(i).iter().skip(i)) {
            *o += s;
        }
        k += n - i;
    }
}

/// The symmetric matrix of the packed upper triangle `packed` (n(n+1)/2 values) times `scale`.
pub fn unpack_upper(packed: &[f64], n: usize, scale: f64, out: &mut Array2<f64>) {
    let mut k = 0;
    for i in 0..n {
        for j in i..n {
            let v = packed[k] * scale;
            out[(i, j)] = v;
            out[(j, i)] = v;
            k += 1;
        }
    }
}

/// The K-FAC state of a run: every layer's factors and eigenbases, and the iteration of the
/// last factor update (None before the first).
#[derive(Debug, Clone, PartialEq)]
pub struct KfacState {
    pub layers: Vec<LayerFactors>,
    pub last_update: Option<u64>,
}

impl KfacState {
    /// Zero factors and identity bases for the layers `(offset, units, inputs)`.
    pub fn new(layers: impl IntoIterator<Item = (usize, usize, usize)>) -> Self {
        KfacState {
            layers: layers
                .into_iter()
                .map(|(offset, units, inputs)| LayerFactors::new(offset, units, inputs))
                .collect(),
            last_update: None,
        }
    }

    /// Values of the packed factors ([`packed_len`]).
    pub fn packed_len(&self) -> usize {
        packed_len(self.layers.iter().map(|l| (l.units, l.inputs)))
    }

    /// Fold the packed factor sums `sums` (over `rows` rows) of iteration `t` into the running
    /// averages with `decay`.
    pub fn update_packed(
        &mut self,
        sums: &[f64],
        rows: usize,
        decay: f64,
        t: u64,
    ) -> Result<(), KfacError> {
        let scale = 1.0 / rows.max(1) as f64;
        let mut at = 0;
        for (i, l) in self.layers.iter_mut().enumerate() {
            let (na, ng) = (l.inputs + 1, l.units);
            let (mut a, mut g) = (Array2::zeros((na, na)), Array2::zeros((ng, ng)));
            let need = at + tri(na) + tri(ng);
            if sums.len() < need {
                return Err(KfacError::Packed {
                    len: sums.len(),
                    need,
                });
            }
            unpack_upper(&sums[at..at + tri(na)], na, scale, &mut a);
            at += tri(na);
            unpack_upper(&sums[at..at + tri(ng)], ng, scale, &mut g);
            at += tri(ng);
            l.update(i, a.view(), g.view(), decay)?;
        }
        self.last_update = Some(t);
        Ok(())
    }

    /// The sides of the factors in refresh order: per layer A (inputs + 1), then G (units).
    pub fn factor_sides(&self) -> Vec<usize> {
        factor_sides(self.layers.iter().map(|l| (l.units, l.inputs)))
    }

    fn factor(&self, i: usize) -> Option<&Factor> {
        let l = self.layers.get(i / 2)?;
        Some(if i % 2 == 0 { &l.a } else { &l.g })
    }

    /// Pack the running averages of factors `which` (indices in [`Self::factor_sides`] order)
    /// into `out`, upper triangles one after the other; the values written.
    pub fn pack_factors(&self, which: &[usize], out: &mut [f64]) -> usize {
        let mut at = 0;
        for f in which.iter().filter_map(|&i| self.factor(i)) {
            at += pack_upper(f.value.view(), &mut out[at..]);
        }
        at
    }

    /// Take the eigendecompositions of factors `which` from a worker's result `res`
    /// ([`eigen_packed`]'s layout).
    pub fn install_eigen(&mut self, which: &[usize], res: &[f64]) -> Result<(), KfacError> {
        let sides = self.factor_sides();
        let need = eigen_result_len(which.iter().filter_map(|&i| sides.get(i).copied()));
        if res.len() < need {
            return Err(KfacError::Packed {
                len: res.len(),
                need,
            });
        }
        let mut at = 0;
        for &i in which {
            let Some(l) = self.layers.get_mut(i / 2) else {
                continue;
            };
            let f = if i % 2 == 0 { &mut l.a } else { &mut l.g };
            let n = f.n();
            f.eigenvalues = Array1::from(res[at..at + n].to_vec());
            at += n;
            f.basis = Array2::from_shape_vec((n, n), res[at..at + n * n].to_vec())
                .unwrap_or_else(|_| unreachable!());
            at += n * n;
        }
        Ok(())
    }

    /// Eigendecompose factors `which` ([`Self::factor_sides`] order) only.
    pub fn refresh_some(&mut self, which: &[usize]) -> Result<(), KfacError> {
        for &i in which {
            let Some(l) = self.layers.get_mut(i / 2) else {
                continue;
            };
            let (f, name) = if i % 2 == 0 {
                (&mut l.a, "A")
            } else {
                (&mut l.g, "G")
            };
            (f.eigenvalues, f.basis) = decompose(&f.value).map_err(|reason| KfacError::Eigen {
                layer: i / 2,
                factor: name,
                n: f.n(),
                reason,
            })?;
        }
        Ok(())
    }

    /// Eigendecompose every layer's factors.
    pub fn refresh(&mut self) -> Result<(), KfacError> {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.refresh(i)?;
        }
        Ok(())
    }

    /// Every value of the state, in a fixed order (for checkpoint digests).
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.layers.iter().flat_map(|l| {
            [&l.a, &l.g].into_iter().flat_map(|f| {
                f.value
                    .iter()
                    .chain(f.basis.iter())
                    .chain(f.eigenvalues.iter())
                    .copied()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;

    fn spd(n: usize, seed: u64) -> Array2<f64> {
        let m = Array2::from_shape_fn((n, n), |(i, j)| {
            (((i * 7 + j * 3) as u64 + seed) % 11) as f64 / 11.0 - 0.4
        });
        m.dot(&m.t()) + Array2::<f64>::eye(n) * 0.05
    }

    /// auto: rank 0, the workers, rank 0, then the faster of the two timed refreshes; a
    /// "workers" refresh that ran at rank 0 (no workers) leaves rank 0 chosen.
    #[test]
    fn eig_auto_measures_then_picks_the_faster() {
        let run = |workers_s: f64, rank0_s: f64| {
            let mut a = EigAuto::default();
            let mut sites = Vec::new();
            let mut chosen = None;
            for _ in 0..5 {
                let site = a.next();
                sites.push(site);
                let s = if site == EigSite::Workers {
                    workers_s
                } else {
                    rank0_s
                };
                if let Some(c) = a.record(site, s) {
                    chosen = Some(c);
                }
            }
            (sites, chosen)
        };
        use EigSite::{Rank0, Workers};
        let (sites, chosen) = run(0.1, 0.3);
        assert_eq!(sites, [Rank0, Workers, Rank0, Workers, Workers]);
        assert_eq!(chosen, Some((Workers, 0.1, 0.3)));
        let (sites, chosen) = run(0.3, 0.1);
        assert_eq!(sites, [Rank0, Workers, Rank0, Rank0, Rank0]);
        assert_eq!(chosen, Some((Rank0, 0.3, 0.1)));
        // Ties go to rank 0 (no round to wait for), and so does a round that fell back (timed
        // as never by the caller).
        assert_eq!(run(0.2, 0.2).0[3], Rank0);
        assert_eq!(run(f64::INFINITY, 5.0).0[3], Rank0);
        // The serial reference: the second refresh ran at rank 0 after all.
        let mut a = EigAuto::default();
        a.record(Rank0, 1.0);
        a.record(Rank0, 0.01);
        assert_eq!(a.record(Rank0, 1.0), Some((Rank0, f64::INFINITY, 1.0)));
        assert_eq!(a.next(), Rank0);
        // Chosen, the workers' round falls back later: rank 0 from then on.
        let mut a = EigAuto::default();
        a.record(Rank0, 1.0);
        a.record(Workers, 0.1);
        assert_eq!(a.record(Rank0, 1.0), Some((Workers, 0.1, 1.0)));
        assert_eq!(a.record(Workers, 0.2), None);
        assert_eq!(a.next(), Workers);
        assert_eq!(
            a.record(Workers, f64::INFINITY),
            Some((Rank0, f64::INFINITY, 1.0))
        );
        assert_eq!(a.next(), Rank0);
    }

    #[test]
    fn running_averages_and_kl_clip() {
        let mut l = LayerFactors::new(0, 2, 1);
        let (a1, g1) = (spd(2, 1), spd(2, 2));
        let (a2, g2) = (spd(2, 3), spd(2, 4));
        l.update(0, a1.view(), g1.view(), 0.9).unwrap();
        assert_eq!(l.a.value, a1);
        l.update(0, a2.view(), g2.view(), 0.9).unwrap();
        let want = &a1 * 0.9 + &a2 * 0.1;
        assert!((&l.a.value - &want).iter().all(|d| d.abs() < 1e-15));
        let e = l.update(0, a2.view(), spd(3, 1).view(), 0.9).unwrap_err();
        assert!(
            e.to_string().contains("G factor is 3×3, expected 2×2"),
            "{e}"
        );
        l.refresh(0).unwrap();
        let grad = [1.0, -2.0, 0.5, 3.0];
        let mut out = [0.0; 4];
        let nu1 = precondition(std::slice::from_ref(&l), &grad, 0.1, None, &mut out);
        let unclipped = Array1::from(out.to_vec());
        let vg: f64 = unclipped.iter().zip(&grad).map(|(v, g)| v * g).sum();
        assert_eq!(nu1, 1.0);
        assert!(vg > 0.0);
        // κ a quarter of lr²·⟨V, ∇⟩: ν = ½.
        let lr = 0.3;
        let nu = precondition(
            std::slice::from_ref(&l),
            &grad,
            0.1,
            Some((lr, 0.25 * lr * lr * vg)),
            &mut out,
        );
        assert!((nu - 0.5).abs() < 1e-12, "{nu}");
        for (o, u) in out.iter().zip(&unclipped) {
            assert!((o - 0.5 * u).abs() < 1e-12);
        }
    }

    /// The memory sizing, counted by hand for one layer of 2 units over 3 inputs: A 4×4 and G
    /// 2×2 (values, bases, eigenvalues: 2·20 + 6), their unpacked copies (20), the eigensolver
    /// (3·16 + 8·4), two 2×4 blocks, and the 8 parameters of the preconditioned gradient.
    #[test]
    fn rank0_values_counts_every_buffer() {
        assert_eq!(rank0_values([(2, 3)], 8), Some(46 + 20 + 80 + 16 + 8));
        assert_eq!(rank0_values([(usize::MAX, usize::MAX)], 0), None);
    }

    /// Spreading a refresh: the greedy plan balances n³ (the 784-256-128-10 MLP's six factors
    /// over 3 workers: the 785 A alone, then the rest), and packing the factors, the workers'
    /// eigendecompositions and installing their results give rank 0's refresh bit for bit.
    #[test]
    fn a_spread_refresh_equals_rank_0s_bit_for_bit() {
        assert_eq!(
            assign_eigen(&[785, 256, 257, 128, 129, 10], 3),
            vec![vec![0], vec![2, 3], vec![1, 4, 5]]
        );
        assert_eq!(assign_eigen(&[4, 4], 3), vec![vec![0], vec![1], vec![]]);
        let mut state = KfacState::new([(0, 3, 5), (18, 4, 3)]);
        let dims = [(3, 5), (4, 3)];
        let mut buf = vec![0.0; state.packed_len()];
        let mut at = 0;
        for (i, &(units, inputs)) in dims.iter().enumerate() {
            at += pack_upper(spd(inputs + 1, 3 + i as u64).view(), &mut buf[at..]);
            at += pack_upper(spd(units, 9 + i as u64).view(), &mut buf[at..]);
        }
        state.update_packed(&buf, 7, 0.9, 0).unwrap();
        let mut spread = state.clone();
        state.refresh().unwrap();
        let sides = spread.factor_sides();
        assert_eq!(sides, vec![6, 3, 4, 4]);
        for which in assign_eigen(&sides, 2) {
            let mine: Vec<usize> = which.iter().map(|&i| sides[i]).collect();
            let mut packed = vec![0.0; mine.iter().map(|&n| tri(n)).sum()];
            assert_eq!(spread.pack_factors(&which, &mut packed), packed.len());
            let mut res = vec![f64::NAN; eigen_result_len(mine.iter().copied())];
            eigen_packed(&packed, &mine, &mut res).unwrap();
            spread.install_eigen(&which, &res).unwrap();
        }
        assert_eq!(spread, state);
        let e = eigen_packed(&[0.0; 5], &[3], &mut [0.0; 12]).unwrap_err();
        assert!(e.contains("5 packed values"), "{e}");
    }

    /// The packed upper triangles (the coded messages' layout) fold in exactly as the full
    /// matrices over the rows, every layer in order, and a short buffer is refused.
    #[test]
    fn packed_factor_sums_fold_in_like_the_matrices() {
        let dims = [(2, 3), (3, 2)];
        let mut packed_state = KfacState::new([(0, 2, 3), (8, 3, 2)]);
        let mut full = packed_state.clone();
        assert_eq!(packed_state.packed_len(), packed_len(dims));
        assert_eq!(packed_state.packed_len(), 10 + 3 + 6 + 6);
        let rows = 4;
        for (t, seed) in [(0u64, 1u64), (1, 5)] {
            let mats: Vec<(Array2<f64>, Array2<f64>)> = dims
                .iter()
                .enumerate()
                .map(|(i, &(units, inputs))| {
                    (
                        spd(inputs + 1, seed + i as u64),
                        spd(units, seed + 7 + i as u64),
                    )
                })
                .collect();
            let mut buf = vec![0.0; packed_state.packed_len()];
            let mut at = 0;
            for (a, g) in &mats {
                at += pack_upper(a.view(), &mut buf[at..]);
                at += pack_upper(g.view(), &mut buf[at..]);
            }
            assert_eq!(at, buf.len());
            packed_state.update_packed(&buf, rows, 0.9, t).unwrap();
            for (i, (l, (a, g))) in full.layers.iter_mut().zip(&mats).enumerate() {
                let inv = 1.0 / rows as f64;
                l.update(i, (a * inv).view(), (g * inv).view(), 0.9)
                    .unwrap();
            }
            assert_eq!(packed_state.last_update, Some(t));
            for (p, f) in packed_state.layers.iter().zip(&full.layers) {
                for (x, y) in [(&p.a.value, &f.a.value), (&p.g.value, &f.g.value)] {
                    assert!((x - y).iter().all(|d| d.abs() < 1e-15));
                }
            }
        }
        let e = packed_state
            .update_packed(&[0.0; 12], rows, 0.9, 2)
            .unwrap_err();
        assert_eq!(e, KfacError::Packed { len: 12, need: 13 });
    }
}
