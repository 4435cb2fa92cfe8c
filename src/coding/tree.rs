//! The two-level (hierarchical) gradient code of the tree decode (issue 20 §4).
//!
//! n workers form n/G groups of G consecutive workers; the first worker of a group is its
//! leader. An outer code C ((n/G) × k_out, tolerating s_out groups) is built over the groups and
//! an inner code D (G × k_in, tolerating s_in members) inside every group, both of the same
//! exact kind. Partition (j, i) = j·k_in + i is piece i of outer partition j; worker
//! (group g, member m) holds partition (j, i) when group g holds j in C and member m holds i
//! in D, with coefficient C[g, j]·D[m, i]. The code matrix is the Kronecker product B = C ⊗ D,
//! so the code is also an ordinary gradient code of n workers and k_out·k_in partitions, and
//! rank 0 may decode members' messages directly (a group whose leader is gone).
//!
//! Decoding in two levels: a leader that has the messages of members F_g with D_{F_g}
//! decodable forms y_g = Σ_{m ∈ F_g} a_m (message of m) with a_{F_g}ᵀ D_{F_g} = 1ᵀ, which is
//! Σ_j C[g, j] h_j (h_j the gradient of outer partition j: the inner sum over its pieces);
//! rank 0, with y_g from groups R such that C_R is decodable, forms Σ_{g ∈ R} b_g y_g with
//! b_Rᵀ C_R = 1ᵀ, which is the full gradient.
//!
//! Guaranteed exact: every straggler pattern in which at most s_out groups are *lost* — a group
//! is lost when more than s_in of its members are missing, or when its combined message does
//! not reach rank 0 (its leader straggles or is dead) — in particular any s_out stragglers, and
//! any (s_out + 1)(s_in + 1) − 1 stragglers none of which is a leader. Not guaranteed:
//! more lost groups than s_out, even when the flat least-squares decode of B could still succeed
//! ([`TreeCode::flat_decode`] tells).
//!
//! Fallback (a leader that is silent past the deadline): its group's members send their own
//! messages to rank 0, which does that group's inner decode itself — y_g = Σ_m a_m (message
//! of m) over the members that answered — and the outer decode as before. The guarantee is
//! the same with "reaches rank 0" for a fallen-back group's members: at most s_out groups lost,
//! a fallen-back group being lost when more than s_in of its members are missing (its silent
//! leader counts as one of them, so with s_in = 0, or a second missing member, it is lost).
//!
//! As a [`GradientCode`], [`TreeCode`] is what the workers hold and send (the flat code B, its
//! decode the two-level one) and [`RootCode`] what rank 0 decodes in `train --decode-tree G`
//! (the outer code over the leaders' combined messages, and over the members' own messages
//! of a group whose leader did not answer). What this module does not do: move messages (the
//! links are `comm::group`), or choose G.

use super::{build_with, CodeError, CodeKind, CodeOptions, Decoding, GradientCode};

/// The two-level code: an outer code over the groups and an inner code inside each group.
#[derive(Debug)]
pub struct TreeCode {
    outer: Box<dyn GradientCode>,
    inner: Box<dyn GradientCode>,
    g: usize,
    /// Per worker: held partitions and their coefficients.
    parts: Vec<Vec<usize>>,
    coefs: Vec<Vec<f64>>,
}

