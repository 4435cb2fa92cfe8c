//! Command-line interface (clap derive). Only parsing lives here: `config` turns train
//! arguments into a checked [`crate::config::RunConfig`], and `cmd` runs each subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::coding::{CodeKind, DecoderKind};
use crate::model::ModelKind;

/// Straggler-resilient distributed training by gradient coding over MPI.
///
/// Rank 0 coordinates; ranks 1..=N are workers that each hold redundant data partitions and send
/// one coded gradient per iteration. Rank 0 decodes the full gradient from whichever workers answer
/// before the deadline.
///
/// Typical use:
///   gradcode data convert --format libsvm --input a9a --out datasets/a9a.h5
///   mpirun -np 9 gradcode train --data datasets/a9a.h5 --model logistic \
///       --code cyclic-mds -s 1 --out results/a9a
///   gradcode report results/a9a/run.h5 --plot results/a9a/report.png
#[derive(Debug, Parser)]
#[command(
    name = "gradcode",
    version,
    about,
    long_about,
    max_term_width = 100,
    verbatim_doc_comment
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model. Under `mpirun -np N+1` this is the coded MPI job (rank 0 coordinates, N
    /// workers); with --reference it is the serial full-gradient path the MPI job must reproduce.
    Train(Box<TrainArgs>),
    /// Convert, generate and inspect HDF5 datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Show and verify gradient codes.
    #[command(subcommand)]
    Codes(CodesCommand),
    /// Compare results files: a table (text, --csv, --json) and an optional --plot PNG.
    Report(crate::report::ReportArgs),
    /// Coded mat-vec A·x under `mpirun -np N+1` (MDS codes of Lee et al.; rank 0 decodes from
    /// the first decodable set of workers).
    Matvec(MatvecArgs),
    /// Coded AᵀB under `mpirun -np N+1` (polynomial codes, MatDot); rank 0 decodes from the
    /// first threshold results.
    Matmul(MatmulArgs),
    /// Recover the results file of a killed job (status `running`): keep its complete
    /// iterations in a consistent copy with status `recovered`; the original is kept as
    /// `run.h5.killed`.
    Recover(RecoverArgs),
}

/// What rank 0 does when the deadline passes before the responders can be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDeadline {
    /// Keep collecting until the responder set is decodable, at most --max-wait-ms.
    Wait,
    /// Decode at the deadline, least-squares optimally, from whatever arrived; record the residual.
    BestEffort,
}

/// The optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Full-batch gradient descent.
    Gd,
    /// Nesterov's accelerated gradient (gradient at the look-ahead point).
    Nesterov,
}

/// Arguments of `gradcode train`. Every setting may also come from `--config FILE.toml` (same
/// names, with dashes or underscores); flags given on the command line override the file.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrainArgs {
    /// TOML file with settings (flags override it). The effective config is written back to the run folder.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// HDF5 dataset (see `gradcode data convert`).
    #[arg(long, value_name = "FILE.h5")]
    pub data: Option<PathBuf>,
    /// Model to train [default: logistic].
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// Gradient code [default: cyclic-mds]. Also `mds-systematic`, `mds-systematic-rotation`,
    /// `mds-vandermonde`, `mds-chebyshev`, `mds-rotation`, `mds-circulant`, `mds-replication`:
    /// coded training through two coded mat-vecs per step (linear and logistic; its own flags,
    /// see `gradcode train --code mds-rotation --help`; not from a `--config` file).
    #[arg(long, value_enum)]
    pub code: Option<CodeKind>,
    /// Stragglers s the code tolerates [default: 1].
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
    /// Deadline per iteration in milliseconds [default: 1000].
    #[arg(long, value_name = "MS")]
    pub deadline_ms: Option<f64>,
    /// Policy when the deadline passes without a decodable set [default: wait].
    #[arg(long, value_enum)]
    pub on_deadline: Option<OnDeadline>,
    /// Bound on waiting under `--on-deadline wait`; past it the job fails naming the silent workers [default: 30000].
    #[arg(long, value_name = "MS")]
    pub max_wait_ms: Option<f64>,
    /// Iterations to run [default: 100].
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Learning rate [default: 0.5].
    #[arg(long)]
    pub lr: Option<f64>,
    /// L2 regularization λ on the weights (not the intercepts) [default: 1e-4].
    #[arg(long)]
    pub l2: Option<f64>,
    /// Optimizer [default: gd].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Momentum for nesterov [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Injected stragglers: none, fixed:RANKS:MS, slow:RANKS:FACTOR, exp:MEAN_MS,
    /// shifted-exp:SHIFT_MS:MEAN_MS, pareto:SCALE_MS:ALPHA, markov:P01:P10:MS, fail:RANK@ITER,
    /// joined by '+'. RANKS are MPI ranks of workers (1..=N), comma-separated [default: none].
    #[arg(long, value_name = "SPEC")]
    pub straggler_model: Option<String>,
    /// Seed for the code matrix, injected delays and initialization [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder; results go to OUT/run.h5 and OUT/config.toml [default: results/run].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing run folder's results.
    #[arg(long)]
    #[serde(default)]
    pub force: bool,
    /// Write OUT/ckpt.h5 every K iterations (0: never) [default: 0].
    #[arg(long, value_name = "K")]
    pub checkpoint_every: Option<u64>,
    /// Continue from OUT/ckpt.h5 (the config must match the one that wrote it).
    #[arg(long)]
    #[serde(default)]
    pub resume: bool,
    /// Evaluate test loss, accuracy and (binary logistic) ROC AUC every K iterations (0: never)
    /// [default: 10].
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
    /// Fold a coded gradient that arrives one iteration late into the current decode in place of
    /// its worker's missing fresh one (SAG-style stale reuse), rather than drop it; older ones
    /// are still dropped. A fresh message from the same worker replaces it. Recorded per
    /// iteration (`/metrics/stale`) and per worker (`/timing/stale_age`: 0 fresh, 1 stale).
    /// Needs `--chunks 1`; not on the first (validated) iteration.
    #[arg(long)]
    #[serde(default)]
    pub reuse_stale: bool,
    /// Run the serial reference path on one process instead of the MPI job.
    #[arg(long)]
    #[serde(default)]
    pub reference: bool,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Convert LIBSVM, IDX or CSV files (gzip/bzip2 read transparently) into the HDF5 dataset layout.
    Convert(ConvertArgs),
    /// Generate a synthetic dataset from a seed.
    Synth(SynthArgs),
    /// Print shape, non-zeros, label balance and attributes of an HDF5 dataset.
    Inspect(InspectArgs),
    /// Validate an HDF5 dataset in a resource-limited child process (what `train` runs first):
    /// exit 0 valid, 2 invalid or refused (libhdf5 crashed or exceeded the limits).
    Validate(ValidateArgs),
}

