//! The serial reference engine (`train --reference`): the full gradient on one process, with the
//! same model, objective, optimizer, seed and loop as the MPI job. The distributed engines must
//! reproduce it (to rounding for exact codes); the integration tests compare the two. Its results
//! file has the same schema, with code `reference`, verdict `REFERENCE` and no workers.

use ndarray::{Array1, Array2};

use super::engine::{Check, Computed, GradientEngine, Iteration};
use crate::data::Dataset;
use crate::error::Result;
use crate::io::results::{AttrValue, LateRow, Metric};
use crate::model::{Model, Workspace};

/// The full gradient of the training split at every iteration.
pub struct SerialGradients<'a> {
    model: &'a dyn Model,
    data: &'a Dataset,
    ws: Workspace,
}

impl<'a> SerialGradients<'a> {
    /// The engine of `model` on `data`.
    pub fn new(model: &'a dyn Model, data: &'a Dataset) -> Self {
        SerialGradients {
            model,
            data,
            ws: Workspace::default(),
        }
    }
}

impl GradientEngine for SerialGradients<'_> {
    fn describe(&self) -> String {
        "serial reference (one process, full gradient)".into()
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
        let loss = self.model.gradient_into(
            it.point,
            &self.data.x,
            self.data.y.view(),
            None,
            &mut self.ws,
            g.slice_mut(ndarray::s![..dim]),
        );
        g[dim] = loss;
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
