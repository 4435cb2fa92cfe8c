//! How the values crossing a layer boundary are coded in a message (`--quantize-bits`,
//! pdADMM-G-Q's idea: quantized p and q cut the bytes between layers).
//!
//! Raw: the f64 values themselves. Quantized to b ∈ {8, 16} bits: per block of values (one
//! matrix of a message), its minimum `lo` and maximum `hi` as two f64, then every value's
//! nearest level on the uniform grid lo + k·(hi − lo)/(2^b − 1), k = 0..2^b − 1, packed 64/b
//! codes per f64 slot (the slot's bits, not its value: the messages are moved as bytes). The
//! error per value is at most (hi − lo)/(2(2^b − 1)). Non-finite input gives a non-finite `lo`
//! or `hi`, and every decoded value is then NaN: a diverged run stays visibly diverged.

/// A message codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    bits: Option<u32>,
}

impl Codec {
    /// The codec of `--quantize-bits` (None: raw f64). `bits` must be 8 or 16 (checked by the
    /// config).
    pub fn new(bits: Option<u32>) -> Codec {
        Codec { bits }
    }

    /// f64 slots that `n` values take.
    pub fn len(&self, n: usize) -> usize {
        match self.bits {
            None => n,
            Some(b) => 2 + (n * b as usize).div_ceil(64),
        }
    }

    /// Code `src` into `out` (exactly [`Codec::len`] of `src.len()` slots).
    pub fn encode(&self, src: &[f64], out: &mut [f64]) {
        let Some(b) = self.bits else {
            out.copy_from_slice(src);
            return;
        };
        let (lo, hi) = if src.is_empty() {
            (0.0, 0.0)
        } else if src.iter().all(|v| v.is_finite()) {
            src.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                })
        } else {
            (f64::NAN, f64::NAN)
        };
        out[0] = lo;
        out[1] = hi;
        let levels = ((1u64 << b) - 1) as f64;
        let per = (64 / b) as usize;
        let span = hi - lo;
        for (slot, chunk) in out[2..].iter_mut().zip(src.chunks(per)) {
            let mut word = 0u64;
            for (j, &v) in chunk.iter().enumerate() {
                let code = if span > 0.0 {
                    (((v - lo) / span) * levels).round().clamp(0.0, levels) as u64
                } else {
                    0
                };
                word |= code << (b as usize * j);
            }
            *slot = f64::from_bits(word);
        }
    }

    /// Decode `src` (as [`Codec::encode`] wrote it) into `out`.
    pub fn decode(&self, src: &[f64], out: &mut [f64]) {
        let Some(b) = self.bits else {
            out.copy_from_slice(src);
            return;
        };
        let (lo, hi) = (src[0], src[1]);
        let levels = ((1u64 << b) - 1) as f64;
        let mask = (1u64 << b) - 1;
        let per = (64 / b) as usize;
        let step = (hi - lo) / levels;
        for (slot, chunk) in src[2..].iter().zip(out.chunks_mut(per)) {
            let word = slot.to_bits();
            for (j, v) in chunk.iter_mut().enumerate() {
                let code = (word >> (b as usize * j)) & mask;
                *v = if step > 0.0 {
                    lo + code as f64 * step
                } else {
                    lo + 0.0 * hi
                };
            }
        }
    }

    /// The largest error a value may get: half a grid step of a block spanning `span`.
    pub fn max_error(&self, span: f64) -> f64 {
        match self.bits {
            None => 0.0,
            Some(b) => span / (2.0 * ((1u64 << b) - 1) as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_exact_and_quantized_is_within_half_a_step() {
        let src: Vec<f64> = (0..37)
            .map(|i| ((i * 7919) % 101) as f64 / 13.0 - 3.0)
            .collect();
        let raw = Codec::new(None);
        let mut out = vec![0.0; raw.len(src.len())];
        raw.encode(&src, &mut out);
        let mut back = vec![0.0; src.len()];
        raw.decode(&out, &mut back);
        assert_eq!(back, src);
        let (lo, hi) = (-3.0, 100.0 / 13.0 - 3.0);
        for bits in [8, 16] {
            let c = Codec::new(Some(bits));
            assert_eq!(c.len(37), 2 + (37 * bits as usize).div_ceil(64));
            let mut out = vec![0.0; c.len(src.len())];
            c.encode(&src, &mut out);
            c.decode(&out, &mut back);
            let tol = c.max_error(hi - lo) * (1.0 + 1e-12);
            for (a, b) in src.iter().zip(&back) {
                assert!((a - b).abs() <= tol, "{bits} bits: {a} vs {b}");
            }
            // The ends of the range are grid points.
            assert_eq!(back.iter().copied().fold(f64::INFINITY, f64::min), lo);
            // Coding what was decoded changes nothing.
            let mut again = vec![0.0; out.len()];
            c.encode(&back, &mut again);
            let mut twice = vec![0.0; src.len()];
            c.decode(&again, &mut twice);
            for (a, b) in back.iter().zip(&twice) {
                assert!((a - b).abs() <= 1e-12 * (hi - lo), "{a} {b}");
            }
        }
    }

    #[test]
    fn constant_empty_and_non_finite_blocks() {
        let c = Codec::new(Some(8));
        let src = vec![2.5; 9];
        let mut out = vec![0.0; c.len(9)];
        c.encode(&src, &mut out);
        let mut back = vec![0.0; 9];
        c.decode(&out, &mut back);
        assert_eq!(back, src);
        let mut none = vec![0.0; c.len(0)];
        c.encode(&[], &mut none);
        assert_eq!(none, vec![0.0, 0.0]);
        let bad = [1.0, f64::INFINITY, 0.0];
        let mut out = vec![0.0; c.len(3)];
        c.encode(&bad, &mut out);
        let mut back = vec![0.0; 3];
        c.decode(&out, &mut back);
        assert!(back.iter().all(|v| v.is_nan()));
    }
}
