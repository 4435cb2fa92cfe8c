//! Coded mat-vecs over the job protocol (Lee et al.; GUIDE §3), shared by `gradcode matvec` and
//! coded training through mat-vecs: the worker side ([`BlockWorker`]: block · x for each vector
//! rank 0 posts) and rank 0's rule for one round ([`MdsRound`]: decodable as soon as the arrived
//! workers are; the systematic codes stream the arrived blocks into a [`StreamingDecoder`] that
//! solves only for the missing ones).

use std::time::Instant;

use ndarray::{Array2, ArrayView1, ArrayView2};

use super::job::CodedBlock;
use super::{Decoded, LinalgError, MdsCode, StreamingDecoder};
use crate::comm::{CommError, Responder, Round, Rule, WorkerJob, WorkerTransport};

/// A worker of a coded mat-vec job: `blocks[p]` multiplies the vectors of phase p (one phase for
/// `matvec`; two for coded training: X w, then Xᵀ r).
pub struct BlockWorker<'a> {
    blocks: &'a [CodedBlock],
}

impl<'a> BlockWorker<'a> {
    /// A worker serving `blocks`.
    pub fn new(blocks: &'a [CodedBlock]) -> Self {
        BlockWorker { blocks }
    }
}

impl WorkerJob for BlockWorker<'_> {
    fn accepts(&self, phase: usize, len: usize) -> bool {
        self.blocks.get(phase).is_some_and(|b| b.cols() == len)
    }
    fn max_params_len(&self) -> usize {
        self.blocks.iter().map(CodedBlock::cols).max().unwrap_or(0)
    }
    fn serve<T: WorkerTransport>(
        &mut self,
        params: &[f64],
        out: &mut Responder<'_, T>,
    ) -> Result<(), CommError> {
        let rank = out.rank();
        let block = &self.blocks[out.phase()];
        out.send_result(0, block.result_len(), |buf| {
            block
                .matvec_into(ArrayView1::from(params), buf)
                .map_err(|e| CommError::Fatal(format!("rank {rank}: {e}")))
        })
    }
}

/// Rank 0's rule for one round of a coded mat-vec with `code`, whose decoded result has `rows`
/// rows: decodable when the arrived workers are.
pub struct MdsRound<'a> {
    code: &'a MdsCode,
    rows: usize,
    /// Results in arrival order (non-systematic codes decode the first decodable set of them).
    arrived: Vec<(usize, Array2<f64>)>,
    stream: Option<StreamingDecoder<'a>>,
    /// Seconds spent decoding (streaming included).
    pub decode_s: f64,
}

impl<'a> MdsRound<'a> {
    /// A round of `code` whose result has `rows` rows.
    pub fn new(code: &'a MdsCode, rows: usize) -> Result<Self, LinalgError> {
        let stream = if code.family().is_systematic() {
            Some(StreamingDecoder::new(code, rows)?)
        } else {
            None
        };
        Ok(MdsRound {
            code,
            rows,
            arrived: Vec::with_capacity(code.n_workers()),
            stream,
            decode_s: 0.0,
        })
    }

    /// Decode the round (once [`Rule::decodable`]).
    pub fn decode(&mut self) -> Result<Decoded, LinalgError> {
        let t = Instant::now();
        let d = match self.stream.as_mut() {
            Some(s) => s.try_decode()?.ok_or_else(|| LinalgError::BelowThreshold {
                family: self.code.family().name().into(),
                have: self.code.n_workers() - s.missing().len(),
                need: self.code.threshold(),
            })?,
            None => {
                // In worker order: the decode depends on the set of responders only, not on the
                // order they arrived in (a resumed run repeats it bit for bit).
                self.arrived.sort_by_key(|(w, _)| *w);
                let views: Vec<(usize, ArrayView2<f64>)> =
                    self.arrived.iter().map(|(w, m)| (*w, m.view())).collect();
                self.code.decode(&views, self.rows)?
            }
        };
        self.decode_s += t.elapsed().as_secs_f64();
        Ok(d)
    }
}

impl Rule for MdsRound<'_> {
    fn accept(&mut self, w: usize, _part: usize, payload: &[f64]) -> Result<(), CommError> {
        let fatal =
            |e: LinalgError| CommError::Fatal(format!("decoding rank {}'s result: {e}", w + 1));
        match self.stream.as_mut() {
            Some(s) => {
                let t = Instant::now();
                let view = ArrayView2::from_shape((payload.len(), 1), payload)
                    .map_err(|e| fatal(LinalgError::Shape(e.to_string())))?;
                s.add_result(w, view).map_err(fatal)?;
                self.decode_s += t.elapsed().as_secs_f64();
            }
            None => {
                let m = Array2::from_shape_vec((payload.len(), 1), payload.to_vec())
                    .map_err(|e| fatal(LinalgError::Shape(e.to_string())))?;
                self.arrived.push((w, m));
            }
        }
        Ok(())
    }

    fn decodable(&self, _round: &Round) -> bool {
        match &self.stream {
            Some(s) => s.is_decodable(),
            None => {
                let ws: Vec<usize> = self.arrived.iter().map(|(w, _)| *w).collect();
                self.code.is_decodable(&ws)
            }
        }
    }
}