impl TreeCode {
    /// The `kind` code of n workers in groups of `g` (`--decode-tree G`), tolerating `s_out`
    /// lost groups and `s_in` missing members per group. `kind` must be an exact code with
    /// one piece per message (no split).
    pub fn new(
        kind: CodeKind,
        n: usize,
        g: usize,
        s_out: usize,
        s_in: usize,
        seed: u64,
    ) -> Result<Self, CodeError> {
        if g < 2 || g > n || n % g != 0 {
            return Err(CodeError::invalid(
                kind,
                format!(
                    "--decode-tree {g} must be at least 2, at most the number of workers n = {n}, and divide it"
                ),
            ));
        }
        if kind.is_approximate() || kind == CodeKind::CommEfficient {
            return Err(CodeError::invalid(
                kind,
                "the tree decode needs an exact code with whole messages (uncoded, frc, cyclic-repetition or cyclic-mds)",
            ));
        }
        let opts = CodeOptions::default();
        // Say which level a refusal is about: its n is n/G or G, not the workers.
        let level = |what: String| {
            move |e: CodeError| match e {
                CodeError::Invalid { code, reason } => CodeError::Invalid {
                    code,
                    reason: format!("--decode-tree {g}: {what}: {reason}"),
                },
                e => e,
            }
        };
        let outer = build_with(kind, n / g, s_out, seed, &opts)
            .map_err(level(format!("the outer code over n/G = {} groups", n / g)))?;
        let inner = build_with(kind, g, s_in, seed.wrapping_add(1), &opts)
            .map_err(level(format!("the inner code in each group of G = {g}")))?;
        let k_in = inner.n_partitions();
        let (mut parts, mut coefs) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for w in 0..n {
            let (grp, m) = (w / g, w % g);
            let (mut p, mut c) = (Vec::new(), Vec::new());
            for (&j, &cj) in outer.assignment(grp).iter().zip(outer.coefficients(grp)) {
                for (&i, &di) in inner.assignment(m).iter().zip(inner.coefficients(m)) {
                    p.push(j * k_in + i);
                    c.push(cj * di);
                }
            }
            parts.push(p);
            coefs.push(c);
        }
        Ok(TreeCode {
            outer,
            inner,
            g,
            parts,
            coefs,
        })
    }

    /// Group size G.
    pub fn group_size(&self) -> usize {
        self.g
    }
    /// Groups n/G.
    pub fn n_groups(&self) -> usize {
        self.outer.n_workers()
    }
    /// The group of worker `w`.
    pub fn group_of(&self, w: usize) -> usize {
        w / self.g
    }
    /// The leader (first worker) of group `grp`.
    pub fn leader(&self, grp: usize) -> usize {
        grp * self.g
    }
    /// A leader's weights over the members of its group that answered (`members`: sorted
    /// indices 0..G within the group); exact when at most s_in are missing.
    pub fn leader_decode(&self, members: &[usize]) -> Result<Decoding, CodeError> {
        self.inner.decode(members)
    }
    /// Whether a leader can decode its group's block exactly from `members`.
    pub fn group_decodable(&self, members: &[usize]) -> bool {
        self.inner.is_decodable(members)
    }
    /// Rank 0's weights over the groups whose combined message arrived (sorted group indices);
    /// exact when at most s_out are lost.
    pub fn root_decode(&self, groups: &[usize]) -> Result<Decoding, CodeError> {
        self.outer.decode(groups)
    }
    /// Whether rank 0 can decode exactly from the combined messages of `groups`.
    pub fn root_decodable(&self, groups: &[usize]) -> bool {
        self.outer.is_decodable(groups)
    }

    /// The groups whose leaders could decode exactly from `responders` (sorted worker
    /// indices), and each one's members.
    fn groups_of(&self, responders: &[usize]) -> Vec<(usize, Vec<usize>)> {
        let mut members = vec![Vec::new(); self.n_groups()];
        for &w in responders {
            members[self.group_of(w)].push(w % self.g);
        }
        members
            .into_iter()
            .enumerate()
            .filter(|(_, m)| self.group_decodable(m))
            .collect()
    }

