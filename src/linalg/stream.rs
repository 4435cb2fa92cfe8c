//! Streaming decoder of the systematic code G = [I_k; P]: decodes only the missing blocks.
//!
//! Workers 0..k return the data blocks' results themselves; parity worker k + p returns
//! Σ_j P_pj X_j. As results arrive, each parity result is reduced to its *residual*
//! y_p − Σ_{j known} P_pj X_j (a known block is subtracted from every held parity residual the
//! moment either arrives), so when s systematic results are missing and s parity results are in,
//! [`StreamingDecoder::try_decode`] is one s × s solve P_{R,M} X_M = residuals, and the known
//! blocks are returned exactly as received. With no systematic result missing there is no solve.

use ndarray::{s, Array2, ArrayView2};

use super::code::{rows_to_blocks, Decoded, Family, MdsCode};
use super::{svd_solve, LinalgError};

/// Work done by a [`StreamingDecoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamStats {
    /// Block AXPYs (residual −= P_pj · X_j), each over one result block.
    pub block_updates: usize,
    /// Linear solves done (each over the missing blocks only).
    pub solves: usize,
    /// Size s of the last solve (number of missing systematic blocks).
    pub solve_dim: usize,
    /// Condition number of the last solve (1 when nothing was missing).
    pub cond: f64,
}

/// Incremental decoder of a [`Family::Systematic`] code (results are r·b × c with r = 1).
#[derive(Debug)]
pub struct StreamingDecoder<'a> {
    code: &'a MdsCode,
    rows: usize,
    shape: Option<(usize, usize)>,
    known: Vec<Option<Array2<f64>>>,
    parity: Vec<(usize, Array2<f64>)>,
    seen: Vec<bool>,
    stats: StreamStats,
}

impl<'a> StreamingDecoder<'a> {
    /// A decoder for `code` (must be systematic) whose uncoded result has `rows` rows.
    pub fn new(code: &'a MdsCode, rows: usize) -> Result<Self, LinalgError> {
        if code.family() != Family::Systematic {
            return Err(LinalgError::invalid(
                code.family(),
                "the streaming decoder needs the systematic code",
            ));
        }
        Ok(StreamingDecoder {
            code,
            rows,
            shape: None,
            known: vec![None; code.threshold()],
            parity: Vec::new(),
            seen: vec![false; code.n_workers()],
            stats: StreamStats {
                cond: 1.0,
                ..StreamStats::default()
            },
        })
    }

    /// What the decoder has done so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Systematic blocks not yet received.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.known.len())
            .filter(|&j| self.known[j].is_none())
            .collect()
    }

    /// Take worker `worker`'s result (b × c).
    pub fn add_result(&mut self, worker: usize, block: ArrayView2<f64>) -> Result<(), LinalgError> {
        let k = self.code.threshold();
        if worker >= self.code.n_workers() || self.seen[worker] {
            return Err(LinalgError::invalid(
                self.code.family(),
                format!(
                    "worker {worker} is out of range (n = {}) or already reported",
                    self.code.n_workers()
                ),
            ));
        }
        match self.shape {
            Some(sh) if sh != block.dim() => {
                return Err(LinalgError::Shape(format!(
                    "worker {worker}: result {:?}, expected {sh:?}",
                    block.dim()
                )))
            }
            _ => self.shape = Some(block.dim()),
        }
        self.seen[worker] = true;
        let g = self.code.generator();
        if worker < k {
            for (p, res) in self.parity.iter_mut() {
                res.scaled_add(-g[[*p, worker]], &block);
                self.stats.block_updates += 1;
            }
            self.known[worker] = Some(block.to_owned());
        } else {
            let mut res = block.to_owned();
            for (j, x) in self.known.iter().enumerate() {
                if let Some(x) = x {
                    res.scaled_add(-g[[worker, j]], x);
                    self.stats.block_updates += 1;
                }
            }
            self.parity.push((worker, res));
        }
        Ok(())
    }

    /// Whether the results so far decode.
    pub fn is_decodable(&self) -> bool {
        self.parity.len() >= self.missing().len() && self.shape.is_some()
    }

    /// The uncoded result once decodable (None before): known blocks as received, missing ones
    /// from an s × s solve over the first s parity residuals.
    pub fn try_decode(&mut self) -> Result<Option<Decoded>, LinalgError> {
        let Some((b, c)) = self.shape else {
            return Ok(None);
        };
        let missing = self.missing();
        let sdim = missing.len();
        if self.parity.len() < sdim {
            return Ok(None);
        }
        let k = self.code.threshold();
        let mut out = Array2::<f64>::zeros((k * b, c));
        let mut used: Vec<usize> = (0..k).filter(|&j| self.known[j].is_some()).collect();
        for (j, x) in self.known.iter().enumerate() {
            if let Some(x) = x {
                out.slice_mut(s![j * b..(j + 1) * b, ..]).assign(x);
            }
        }
        if sdim > 0 {
            let g = self.code.generator();
            let chosen = &self.parity[..sdim];
            let a = Array2::from_shape_fn((sdim, sdim), |(t, u)| g[[chosen[t].0, missing[u]]]);
            let mut y = Array2::<f64>::zeros((sdim, b * c));
            for (t, (_, res)) in chosen.iter().enumerate() {
                for (dst, src) in y.row_mut(t).iter_mut().zip(res.iter()) {
                    *dst = *src;
                }
            }
            let (x, cnd) = svd_solve(a.view(), y.view())?;
            self.stats.solves += 1;
            self.stats.solve_dim = sdim;
            self.stats.cond = cnd;
            let blocks = rows_to_blocks(x.view(), b, c);
            for (u, &j) in missing.iter().enumerate() {
                out.slice_mut(s![j * b..(j + 1) * b, ..])
                    .assign(&blocks.slice(s![u * b..(u + 1) * b, ..]));
            }
            used.extend(chosen.iter().map(|(p, _)| *p));
        } else {
            self.stats.solve_dim = 0;
            self.stats.cond = 1.0;
        }
        let rows = self.rows.min(out.nrows());
        Ok(Some(Decoded {
            value: out.slice(s![..rows, ..]).to_owned(),
            cond: self.stats.cond,
            used,
        }))
    }
}
