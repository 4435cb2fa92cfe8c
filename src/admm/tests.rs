//! Unit tests of pdADMM without `mpirun`: every update decreases its part of the augmented
//! Lagrangian (seeded random instances), the closed-form z and q updates against brute-force
//! minimisers, packing layers into groups changes nothing, checkpoints resume bit for bit, and
//! the whole job over the in-process transport equals the serial reference.

use std::time::Duration;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::group::{Input, LayerGroup};
use super::layer::{z_last_row, z_prox, Penalties};
use super::net::Net;
use super::quant::Codec;
use super::record::{EvalData, Recorder};
use super::state::{load_group, save_group, Restore, Stamp};
use super::worker::{self, Init, Plan};
use super::{coordinator, serial};
use crate::comm::{local, LayerLink, Monitor};
use crate::config::{AdmmArgs, AdmmConfig};
use crate::io::results::{self, LayerMetric, Metric, RunMeta, RunWriter};
use crate::straggler::StragglerSchedule;

const PEN: Penalties = Penalties { rho: 0.5, nu: 0.8 };

fn data(seed: u64, n: usize, d: usize, classes: usize) -> (Array2<f64>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_simple_fn((n, d), || rng.gen::<f64>());
    let y = (0..n).map(|_| rng.gen_range(0..classes)).collect();
    (x, y)
}

fn group(sizes: &[usize], n: usize, seed: u64, codec: Codec) -> (Net, LayerGroup, Vec<usize>) {
    let net = Net::new(sizes.to_vec());
    let (x, y) = data(seed, n, sizes[0], sizes[sizes.len() - 1]);
    let g = LayerGroup::init(&net, 1..=net.layers(), PEN, codec, seed, Input::Rows(x), &y).unwrap();
    (net, g, y)
}

/// Random values in every variable and view, so no update starts at a special point.
fn scramble(g: &mut LayerGroup, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fill = |a: &mut Array2<f64>| a.mapv_inplace(|_| rng.gen_range(-1.5..1.5));
    for l in &mut g.layers {
        for a in [
            &mut l.z,
            &mut l.q,
            &mut l.u,
            &mut l.left_q,
            &mut l.left_u,
            &mut l.right_p,
        ] {
            fill(a);
        }
        if l.index > 1 {
            fill(&mut l.p);
        }
    }
}

#[test]
fn every_update_decreases_its_part_of_the_lagrangian() {
    for seed in 0..12u64 {
        let (_, mut g, _) = group(&[6, 5, 4, 3], 9, seed, Codec::new(None));
        scramble(&mut g, 100 + seed);
        for l in &mut g.layers {
            let tol = |v: f64| 1e-10 * (1.0 + v.abs());
            l.refresh_residual();
            let index = l.index;
            let mut before = l.lagrangian(PEN);
            let mut check = |what: &str, after: f64| {
                assert!(
                    after <= before + tol(before),
                    "seed {seed} layer {index} {what}: {before} → {after}"
                );
                before = after;
            };
            if l.index > 1 {
                l.update_p(PEN);
                check("p", l.lagrangian(PEN));
            }
            l.update_w(PEN);
            check("W", l.lagrangian(PEN));
            l.update_b();
            check("b", l.lagrangian(PEN));
            l.update_z(PEN);
            check("z", l.lagrangian(PEN));
            if !l.last {
                l.update_q(PEN);
                check("q", l.lagrangian(PEN));
            }
        }
    }
}

#[test]
fn the_carried_residual_equals_a_fresh_one() {
    let (_, mut g, _) = group(&[6, 5, 4, 3], 9, 7, Codec::new(None));
    scramble(&mut g, 8);
    for l in &mut g.layers {
        l.phase_a(PEN);
        let phi = l.terms.phi;
        l.refresh_residual();
        let fresh = 0.5 * PEN.nu * {
            let mut r = l.z.clone();
            r -= &l.p.dot(&l.w.t());
            r -= &l.b;
            r.iter().map(|v| v * v).sum::<f64>()
        };
        assert!(
            (phi - fresh).abs() <= 1e-9 * (1.0 + fresh),
            "layer {}: {phi} vs {fresh}",
            l.index
        );
    }
}

