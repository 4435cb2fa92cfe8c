//! Command-line interface (clap derive). Only parsing lives here: the arguments of the MPI jobs
//! are defined with their checked configs in [`crate::config`] (they are also the keys of a
//! `--config` file), and `cmd` runs each subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::coding::{CodeKind, DecoderKind};
use crate::config::{AdmmArgs, MatmulArgs, MatvecArgs, TrainArgs};

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
    #[command(allow_negative_numbers = true)]
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
    /// Train an MLP by pdADMM under `mpirun -np 1+L`: model parallelism without backpropagation
    /// (rank 0 records, layer rank l holds layer l and talks only to its two neighbours); with
    /// --reference the serial reference in one process.
    #[command(allow_negative_numbers = true)]
    Admm(Box<AdmmArgs>),
    /// Recover the results file of a killed job (status `running`): keep its complete
    /// iterations in a consistent copy with status `recovered`; the original is kept as
    /// `run.h5.killed`.
    Recover(RecoverArgs),
    /// Simulate the training loop's timing without MPI (a discrete-event simulation of the
    /// protocol with the same codes, straggler models and deadline policies), from a compute
    /// time or the replay of recorded runs; writes a results file marked simulated that
    /// `gradcode report` compares with real runs (docs/tuning.md).
    #[command(allow_negative_numbers = true)]
    Simulate(Box<SimulateArgs>),
    /// Choose code, s, deadline policy and chunks for this machine: replay a short uncoded
    /// profiling run (--profile), simulate the candidates, print them ranked by predicted time
    /// to target and write the best as a `train --config` TOML (docs/tuning.md).
    #[command(allow_negative_numbers = true)]
    Tune(TuneArgs),
    /// Share one allocation among several training jobs: from each job's profiling run, predict
    /// its time to target at every rank count, allocate ranks, code and s per job to minimize
    /// the mean (or max) completion time, compare with an equal split and FIFO, and write one
    /// Slurm script and `train --config` per job and a plan.json (docs/tuning.md).
    Plan(PlanArgs),
    /// Time a network's forward and backward GEMMs against OpenBLAS dgemm on the same shapes
    /// (per layer, and the whole pass against the layers' dgemm), and K-FAC's factor sums, on
    /// synthetic rows of the dataset's shape: what `make bench-nn` reports
    /// (docs/neural-networks.md).
    Gemm(GemmArgs),
}

/// Arguments of `gradcode gemm`.
#[derive(Debug, Clone, Args)]
pub struct GemmArgs {
    /// HDF5 dataset: only its shape is read (features, image shape, task).
    #[arg(long, value_name = "FILE.h5")]
    pub data: PathBuf,
    /// The network: mlp or cnn.
    #[arg(long, value_enum, default_value = "mlp")]
    pub model: crate::model::ModelKind,
    /// Hidden layer widths of --model mlp, comma-separated [default: 256,128]; of --model cnn
    /// the one hidden dense layer's width [default: 120].
    #[arg(long, value_name = "W1,W2,..")]
    pub hidden: Option<String>,
    /// Filters of --model cnn's two convolutions [default: 6,16].
    #[arg(long, value_name = "C1,C2")]
    pub conv_filters: Option<String>,
    /// Rows of the pass: a worker's rows per gradient, --batch times its partitions (s + 1
    /// with the cyclic codes).
    #[arg(long, default_value_t = 64)]
    pub rows: usize,
    /// Timed runs of each measurement (the median is reported), after one untimed run.
    #[arg(long, default_value_t = 50)]
    pub repeats: usize,
    /// Seed of the synthetic rows and the weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print CSV (layer, gemms, mflop, model_ms, dgemm_ms, fraction; then a `pass` row and a
    /// `kfac_factors` row, the time of K-FAC's factor sums on the same rows) instead of a table.
    #[arg(long)]
    pub csv: bool,
}

