//! Minibatches that keep a gradient code exact (issue 21).
//!
//! With `--batch B`, every partition p contributes B of its rows at iteration t, and the rows
//! are a pure function of (seed, t, p): every worker that holds p draws the same ones, so the
//! coded combination of the partition gradients still decodes to Σ_p g_p, now the gradient of
//! the k·B rows of the minibatch, and the serial reference draws them too.
//!
//! The draw follows epochs: an epoch is ⌈rows / (k·B)⌉ iterations (the largest partition's
//! rows over B, rounded up). At the start of epoch e each partition is shuffled by a
//! Fisher–Yates permutation driven by SplitMix64 draws seeded by (seed, e, p); iteration i of
//! the epoch takes positions i·B .. i·B + B of that permutation, wrapping around the partition's
//! end (a partition shorter than ⌈rows/k⌉, or the last batch of an epoch, starts again from the
//! front). Within an epoch every row of a partition is drawn at least once and within an
//! iteration no row twice (B is at most the partition's length). Counter-based: a resumed run,
//! or a worker that skipped iterations, draws what an uninterrupted one would.
//!
//! Not implemented: sampling with replacement, stratified (class-balanced) batches.

use std::ops::Range;

use super::{partition_ranges, DataError, Dataset};
use crate::straggler::splitmix64;

/// The minibatch schedule of a run: B rows of every partition per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    seed: u64,
    batch: usize,
    per_epoch: u64,
}

impl BatchPlan {
    /// `batch` rows of each of the `k` partitions of `rows` rows per iteration. Refuses a batch
    /// of 0 or one larger than the smallest partition.
    pub fn new(seed: u64, batch: usize, rows: usize, k: usize) -> Result<Self, DataError> {
        let parts = partition_ranges(rows, k)?;
        let smallest = parts.iter().map(Range::len).min().unwrap_or(0);
        if batch == 0 || batch > smallest {
            return Err(DataError::Invalid(format!(
                "a batch of {batch} rows per partition needs 1 ..= {smallest} (the smallest of {k} partitions of {rows} rows)"
            )));
        }
        Ok(BatchPlan {
            seed,
            batch,
            per_epoch: rows.div_ceil(k * batch) as u64,
        })
    }

    /// Rows per partition and iteration.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Iterations per epoch, ⌈rows / (k·B)⌉.
    pub fn iterations_per_epoch(&self) -> u64 {
        self.per_epoch
    }
}

/// One partition's draws: its rows in the order of the current epoch.
#[derive(Debug, Clone)]
pub struct PartitionSampler {
    partition: usize,
    /// The partition's first row in the rows the caller holds.
    start: usize,
    len: usize,
    /// The (seed, epoch) `order` is for.
    drawn: Option<(u64, u64)>,
    order: Vec<u32>,
}

impl PartitionSampler {
    /// The sampler of `partition`, whose rows are `rows` of the caller's data.
    pub fn new(partition: usize, rows: Range<usize>) -> Result<Self, DataError> {
        if rows.len() > u32::MAX as usize {
            return Err(DataError::Invalid(format!(
                "partition {partition} has {} rows; at most {} can be sampled",
                rows.len(),
                u32::MAX
            )));
        }
        Ok(PartitionSampler {
            partition,
            start: rows.start,
            len: rows.len(),
            drawn: None,
            order: Vec::new(),
        })
    }

    /// Append to `out` the caller's row indices at batch positions `within` (a sub-range of
    /// 0..B) of iteration `t`. Shuffles the partition when `t` starts another epoch; otherwise
    /// no allocation once `out` has grown.
    pub fn rows_into(
        &mut self,
        plan: &BatchPlan,
        t: u64,
        within: Range<usize>,
        out: &mut Vec<usize>,
    ) {
        let epoch = t / plan.per_epoch;
        if self.drawn != Some((plan.seed, epoch)) {
            self.shuffle(plan.seed, epoch);
        }
        let first = (t % plan.per_epoch) as usize * plan.batch;
        for pos in within {
            // first + pos < per_epoch · B, far from overflowing a usize.
            let i = (first + pos) % self.len;
            out.push(self.start + self.order[i] as usize);
        }
    }

    /// Fisher–Yates over 0..len, the j-th swap drawn from SplitMix64 of (seed, epoch,
    /// partition, j).
    fn shuffle(&mut self, seed: u64, epoch: u64) {
        self.order.clear();
        self.order.extend(0..self.len as u32);
        let mut h = splitmix64(seed ^ 0xBA7C_4E55_0F0F_1E5D);
        h = splitmix64(h ^ epoch);
        h = splitmix64(h ^ self.partition as u64);
        for i in (1..self.len).rev() {
            let r = splitmix64(h ^ i as u64);
            // Lemire's multiply-shift: uniform in 0..=i without division.
            let j = ((u128::from(r) * (i as u128 + 1)) >> 64) as usize;
            self.order.swap(i, j);
        }
        self.drawn = Some((seed, epoch));
    }
}

/// The samplers of several partitions drawn together (a worker's held partitions, or all k for
/// the serial reference), and the row buffer they draw into.
#[derive(Debug, Clone)]
pub struct Minibatch {
    plan: BatchPlan,
    samplers: Vec<PartitionSampler>,
    rows: Vec<usize>,
}