/// Minimise `f` over [lo, hi] by a grid then golden-section refinement.
fn brute(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    let steps = 40_000;
    let h = (hi - lo) / steps as f64;
    let best = (0..=steps)
        .map(|i| lo + i as f64 * h)
        .min_by(|a, b| f(*a).total_cmp(&f(*b)))
        .unwrap();
    let (mut a, mut b) = (best - h, best + h);
    let g = 0.5 * (5f64.sqrt() - 1.0);
    for _ in 0..200 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if f(c) < f(d) {
            b = d;
        } else {
            a = c;
        }
    }
    0.5 * (a + b)
}

#[test]
fn the_closed_form_z_and_q_updates_equal_brute_force_minimisers() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..300 {
        let (m, q, z0) = (
            rng.gen_range(-3.0..3.0),
            rng.gen_range(-1.0..3.0),
            rng.gen_range(-3.0..3.0),
        );
        let h = |z: f64| (z - m).powi(2) + (q - z.max(0.0)).powi(2) + (z - z0).powi(2);
        let z = z_prox(m, q, z0);
        let zb = brute(h, -10.0, 10.0);
        assert!(
            h(z) <= h(zb) + 1e-12,
            "z ({m}, {q}, {z0}): closed form {z} ({}) vs brute force {zb} ({})",
            h(z),
            h(zb)
        );
        assert!(h(zb) <= h(z) + 1e-9);
    }
    // q: per element argmin (ν/2)(q − f(z))² + u(p − q) + (ρ/2)(p − q)², through a layer.
    let (_, mut g, _) = group(&[3, 4, 2], 5, 11, Codec::new(None));
    scramble(&mut g, 12);
    let l = &mut g.layers[0];
    let (z, u, p) = (l.z.clone(), l.u.clone(), l.right_p.clone());
    l.update_q(PEN);
    for i in 0..z.len() {
        let (zi, ui, pi) = (
            z.as_slice().unwrap()[i],
            u.as_slice().unwrap()[i],
            p.as_slice().unwrap()[i],
        );
        let f = |q: f64| {
            0.5 * PEN.nu * (q - zi.max(0.0)).powi(2)
                + ui * (pi - q)
                + 0.5 * PEN.rho * (pi - q).powi(2)
        };
        let qb = brute(f, -10.0, 10.0);
        let qc = l.q.as_slice().unwrap()[i];
        assert!(
            (qc - qb).abs() < 1e-7,
            "q: closed form {qc} vs brute force {qb}"
        );
    }
}

#[test]
fn the_output_layer_z_update_reaches_the_minimiser() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut work = Default::default();
    for nu in [1e-3, 0.1, 2.0] {
        for _ in 0..50 {
            let c = 4;
            let m: Vec<f64> = (0..c).map(|_| rng.gen_range(-4.0..4.0)).collect();
            let y = rng.gen_range(0..c);
            let mut z: Vec<f64> = (0..c).map(|_| rng.gen_range(-2.0..2.0)).collect();
            z_last_row(&mut z, &m, y, nu, &mut work);
            // The gradient softmax(z) − e_y + ν(z − m) vanishes.
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
            let s: f64 = e.iter().sum();
            for k in 0..c {
                let g = e[k] / s - f64::from(u8::from(k == y)) + nu * (z[k] - m[k]);
                assert!(g.abs() < 1e-11, "ν {nu}: gradient {g}");
            }
            // And no coordinate move lowers the objective.
            let obj = |z: &[f64]| {
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                lse - z[y] + 0.5 * nu * z.iter().zip(&m).map(|(a, b)| (a - b).powi(2)).sum::<f64>()
            };
            for k in 0..c {
                for d in [-1e-4, 1e-4] {
                    let mut t = z.clone();
                    t[k] += d;
                    assert!(obj(&t) >= obj(&z) - 1e-15);
                }
            }
        }
    }
}