    /// The two-level decode of `responders` (sorted worker indices, every message reaching its
    /// leader and every decodable group's combined message reaching rank 0), as flat weights:
    /// worker (g, m) weighs b_g·a_m. `exact` holds when both levels were exact.
    pub fn two_level_decode(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        let groups = self.groups_of(responders);
        let ids: Vec<usize> = groups.iter().map(|(grp, _)| *grp).collect();
        let root = self.root_decode(&ids)?;
        let (mut who, mut weights) = (Vec::new(), Vec::new());
        let mut exact = root.exact;
        let mut condition = root.condition;
        for ((grp, members), &b) in groups.iter().zip(&root.weights) {
            let lead = self.leader_decode(members)?;
            exact &= lead.exact;
            condition = condition.max(lead.condition);
            for (&m, &a) in members.iter().zip(&lead.weights) {
                who.push(grp * self.g + m);
                weights.push(b * a);
            }
        }
        let b = self.matrix();
        let mut residual = 0.0;
        for j in 0..b.ncols() {
            let got: f64 = who.iter().zip(&weights).map(|(&w, &a)| a * b[[w, j]]).sum();
            residual += (got - 1.0).powi(2);
        }
        Ok(Decoding {
            responders: who,
            weights,
            residual: residual.sqrt(),
            exact,
            condition,
        })
    }

    /// The flat least-squares decode of B from `responders` (rank 0 with every member's
    /// message: the fallback when leaders are gone).
    pub fn flat_decode(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        super::decode::least_squares_decode(self.matrix().view(), responders)
    }

    /// Rank 0's view of the code ([`RootCode`]): a leader's row is its combination's
    /// (C[g, j] on every piece of outer partition j), a member's its own row of B (what it
    /// sends when it falls back to rank 0).
    pub fn root(self) -> RootCode {
        let k_in = self.inner.n_partitions();
        let (mut parts, mut coefs) = (Vec::new(), Vec::new());
        for w in 0..self.parts.len() {
            let (mut p, mut c) = (Vec::new(), Vec::new());
            if w % self.g == 0 {
                let grp = w / self.g;
                let outer = self.outer.assignment(grp).iter();
                for (&j, &cj) in outer.zip(self.outer.coefficients(grp)) {
                    p.extend((0..k_in).map(|i| j * k_in + i));
                    c.extend(std::iter::repeat(cj).take(k_in));
                }
            } else {
                p.clone_from(&self.parts[w]);
                c.clone_from(&self.coefs[w]);
            }
            parts.push(p);
            coefs.push(c);
        }
        RootCode {
            tree: self,
            parts,
            coefs,
        }
    }

    fn describe(&self) -> String {
        format!(
            "tree decode: {} groups of {}, outer code tolerates {} lost groups, inner {} missing members per group",
            self.n_groups(),
            self.g,
            self.outer.max_stragglers(),
            self.inner.max_stragglers()
        )
    }
}

/// The code as the workers see it: the flat Kronecker code B = C ⊗ D of n workers (what each
/// holds and sends); its decode is the two-level one.
impl GradientCode for TreeCode {
    fn kind(&self) -> CodeKind {
        self.outer.kind()
    }
    fn n_workers(&self) -> usize {
        self.parts.len()
    }
    fn n_partitions(&self) -> usize {
        self.outer.n_partitions() * self.inner.n_partitions()
    }
    /// Any s_out stragglers (each loses at most one group).
    fn max_stragglers(&self) -> usize {
        self.outer.max_stragglers()
    }
    fn assignment(&self, w: usize) -> &[usize] {
        &self.parts[w]
    }
    fn coefficients(&self, w: usize) -> &[f64] {
        &self.coefs[w]
    }
    /// The two-level decode is exact by the guarantee (at most s_out groups lost).
    fn is_decodable(&self, responders: &[usize]) -> bool {
        let ids: Vec<usize> = self
            .groups_of(responders)
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        self.root_decodable(&ids)
    }
    fn decode(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        self.two_level_decode(responders)
    }
    fn summary(&self) -> Option<String> {
        Some(self.describe())
    }
}

/// The tree code as rank 0 sees it: the group leaders (workers g·G) send, the leader of group
/// g the combination y_g = Σ_j C[g, j] h_j (its group's block sum decoded by the inner code),
/// so rank 0 decodes the outer code C over the leaders. Members of a group whose leader fell
/// silent send their own messages (the fallback); rank 0 forms that group's y_g from them by
/// the inner code. Over the same k_out·k_in data partitions as the workers' code: a leader's
/// row has C[g, j] on every piece (j, i) of outer partition j, a member's row is its row of
/// B. A group whose leader answered is decoded through the leader only (members' own
/// messages of it are left out).
#[derive(Debug)]
pub struct RootCode {
    tree: TreeCode,
    parts: Vec<Vec<usize>>,
    coefs: Vec<Vec<f64>>,
}

