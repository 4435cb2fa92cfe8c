//! The serial reference (`gradcode admm --reference`): every layer in one process as one
//! [`LayerGroup`], the same updates and the same message codec at every boundary, recorded by
//! the same [`Recorder`]. The MPI job with `--max-staleness 0` repeats its arithmetic exactly.

use super::group::LayerGroup;
use super::record::{Recorder, Row};
use super::report::is_eval;
use super::state::{save_group, Stamp};
use super::Outcome;
use crate::config::AdmmConfig;
use crate::error::{Error, Result};
use crate::train::{RunStatus, INTERRUPT};

/// Run iterations `first..` of `group` until the last, a signal (checkpoint, status
/// interrupted), divergence or an error; then write the end of the results file.
pub fn run(
    cfg: &AdmmConfig,
    mut group: LayerGroup,
    mut rec: Recorder<'_>,
    stamp: &Stamp<'_>,
    first: u64,
) -> Outcome {
    let mut status = RunStatus::Complete;
    let mut error = None;
    let mut t = first;
    while t < cfg.iterations {
        if INTERRUPT.load(std::sync::atomic::Ordering::SeqCst) {
            match checkpoint(&mut group, &mut rec, stamp, t) {
                Ok(()) => {
                    log::warn!("signal received: checkpoint at iteration {t} written; stopping");
                    status = RunStatus::Interrupted;
                }
                Err(e) => {
                    status = RunStatus::Failed;
                    error = Some(e);
                }
            }
            break;
        }
        match step(cfg, &mut group, &mut rec, t) {
            Ok(false) => {}
            Ok(true) => {
                status = RunStatus::Diverged;
                error = Some(Error::Check(format!(
                    "pdADMM diverged at iteration {t}: the objective is not finite; lower --rho/--nu or check the data"
                )));
                break;
            }
            Err(e) => {
                status = RunStatus::Failed;
                error = Some(e);
                break;
            }
        }
        t += 1;
        let due = cfg.checkpoint_every > 0 && t % cfg.checkpoint_every == 0 && t < cfg.iterations;
        if due {
            if let Err(e) = checkpoint(&mut group, &mut rec, stamp, t) {
                log::error!(
                    "checkpoint at iteration {t} failed: {e}; the previous generation is kept"
                );
                status = RunStatus::Failed;
                error = Some(e);
                break;
            }
        }
    }
    if let Err(e) = rec.finish(status, error.as_ref(), &[], &[]) {
        log::error!("could not finish the results file: {e}");
        error.get_or_insert(e);
        status = RunStatus::Failed;
    }
    Outcome {
        status,
        unreconciled: Vec::new(),
        error,
    }
}

/// One iteration of every layer, recorded; whether the run diverged.
fn step(cfg: &AdmmConfig, group: &mut LayerGroup, rec: &mut Recorder<'_>, t: u64) -> Result<bool> {
    let start = std::time::Instant::now();
    group.phase_a();
    group.phase_b();
    let wall_s = start.elapsed().as_secs_f64();
    let weights = is_eval(cfg.eval_every, cfg.iterations, t).then(|| {
        group
            .layers
            .iter()
            .map(|l| (l.w.view(), l.b.view()))
            .collect()
    });
    rec.row(Row {
        t,
        wall_s,
        terms: group.terms(),
        ranks: Vec::new(),
        weights,
        bytes_in: 0.0,
        bytes_out: 0.0,
    })
}

/// The group's checkpoint, then the manifest, of boundary `t`.
fn checkpoint(
    group: &mut LayerGroup,
    rec: &mut Recorder<'_>,
    stamp: &Stamp<'_>,
    t: u64,
) -> Result<()> {
    save_group(stamp, group, t, rec.elapsed())?;
    rec.manifest(stamp, t)?;
    Ok(())
}