/// `iterations` synchronous iterations of `groups` (consecutive, together the whole net), the
/// boundaries between them crossed through their payload codec as the links would.
fn run_groups(groups: &mut [LayerGroup], iterations: usize) {
    for _ in 0..iterations {
        for g in groups.iter_mut() {
            g.phase_a();
        }
        for i in 1..groups.len() {
            let mut buf = vec![0.0; groups[i].backward_len()];
            groups[i].encode_backward(&mut buf);
            groups[i - 1].decode_from_right(&buf);
        }
        for g in groups.iter_mut() {
            g.phase_b();
        }
        for i in 1..groups.len() {
            let mut buf = vec![0.0; groups[i - 1].forward_len()];
            groups[i - 1].encode_forward(&mut buf);
            groups[i].decode_from_left(&buf);
        }
    }
}

/// The net's layers split into groups of `per`, initialized through the group payloads.
fn split(
    net: &Net,
    x: &Array2<f64>,
    y: &[usize],
    per: usize,
    codec: Codec,
    seed: u64,
) -> Vec<LayerGroup> {
    let mut out: Vec<LayerGroup> = Vec::new();
    for range in net.groups(per) {
        let g = match out.last() {
            None => LayerGroup::init(net, range, PEN, codec, seed, Input::Rows(x.clone()), y),
            Some(prev) => {
                let mut buf = vec![0.0; prev.forward_len()];
                prev.encode_forward(&mut buf);
                let input = Input::Message {
                    payload: &buf,
                    rows: x.nrows(),
                };
                LayerGroup::init(net, range, PEN, codec, seed, input, y)
            }
        };
        out.push(g.unwrap());
    }
    out
}

fn weights(groups: &[LayerGroup]) -> Vec<f64> {
    groups
        .iter()
        .flat_map(|g| g.layers.iter())
        .flat_map(|l| l.w.iter().chain(l.b.iter()).copied().collect::<Vec<_>>())
        .collect()
}

#[test]
fn packing_layers_into_groups_changes_nothing_quantized_or_not() {
    let net = Net::new(vec![7, 6, 5, 5, 4, 3]);
    let (x, y) = data(21, 11, 7, 3);
    for codec in [Codec::new(None), Codec::new(Some(8)), Codec::new(Some(16))] {
        let mut all = split(&net, &x, &y, 5, codec, 4);
        run_groups(&mut all, 6);
        for per in [1, 2, 3] {
            let mut parts = split(&net, &x, &y, per, codec, 4);
            assert_eq!(parts.len(), net.layers().div_ceil(per));
            run_groups(&mut parts, 6);
            assert_eq!(weights(&parts), weights(&all), "{codec:?}, {per} per group");
        }
    }
    // Quantization does change the trajectory (it is applied).
    let mut raw = split(&net, &x, &y, 5, Codec::new(None), 4);
    let mut q8 = split(&net, &x, &y, 5, Codec::new(Some(8)), 4);
    run_groups(&mut raw, 3);
    run_groups(&mut q8, 3);
    assert_ne!(weights(&raw), weights(&q8));
}

#[test]
fn the_objective_falls_and_the_residual_shrinks_on_a_small_problem() {
    let (_, mut g, _) = group(&[6, 8, 3], 40, 31, Codec::new(None));
    let pen = g.penalties();
    let objective =
        |g: &LayerGroup| -> f64 { g.terms().iter().map(|t| t.phi + t.gap + t.loss).sum() };
    let mut first = None;
    let mut last = (0.0, 0.0);
    for _ in 0..60 {
        g.phase_a();
        g.phase_b();
        let f = objective(&g);
        first.get_or_insert(f);
        last = (f, g.layers[0].terms.primal);
    }
    assert!(pen.rho > 0.0);
    let first = first.unwrap();
    assert!(last.0 < 0.5 * first, "objective {first} → {}", last.0);
    assert!(
        last.1.is_finite() && last.1 < 1.0,
        "primal residual {}",
        last.1
    );
}