/// How rank 0 has a group's y_g.
#[derive(Debug, Clone, PartialEq)]
enum Via {
    /// The leader's combination.
    Leader,
    /// The members' own messages (indices 1..G within the group) that decode the inner code.
    Members(Vec<usize>),
}

impl RootCode {
    /// The groups rank 0 has y_g of from `responders` (sorted), in group order, and how.
    fn groups(&self, responders: &[usize]) -> Vec<(usize, Via)> {
        let g = self.tree.g;
        let mut out: Vec<(usize, Via)> = Vec::new();
        let mut members: Vec<usize> = Vec::new();
        let flush = |grp: usize, members: &mut Vec<usize>, out: &mut Vec<(usize, Via)>| {
            let led = out.last().is_some_and(|(o, _)| *o == grp);
            if !led && !members.is_empty() && self.tree.group_decodable(members) {
                out.push((grp, Via::Members(members.clone())));
            }
            members.clear();
        };
        let mut current = None;
        for &w in responders {
            let grp = w / g;
            if current != Some(grp) {
                if let Some(c) = current {
                    flush(c, &mut members, &mut out);
                }
                current = Some(grp);
            }
            if w % g == 0 {
                out.push((grp, Via::Leader));
            } else {
                members.push(w % g);
            }
        }
        if let Some(c) = current {
            flush(c, &mut members, &mut out);
        }
        out
    }

    /// The decode of `responders`: outer weights b_g on the groups rank 0 has, b_g on a leader,
    /// b_g·a_m on a fallen-back group's member m; residual against this view's rows.
    fn hybrid_decode(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        let g = self.tree.g;
        let groups = self.groups(responders);
        let ids: Vec<usize> = groups.iter().map(|(grp, _)| *grp).collect();
        let root = self.tree.root_decode(&ids)?;
        let (mut who, mut weights) = (Vec::new(), Vec::new());
        let (mut exact, mut condition) = (root.exact, root.condition);
        // The outer weights belong to root.responders (the groups it used, sorted).
        for (&grp, &b) in root.responders.iter().zip(&root.weights) {
            let Some((_, via)) = groups.iter().find(|(o, _)| *o == grp) else {
                continue;
            };
            match via {
                Via::Leader => {
                    who.push(grp * g);
                    weights.push(b);
                }
                Via::Members(members) => {
                    let lead = self.tree.leader_decode(members)?;
                    exact &= lead.exact;
                    condition = condition.max(lead.condition);
                    for (&m, &a) in lead.responders.iter().zip(&lead.weights) {
                        who.push(grp * g + m);
                        weights.push(b * a);
                    }
                }
            }
        }
        let k = GradientCode::n_partitions(&self.tree);
        let mut sums = vec![0.0; k];
        for (&w, &a) in who.iter().zip(&weights) {
            for (&p, &c) in self.parts[w].iter().zip(&self.coefs[w]) {
                sums[p] += a * c;
            }
        }
        let residual = sums.iter().map(|s| (s - 1.0).powi(2)).sum::<f64>().sqrt();
        Ok(Decoding {
            responders: who,
            weights,
            residual,
            exact,
            condition,
        })
    }
}

