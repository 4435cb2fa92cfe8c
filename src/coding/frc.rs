//! Fractional repetition code (Tandon et al. 2017): needs (s + 1) | n. Workers form n/(s+1)
//! groups of s + 1 consecutive workers; every member of group g holds the partitions of that
//! group, g(s+1) … g(s+1)+s, and sends their plain sum. Decoding takes the lowest-index
//! responder of each group with weight 1, so the result is bitwise independent of which members
//! answered. O(n), perfectly conditioned.

use super::{
    check_n_s, check_responders, decode, CodeError, CodeKind, Decoding, GradientCode, Layout,
    StoppingRule,
};

/// The fractional repetition code.
#[derive(Debug, Clone)]
pub struct Frc {
    layout: Layout,
    s: usize,
}

impl Frc {
    pub fn new(n: usize, s: usize) -> Result<Self, CodeError> {
        check_n_s(CodeKind::Frc, n, s)?;
        let size = s + 1;
        if n % size != 0 {
            let valid: Vec<String> = (0..n)
                .filter(|t| n % (t + 1) == 0)
                .map(|t| t.to_string())
                .collect();
            return Err(CodeError::invalid(
                CodeKind::Frc,
                format!(
                    "s + 1 = {size} must divide the number of workers n = {n}; \
                     valid s for n = {n}: {}",
                    valid.join(", ")
                ),
            ));
        }
        let parts = (0..n)
            .map(|i| {
                let g0 = (i / size) * size;
                (g0..g0 + size).collect()
            })
            .collect();
        Ok(Frc {
            layout: Layout::new(n, parts, vec![vec![1.0; size]; n]),
            s,
        })
    }
    /// Number of groups n/(s + 1).
    pub fn n_groups(&self) -> usize {
        self.layout.n() / (self.s + 1)
    }
    /// The group of `worker`.
    pub fn group_of(&self, worker: usize) -> usize {
        worker / (self.s + 1)
    }
}

impl GradientCode for Frc {
    fn kind(&self) -> CodeKind {
        CodeKind::Frc
    }
    layout_methods!();
    fn max_stragglers(&self) -> usize {
        self.s
    }
    /// Every group has a responder.
    fn is_decodable(&self, responders: &[usize]) -> bool {
        StoppingRule::EveryGroup { size: self.s + 1 }.holds(self.layout.n(), responders)
    }
    fn stopping_rule(&self) -> Option<StoppingRule> {
        Some(StoppingRule::EveryGroup { size: self.s + 1 })
    }
    /// Weight 1 on the first responder of each group, 0 on the others. An uncovered group leaves
    /// its s + 1 partitions out: residual √(#uncovered partitions). `condition` is that of the
    /// rows actually used (orthogonal, equal norms): 1.
    fn decode(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        check_responders(self.kind(), self.layout.n(), responders)?;
        let mut last = None;
        let weights: Vec<f64> = responders
            .iter()
            .map(|&w| {
                let g = self.group_of(w);
                if last == Some(g) {
                    0.0
                } else {
                    last = Some(g);
                    1.0
                }
            })
            .collect();
        let residual = decode::residual_of(self, responders, &weights);
        Ok(Decoding {
            responders: responders.to_vec(),
            exact: decode::is_exact(residual, self.layout.k()),
            weights,
            residual,
            condition: if responders.is_empty() { f64::NAN } else { 1.0 },
        })
    }
}