#[test]
fn a_checkpointed_group_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let stamp = Stamp {
        dir: dir.path(),
        hash: "h",
        seed: 2,
    };
    let net = Net::new(vec![5, 4, 4, 3]);
    let (x, y) = data(41, 8, 5, 3);
    let codec = Codec::new(Some(16));
    let mut straight = split(&net, &x, &y, 3, codec, 2);
    run_groups(&mut straight, 3);
    save_group(&stamp, &straight[0], 3, 1.0).unwrap();
    run_groups(&mut straight, 4);
    let restore = || Restore {
        net: &net,
        range: 1..=3,
        pen: PEN,
        codec,
        rows: Some(x.clone()),
        labels: &y,
        n: 8,
    };
    let restored = load_group(&stamp, 3, restore()).unwrap();
    let mut resumed = vec![restored];
    run_groups(&mut resumed, 4);
    assert_eq!(weights(&resumed), weights(&straight));
    // Another boundary or another configuration is refused.
    assert!(load_group(&stamp, 4, restore()).is_err());
    let other = Stamp {
        hash: "x",
        ..stamp.clone()
    };
    assert!(load_group(&other, 3, restore()).is_err());
}

fn config(
    sizes: &str,
    per: usize,
    staleness: u64,
    bits: Option<u32>,
    iterations: u64,
    out: &std::path::Path,
) -> AdmmConfig {
    let n_layers = sizes.split(',').count() - 1;
    let args = AdmmArgs {
        data: Some("unused.h5".into()),
        layers: Some(sizes.into()),
        rho: Some(PEN.rho),
        nu: Some(PEN.nu),
        iterations: Some(iterations),
        layers_per_rank: Some(per),
        max_staleness: Some(staleness),
        quantize_bits: bits,
        eval_every: Some(3),
        job: crate::config::JobArgs {
            out: Some(out.to_path_buf()),
            max_wait_ms: Some(20_000.0),
            ..Default::default()
        },
        ..Default::default()
    };
    AdmmConfig::from_args(&args, n_layers.div_ceil(per) + 1).unwrap()
}

fn writer(path: &std::path::Path, workers: usize, layers: usize) -> RunWriter {
    let meta = RunMeta {
        code_matrix: Array2::ones((1, 1)),
        n_workers: workers,
        n_layers: layers,
        adapt: false,
        ..Default::default()
    };
    RunWriter::create(path, &meta, None).unwrap()
}

/// The MPI-free job: rank 0's coordinator and one thread per layer rank over the in-process
/// mesh; returns the results file.
fn mesh_job(cfg: &AdmmConfig, x: &Array2<f64>, y: &[usize], name: &str) -> std::path::PathBuf {
    let net = Net::new(cfg.sizes.clone());
    let groups = net.groups(cfg.layers_per_rank);
    let ranks = groups.len();
    let n = x.nrows();
    let codec = Codec::new(cfg.quantize_bits);
    let path = cfg.job.out.join(name);
    let hash = cfg.trajectory_hash();
    let mut peers = local::mesh(ranks + 1).into_iter();
    let root = peers.next().unwrap();
    std::thread::scope(|s| {
        for (r, peer) in peers.enumerate() {
            let (range, net, cfg, hash, groups) = (groups[r].clone(), &net, cfg, &hash, &groups);
            let (x, y) = (x.clone(), y.to_vec());
            s.spawn(move || {
                let rank = r + 1;
                let link = LayerLink::new(peer, worker::link_spec(net, groups, rank, n, codec));
                let plan = Plan {
                    iterations: cfg.iterations,
                    first: 0,
                    staleness: cfg.max_staleness,
                    checkpoint_every: 0,
                    eval_every: cfg.eval_every,
                    stamp: Stamp {
                        dir: &cfg.job.out,
                        hash,
                        seed: cfg.job.seed,
                    },
                    shutdown_bound: Duration::from_secs(20),
                };
                let holds_first = *range.start() == 1;
                let init = Init::Fresh(Box::new(move |payload| {
                    let input = match payload {
                        None => Input::Rows(x),
                        Some(p) => Input::Message {
                            payload: p,
                            rows: n,
                        },
                    };
                    assert_eq!(holds_first, payload.is_none());
                    Ok(LayerGroup::init(
                        net,
                        range,
                        PEN,
                        codec,
                        cfg.job.seed,
                        input,
                        &y,
                    )?)
                }));
                let schedule = StragglerSchedule::parse("none", ranks, 1).unwrap();
                assert_eq!(worker::run(link, &plan, schedule, init).unwrap(), 0);
            });
        }
        let eval = EvalData {
            train_x: x.clone(),
            train_y: y.to_vec(),
            test: None,
        };
        let rec = Recorder::new(
            cfg,
            &net,
            writer(&path, ranks, net.layers()),
            eval,
            ranks,
            0,
            0.0,
        );
        let stamp = Stamp {
            dir: &cfg.job.out,
            hash: &hash,
            seed: cfg.job.seed,
        };
        let mon = Monitor::new(root, ranks, 0);
        let out = coordinator::run(cfg, &net, mon, rec, &stamp, 0);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert!(out.unreconciled.is_empty());
    });
    path
}

