//! Checkpoints `OUT/ckpt.h5` with one previous generation `OUT/ckpt.prev.h5` (GUIDE §5).
//!
//! Writing: a new temporary file in the same folder (created exclusively, never through a
//! symlink), closed, fsynced; the current generation is renamed to the previous one, the
//! temporary renamed into place, and the folder fsynced. A crash at any point leaves either the
//! new or the previous generation complete; stale temporaries are removed on the next save.
//!
//! Loading verifies each generation (format version, config hash, lengths, finiteness and a
//! SHA-256 over the stored state) and falls back to the previous generation with the reason
//! logged when the newest one is bad.
//!
//! Format 2 adds the optimizer's moments (`/adam_m`, `/adam_v`, with Adam only). Format 1 files
//! (no moments) still load; they can only come from gd or nesterov runs, and a resume checks
//! that the state fits the optimizer. Format 3 adds K-FAC's state (with `kfac` only):
//! `/kfac_layout` (offset, units, inputs per layer), per layer l and factor F ∈ {a, g}
//! `/kfac_F{l}` (the running average), `/kfac_F{l}_basis`, `/kfac_F{l}_eig`, and the attribute
//! `kfac_last_update` (the iteration of the last factor update, absent before the first).
//! Formats 1 and 2 (no K-FAC state, the same checksum) still load. Format 4 adds the state of
//! `train --adapt` (with it only): the attributes `adapt_s` (the s in force at the next
//! iteration), `adapt_deadline_ms` (with `--adapt-deadline`), `adapt_pending_up` (1 or 0: the
//! direction of a switch being confirmed) with the dataset `/adapt_pending_gains` (its
//! windows' predicted gains). Formats 1–3 (no adaptive state, the same checksum) still load.
//!
//! Besides `train`'s checkpoint ([`Checkpoint`]: the optimizer state), the same atomic write,
//! generations and verification hold checkpoints of named arrays ([`ArrayCheckpoint`], under a
//! file stem of the caller's: `gradcode admm` writes one per layer rank, `ckpt.layersA-B.h5`,
//! and rank 0's manifest `ckpt.h5`, which holds no array).

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::File;
use ndarray::{Array1, Array2, ArrayViewD, IxDyn};
use sha2::{Digest, Sha256};

use super::IoError;
use crate::optim::kfac::{Factor, KfacState, LayerFactors};
use crate::optim::{AdamMoments, OptimizerState};

/// Version of the checkpoint layout written (2: with the optimizer's moments; 3: with K-FAC's
/// state; 4: with the adaptive state of `train --adapt`).
pub const FORMAT_VERSION: u64 = 4;

/// Versions read: 1 (before the moments), 2 (before K-FAC), 3 (before `--adapt`'s state) and 4.
const READABLE: [u64; 4] = [1, 2, 3, 4];

/// The state of `train --adapt` when the checkpoint was written, so that a resumed run goes on
/// with the same code and deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptState {
    /// The s in force at the checkpoint's iteration.
    pub s: u64,
    /// `--adapt-deadline`: the deadline in force, in ms.
    pub deadline_ms: Option<f64>,
    /// A switch being confirmed: its direction (true: a larger s) and the predicted gains of
    /// the decisions in a row that favoured it.
    pub pending: Option<(bool, Vec<f64>)>,
}

/// Everything needed to continue a run bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The next iteration to run.
    pub iteration: u64,
    /// Optimizer state (iterate, previous iterate, steps).
    pub state: OptimizerState,
    /// [`crate::config::RunConfig::trajectory_hash`] of the run that wrote it.
    pub config_hash: String,
    /// The seed (all randomness of a run is counter-based on it).
    pub seed: u64,
    /// Elapsed seconds of the run when the checkpoint was written (so wall-clock axes continue).
    pub elapsed_s: f64,
    /// `train --adapt`: the adaptive state (None: another run, or a checkpoint before format 4).
    pub adapt: Option<AdaptState>,
}

