//! The serial reference engine (`train --reference`): the full gradient on one process, with the
//! same model, objective, optimizer, seed and loop as the MPI job. The distributed engines must
//! reproduce it (to rounding for exact codes); the integration tests compare the two. Its results
//! file has the same schema, with code `reference`, verdict `REFERENCE` and no workers.
//!
//! With minibatches it draws, at every iteration, the B rows of each of the k partitions that
//! the MPI job's workers draw ([`crate::data::batch`]; k from `--workers` and `--code`), and
//! takes the gradient of those k·B rows in one pass.

use ndarray::{Array1, Array2};

use super::engine::{Check, Computed, GradientEngine, Iteration};
use crate::data::batch::{BatchPlan, Minibatch};
use crate::data::{partition_ranges, DataError, Dataset};
use crate::error::Result;
use crate::io::results::{AttrValue, LateRow, Metric};
use crate::model::{Model, Workspace};

/// The full gradient of the training split (or of its minibatch) at every iteration.
pub struct SerialGradients<'a> {
    model: &'a dyn Model,
    data: &'a Dataset,
    ws: Workspace,
    /// With minibatches: the draws and the iteration's rows.
    batch: Option<(Minibatch, Dataset)>,
}

impl<'a> SerialGradients<'a> {
    /// The engine of `model` on `data`; with a minibatch `plan`, over `k` partitions.
    pub fn new(
        model: &'a dyn Model,
        data: &'a Dataset,
        plan: Option<BatchPlan>,
        k: usize,
    ) -> Result<Self, DataError> {
        let batch = match plan {
            Some(p) => {
                let parts = partition_ranges(data.n_rows(), k)?;
                Some((
                    Minibatch::new(p, parts.into_iter().enumerate())?,
                    data.slice_rows(0..0),
                ))
            }
            None => None,
        };
        Ok(SerialGradients {
            model,
            data,
            ws: Workspace::default(),
            batch,
        })
    }
}

impl GradientEngine for SerialGradients<'_> {
    fn describe(&self) -> String {
        match &self.batch {
            Some((m, _)) => format!(
                "serial reference (one process, minibatches of {} rows from each partition)",
                m.plan().batch()
            ),
            None => "serial reference (one process, full gradient)".into(),
        }
    }
    fn workers(&self) -> usize {
        0
    }
    fn parts(&self) -> usize {
        1
    }
    fn code_matrix(&self) -> Array2<f64> {
        Array2::ones((1, 1))
    }
    fn compute(&mut self, it: &mut Iteration<'_>, g: &mut Array1<f64>) -> Result<Computed> {
        let dim = self.model.dim();
        let data = match &mut self.batch {
            Some((m, rows)) => {
                let b = m.plan().batch();
                m.gather(it.t, 0..b, self.data, rows);
                &*rows
            }
            None => self.data,
        };
        let loss = self.model.gradient_into(
            it.point,
            &data.x,
            data.y.view(),
            None,
            &mut self.ws,
            g.slice_mut(ndarray::s![..dim]),
        );
        g[dim] = loss;
        if it.factors {
            let (x, y) = (&data.x, data.y.view());
            if let Some(out) = g.as_slice_mut() {
                let ws = &mut self.ws;
                self.model
                    .kfac_factors_into(it.point, x, y, None, ws, &mut out[dim + 1..]);
            }
        }
        it.rec.set(Metric::NResponders, 1.0);
        it.rec.set(Metric::DecodeResidual, 0.0);
        it.rec.set(Metric::DecodeS, 0.0);
        let check = it.check.then(|| Check {
            attrs: vec![("check".into(), AttrValue::Str("REFERENCE".into()))],
            passed: true,
            rel_err: f64::NAN,
            seconds: 0.0,
        });
        Ok(Computed::Gradient { exact: true, check })
    }
    fn finish(&mut self, _exit_code: i32, _late: &mut Vec<LateRow>) -> Result<Vec<usize>> {
        Ok(Vec::new())
    }
}
