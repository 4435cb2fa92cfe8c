//! The event loop: one priority queue of timed events (parameters reach a worker, a worker
//! finishes a part, a message becomes receivable, rank 0 has received it), processed in time
//! order, with rank 0's side written after `comm::Collector` and the workers' after
//! `comm::WorkerLink` and the coded worker's chunk loop (see the module docs of [`super`]).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use super::link::{LinkModel, Overheads};
use super::workload::Workload;
use super::SimError;
use crate::coding::{Decoder, GradientCode, RootCode, StopTracker, StoppingRule, TreeCode};
use crate::comm::protocol::HEADER_LEN;
use crate::comm::OnDeadline;
use crate::io::metrics::LateRow;

/// Largest n for which the simulator decodes (SVD of B_F) to record residuals and condition
/// numbers; past it an exact code's decodable set is exact by its rule.
pub const DECODE_MAX_WORKERS: usize = 200;

/// The shape and policy of the simulated job (what `train` takes from its config).
#[derive(Debug, Clone)]
pub struct SimSettings {
    /// Parts (chunks) per worker and round.
    pub chunks: usize,
    pub deadline_s: f64,
    pub max_wait_s: f64,
    pub on_deadline: OnDeadline,
    /// Fold a result exactly one round late into the round being collected (one part only).
    pub reuse_stale: bool,
    /// Model parameters: messages carry `dim` (parameters) or `dim + 1` (results) values.
    pub dim: usize,
    pub link: LinkModel,
    pub overheads: Overheads,
}

/// How a simulated round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The responders formed a decodable set.
    Decodable,
    /// The deadline passed under `best-effort`.
    Deadline,
}

/// One simulated iteration, with what a real round records.
#[derive(Debug, Clone)]
pub struct SimRound {
    pub iteration: u64,
    /// Simulated seconds from the start of the run to the post.
    pub start_s: f64,
    pub outcome: Outcome,
    /// From the post to the step.
    pub wall_s: f64,
    /// The training clock at the end of the iteration (its gap included).
    pub elapsed_s: f64,
    /// The earliest moment the on-time finish times formed a decodable set (NaN: none did).
    pub oracle_s: f64,
    /// Responders per part (sorted worker indices).
    pub responders: Vec<Vec<usize>>,
    /// Parts each worker delivered on time (a folded stale result counts as one).
    pub parts_in: Vec<usize>,
    /// Seconds from the post to the worker's last on-time part (NaN: none).
    pub arrival_s: Vec<f64>,
    /// Compute and injected seconds of the worker's last on-time part (NaN: none; injected is
    /// inf for a failed worker).
    pub compute_s: Vec<f64>,
    pub injected_s: Vec<f64>,
    /// The delay drawn for every worker (inf: failed).
    pub planned_s: Vec<f64>,
    /// 0 fresh, 1 folded in a round late, NaN none.
    pub stale_age: Vec<f64>,
    pub stale: u32,
    /// Late messages drained during this round.
    pub late: u32,
    pub bytes_in: f64,
    /// Result messages rank 0 received during this round (those of `bytes_in`: on time, late,
    /// abandoned markers), as the real collector counts `messages_received`.
    pub messages_in: u32,
    pub bytes_out: f64,
    /// Every late message drained during this round.
    pub late_rows: Vec<LateRow>,
}

/// The quality of a round's decoding, as the real job records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundDecoding {
    /// 1 exact, 0 not, NaN unknown (not decoded past [`DECODE_MAX_WORKERS`]).
    pub exact: f64,
    /// √Σ over parts of err(F_q)² (NaN unknown).
    pub residual: f64,
    /// Largest cond(B_F) over the parts (NaN when not decoded).
    pub condition: f64,
    /// The code's guaranteed bound on err(F), worst part (NaN: none).
    pub error_bound: f64,
}

