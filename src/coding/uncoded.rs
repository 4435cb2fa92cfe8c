//! The identity codes: `uncoded` (wait for all n) and `ignore-stragglers` (stop after n − s,
//! rescale; approximate by design). Both have k = n and B = I.

use super::{
    check_n_s, check_responders, decode, CodeError, CodeKind, Decoding, GradientCode, Layout,
    StoppingRule,
};

fn identity(n: usize) -> Layout {
    Layout::new(n, (0..n).map(|i| vec![i]).collect(), vec![vec![1.0]; n])
}

/// k = n, worker i holds partition i with coefficient 1; decodable only when all n answered.
#[derive(Debug, Clone)]
pub struct Uncoded {
    layout: Layout,
}

impl Uncoded {
    pub fn new(n: usize) -> Result<Self, CodeError> {
        check_n_s(CodeKind::Uncoded, n, 0)?;
        Ok(Uncoded {
            layout: identity(n),
        })
    }
}

impl GradientCode for Uncoded {
    fn kind(&self) -> CodeKind {
        CodeKind::Uncoded
    }
    layout_methods!();
    fn max_stragglers(&self) -> usize {
        0
    }
    fn is_decodable(&self, responders: &[usize]) -> bool {
        StoppingRule::AtLeast(self.layout.n()).holds(self.layout.n(), responders)
    }
    fn stopping_rule(&self) -> Option<StoppingRule> {
        Some(StoppingRule::AtLeast(self.layout.n()))
    }
    /// Weights 1 on everyone; with missing workers the least-squares decoding (also weights 1,
    /// residual √(missing), condition 1).
    fn decode(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        check_responders(self.kind(), self.layout.n(), responders)?;
        decode::least_squares_decode(self.layout.b().view(), responders)
    }
}

/// k = n, B = I; stop after n − s responders and use a = n/|F| on them. Approximate: the decoded
/// gradient is (n/|F|) Σ_{i∈F} g_i, exact only when |F| = n.
#[derive(Debug, Clone)]
pub struct IgnoreStragglers {
    layout: Layout,
    s: usize,
}

impl IgnoreStragglers {
    pub fn new(n: usize, s: usize) -> Result<Self, CodeError> {
        check_n_s(CodeKind::IgnoreStragglers, n, s)?;
        Ok(IgnoreStragglers {
            layout: identity(n),
            s,
        })
    }
}

impl GradientCode for IgnoreStragglers {
    fn kind(&self) -> CodeKind {
        CodeKind::IgnoreStragglers
    }
    layout_methods!();
    /// Stragglers it stops without (not exactly: the decoding is then approximate).
    fn max_stragglers(&self) -> usize {
        self.s
    }
    fn is_decodable(&self, responders: &[usize]) -> bool {
        StoppingRule::AtLeast(self.layout.n() - self.s).holds(self.layout.n(), responders)
    }
    fn stopping_rule(&self) -> Option<StoppingRule> {
        Some(StoppingRule::AtLeast(self.layout.n() - self.s))
    }
    /// a = n/|F| on the responders (for any |F| ≥ 1); the residual is the honest
    /// ‖B_Fᵀ a − 1‖₂ = √(|F| (n/|F| − 1)² + n − |F|), condition 1.
    fn decode(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        let n = self.layout.n();
        check_responders(self.kind(), n, responders)?;
        let m = responders.len();
        let weights = if m == 0 {
            Vec::new()
        } else {
            vec![n as f64 / m as f64; m]
        };
        let residual = decode::residual_of(self, responders, &weights);
        Ok(Decoding {
            responders: responders.to_vec(),
            exact: decode::is_exact(residual, n),
            weights,
            residual,
            condition: if m == 0 { f64::NAN } else { 1.0 },
        })
    }
}
