//! Checkpoints of pdADMM: every layer's variables and views, one file per layer rank, and rank
//! 0's manifest.
//!
//! A layer rank holding layers a..=b writes `OUT/ckpt.layersA-B.h5` (the serial reference, which
//! holds them all, `ckpt.layers1-L.h5`) at a boundary k — after iteration k − 1, with its views
//! of its neighbours' values exactly those of iteration k (a consistent cut, see `worker`): per
//! layer l the arrays `layerL.w`, `.b`, `.z`, `.p` (l ≥ 2), `.q`, `.u`, `.right_p` (l < L),
//! `.left_q`, `.left_u` (l ≥ 2). Layer 1's p is the training rows and the output layer's labels
//! are data: read again on resume. Rank 0 writes the manifest `OUT/ckpt.h5` (no arrays: the
//! boundary, the configuration's hash, the seed, the training clock) only after every layer rank
//! reported its file of that boundary written and the results file holds every row before it.
//! Each file keeps its previous generation (`*.prev.h5`) and is written atomically
//! ([`crate::io::checkpoint`]). A resume takes the newest boundary that the manifest and every
//! layer file have.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::group::LayerGroup;
use super::layer::{Layer, Penalties};
use super::net::Net;
use super::quant::Codec;
use crate::io::checkpoint::{self, ArrayCheckpoint, NamedArray};
use crate::io::IoError;

/// Stem of rank 0's manifest.
pub const MANIFEST: &str = "ckpt";

/// Stem of the checkpoint of layers `range`.
pub fn group_stem(range: &RangeInclusive<usize>) -> String {
    format!("ckpt.layers{}-{}", range.start(), range.end())
}

fn named(name: String, a: &Array2<f64>) -> NamedArray {
    NamedArray {
        name,
        shape: a.shape().to_vec(),
        values: a.iter().copied().collect(),
    }
}

/// What identifies a run's checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp<'a> {
    pub dir: &'a Path,
    pub hash: &'a str,
    pub seed: u64,
}

/// Write `group`'s checkpoint of boundary `iteration`.
pub fn save_group(
    stamp: &Stamp<'_>,
    group: &LayerGroup,
    iteration: u64,
    elapsed_s: f64,
) -> Result<PathBuf, IoError> {
    let mut arrays = Vec::new();
    for l in &group.layers {
        let k = l.index;
        let mut add = |what: &str, a: &Array2<f64>| {
            arrays.push(named(format!("layer{k}.{what}"), a));
        };
        add("w", &l.w);
        add("b", &l.b.clone().insert_axis(ndarray::Axis(0)));
        add("z", &l.z);
        if k > 1 {
            add("p", &l.p);
            add("left_q", &l.left_q);
            add("left_u", &l.left_u);
        }
        if !l.last {
            add("q", &l.q);
            add("u", &l.u);
            add("right_p", &l.right_p);
        }
    }
    let stem = group_stem(&(group.first()..=group.last()));
    checkpoint::save_arrays(
        stamp.dir,
        &stem,
        &ArrayCheckpoint {
            iteration,
            config_hash: stamp.hash.to_string(),
            seed: stamp.seed,
            elapsed_s,
            arrays,
        },
    )
}

/// The boundaries of layers `range`'s valid checkpoint generations, newest first, with the
/// reasons the others were refused.
pub fn group_boundaries(
    stamp: &Stamp<'_>,
    range: &RangeInclusive<usize>,
) -> (Vec<u64>, Vec<String>) {
    let (good, reasons) = checkpoint::arrays_generations(stamp.dir, &group_stem(range), stamp.hash);
    (good.iter().map(|(c, _)| c.iteration).collect(), reasons)
}

/// The manifest's valid generations: (boundary, training clock), newest first, with the reasons
/// the others were refused.
pub fn manifest_boundaries(stamp: &Stamp<'_>) -> (Vec<(u64, f64)>, Vec<String>) {
    let (good, reasons) = checkpoint::arrays_generations(stamp.dir, MANIFEST, stamp.hash);
    (
        good.iter()
            .map(|(c, _)| (c.iteration, c.elapsed_s))
            .collect(),
        reasons,
    )
}

