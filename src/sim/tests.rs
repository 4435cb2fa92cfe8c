//! Unit tests of the simulator on constructed workloads: the iteration times that follow from
//! the definitions (uncoded: the slowest finish; an exact code: the (n − s)-th order statistic;
//! link costs on top), the busy-worker rule, deadlines, partial work, stale reuse, the replay of
//! recorded rows, and n = 10⁴.

use std::path::Path;

use ndarray::{Array1, Array2};

use super::*;
use crate::coding::{self, CodeKind, GradientCode};
use crate::comm::OnDeadline;
use crate::io::metrics::{LateRow, LayerMetric, Metric, RecordedRows, WorkerMetric};
use crate::straggler::StragglerSchedule;

const FREE: LinkModel = LinkModel {
    alpha_s: 0.0,
    message_s: 0.0,
    beta_s_per_byte: 0.0,
};
const NONE: Overheads = Overheads {
    step_s: 0.0,
    gap_s: 0.0,
};

fn settings(chunks: usize, link: LinkModel, overheads: Overheads) -> SimSettings {
    SimSettings {
        chunks,
        deadline_s: 100.0,
        max_wait_s: 1000.0,
        on_deadline: OnDeadline::Wait,
        reuse_stale: false,
        dim: 10,
        link,
        overheads,
    }
}

/// A sequential replay: worker w's delay at iteration t is `delays[w][t]`, its compute
/// `compute_per_share` × its share.
fn replay(delays: &[Vec<f64>], compute_per_share: f64) -> Workload {
    let workers = delays
        .iter()
        .map(|d| {
            d.iter()
                .map(|&delay_s| Sample {
                    compute_per_share_s: compute_per_share,
                    slow_factor: 1.0,
                    delay_s,
                })
                .collect()
        })
        .collect();
    let file = TraceFile::of_samples("constructed", workers);
    let n = delays.len();
    Workload::Replay(Trace::new(&[file], n, ReplayOrder::Sequential, 1, false).unwrap())
}

