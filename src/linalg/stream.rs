//! Streaming decoder of the systematic codes G = [I; P]: decodes only the missing blocks.
//!
//! Workers 0..k return the data blocks' results themselves (r blocks each: worker w holds data
//! blocks w·r .. (w+1)·r; r = 1 for `systematic`, 2 for `systematic-rotation`); each of the r
//! rows of a parity worker returns Σ_j P_pj X_j. As results arrive, each parity result is reduced to its *residual*
//! y_p − Σ_{j known} P_pj X_j (a known block is subtracted from every held parity residual the
//! moment either arrives), so when s systematic results are missing and s parity results are in,
//! [`StreamingDecoder::try_decode`] is one s × s solve P_{R,M} X_M = residuals, and the known
//! blocks are returned exactly as received. With no systematic result missing there is no solve.

use ndarray::{s, Array2, ArrayView2};

use super::code::{rows_to_blocks, Decoded, MdsCode};
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

/// Incremental decoder of a systematic code ([`super::Family::is_systematic`]; results are r·b × c).
#[derive(Debug)]
pub struct StreamingDecoder<'a> {
    code: &'a MdsCode,
    rows: usize,
    /// Shape (b, c) of one block.
    shape: Option<(usize, usize)>,
    /// The k·r data blocks received so far.
    known: Vec<Option<Array2<f64>>>,
    /// (generator row, worker, residual) of every parity row received, in arrival order.
    parity: Vec<(usize, usize, Array2<f64>)>,
    seen: Vec<bool>,
    stats: StreamStats,
}

impl<'a> StreamingDecoder<'a> {
    /// A decoder for `code` (must be systematic) whose uncoded result has `rows` rows.
    pub fn new(code: &'a MdsCode, rows: usize) -> Result<Self, LinalgError> {
        if !code.family().is_systematic() {
            return Err(LinalgError::invalid(
                code.family(),
                "the streaming decoder needs a systematic code",
            ));
        }
        Ok(StreamingDecoder {
            code,
            rows,
            shape: None,
            known: vec![None; code.data_blocks()],
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

    /// Take worker `worker`'s result ((r·b) × c).
    pub fn add_result(&mut self, worker: usize, block: ArrayView2<f64>) -> Result<(), LinalgError> {
        let k = self.code.threshold();
        let r = self.code.blocks_per_worker();
        if worker >= self.code.n_workers() || self.seen[worker] {
            return Err(LinalgError::invalid(
                self.code.family(),
                format!(
                    "worker {worker} is out of range (n = {}) or already reported",
                    self.code.n_workers()
                ),
            ));
        }
        if block.nrows() % r != 0 {
            return Err(LinalgError::Shape(format!(
                "worker {worker}: result of {} rows is not {r} blocks",
                block.nrows()
            )));
        }
        let bshape = (block.nrows() / r, block.ncols());
        match self.shape {
            Some(sh) if sh != bshape => {
                return Err(LinalgError::Shape(format!(
                    "worker {worker}: result blocks {bshape:?}, expected {sh:?}"
                )))
            }
            _ => self.shape = Some(bshape),
        }
        self.seen[worker] = true;
        let b = bshape.0;
        let g = self.code.generator();
        for t in 0..r {
            let part = block.slice(s![t * b..(t + 1) * b, ..]);
            if worker < k {
                let j = worker * r + t;
                for (row, _, res) in self.parity.iter_mut() {
                    res.scaled_add(-g[[*row, j]], &part);
                    self.stats.block_updates += 1;
                }
                self.known[j] = Some(part.to_owned());
            } else {
                let row = worker * r + t;
                let mut res = part.to_owned();
                for (j, x) in self.known.iter().enumerate() {
                    if let Some(x) = x {
                        res.scaled_add(-g[[row, j]], x);
                        self.stats.block_updates += 1;
                    }
                }
                self.parity.push((row, worker, res));
            }
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
        let nb = self.known.len();
        let mut out = Array2::<f64>::zeros((nb * b, c));
        let mut used: Vec<usize> = (0..k).filter(|&w| self.seen[w]).collect();
        for (j, x) in self.known.iter().enumerate() {
            if let Some(x) = x {
                out.slice_mut(s![j * b..(j + 1) * b, ..]).assign(x);
            }
        }
        if sdim > 0 {
            let g = self.code.generator();
            let chosen = &self.parity[..sdim];
            // Parity rows arrive r at a time per worker and missing blocks go r per missing
            // worker, so the first s rows are whole workers: with the systematic ones, k workers.
            let a = Array2::from_shape_fn((sdim, sdim), |(t, u)| g[[chosen[t].0, missing[u]]]);
            let mut y = Array2::<f64>::zeros((sdim, b * c));
            for (t, (_, _, res)) in chosen.iter().enumerate() {
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
            for (_, w, _) in chosen {
                if used.last() != Some(w) {
                    used.push(*w);
                }
            }
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
