//! The checked configuration of `gradcode train`.
//!
//! [`RunConfig::from_args`] merges a TOML file (`--config`) with command-line flags (flags win),
//! applies defaults, and checks every setting once, identically on every rank, before any MPI
//! traffic: a bad setting is refused on all ranks with the same message. The effective config is
//! written back as TOML in the keys of the flags (into the run folder and the result file), so it
//! re-runs the same job; a hash of the settings that shape the trajectory guards checkpoints
//! against resuming under another configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{invalid, read_settings, ConfigError, JobArgs, JobConfig};
use crate::coding::{CodeKind, CodeOptions, DecoderKind, Speeds, TrainCode};
use crate::comm::{Messages, OnDeadline};

fn is_dense(m: &Messages) -> bool {
    *m == Messages::Dense
}
use crate::compress::Compressor;
use crate::model::ModelKind;
use crate::optim::kfac::{EigSite, KfacSpec};
use crate::optim::{
    AdamParams, BadSchedule, LrSchedule, MomentumSchedule, OptimizerKind, OptimizerSpec,
};

/// Arguments of `gradcode train`. Every setting may also come from `--config FILE.toml` (the long
/// flag names as keys, dashes or underscores); flags given on the command line override the file.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrainArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub job: JobArgs,
    /// HDF5 dataset (see `gradcode data convert`).
    #[arg(long, value_name = "FILE.h5")]
    pub data: Option<PathBuf>,
    /// Model: logistic (binary labels ±1 or 0/1; log-loss), linear (least squares, per-row loss
    /// ½(xᵀw + b − y)², so the objective is ½·MSE plus the L2 term), softmax (classes 0..C−1;
    /// cross-entropy), mlp (a neural network with --hidden ReLU layers; softmax cross-entropy
    /// for a multiclass or binary dataset, ½(z − y)² for regression; He initialization from
    /// --seed). Every model has an intercept (bias) per output, stored last in each output's
    /// block of `/model/w_final` (d weights, then the intercept; see --no-intercept); an mlp
    /// stores its layers one after the other, each in that layout; cnn (a LeNet-style
    /// convolutional network, conv 5×5 ×C1 → 2×2 max-pool → conv 5×5 ×C2 → pool → dense H →
    /// outputs, with C1,C2 from --conv-filters and H from --hidden, LeNet's 6,16 and 120 by
    /// default, on a dataset that records its image shape, as `data convert --format idx`
    /// writes; the mlp's losses and layout, a convolution's filters being its units)
    /// [default: logistic].
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// Hidden layer widths of `--model mlp`, comma-separated, each > 0 (input → 256 → 128 →
    /// outputs for the default; outputs: one per class, two for a binary dataset, one for
    /// regression) [default: 256,128]; for `--model cnn` the width of its one hidden dense
    /// layer [default: 120].
    #[arg(long, value_name = "W1,W2,..")]
    pub hidden: Option<String>,
    /// Filters of the two convolutions of `--model cnn`, each > 0 [default: 6,16].
    #[arg(long, value_name = "C1,C2")]
    pub conv_filters: Option<String>,
    /// Code [default: cyclic-mds]. The mds-* codes train through two coded mat-vecs per step
    /// (linear and logistic only).
    #[arg(long, value_enum)]
    pub code: Option<TrainCode>,
    /// Stragglers s the code tolerates (mds-*: any k = N − s workers decode) [default: 1;
    /// uncoded: 0].
    #[arg(short = 's', long)]
    pub stragglers: Option<usize>,
    /// Replication d of the approximate codes: graph degree (expander; n·d even, d < n),
    /// expected partitions per worker (bgc), group size (frc-approx; d | n), workers per
    /// partition (stochastic) [default: s + 1].
    #[arg(long, value_name = "D")]
    pub degree: Option<usize>,
    /// Decoder of the approximate codes: optimal (least squares, cached per responder set) or
    /// one-step (one common weight, n/(n − s) for expander) [default: optimal; stochastic: one-step].
    #[arg(long, value_enum)]
    pub decoder: Option<DecoderKind>,
    /// Straggle probability p of the stochastic code; its one-step decoder scales every message
    /// by 1/(d(1 − p)), unbiased when workers straggle independently with probability p [default: s/n].
    #[arg(long, value_name = "P")]
    pub straggle_prob: Option<f64>,
    /// Pieces m of the comm-efficient code (Ye & Abbe): each worker holds s + m partitions and
    /// sends ⌈dim/m⌉ values instead of dim, so rank 0 receives m times fewer bytes;
    /// 1 ≤ m ≤ n − s [default: 2, or 1 when n − s = 1].
    #[arg(long, value_name = "M")]
    pub split: Option<usize>,
    /// Per-worker speeds of the hetero code, comma-separated, one per worker (rank 1 first),
    /// each > 0; only their ratios matter: worker i holds about k(s + 1)·v_i/Σv of the
    /// k = 8n partitions, so that expected finish times are balanced. `gradcode tune` fits them
    /// from a profile [default: all 1].
    #[arg(long, value_name = "V1,V2,..")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_speeds: Option<Speeds>,
    /// Policy when the deadline passes without a decodable set: wait (at most --max-wait-ms) or
    /// best-effort (decode least-squares optimally from what arrived) [default: wait].
    #[arg(long, value_enum)]
    pub on_deadline: Option<OnDeadline>,
    /// Iterations to run (or --epochs) [default: 100].
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Train for E epochs instead of --iterations: an epoch is ⌈rows / (k·B)⌉ iterations with
    /// --batch B over k partitions, one iteration without.
    #[arg(long, value_name = "E")]
    pub epochs: Option<u64>,
    /// Minibatches: B rows of every partition per iteration (at most the smallest partition's
    /// rows). Every worker holding a partition draws the same rows from (--seed, iteration,
    /// partition), a fresh shuffle of the partition every epoch, so the code still decodes the
    /// exact gradient of the k·B rows, and the objective (and the train loss recorded) is the
    /// minibatch's: the loss sum over k·B plus the L2 term. With --chunks C each chunk takes
    /// B/C of those rows. `--reference` draws the same batches from the partitions of
    /// `--workers N` and `--code` (k = N) [default: none, the whole partitions every
    /// iteration].
    #[arg(long, value_name = "B")]
    pub batch: Option<usize>,
    /// Learning rate (step size) [default: 0.5].
    #[arg(long)]
    pub lr: Option<f64>,
    /// L2 regularization λ: the objective is the mean loss over the training rows plus
    /// (λ/2)‖w‖² on the weights, not the intercepts [default: 1e-4].
    #[arg(long)]
    pub l2: Option<f64>,
    /// Train without intercepts: the bias entry of every output stays 0 (it is still stored, last
    /// in each output's block of `/model/w_final`).
    #[arg(long)]
    #[serde(default)]
    pub no_intercept: bool,
    /// Optimizer: gd (gradient descent; minibatch SGD with --batch), momentum (heavy ball,
    /// SGD with momentum: w ← w − lr·g + μ(w − w_prev)), nesterov (accelerated, gradient at the
    /// look-ahead point), adam (bias-corrected; --beta1, --beta2, --eps; the L2 term is in the
    /// gradient, not decoupled weight decay) or kfac (--model mlp or cnn: heavy-ball momentum
    /// with --momentum on the gradient preconditioned by every layer's Kronecker factors — a
    /// convolution's the KFC factors over its positions — decoded from the coded messages like
    /// the gradient; --kfac-*) [default: gd].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Momentum μ of nesterov and momentum, in [0, 1) [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Momentum schedule of nesterov and momentum: constant (--momentum) or nesterov-t
    /// ((t − 1)/(t + 2) at step t) [default: constant].
    #[arg(long, value_enum)]
    pub momentum_schedule: Option<MomentumSchedule>,
    /// Adam's β1, the decay of the gradient's moving average, in [0, 1) [default: 0.9].
    #[arg(long, value_name = "B1")]
    pub beta1: Option<f64>,
    /// Adam's β2, the decay of the squared gradient's moving average, in [0, 1) [default:
    /// 0.999].
    #[arg(long, value_name = "B2")]
    pub beta2: Option<f64>,
    /// Adam's ε, added to the root of the second moment, finite and > 0 [default: 1e-8].
    #[arg(long, value_name = "EPS")]
    pub eps: Option<f64>,
    /// K-FAC's running-average decay ξ of the factors (F ← ξF + (1 − ξ)F_new), in [0, 1)
    /// [default: 0.95].
    #[arg(long, value_name = "XI")]
    pub kfac_decay: Option<f64>,
    /// K-FAC's damping γ, finite and > 0: the direction divides by λ_G λ_Aᵀ + γ
    /// [default: 0.003].
    #[arg(long, value_name = "GAMMA")]
    pub kfac_damping: Option<f64>,
    /// K-FAC's KL clip κ: the step is scaled by min(1, √(κ / (lr² ⟨V, ∇⟩))); 0 turns it off
    /// [default: 0.001].
    #[arg(long, value_name = "KAPPA")]
    pub kfac_kl_clip: Option<f64>,
    /// K-FAC: every K iterations the workers' messages also carry their coded factor sums
    /// (upper triangles of A and G per layer), decoded with the gradient's weights
    /// [default: 1].
    #[arg(long, value_name = "K")]
    pub kfac_update_every: Option<u64>,
    /// K-FAC: eigendecompose the factors every K iterations (where --kfac-eig says)
    /// [default: 10].
    #[arg(long, value_name = "K")]
    pub kfac_inv_every: Option<u64>,
    /// K-FAC: where the eigendecompositions run: rank0, or workers (each worker gets the
    /// factors assigned to it, greedy by n³, in a round after the factors' round and sends the
    /// eigenbases back; what is not back by --deadline-ms keeps its previous eigenbasis,
    /// counted as /metrics/kfac_eig_fallbacks), or auto (the 2nd refresh on the workers, the
    /// 3rd at rank 0, then the faster; /metrics/kfac_eig_workers records where each ran).
    /// workers, auto: not with --chunks above 1, --messages support|auto or --reuse-stale
    /// [default: rank0].
    #[arg(long, value_name = "WHERE")]
    pub kfac_eig: Option<EigSite>,
    /// Learning-rate schedule, a factor of --lr at step t (counted from 0, warm-up included):
    /// constant; step:EVERY:FACTOR (times FACTOR every EVERY steps, FACTOR in (0, 1]);
    /// cosine:TOTAL (½(1 + cos(π·t/TOTAL)), 0 from step TOTAL on) [default: constant].
    #[arg(long, value_name = "SCHEDULE")]
    pub lr_schedule: Option<String>,
    /// Linear warm-up over the first K steps: step t < K uses (t + 1)/K of the scheduled rate
    /// [default: 0, none].
    #[arg(long, value_name = "K")]
    pub warmup: Option<u64>,
    /// Stop with status `diverged` (exit 1) when the training objective is not finite or exceeds
    /// this factor times its first value [default: 1e6].
    #[arg(long, value_name = "X")]
    pub divergence_factor: Option<f64>,
    /// Write OUT/ckpt.h5 every K iterations (0: never) [default: 0].
    #[arg(long, value_name = "K")]
    pub checkpoint_every: Option<u64>,
    /// Continue from OUT/ckpt.h5 (the config must match the one that wrote it).
    #[arg(long)]
    #[serde(default, skip_serializing)]
    pub resume: bool,
    /// Evaluate test loss, accuracy and (binary logistic) ROC AUC every K iterations and after
    /// the last (0: only after the last) [default: 10].
    #[arg(long, value_name = "K")]
    pub eval_every: Option<u64>,
    /// Print a progress line every K iterations [default: 10].
    #[arg(long, value_name = "K")]
    pub log_every: Option<u64>,
    /// Every K iterations also gather the uncoded partition gradients (outside the timed path)
    /// and record the true relative error ‖ĝ − g‖/‖g‖ of the decoded gradient (0: only the
    /// first iteration) [default: 0].
    #[arg(long, value_name = "K")]
    pub check_gradient_every: Option<u64>,
    /// Partial work: each worker processes its partitions in C chunks and sends each chunk's
    /// coded result as soon as it is done, so rank 0 can use the finished part of a slow
    /// worker's work [default: 1].
    #[arg(long, value_name = "C")]
    pub chunks: Option<usize>,
    /// Compress every coded message at its sender (rank 0 decompresses before decoding):
    /// none; qsgd:LEVELS (stochastic quantization to LEVELS levels, unbiased); topk:FRACTION
    /// (the largest FRACTION of the entries, as index/value pairs); sign (one bit per entry and
    /// the mean magnitude); lowrank:RANK (--model mlp: rank-RANK factors of every layer's
    /// weights, PowerSGD-style with a warm start per worker). Biased compressors (topk, sign,
    /// lowrank) want --error-feedback [default: none].
    #[arg(long, value_name = "SPEC")]
    pub compress: Option<Compressor>,
    /// Error feedback at each worker: send C(c + e), keep e ← c + e − C(c + e) per coded message;
    /// a message the worker skips leaves e for the next one it sends. Needs --compress.
    #[arg(long)]
    #[serde(default)]
    pub error_feedback: bool,
    /// Fold a coded gradient that arrives one iteration late into the current decode in place of
    /// its worker's missing fresh one (SAG-style stale reuse), rather than drop it; older ones
    /// are still dropped. A fresh message from the same worker replaces it. Recorded per
    /// iteration (`/metrics/stale`) and per worker (`/timing/stale_age`: 0 fresh, 1 stale).
    /// Needs `--chunks 1`; not on the first (validated) iteration.
    #[arg(long)]
    #[serde(default)]
    pub reuse_stale: bool,
    /// What coded results carry (issue 20 §2): dense (the full vector); support (for CSR data:
    /// only the columns a worker's rows touch, indices sent once at start-up, rank 0 scatters
    /// while decoding and sends each worker the parameters on its support only; exact as
    /// dense); auto (support for a worker whose support is at most half the columns).
    /// logistic and linear, --split 1, without --compress, --batch or --reuse-stale
    /// [default: dense].
    #[arg(long, value_enum)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Messages>,
    /// Online adaptation (docs/tuning.md): every --adapt-every iterations rank 0 refits each
    /// worker's compute and delay distribution from the last window and switches s among the
    /// codes up to --adapt-max-s by simulated time per iteration (only for a predicted gain
    /// above 10 % in --adapt-confirm windows in a row). Workers load the partitions of the
    /// starting s at start-up and those of a larger s in the background when rank 0 asks; a
    /// switch to a larger s is taken once the workers confirm them, and every iteration
    /// decodes exactly. cyclic-repetition and cyclic-mds with --on-deadline
    /// wait and --chunks 1; not with --batch, --compress, --messages support, --reuse-stale,
    /// --optimizer kfac, --decode-tree or --reference. Recorded: the s of each iteration (/metrics/code_s)
    /// and every switch (/adapt).
    #[arg(long)]
    #[serde(default)]
    pub adapt: bool,
    /// Iterations between two decisions of --adapt (the window refitted) [default: 20].
    #[arg(long, value_name = "K")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapt_every: Option<u64>,
    /// Consecutive decisions of --adapt that must favour a switch (all towards a larger s, or
    /// all towards a smaller s) before it switches: one noisy window does not flap s; 1 switches
    /// on one window. A switch away from an s that cannot finish (a silent worker) is at once
    /// [default: 2].
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapt_confirm: Option<usize>,
    /// Largest s --adapt may switch to (below the number of workers): workers read the
    /// partitions of a larger s than the starting one in the background when rank 0 asks,
    /// up to this s, and the memory check counts this s's partitions
    /// [default: --stragglers + 1].
    #[arg(long, value_name = "S")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapt_max_s: Option<usize>,
    /// With --adapt: at each decision also refit the deadline to 1.5 × the 95th percentile
    /// of the window's (n − s)-th arrival time, capped by --deadline-ms; each change is
    /// recorded in /adapt and per iteration in /metrics/adapt_deadline_ms. Decoding stays
    /// exact (--on-deadline wait).
    #[arg(long)]
    #[serde(default)]
    pub adapt_deadline: bool,
    /// Tree decode (issue 20 §4): the workers form groups of G consecutive ranks; the first of
    /// each (its leader) gathers its members' coded results, decodes its group's block sum and
    /// forwards ONE combined result, so rank 0 receives n/G results instead of n. The code is
    /// two-level, --code with -s S at both levels (over the n/G groups, and inside each
    /// group): exact whenever at most S groups are lost (a group is lost when more than S of
    /// its members miss the round, or its leader straggles), so under any S stragglers. A
    /// leader silent for longer than --deadline-ms has its members send to rank 0 until it
    /// answers again. G at least 2, dividing n, with G > S and n/G > S; --code uncoded, frc,
    /// cyclic-repetition or cyclic-mds; not with --chunks above 1, --messages support|auto,
    /// --reuse-stale, --optimizer kfac or --adapt. With --compress the leaders compress the
    /// combination they forward (members send to them uncompressed).
    #[arg(long, value_name = "G")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_tree: Option<usize>,
    /// Run the serial reference path on one process instead of the MPI job.
    #[arg(long)]
    #[serde(default)]
    pub reference: bool,
}