fn sim(kind: CodeKind, n: usize, s: usize, set: SimSettings, w: Workload) -> Simulator {
    Simulator::new(coding::build(kind, n, s, 1).unwrap(), set, w).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn uncoded_time_is_the_slowest_finish_and_link_costs_add_up() {
    // 4 workers, compute 0.4 s over the whole data (0.1 s each), delays 0, 0.2, 0.05, 0.3.
    let delays = vec![vec![0.0; 3], vec![0.2; 3], vec![0.05; 3], vec![0.3; 3]];
    let mut s = sim(
        CodeKind::Uncoded,
        4,
        0,
        settings(1, FREE, NONE),
        replay(&delays, 0.4),
    );
    let r = s.step().unwrap();
    assert_eq!(r.outcome, Outcome::Decodable);
    assert!(close(r.wall_s, 0.1 + 0.3), "{}", r.wall_s);
    assert!(close(r.oracle_s, 0.4));
    assert_eq!(r.responders, vec![vec![0, 1, 2, 3]]);
    assert!(close(r.compute_s[1], 0.1) && close(r.injected_s[1], 0.2));
    assert!(close(r.arrival_s[2], 0.15));
    assert_eq!(r.planned_s, vec![0.0, 0.2, 0.05, 0.3]);
    let r1 = s.step().unwrap();
    assert!(close(r1.start_s, 0.4) && close(r1.elapsed_s, 0.8));

    // With α, β, step and gap: α + β·P to deliver, α, then β·R per message at rank 0, one at a
    // time (here all four at once: the last waits for three others).
    let link = LinkModel {
        alpha_s: 0.01,
        message_s: 0.0,
        beta_s_per_byte: 1e-5,
    };
    let over = Overheads {
        step_s: 0.02,
        gap_s: 0.005,
    };
    let same = vec![vec![0.0; 2]; 4];
    let mut s = sim(
        CodeKind::Uncoded,
        4,
        0,
        settings(1, link, over),
        replay(&same, 0.4),
    );
    let r = s.step().unwrap();
    let (p, m) = (((12 + 10) * 8) as f64, ((12 + 11) * 8) as f64);
    let expect = (0.01 + 1e-5 * p) + 0.1 + 0.01 + 4.0 * 1e-5 * m + 0.02;
    assert!(close(r.wall_s, expect), "{} vs {expect}", r.wall_s);
    assert!(close(r.elapsed_s, expect + 0.005));
    assert_eq!(r.bytes_out, 4.0 * p);
    assert_eq!(r.bytes_in, 4.0 * m);
    assert_eq!(r.messages_in, 4);
    // The oracle ignores the link: post offset + compute + injected.
    assert!(close(r.oracle_s, 0.1));
}

#[test]
fn an_exact_code_stops_at_the_n_minus_s_th_finish() {
    // cyclic-mds n = 8, s = 1: every worker holds 2 of 8 partitions (compute 0.25 × 0.8 s).
    // Round 0: worker 7 is slowest; the 7th order statistic is worker 6's finish.
    let mut delays: Vec<Vec<f64>> = (0..8).map(|w| vec![0.01 * w as f64; 64]).collect();
    delays[7][0] = 5.0;
    let mut s = sim(
        CodeKind::CyclicMds,
        8,
        1,
        settings(1, FREE, NONE),
        replay(&delays, 0.8),
    );
    let r0 = s.step().unwrap();
    assert!(close(r0.wall_s, 0.2 + 0.06), "{}", r0.wall_s);
    assert_eq!(r0.responders[0], (0..7).collect::<Vec<_>>());
    let d = s.decoding(&r0).unwrap().unwrap();
    assert_eq!(d.exact, 1.0);
    assert!(d.residual < 1e-8 && d.condition.is_finite());
    // Round 1: worker 7 is still busy (until 5.2 s) and is not given it: the other seven must
    // all answer, so the slowest of them (worker 6) decides again.
    let r1 = s.step().unwrap();
    assert_eq!(r1.parts_in[7], 0);
    assert!(r1.arrival_s[7].is_nan());
    assert!(close(r1.wall_s, 0.2 + 0.06));
    // It keeps missing rounds until its message of round 0 arrives (at 5.2 s); that message is
    // drained as late and it is handed the round being collected at once.
    let mut late: Vec<LateRow> = Vec::new();
    let mut rounds = vec![r0, r1];
    while rounds.last().unwrap().elapsed_s < 6.0 {
        let r = s.step().unwrap();
        late.extend(r.late_rows.iter().copied());
        rounds.push(r);
    }
    // (Once back, it is handed each round in the middle of it and stays one behind: its later
    // results are late too, as in the real protocol.)
    assert!(late.iter().all(|l| l.rank == 8));
    let first: Vec<&LateRow> = late.iter().filter(|l| l.iteration == 0).collect();
    assert_eq!(first.len(), 1);
    let l = *first[0];
    assert_eq!((l.iteration, l.rank, l.used), (0, 8, false));
    assert!(close(l.delay_s, 5.2), "{}", l.delay_s);
    let during = l.received_during as usize;
    let posted = &rounds[during];
    assert!(posted.start_s < 5.2 && 5.2 <= posted.elapsed_s);
    assert!(rounds[2..during].iter().all(|r| r.parts_in[7] == 0));
    // Every worker's planned delay is recorded, given the round or not.
    assert!(rounds.iter().all(|r| r.planned_s.len() == 8));
    let drained = s.shutdown();
    assert!(drained
        .iter()
        .all(|l| l.received_during == rounds.len() as u64));
}

#[test]
fn best_effort_decodes_at_the_deadline_and_wait_times_out() {
    // frc n = 4, s = 1: groups {0, 1} and {2, 3}; both of group 1 are slow.
    let delays = vec![vec![0.0; 2], vec![0.0; 2], vec![3.0; 2], vec![3.0; 2]];
    let mut set = settings(1, FREE, NONE);
    set.on_deadline = OnDeadline::BestEffort;
    set.deadline_s = 0.5;
    let mut s = sim(CodeKind::Frc, 4, 1, set.clone(), replay(&delays, 0.4));
    let r = s.step().unwrap();
    assert_eq!(r.outcome, Outcome::Deadline);
    assert!(close(r.wall_s, 0.5));
    assert!(r.oracle_s.is_nan());
    assert_eq!(r.responders[0], vec![0, 1]);
    let d = s.decoding(&r).unwrap().unwrap();
    assert_eq!(d.exact, 0.0);
    assert!(close(d.residual, 2f64.sqrt()), "{}", d.residual);

    set.on_deadline = OnDeadline::Wait;
    set.max_wait_s = 1.0;
    let mut s = sim(CodeKind::Frc, 4, 1, set, replay(&delays, 0.4));
    match s.step() {
        Err(SimError::Timeout { silent, have, .. }) => {
            assert_eq!(silent, vec![3, 4]);
            assert_eq!(have, 2);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn failed_workers_stay_silent_and_a_model_spec_drives_the_delays() {
    // fail:2@1 with cyclic-mds n = 4, s = 1 (n − s odd): from round 1 worker rank 2 is silent
    // and the code decodes without it; fixed:3:100 adds 0.1 s to rank 3 every round.
    let schedule = StragglerSchedule::parse("fail:2@1+fixed:3:100", 4, 1).unwrap();
    let w = Workload::Model {
        compute_per_share_s: 0.4,
        schedule,
    };
    let mut s = sim(CodeKind::CyclicMds, 4, 1, settings(1, FREE, NONE), w);
    // Round 0: compute 0.4 × 2/4 for everyone; ranks 1, 2, 4 decide at 0.2 s, rank 3 is
    // still busy (until 0.3 s).
    let r0 = s.step().unwrap();
    assert_eq!(r0.responders[0], vec![0, 1, 3]);
    assert!(close(r0.wall_s, 0.2));
    assert!(close(r0.planned_s[2], 0.1));
    // Round 1 (from 0.2 s): rank 2 fails; rank 3 is handed the round when its late message
    // arrives (0.3 s) and answers at 0.6 s, the third answer: 0.4 s.
    let r1 = s.step().unwrap();
    assert!(close(r1.wall_s, 0.4), "{}", r1.wall_s);
    for r in [r1, s.step().unwrap(), s.step().unwrap()] {
        assert_eq!(r.responders[0], vec![0, 2, 3]);
        assert!(r.injected_s[1].is_infinite() && r.planned_s[1].is_infinite());
    }
    // From round 2 every live worker is idle at the post: rank 3 decides at 0.3 s.
    assert!(close(s.step().unwrap().wall_s, 0.3));
}

#[test]
fn chunks_deliver_partial_work_and_busy_workers_switch_at_a_chunk_boundary() {
    // cyclic-mds n = 4, s = 1, 2 chunks: a worker sends chunk (w + i) mod 2 after compute/2 +
    // delay/2. Worker 3's delay is 1 s in round 0 only: its first chunk arrives at 0.6 s.
    let mut delays = vec![vec![0.0; 6]; 4];
    delays[3][0] = 1.0;
    let mut s = sim(
        CodeKind::CyclicMds,
        4,
        1,
        settings(2, FREE, NONE),
        replay(&delays, 0.8),
    );
    let r0 = s.step().unwrap();
    // Everyone else finishes both chunks at 0.4 s: decodable without worker 3.
    assert!(close(r0.wall_s, 0.4), "{}", r0.wall_s);
    assert_eq!(r0.parts_in[3], 0);
    // Round 1 starts at 0.4 s; worker 3 (busy, one round behind) is handed it (overlap). At its
    // chunk boundary (0.7 s: compute 0.2 + delay 0.5) it sends chunk 1 of round 0 (late), sees
    // the newer parameters, abandons its chunk 0 of round 0 and answers round 1 from 0.7 s.
    let r1 = s.step().unwrap();
    assert!(close(r1.wall_s, 0.4));
    assert_eq!(r1.late_rows.len(), 1, "{:?}", r1.late_rows);
    assert_eq!((r1.late_rows[0].iteration, r1.late_rows[0].part), (0, 1));
    // Round 2 (0.8 s ..): worker 3, one round behind again, is handed it at once; its chunk 1
    // of round 1 (0.9 s) is late, then it switches: chunk 1 of round 2 at 1.1 s is on time
    // (the others decide at 1.2 s), its chunk 0 is not: partial work.
    let r2 = s.step().unwrap();
    assert_eq!(r2.late_rows.len(), 1, "{:?}", r2.late_rows);
    assert_eq!((r2.late_rows[0].iteration, r2.late_rows[0].part), (1, 1));
    assert_eq!(r2.parts_in[3], 1);
    assert!(r2.responders[1].contains(&3) && !r2.responders[0].contains(&3));
    assert!(close(r2.arrival_s[3], 0.3));
}

#[test]
fn reuse_stale_folds_a_result_one_round_late() {
    // cyclic-repetition n = 3, s = 1 (two answers decode; each worker holds 2 of 3 partitions:
    // compute 0.1 s). Worker 2 is 0.15 s late in round 0: rank 0 moves on at 0.18 s, and its
    // result (0.25 s) is folded into round 1 (0.18 s ..) before worker 0's fresh one (0.28 s).
    let delays = vec![vec![0.0; 4], vec![0.08; 4], vec![0.15, 0.5, 0.5, 0.5]];
    let mut set = settings(1, FREE, NONE);
    set.reuse_stale = true;
    let mut s = sim(
        CodeKind::CyclicRepetition,
        3,
        1,
        set.clone(),
        replay(&delays, 0.15),
    );
    let r0 = s.step().unwrap();
    assert!(close(r0.wall_s, 0.18));
    assert_eq!(r0.responders[0], vec![0, 1]);
    let r1 = s.step().unwrap();
    assert_eq!(r1.stale, 1);
    assert_eq!(r1.stale_age[2], 1.0);
    assert_eq!(r1.responders[0], vec![0, 2]);
    assert!(close(r1.wall_s, 0.1), "{}", r1.wall_s);
    assert!(r1.late_rows[0].used && r1.late == 0);
    let d = s.decoding(&r1).unwrap().unwrap();
    assert_eq!(d.exact, 0.0, "a stale result is never exact");
    // Without --reuse-stale the late result is only recorded and worker 1 decides.
    set.reuse_stale = false;
    let mut s = sim(CodeKind::CyclicRepetition, 3, 1, set, replay(&delays, 0.15));
    s.step().unwrap();
    let r1 = s.step().unwrap();
    assert_eq!((r1.stale, r1.late), (0, 1));
    assert_eq!(r1.responders[0], vec![0, 1]);
    assert_eq!(s.decoding(&r1).unwrap().unwrap().exact, 1.0);
}

/// A code without a stopping rule: the simulator must then ask `is_decodable` itself.
#[derive(Debug)]
struct NoRule(Box<dyn GradientCode>);

impl GradientCode for NoRule {
    fn kind(&self) -> CodeKind {
        self.0.kind()
    }
    fn n_workers(&self) -> usize {
        self.0.n_workers()
    }
    fn n_partitions(&self) -> usize {
        self.0.n_partitions()
    }
    fn max_stragglers(&self) -> usize {
        self.0.max_stragglers()
    }
    fn assignment(&self, worker: usize) -> &[usize] {
        self.0.assignment(worker)
    }
    fn coefficients(&self, worker: usize) -> &[f64] {
        self.0.coefficients(worker)
    }
    fn is_decodable(&self, responders: &[usize]) -> bool {
        self.0.is_decodable(responders)
    }
    fn decode(
        &self,
        responders: &[usize],
    ) -> Result<crate::coding::Decoding, crate::coding::CodeError> {
        self.0.decode(responders)
    }
}

#[test]
fn a_code_without_a_rule_is_checked_on_the_whole_set_with_the_same_result() {
    let spec = "exp:30+fixed:2,5:40";
    let run = |code: Box<dyn GradientCode>| {
        let w = Workload::Model {
            compute_per_share_s: 0.05,
            schedule: StragglerSchedule::parse(spec, 6, 3).unwrap(),
        };
        let mut s = Simulator::new(code, settings(1, DEFAULT_LINK, DEFAULT_OVERHEADS), w).unwrap();
        (0..30)
            .map(|_| s.step().unwrap().wall_s)
            .collect::<Vec<f64>>()
    };
    let frc = || coding::build(CodeKind::Frc, 6, 2, 1).unwrap();
    assert_eq!(run(frc()), run(Box::new(NoRule(frc()))));
}

#[test]
fn ten_thousand_workers_run_in_seconds() {
    // frc n = 10⁴, s = 4 (groups of 5) with exponential delays: every round decodes with a
    // responder in each of the 2,000 groups, so at least 2,000 and (busy workers aside) most of
    // the others; the oracle never exceeds the wall time without the link.
    let n = 10_000;
    let w = Workload::Model {
        compute_per_share_s: 1.0,
        schedule: StragglerSchedule::parse("exp:20", n, 1).unwrap(),
    };
    let mut s = sim(CodeKind::Frc, n, 4, settings(1, DEFAULT_LINK, NONE), w);
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let r = s.step().unwrap();
        assert_eq!(r.outcome, Outcome::Decodable);
        assert!(r.responders[0].len() >= n / 5);
        assert!(r.oracle_s <= r.wall_s);
        let d = s.decoding(&r).unwrap().unwrap();
        assert_eq!(d.exact, 1.0, "an FRC decodable set is exact by the rule");
    }
    assert!(started.elapsed().as_secs_f64() < 20.0);
}

/// Rows of a 2-worker uncoded run: iteration t has compute 0.1 (worker 0) and 0.2 (worker 1),
/// planned delays, arrivals 0.005 s after the finish, wall 0.001 s after the last arrival.
fn rows(iters: usize) -> RecordedRows {
    let per = |f: &dyn Fn(usize, usize) -> f64| Array2::from_shape_fn((iters, 2), |(t, w)| f(t, w));
    let planned = |t: usize, w: usize| 0.01 * (t + w) as f64;
    let compute = |_t: usize, w: usize| 0.1 * (w + 1) as f64;
    let arrival = |t: usize, w: usize| compute(t, w) + planned(t, w) + 0.005;
    let mut scalars = vec![Array1::from_elem(iters, f64::NAN); Metric::COUNT];
    let wall = Array1::from_shape_fn(iters, |t| arrival(t, 1).max(arrival(t, 0)) + 0.001);
    let mut elapsed = wall.clone();
    for t in 1..iters {
        elapsed[t] = elapsed[t - 1] + wall[t] + 0.002;
    }
    scalars[Metric::WallS.index()] = wall;
    scalars[Metric::ElapsedS.index()] = elapsed;
    let mut per_worker = vec![Array2::zeros((iters, 0)); WorkerMetric::COUNT];
    per_worker[WorkerMetric::ComputeS.index()] = per(&compute);
    per_worker[WorkerMetric::PlannedS.index()] = per(&planned);
    per_worker[WorkerMetric::InjectedS.index()] = per(&planned);
    per_worker[WorkerMetric::ArrivalS.index()] = per(&arrival);
    per_worker[WorkerMetric::Chunks.index()] = per(&|_, _| 1.0);
    let present = WorkerMetric::ALL
        .iter()
        .map(|m| per_worker[m.index()].ncols() > 0)
        .collect();
    RecordedRows {
        scalars,
        per_worker,
        present,
        per_layer: vec![Array2::zeros((iters, 0)); LayerMetric::ALL.len()],
        late: Vec::new(),
    }
}

#[test]
fn recorded_rows_replay_per_share_and_fit_the_link() {
    let r = rows(5);
    // Uncoded over 2 workers: each held half.
    let f = TraceFile::from_rows(Path::new("t.h5"), &r, &[0.5, 0.5], 1, Some(10)).unwrap();
    // The first iteration is left out.
    assert_eq!(f.workers[0].len(), 4);
    assert!(close(f.workers[1][0].compute_per_share_s, 0.4));
    assert!(close(f.workers[1][0].delay_s, 0.02));
    assert_eq!(f.workers[0][0].slow_factor, 1.0);
    assert!(f.link.iter().all(|l| close(l.round_trip_s, 0.005)));
    assert!(f.step_s.iter().all(|&s| close(s, 0.001)));
    assert!(f.gap_s.iter().all(|&g| (g - 0.002).abs() < 1e-12));
    let default = LinkModel {
        alpha_s: 0.0,
        message_s: 1e-4,
        beta_s_per_byte: 1e-9,
    };
    let link = fit_link(&f.link, default).unwrap();
    let bytes = f.link[0].bytes;
    assert_eq!(f.link[0].messages, 1.0);
    // One size, one message count: β and α_m keep their defaults, α takes the rest.
    assert_eq!(link.message_s, 1e-4);
    assert!(close(2.0 * link.alpha_s + 2e-4 + 1e-9 * bytes, 0.005));
    // Two message sizes: the line through them.
    let sample = |bytes: f64, messages: f64, round_trip_s: f64| LinkSample {
        bytes,
        messages,
        round_trip_s,
    };
    let two = [sample(1000.0, 1.0, 0.003), sample(3000.0, 1.0, 0.007)];
    let zero = LinkModel {
        message_s: 0.0,
        ..default
    };
    let l = fit_link(&two, zero).unwrap();
    assert!(close(l.beta_s_per_byte, 2e-6) && close(l.alpha_s, 0.0005));
    assert_eq!(l.message_s, 0.0);

    // More workers than the trace has: refused, unless pooled.
    let e = Trace::new(std::slice::from_ref(&f), 3, ReplayOrder::Sample, 1, false).unwrap_err();
    assert!(e.to_string().contains("--pool-workers"), "{e}");
    let pooled = Trace::new(std::slice::from_ref(&f), 3, ReplayOrder::Sample, 1, true).unwrap();
    let d = pooled.draw(7, 2);
    assert!(f.workers.iter().flatten().any(|s| *s == d));
    assert!(Trace::new(&[f], 3, ReplayOrder::Sequential, 1, true).is_err());
}

#[test]
fn a_file_without_per_worker_timing_is_not_a_trace() {
    let mut r = rows(3);
    r.per_worker = vec![Array2::zeros((3, 0)); WorkerMetric::COUNT];
    r.present = vec![false; WorkerMetric::COUNT];
    let e = TraceFile::from_rows(Path::new("ref.h5"), &r, &[], 1, None).unwrap_err();
    assert!(e.to_string().contains("no per-worker timing"), "{e}");
}

#[test]
fn a_split_code_sends_messages_m_times_shorter() {
    // comm-efficient with m = 2 pieces at n = 5, s = 1: each message carries ⌈10/2⌉ values and
    // the loss; rank 0 stops at the first n − s = 4 of them.
    let code = coding::build_with(
        CodeKind::CommEfficient,
        5,
        1,
        1,
        &coding::CodeOptions {
            split: Some(2),
            ..coding::CodeOptions::default()
        },
    )
    .unwrap();
    let same = vec![vec![0.0; 2]; 5];
    let mut s = Simulator::new(code, settings(1, DEFAULT_LINK, NONE), replay(&same, 0.4)).unwrap();
    let r = s.step().unwrap();
    let m = ((12 + 5 + 1) * 8) as f64;
    assert!(
        r.bytes_in >= 4.0 * m && r.bytes_in <= 5.0 * m,
        "{}",
        r.bytes_in
    );
    assert_eq!(r.bytes_in % m, 0.0, "{}", r.bytes_in);
    assert_eq!(
        f64::from(r.messages_in) * m,
        r.bytes_in,
        "one message per result"
    );
}

#[test]
fn the_per_message_cost_is_fitted_from_two_chunk_counts_and_charged_per_chunk() {
    // Round trips 2α + (C + 1)·α_m + β·bytes with α = 1 ms, α_m = 0.5 ms, β = 1 ns/B, at two
    // sizes and two chunk counts (three medians of noisy samples each).
    let truth = |b: f64, c: f64| 2e-3 + (c + 1.0) * 0.5e-3 + 1e-9 * b;
    let mut samples = Vec::new();
    for (b, c) in [
        (1000.0, 1.0),
        (1000.0, 2.0),
        (60_000.0, 1.0),
        (60_000.0, 4.0),
    ] {
        for noise in [-1e-4, 0.0, 3e-4] {
            samples.push(LinkSample {
                bytes: b,
                messages: c,
                round_trip_s: truth(b, c) + noise,
            });
        }
    }
    let l = fit_link(&samples, DEFAULT_LINK).unwrap();
    assert!((l.alpha_s - 1e-3).abs() < 1e-9, "{l:?}");
    assert!((l.message_s - 0.5e-3).abs() < 1e-9, "{l:?}");
    assert!((l.beta_s_per_byte - 1e-9).abs() < 1e-15, "{l:?}");
    // One size, two chunk counts (the bytes differ by the chunk's share only when given so):
    // α_m fitted, β kept.
    let one: Vec<LinkSample> = samples
        .iter()
        .filter(|s| s.bytes == 1000.0)
        .copied()
        .collect();
    let l = fit_link(&one, DEFAULT_LINK).unwrap();
    assert_eq!(l.beta_s_per_byte, DEFAULT_LINK.beta_s_per_byte);
    assert!((l.message_s - 0.5e-3).abs() < 1e-9, "{l:?}");

    // In the simulation: one worker, no delay, compute 0.4 s in C chunks, α_m = 10 ms. Each
    // chunk's send costs the worker α_m before its next chunk, and rank 0 α_m to receive it:
    // the last chunk arrives after compute + C·α_m + α, and is received α_m later.
    let link = LinkModel {
        alpha_s: 0.002,
        message_s: 0.01,
        beta_s_per_byte: 0.0,
    };
    let wall = |chunks: usize| {
        let mut s = sim(
            CodeKind::Uncoded,
            1,
            0,
            settings(chunks, link, NONE),
            replay(&[vec![0.0; 2]], 0.4),
        );
        s.step().unwrap().wall_s
    };
    let expect = |c: f64| 0.002 + 0.4 + c * 0.01 + 0.002 + 0.01;
    assert!(
        close(wall(1), expect(1.0)),
        "{} vs {}",
        wall(1),
        expect(1.0)
    );
    assert!(
        close(wall(2), expect(2.0)),
        "{} vs {}",
        wall(2),
        expect(2.0)
    );
    // Without it, more chunks cost nothing here.
    let free = LinkModel {
        message_s: 0.0,
        ..link
    };
    let mut s = sim(
        CodeKind::Uncoded,
        1,
        0,
        settings(4, free, NONE),
        replay(&[vec![0.0; 2]], 0.4),
    );
    assert!(close(s.step().unwrap().wall_s, 0.002 + 0.4 + 0.002));
}

mod plan {
    use super::super::plan::*;
    use crate::coding::CodeKind;

    /// Job A: 100/n seconds with n workers (1..=5); job B: 10 s whatever n.
    fn jobs() -> Vec<JobCurve> {
        let curve = |name: &str, f: &dyn Fn(f64) -> f64| JobCurve {
            name: name.into(),
            choices: (1..=5)
                .map(|n| Choice {
                    workers: n,
                    code: CodeKind::Uncoded,
                    s: 0,
                    chunks: 1,
                    batch: None,
                    iterations: 10,
                    time_s: f(n as f64),
                })
                .collect(),
            fixed_ranks: None,
        };
        vec![curve("a", &|n| 100.0 / n), curve("b", &|_| 10.0)]
    }

    #[test]
    fn the_plan_gives_ranks_where_they_shorten_a_job_and_beats_equal_split_and_fifo() {
        let j = jobs();
        // 6 ranks: both start at 1 worker (4 ranks); A's gain per rank is the largest, so
        // both spare ranks go to A (3 workers); B gains nothing from more.
        let a = allocate(&j, 6, PlanObjective::Mean, &[1.0, 1.0]).unwrap();
        assert_eq!(a, vec![3, 1]);
        let plan = schedule(
            &j,
            6,
            Policy::Plan {
                objective: PlanObjective::Mean,
                replan_every: 0,
            },
        )
        .unwrap();
        assert!((plan.mean_s() - (100.0 / 3.0 + 10.0) / 2.0).abs() < 1e-9);
        // Equal split: 3 ranks each (2 workers): A 50 s, B 10 s.
        let eq = schedule(&j, 6, Policy::EqualSplit).unwrap();
        assert_eq!((eq.mean_s(), eq.max_s()), (30.0, 50.0));
        // FIFO: A alone with 5 workers (20 s), then B (10 s): ends at 20 and 30.
        let fifo = schedule(&j, 6, Policy::Fifo).unwrap();
        assert_eq!((fifo.mean_s(), fifo.max_s()), (25.0, 30.0));
        assert_eq!(fifo.slots[1].start_s, 20.0);
        assert!(plan.mean_s() < fifo.mean_s() && plan.mean_s() < eq.mean_s());

        // Re-planning after each completion: B ends at 10 s having used 2 ranks, which A then
        // gets (4 → 5 workers... within 6 ranks: 5 workers), finishing the rest faster.
        let re = schedule(
            &j,
            6,
            Policy::Plan {
                objective: PlanObjective::Mean,
                replan_every: 1,
            },
        )
        .unwrap();
        // At 10 s A has done 10/33.3 = 30 % of its work; the rest at 5 workers: 0.7 × 20 s.
        assert_eq!(re.slots[0].replans, vec![(10.0, 5)]);
        assert!((re.slots[0].end_s - (10.0 + 0.7 * 20.0)).abs() < 1e-9);
        assert!(re.mean_s() < plan.mean_s());
    }

    #[test]
    fn the_max_objective_shortens_the_slowest_and_fixed_ranks_are_kept_or_refused() {
        let mut j = jobs();
        // Max: only A (the slowest) is grown.
        let a = allocate(&j, 6, PlanObjective::Max, &[1.0, 1.0]).unwrap();
        assert_eq!(a, vec![3, 1]);
        // When the slowest cannot be shortened, the spare ranks go to the others: A flat at
        // 100 s, B 10/n s: B grows to 3 workers, the max stays A's.
        let mut flat = j.clone();
        for c in &mut flat[0].choices {
            c.time_s = 100.0;
        }
        for c in &mut flat[1].choices {
            c.time_s = 10.0 / c.workers as f64;
        }
        assert_eq!(
            allocate(&flat, 6, PlanObjective::Max, &[1.0, 1.0]).unwrap(),
            vec![1, 3]
        );
        // B fixed at 4 ranks: A gets the 2 left (1 worker).
        j[1].fixed_ranks = Some(4);
        assert_eq!(
            allocate(&j, 6, PlanObjective::Mean, &[1.0, 1.0]).unwrap(),
            vec![1, 3]
        );
        // More ranks demanded than the allocation has.
        let e = allocate(&j, 5, PlanObjective::Mean, &[1.0, 1.0]).unwrap_err();
        assert!(
            e.to_string().contains("more than the allocation's 5"),
            "{e}"
        );
    }
}

/// The tree decode of the `kind` code (-s at both levels) of n workers in groups of g.
fn tree_sim(
    kind: CodeKind,
    n: usize,
    g: usize,
    s: usize,
    set: SimSettings,
    w: Workload,
) -> Simulator {
    let t = || coding::TreeCode::new(kind, n, g, s, s, 1).unwrap();
    Simulator::tree(t(), t().root(), set, w).unwrap()
}

#[test]
fn tree_rank_zero_receives_the_leaders_combined_messages_only() {
    // n = 9, G = 3, s = 0: every worker holds 1/9 (0.1 s), worker w waits 0.01·w s. Members
    // send to their leader (α), the leaders forward when their group is complete (α).
    let delays: Vec<Vec<f64>> = (0..9).map(|w| vec![0.01 * w as f64; 4]).collect();
    let link = LinkModel {
        alpha_s: 0.001,
        ..FREE
    };
    let mut s = tree_sim(
        CodeKind::Uncoded,
        9,
        3,
        0,
        settings(1, link, NONE),
        replay(&delays, 0.9),
    );
    let combined = ((crate::comm::protocol::HEADER_LEN + 10 + 2) * 8) as f64;
    for _ in 0..3 {
        let r = s.step().unwrap();
        assert_eq!(r.outcome, Outcome::Decodable);
        assert_eq!(r.messages_in, 3, "n/G messages");
        assert_eq!(r.bytes_in, 3.0 * combined);
        assert_eq!(r.responders, vec![vec![0, 3, 6]]);
        // Every member counted on time through its leader's mask, as the real job counts.
        assert_eq!(r.parts_in, vec![1; 9]);
        // Parameters (α), the slowest member 8 (0.1 + 0.08), to its leader (α), to rank 0 (α).
        assert!(
            (r.wall_s - (0.003 + 0.1 + 0.08)).abs() < 1e-12,
            "{}",
            r.wall_s
        );
        assert_eq!(r.late, 0);
        // Rank 0 still posts the parameters to all 9 workers.
        assert_eq!(
            r.bytes_out,
            9.0 * ((crate::comm::protocol::HEADER_LEN + 10) * 8) as f64
        );
    }
    assert!(s.shutdown().is_empty());
    assert!(s.fallen_groups().is_empty());
}

#[test]
fn tree_with_s_one_receives_n_over_g_messages_per_iteration_over_the_run() {
    // cyclic-repetition, n = 9, G = 3, s = 1, no stragglers: 3 combined messages an
    // iteration (on time or drained late in the next one), never a member's own.
    let delays: Vec<Vec<f64>> = (0..9).map(|w| vec![0.001 * w as f64; 20]).collect();
    let mut s = tree_sim(
        CodeKind::CyclicRepetition,
        9,
        3,
        1,
        settings(1, FREE, NONE),
        replay(&delays, 0.225),
    );
    let mut messages = 0;
    for _ in 0..20 {
        let r = s.step().unwrap();
        assert_eq!(r.outcome, Outcome::Decodable);
        assert!(
            r.responders[0].iter().all(|w| w % 3 == 0),
            "{:?}",
            r.responders
        );
        messages += r.messages_in;
    }
    let late = s.shutdown();
    assert!(late.iter().all(|l| (l.rank - 1) % 3 == 0));
    assert_eq!(messages as usize + late.len(), 20 * 3);
}

#[test]
fn tree_a_slow_leader_delays_the_iteration_as_the_two_levels_say_and_its_group_falls_back() {
    // cyclic-repetition, n = 9, G = 3, s = 1: each worker holds 4/9 (0.1 s). Two slow leaders
    // (0: +0.5 s, 3: +0.2 s): rank 0 needs 2 of 3 groups, so the iteration waits for leader
    // 3; a slow member (7: +0.3 s) does not matter (its group decodes from 2 of 3).
    let mut delays: Vec<Vec<f64>> = vec![vec![0.0; 8]; 9];
    delays[0] = vec![0.5; 8];
    delays[3] = vec![0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    delays[7] = vec![0.3; 8];
    let mut set = settings(1, FREE, NONE);
    set.deadline_s = 0.35;
    let mut s = tree_sim(
        CodeKind::CyclicRepetition,
        9,
        3,
        1,
        set,
        replay(&delays, 0.225),
    );
    let r = s.step().unwrap();
    assert!((r.wall_s - 0.3).abs() < 1e-9, "{}", r.wall_s);
    assert_eq!(r.responders, vec![vec![3, 6]]);
    // Leader 0 owes round 0 from 0 s on: at the end of round 0 (0.3 s) for less than the
    // deadline of 0.35 s, at the end of round 1 (0.4 s) for longer: its members send to rank 0
    // from round 2 on.
    assert!(s.fallen_groups().is_empty());
    let r = s.step().unwrap();
    assert!((r.wall_s - 0.1).abs() < 1e-9, "{}", r.wall_s);
    assert_eq!(s.fallen_groups(), vec![0]);
    let r = s.step().unwrap();
    // Members 1 and 2 answer rank 0 themselves (0.1 s), with leaders 3 and 6: all decodable.
    assert!((r.wall_s - 0.1).abs() < 1e-9, "{}", r.wall_s);
    assert!(r.responders[0].contains(&1) && r.responders[0].contains(&2));
    assert!(r.parts_in[1] == 1 && r.parts_in[2] == 1);
}

#[test]
fn tree_a_leader_that_answers_again_gets_its_members_back() {
    // n = 9, G = 3, s = 1, every worker 0.1 s: rounds end at 0.1, 0.2, ... Leader 0 is 0.5 s
    // late in round 0 only: at the end of round 3 (0.4 s) it has owed round 0 for longer than
    // the 0.35 s deadline, so its members send to rank 0 from round 4; its late result comes at
    // 0.6 s, and at the end of the round that takes it the group returns to the leader.
    let mut delays: Vec<Vec<f64>> = vec![vec![0.0; 12]; 9];
    delays[0][0] = 0.5;
    let mut set = settings(1, FREE, NONE);
    set.deadline_s = 0.35;
    let mut s = tree_sim(
        CodeKind::CyclicRepetition,
        9,
        3,
        1,
        set,
        replay(&delays, 0.225),
    );
    let mut fallen = Vec::new();
    let mut rounds = Vec::new();
    for _ in 0..12 {
        rounds.push(s.step().unwrap());
        fallen.push(!s.fallen_groups().is_empty());
    }
    let first = fallen.iter().position(|&f| f);
    assert_eq!(first, Some(3), "{fallen:?}");
    let back = 3 + fallen[3..].iter().position(|&f| !f).unwrap();
    assert!(
        back <= 6 && fallen[back..].iter().all(|&f| !f),
        "{fallen:?}"
    );
    // Members 1 and 2 answer rank 0 themselves exactly from round 4 to the return.
    for (t, r) in rounds.iter().enumerate() {
        let direct = r.responders[0].iter().any(|&w| w == 1 || w == 2);
        assert_eq!(
            direct,
            (4..=back).contains(&t),
            "round {t}: {:?}",
            r.responders
        );
    }
    // The leader is posted and answers again after the return.
    assert!(rounds[back + 1..].iter().any(|r| r.parts_in[0] == 1));
}

#[test]
fn scaling_the_compute_scales_the_draws_and_leaves_the_delays() {
    let mut w = replay(&[vec![0.01, 0.02], vec![0.03, 0.04]], 0.5);
    w.scale_compute(3.0);
    let d = w.draw(1, 1, 0.5);
    assert_eq!((d.compute_s, d.delay_s), (0.75, 0.04));
    let mut m = Workload::Model {
        compute_per_share_s: 0.2,
        schedule: StragglerSchedule::parse("none", 1, 1).unwrap(),
    };
    m.scale_compute(0.5);
    assert_eq!(m.draw(0, 0, 1.0).compute_s, 0.1);
}
