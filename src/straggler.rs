//! straggler