/// Every setting of a training run, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunConfig {
    pub data: PathBuf,
    pub model: ModelKind,
    /// Hidden layer widths of an MLP, the CNN's hidden dense width (empty for the GLMs);
    /// written as "256,128".
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "widths")]
    pub hidden: Vec<usize>,
    /// The CNN's filters per convolution (empty for the other models); written as "6,16".
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "widths")]
    pub conv_filters: Vec<usize>,
    /// The code (`reference` for the serial path, which uses none).
    pub code: TrainCode,
    pub stragglers: usize,
    #[serde(flatten)]
    pub job: JobConfig,
    pub on_deadline: OnDeadline,
    /// Iterations to run (with --epochs: 0 until [`RunConfig::for_data`] knows the data).
    pub iterations: u64,
    /// Epochs to run instead of iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Rows of every partition per iteration (None: the whole partitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Iterations per epoch, set by [`RunConfig::for_data`] (0 before).
    #[serde(skip)]
    pub per_epoch: u64,
    /// Partitions k of the data, set by [`RunConfig::for_data`] (0 before).
    #[serde(skip)]
    pub partitions: usize,
    pub lr: f64,
    pub l2: f64,
    /// Whether the model has intercepts (`--no-intercept` clears it).
    #[serde(skip)]
    pub intercept: bool,
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub momentum_schedule: MomentumSchedule,
    /// Adam's β1, β2 and ε (set exactly when the optimizer is adam).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// K-FAC's settings (set exactly when the optimizer is kfac).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kfac_decay: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kfac_damping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kfac_kl_clip: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kfac_update_every: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kfac_inv_every: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kfac_eig: Option<EigSite>,
    /// The learning-rate schedule (written only when not constant).
    #[serde(default, skip_serializing_if = "is_constant")]
    pub lr_schedule: LrSchedule,
    /// Warm-up steps (written only when set).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup: u64,
    pub divergence_factor: f64,
    pub checkpoint_every: u64,
    pub eval_every: u64,
    pub log_every: u64,
    /// Chunks per worker and iteration (partial work); 1 = one message per iteration.
    pub chunks: usize,
    /// Check the decoded gradient against the exact one every K iterations (0: first only).
    pub check_gradient_every: u64,
    /// Degree d of approximate codes (None: the code's default, s + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degree: Option<usize>,
    /// Decoder of approximate codes (None: the code's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder: Option<DecoderKind>,
    /// Straggle probability p of the stochastic code (None: s / n).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub straggle_prob: Option<f64>,
    /// Pieces m of the comm-efficient code (None: its default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<usize>,
    /// Per-worker speeds of the hetero code (None: all equal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_speeds: Option<Speeds>,
    /// Fold gradients one iteration late into the current decode (`--reuse-stale`).
    pub reuse_stale: bool,
    /// What coded results carry (`--messages`).
    #[serde(default, skip_serializing_if = "is_dense")]
    pub messages: Messages,
    /// Compressor of the coded messages (`--compress`).
    #[serde(default, skip_serializing_if = "Compressor::is_none")]
    pub compress: Compressor,
    /// Group size G of the tree decode (`--decode-tree`; None: every worker sends to rank 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_tree: Option<usize>,
    /// Error feedback on the compressed messages (`--error-feedback`).
    #[serde(default)]
    pub error_feedback: bool,
    /// `--adapt`: iterations between decisions (0: no adaptation).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub adapt_every: u64,
    /// `--adapt`: consecutive decisions that must favour a switch (0 without --adapt).
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub adapt_confirm: usize,
    /// `--adapt`: the largest s (the partitions a worker may hold); None without --adapt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapt_max_s: Option<usize>,
    /// `--adapt-deadline`: refit the deadline at each decision of --adapt.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adapt_deadline: bool,
    /// Continue from the checkpoint (operational: never written back).
    #[serde(skip)]
    pub resume: bool,
    pub reference: bool,
    /// `no-intercept` as written back (the negation of `intercept`).
    no_intercept: bool,
}