/// Input text formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// `label idx:val ...` lines with 1-based indices (stays sparse).
    Libsvm,
    /// IDX images + labels (MNIST layout); --input is the images file, --labels the labels file.
    Idx,
    /// Comma-separated with a header row; --label-column picks the label.
    Csv,
}

/// Task of a converted dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    Binary,
    Regression,
    Multiclass,
}

#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// Input format.
    #[arg(long, value_enum)]
    pub format: InputFormat,
    /// Training input file (.gz / .bz2 read transparently).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Labels file for the training input (IDX only).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Test split input file.
    #[arg(long, value_name = "FILE")]
    pub test_input: Option<PathBuf>,
    /// Labels file for the test split (IDX only).
    #[arg(long, value_name = "FILE")]
    pub test_labels: Option<PathBuf>,
    /// Number of features (LIBSVM: default is the largest index seen in any split).
    #[arg(long)]
    pub features: Option<usize>,
    /// Task [default: binary for LIBSVM with ±1/0-1 labels, regression for other LIBSVM and for
    /// CSV, multiclass for IDX]. CSV labels that are only ±1 or 0/1 stay regression targets, with a
    /// warning: pass `--task binary` to train a classifier (`--model logistic`) on them.
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// CSV: name or 0-based position of the label column [default: last column, with a warning
    /// naming it unless it is called label, labels, y, target or class].
    #[arg(long)]
    pub label_column: Option<String>,
    /// IDX: divide pixel values by 255.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub scale: bool,
    /// Licence of the source data, recorded as an attribute.
    #[arg(long)]
    pub license: Option<String>,
    /// Output HDF5 file.
    #[arg(long, value_name = "PATH.h5")]
    pub out: PathBuf,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Kinds of synthetic data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SynthKind {
    /// Two-component Gaussian mixture with ±1 labels (Tandon et al.).
    Logistic,
    /// y = X w* + noise.
    Linear,
}

#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// What to generate.
    #[arg(long, value_enum)]
    pub kind: SynthKind,
    /// Rows.
    #[arg(long)]
    pub rows: usize,
    /// Features.
    #[arg(long)]
    pub features: usize,
    /// Fraction of non-zero features per row; below 1 the output is CSR [default: 1].
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// Rows of a test split generated from the same distribution [default: 0].
    #[arg(long, default_value_t = 0)]
    pub test_rows: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output HDF5 file.
    #[arg(long, value_name = "PATH.h5")]
    pub out: PathBuf,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// HDF5 dataset.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// HDF5 dataset.
    pub path: PathBuf,
    /// Run the checks in this process (the child side; no resource limits).
    #[arg(long, hide = true)]
    pub child: bool,
    /// Also print a machine-readable `stats:` line (outcome, time, peak memory of the child).
    #[arg(long, hide = true)]
    pub stats: bool,
}

