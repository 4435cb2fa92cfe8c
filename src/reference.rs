//! The serial reference path: full-batch training on one process with the same model, objective,
//! optimizer and seed as the MPI job. The distributed path must reproduce it (to rounding for
//! exact codes); integration tests compare the two.
//!
//! Not implemented: minibatches (the MPI job is full-batch too).

use ndarray::Array1;

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::model::{self, Evaluation, Model, Workspace};
use crate::optim::Optimizer;

/// What the reference run produced.
#[derive(Debug, Clone)]
pub struct ReferenceRun {
    /// Final parameters.
    pub w: Array1<f64>,
    /// Objective at the evaluation point of every iteration.
    pub train_loss: Vec<f64>,
    /// Test evaluation after the last step, when a test split was given.
    pub test: Option<Evaluation>,
}

/// Train `model` on `train` for `cfg.iterations` full-gradient steps, calling `on_iteration`
/// with (iteration, objective at the evaluation point, wall seconds, test evaluation) after each
/// step; the test split is evaluated every `cfg.eval_every` iterations and after the last, as in
/// the MPI job.
pub fn train(
    cfg: &RunConfig,
    model: &dyn Model,
    train: &Dataset,
    test: Option<&Dataset>,
    mut on_iteration: impl FnMut(u64, f64, f64, Option<Evaluation>),
) -> ReferenceRun {
    let dim = model.dim();
    let n_rows = train.n_rows();
    let mut opt = Optimizer::new(cfg.optimizer, cfg.lr, cfg.momentum, Array1::zeros(dim));
    let mut g = Array1::zeros(dim);
    let mut grad = Array1::zeros(dim);
    let mut ws = Workspace::default();
    let mut last_ev: Option<Evaluation> = None;
    let mut losses = Vec::with_capacity(cfg.iterations as usize);
    for t in 0..cfg.iterations {
        let start = std::time::Instant::now();
        let point = opt.point().to_owned();
        let loss_sum = model.gradient_into(
            point.view(),
            &train.x,
            train.y.view(),
            None,
            &mut ws,
            g.view_mut(),
        );
        model::objective_gradient_into(
            model,
            g.view(),
            point.view(),
            n_rows,
            cfg.l2,
            grad.view_mut(),
        );
        opt.step(grad.view());
        let loss = model::objective(model, loss_sum, point.view(), n_rows, cfg.l2);
        losses.push(loss);
        let wall = start.elapsed().as_secs_f64();
        let last = t + 1 == cfg.iterations;
        let due = (cfg.eval_every > 0 && (t + 1) % cfg.eval_every == 0) || last;
        let ev = test
            .filter(|_| due)
            .map(|d| model.evaluate(opt.params(), &d.x, d.y.view(), &mut ws));
        on_iteration(t, loss, wall, ev);
        last_ev = ev;
    }
    // The last iteration (always due) evaluated the final parameters already; evaluate here
    // only when no iteration ran.
    let test =
        last_ev.or_else(|| test.map(|d| model.evaluate(opt.params(), &d.x, d.y.view(), &mut ws)));
    ReferenceRun {
        w: opt.params().to_owned(),
        train_loss: losses,
        test,
    }
}