impl RunConfig {
    /// Merge `--config` and flags, apply defaults, and check everything for an MPI world of
    /// `world` ranks (ignored by the serial reference).
    pub fn from_args(args: &TrainArgs, world: usize) -> Result<RunConfig, ConfigError> {
        let file = match &args.job.config {
            Some(path) => read_settings::<TrainArgs>(path)?,
            None => TrainArgs::default(),
        };
        macro_rules! pick {
            ($f:ident, $default:expr) => {
                args.$f.clone().or(file.$f.clone()).unwrap_or($default)
            };
        }
        let reference = args.reference || file.reference;
        let batch = args.batch.or(file.batch);
        // The serial reference with minibatches draws from the partitions of `--workers N`.
        let workers = match (reference, batch) {
            (false, _) => Some(world.saturating_sub(1)),
            (true, None) => None,
            (true, Some(b)) => Some(args.job.workers.or(file.job.workers).ok_or_else(|| {
                invalid(
                    "batch",
                    b,
                    "with --reference needs --workers N: the reference draws the minibatches of the partitions of the N-worker job it stands for",
                )
            })?),
        };
        if !reference && world < 2 {
            return Err(ConfigError::WorldTooSmall {
                job: "train",
                world,
                hint: ", or pass --reference for the serial path",
            });
        }
        let (iterations, epochs) = run_length(args, &file)?;
        let optimizer = pick!(optimizer, OptimizerKind::Gd);
        let [beta1, beta2, eps] = adam_settings(optimizer, args, &file)?;
        let kfac = kfac_settings(optimizer, args, &file)?;
        let kfac_eig = match (kfac, args.kfac_eig.or(file.kfac_eig)) {
            (Some(_), site) => Some(site.unwrap_or_default()),
            (None, Some(site)) => {
                return Err(invalid(
                    "kfac-eig",
                    site.name(),
                    format!(
                        "applies to --optimizer kfac (the optimizer is {})",
                        optimizer.name()
                    ),
                ))
            }
            (None, None) => None,
        };
        let lr_schedule = match args.lr_schedule.as_ref().or(file.lr_schedule.as_ref()) {
            None => LrSchedule::Constant,
            Some(text) => text
                .parse()
                .map_err(|e: BadSchedule| invalid("lr-schedule", format!("'{text}'"), e.0))?,
        };
        let code = pick!(code, TrainCode::Gradient(CodeKind::CyclicMds));
        let default_s = usize::from(code != TrainCode::Gradient(CodeKind::Uncoded));
        let no_intercept = args.no_intercept || file.no_intercept;
        let model = pick!(model, ModelKind::Logistic);
        let hidden = hidden_layers(model, args.hidden.as_ref().or(file.hidden.as_ref()))?;
        let conv_filters = conv_filters(
            model,
            args.conv_filters.as_ref().or(file.conv_filters.as_ref()),
        )?;
        let cfg = RunConfig {
            data: args
                .data
                .clone()
                .or(file.data.clone())
                .ok_or(ConfigError::Missing("data"))?,
            model,
            hidden,
            conv_filters,
            code,
            stragglers: if workers.is_none() {
                0
            } else {
                pick!(stragglers, default_s)
            },
            job: JobConfig::from_args(&args.job, &file.job, "results/run", workers)?,
            on_deadline: pick!(on_deadline, OnDeadline::Wait),
            iterations,
            epochs,
            batch,
            per_epoch: 0,
            partitions: 0,
            lr: pick!(lr, 0.5),
            l2: pick!(l2, 1e-4),
            intercept: !no_intercept,
            optimizer,
            momentum: pick!(momentum, 0.9),
            momentum_schedule: pick!(momentum_schedule, MomentumSchedule::Constant),
            beta1,
            beta2,
            eps,
            kfac_decay: kfac.map(|k| k.decay),
            kfac_damping: kfac.map(|k| k.damping),
            kfac_kl_clip: kfac.map(|k| k.kl_clip),
            kfac_update_every: kfac.map(|k| k.update_every),
            kfac_inv_every: kfac.map(|k| k.inv_every),
            kfac_eig,
            lr_schedule,
            warmup: pick!(warmup, 0),
            divergence_factor: pick!(divergence_factor, 1e6),
            checkpoint_every: pick!(checkpoint_every, 0),
            eval_every: pick!(eval_every, 10),
            log_every: pick!(log_every, 10),
            chunks: pick!(chunks, 1),
            check_gradient_every: pick!(check_gradient_every, 0),
            degree: args.degree.or(file.degree),
            decoder: args.decoder.or(file.decoder),
            straggle_prob: args.straggle_prob.or(file.straggle_prob),
            split: args.split.or(file.split),
            worker_speeds: args.worker_speeds.clone().or(file.worker_speeds.clone()),
            reuse_stale: args.reuse_stale || file.reuse_stale,
            compress: args.compress.or(file.compress).unwrap_or_default(),
            error_feedback: args.error_feedback || file.error_feedback,
            messages: pick!(messages, Messages::Dense),
            adapt_every: 0,
            adapt_confirm: 0,
            adapt_max_s: None,
            adapt_deadline: false,
            decode_tree: args.decode_tree.or(file.decode_tree),
            resume: args.resume || file.resume,
            reference,
            no_intercept,
        };
        let cfg = cfg.with_adapt(args, &file)?;
        cfg.check()?;
        Ok(cfg)
    }

    /// `--adapt`, `--adapt-every`, `--adapt-confirm`, `--adapt-max-s` (from the flags or the file) into `self`.
    fn with_adapt(mut self, args: &TrainArgs, file: &TrainArgs) -> Result<Self, ConfigError> {
        let every = args.adapt_every.or(file.adapt_every);
        let confirm = args.adapt_confirm.or(file.adapt_confirm);
        let max_s = args.adapt_max_s.or(file.adapt_max_s);
        let deadline = args.adapt_deadline || file.adapt_deadline;
        if !(args.adapt || file.adapt) {
            if deadline {
                return Err(invalid(
                    "adapt-deadline",
                    "true",
                    "applies only with --adapt",
                ));
            }
            if let Some((name, v)) = every
                .map(|e| ("adapt-every", e.to_string()))
                .or(confirm.map(|c| ("adapt-confirm", c.to_string())))
                .or(max_s.map(|m| ("adapt-max-s", m.to_string())))
            {
                return Err(invalid(name, v, "applies only with --adapt"));
            }
            return Ok(self);
        }
        self.adapt_every = every.unwrap_or(20);
        if self.adapt_every == 0 {
            return Err(invalid("adapt-every", 0, "must be at least 1"));
        }
        self.adapt_confirm = confirm.unwrap_or(2);
        if self.adapt_confirm == 0 {
            return Err(invalid("adapt-confirm", 0, "must be at least 1"));
        }
        self.adapt_max_s = Some(max_s.unwrap_or(self.stragglers + 1));
        self.adapt_deadline = deadline;
        self.check_adapt()?;
        Ok(self)
    }

    /// Whether `--adapt` is on.
    pub fn adapts(&self) -> bool {
        self.adapt_every > 0
    }

    /// `--adapt` against the codes and settings that cannot switch s.
    fn check_adapt(&self) -> Result<(), ConfigError> {
        let max_s = self.adapt_max_s.unwrap_or(0);
        let conflict = if self.reference {
            Some("--reference (the serial path has no workers to adapt to)".to_string())
        } else if !matches!(
            self.code,
            TrainCode::Gradient(CodeKind::CyclicRepetition | CodeKind::CyclicMds)
        ) {
            Some(format!(
                "--code {} (only the cyclic codes, whose partitions for a smaller s are a subset of those for a larger one, can switch s: cyclic-repetition, cyclic-mds)",
                self.code
            ))
        } else if self.on_deadline != OnDeadline::Wait {
            Some("--on-deadline best-effort (adaptation keeps every iteration exact)".into())
        } else if self.chunks > 1 {
            Some(format!("--chunks {}", self.chunks))
        } else if self.batch.is_some() {
            Some("--batch".into())
        } else if !self.compress.is_none() {
            Some("--compress".into())
        } else if self.messages != Messages::Dense {
            Some("--messages support|auto".into())
        } else if self.reuse_stale {
            Some("--reuse-stale".into())
        } else if self.kfac().is_some() {
            Some("--optimizer kfac".into())
        } else {
            self.decode_tree
                .map(|g| format!("--decode-tree {g} (the two-level code's s is fixed)"))
        };
        if let Some(what) = conflict {
            return Err(invalid(
                "adapt",
                "true",
                format!("cannot switch s with {what}; drop --adapt or that setting"),
            ));
        }
        let n = self.workers();
        if max_s >= n {
            return Err(invalid(
                "adapt-max-s",
                max_s,
                format!("must be smaller than the number of workers n = {n}"),
            ));
        }
        if self.stragglers > max_s {
            return Err(invalid(
                "adapt-max-s",
                max_s,
                format!(
                    "must be at least --stragglers {} (the s the run starts with)",
                    self.stragglers
                ),
            ));
        }
        Ok(())
    }