#[derive(Debug, Subcommand)]
pub enum CodesCommand {
    /// Print the code matrix B and the assignment of partitions to workers.
    Show(CodeArgs),
    /// Decode every responder set of size n − s (or a seeded sample of 10,000) and report the worst
    /// residual and condition number; exit non-zero if any set fails to decode to 1e-8.
    Verify(CodeArgs),
    /// Coded linear algebra: worst and mean condition number of an MDS generator family over all
    /// k-subsets of its n workers (or 10,000: the n contiguous-erasure sets plus seeded random ones).
    Cond(CondArgs),
}

/// Arguments of `gradcode codes cond`.
#[derive(Debug, Clone, Args)]
pub struct CondArgs {
    /// Generator family: replication, vandermonde, chebyshev, rotation, circulant, systematic
    /// (`mds-` prefix accepted), or `all` for a table of every family.
    #[arg(long)]
    pub family: String,
    /// Workers n.
    #[arg(short = 'n', long = "workers")]
    pub workers: usize,
    /// Workers any of whose k-subsets decode (the data is cut into k blocks, or k·r for the embeddings).
    #[arg(short = 'k', long = "k")]
    pub k: usize,
    /// Check all subsets when there are at most this many, else a sample of this size.
    #[arg(long, default_value_t = 10_000)]
    pub max_subsets: usize,
    /// Seed of the sample.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Clone, Args)]
pub struct CodeArgs {
    /// Gradient code.
    #[arg(long, value_enum)]
    pub code: CodeKind,
    /// Workers n.
    #[arg(short = 'n', long)]
    pub workers: usize,
    /// Stragglers s; verify also takes an inclusive range A..B (e.g. 3..10) and checks each s.
    #[arg(short = 's', long, value_name = "S|A..B")]
    pub stragglers: StragglerRange,
    /// Seed (random codes, and the straggler sets sampled by verify).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Replication d of the approximate codes (expander: graph degree, n·d even, d < n; bgc:
    /// expected partitions per worker; frc-approx: group size, d | n; stochastic: workers per
    /// partition) [default: s + 1].
    #[arg(long, value_name = "D")]
    pub degree: Option<usize>,
    /// Decoder of the approximate codes (show notes it; verify reports both) [default: optimal;
    /// stochastic: one-step].
    #[arg(long, value_enum)]
    pub decoder: Option<DecoderKind>,
    /// Straggle probability p of the stochastic code [default: s/n].
    #[arg(long, value_name = "P")]
    pub straggle_prob: Option<f64>,
    /// Random straggler sets per s that verify samples for the approximate codes.
    #[arg(long, default_value_t = 1000)]
    pub sets: usize,
    /// Also write B to /B of this HDF5 file (show only).
    #[arg(long, value_name = "B.h5")]
    pub out: Option<PathBuf>,
    /// Overwrite --out.
    #[arg(long)]
    pub force: bool,
}

/// `-s S` or an inclusive range `-s A..B` (`codes verify` checks every s in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StragglerRange {
    pub first: usize,
    pub last: usize,
}

impl StragglerRange {
    /// The single s, if this is not a proper range.
    pub fn single(&self) -> Option<usize> {
        (self.first == self.last).then_some(self.first)
    }
    /// Every s in the range, in increasing order.
    pub fn values(&self) -> std::ops::RangeInclusive<usize> {
        self.first..=self.last
    }
}

impl std::fmt::Display for StragglerRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.single() {
            Some(s) => write!(f, "{s}"),
            None => write!(f, "{}..{}", self.first, self.last),
        }
    }
}

impl std::str::FromStr for StragglerRange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{text}' is not a number of stragglers S or a range A..B"))
        };
        let (first, last) = match text.split_once("..") {
            Some((a, b)) => (num(a)?, num(b.strip_prefix('=').unwrap_or(b))?),
            None => (num(text)?, num(text)?),
        };
        if first > last {
            return Err(format!(
                "the range {first}..{last} is empty (write A..B with A ≤ B)"
            ));
        }
        Ok(StragglerRange { first, last })
    }
}

