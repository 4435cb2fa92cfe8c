//! When rank 0 may stop collecting: a code's stopping rule, in a form that can be checked on a
//! whole responder set ([`StoppingRule::holds`], what [`super::GradientCode::is_decodable`] of
//! every code in this crate is) and tracked one arrival at a time in O(1) ([`StopTracker`], what
//! the simulator uses for n up to 10⁴, where re-checking the whole set after each arrival would
//! cost O(n²) per iteration).
//!
//! Every code here has one of three rules: at least m responders (uncoded with m = n,
//! ignore-stragglers, the cyclic codes and the approximate codes with m = n − s), a responder in
//! every group of consecutive workers (FRC), or either of the two (`frc-approx`). A code whose
//! test is none of these (e.g. a rank test) has no rule ([`super::GradientCode::stopping_rule`]
//! is `None`) and is checked on the whole set by its own `is_decodable`.

use super::responders_valid;

/// A stopping rule over worker indices 0..n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoppingRule {
    /// At least `m` distinct responders.
    AtLeast(usize),
    /// A responder in every group of `size` consecutive workers (n a multiple of `size`).
    EveryGroup { size: usize },
    /// At least `m` responders, or a responder in every group of `size` workers.
    AtLeastOrEveryGroup { m: usize, size: usize },
}

impl StoppingRule {
    /// Whether `responders` (sorted, no repeats, all below `n`; anything else never holds)
    /// satisfies the rule. O(|F|), no allocation.
    pub fn holds(&self, n: usize, responders: &[usize]) -> bool {
        if !responders_valid(n, responders) {
            return false;
        }
        match *self {
            StoppingRule::AtLeast(m) => responders.len() >= m,
            StoppingRule::EveryGroup { size } => groups_covered(responders, size) * size == n,
            StoppingRule::AtLeastOrEveryGroup { m, size } => {
                responders.len() >= m || groups_covered(responders, size) * size == n
            }
        }
    }
}

/// Distinct groups of `size` consecutive workers among sorted `responders`.
fn groups_covered(responders: &[usize], size: usize) -> usize {
    let size = size.max(1);
    let mut covered = 0;
    let mut last = None;
    for &w in responders {
        let g = w / size;
        if last != Some(g) {
            covered += 1;
            last = Some(g);
        }
    }
    covered
}

/// A [`StoppingRule`] tracked as responders arrive one at a time, in any order: O(1) per arrival.
#[derive(Debug, Clone)]
pub struct StopTracker {
    rule: StoppingRule,
    seen: Vec<bool>,
    count: usize,
    group_seen: Vec<bool>,
    groups: usize,
    n_groups: usize,
}

impl StopTracker {
    /// A tracker of `rule` over `n` workers, with nobody arrived.
    pub fn new(rule: StoppingRule, n: usize) -> Self {
        let size = match rule {
            StoppingRule::AtLeast(_) => 0,
            StoppingRule::EveryGroup { size } | StoppingRule::AtLeastOrEveryGroup { size, .. } => {
                size.max(1)
            }
        };
        let n_groups = n.checked_div(size).unwrap_or(0);
        StopTracker {
            rule,
            seen: vec![false; n],
            count: 0,
            group_seen: vec![false; n_groups],
            groups: 0,
            n_groups,
        }
    }

    /// Worker `w` answered (repeats and out-of-range workers are ignored); whether the rule
    /// holds now.
    pub fn add(&mut self, w: usize) -> bool {
        if let Some(s) = self.seen.get_mut(w).filter(|s| !**s) {
            *s = true;
            self.count += 1;
            if let StoppingRule::EveryGroup { size }
            | StoppingRule::AtLeastOrEveryGroup { size, .. } = self.rule
            {
                if let Some(g) = self.group_seen.get_mut(w / size.max(1)).filter(|g| !**g) {
                    *g = true;
                    self.groups += 1;
                }
            }
        }
        self.holds()
    }

    /// Whether the rule holds for the workers added so far.
    pub fn holds(&self) -> bool {
        let all_groups = self.n_groups > 0 && self.groups == self.n_groups;
        match self.rule {
            StoppingRule::AtLeast(m) => self.count >= m,
            StoppingRule::EveryGroup { .. } => all_groups,
            StoppingRule::AtLeastOrEveryGroup { m, .. } => self.count >= m || all_groups,
        }
    }

    /// Distinct workers added so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether worker `w` was added.
    pub fn contains(&self, w: usize) -> bool {
        self.seen.get(w).copied().unwrap_or(false)
    }
}