impl Minibatch {
    /// Draws of `plan` from `parts`: (partition, its rows in the caller's data), in order.
    pub fn new(
        plan: BatchPlan,
        parts: impl IntoIterator<Item = (usize, Range<usize>)>,
    ) -> Result<Self, DataError> {
        let samplers = parts
            .into_iter()
            .map(|(p, rows)| PartitionSampler::new(p, rows))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Minibatch {
            plan,
            rows: Vec::with_capacity(samplers.len() * plan.batch),
            samplers,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &BatchPlan {
        &self.plan
    }

    /// Overwrite `out` with the rows of `data` at batch positions `within` (a sub-range of
    /// 0..B) of iteration `t`, partition after partition. No allocation once `out` has its
    /// shape (except a new epoch's shuffle).
    pub fn gather(&mut self, t: u64, within: Range<usize>, data: &Dataset, out: &mut Dataset) {
        self.rows.clear();
        for s in &mut self.samplers {
            s.rows_into(&self.plan, t, within.clone(), &mut self.rows);
        }
        data.gather_into(&self.rows, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(s: &mut PartitionSampler, plan: &BatchPlan, t: u64) -> Vec<usize> {
        let mut out = Vec::new();
        s.rows_into(plan, t, 0..plan.batch(), &mut out);
        out
    }

    #[test]
    fn an_epoch_covers_every_row_and_no_batch_repeats_one() {
        // 103 rows in 4 partitions (26, 26, 26, 25), B = 5: ⌈103 / 20⌉ = 6 iterations per epoch.
        let plan = BatchPlan::new(9, 5, 103, 4).unwrap();
        assert_eq!(plan.iterations_per_epoch(), 6);
        for (p, range) in partition_ranges(103, 4).unwrap().into_iter().enumerate() {
            let mut s = PartitionSampler::new(p, range.clone()).unwrap();
            for epoch in 0..3u64 {
                let mut seen = vec![0usize; 103];
                for i in 0..6 {
                    let b = rows(&mut s, &plan, epoch * 6 + i);
                    assert_eq!(b.len(), 5);
                    let mut d = b.clone();
                    d.sort_unstable();
                    d.dedup();
                    assert_eq!(d.len(), 5, "a row twice in one batch: {b:?}");
                    for r in b {
                        assert!(range.contains(&r), "{r} outside {range:?}");
                        seen[r] += 1;
                    }
                }
                assert!(
                    range.clone().all(|r| seen[r] >= 1),
                    "epoch {epoch} missed a row"
                );
                // 30 draws over 25 or 26 rows: the wrap-around repeats only the first few.
                assert_eq!(seen.iter().sum::<usize>(), 30);
            }
        }
    }

    #[test]
    fn draws_depend_only_on_seed_iteration_and_partition() {
        let plan = BatchPlan::new(3, 4, 400, 5).unwrap();
        let range = 160..240;
        let mut a = PartitionSampler::new(2, range.clone()).unwrap();
        let mut b = PartitionSampler::new(2, range.clone()).unwrap();
        // `b` jumps around (a resumed run, a worker that skipped iterations): same rows.
        let ts = [0u64, 1, 57, 3, 20, 19, 100, 2];
        let want: Vec<Vec<usize>> = ts.iter().map(|&t| rows(&mut a, &plan, t)).collect();
        for (&t, w) in ts.iter().zip(&want).rev() {
            assert_eq!(&rows(&mut b, &plan, t), w, "t = {t}");
        }
        // Another seed, epoch or partition draws something else.
        let other = BatchPlan::new(4, 4, 400, 5).unwrap();
        assert_ne!(rows(&mut a, &other, 0), want[0]);
        assert_ne!(rows(&mut a, &plan, 20), rows(&mut a, &plan, 0));
        let mut c = PartitionSampler::new(3, range).unwrap();
        assert_ne!(rows(&mut c, &plan, 0), want[0]);
        // Sub-ranges of the batch positions are pieces of the same batch.
        let mut pieces = Vec::new();
        a.rows_into(&plan, 57, 0..1, &mut pieces);
        a.rows_into(&plan, 57, 1..4, &mut pieces);
        assert_eq!(pieces, want[2]);
    }

    #[test]
    fn the_shuffle_is_uniform_enough() {
        // Position of row 0 after 4,000 shuffles of 8 rows: each of the 8 places about 500 times.
        let plan = BatchPlan::new(11, 8, 8, 1).unwrap();
        let mut s = PartitionSampler::new(0, 0..8).unwrap();
        let mut counts = [0usize; 8];
        for t in 0..4000 {
            let b = rows(&mut s, &plan, t);
            counts[b.iter().position(|&r| r == 0).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (400..600).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn batches_outside_the_partitions_are_refused() {
        for (b, rows, k) in [(0, 100, 4), (26, 100, 4), (5, 3, 4)] {
            assert!(BatchPlan::new(1, b, rows, k).is_err(), "{b} {rows} {k}");
        }
        assert_eq!(
            BatchPlan::new(1, 25, 100, 4)
                .unwrap()
                .iterations_per_epoch(),
            1
        );
        let e = BatchPlan::new(1, 26, 100, 4).unwrap_err().to_string();
        assert!(e.contains("1 ..= 25"), "{e}");
    }
}