/// Arguments of `gradcode plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The jobs: a TOML file with one `[[job]]` table per job, keys `profile` (the run.h5 of a
    /// short uncoded profiling run, required), `name`, `data`, `model` (default: the
    /// profile's), `target-loss` or `iterations`, `ranks` (a fixed rank count).
    #[arg(value_name = "JOBS.toml")]
    pub jobs: PathBuf,
    /// Nodes of the allocation.
    #[arg(long)]
    pub nodes: usize,
    /// Ranks per node (one per core).
    #[arg(long)]
    pub cores_per_node: usize,
    /// What to minimize: the mean or the max (last) predicted completion time.
    #[arg(long, value_enum, default_value_t)]
    pub objective: crate::sim::plan::PlanObjective,
    /// Re-allocate the ranks of finished jobs after every K completions, in the simulated
    /// schedule only (the written scripts are the initial plan); 0: never.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub replan_every: usize,
    /// Folder for the job scripts, their configs and plan.json.
    #[arg(long, default_value = "plan", value_name = "DIR")]
    pub out: PathBuf,
}

/// What `gradcode tune` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TuneObjective {
    /// Predicted seconds until the training loss reaches the profile's iterations to target.
    #[default]
    TimeToTarget,
    /// Median seconds per iteration.
    TimePerIteration,
}

/// Arguments of `gradcode tune`.
#[derive(Debug, Clone, Args)]
pub struct TuneArgs {
    /// The profiling run: `run.h5` (or its folder) of a short `train --code uncoded` job with
    /// the data, model, optimizer and straggler conditions to tune for (run it with mpirun or
    /// sbatch; tune does not launch MPI jobs). A profile with `--batch B` also has the gradient
    /// noise scale: the batch is then searched too (B/4 .. 4B, docs/tuning.md).
    #[arg(long, value_name = "RUN.h5")]
    pub profile: PathBuf,
    /// Workers to tune for [default: the profile's]; more than the profile has draws every
    /// worker from all profiled workers' samples.
    #[arg(long, value_name = "N")]
    pub np: Option<usize>,
    /// Training loss the predicted time is measured to: the profile's first iteration at or
    /// below it sets the iterations to target [default: the profile's whole length].
    #[arg(long, value_name = "LOSS")]
    pub target_loss: Option<f64>,
    /// Wall seconds the search may take; candidates past it are skipped and counted.
    #[arg(long, default_value_t = 60.0, value_name = "S")]
    pub budget_s: f64,
    /// What to rank by.
    #[arg(long, value_enum, default_value_t)]
    pub objective: TuneObjective,
    /// Ranked candidates to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Runs to fit the link model from instead of the profile (repeatable; e.g. one job with
    /// --chunks 1 and --chunks 2, which determines the per-message cost the profile's single
    /// message per worker cannot).
    #[arg(long, value_name = "RUN.h5")]
    pub link_from: Vec<PathBuf>,
    /// Where to write the best configuration (TOML in the keys of `train --config`).
    #[arg(long, value_name = "FILE.toml", default_value = "tuned.toml")]
    pub config_out: PathBuf,
}