/// Write rank 0's manifest of boundary `iteration`.
pub fn save_manifest(
    stamp: &Stamp<'_>,
    iteration: u64,
    elapsed_s: f64,
) -> Result<PathBuf, IoError> {
    checkpoint::save_arrays(
        stamp.dir,
        MANIFEST,
        &ArrayCheckpoint {
            iteration,
            config_hash: stamp.hash.to_string(),
            seed: stamp.seed,
            elapsed_s,
            arrays: Vec::new(),
        },
    )
}

/// Everything a group's layers need besides their checkpointed arrays.
pub struct Restore<'a> {
    pub net: &'a Net,
    pub range: RangeInclusive<usize>,
    pub pen: Penalties,
    pub codec: Codec,
    /// The training rows (the group holding layer 1).
    pub rows: Option<Array2<f64>>,
    /// The classes of the rows (the group holding the output layer).
    pub labels: &'a [usize],
    /// Training rows N.
    pub n: usize,
}

/// Layers `r.range` as checkpointed at boundary `iteration`.
pub fn load_group(
    stamp: &Stamp<'_>,
    iteration: u64,
    r: Restore<'_>,
) -> Result<LayerGroup, IoError> {
    let stem = group_stem(&r.range);
    let (good, reasons) = checkpoint::arrays_generations(stamp.dir, &stem, stamp.hash);
    let Some((c, path)) = good.into_iter().find(|(c, _)| c.iteration == iteration) else {
        return Err(IoError::layout(
            stamp.dir,
            format!(
                "no checkpoint of layers {}..={} at iteration {iteration} ({stem}.h5 or {stem}.prev.h5){}",
                r.range.start(),
                r.range.end(),
                if reasons.is_empty() { String::new() } else { format!(": {}", reasons.join("; ")) }
            ),
        ));
    };
    let mut arrays = c.arrays;
    let mut take = |name: String, shape: (usize, usize)| -> Result<Array2<f64>, IoError> {
        let i = arrays
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| IoError::layout(&path, format!("no array {name}")))?;
        let a = arrays.swap_remove(i);
        if a.shape != [shape.0, shape.1] {
            return Err(IoError::layout(
                &path,
                format!("{name} has shape {:?}, the run needs {shape:?}", a.shape),
            ));
        }
        Array2::from_shape_vec(shape, a.values).map_err(|e| IoError::layout(&path, e.to_string()))
    };
    let mut layers = Vec::new();
    let mut rows = r.rows;
    let n = r.n;
    for l in r.range.clone() {
        let (n_in, n_out) = (r.net.inputs(l), r.net.outputs(l));
        let last = l == r.net.layers();
        let w = take(format!("layer{l}.w"), (n_out, n_in))?;
        let b = take(format!("layer{l}.b"), (1, n_out))?.remove_axis(ndarray::Axis(0));
        let z = take(format!("layer{l}.z"), (n, n_out))?;
        let empty = || Array2::zeros((0, 0));
        let (p, left) = if l > 1 {
            (
                take(format!("layer{l}.p"), (n, n_in))?,
                (
                    take(format!("layer{l}.left_q"), (n, n_in))?,
                    take(format!("layer{l}.left_u"), (n, n_in))?,
                ),
            )
        } else {
            let x = rows
                .take()
                .ok_or_else(|| IoError::layout(&path, "layer 1 needs the training rows"))?;
            (x, (empty(), empty()))
        };
        let (q, u, right) = if last {
            (empty(), empty(), empty())
        } else {
            (
                take(format!("layer{l}.q"), (n, n_out))?,
                take(format!("layer{l}.u"), (n, n_out))?,
                take(format!("layer{l}.right_p"), (n, n_out))?,
            )
        };
        let labels = if last { r.labels.to_vec() } else { Vec::new() };
        layers.push(Layer::from_parts(
            l, last, w, b, p, z, q, u, left, right, labels,
        ));
    }
    Ok(LayerGroup::new(layers, r.pen, r.codec))
}