fn digest(c: &Checkpoint) -> String {
    let mut h = Sha256::new();
    h.update(c.iteration.to_le_bytes());
    h.update(c.state.steps.to_le_bytes());
    h.update(c.seed.to_le_bytes());
    h.update(c.elapsed_s.to_le_bytes());
    h.update(c.config_hash.as_bytes());
    for v in c.state.w.iter().chain(c.state.w_prev.iter()) {
        h.update(v.to_le_bytes());
    }
    // Format 1 had no moments: without them the digest is the same.
    if let Some(a) = &c.state.adam {
        for v in a.m.iter().chain(a.v.iter()) {
            h.update(v.to_le_bytes());
        }
    }
    // Formats 1 and 2 had no K-FAC state: without it the digest is the same.
    if let Some(k) = &c.state.kfac {
        h.update(k.last_update.map_or(u64::MAX, |t| t).to_le_bytes());
        for l in &k.layers {
            for v in [l.offset, l.units, l.inputs] {
                h.update((v as u64).to_le_bytes());
            }
        }
        for v in k.values() {
            h.update(v.to_le_bytes());
        }
    }
    // Formats 1 to 3 had no adaptive state: without it the digest is the same.
    if let Some(a) = &c.adapt {
        h.update(a.s.to_le_bytes());
        h.update(a.deadline_ms.map_or(u64::MAX, f64::to_bits).to_le_bytes());
        if let Some((up, gains)) = &a.pending {
            h.update([u8::from(*up)]);
            for g in gains {
                h.update(g.to_le_bytes());
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn is_symlink(p: &Path) -> bool {
    p.symlink_metadata()
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

fn fsync_path(p: &Path) -> Result<(), IoError> {
    std::fs::File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| IoError::os(p, e))
}

/// The current and previous generation paths in `dir`.
pub fn generations(dir: &Path) -> [PathBuf; 2] {
    stem_generations(dir, "ckpt")
}

/// Remove temporaries left by a crash during a save.
pub fn clean_stale(dir: &Path) {
    clean_stale_stem(dir, "ckpt");
}

/// The current and previous generation paths of checkpoint `stem` in `dir`.
pub fn stem_generations(dir: &Path, stem: &str) -> [PathBuf; 2] {
    [
        dir.join(format!("{stem}.h5")),
        dir.join(format!("{stem}.prev.h5")),
    ]
}

/// Remove temporaries of checkpoint `stem` left by a crash during a save.
pub fn clean_stale_stem(dir: &Path, stem: &str) {
    let prefix = format!(".{stem}.h5.tmp");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with(&prefix) && !is_symlink(&e.path()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Write a new generation of checkpoint `stem` atomically: `body` fills a new temporary file,
/// which is closed, fsynced and renamed into place after the current generation became the
/// previous one; then the folder is fsynced.
fn write_atomically(
    dir: &Path,
    stem: &str,
    body: impl FnOnce(&File, &Path) -> Result<(), IoError>,
) -> Result<PathBuf, IoError> {
    std::fs::create_dir_all(dir).map_err(|e| IoError::os(dir, e))?;
    clean_stale_stem(dir, stem);
    let [cur, prev] = stem_generations(dir, stem);
    for p in [&cur, &prev] {
        if is_symlink(p) {
            return Err(IoError::layout(
                p,
                "is a symbolic link; refusing to write a checkpoint through it",
            ));
        }
    }
    let tmp = dir.join(format!(".{stem}.h5.tmp.{}", std::process::id()));
    if tmp.symlink_metadata().is_ok() {
        return Err(IoError::layout(
            &tmp,
            "temporary checkpoint path exists (a symlink or a foreign file); refusing to write",
        ));
    }
    let e = |err: hdf5::Error| IoError::hdf5(&tmp, err);
    let written = (|| -> Result<(), IoError> {
        let f = File::with_options()
            .with_fapl(|p| p.libver_latest())
            .create_excl(&tmp)
            .map_err(e)?;
        body(&f, &tmp)?;
        f.close().map_err(e)?;
        fsync_path(&tmp)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    if cur.exists() {
        std::fs::rename(&cur, &prev).map_err(|err| IoError::os(&cur, err))?;
    }
    std::fs::rename(&tmp, &cur).map_err(|err| IoError::os(&tmp, err))?;
    fsync_path(dir)?;
    Ok(cur)
}

/// Test-only fault plan (crate::faults): fail the write of `iteration`, with a partly written
/// temporary, the way a full disk fails a write.
fn injected_failure(tmp: &Path, iteration: u64) -> Result<(), IoError> {
    #[cfg(feature = "fault-injection")]
    if crate::faults::active().is_some_and(|p| p.checkpoint_fails(iteration)) {
        log::warn!("fault plan: checkpoint write of iteration {iteration} fails with ENOSPC");
        return Err(IoError::os(
            tmp,
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        ));
    }
    let _ = (tmp, iteration);
    Ok(())
}

/// Write scalar attributes and the two checksums' strings on `f`.
fn write_header(
    f: &File,
    tmp: &Path,
    u64s: &[(&str, u64)],
    elapsed_s: f64,
    strings: &[(&str, String)],
) -> Result<(), IoError> {
    let e = |err: hdf5::Error| IoError::hdf5(tmp, err);
    for (name, v) in u64s {
        f.new_attr::<u64>()
            .create(*name)
            .and_then(|a| a.write_scalar(v))
            .map_err(e)?;
    }
    f.new_attr::<f64>()
        .create("elapsed_s")
        .and_then(|a| a.write_scalar(&elapsed_s))
        .map_err(e)?;
    for (name, v) in strings {
        let v: VarLenUnicode = v.parse().map_err(|err| IoError::hdf5(tmp, err))?;
        f.new_attr::<VarLenUnicode>()
            .create(*name)
            .and_then(|a| a.write_scalar(&v))
            .map_err(e)?;
    }
    Ok(())
}

/// Write a new generation atomically.
pub fn save(dir: &Path, c: &Checkpoint) -> Result<PathBuf, IoError> {
    write_atomically(dir, "ckpt", |f, tmp| {
        let e = |err: hdf5::Error| IoError::hdf5(tmp, err);
        f.new_dataset_builder()
            .with_data(&c.state.w)
            .create("w")
            .map_err(e)?;
        injected_failure(tmp, c.iteration)?;
        f.new_dataset_builder()
            .with_data(&c.state.w_prev)
            .create("w_prev")
            .map_err(e)?;
        if let Some(a) = &c.state.adam {
            for (name, v) in [("adam_m", &a.m), ("adam_v", &a.v)] {
                f.new_dataset_builder()
                    .with_data(v)
                    .create(name)
                    .map_err(e)?;
            }
        }
        let mut header = vec![
            ("format_version", FORMAT_VERSION),
            ("iteration", c.iteration),
            ("steps", c.state.steps),
            ("seed", c.seed),
        ];
        if let Some(k) = &c.state.kfac {
            write_kfac(f, tmp, k)?;
            if let Some(t) = k.last_update {
                header.push(("kfac_last_update", t));
            }
        }
        if let Some(a) = &c.adapt {
            header.push(("adapt_s", a.s));
            if let Some((up, gains)) = &a.pending {
                header.push(("adapt_pending_up", u64::from(*up)));
                f.new_dataset_builder()
                    .with_data(gains.as_slice())
                    .create("adapt_pending_gains")
                    .map_err(e)?;
            }
            if let Some(d) = a.deadline_ms {
                f.new_attr::<f64>()
                    .create("adapt_deadline_ms")
                    .and_then(|at| at.write_scalar(&d))
                    .map_err(e)?;
            }
        }
        write_header(
            f,
            tmp,
            &header,
            c.elapsed_s,
            &[
                ("config_sha256", c.config_hash.clone()),
                ("state_sha256", digest(c)),
            ],
        )
    })
}

/// K-FAC's layout and every layer's factors, bases and eigenvalues (format 3).
fn write_kfac(f: &File, tmp: &Path, k: &KfacState) -> Result<(), IoError> {
    let e = |err: hdf5::Error| IoError::hdf5(tmp, err);
    let layout = Array2::from_shape_fn((k.layers.len(), 3), |(i, j)| {
        let l = &k.layers[i];
        [l.offset, l.units, l.inputs][j] as u64
    });
    f.new_dataset_builder()
        .with_data(&layout)
        .create("kfac_layout")
        .map_err(e)?;
    for (i, l) in k.layers.iter().enumerate() {
        for (name, fac) in [("a", &l.a), ("g", &l.g)] {
            let base = format!("kfac_{name}{i}");
            for (suffix, data) in [("", &fac.value), ("_basis", &fac.basis)] {
                // LAPACK's eigenvectors come column-major.
                f.new_dataset_builder()
                    .with_data(&data.as_standard_layout())
                    .create(format!("{base}{suffix}").as_str())
                    .map_err(e)?;
            }
            f.new_dataset_builder()
                .with_data(&fac.eigenvalues)
                .create(format!("{base}_eig").as_str())
                .map_err(e)?;
        }
    }
    Ok(())
}

/// K-FAC's state from a format-3 file that has one (None otherwise).
fn read_kfac(r: &Reader<'_>) -> Result<Option<KfacState>, IoError> {
    let f = &r.f;
    if !f.link_exists("kfac_layout") {
        return Ok(None);
    }
    let bad = |what: &str| r.bad(format!("K-FAC state: missing or unreadable /{what}"));
    let layout = f
        .dataset("kfac_layout")
        .and_then(|d| d.read_2d::<u64>())
        .map_err(|_| bad("kfac_layout"))?;
    let last_update = f
        .attr("kfac_last_update")
        .and_then(|a| a.read_scalar::<u64>())
        .ok();
    let mut layers = Vec::with_capacity(layout.nrows());
    for (i, row) in layout.outer_iter().enumerate() {
        let [offset, units, inputs] = [row[0], row[1], row[2]].map(|v| v as usize);
        let factor = |name: &str, n: usize| -> Result<Factor, IoError> {
            let base = format!("kfac_{name}{i}");
            let mat = |suffix: &str| {
                let full = format!("{base}{suffix}");
                f.dataset(&full)
                    .and_then(|d| d.read_2d::<f64>())
                    .ok()
                    .filter(|m| m.dim() == (n, n) && m.iter().all(|v| v.is_finite()))
                    .ok_or_else(|| bad(&full))
            };
            let (value, basis) = (mat("")?, mat("_basis")?);
            let eig = format!("{base}_eig");
            let eigenvalues = f
                .dataset(&eig)
                .and_then(|d| d.read_1d::<f64>())
                .ok()
                .filter(|v| v.len() == n && v.iter().all(|x| x.is_finite()))
                .ok_or_else(|| bad(&eig))?;
            Ok(Factor {
                value,
                basis,
                eigenvalues,
            })
        };
        let (a, g) = (factor("a", inputs + 1)?, factor("g", units)?);
        layers.push(LayerFactors {
            offset,
            units,
            inputs,
            a,
            g,
            updated: last_update.is_some(),
        });
    }
    Ok(Some(KfacState {
        layers,
        last_update,
    }))
}

/// The adaptive state of a format-4 file that has one (None otherwise).
fn read_adapt(r: &Reader<'_>) -> Result<Option<AdaptState>, IoError> {
    if r.f.attr("adapt_s").is_err() {
        return Ok(None);
    }
    let s = r.u64("adapt_s")?;
    let deadline_ms = match r.f.attr("adapt_deadline_ms") {
        Ok(_) => Some(r.f64("adapt_deadline_ms")?),
        Err(_) => None,
    };
    let pending = match r.f.attr("adapt_pending_up") {
        Ok(_) => {
            let up = r.u64("adapt_pending_up")? == 1;
            let gains =
                r.f.dataset("adapt_pending_gains")
                    .and_then(|d| d.read_raw::<f64>())
                    .map_err(|_| r.bad("missing or unreadable /adapt_pending_gains".into()))?;
            Some((up, gains))
        }
        Err(_) => None,
    };
    Ok(Some(AdaptState {
        s,
        deadline_ms,
        pending,
    }))
}

/// A checkpoint file opened for reading, with its attribute readers.
struct Reader<'p> {
    f: File,
    path: &'p Path,
}

impl Reader<'_> {
    fn bad(&self, m: String) -> IoError {
        IoError::layout(self.path, m)
    }
    fn u64(&self, name: &str) -> Result<u64, IoError> {
        self.f
            .attr(name)
            .and_then(|a| a.read_scalar::<u64>())
            .map_err(|_| self.bad(format!("missing attribute {name}")))
    }
    fn f64(&self, name: &str) -> Result<f64, IoError> {
        self.f
            .attr(name)
            .and_then(|a| a.read_scalar::<f64>())
            .map_err(|_| self.bad(format!("missing attribute {name}")))
    }
    fn string(&self, name: &str) -> Result<String, IoError> {
        self.f
            .attr(name)
            .and_then(|a| a.read_scalar::<VarLenUnicode>())
            .map(|v| v.as_str().to_string())
            .map_err(|_| self.bad(format!("missing attribute {name}")))
    }
}

/// Open checkpoint `path`, check its format version (attribute `version_attr`, one of
/// `readable`) and that the configuration hash is `expected_hash`; the reader, the hash and the
/// version.
fn open_verified<'p>(
    path: &'p Path,
    version_attr: &str,
    readable: &[u64],
    expected_hash: &str,
) -> Result<(Reader<'p>, String, u64), IoError> {
    if !path.exists() {
        return Err(IoError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let f = File::open(path).map_err(|err| IoError::NotHdf5 {
        path: path.to_path_buf(),
        detail: err.to_string(),
    })?;
    let r = Reader { f, path };
    let found = r.u64(version_attr)?;
    if !readable.contains(&found) {
        return Err(r.bad(format!(
            "checkpoint format version {found}, this gradcode reads {readable:?}"
        )));
    }
    let config_hash = r.string("config_sha256")?;
    if config_hash != expected_hash {
        return Err(r.bad(format!(
            "written by another configuration (config hash {}… , this run {}…); start a new run folder or use the original settings",
            &config_hash.get(..12).unwrap_or(&config_hash),
            &expected_hash.get(..12).unwrap_or(expected_hash)
        )));
    }
    Ok((r, config_hash, found))
}

/// Read and verify one checkpoint file.
pub fn read(path: &Path, expected_hash: &str) -> Result<Checkpoint, IoError> {
    let bad = |m: String| IoError::layout(path, m);
    let (r, config_hash, version) =
        open_verified(path, "format_version", &READABLE, expected_hash)?;
    let f = &r.f;
    let vec = |name: &str| -> Result<Array1<f64>, IoError> {
        f.dataset(name)
            .and_then(|d| d.read_1d::<f64>())
            .map_err(|_| bad(format!("missing or unreadable /{name}")))
    };
    let (w, w_prev) = (vec("w")?, vec("w_prev")?);
    if w.len() != w_prev.len() || w.iter().chain(w_prev.iter()).any(|v| !v.is_finite()) {
        return Err(bad(
            "parameters have mismatched lengths or non-finite values".into(),
        ));
    }
    let adam = if version >= 2 && f.link_exists("adam_m") {
        let (m, v) = (vec("adam_m")?, vec("adam_v")?);
        if m.len() != w.len()
            || v.len() != w.len()
            || m.iter().chain(v.iter()).any(|x| !x.is_finite())
            || v.iter().any(|&x| x < 0.0)
        {
            return Err(bad(
                "Adam's moments have mismatched lengths, non-finite or negative values".into(),
            ));
        }
        Some(AdamMoments { m, v })
    } else {
        None
    };
    let kfac = if version >= 3 { read_kfac(&r)? } else { None };
    let adapt = if version >= 4 { read_adapt(&r)? } else { None };
    let elapsed_s = r.f64("elapsed_s")?;
    let c = Checkpoint {
        iteration: r.u64("iteration")?,
        state: OptimizerState {
            w,
            w_prev,
            steps: r.u64("steps")?,
            adam,
            kfac,
        },
        config_hash,
        seed: r.u64("seed")?,
        elapsed_s,
        adapt,
    };
    if r.string("state_sha256")? != digest(&c) {
        return Err(bad("state checksum mismatch (corrupted checkpoint)".into()));
    }
    Ok(c)
}

/// Load the newest valid generation from `dir`, falling back to the previous one. Returns the
/// checkpoint, the file it came from, and the reasons earlier generations were rejected.
pub fn load(
    dir: &Path,
    expected_hash: &str,
) -> Result<(Checkpoint, PathBuf, Vec<String>), IoError> {
    let mut reasons = Vec::new();
    for p in generations(dir) {
        match read(&p, expected_hash) {
            Ok(c) => return Ok((c, p, reasons)),
            Err(IoError::NotFound { .. }) => {}
            Err(err) => reasons.push(err.to_string()),
        }
    }
    if reasons.is_empty() {
        Err(IoError::NotFound {
            path: dir.join("ckpt.h5"),
        })
    } else {
        Err(IoError::layout(
            dir,
            format!("no usable checkpoint: {}", reasons.join("; ")),
        ))
    }
}

/// Version of the named-array checkpoint layout.
pub const ARRAYS_FORMAT_VERSION: u64 = 1;

/// One named array of an [`ArrayCheckpoint`] (row-major values).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedArray {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

/// A checkpoint of named arrays: the state of a set of layers of `gradcode admm`, or (with no
/// arrays) its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayCheckpoint {
    /// The boundary it holds: the next iteration to run.
    pub iteration: u64,
    /// The trajectory hash of the configuration that wrote it.
    pub config_hash: String,
    pub seed: u64,
    /// Elapsed seconds of the run when it was written.
    pub elapsed_s: f64,
    pub arrays: Vec<NamedArray>,
}

fn arrays_digest(c: &ArrayCheckpoint) -> String {
    let mut h = Sha256::new();
    h.update(c.iteration.to_le_bytes());
    h.update(c.seed.to_le_bytes());
    h.update(c.elapsed_s.to_le_bytes());
    h.update(c.config_hash.as_bytes());
    for a in &c.arrays {
        h.update((a.name.len() as u64).to_le_bytes());
        h.update(a.name.as_bytes());
        for d in &a.shape {
            h.update((*d as u64).to_le_bytes());
        }
        for v in &a.values {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Write a new generation of checkpoint `stem` (`stem.h5`, the previous one kept as
/// `stem.prev.h5`) atomically.
pub fn save_arrays(dir: &Path, stem: &str, c: &ArrayCheckpoint) -> Result<PathBuf, IoError> {
    write_atomically(dir, stem, |f, tmp| {
        let e = |err: hdf5::Error| IoError::hdf5(tmp, err);
        for (i, a) in c.arrays.iter().enumerate() {
            let view = ArrayViewD::from_shape(IxDyn(&a.shape), &a.values)
                .map_err(|err| IoError::layout(tmp, format!("array {}: {err}", a.name)))?;
            f.new_dataset_builder()
                .with_data(&view)
                .create(a.name.as_str())
                .map_err(e)?;
            if i == 0 {
                injected_failure(tmp, c.iteration)?;
            }
        }
        let names: Vec<&str> = c.arrays.iter().map(|a| a.name.as_str()).collect();
        write_header(
            f,
            tmp,
            &[
                ("arrays_format_version", ARRAYS_FORMAT_VERSION),
                ("iteration", c.iteration),
                ("seed", c.seed),
            ],
            c.elapsed_s,
            &[
                ("arrays", names.join(",")),
                ("config_sha256", c.config_hash.clone()),
                ("state_sha256", arrays_digest(c)),
            ],
        )
    })
}

/// Read and verify one named-array checkpoint file.
pub fn read_arrays(path: &Path, expected_hash: &str) -> Result<ArrayCheckpoint, IoError> {
    let (r, config_hash, _) = open_verified(
        path,
        "arrays_format_version",
        &[ARRAYS_FORMAT_VERSION],
        expected_hash,
    )?;
    let list = r.string("arrays")?;
    let mut arrays = Vec::new();
    for name in list.split(',').filter(|n| !n.is_empty()) {
        let a =
            r.f.dataset(name)
                .and_then(|d| d.read_dyn::<f64>())
                .map_err(|_| r.bad(format!("missing or unreadable /{name}")))?;
        arrays.push(NamedArray {
            name: name.to_string(),
            shape: a.shape().to_vec(),
            values: a.iter().copied().collect(),
        });
    }
    let c = ArrayCheckpoint {
        iteration: r.u64("iteration")?,
        config_hash,
        seed: r.u64("seed")?,
        elapsed_s: r.f64("elapsed_s")?,
        arrays,
    };
    if r.string("state_sha256")? != arrays_digest(&c) {
        return Err(r.bad("state checksum mismatch (corrupted checkpoint)".into()));
    }
    Ok(c)
}

/// Every valid generation of checkpoint `stem` in `dir`, newest first, and the reasons the
/// others were rejected (a missing file is no reason).
pub fn arrays_generations(
    dir: &Path,
    stem: &str,
    expected_hash: &str,
) -> (Vec<(ArrayCheckpoint, PathBuf)>, Vec<String>) {
    let mut good = Vec::new();
    let mut reasons = Vec::new();
    for p in stem_generations(dir, stem) {
        match read_arrays(&p, expected_hash) {
            Ok(c) => good.push((c, p)),
            Err(IoError::NotFound { .. }) => {}
            Err(err) => reasons.push(err.to_string()),
        }
    }
    (good, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt(it: u64) -> Checkpoint {
        Checkpoint {
            iteration: it,
            state: OptimizerState {
                w: Array1::from(vec![1.0, it as f64]),
                w_prev: Array1::from(vec![0.5, 0.25]),
                steps: it,
                adam: None,
                kfac: None,
            },
            config_hash: "abc".into(),
            seed: 7,
            elapsed_s: 1.5,
            adapt: None,
        }
    }

    #[test]
    fn save_load_keeps_previous_generation() {
        let d = tempfile::tempdir().unwrap();
        save(d.path(), &ckpt(1)).unwrap();
        save(d.path(), &ckpt(2)).unwrap();
        let (c, p, r) = load(d.path(), "abc").unwrap();
        assert_eq!(c, ckpt(2));
        assert!(p.ends_with("ckpt.h5") && r.is_empty());
        assert_eq!(
            read(&d.path().join("ckpt.prev.h5"), "abc").unwrap(),
            ckpt(1)
        );
    }

    #[test]
    fn corrupt_newest_falls_back_and_wrong_hash_is_refused() {
        let d = tempfile::tempdir().unwrap();
        save(d.path(), &ckpt(1)).unwrap();
        save(d.path(), &ckpt(2)).unwrap();
        let cur = d.path().join("ckpt.h5");
        let len = std::fs::metadata(&cur).unwrap().len();
        std::fs::write(&cur, vec![0u8; (len / 2) as usize]).unwrap();
        let (c, p, reasons) = load(d.path(), "abc").unwrap();
        assert_eq!(c.iteration, 1);
        assert!(p.ends_with("ckpt.prev.h5"));
        assert_eq!(reasons.len(), 1);
        let e = load(d.path(), "other").unwrap_err().to_string();
        assert!(e.contains("another configuration"), "{e}");
    }

    #[test]
    fn refuses_to_write_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("victim");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, d.path().join("ckpt.h5")).unwrap();
        assert!(save(d.path(), &ckpt(1)).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn adam_moments_round_trip_and_format_1_still_loads() {
        let d = tempfile::tempdir().unwrap();
        let mut c = ckpt(5);
        c.state.adam = Some(AdamMoments {
            m: Array1::from(vec![0.1, -0.2]),
            v: Array1::from(vec![0.01, 0.04]),
        });
        save(d.path(), &c).unwrap();
        let (back, _, _) = load(d.path(), "abc").unwrap();
        assert_eq!(back, c);
        // A flipped moment fails the checksum.
        let p = d.path().join("ckpt.h5");
        {
            let f = File::open_rw(&p).unwrap();
            f.dataset("adam_v")
                .unwrap()
                .write(&Array1::from(vec![0.01, 0.05]))
                .unwrap();
        }
        let e = read(&p, "abc").unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        // A format-1 file (gd/nesterov: no moments, the same checksum) still loads.
        save(d.path(), &ckpt(6)).unwrap();
        set_format(&p, 1);
        assert_eq!(read(&p, "abc").unwrap(), ckpt(6));
        set_format(&p, 5);
        let e = read(&p, "abc").unwrap_err().to_string();
        assert!(e.contains("format version 5"), "{e}");
    }

    /// Format 3: K-FAC's factors, bases, eigenvalues and last update round-trip bit for bit,
    /// a changed basis fails the checksum, and a format-2 file (no K-FAC state) still loads.
    #[test]
    fn kfac_state_round_trips_and_format_2_still_loads() {
        let d = tempfile::tempdir().unwrap();
        let mut c = ckpt(9);
        let mut k = KfacState::new([(0, 2, 1), (4, 1, 2)]);
        let sums: Vec<f64> = (0..k.packed_len()).map(|i| 1.0 + i as f64 * 0.37).collect();
        k.update_packed(&sums, 3, 0.95, 8).unwrap();
        k.refresh().unwrap();
        c.state.kfac = Some(k);
        save(d.path(), &c).unwrap();
        let (back, _, _) = load(d.path(), "abc").unwrap();
        assert_eq!(back, c);
        let p = d.path().join("ckpt.h5");
        {
            let f = File::open_rw(&p).unwrap();
            f.dataset("kfac_g1_basis")
                .unwrap()
                .write(&ndarray::arr2(&[[-1.0]]))
                .unwrap();
        }
        let e = read(&p, "abc").unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        save(d.path(), &ckpt(10)).unwrap();
        set_format(&p, 2);
        assert_eq!(read(&p, "abc").unwrap(), ckpt(10));
    }

    /// Format 4: `--adapt`'s state (s, deadline, a pending switch) round-trips, a changed s
    /// fails the checksum, and a format-3 file (no adaptive state) still loads.
    #[test]
    fn adapt_state_round_trips_and_format_3_still_loads() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ckpt.h5");
        for adapt in [
            AdaptState {
                s: 2,
                deadline_ms: Some(8.25),
                pending: Some((false, vec![0.5, 0.125])),
            },
            AdaptState {
                s: 1,
                deadline_ms: None,
                pending: None,
            },
        ] {
            let mut c = ckpt(12);
            c.adapt = Some(adapt);
            save(d.path(), &c).unwrap();
            assert_eq!(load(d.path(), "abc").unwrap().0, c);
        }
        {
            let f = File::open_rw(&p).unwrap();
            f.attr("adapt_s").unwrap().write_scalar(&0u64).unwrap();
        }
        let e = read(&p, "abc").unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        save(d.path(), &ckpt(13)).unwrap();
        set_format(&p, 3);
        assert_eq!(read(&p, "abc").unwrap(), ckpt(13));
    }

    /// Rewrite the format version of the checkpoint file `p`.
    fn set_format(p: &Path, version: u64) {
        let f = File::open_rw(p).unwrap();
        f.attr("format_version")
            .unwrap()
            .write_scalar(&version)
            .unwrap();
    }

    #[test]
    fn stale_temporaries_are_cleaned() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".ckpt.h5.tmp.999"), b"half").unwrap();
        save(d.path(), &ckpt(3)).unwrap();
        assert!(!d.path().join(".ckpt.h5.tmp.999").exists());
    }

    fn arrays(it: u64) -> ArrayCheckpoint {
        ArrayCheckpoint {
            iteration: it,
            config_hash: "h".into(),
            seed: 3,
            elapsed_s: 0.5,
            arrays: vec![
                NamedArray {
                    name: "layer2.w".into(),
                    shape: vec![2, 3],
                    values: (0..6).map(|v| v as f64 + it as f64).collect(),
                },
                NamedArray {
                    name: "layer2.b".into(),
                    shape: vec![2],
                    values: vec![-1.0, 1.0],
                },
            ],
        }
    }

    #[test]
    fn named_arrays_round_trip_with_generations_and_verification() {
        let d = tempfile::tempdir().unwrap();
        let stem = "ckpt.layers2-2";
        save_arrays(d.path(), stem, &arrays(4)).unwrap();
        save_arrays(d.path(), stem, &arrays(8)).unwrap();
        let (good, reasons) = arrays_generations(d.path(), stem, "h");
        assert!(reasons.is_empty());
        let its: Vec<u64> = good.iter().map(|g| g.0.iteration).collect();
        assert_eq!(its, vec![8, 4]);
        assert_eq!(good[0].0, arrays(8));
        // Train's checkpoint in the same folder is untouched by the stem's generations.
        assert!(!d.path().join("ckpt.h5").exists());
        // A flipped value is caught by the checksum; another config by the hash.
        let cur = d.path().join(format!("{stem}.h5"));
        let len = std::fs::metadata(&cur).unwrap().len();
        std::fs::write(&cur, vec![0u8; (len / 3) as usize]).unwrap();
        let (good, reasons) = arrays_generations(d.path(), stem, "h");
        assert_eq!((good.len(), reasons.len()), (1, 1));
        assert_eq!(good[0].0.iteration, 4);
        let e = read_arrays(&d.path().join(format!("{stem}.prev.h5")), "x").unwrap_err();
        assert!(e.to_string().contains("another configuration"), "{e}");
        // A train checkpoint is not a named-array checkpoint.
        save(d.path(), &ckpt(1)).unwrap();
        let e = read_arrays(&d.path().join("ckpt.h5"), "abc").unwrap_err();
        assert!(e.to_string().contains("arrays_format_version"), "{e}");
    }
}