/// Arguments of `gradcode simulate`: the settings of `train` (`--data` optional: it only sizes
/// the messages) and the simulator's inputs.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// Replay per-worker compute times and drawn delays recorded in these results files
    /// (run.h5 or run folders; repeatable, concatenated per worker). Worker w replays recorded
    /// rank w + 1; n defaults to the trace's worker count.
    #[arg(long, value_name = "RUN.h5")]
    pub replay: Vec<PathBuf>,
    /// How replayed samples are drawn: sample (each iteration draws one recorded iteration of
    /// that worker, seeded) or sequential (recorded iteration t at simulated iteration t).
    #[arg(long, value_enum, default_value_t)]
    pub replay_order: crate::sim::ReplayOrder,
    /// Let every simulated worker draw from all recorded workers' samples (to simulate more
    /// workers than the trace has; refused otherwise).
    #[arg(long)]
    pub pool_workers: bool,
    /// Without --replay: compute milliseconds per iteration of a worker holding the whole
    /// dataset (a worker's compute is this times its share); delays come from
    /// --straggler-model.
    #[arg(long, value_name = "MS")]
    pub compute_ms: Option<f64>,
    /// Link latency α in milliseconds [default: fitted from --replay, else this machine's].
    #[arg(long, value_name = "MS")]
    pub alpha_ms: Option<f64>,
    /// Per-message cost α_m in milliseconds: the sender's and rank 0's time per message
    /// (each chunk is one), whatever its size [default: as --alpha-ms].
    #[arg(long, value_name = "MS")]
    pub message_ms: Option<f64>,
    /// Link cost β in milliseconds per megabyte (10⁶ bytes) [default: as --alpha-ms].
    #[arg(long, value_name = "MS")]
    pub beta_ms_per_mb: Option<f64>,
    /// Rank 0's time from the decodable set to the step, ms [default: from --replay, else 0.5].
    #[arg(long, value_name = "MS")]
    pub step_ms: Option<f64>,
    /// Rank 0's time between iterations (evaluation, results), ms [default: from --replay,
    /// else 0].
    #[arg(long, value_name = "MS")]
    pub gap_ms: Option<f64>,
    /// Model parameters (message size) [default: from --data, else from the replayed files].
    #[arg(long)]
    pub dim: Option<usize>,
    /// Print the link model and rank 0's times fitted from the --replay files, and exit.
    #[arg(long)]
    pub fit_link: bool,
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
    /// Skew the columns like one-hot categorical data: every row has round(sparsity × features)
    /// distinct columns drawn with P(column j) ∝ 1/(j + 1)^A (needs --sparsity below 1). E.g.
    /// Amazon Employee Access's shape: --features 241915 --sparsity 0.000182 --zipf 1.
    #[arg(long, value_name = "A")]
    pub zipf: Option<f64>,
    /// Rows of a test split generated from the same distribution.
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
    /// With --child: check a user's matrix (the object at this in-file path; "" to find the
    /// file's only one) instead of a dataset.
    #[arg(long, hide = true, value_name = "OBJECT")]
    pub matrix: Option<String>,
    /// Also print a machine-readable `stats:` line (outcome, time, peak memory of the child).
    #[arg(long, hide = true)]
    pub stats: bool,
}

#[derive(Debug, Subcommand)]
pub enum CodesCommand {
    /// Print the code matrix B and the assignment of partitions to workers.
    Show(ShowArgs),
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
    /// Pieces m of the comm-efficient code: each worker holds s + m partitions and sends
    /// ⌈dim/m⌉ values; 1 ≤ m ≤ n − s [default: 2, or 1 when n − s = 1].
    #[arg(long, value_name = "M")]
    pub split: Option<usize>,
    /// Per-worker speeds of the hetero code, comma-separated, one per worker, each > 0 (only
    /// their ratios matter; worker i holds about k(s + 1)·v_i/Σv partitions) [default: all 1].
    #[arg(long, value_name = "V1,V2,..")]
    pub worker_speeds: Option<crate::coding::Speeds>,
    /// Random straggler sets per s that verify samples for the approximate codes.
    #[arg(long, default_value_t = 1000)]
    pub sets: usize,
}

/// Arguments of `gradcode codes show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub code: CodeArgs,
    /// Also write B to /B of this HDF5 file.
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
/// once) and exit code 2 on every rank (the other ranks half a second later, so that the
/// launcher's abort does not cut rank 0 off before it prints).
pub fn exit_on_parse_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            if is_launcher_rank_zero() {
                eprintln!("gradcode: error: {}", one_line_parse_error(&e));
            } else {
                // The launcher aborts the job when the first rank exits non-zero; give rank 0
                // (perhaps started later on a loaded node) the time to print the one line.
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            std::process::exit(2)
        }
    }
}

impl Command {
    /// Whether the command runs as an MPI job (train, matvec, matmul, admm).
    pub fn is_mpi_job(&self) -> bool {
        matches!(
            self,
            Command::Train(_) | Command::Matvec(_) | Command::Matmul(_) | Command::Admm(_)
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