/// `gradcode matvec`: the coded mat-vec MPI job.
#[derive(Debug, Clone, Args)]
pub struct MatvecArgs {
    /// HDF5 matrix in the dataset layout: dense `/X` or CSR `/X/{data,indices,indptr}`.
    #[arg(long, value_name = "A.h5")]
    pub matrix: PathBuf,
    /// Code: replication, mds-systematic, mds-vandermonde, mds-chebyshev, mds-rotation,
    /// mds-circulant, mds-systematic-rotation.
    #[arg(long)]
    pub code: String,
    /// Any K workers decode (replication: A is cut into K blocks, worker i holds block i mod K).
    #[arg(short, long)]
    pub k: usize,
    /// Mat-vecs to run (a fresh seeded x each).
    #[arg(long, default_value_t = 10)]
    pub iterations: u64,
    /// After this long without a decodable set rank 0 logs the silent workers and keeps waiting
    /// (wait semantics, as in training), at most --max-wait-ms.
    #[arg(long, default_value_t = 1000.0)]
    pub deadline_ms: f64,
    /// Bound on waiting for a decodable set; past it the job fails naming the silent workers.
    #[arg(long, default_value_t = 30000.0)]
    pub max_wait_ms: f64,
    /// Injected stragglers, same grammar as `train --straggler-model`.
    #[arg(long, value_name = "SPEC", default_value = "none")]
    pub straggler_model: String,
    /// Seed of the vectors x and of the injected delays.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run folder; results go to OUT/run.h5.
    #[arg(long, value_name = "DIR", default_value = "results/matvec")]
    pub out: PathBuf,
    /// Overwrite an existing results file.
    #[arg(long)]
    pub force: bool,
}

/// `gradcode matmul`: AᵀB by polynomial codes over MPI.
#[derive(Debug, Clone, Args)]
pub struct MatmulArgs {
    /// HDF5 matrix A (s × ca) in the dataset layout (`/X`, dense or CSR).
    #[arg(long, value_name = "A.h5")]
    pub a: PathBuf,
    /// HDF5 matrix B (s × cb), same rows as A.
    #[arg(long, value_name = "B.h5")]
    pub b: PathBuf,
    /// Code: poly-real, poly-chebyshev, poly-rotation (threshold mp) or matdot (2m − 1).
    #[arg(long)]
    pub code: String,
    /// A is cut into m column blocks (matdot: A and B into m row blocks).
    #[arg(short, long)]
    pub m: usize,
    /// B is cut into p column blocks (ignored by matdot).
    #[arg(short, long, default_value_t = 1)]
    pub p: usize,
    /// After this long without enough results rank 0 logs the silent workers and keeps waiting.
    #[arg(long, default_value_t = 1000.0)]
    pub deadline_ms: f64,
    /// Bound on waiting; past it the job fails naming the silent workers.
    #[arg(long, default_value_t = 30000.0)]
    pub max_wait_ms: f64,
    /// Injected stragglers (iteration 0), same grammar as `train --straggler-model`.
    #[arg(long, value_name = "SPEC", default_value = "none")]
    pub straggler_model: String,
    /// Seed of the injected delays.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run folder; results go to OUT/run.h5 and the product to OUT/product.h5.
    #[arg(long, value_name = "DIR", default_value = "results/matmul")]
    pub out: PathBuf,
    /// Overwrite existing results.
    #[arg(long)]
    pub force: bool,
}

/// `gradcode recover`: make a killed run's results file consistent.
#[derive(Debug, Clone, Args)]
pub struct RecoverArgs {
    /// A run folder (holding `run.h5`) or a results file.
    #[arg(value_name = "RUN_DIR_OR_FILE")]
    pub path: PathBuf,
}

/// Whether this process is rank 0 of an MPI launch, or not under a launcher at all: read from
/// the launchers' environment (Open MPI, MPICH/hydra, PMIx, Slurm), because argument errors are
/// reported before MPI is initialized.
pub fn is_launcher_rank_zero() -> bool {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMIX_RANK",
        "PMI_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .filter_map(|v| std::env::var(v).ok())
    .all(|r| r.trim() == "0")
}

/// One line for a command-line error: clap's message without its usage block and hint, the
/// continuation lines (possible values, missing arguments) joined on.
pub fn one_line_parse_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        let line = line.strip_prefix("error:").unwrap_or(line).trim();
        match line.strip_prefix("tip:") {
            Some(tip) => parts.push(format!("({})", tip.trim())),
            None => parts.push(line.to_string()),
        }
    }
    format!("{} (see --help)", parts.join(" "))
}

/// Handle a failed parse: help and version go to stdout with exit 0 as clap does; an error is
/// one `gradcode: error:` line on stderr (printed by rank 0 only under mpirun, so a job prints it
/// once) and exit code 2 on every rank.
pub fn exit_on_parse_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            if is_launcher_rank_zero() {
                eprintln!("gradcode: error: {}", one_line_parse_error(&e));
            }
            std::process::exit(2)
        }
    }
}

impl Command {
    /// Whether the command runs as an MPI job (train, matvec, matmul).
    pub fn is_mpi_job(&self) -> bool {
        matches!(
            self,
            Command::Train(_) | Command::Matvec(_) | Command::Matmul(_)
        )
    }
}

/// Restore the default SIGPIPE action (Rust ignores it, so a closed pipe becomes a panic in
/// `println!`); for the commands whose output is read by other programs.
pub fn restore_default_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