impl GradientCode for RootCode {
    fn kind(&self) -> CodeKind {
        self.tree.outer.kind()
    }
    fn n_workers(&self) -> usize {
        self.tree.parts.len()
    }
    fn n_partitions(&self) -> usize {
        GradientCode::n_partitions(&self.tree)
    }
    fn max_stragglers(&self) -> usize {
        self.tree.outer.max_stragglers()
    }
    fn assignment(&self, w: usize) -> &[usize] {
        &self.parts[w]
    }
    fn coefficients(&self, w: usize) -> &[f64] {
        &self.coefs[w]
    }
    /// The groups rank 0 has (leaders, or members decoding their group) decode the outer code.
    fn is_decodable(&self, responders: &[usize]) -> bool {
        let ids: Vec<usize> = self
            .groups(responders)
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        self.tree.root_decodable(&ids)
    }
    fn decode(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        self.hybrid_decode(responders)
    }
    fn summary(&self) -> Option<String> {
        Some(self.tree.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subset of missing workers of an n-worker code, as sorted responder sets.
    fn subsets(n: usize) -> impl Iterator<Item = Vec<usize>> {
        (0u32..(1 << n)).map(move |mask| (0..n).filter(|&w| mask & (1 << w) == 0).collect())
    }

    /// Whether `responders` is a pattern the construction guarantees.
    fn allowed(t: &TreeCode, s_out: usize, s_in: usize, responders: &[usize]) -> bool {
        let mut missing = vec![0; t.n_groups()];
        for w in 0..t.n_workers() {
            if responders.binary_search(&w).is_err() {
                missing[t.group_of(w)] += 1;
            }
        }
        missing.iter().filter(|&&m| m > s_in).count() <= s_out
    }

    /// Seeded pseudo-random values in [-1, 1).
    fn values(seed: u64, count: usize) -> Vec<f64> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..count)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_allowed_pattern_decodes_exactly_in_two_levels() {
        let dim = 3;
        let cases = [
            (CodeKind::Frc, 4, 2, 1, 1),
            (CodeKind::Frc, 8, 2, 1, 1),
            (CodeKind::Frc, 8, 4, 0, 1),
            (CodeKind::CyclicRepetition, 6, 3, 1, 1),
            (CodeKind::CyclicRepetition, 9, 3, 1, 1),
            (CodeKind::CyclicRepetition, 8, 4, 1, 2),
            (CodeKind::CyclicMds, 6, 3, 1, 2),
            (CodeKind::Uncoded, 4, 2, 0, 0),
        ];
        for (kind, n, g, s_out, s_in) in cases {
            let t = TreeCode::new(kind, n, g, s_out, s_in, 7).expect("valid tree code");
            let k = t.n_partitions();
            // Partial gradients h_p (k × dim) and each worker's coded message.
            let h = values(n as u64, k * dim);
            let message = |w: usize| -> Vec<f64> {
                let mut m = vec![0.0; dim];
                for (&p, &c) in t.assignment(w).iter().zip(t.coefficients(w)) {
                    for d in 0..dim {
                        m[d] += c * h[p * dim + d];
                    }
                }
                m
            };
            let full: Vec<f64> = (0..dim)
                .map(|d| (0..k).map(|p| h[p * dim + d]).sum())
                .collect();
            let mut checked = 0;
            for responders in subsets(n) {
                if !allowed(&t, s_out, s_in, &responders) {
                    continue;
                }
                assert!(
                    t.is_decodable(&responders),
                    "{kind:?} n={n} G={g} {responders:?}"
                );
                // Leaders combine, rank 0 combines the leaders' messages.
                let groups = t.groups_of(&responders);
                let ids: Vec<usize> = groups.iter().map(|(grp, _)| *grp).collect();
                let root = t.root_decode(&ids).expect("root decode");
                let mut g_hat = vec![0.0; dim];
                for ((grp, members), &b) in groups.iter().zip(&root.weights) {
                    let lead = t.leader_decode(members).expect("leader decode");
                    assert!(lead.exact, "{kind:?} group {grp} members {members:?}");
                    let mut y = vec![0.0; dim];
                    for (&m, &a) in members.iter().zip(&lead.weights) {
                        let msg = message(grp * g + m);
                        for d in 0..dim {
                            y[d] += a * msg[d];
                        }
                    }
                    for d in 0..dim {
                        g_hat[d] += b * y[d];
                    }
                }
                for d in 0..dim {
                    assert!(
                        (g_hat[d] - full[d]).abs() < 1e-9,
                        "{kind:?} n={n} G={g} {responders:?}: {} vs {}",
                        g_hat[d],
                        full[d]
                    );
                }
                let flat = t.two_level_decode(&responders).expect("two-level decode");
                assert!(
                    flat.exact && flat.residual < 1e-9,
                    "{kind:?} {responders:?}"
                );
                checked += 1;
            }
            assert!(checked >= 1, "{kind:?} n={n} G={g}: no allowed pattern");
        }
    }

    /// Rank 0 with the leaders' combinations and, for groups whose leader is silent, the
    /// members' own messages: every set of responders in which at most s_out groups are lost
    /// (a group is lost when neither its leader nor a decodable set of its other members
    /// answered) decodes the full gradient exactly.
    #[test]
    fn fallen_back_groups_decode_exactly_at_rank_zero() {
        let dim = 2;
        let cases = [
            (CodeKind::Frc, 8, 4, 1, 1),
            (CodeKind::CyclicRepetition, 6, 3, 1, 1),
            (CodeKind::CyclicRepetition, 9, 3, 1, 1),
            (CodeKind::CyclicMds, 8, 4, 1, 1),
            (CodeKind::CyclicMds, 6, 3, 1, 2),
        ];
        for (kind, n, g, s_out, s_in) in cases {
            let make = || TreeCode::new(kind, n, g, s_out, s_in, 5).expect("valid tree code");
            let (t, root) = (make(), make().root());
            let k = t.n_partitions();
            let h = values(n as u64 + 11, k * dim);
            // What worker w sends rank 0: its row of rank 0's view times the partial gradients
            // (a leader: its combination y_g; a member: its own coded message).
            let b = root.matrix();
            let message = |w: usize| -> Vec<f64> {
                (0..dim)
                    .map(|d| (0..k).map(|p| b[[w, p]] * h[p * dim + d]).sum())
                    .collect()
            };
            let full: Vec<f64> = (0..dim)
                .map(|d| (0..k).map(|p| h[p * dim + d]).sum())
                .collect();
            let (mut checked, mut via_members) = (0, 0);
            for responders in subsets(n) {
                let lost = (0..n / g)
                    .filter(|&grp| {
                        let led = responders.contains(&(grp * g));
                        let members: Vec<usize> = responders
                            .iter()
                            .filter(|&&w| w / g == grp && w % g != 0)
                            .map(|&w| w % g)
                            .collect();
                        !led && !t.group_decodable(&members)
                    })
                    .count();
                if lost > s_out {
                    continue;
                }
                assert!(root.is_decodable(&responders), "{kind:?} {responders:?}");
                let d = root.decode(&responders).expect("decode");
                assert!(
                    d.exact && d.residual < 1e-9,
                    "{kind:?} {responders:?}: {d:?}"
                );
                let mut got = vec![0.0; dim];
                for (&w, &a) in d.responders.iter().zip(&d.weights) {
                    assert!(responders.contains(&w));
                    via_members += usize::from(w % g != 0);
                    for (x, m) in got.iter_mut().zip(message(w)) {
                        *x += a * m;
                    }
                }
                for (x, f) in got.iter().zip(&full) {
                    assert!((x - f).abs() < 1e-9, "{kind:?} {responders:?}: {x} vs {f}");
                }
                checked += 1;
            }
            assert!(checked > 0 && via_members > 0, "{kind:?} n={n} G={g}");
        }
    }

    #[test]
    fn a_lost_group_beyond_s_out_is_not_claimed() {
        let t = TreeCode::new(CodeKind::Frc, 8, 2, 1, 1, 1).expect("valid");
        // Groups 0 and 1 lost entirely (workers 0..4 missing): two lost groups, s_out = 1.
        let responders: Vec<usize> = (4..8).collect();
        assert!(!t.is_decodable(&responders));
        assert!(!t.two_level_decode(&responders).expect("decode").exact);
    }

    #[test]
    fn the_code_matrix_is_the_kronecker_product() {
        let t = TreeCode::new(CodeKind::CyclicRepetition, 6, 3, 1, 1, 3).expect("valid");
        let c = t.outer.matrix();
        let d = t.inner.matrix();
        let b = t.matrix();
        assert_eq!(b.dim(), (6, c.ncols() * d.ncols()));
        for w in 0..6 {
            for j in 0..c.ncols() {
                for i in 0..d.ncols() {
                    let want = c[[w / 3, j]] * d[[w % 3, i]];
                    assert_eq!(b[[w, j * d.ncols() + i]], want);
                }
            }
        }
    }

    #[test]
    fn rank_zero_decodes_the_outer_code_over_the_leaders() {
        let make = || TreeCode::new(CodeKind::CyclicRepetition, 6, 3, 1, 1, 3).expect("valid");
        let (t, root) = (make(), make().root());
        // Leaders 0 and 3; either one is enough (s_out = 1).
        assert!(root.is_decodable(&[0, 3]) && root.is_decodable(&[3]));
        assert!(!root.is_decodable(&[]) && !root.is_decodable(&[1]));
        let d = root.decode(&[3]).expect("decode");
        assert_eq!(d.responders, vec![3]);
        assert!(d.exact, "{d:?}");
        // A group whose leader answered goes through the leader only.
        let d = root.decode(&[0, 1, 2]).expect("decode");
        assert_eq!(d.responders, vec![0]);
        // Leader 0 silent: members 1 and 2 decode group 0 at rank 0 (s_in = 1).
        assert!(root.is_decodable(&[1, 2]));
        let d = root.decode(&[1, 2]).expect("decode");
        assert_eq!(d.responders, vec![1, 2]);
        assert!(d.exact && d.residual < 1e-12, "{d:?}");
        // Over the workers' partitions: a leader has C[g, j] on every piece of j, a member its
        // own row of B.
        let (b, c, k_in) = (root.matrix(), t.outer.matrix(), t.inner.n_partitions());
        let flat = t.matrix();
        assert_eq!(b.dim(), (6, t.n_partitions()));
        for w in 0..6 {
            for p in 0..t.n_partitions() {
                let want = if w % 3 == 0 {
                    c[[w / 3, p / k_in]]
                } else {
                    flat[[w, p]]
                };
                assert_eq!(b[[w, p]], want, "row {w}");
            }
        }
        // The workers' view: the flat code, two-level decode, tolerating s_out stragglers.
        assert_eq!((t.n_workers(), t.max_stragglers()), (6, 1));
        assert!(t.decode(&[0, 1, 3, 4]).expect("decode").exact);
    }

    #[test]
    fn a_level_the_code_refuses_is_named() {
        // Cyclic MDS needs n − s odd: 9 workers in 3 groups, s = 1 at both levels.
        let e = TreeCode::new(CodeKind::CyclicMds, 9, 3, 1, 1, 3).expect_err("3 − 1 is even");
        let text = e.to_string();
        assert!(
            text.contains("--decode-tree 3: the outer code over n/G = 3 groups: ")
                && text.contains("n − s odd"),
            "{text}"
        );
        let e = TreeCode::new(CodeKind::CyclicMds, 6, 3, 1, 1, 3).expect_err("3 − 1 is even");
        assert!(
            e.to_string()
                .contains("--decode-tree 3: the inner code in each group of G = 3: "),
            "{e}"
        );
    }

    #[test]
    fn bad_group_sizes_are_refused_by_name() {
        for g in [0, 1, 3, 16] {
            let e = TreeCode::new(CodeKind::Frc, 8, g, 0, 1, 0).expect_err("refused");
            assert!(e.to_string().contains("--decode-tree"), "{e}");
        }
        let e = TreeCode::new(CodeKind::Expander, 8, 2, 0, 1, 0).expect_err("refused");
        assert!(e.to_string().contains("exact code"), "{e}");
    }
}
