//! What `train --code` selects: a gradient code (rank 0 decodes coded gradients) or an MDS
//! family for coded training through mat-vecs (Lee et al.: each gradient step is two coded
//! mat-vecs, X·w then Xᵀ·r). Both are "codes" to the user; they run on different gradient
//! engines of the one training loop.

use serde::{Deserialize, Serialize};

use super::CodeKind;
use crate::linalg::Family;

/// A code for `train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrainCode {
    /// A gradient code over data partitions.
    Gradient(CodeKind),
    /// An MDS code of coded mat-vecs (`mds-<family>`).
    MatVec(Family),
}

/// Every gradient code then every mat-vec family, in `--help` order.
const ALL: [TrainCode; 18] = [
    TrainCode::Gradient(CodeKind::Uncoded),
    TrainCode::Gradient(CodeKind::IgnoreStragglers),
    TrainCode::Gradient(CodeKind::Frc),
    TrainCode::Gradient(CodeKind::CyclicRepetition),
    TrainCode::Gradient(CodeKind::CyclicMds),
    TrainCode::Gradient(CodeKind::CommEfficient),
    TrainCode::Gradient(CodeKind::Hetero),
    TrainCode::Gradient(CodeKind::Expander),
    TrainCode::Gradient(CodeKind::Bgc),
    TrainCode::Gradient(CodeKind::FrcApprox),
    TrainCode::Gradient(CodeKind::Stochastic),
    TrainCode::MatVec(Family::Replication),
    TrainCode::MatVec(Family::Vandermonde),
    TrainCode::MatVec(Family::Chebyshev),
    TrainCode::MatVec(Family::Rotation),
    TrainCode::MatVec(Family::Circulant),
    TrainCode::MatVec(Family::Systematic),
    TrainCode::MatVec(Family::SystematicRotation),
];

impl TrainCode {
    /// The name on the command line and in result files.
    pub fn name(&self) -> &'static str {
        match self {
            TrainCode::Gradient(k) => k.name(),
            TrainCode::MatVec(f) => match f {
                Family::Replication => "mds-replication",
                Family::Vandermonde => "mds-vandermonde",
                Family::Chebyshev => "mds-chebyshev",
                Family::Rotation => "mds-rotation",
                Family::Circulant => "mds-circulant",
                Family::Systematic => "mds-systematic",
                Family::SystematicRotation => "mds-systematic-rotation",
            },
        }
    }

    /// The gradient code, if this is one.
    pub fn gradient(&self) -> Option<CodeKind> {
        match self {
            TrainCode::Gradient(k) => Some(*k),
            TrainCode::MatVec(_) => None,
        }
    }

    fn help(&self) -> &'static str {
        match self {
            TrainCode::Gradient(k) => match k {
                CodeKind::Uncoded => "k = n, every worker one partition; wait for all",
                CodeKind::IgnoreStragglers => {
                    "sum the first n − s plain gradients, scaled by n/(n − s) (approximate)"
                }
                CodeKind::Frc => "fractional repetition; needs (s + 1) | n",
                CodeKind::CyclicRepetition => "cyclic repetition (Tandon et al., Alg. 2)",
                CodeKind::CyclicMds => "real cyclic MDS (Reed–Solomon) code; needs n − s odd",
                CodeKind::CommEfficient => {
                    "communication-efficient (Ye & Abbe): messages of ⌈dim/m⌉ values (--split m)"
                }
                CodeKind::Hetero => {
                    "heterogeneity-aware: partitions in proportion to --worker-speeds"
                }
                CodeKind::Expander => "approximate: expander graph code (--degree d)",
                CodeKind::Bgc => "approximate: Bernoulli gradient code",
                CodeKind::FrcApprox => "approximate: FRC groups of d, stops after n − s",
                CodeKind::Stochastic => "approximate: stochastic gradient code, unbiased",
            },
            TrainCode::MatVec(f) => match f {
                Family::Replication => "mat-vecs: block i on worker i mod k",
                Family::Vandermonde => "mat-vecs: real Vandermonde (unstable past n ≈ 12)",
                Family::Chebyshev => "mat-vecs: Vandermonde at Chebyshev nodes",
                Family::Rotation => "mat-vecs: rotation embedding of roots of unity (stable)",
                Family::Circulant => "mat-vecs: circulant-permutation embedding",
                Family::Systematic => "mat-vecs: systematic [I; P], decodes missing blocks only",
                Family::SystematicRotation => "mat-vecs: systematic rotation (stable)",
            },
        }
    }
}

impl std::fmt::Display for TrainCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TrainCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL.iter()
            .copied()
            .find(|c| c.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown code '{s}' (expected one of {})",
                    ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
                )
            })
    }
}

impl clap::ValueEnum for TrainCode {
    fn value_variants<'a>() -> &'a [Self] {
        &ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.help()))
    }
}

impl Serialize for TrainCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TrainCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_from_its_name() {
        for c in ALL {
            assert_eq!(c.name().parse::<TrainCode>(), Ok(c));
        }
        assert!("mds-nope"
            .parse::<TrainCode>()
            .unwrap_err()
            .contains("cyclic-mds"));
        assert_eq!(
            TrainCode::Gradient(CodeKind::Frc).gradient(),
            Some(CodeKind::Frc)
        );
        assert_eq!(TrainCode::MatVec(Family::Rotation).gradient(), None);
    }
}