    /// The config of a simulated run (`gradcode simulate`): the settings and checks of `train`
    /// for n simulated workers, n from `--workers`, the config file or `default_workers` (the
    /// replayed trace's). `--data` may be absent (a timing-only simulation: the path is left
    /// empty and not written back); `--reference` and `--resume` are refused.
    pub fn for_simulation(
        args: &TrainArgs,
        default_workers: Option<usize>,
    ) -> Result<RunConfig, ConfigError> {
        let file = match &args.job.config {
            Some(path) => read_settings::<TrainArgs>(path)?,
            None => TrainArgs::default(),
        };
        if args.reference || file.reference {
            return Err(invalid(
                "reference",
                "true",
                "a simulation runs the MPI job's protocol; drop --reference",
            ));
        }
        if args.resume || file.resume {
            return Err(invalid(
                "resume",
                "true",
                "a simulation has no checkpoint to resume from; drop --resume",
            ));
        }
        let n = args
            .job
            .workers
            .or(file.job.workers)
            .or(default_workers)
            .ok_or(ConfigError::Missing("workers"))?;
        if n == 0 {
            return Err(invalid("workers", 0, "must be at least 1"));
        }
        let mut a = args.clone();
        if a.data.is_none() && file.data.is_none() {
            a.data = Some(PathBuf::new());
        }
        RunConfig::from_args(&a, n + 1)
    }

    /// Whether a dataset was given (a timing-only simulation has none).
    pub fn has_data(&self) -> bool {
        !self.data.as_os_str().is_empty()
    }