#[derive(Debug, Clone, Copy)]
struct Msg {
    w: usize,
    round: u64,
    part: usize,
    /// false: a header-only "part abandoned" marker.
    payload: bool,
    compute_s: f64,
    injected_s: f64,
    /// `--decode-tree`: a leader's combination's member mask (bit m: member m in it).
    mask: u64,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    /// Parameters of `round` reach worker `w`.
    Deliver { w: usize, round: u64 },
    /// Worker `w` finished its `idx`-th part of `round` (delay included) and sends it.
    PartDone { w: usize, round: u64, idx: usize },
    /// A message can be received by rank 0.
    Ready(Msg),
    /// Rank 0 has received a message.
    Received(Msg),
    /// `--decode-tree`: a member's message can be received by its leader.
    ToLeader(Msg),
    /// `--decode-tree`: the leader has received a member's message.
    LeaderGot(Msg),
    /// `--decode-tree`: the group deadline of the leader gathering `round` of group `grp`.
    GroupDeadline { grp: usize, round: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Timed {
    at: f64,
    seq: u64,
    ev: Event,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    /// Reversed: the earliest (then the first scheduled) on top of the max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .total_cmp(&self.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A worker's round in progress.
#[derive(Debug, Clone, Copy)]
struct Work {
    round: u64,
    compute_part: f64,
    spin_part: f64,
    delay_part: f64,
    compute_cum: f64,
    injected_cum: f64,
}

#[derive(Debug, Clone, Default)]
struct Worker {
    busy: Option<Work>,
    /// Newer parameters delivered while busy (overlap): their round and when.
    waiting: Option<(u64, f64)>,
    /// Failed: answers nothing from now on.
    silent: bool,
}

/// A round a worker was given and has not finished (rank 0's view).
#[derive(Debug, Clone, Copy)]
struct Pending {
    round: u64,
    remaining: usize,
    posted_at: f64,
}

/// When the responders suffice: trackers of the code's rule per part, or the code itself.
#[derive(Debug, Clone)]
enum Gate {
    Rules {
        trackers: Vec<StopTracker>,
        holding: usize,
    },
    /// No stopping rule: `is_decodable` on each part's sorted set after every arrival.
    Opaque { sets: Vec<Vec<usize>>, holds: bool },
}

impl Gate {
    fn new(rule: Option<StoppingRule>, n: usize, parts: usize) -> Gate {
        match rule {
            Some(r) => Gate::Rules {
                trackers: vec![StopTracker::new(r, n); parts],
                holding: 0,
            },
            None => Gate::Opaque {
                sets: vec![Vec::new(); parts],
                holds: false,
            },
        }
    }
    /// Worker `w` delivered part `q`; whether every part is decodable now.
    fn add(&mut self, code: &dyn GradientCode, q: usize, w: usize) -> bool {
        match self {
            Gate::Rules { trackers, holding } => {
                let before = trackers[q].holds();
                if trackers[q].add(w) && !before {
                    *holding += 1;
                }
                *holding == trackers.len()
            }
            Gate::Opaque { sets, holds } => {
                if let Err(pos) = sets[q].binary_search(&w) {
                    sets[q].insert(pos, w);
                }
                *holds = sets.iter().all(|s| code.is_decodable(s));
                *holds
            }
        }
    }
    fn holds(&self) -> bool {
        match self {
            Gate::Rules { trackers, holding } => *holding == trackers.len(),
            Gate::Opaque { holds, .. } => *holds,
        }
    }
}

/// Rank 0's record of the round being collected.
#[derive(Debug, Clone)]
struct RoundState {
    t: u64,
    start: f64,
    collecting: bool,
    gate: Gate,
    decided_at: f64,
    responders: Vec<Vec<usize>>,
    in_part: Vec<Vec<bool>>,
    parts_in: Vec<usize>,
    arrival: Vec<f64>,
    compute: Vec<f64>,
    injected: Vec<f64>,
    post_offset: Vec<f64>,
    stale_age: Vec<f64>,
    posted: Vec<bool>,
    stale: u32,
    late: u32,
    bytes_in: f64,
    messages_in: u32,
    bytes_out: f64,
    finish: Vec<(f64, usize, usize)>,
    late_rows: Vec<LateRow>,
}

impl RoundState {
    fn new(t: u64, start: f64, n: usize, parts: usize, rule: Option<StoppingRule>) -> Self {
        RoundState {
            t,
            start,
            collecting: true,
            gate: Gate::new(rule, n, parts),
            decided_at: f64::NAN,
            responders: vec![Vec::new(); parts],
            in_part: vec![vec![false; n]; parts],
            parts_in: vec![0; n],
            arrival: vec![f64::NAN; n],
            compute: vec![f64::NAN; n],
            injected: vec![f64::NAN; n],
            post_offset: vec![f64::NAN; n],
            stale_age: vec![f64::NAN; n],
            posted: vec![false; n],
            stale: 0,
            late: 0,
            bytes_in: 0.0,
            messages_in: 0,
            bytes_out: 0.0,
            finish: Vec::new(),
            late_rows: Vec::new(),
        }
    }
}

/// `--decode-tree G` (`comm::group`, `coding::TreeCode`): the groups of G consecutive
/// workers, the first one leading, and what the leaders hold.
struct Tree {
    /// The workers' two-level code (the leaders' inner decodability).
    code: TreeCode,
    g: usize,
    /// Per group: its members were told to send to rank 0 (the leader owed a round for
    /// longer than the deadline at the end of an iteration), until the leader owes nothing.
    fallen: Vec<bool>,
    /// Per worker: the first round whose result goes to rank 0 (`u64::MAX`: to the leader).
    direct_from: Vec<u64>,
    /// Per worker: the first round whose result goes to the leader again after a fallback
    /// (`u64::MAX`: none yet).
    relay_from: Vec<u64>,
    /// Per group: when the leader can receive its next member message.
    free: Vec<f64>,
    /// Per group: the members' results the leader has received (round, member index).
    got: Vec<Vec<(u64, usize)>>,
    /// Per group: the leader's own result while it gathers its group's round.
    gathering: Vec<Option<Msg>>,
}

impl Tree {
    fn leads(&self, w: usize) -> bool {
        w % self.g == 0
    }
    /// The leader of a group that fell back: rank 0 posts nothing to it (`Collector::hold`).
    fn held(&self, w: usize) -> bool {
        self.leads(w) && self.fallen[w / self.g]
    }
    /// A member whose results go to its leader in `round`.
    fn relays(&self, w: usize, round: u64) -> bool {
        !self.leads(w) && (round < self.direct_from[w] || round >= self.relay_from[w])
    }
}

/// The simulated job: rank 0, n workers, the messages between them.
pub struct Simulator {
    set: SimSettings,
    decoder: Decoder,
    rule: Option<StoppingRule>,
    n: usize,
    shares: Vec<f64>,
    workload: Workload,
    heap: BinaryHeap<Timed>,
    seq: u64,
    workers: Vec<Worker>,
    pending: Vec<VecDeque<Pending>>,
    /// When rank 0 can receive the next message.
    r0_free: f64,
    /// When the next round is posted.
    clock: f64,
    next: u64,
    round: RoundState,
    tree: Option<Tree>,
}

impl Simulator {
    /// A simulator of `code` under `settings`, drawing compute and delays from `workload`.
    pub fn new(
        code: Box<dyn GradientCode>,
        settings: SimSettings,
        workload: Workload,
    ) -> Result<Simulator, SimError> {
        let n = code.n_workers();
        if settings.chunks == 0 {
            return Err(SimError::invalid("chunks", 0, "must be at least 1"));
        }
        for (name, v) in [
            ("deadline-ms", settings.deadline_s),
            ("max-wait-ms", settings.max_wait_s),
            ("alpha-ms", settings.link.alpha_s),
            ("message-ms", settings.link.message_s),
            ("beta-ms-per-mb", settings.link.beta_s_per_byte),
            ("step-ms", settings.overheads.step_s),
            ("gap-ms", settings.overheads.gap_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(SimError::invalid(
                    name,
                    v,
                    "must be a finite number ≥ 0 (seconds internally)",
                ));
            }
        }
        let k = code.n_partitions().max(1) as f64;
        let shares = (0..n)
            .map(|w| code.assignment(w).len() as f64 / k)
            .collect();
        let rule = code.stopping_rule();
        let parts = settings.chunks;
        Ok(Simulator {
            round: RoundState::new(0, 0.0, n, parts, rule),
            set: settings,
            decoder: Decoder::new(code),
            rule,
            n,
            shares,
            workload,
            heap: BinaryHeap::new(),
            seq: 0,
            workers: vec![Worker::default(); n],
            pending: vec![VecDeque::new(); n],
            r0_free: 0.0,
            clock: 0.0,
            next: 0,
            tree: None,
        })
    }

    /// Scale the workers' compute times by `factor` from the next round on (`tune`'s batch
    /// candidates compute `factor` times the profile's rows).
    pub fn scale_compute(&mut self, factor: f64) {
        self.workload.scale_compute(factor);
    }

    /// The tree decode (`--decode-tree G`): the workers hold `workers` (their compute shares
    /// are its), rank 0 decodes `root` (the same code's [`RootCode`]). Members send to their
    /// leader (one message at a time per leader, α + α_m + β × bytes each, as rank 0); a
    /// leader, once its own result is done, waits for its group until the group is decodable
    /// or the group deadline (`max_wait_s`, as `train`'s leaders) passes, then forwards one
    /// combined message (one value longer: the member mask) or an abandoned marker. At the
    /// end of an iteration, a group whose leader has owed rank 0 a round for longer than
    /// `deadline_s` falls back: its members send to rank 0 from the next round on and rank 0
    /// posts nothing to its leader; once the leader owes
    /// nothing at the end of an iteration, the members send to it again from the next round
    /// (`CodedGradients::fall_back_silent_groups`).
    pub fn tree(
        workers: TreeCode,
        root: RootCode,
        settings: SimSettings,
        workload: Workload,
    ) -> Result<Simulator, SimError> {
        let (n, g) = (workers.n_workers(), workers.group_size());
        if settings.chunks != 1 {
            return Err(SimError::invalid(
                "chunks",
                settings.chunks,
                "the tree decode sends whole messages (one chunk)",
            ));
        }
        if settings.reuse_stale {
            return Err(SimError::invalid(
                "reuse-stale",
                true,
                "the tree decode does not fold stale results",
            ));
        }
        if root.n_workers() != n {
            return Err(SimError::invalid(
                "decode-tree",
                g,
                "rank 0's code and the workers' code differ in workers",
            ));
        }
        let k = workers.n_partitions().max(1) as f64;
        let shares = (0..n)
            .map(|w| workers.assignment(w).len() as f64 / k)
            .collect();
        let mut sim = Simulator::new(Box::new(root), settings, workload)?;
        sim.shares = shares;
        let groups = n / g;
        sim.tree = Some(Tree {
            code: workers,
            g,
            fallen: vec![false; groups],
            direct_from: (0..n)
                .map(|w| if w % g == 0 { 0 } else { u64::MAX })
                .collect(),
            relay_from: vec![u64::MAX; n],
            free: vec![0.0; groups],
            got: vec![Vec::new(); groups],
            gathering: vec![None; groups],
        });
        Ok(sim)
    }

    /// Groups whose members send to rank 0 (their leader fell silent), `--decode-tree` only.
    pub fn fallen_groups(&self) -> Vec<usize> {
        self.tree.as_ref().map_or_else(Vec::new, |t| {
            (0..t.fallen.len()).filter(|&grp| t.fallen[grp]).collect()
        })
    }

    /// The code's decoder (its cache is shared with the records).
    pub fn decoder(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// The code.
    pub fn code(&self) -> &dyn GradientCode {
        self.decoder.code()
    }

    /// The settings.
    pub fn settings(&self) -> &SimSettings {
        &self.set
    }

    fn push(&mut self, at: f64, ev: Event) {
        self.seq += 1;
        self.heap.push(Timed {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn peek_time(&self) -> f64 {
        self.heap.peek().map_or(f64::INFINITY, |e| e.at)
    }

    fn params_bytes(&self) -> f64 {
        ((HEADER_LEN + self.set.dim) * 8) as f64
    }

    /// A worker's message: the coded vector (one of m pieces for a split code) and the loss.
    fn message_bytes(&self, payload: bool) -> f64 {
        let m = self.code().split().max(1);
        let len = if payload {
            self.set.dim.div_ceil(m) + 1
        } else {
            0
        };
        ((HEADER_LEN + len) * 8) as f64
    }

    /// Bytes of `m` at rank 0: a leader's combined message carries its member mask too.
    fn msg_bytes(&self, m: &Msg) -> f64 {
        let mask = self
            .tree
            .as_ref()
            .is_some_and(|t| m.payload && t.leads(m.w));
        self.message_bytes(m.payload) + if mask { 8.0 } else { 0.0 }
    }

    /// Simulate the next iteration.
    pub fn step(&mut self) -> Result<SimRound, SimError> {
        let (t, start) = (self.next, self.clock);
        self.round = RoundState::new(t, start, self.n, self.set.chunks, self.rule);
        // What happened while rank 0 was stepping: the workers went on, and rank 0 drains the
        // messages that arrived meanwhile at its first poll of this round.
        while self.peek_time() <= start {
            self.pop_and_handle();
        }
        let overlap = self.set.chunks > 1;
        for w in 0..self.n {
            // Rank 0 never hears from a relaying member: it posts to it every round (once it
            // owes nothing from before a return).
            if self.tree.as_ref().is_some_and(|tr| tr.relays(w, t)) {
                if self.pending[w].is_empty() {
                    self.post_to(w, start, false);
                }
                continue;
            }
            if self.tree.as_ref().is_some_and(|tr| tr.held(w)) {
                continue;
            }
            let busy = self.pending[w].len();
            if !self.round.posted[w] && (busy == 0 || (overlap && busy == 1)) {
                self.post(w, start);
            }
        }
        let (outcome, end) = loop {
            if self.round.gate.holds() {
                break (Outcome::Decodable, self.round.decided_at.max(start));
            }
            let next = self.peek_time();
            match self.set.on_deadline {
                OnDeadline::BestEffort if next > start + self.set.deadline_s => {
                    break (Outcome::Deadline, start + self.set.deadline_s);
                }
                OnDeadline::Wait if next > start + self.set.max_wait_s => {
                    let have = self.round.parts_in.iter().filter(|&&p| p > 0).count();
                    return Err(SimError::Timeout {
                        iteration: t,
                        max_wait_ms: self.set.max_wait_s * 1e3,
                        have,
                        n: self.n,
                        silent: (0..self.n)
                            .filter(|&w| self.round.parts_in[w] == 0)
                            .map(|w| w + 1)
                            .collect(),
                    });
                }
                _ => {}
            }
            self.pop_and_handle();
        };
        self.round.collecting = false;
        self.fall_back_silent_groups(end, t + 1);
        let o = self.set.overheads;
        self.clock = end + o.step_s + o.gap_s;
        self.r0_free = self.r0_free.max(self.clock);
        self.next += 1;
        Ok(self.finish_round(outcome, end - start + o.step_s))
    }

    /// End the run: every worker finishes what it has (no new parameters), rank 0 drains the
    /// messages; returns them as late arrivals received "during" the iteration count.
    pub fn shutdown(&mut self) -> Vec<LateRow> {
        self.round = RoundState::new(self.next, self.clock, self.n, self.set.chunks, self.rule);
        self.round.collecting = false;
        while !self.heap.is_empty() {
            self.pop_and_handle();
        }
        std::mem::take(&mut self.round.late_rows)
    }

    fn finish_round(&mut self, outcome: Outcome, wall_s: f64) -> SimRound {
        let t = self.round.t;
        let oracle_s = if outcome == Outcome::Decodable {
            self.oracle()
        } else {
            f64::NAN
        };
        let mut planned = Vec::with_capacity(self.n);
        let mut injected = self.round.injected.clone();
        for (w, (inj, &share)) in injected.iter_mut().zip(&self.shares).enumerate() {
            let d = self.workload.draw(t, w, share);
            planned.push(d.delay_s);
            if d.failed {
                *inj = f64::INFINITY;
            }
        }
        let r = &mut self.round;
        let mut responders = std::mem::take(&mut r.responders);
        responders.iter_mut().for_each(|s| s.sort_unstable());
        SimRound {
            iteration: t,
            start_s: r.start,
            outcome,
            wall_s,
            elapsed_s: self.clock,
            oracle_s,
            responders,
            parts_in: r.parts_in.clone(),
            arrival_s: r.arrival.clone(),
            compute_s: r.compute.clone(),
            injected_s: injected,
            planned_s: planned,
            stale_age: r.stale_age.clone(),
            stale: r.stale,
            late: r.late,
            bytes_in: r.bytes_in,
            messages_in: r.messages_in,
            bytes_out: r.bytes_out,
            late_rows: std::mem::take(&mut r.late_rows),
        }
    }

    /// The earliest on-time finish time at which every part was decodable.
    fn oracle(&self) -> f64 {
        let mut fin: Vec<(f64, usize, usize)> = self
            .round
            .finish
            .iter()
            .copied()
            .filter(|f| f.0.is_finite())
            .collect();
        fin.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut gate = Gate::new(self.rule, self.n, self.set.chunks);
        for (f, w, q) in fin {
            if gate.add(self.decoder.code(), q, w) {
                return f;
            }
        }
        f64::NAN
    }

    fn pop_and_handle(&mut self) {
        let Some(e) = self.heap.pop() else {
            return;
        };
        match e.ev {
            Event::Deliver { w, round } => self.deliver(w, round, e.at),
            Event::PartDone { w, round, idx } => self.part_done(w, round, idx, e.at),
            Event::Ready(m) => {
                let c = e.at.max(self.r0_free) + self.set.link.receive_s(self.msg_bytes(&m));
                self.r0_free = c;
                self.push(c, Event::Received(m));
            }
            Event::Received(m) => {
                let at = if self.round.collecting {
                    e.at.max(self.round.start)
                } else {
                    e.at
                };
                self.received(m, at);
            }
            Event::ToLeader(m) => self.leader_queue(m, e.at),
            Event::LeaderGot(m) => self.leader_got(m, e.at),
            Event::GroupDeadline { grp, round } => self.group_deadline(grp, round, e.at),
        }
    }

    /// `--decode-tree`: groups whose leader has owed rank 0 a round for longer than the
    /// deadline at `at` fall back (their members send to rank 0 from round `next` on); a
    /// fallen-back group whose leader owes nothing returns to it from round `next` on.
    fn fall_back_silent_groups(&mut self, at: f64, next: u64) {
        let Some(tr) = self.tree.as_mut() else {
            return;
        };
        for grp in 0..tr.fallen.len() {
            let leader = grp * tr.g;
            let owed = self.pending[leader].front().map(|p| at - p.posted_at);
            if tr.fallen[grp] && owed.is_none() {
                tr.fallen[grp] = false;
                for w in leader + 1..leader + tr.g {
                    tr.relay_from[w] = next;
                }
                continue;
            }
            if tr.fallen[grp] || !owed.is_some_and(|d| d > self.set.deadline_s) {
                continue;
            }
            tr.fallen[grp] = true;
            for w in leader + 1..leader + tr.g {
                tr.direct_from[w] = next;
                tr.relay_from[w] = u64::MAX;
            }
        }
    }

    /// A member's message reaches its leader's receive queue at `at`.
    fn leader_queue(&mut self, m: Msg, at: f64) {
        let bytes = self.message_bytes(m.payload);
        let Some(tr) = self.tree.as_mut() else {
            return;
        };
        let grp = m.w / tr.g;
        let c = at.max(tr.free[grp]) + self.set.link.receive_s(bytes);
        tr.free[grp] = c;
        self.push(c, Event::LeaderGot(m));
    }

    fn leader_got(&mut self, m: Msg, at: f64) {
        let Some(tr) = self.tree.as_mut() else {
            return;
        };
        let grp = m.w / tr.g;
        tr.got[grp].push((m.round, m.w % tr.g));
        self.try_forward(grp, at);
    }

    /// A leader's own result is done at `at`: it gathers its group's round.
    fn gather(&mut self, own: Msg, at: f64) {
        let Some(tr) = self.tree.as_mut() else {
            return;
        };
        let grp = own.w / tr.g;
        // Older rounds are drained as late, never used.
        tr.got[grp].retain(|&(r, _)| r >= own.round);
        tr.gathering[grp] = Some(own);
        let round = own.round;
        self.push(
            at + self.set.max_wait_s,
            Event::GroupDeadline { grp, round },
        );
        self.try_forward(grp, at);
    }

    /// Forward the gathering round of group `grp` if its members decode it.
    fn try_forward(&mut self, grp: usize, at: f64) {
        let Some(tr) = self.tree.as_mut() else {
            return;
        };
        let Some(own) = tr.gathering[grp] else {
            return;
        };
        let mut set: Vec<usize> = std::iter::once(0)
            .chain(
                tr.got[grp]
                    .iter()
                    .filter(|(r, _)| *r == own.round)
                    .map(|&(_, m)| m),
            )
            .collect();
        set.sort_unstable();
        set.dedup();
        if tr.code.group_decodable(&set) {
            tr.gathering[grp] = None;
            let mask = set.iter().fold(0u64, |a, &m| a | (1 << m));
            let combined = Msg { mask, ..own };
            self.push(at + self.set.link.alpha_s, Event::Ready(combined));
        }
    }

    /// The group deadline of `round`: a leader still gathering it gives it up (a marker).
    fn group_deadline(&mut self, grp: usize, round: u64, at: f64) {
        let Some(tr) = self.tree.as_mut() else {
            return;
        };
        match tr.gathering[grp] {
            Some(own) if own.round == round => {
                tr.gathering[grp] = None;
                let marker = Msg {
                    payload: false,
                    ..own
                };
                self.push(at + self.set.link.alpha_s, Event::Ready(marker));
            }
            _ => {}
        }
    }

    /// Rank 0 posts the current round to worker `w` at `at`.
    fn post(&mut self, w: usize, at: f64) {
        self.post_to(w, at, true);
    }

    /// Post to `w`; `track`: rank 0 expects its result (not a relaying member's).
    fn post_to(&mut self, w: usize, at: f64, track: bool) {
        let parts = self.set.chunks;
        if track {
            self.pending[w].push_back(Pending {
                round: self.round.t,
                remaining: parts,
                posted_at: at,
            });
        }
        let bytes = self.params_bytes();
        let r = &mut self.round;
        r.posted[w] = true;
        r.post_offset[w] = at - r.start;
        r.bytes_out += bytes;
        let round = r.t;
        let deliver = at + self.set.link.delivery_s(bytes);
        self.push(deliver, Event::Deliver { w, round });
    }

    fn deliver(&mut self, w: usize, round: u64, at: f64) {
        let wk = &mut self.workers[w];
        if wk.silent {
            return;
        }
        if wk.busy.is_some() {
            wk.waiting = Some((round, at));
        } else {
            self.start_work(w, round, at);
        }
    }

    fn start_work(&mut self, w: usize, round: u64, at: f64) {
        let d = self.workload.draw(round, w, self.shares[w]);
        if d.failed {
            let wk = &mut self.workers[w];
            wk.silent = true;
            wk.busy = None;
            wk.waiting = None;
            return;
        }
        let c = self.set.chunks as f64;
        let compute_part = d.compute_s / c;
        let work = Work {
            round,
            compute_part,
            spin_part: compute_part * (d.slow_factor - 1.0).max(0.0),
            delay_part: d.delay_s / c,
            compute_cum: 0.0,
            injected_cum: 0.0,
        };
        self.workers[w].busy = Some(work);
        let done = at + work.compute_part + work.spin_part + work.delay_part;
        self.push(done, Event::PartDone { w, round, idx: 0 });
    }

    fn part_done(&mut self, w: usize, round: u64, idx: usize, at: f64) {
        let parts = self.set.chunks;
        let Some(mut work) = self.workers[w].busy.filter(|b| b.round == round) else {
            return;
        };
        work.compute_cum += work.compute_part;
        work.injected_cum += work.spin_part + work.delay_part;
        // The send takes α_m of the worker's time; the message is receivable α later.
        let at = at + self.set.link.message_s;
        let alpha = self.set.link.alpha_s;
        let msg = Msg {
            w,
            round,
            part: (w + idx) % parts,
            payload: true,
            compute_s: work.compute_cum,
            injected_s: work.injected_cum,
            mask: 0,
        };
        match &self.tree {
            Some(tr) if tr.leads(w) => self.gather(msg, at),
            Some(tr) if tr.relays(w, round) => self.push(at + alpha, Event::ToLeader(msg)),
            _ => self.push(at + alpha, Event::Ready(msg)),
        }
        let waiting = self.workers[w].waiting;
        if idx + 1 < parts {
            match waiting {
                // Newer parameters are waiting: abandon the rest, start on them.
                Some((next, delivered)) if delivered <= at => {
                    for rest in idx + 1..parts {
                        let marker = Msg {
                            part: (w + rest) % parts,
                            payload: false,
                            ..msg
                        };
                        self.push(at + alpha, Event::Ready(marker));
                    }
                    self.workers[w].busy = None;
                    self.workers[w].waiting = None;
                    self.start_work(w, next, at);
                }
                _ => {
                    self.workers[w].busy = Some(work);
                    let done = at + work.compute_part + work.spin_part + work.delay_part;
                    self.push(
                        done,
                        Event::PartDone {
                            w,
                            round,
                            idx: idx + 1,
                        },
                    );
                }
            }
        } else {
            self.workers[w].busy = None;
            if let Some((next, _)) = self.workers[w].waiting.take() {
                self.start_work(w, next, at);
            }
        }
    }

    /// Rank 0 received `m` at `at`: accept, fold, or record it late; post to the worker when it
    /// has become idle during a collection.
    fn received(&mut self, m: Msg, at: f64) {
        let w = m.w;
        // A message for another round than the worker's oldest is refused, as the real
        // collector does (it cannot happen here: rounds are served in order).
        let Some(front) = self.pending[w].front_mut().filter(|f| f.round == m.round) else {
            return;
        };
        let posted_at = front.posted_at;
        front.remaining = front.remaining.saturating_sub(1);
        if front.remaining == 0 {
            self.pending[w].pop_front();
        }
        self.round.bytes_in += self.msg_bytes(&m);
        self.round.messages_in += 1;
        let (collecting, t) = (self.round.collecting, self.round.t);
        if m.payload && collecting && m.round == t {
            self.accept(m, at);
        } else if m.payload {
            let fold = self.set.reuse_stale
                && self.set.chunks == 1
                && collecting
                && m.round + 1 == t
                && self.round.parts_in[w] == 0;
            self.round.late_rows.push(LateRow {
                received_during: t,
                iteration: m.round,
                rank: w + 1,
                phase: 0,
                part: m.part,
                delay_s: at - posted_at,
                compute_s: m.compute_s,
                injected_s: m.injected_s,
                used: fold,
            });
            if fold {
                self.fold_stale(m, at);
            } else {
                self.round.late += 1;
            }
        }
        let held = self.tree.as_ref().is_some_and(|tr| tr.held(w));
        if self.round.collecting && self.pending[w].is_empty() && !self.round.posted[w] && !held {
            let relays = self
                .tree
                .as_ref()
                .is_some_and(|tr| tr.relays(w, self.round.t));
            self.post_to(w, at, !relays);
        }
    }

    fn add_responder(&mut self, q: usize, w: usize, at: f64) {
        let r = &mut self.round;
        if !r.in_part[q][w] {
            r.in_part[q][w] = true;
            r.responders[q].push(w);
        }
        let was = r.gate.holds();
        if r.gate.add(self.decoder.code(), q, w) && !was {
            r.decided_at = at;
        }
    }

    fn accept(&mut self, m: Msg, at: f64) {
        let w = m.w;
        let r = &mut self.round;
        if r.stale_age[w] == 1.0 {
            // A fresh response replaces the one folded in from the previous round.
            r.parts_in[w] = 0;
            r.stale -= 1;
        }
        r.parts_in[w] += 1;
        r.arrival[w] = at - r.start;
        r.compute[w] = m.compute_s;
        r.injected[w] = m.injected_s;
        r.stale_age[w] = 0.0;
        r.finish
            .push((r.post_offset[w] + m.compute_s + m.injected_s, w, m.part));
        // A leader's combination: its members in it were on time (as the real job counts
        // them, through the mask).
        for bit in 1..u64::BITS as usize {
            if m.mask & (1 << bit) != 0 && w + bit < self.n {
                r.parts_in[w + bit] += 1;
            }
        }
        self.add_responder(m.part, w, at);
    }

    fn fold_stale(&mut self, m: Msg, at: f64) {
        let w = m.w;
        let r = &mut self.round;
        r.parts_in[w] = 1;
        r.arrival[w] = at - r.start;
        r.compute[w] = m.compute_s;
        r.injected[w] = m.injected_s;
        r.stale_age[w] = 1.0;
        r.stale += 1;
        self.add_responder(0, w, at);
    }

    /// The decoding quality of `round` (None: nobody answered at all).
    pub fn decoding(&mut self, round: &SimRound) -> Result<Option<RoundDecoding>, SimError> {
        if round.responders.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        let code = self.decoder.code();
        let bound = round
            .responders
            .iter()
            .filter_map(|set| code.error_bound(set))
            .fold(f64::NAN, f64::max);
        if self.n > DECODE_MAX_WORKERS {
            let exact = round.outcome == Outcome::Decodable
                && !code.kind().is_approximate()
                && round.stale == 0;
            return Ok(Some(RoundDecoding {
                exact: if exact { 1.0 } else { f64::NAN },
                residual: if exact { 0.0 } else { f64::NAN },
                condition: f64::NAN,
                error_bound: bound,
            }));
        }
        let k = code.n_partitions() as f64;
        let (mut exact, mut res2, mut cond) = (true, 0.0, 0.0f64);
        for set in &round.responders {
            if set.is_empty() {
                exact = false;
                res2 += k;
                continue;
            }
            let d = self.decoder.decode(set)?;
            exact &= d.exact;
            res2 += d.residual * d.residual;
            cond = cond.max(d.condition);
        }
        Ok(Some(RoundDecoding {
            exact: f64::from(u8::from(exact && round.stale == 0)),
            residual: res2.sqrt(),
            condition: cond,
            error_bound: bound,
        }))
    }
}