fn reference(cfg: &AdmmConfig, x: &Array2<f64>, y: &[usize]) -> std::path::PathBuf {
    let net = Net::new(cfg.sizes.clone());
    let codec = Codec::new(cfg.quantize_bits);
    let path = cfg.job.out.join("reference.h5");
    let g = LayerGroup::init(
        &net,
        1..=net.layers(),
        PEN,
        codec,
        cfg.job.seed,
        Input::Rows(x.clone()),
        y,
    )
    .unwrap();
    let eval = EvalData {
        train_x: x.clone(),
        train_y: y.to_vec(),
        test: None,
    };
    let rec = Recorder::new(cfg, &net, writer(&path, 0, net.layers()), eval, 0, 0, 0.0);
    let hash = cfg.trajectory_hash();
    let stamp = Stamp {
        dir: &cfg.job.out,
        hash: &hash,
        seed: cfg.job.seed,
    };
    let out = serial::run(cfg, g, rec, &stamp, 0);
    assert!(out.error.is_none());
    path
}

#[test]
fn the_job_over_the_in_process_transport_equals_the_serial_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data(51, 13, 6, 3);
    for (sizes, per, bits) in [("6,5,4,3", 1, None), ("6,5,5,4,3", 2, Some(8))] {
        let cfg = config(sizes, per, 0, bits, 7, dir.path());
        let job = mesh_job(&cfg, &x, &y, "job.h5");
        let reference = reference(&cfg, &x, &y);
        let (a, b) = (
            results::read_rows(&job, None).unwrap(),
            results::read_rows(&reference, None).unwrap(),
        );
        assert_eq!(a.len(), 7);
        for m in [
            Metric::Objective,
            Metric::Lagrangian,
            Metric::PrimalResidual,
            Metric::DualResidual,
            Metric::TrainAccuracy,
            Metric::TrainLoss,
        ] {
            let (u, v) = (a.column(m), b.column(m));
            for (p, q) in u.iter().zip(v.iter()) {
                assert!(
                    p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()),
                    "{sizes} {m:?}: {p} vs {q}"
                );
            }
        }
        assert_eq!(a.layer(LayerMetric::Phi), b.layer(LayerMetric::Phi));
        assert_eq!(a.layer(LayerMetric::Theta), b.layer(LayerMetric::Theta));
        assert!(a.column(Metric::BytesNeighbour).iter().all(|&v| v > 0.0));
        // Evaluations at iterations 2, 5 and the last.
        let evaluated: Vec<usize> = a
            .column(Metric::TrainAccuracy)
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(evaluated, vec![2, 5, 6]);
    }
}

#[test]
fn bounded_staleness_runs_to_the_end_without_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data(61, 10, 5, 2);
    for k in [1, 3] {
        let cfg = config("5,4,4,4,2", 1, k, Some(16), 9, dir.path());
        let job = mesh_job(&cfg, &x, &y, &format!("stale{k}.h5"));
        let rows = results::read_rows(&job, None).unwrap();
        assert_eq!(rows.len(), 9);
        assert!(rows.column(Metric::Objective).iter().all(|v| v.is_finite()));
        // Ages stay within the bound: at most K old, at most K ahead (a neighbour that ran
        // ahead).
        for m in [LayerMetric::LeftAge, LayerMetric::RightAge] {
            let ages = rows.layer(m);
            assert!(
                ages.iter().all(|&a| a.is_nan() || a.abs() <= k as f64),
                "{m:?} {ages:?}"
            );
        }
    }
}