    fn check(&self) -> Result<(), ConfigError> {
        let finite_pos = |name, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(name, v, "must be a finite number > 0"))
            }
        };
        finite_pos("deadline-ms", self.job.deadline_ms)?;
        finite_pos("lr", self.lr)?;
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(invalid("l2", self.l2, "must be a finite number >= 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(invalid("momentum", self.momentum, "must be in [0, 1)"));
        }
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if let Some(b) = beta.filter(|b| !(0.0..1.0).contains(b)) {
                return Err(invalid(name, b, "must be in [0, 1)"));
            }
        }
        if let Some(e) = self.eps.filter(|e| !(e.is_finite() && *e > 0.0)) {
            return Err(invalid("eps", e, "must be a finite number > 0"));
        }
        self.check_kfac()?;
        if !(self.divergence_factor.is_finite() && self.divergence_factor > 1.0) {
            return Err(invalid(
                "divergence-factor",
                self.divergence_factor,
                "must be a finite number > 1",
            ));
        }
        if self.iterations == 0 && self.epochs.is_none() {
            return Err(invalid("iterations", 0, "must be at least 1"));
        }
        if self.epochs == Some(0) {
            return Err(invalid("epochs", 0, "must be at least 1"));
        }
        if self.batch == Some(0) {
            return Err(invalid(
                "batch",
                0,
                "must be at least 1 (rows of every partition per iteration)",
            ));
        }
        if !(1..=64).contains(&self.chunks) {
            return Err(invalid("chunks", self.chunks, "must be between 1 and 64"));
        }
        if self.reuse_stale && self.chunks > 1 {
            return Err(invalid(
                "reuse-stale",
                "true",
                format!(
                    "works with one message per worker and iteration; drop it or use --chunks 1 (given --chunks {})",
                    self.chunks
                ),
            ));
        }
        if self.log_every == 0 {
            return Err(invalid("log-every", 0, "must be at least 1"));
        }
        if matches!(self.model, ModelKind::Mlp | ModelKind::Cnn) && !self.intercept {
            return Err(invalid(
                "no-intercept",
                "true",
                format!(
                    "applies to the linear models (logistic, linear, softmax); an {} always trains its biases",
                    self.model.name()
                ),
            ));
        }
        if !self.reference || self.batch.is_some() {
            self.check_code()?;
        }
        Ok(())
    }

    /// `--optimizer kfac`: its settings, and the models and messages it works with.
    fn check_kfac(&self) -> Result<(), ConfigError> {
        let Some(k) = self.kfac() else {
            return Ok(());
        };
        if !matches!(self.model, ModelKind::Mlp | ModelKind::Cnn) {
            return Err(invalid(
                "optimizer",
                "kfac",
                format!(
                    "preconditions the layers of --model mlp or cnn (the model is {}, which has no layers); use gd, momentum, nesterov or adam",
                    self.model.name(),
                ),
            ));
        }
        if !(0.0..1.0).contains(&k.decay) {
            return Err(invalid("kfac-decay", k.decay, "must be in [0, 1)"));
        }
        if !(k.damping.is_finite() && k.damping > 0.0) {
            return Err(invalid(
                "kfac-damping",
                k.damping,
                "must be a finite number > 0",
            ));
        }
        if !(k.kl_clip.is_finite() && k.kl_clip >= 0.0) {
            return Err(invalid(
                "kfac-kl-clip",
                k.kl_clip,
                "must be a finite number >= 0 (0: no clipping)",
            ));
        }
        for (name, v) in [
            ("kfac-update-every", k.update_every),
            ("kfac-inv-every", k.inv_every),
        ] {
            if v == 0 {
                return Err(invalid(name, 0, "must be at least 1"));
            }
        }
        if let Some(site) = self.kfac_eig.filter(EigSite::spreads) {
            let conflict = if self.chunks > 1 {
                Some("--chunks above 1")
            } else if self.messages != Messages::Dense {
                Some("--messages support|auto")
            } else if self.reuse_stale {
                Some("--reuse-stale")
            } else {
                None
            };
            if let Some(what) = conflict {
                return Err(invalid(
                    "kfac-eig",
                    site.name(),
                    format!(
                        "a worker's eigen round is one whole message: not available with {what}"
                    ),
                ));
            }
        }
        let conflict = if !self.compress.is_none() {
            Some(format!("--compress {}", self.compress))
        } else if self.split.is_some_and(|m| m > 1) {
            Some("--split above 1".into())
        } else {
            None
        };
        match conflict {
            Some(what) => Err(invalid(
                "optimizer",
                "kfac",
                format!("the coded factors travel uncompressed in whole messages: not available with {what}"),
            )),
            None => Ok(()),
        }
    }

    /// K-FAC's settings when the optimizer is kfac.
    pub fn kfac(&self) -> Option<KfacSpec> {
        Some(KfacSpec {
            decay: self.kfac_decay?,
            damping: self.kfac_damping?,
            kl_clip: self.kfac_kl_clip?,
            update_every: self.kfac_update_every?,
            inv_every: self.kfac_inv_every?,
        })
    }

    /// Checks of the code against the world and the other settings.
    fn check_code(&self) -> Result<(), ConfigError> {
        if self.stragglers >= self.workers() {
            return Err(invalid(
                "stragglers",
                self.stragglers,
                format!(
                    "must be smaller than the number of workers n = {} (world size {} = 1 coordinator + {} workers)",
                    self.workers(),
                    self.workers() + 1,
                    self.workers()
                ),
            ));
        }
        if let TrainCode::MatVec(_) = self.code {
            let refuse = |name: &'static str, value: String| {
                Err(invalid(
                    name,
                    value,
                    "is not available with the mds-* codes (coded training through mat-vecs decodes each mat-vec exactly from any N − s workers, one message per worker)",
                ))
            };
            if !matches!(self.model, ModelKind::Linear | ModelKind::Logistic) {
                return Err(invalid(
                    "model",
                    self.model.name(),
                    "coded training through mat-vecs (mds-* codes) supports linear and logistic",
                ));
            }
            if self.chunks > 1 {
                return refuse("chunks", self.chunks.to_string());
            }
            if let Some(b) = self.batch {
                return refuse("batch", b.to_string());
            }
            if self.reuse_stale {
                return refuse("reuse-stale", "true".into());
            }
            if self.on_deadline == OnDeadline::BestEffort {
                return refuse("on-deadline", "best-effort".into());
            }
            if self.degree.is_some() || self.decoder.is_some() || self.straggle_prob.is_some() {
                return refuse("degree/decoder/straggle-prob", "set".into());
            }
            if let Some(m) = self.split {
                return refuse("split", m.to_string());
            }
            if !self.compress.is_none() {
                return refuse("compress", self.compress.to_string());
            }
        }
        self.check_compression()?;
        self.check_messages()?;
        self.check_tree()
    }

    /// `--decode-tree G` against the workers, the code and the settings it does not combine
    /// with.
    fn check_tree(&self) -> Result<(), ConfigError> {
        let Some(g) = self.decode_tree else {
            return Ok(());
        };
        if self.reference {
            return Ok(());
        }
        let refuse = |reason: String| Err(invalid("decode-tree", g, reason));
        let (n, s) = (self.workers(), self.stragglers);
        if g < 2 || g > n || n % g != 0 {
            return refuse(format!(
                "must be at least 2, at most the number of workers n = {n}, and divide it"
            ));
        }
        if g > crate::comm::group::MAX_GROUP {
            return refuse(format!(
                "groups of at most {} workers",
                crate::comm::group::MAX_GROUP
            ));
        }
        let exact = [
            CodeKind::Uncoded,
            CodeKind::Frc,
            CodeKind::CyclicRepetition,
            CodeKind::CyclicMds,
        ];
        if !matches!(self.code, TrainCode::Gradient(k) if exact.contains(&k)) {
            return refuse(format!(
                "needs an exact code with whole messages (uncoded, frc, cyclic-repetition or cyclic-mds), not --code {}",
                self.code.name()
            ));
        }
        if s >= g || s >= n / g {
            return refuse(format!(
                "with -s {s} needs groups of more than {s} workers and more than {s} groups (both levels tolerate s); n = {n} has {} groups of {g}",
                n / g
            ));
        }
        let conflict = if self.chunks > 1 {
            Some("--chunks above 1")
        } else if self.messages != Messages::Dense {
            Some("--messages support|auto")
        } else if self.reuse_stale {
            Some("--reuse-stale")
        } else if self.optimizer == OptimizerKind::Kfac {
            Some("--optimizer kfac")
        } else {
            None
        };
        match conflict {
            Some(what) => refuse(format!("the tree decode is not available with {what}")),
            None => Ok(()),
        }
    }

    /// `--messages support|auto` against the settings it does not combine with.
    fn check_messages(&self) -> Result<(), ConfigError> {
        if self.messages == Messages::Dense {
            return Ok(());
        }
        let conflict = if !matches!(self.model, ModelKind::Logistic | ModelKind::Linear) {
            Some(format!("--model {}", self.model.name()))
        } else if self.split.is_some_and(|m| m > 1) {
            Some("--split above 1".into())
        } else if !self.compress.is_none() {
            Some("--compress".into())
        } else if self.batch.is_some() {
            Some("--batch".into())
        } else if self.reuse_stale {
            Some("--reuse-stale".into())
        } else if matches!(self.code, TrainCode::MatVec(_)) {
            Some("the mds-* codes".into())
        } else {
            None
        };
        match conflict {
            Some(what) => Err(invalid(
                "messages",
                format!("{:?}", self.messages).to_lowercase(),
                format!(
                    "sparse-support messages are not available with {what}; use --messages dense"
                ),
            )),
            None => Ok(()),
        }
    }

    /// `--compress` and `--error-feedback` against each other and the model.
    fn check_compression(&self) -> Result<(), ConfigError> {
        if self.error_feedback && self.compress.is_none() {
            return Err(invalid(
                "error-feedback",
                "true",
                "needs a compressor: add --compress qsgd:LEVELS, topk:FRACTION or sign",
            ));
        }
        if let Some(omega) = self.compress.variance_bound().filter(|&w| w >= 1.0) {
            if self.error_feedback {
                return Err(invalid(
                    "error-feedback",
                    "true",
                    format!(
                        "feeding back the error of --compress {} is unstable: its error bound E‖C(x) − x‖² ≤ ω‖x‖² has ω = min(B/s², √B/s) = {omega:.3} ≥ 1, so the residual grows; use more levels or smaller buckets (ω < 1), or no error feedback (QSGD is unbiased without it)",
                        self.compress
                    ),
                ));
            }
        }
        if let Compressor::LowRank { .. } = self.compress {
            if !self.model.has_matrix_parameters() {
                return Err(invalid(
                    "compress",
                    self.compress,
                    format!(
                        "--compress lowrank on a GLM ({}): low-rank compression factors the matrix parameters of neural-network models, and this model has one parameter vector; use qsgd:LEVELS, topk:FRACTION or sign",
                        self.model.name()
                    ),
                ));
            }
            if self.split.is_some_and(|m| m > 1) {
                return Err(invalid(
                    "compress",
                    self.compress,
                    "factors the model's weight matrices, which a piece of a split code (--split > 1) does not hold whole; use --split 1 or another compressor",
                ));
            }
            let layers = match self.model {
                ModelKind::Cnn => 4,
                _ => self.hidden.len() + 1,
            };
            if layers > crate::compress::MAX_MATRICES {
                return Err(invalid(
                    "compress",
                    self.compress,
                    format!(
                        "factors at most {} weight matrices and this network has {layers}",
                        crate::compress::MAX_MATRICES
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The optimizer's settings.
    pub fn optimizer_spec(&self) -> OptimizerSpec {
        let d = AdamParams::default();
        OptimizerSpec {
            kind: self.optimizer,
            lr: self.lr,
            momentum: self.momentum,
            schedule: self.momentum_schedule,
            adam: AdamParams {
                beta1: self.beta1.unwrap_or(d.beta1),
                beta2: self.beta2.unwrap_or(d.beta2),
                eps: self.eps.unwrap_or(d.eps),
            },
            lr_schedule: self.lr_schedule,
            warmup: self.warmup,
            kfac: self.kfac().unwrap_or_default(),
        }
    }

    /// Workers n (for the serial reference: the `--workers` its minibatches follow, 0 without
    /// --batch).
    pub fn workers(&self) -> usize {
        self.job.workers
    }

    /// This config resolved against the data: `rows` training rows in `k` partitions. Checks
    /// --batch and --chunks against the partitions, and sets the iterations per epoch and, with
    /// --epochs, the iterations.
    pub fn for_data(&self, rows: usize, k: usize) -> Result<RunConfig, ConfigError> {
        let mut c = self.clone();
        c.partitions = k;
        let smallest = rows / k.max(1);
        c.per_epoch = match self.batch {
            None => 1,
            Some(b) if b > smallest => {
                return Err(invalid(
                    "batch",
                    b,
                    format!(
                        "is larger than a partition: {rows} training rows in {k} partitions leave {smallest} in the smallest; use --batch {smallest} or less"
                    ),
                ))
            }
            Some(b) if self.chunks > b => {
                return Err(invalid(
                    "chunks",
                    self.chunks,
                    format!(
                        "with --batch {b} the chunks share the {b} rows every partition gives an iteration; use --chunks {b} or less"
                    ),
                ))
            }
            Some(b) => rows.div_ceil(k * b) as u64,
        };
        if let Some(e) = self.epochs {
            c.iterations = e
                .checked_mul(c.per_epoch)
                .ok_or_else(|| invalid("epochs", e, "makes more iterations than fit in 64 bits"))?;
        }
        Ok(c)
    }

    /// Rows the loss sum of one step is over: k·B with --batch, all `rows` without (after
    /// [`RunConfig::for_data`]).
    pub fn step_rows(&self, rows: usize) -> usize {
        self.batch.map_or(rows, |b| b * self.partitions)
    }

    /// Options of the code (degree, decoder, straggle probability).
    pub fn code_options(&self) -> CodeOptions {
        CodeOptions {
            degree: self.degree,
            decoder: self.decoder,
            straggle_prob: self.straggle_prob,
            split: self.split,
            speeds: self.worker_speeds.as_ref().map(|v| v.0.clone()),
        }
    }

    /// The code's name as recorded: `reference` for the serial path.
    pub fn code_name(&self) -> String {
        if self.reference {
            "reference".into()
        } else {
            self.code.name().into()
        }
    }

    /// Keys that mean nothing to the serial reference (it has no workers, code or deadline).
    const NOT_REFERENCE: &'static [&'static str] = &[
        "code",
        "stragglers",
        "workers",
        "deadline-ms",
        "max-wait-ms",
        "straggler-model",
        "on-deadline",
        "chunks",
        "check-gradient-every",
        "reuse-stale",
        "degree",
        "decoder",
        "straggle-prob",
        "split",
        "worker-speeds",
        "compress",
        "error-feedback",
        "messages",
        "decode-tree",
    ];

    /// Keys of [`Self::NOT_REFERENCE`] that the serial reference with --batch keeps: they make
    /// the partitions its minibatches follow.
    const PARTITION_KEYS: &'static [&'static str] = &[
        "code",
        "stragglers",
        "workers",
        "degree",
        "decoder",
        "straggle-prob",
        "worker-speeds",
    ];

    /// The effective settings in the keys of the flags (the serial reference's own: without the
    /// settings it does not use); with --epochs, without the iterations they make.
    pub fn settings(&self) -> toml::Table {
        let mut t = match toml::Value::try_from(self) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        };
        if self.reference {
            let keep = if self.batch.is_some() {
                Self::PARTITION_KEYS
            } else {
                &[]
            };
            t.retain(|k, _| !Self::NOT_REFERENCE.contains(&k) || keep.contains(&k));
        }
        if self.epochs.is_some() {
            t.remove("iterations");
        }
        if !self.has_data() {
            t.remove("data");
        }
        t
    }

    /// The effective config as TOML, in the keys of the flags: `--config` of this file re-runs
    /// the job.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(&self.settings())
            .unwrap_or_else(|e| format!("# could not serialize config: {e}\n"));
        format!(
            "# gradcode {} effective config: `gradcode train --config THIS_FILE` re-runs it.\n{body}",
            crate::VERSION
        )
    }

    /// SHA-256 over the settings that shape the trajectory (not iterations, output or logging),
    /// so that a checkpoint refuses to resume under another configuration.
    pub fn trajectory_hash(&self) -> String {
        let j = &self.job;
        let key = format!(
            "data={}\nmodel={}\ncode={}\ns={}\nn={}\ndeadline_ms={:?}\non_deadline={:?}\nlr={:?}\nl2={:?}\noptimizer={:?}\nmomentum={:?}\nstragglers={}\nseed={}\nchunks={}\n",
            self.data.display(),
            self.model.name(),
            self.code.name(),
            self.stragglers,
            j.workers,
            j.deadline_ms,
            self.on_deadline,
            self.lr,
            self.l2,
            self.optimizer,
            self.momentum,
            j.straggler_model,
            j.seed,
            self.chunks
        ) + &format!("degree={:?}\ndecoder={:?}\nstraggle_prob={:?}\n", self.degree, self.decoder, self.straggle_prob)
            // Only when set, so the hashes of runs without them are unchanged.
            + &self.split.map_or(String::new(), |m| format!("split={m}\n"))
            + &self.worker_speeds.as_ref().map_or(String::new(), |v| format!("worker_speeds={v}\n"))
            + if self.reuse_stale { "reuse_stale=true\n" } else { "" }
            + &(if self.compress.is_none() { String::new() } else { format!("compress={}\n", self.compress) })
            + if self.error_feedback { "error_feedback=true\n" } else { "" }
            + match self.messages {
                Messages::Dense => "",
                Messages::Support => "messages=support\n",
                Messages::Auto => "messages=auto\n",
            }
            + &self.decode_tree.map_or(String::new(), |g| format!("decode_tree={g}\n"))
            + if self.intercept { "" } else { "no_intercept=true\n" }
            + &self.widths_key()
            + &self.batch.map_or(String::new(), |b| format!("batch={b}\n"))
            + &match (self.beta1, self.beta2, self.eps) {
                (Some(b1), Some(b2), Some(e)) => format!("beta1={b1:?}\nbeta2={b2:?}\neps={e:?}\n"),
                _ => String::new(),
            }
            + &match self.lr_schedule {
                LrSchedule::Constant => String::new(),
                s => format!("lr_schedule={s}\n"),
            }
            + &if self.warmup > 0 { format!("warmup={}\n", self.warmup) } else { String::new() }
            + &self.kfac().map_or(String::new(), |k| format!(
                "kfac_decay={:?}\nkfac_damping={:?}\nkfac_kl_clip={:?}\nkfac_update_every={}\nkfac_inv_every={}\n",
                k.decay, k.damping, k.kl_clip, k.update_every, k.inv_every
            ))
            // Only when not the default: the trajectories of runs before the flag stay theirs.
            + &self.kfac_eig.filter(|e| *e != EigSite::Rank0).map_or(String::new(), |e| format!("kfac_eig={}\n", e.name()))
            + match self.momentum_schedule {
                MomentumSchedule::Constant => "",
                MomentumSchedule::NesterovT => "momentum_schedule=nesterov-t\n",
            };
        let digest = Sha256::digest(key.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl RunConfig {
    /// The network's widths in the trajectory hash: an MLP's hidden widths; a CNN's only when
    /// not LeNet's (the hashes of CNN runs before the flags stay theirs).
    fn widths_key(&self) -> String {
        let lenet = self.hidden == [crate::model::Cnn::DEFAULT_HIDDEN]
            && self.conv_filters == crate::model::Cnn::DEFAULT_FILTERS;
        if self.hidden.is_empty() || (self.model == ModelKind::Cnn && lenet) {
            return String::new();
        }
        let mut key = format!("hidden={}\n", widths::text(&self.hidden));
        if !self.conv_filters.is_empty() {
            key += &format!("conv_filters={}\n", widths::text(&self.conv_filters));
        }
        key
    }
}

fn is_constant(s: &LrSchedule) -> bool {
    *s == LrSchedule::Constant
}

fn is_false(v: &bool) -> bool {
    !v
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

/// Adam's β1, β2, ε: defaults for adam; refused, naming the flag, for another optimizer.
fn adam_settings(
    optimizer: OptimizerKind,
    args: &TrainArgs,
    file: &TrainArgs,
) -> Result<[Option<f64>; 3], ConfigError> {
    let d = AdamParams::default();
    let given = [
        ("beta1", args.beta1.or(file.beta1), d.beta1),
        ("beta2", args.beta2.or(file.beta2), d.beta2),
        ("eps", args.eps.or(file.eps), d.eps),
    ];
    if optimizer != OptimizerKind::Adam {
        if let Some((name, Some(v), _)) = given.iter().find(|g| g.1.is_some()) {
            return Err(invalid(
                name,
                v,
                format!(
                    "applies to --optimizer adam (the optimizer is {})",
                    optimizer.name()
                ),
            ));
        }
        return Ok([None; 3]);
    }
    Ok(given.map(|(_, v, default)| Some(v.unwrap_or(default))))
}

/// K-FAC's settings: defaults for kfac; refused, naming the flag, for another optimizer.
fn kfac_settings(
    optimizer: OptimizerKind,
    args: &TrainArgs,
    file: &TrainArgs,
) -> Result<Option<KfacSpec>, ConfigError> {
    let (decay, damping, kl_clip) = (
        args.kfac_decay.or(file.kfac_decay),
        args.kfac_damping.or(file.kfac_damping),
        args.kfac_kl_clip.or(file.kfac_kl_clip),
    );
    let update_every = args.kfac_update_every.or(file.kfac_update_every);
    let inv_every = args.kfac_inv_every.or(file.kfac_inv_every);
    if optimizer != OptimizerKind::Kfac {
        let given = [
            ("kfac-decay", decay.map(|v| v.to_string())),
            ("kfac-damping", damping.map(|v| v.to_string())),
            ("kfac-kl-clip", kl_clip.map(|v| v.to_string())),
            ("kfac-update-every", update_every.map(|v| v.to_string())),
            ("kfac-inv-every", inv_every.map(|v| v.to_string())),
        ];
        if let Some((name, Some(v))) = given.into_iter().find(|g| g.1.is_some()) {
            return Err(invalid(
                name,
                v,
                format!(
                    "applies to --optimizer kfac (the optimizer is {})",
                    optimizer.name()
                ),
            ));
        }
        return Ok(None);
    }
    let d = KfacSpec::default();
    Ok(Some(KfacSpec {
        decay: decay.unwrap_or(d.decay),
        damping: damping.unwrap_or(d.damping),
        kl_clip: kl_clip.unwrap_or(d.kl_clip),
        update_every: update_every.unwrap_or(d.update_every),
        inv_every: inv_every.unwrap_or(d.inv_every),
    }))
}

/// The iterations and epochs of a run: one of the two, the flags' choice over the file's;
/// iterations 0 when the run is given in epochs.
fn run_length(args: &TrainArgs, file: &TrainArgs) -> Result<(u64, Option<u64>), ConfigError> {
    let both = |e: u64, where_: &str| {
        invalid(
            "epochs",
            e,
            format!("conflicts with --iterations{where_}: give one of them"),
        )
    };
    match (args.iterations, args.epochs) {
        (Some(_), Some(e)) => Err(both(e, "")),
        (Some(i), None) => Ok((i, None)),
        (None, Some(e)) => Ok((0, Some(e))),
        (None, None) => match (file.iterations, file.epochs) {
            (Some(_), Some(e)) => Err(both(e, " (both in the config file)")),
            (i, None) => Ok((i.unwrap_or(100), None)),
            (None, Some(e)) => Ok((0, Some(e))),
        },
    }
}

/// The hidden layer widths of `model` from `--hidden` (default 256,128 for an mlp, 120 for the
/// cnn's one hidden layer; refused for the GLMs, which have none).
pub(crate) fn hidden_layers(
    model: ModelKind,
    text: Option<&String>,
) -> Result<Vec<usize>, ConfigError> {
    match (model, text) {
        (ModelKind::Mlp, None) => Ok(vec![256, 128]),
        (ModelKind::Cnn, None) => Ok(vec![crate::model::Cnn::DEFAULT_HIDDEN]),
        (ModelKind::Cnn, Some(t)) => match widths::parse(t).as_deref() {
            Some(&[h]) => Ok(vec![h]),
            _ => Err(invalid(
                "hidden",
                format!("'{t}'"),
                "must be the width > 0 of the cnn's one hidden dense layer (e.g. --hidden 128)",
            )),
        },
        (ModelKind::Mlp, Some(t)) => widths::parse(t).ok_or_else(|| {
            invalid(
                "hidden",
                format!("'{t}'"),
                "must list the hidden layer widths, comma-separated, each > 0 (e.g. --hidden 256,128)",
            )
        }),
        (_, None) => Ok(Vec::new()),
        (m, Some(t)) => Err(invalid(
            "hidden",
            format!("'{t}'"),
            format!("applies to --model mlp or cnn (the model is {})", m.name()),
        )),
    }
}

/// The filters of the cnn's two convolutions from `--conv-filters` (default 6,16; refused for
/// the other models).
pub(crate) fn conv_filters(
    model: ModelKind,
    text: Option<&String>,
) -> Result<Vec<usize>, ConfigError> {
    match (model, text) {
        (ModelKind::Cnn, None) => Ok(crate::model::Cnn::DEFAULT_FILTERS.to_vec()),
        (ModelKind::Cnn, Some(t)) => match widths::parse(t) {
            Some(w) if w.len() == 2 => Ok(w),
            _ => Err(invalid(
                "conv-filters",
                format!("'{t}'"),
                "must be the filters of the cnn's two convolutions, comma-separated, each > 0 (e.g. --conv-filters 16,32)",
            )),
        },
        (_, None) => Ok(Vec::new()),
        (m, Some(t)) => Err(invalid(
            "conv-filters",
            format!("'{t}'"),
            format!("applies to --model cnn (the model is {})", m.name()),
        )),
    }
}

/// Layer widths as the text "256,128" (the flag's form), in and out of TOML.
mod widths {
    use serde::{Deserialize, Deserializer, Serializer};

    /// "256, 128" → [256, 128]; `None` when empty or when a width is not a number > 0.
    pub fn parse(text: &str) -> Option<Vec<usize>> {
        let w: Vec<usize> = text
            .split(',')
            .map(|p| p.trim().parse::<usize>().ok().filter(|&v| v > 0))
            .collect::<Option<_>>()?;
        (!w.is_empty()).then_some(w)
    }

    pub fn text(w: &[usize]) -> String {
        w.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
    }

    pub fn serialize<S: Serializer>(w: &[usize], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(w))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
        let t = String::deserialize(d)?;
        parse(&t).ok_or_else(|| {
            serde::de::Error::custom(format!("hidden '{t}' is not a list of widths > 0"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobArgs;

    fn args() -> TrainArgs {
        TrainArgs {
            data: Some("d.h5".into()),
            job: JobArgs {
                out: Some(std::env::temp_dir().join("gradcode-config-test-none")),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn defaults_apply_and_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "data = \"x.h5\"\ncode = \"frc\"\nstragglers = 2\nlr = 0.1\ndeadline_ms = 250\n",
        )
        .unwrap();
        let a = TrainArgs {
            job: JobArgs {
                config: Some(f),
                out: Some(dir.path().join("run")),
                ..Default::default()
            },
            lr: Some(0.3),
            ..Default::default()
        };
        let c = RunConfig::from_args(&a, 7).unwrap();
        assert_eq!(c.data, PathBuf::from("x.h5"));
        assert_eq!(c.code, TrainCode::Gradient(CodeKind::Frc));
        assert_eq!(c.stragglers, 2);
        assert_eq!(c.lr, 0.3);
        assert_eq!(c.job.deadline_ms, 250.0);
        assert_eq!(c.workers(), 6);
        assert_eq!(c.iterations, 100);
    }

    #[test]
    fn the_written_config_reads_back_to_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        for extra in [
            TrainArgs::default(),
            TrainArgs {
                code: Some("mds-rotation".parse().unwrap()),
                no_intercept: true,
                momentum_schedule: Some(MomentumSchedule::NesterovT),
                ..Default::default()
            },
            TrainArgs {
                code: Some(TrainCode::Gradient(CodeKind::Expander)),
                degree: Some(3),
                reuse_stale: true,
                job: JobArgs {
                    straggler_model: Some("exp:5+fail:2@3".into()),
                    max_memory_mb: Some(512.0),
                    ..Default::default()
                },
                ..Default::default()
            },
            TrainArgs {
                reference: true,
                ..Default::default()
            },
            TrainArgs {
                code: Some(TrainCode::Gradient(CodeKind::CommEfficient)),
                split: Some(3),
                compress: Some("topk:0.05".parse().unwrap()),
                error_feedback: true,
                ..Default::default()
            },
            TrainArgs {
                model: Some(ModelKind::Mlp),
                hidden: Some("32, 16,8".into()),
                batch: Some(16),
                epochs: Some(3),
                optimizer: Some(OptimizerKind::Adam),
                beta2: Some(0.99),
                lr_schedule: Some("step:30:0.5".into()),
                warmup: Some(5),
                ..Default::default()
            },
            TrainArgs {
                model: Some(ModelKind::Mlp),
                hidden: Some("32,16,8".into()),
                batch: Some(16),
                optimizer: Some(OptimizerKind::Kfac),
                kfac_decay: Some(0.9),
                kfac_inv_every: Some(5),
                kfac_kl_clip: Some(0.0),
                ..Default::default()
            },
            TrainArgs {
                model: Some(ModelKind::Cnn),
                conv_filters: Some("16, 32".into()),
                hidden: Some("64".into()),
                batch: Some(16),
                ..Default::default()
            },
            TrainArgs {
                reference: true,
                batch: Some(8),
                code: Some(TrainCode::Gradient(CodeKind::Frc)),
                job: JobArgs {
                    workers: Some(6),
                    ..Default::default()
                },
                ..Default::default()
            },
        ] {
            let mut a = args();
            a.code = extra.code;
            a.model = extra.model;
            a.hidden = extra.hidden.clone();
            a.conv_filters = extra.conv_filters.clone();
            a.batch = extra.batch;
            a.epochs = extra.epochs;
            a.optimizer = extra.optimizer;
            a.beta2 = extra.beta2;
            a.lr_schedule = extra.lr_schedule.clone();
            a.warmup = extra.warmup;
            a.kfac_decay = extra.kfac_decay;
            a.kfac_inv_every = extra.kfac_inv_every;
            a.kfac_kl_clip = extra.kfac_kl_clip;
            a.job.workers = extra.job.workers;
            a.no_intercept = extra.no_intercept;
            a.momentum_schedule = extra.momentum_schedule;
            a.degree = extra.degree;
            a.reuse_stale = extra.reuse_stale;
            a.reference = extra.reference;
            a.split = extra.split;
            a.compress = extra.compress;
            a.error_feedback = extra.error_feedback;
            a.job.straggler_model = extra.job.straggler_model.clone();
            a.job.max_memory_mb = extra.job.max_memory_mb;
            let c = RunConfig::from_args(&a, 9).unwrap();
            let f = dir.path().join("config.toml");
            std::fs::write(&f, c.to_toml()).unwrap();
            let again = RunConfig::from_args(
                &TrainArgs {
                    job: JobArgs {
                        config: Some(f),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                9,
            )
            .unwrap();
            assert_eq!(again, c, "{}", c.to_toml());
            assert_eq!(again.trajectory_hash(), c.trajectory_hash());
            if c.model == ModelKind::Cnn {
                assert_eq!(
                    (c.hidden.clone(), c.conv_filters.clone()),
                    (vec![64], vec![16, 32])
                );
                let toml = c.to_toml();
                assert!(
                    toml.contains("hidden = \"64\"") && toml.contains("conv-filters = \"16,32\""),
                    "{toml}"
                );
            }
            if c.model == ModelKind::Mlp {
                assert_eq!(c.hidden, vec![32, 16, 8]);
                assert!(
                    c.to_toml().contains("hidden = \"32,16,8\""),
                    "{}",
                    c.to_toml()
                );
            }
        }
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let cases: Vec<(TrainArgs, usize, &str)> = vec![
            (
                TrainArgs {
                    stragglers: Some(3),
                    ..args()
                },
                4,
                "--stragglers = 3",
            ),
            (
                TrainArgs {
                    job: JobArgs {
                        deadline_ms: Some(0.0),
                        ..args().job
                    },
                    ..args()
                },
                4,
                "--deadline-ms",
            ),
            (
                TrainArgs {
                    lr: Some(f64::NAN),
                    ..args()
                },
                4,
                "--lr",
            ),
            (
                TrainArgs {
                    momentum: Some(1.0),
                    ..args()
                },
                4,
                "--momentum",
            ),
            (
                TrainArgs {
                    iterations: Some(0),
                    ..args()
                },
                4,
                "--iterations",
            ),
            (
                TrainArgs {
                    job: JobArgs {
                        straggler_model: Some("fixed:7:10".into()),
                        ..args().job
                    },
                    ..args()
                },
                4,
                "not a worker rank",
            ),
            (
                TrainArgs {
                    reuse_stale: true,
                    chunks: Some(2),
                    ..args()
                },
                4,
                "--reuse-stale",
            ),
            (
                TrainArgs {
                    job: JobArgs {
                        workers: Some(8),
                        ..args().job
                    },
                    ..args()
                },
                4,
                "--workers = 8",
            ),
            (
                TrainArgs {
                    code: Some("mds-rotation".parse().unwrap()),
                    model: Some(ModelKind::Softmax),
                    ..args()
                },
                4,
                "--model = softmax",
            ),
            (
                TrainArgs {
                    code: Some("mds-rotation".parse().unwrap()),
                    on_deadline: Some(OnDeadline::BestEffort),
                    ..args()
                },
                4,
                "--on-deadline",
            ),
            (args(), 1, "mpirun -np N+1"),
            (
                TrainArgs {
                    error_feedback: true,
                    ..args()
                },
                4,
                "--error-feedback = true: needs a compressor",
            ),
            (
                TrainArgs {
                    compress: Some("qsgd:4".parse().unwrap()),
                    error_feedback: true,
                    ..args()
                },
                4,
                "ω = min(B/s², √B/s) = 5.657 ≥ 1",
            ),
            (
                TrainArgs {
                    compress: Some("lowrank:4".parse().unwrap()),
                    ..args()
                },
                4,
                "--compress = lowrank:4: --compress lowrank on a GLM (logistic)",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    hidden: Some("8".into()),
                    code: Some(TrainCode::Gradient(CodeKind::CommEfficient)),
                    split: Some(2),
                    compress: Some("lowrank:2".parse().unwrap()),
                    ..args()
                },
                4,
                "--compress = lowrank:2: factors the model's weight matrices, which a piece of a split code (--split > 1) does not hold whole",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    hidden: Some("2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2".into()),
                    compress: Some("lowrank:2".parse().unwrap()),
                    ..args()
                },
                4,
                "factors at most 16 weight matrices and this network has 17",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    hidden: Some("".into()),
                    ..args()
                },
                4,
                "--hidden = ''",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    hidden: Some("64,0".into()),
                    ..args()
                },
                4,
                "each > 0",
            ),
            (
                TrainArgs {
                    hidden: Some("64".into()),
                    ..args()
                },
                4,
                "applies to --model mlp",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Cnn),
                    hidden: Some("64,32".into()),
                    ..args()
                },
                4,
                "--hidden = '64,32': must be the width > 0 of the cnn's one hidden dense layer",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Cnn),
                    conv_filters: Some("16,0".into()),
                    ..args()
                },
                4,
                "--conv-filters = '16,0': must be the filters of the cnn's two convolutions",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Cnn),
                    conv_filters: Some("".into()),
                    ..args()
                },
                4,
                "--conv-filters = '': must be",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Cnn),
                    conv_filters: Some("8,16,32".into()),
                    ..args()
                },
                4,
                "--conv-filters = '8,16,32'",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    conv_filters: Some("16,32".into()),
                    ..args()
                },
                4,
                "--conv-filters = '16,32': applies to --model cnn (the model is mlp)",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    no_intercept: true,
                    ..args()
                },
                4,
                "--no-intercept",
            ),
            (
                TrainArgs {
                    batch: Some(0),
                    ..args()
                },
                4,
                "--batch = 0",
            ),
            (
                TrainArgs {
                    optimizer: Some(OptimizerKind::Kfac),
                    ..args()
                },
                4,
                "--optimizer = kfac: preconditions the layers of --model mlp or cnn (the model is logistic",
            ),
            (
                // The CNN passes the model check (its conv layers have KFC factors) and
                // reaches the settings'.
                TrainArgs {
                    model: Some(ModelKind::Cnn),
                    optimizer: Some(OptimizerKind::Kfac),
                    kfac_decay: Some(1.0),
                    ..args()
                },
                4,
                "--kfac-decay = 1: must be in [0, 1)",
            ),
            (
                TrainArgs {
                    kfac_damping: Some(0.1),
                    ..args()
                },
                4,
                "--kfac-damping = 0.1: applies to --optimizer kfac (the optimizer is gd)",
            ),
            (
                TrainArgs {
                    kfac_eig: Some(EigSite::Workers),
                    ..args()
                },
                4,
                "--kfac-eig = workers: applies to --optimizer kfac (the optimizer is gd)",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    optimizer: Some(OptimizerKind::Kfac),
                    kfac_eig: Some(EigSite::Workers),
                    reuse_stale: true,
                    ..args()
                },
                4,
                "--kfac-eig = workers: a worker's eigen round is one whole message: not available with --reuse-stale",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    optimizer: Some(OptimizerKind::Kfac),
                    kfac_decay: Some(1.0),
                    ..args()
                },
                4,
                "--kfac-decay = 1: must be in [0, 1)",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    optimizer: Some(OptimizerKind::Kfac),
                    kfac_inv_every: Some(0),
                    ..args()
                },
                4,
                "--kfac-inv-every = 0: must be at least 1",
            ),
            (
                TrainArgs {
                    model: Some(ModelKind::Mlp),
                    optimizer: Some(OptimizerKind::Kfac),
                    compress: Some("qsgd:4".parse().unwrap()),
                    ..args()
                },
                4,
                "not available with --compress qsgd",
            ),
            (
                TrainArgs {
                    optimizer: Some(OptimizerKind::Adam),
                    beta1: Some(1.0),
                    ..args()
                },
                4,
                "--beta1 = 1: must be in [0, 1)",
            ),
            (
                TrainArgs {
                    optimizer: Some(OptimizerKind::Adam),
                    beta2: Some(-0.5),
                    ..args()
                },
                4,
                "--beta2 = -0.5",
            ),
            (
                TrainArgs {
                    optimizer: Some(OptimizerKind::Adam),
                    eps: Some(0.0),
                    ..args()
                },
                4,
                "--eps = 0",
            ),
            (
                TrainArgs {
                    beta1: Some(0.5),
                    ..args()
                },
                4,
                "--beta1 = 0.5: applies to --optimizer adam (the optimizer is gd)",
            ),
            (
                TrainArgs {
                    lr_schedule: Some("cosine:0".into()),
                    ..args()
                },
                4,
                "--lr-schedule = 'cosine:0': TOTAL '0'",
            ),
            (
                TrainArgs {
                    epochs: Some(2),
                    iterations: Some(10),
                    ..args()
                },
                4,
                "--epochs = 2: conflicts with --iterations",
            ),
            (
                TrainArgs {
                    epochs: Some(0),
                    ..args()
                },
                4,
                "--epochs = 0",
            ),
            (
                TrainArgs {
                    reference: true,
                    batch: Some(8),
                    ..args()
                },
                1,
                "needs --workers N",
            ),
            (
                TrainArgs {
                    code: Some("mds-rotation".parse().unwrap()),
                    compress: Some("sign".parse().unwrap()),
                    ..args()
                },
                4,
                "--compress = sign: is not available with the mds-* codes",
            ),
            (
                TrainArgs {
                    code: Some("mds-rotation".parse().unwrap()),
                    batch: Some(8),
                    ..args()
                },
                4,
                "--batch = 8: is not available with the mds-* codes",
            ),
            (
                TrainArgs {
                    data: None,
                    ..args()
                },
                4,
                "data is required",
            ),
        ];
        for (a, world, needle) in cases {
            let e = RunConfig::from_args(&a, world).unwrap_err().to_string();
            assert!(e.contains(needle), "expected '{needle}' in '{e}'");
        }
        let resume = RunConfig::from_args(
            &TrainArgs {
                resume: true,
                ..args()
            },
            4,
        )
        .unwrap();
        let e = resume.job.check_output(true).unwrap_err().to_string();
        assert!(e.contains("no checkpoint"), "{e}");
    }

    /// Every `examples/*.toml` is a valid config for its `workers` + 1 ranks, and the K-FAC
    /// example selects K-FAC with its settings.
    #[test]
    fn the_example_configs_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            let ranks = table["workers"].as_integer().unwrap() as usize + 1;
            let args = TrainArgs {
                job: JobArgs {
                    config: Some(path.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let c = RunConfig::from_args(&args, ranks)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if path.ends_with("fashion-mlp-kfac.toml") {
                let k = c.kfac().unwrap();
                assert_eq!((k.decay, k.inv_every), (0.95, 10));
                assert_eq!(c.hidden, vec![256, 128]);
            }
            seen += 1;
        }
        assert!(seen >= 1, "no example configs in {}", dir.display());
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "data = \"x.h5\"\nlearning-rate = 0.1\n").unwrap();
        let a = TrainArgs {
            job: JobArgs {
                config: Some(f),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = RunConfig::from_args(&a, 4).unwrap_err().to_string();
        assert!(
            e.contains("learning-rate") && e.contains("deadline-ms"),
            "{e}"
        );
    }

    #[test]
    fn uncoded_defaults_to_no_stragglers() {
        let c = RunConfig::from_args(
            &TrainArgs {
                code: Some(TrainCode::Gradient(CodeKind::Uncoded)),
                ..args()
            },
            4,
        )
        .unwrap();
        assert_eq!(c.stragglers, 0);
    }

    #[test]
    fn the_data_resolves_batches_and_epochs() {
        let c = RunConfig::from_args(
            &TrainArgs {
                batch: Some(7),
                epochs: Some(3),
                chunks: Some(2),
                ..args()
            },
            5,
        )
        .unwrap();
        // 103 rows in 4 partitions (26, 26, 26, 25): ⌈103 / 28⌉ = 4 iterations per epoch.
        let r = c.for_data(103, 4).unwrap();
        assert_eq!((r.per_epoch, r.iterations, r.partitions), (4, 12, 4));
        assert_eq!(r.step_rows(103), 28);
        let e = c.for_data(27, 4).unwrap_err().to_string();
        assert!(
            e.contains("--batch = 7: is larger than a partition") && e.contains("--batch 6"),
            "{e}"
        );
        let few = RunConfig {
            chunks: 8,
            ..c.clone()
        };
        let e = few.for_data(103, 4).unwrap_err().to_string();
        assert!(
            e.contains("--chunks = 8") && e.contains("--chunks 7"),
            "{e}"
        );
        // Without --batch: an epoch is one iteration, and a step is over every row.
        let full = RunConfig::from_args(
            &TrainArgs {
                epochs: Some(5),
                ..args()
            },
            5,
        )
        .unwrap()
        .for_data(103, 4)
        .unwrap();
        assert_eq!(
            (full.per_epoch, full.iterations, full.step_rows(103)),
            (1, 5, 103)
        );
    }

    #[test]
    fn the_cnn_widths_shape_the_hash_only_when_not_lenets() {
        let cnn = |filters: Option<&str>, hidden: Option<&str>| {
            RunConfig::from_args(
                &TrainArgs {
                    model: Some(ModelKind::Cnn),
                    conv_filters: filters.map(Into::into),
                    hidden: hidden.map(Into::into),
                    ..args()
                },
                4,
            )
            .unwrap()
        };
        let lenet = cnn(None, None);
        assert_eq!(
            (lenet.conv_filters.clone(), lenet.hidden.clone()),
            (vec![6, 16], vec![120])
        );
        // As a CNN run before the flags hashed (no widths in the key).
        let before = RunConfig {
            hidden: Vec::new(),
            conv_filters: Vec::new(),
            ..lenet.clone()
        };
        assert_eq!(lenet.trajectory_hash(), before.trajectory_hash());
        assert_eq!(
            cnn(Some("6,16"), Some("120")).trajectory_hash(),
            before.trajectory_hash()
        );
        let wide = cnn(Some("16,32"), None).trajectory_hash();
        let deep = cnn(None, Some("128")).trajectory_hash();
        assert_ne!(wide, before.trajectory_hash());
        assert_ne!(deep, before.trajectory_hash());
        assert_ne!(wide, deep);
    }

    #[test]
    fn new_settings_at_their_defaults_keep_the_old_hash() {
        // The hash of a default run, as the code before minibatches and networks computed it.
        let c = RunConfig::from_args(&args(), 4).unwrap();
        let j = &c.job;
        let old = format!(
            "data={}\nmodel={}\ncode={}\ns={}\nn={}\ndeadline_ms={:?}\non_deadline={:?}\nlr={:?}\nl2={:?}\noptimizer={:?}\nmomentum={:?}\nstragglers={}\nseed={}\nchunks={}\ndegree={:?}\ndecoder={:?}\nstraggle_prob={:?}\n",
            c.data.display(),
            c.model.name(),
            c.code.name(),
            c.stragglers,
            j.workers,
            j.deadline_ms,
            c.on_deadline,
            c.lr,
            c.l2,
            c.optimizer,
            c.momentum,
            j.straggler_model,
            j.seed,
            c.chunks,
            c.degree,
            c.decoder,
            c.straggle_prob
        );
        let digest: String = Sha256::digest(old.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(c.trajectory_hash(), digest);
        for other in [
            RunConfig {
                batch: Some(4),
                ..c.clone()
            },
            RunConfig {
                model: ModelKind::Mlp,
                hidden: vec![8],
                ..c.clone()
            },
            RunConfig {
                warmup: 3,
                ..c.clone()
            },
            RunConfig {
                lr_schedule: LrSchedule::Cosine { total: 50 },
                ..c.clone()
            },
        ] {
            assert_ne!(other.trajectory_hash(), digest);
        }
        // Adam's constants shape its trajectory.
        let adam = |beta1| RunConfig {
            optimizer: OptimizerKind::Adam,
            beta1: Some(beta1),
            beta2: Some(0.999),
            eps: Some(1e-8),
            ..c.clone()
        };
        assert_ne!(adam(0.9).trajectory_hash(), adam(0.8).trajectory_hash());
        // Epochs are a run length, like iterations.
        let e = RunConfig {
            epochs: Some(9),
            ..c.clone()
        };
        assert_eq!(e.trajectory_hash(), digest);
    }

    #[test]
    fn trajectory_hash_ignores_iterations_but_not_lr() {
        let c = RunConfig::from_args(&args(), 4).unwrap();
        let more = RunConfig {
            iterations: 500,
            ..c.clone()
        };
        let other = RunConfig {
            lr: 0.25,
            ..c.clone()
        };
        assert_eq!(c.trajectory_hash(), more.trajectory_hash());
        assert_ne!(c.trajectory_hash(), other.trajectory_hash());
        // --kfac-eig: workers changes the trajectory (fallbacks); rank0, the default, keeps
        // the hash of runs written before the flag.
        let site = |e| RunConfig {
            kfac_eig: Some(e),
            ..c.clone()
        };
        assert_eq!(c.trajectory_hash(), site(EigSite::Rank0).trajectory_hash());
        assert_ne!(
            c.trajectory_hash(),
            site(EigSite::Workers).trajectory_hash()
        );
    }
}
