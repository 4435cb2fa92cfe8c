//! What a post of the coded-gradient job asks its workers for, and how each job mode numbers
//! it on the wire.
//!
//! The protocol header carries a post's phase as a bare number (`comm::protocol::Header`), and
//! rank 0's collector sizes results by it. The number only means something within a job mode,
//! fixed by the configuration on every rank before any traffic:
//!
//! - [`Phases::Fixed`] (one code for the whole run, with or without K-FAC): 0 the coded gradient,
//!   1 the coded gradient and the coded K-FAC factor sums, 2 a K-FAC eigen round
//!   (`--kfac-eig workers`);
//! - [`Phases::Adapt`] (`train --adapt`): phase s is the coded gradient of the code with s,
//!   for s = 0..=the largest s the run may switch to.
//!
//! Both ends read a number through the same mode ([`Phases::ask`]) and write one with
//! [`Phases::number`], so a number never means one thing to rank 0 and another to a worker
//! (an `--adapt` post of s = 2 is a gradient post, never an eigen round). The configuration
//! refuses `--adapt` with K-FAC, so the two namespaces never meet in one run.
//!
//! Not here: the matrix-vector jobs (`train::matvec`, `linalg`), whose phases are their own.

/// What a post asks of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// The coded gradient and the loss.
    Gradient,
    /// K-FAC: the coded gradient, the loss and the coded factor sums.
    Factors,
    /// K-FAC `--kfac-eig workers`: the eigendecompositions assigned to the worker.
    Eigen,
    /// `--adapt`: the coded gradient of the code with this s.
    Code(usize),
}

/// The phase numbering of a job mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    /// One code for the run: 0 gradient, 1 gradient and factors, 2 eigen round.
    Fixed,
    /// `--adapt`: phase s asks for the code with s, for s ≤ `max_s`.
    Adapt {
        /// The largest s the run may switch to.
        max_s: usize,
    },
}

impl Phases {
    /// The number of `ask` on the wire; `None` when this mode has no such post.
    pub fn number(self, ask: Ask) -> Option<usize> {
        match (self, ask) {
            (Phases::Fixed, Ask::Gradient) => Some(0),
            (Phases::Fixed, Ask::Factors) => Some(1),
            (Phases::Fixed, Ask::Eigen) => Some(2),
            (Phases::Adapt { max_s }, Ask::Code(s)) if s <= max_s => Some(s),
            _ => None,
        }
    }

    /// What a post numbered `phase` asks for in this mode; `None` for a number the mode does
    /// not use (the worker refuses the post).
    pub fn ask(self, phase: usize) -> Option<Ask> {
        match self {
            Phases::Fixed => match phase {
                0 => Some(Ask::Gradient),
                1 => Some(Ask::Factors),
                2 => Some(Ask::Eigen),
                _ => None,
            },
            Phases::Adapt { max_s } => (phase <= max_s).then_some(Ask::Code(phase)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_reads_back_as_what_it_was_written_for() {
        for mode in [Phases::Fixed, Phases::Adapt { max_s: 3 }] {
            for phase in 0..6 {
                if let Some(ask) = mode.ask(phase) {
                    assert_eq!(mode.number(ask), Some(phase), "{mode:?} {phase}");
                }
            }
        }
    }

    #[test]
    fn an_adapt_post_of_s_2_is_a_gradient_post_never_an_eigen_round() {
        let adapt = Phases::Adapt { max_s: 3 };
        assert_eq!(adapt.ask(2), Some(Ask::Code(2)));
        assert_eq!(adapt.number(Ask::Eigen), None);
        assert_eq!(adapt.number(Ask::Factors), None);
        assert_eq!(adapt.ask(4), None);
        assert_eq!(Phases::Fixed.ask(2), Some(Ask::Eigen));
        assert_eq!(Phases::Fixed.number(Ask::Code(0)), None);
        assert_eq!(Phases::Fixed.ask(3), None);
    }
}
