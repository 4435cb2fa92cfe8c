//! The checked configuration of `gradcode admm` (pdADMM: model parallelism without
//! backpropagation, issue 19).
//!
//! [`AdmmConfig::from_args`] merges `--config` with the flags, applies defaults and checks every
//! setting identically on every rank before any MPI traffic: penalties, the network's layer
//! sizes, the number of layer ranks the world must have (1 + ⌈L / K⌉ for L layers and
//! `--layers-per-rank K`), iterations, staleness and quantization. The sizes against the data
//! (inputs = features, outputs = classes) are checked once rank 0 has inspected the dataset
//! ([`AdmmConfig::check_data`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{invalid, read_settings, ConfigError, JobArgs, JobConfig};
use crate::data::Task;

/// Largest `--max-staleness`.
pub const MAX_STALENESS: u64 = 64;

/// Arguments of `gradcode admm`.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AdmmArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub job: JobArgs,
    /// HDF5 dataset of a classification task (multiclass, or binary as two classes).
    #[arg(long, value_name = "FILE.h5")]
    pub data: Option<PathBuf>,
    /// Units per layer, inputs first and classes last, e.g. 784,500,500,10: an MLP of L = 3
    /// layers (ReLU hidden layers, softmax cross-entropy output). The inputs must equal the
    /// dataset's features and the last number its classes.
    #[arg(long, value_name = "N0,N1,...,NL")]
    pub layers: Option<String>,
    /// ρ, the penalty of the coupling constraints p_{l+1} = q_l (with their duals u_l)
    /// [default: 1e-3].
    #[arg(long)]
    pub rho: Option<f64>,
    /// ν, the penalty of the relaxed constraints z_l = W_l p_l + b_l and q_l = f(z_l)
    /// [default: --rho, as in the authors' code].
    #[arg(long)]
    pub nu: Option<f64>,
    /// Iterations to run; pdADMM is full-batch, so one iteration is one epoch [default: 100].
    #[arg(long)]
    pub iterations: Option<u64>,
    /// The same as --iterations (one pdADMM iteration touches every training row once).
    #[arg(long, conflicts_with = "iterations")]
    pub epochs: Option<u64>,
    /// Layers per layer rank: rank r holds layers (r − 1)·K + 1 ..= r·K, so the world has
    /// 1 + ⌈L / K⌉ ranks [default: 1].
    #[arg(long, value_name = "K")]
    pub layers_per_rank: Option<usize>,
    /// Run every layer in this one process, without MPI: the serial reference the MPI job
    /// must reproduce (to 1e-9 per iteration with --max-staleness 0).
    #[arg(long)]
    #[serde(default)]
    pub reference: bool,
    /// A layer may use its neighbours' p, q, u up to K iterations old rather than wait for them
    /// (0: synchronous pdADMM, deterministic) [default: 0].
    #[arg(long, value_name = "K")]
    pub max_staleness: Option<u64>,
    /// Quantize the values exchanged between layers to 8 or 16 bits (uniform, per message),
    /// pdADMM-G-Q's idea [default: full f64].
    #[arg(long, value_name = "BITS")]
    pub quantize_bits: Option<u32>,
    /// Train on the first N rows of the training split [default: all].
    #[arg(long, value_name = "N")]
    pub train_rows: Option<usize>,
    /// Hold out the last N rows of the training split as the test set (for a dataset without a
    /// test split; refused when it has one) [default: 0].
    #[arg(long, value_name = "N")]
    pub holdout: Option<usize>,
    /// Evaluate the assembled network (train and test accuracy and loss) every K iterations and
    /// after the last (0: only after the last) [default: 10].
    #[arg(long, value_name = "K")]
    pub eval_every: Option<u64>,
    /// Print a progress line every K iterations [default: 10].
    #[arg(long, value_name = "K")]
    pub log_every: Option<u64>,
    /// Checkpoint every layer's variables every K iterations (0: never) [default: 0].
    #[arg(long, value_name = "K")]
    pub checkpoint_every: Option<u64>,
    /// Continue from the run folder's checkpoints (the config must match the one that wrote
    /// them).
    #[arg(long)]
    #[serde(default, skip_serializing)]
    pub resume: bool,
}

/// The checked settings of an admm run (identical on every rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AdmmConfig {
    pub data: PathBuf,
    /// As given (`--layers`).
    pub layers: String,
    pub rho: f64,
    pub nu: f64,
    pub iterations: u64,
    pub layers_per_rank: usize,
    #[serde(default)]
    pub reference: bool,
    pub max_staleness: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize_bits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_rows: Option<usize>,
    pub holdout: usize,
    pub eval_every: u64,
    pub log_every: u64,
    pub checkpoint_every: u64,
    #[serde(flatten)]
    pub job: JobConfig,
    /// Operational, not a setting of the run: never written back.
    #[serde(skip)]
    pub resume: bool,
    /// Units per layer, parsed from `layers`.
    #[serde(skip)]
    pub sizes: Vec<usize>,
}

/// `784,500,10` → [784, 500, 10]: at least one hidden layer, every size ≥ 1.
fn parse_sizes(text: &str) -> Result<Vec<usize>, ConfigError> {
    let sizes = text
        .split(',')
        .map(|t| t.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            invalid(
                "layers",
                text,
                "expected comma-separated unit counts, inputs first and classes last (e.g. 784,500,500,10)",
            )
        })?;
    if sizes.len() < 3 {
        return Err(invalid(
            "layers",
            text,
            "pdADMM needs at least two layers: inputs, one hidden width or more, classes (e.g. 784,500,10)",
        ));
    }
    if sizes.contains(&0) {
        return Err(invalid(
            "layers",
            text,
            "every layer needs at least one unit",
        ));
    }
    Ok(sizes)
}

impl AdmmConfig {
    /// Check `args` for an MPI world of `world` ranks (`--reference`: 1, the world is not used).
    pub fn from_args(args: &AdmmArgs, world: usize) -> Result<AdmmConfig, ConfigError> {
        let file = match &args.job.config {
            Some(p) => read_settings::<AdmmArgs>(p)?,
            None => AdmmArgs::default(),
        };
        let reference = args.reference || file.reference;
        let layers = args
            .layers
            .clone()
            .or(file.layers.clone())
            .ok_or(ConfigError::Missing("layers"))?;
        let sizes = parse_sizes(&layers)?;
        let n_layers = sizes.len() - 1;
        let per = args.layers_per_rank.or(file.layers_per_rank);
        let layers_per_rank = per.unwrap_or(1);
        if layers_per_rank == 0 {
            return Err(invalid("layers-per-rank", 0, "must be at least 1"));
        }
        let ranks = n_layers.div_ceil(layers_per_rank);
        let workers = (!reference).then_some(world.saturating_sub(1));
        if let Some(have) = workers {
            check_world(n_layers, per, ranks, have)?;
        }
        let job = JobConfig::from_args(&args.job, &file.job, "results/admm", workers)?;
        let data = args
            .data
            .clone()
            .or(file.data.clone())
            .ok_or(ConfigError::Missing("data"))?;
        let rho = args.rho.or(file.rho).unwrap_or(1e-3);
        let iterations = args
            .iterations
            .or(args.epochs)
            .or(file.iterations)
            .or(file.epochs)
            .unwrap_or(100);
        let cfg = AdmmConfig {
            data,
            layers,
            rho,
            nu: args.nu.or(file.nu).unwrap_or(rho),
            iterations,
            layers_per_rank,
            reference,
            max_staleness: args.max_staleness.or(file.max_staleness).unwrap_or(0),
            quantize_bits: args.quantize_bits.or(file.quantize_bits),
            train_rows: args.train_rows.or(file.train_rows),
            holdout: args.holdout.or(file.holdout).unwrap_or(0),
            eval_every: args.eval_every.or(file.eval_every).unwrap_or(10),
            log_every: args.log_every.or(file.log_every).unwrap_or(10),
            checkpoint_every: args.checkpoint_every.or(file.checkpoint_every).unwrap_or(0),
            job,
            resume: args.resume,
            sizes,
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (name, v) in [("rho", self.rho), ("nu", self.nu)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(name, v, "must be a finite number > 0"));
            }
        }
        if self.iterations == 0 {
            return Err(invalid("iterations", 0, "need at least one iteration"));
        }
        if self.max_staleness > MAX_STALENESS {
            return Err(invalid(
                "max-staleness",
                self.max_staleness,
                format!("must be at most {MAX_STALENESS}"),
            ));
        }
        if let Some(b) = self.quantize_bits {
            if b != 8 && b != 16 {
                return Err(invalid("quantize-bits", b, "must be 8 or 16"));
            }
        }
        if self.train_rows == Some(0) {
            return Err(invalid("train-rows", 0, "need at least one training row"));
        }
        if self.log_every == 0 {
            return Err(invalid("log-every", 0, "must be at least 1"));
        }
        if self.reference && self.max_staleness > 0 {
            return Err(invalid(
                "max-staleness",
                self.max_staleness,
                "the serial reference is synchronous; drop --max-staleness or --reference",
            ));
        }
        Ok(())
    }

    /// Check the network and the row settings against the data (rank 0 inspected it): inputs =
    /// features, outputs = classes, a classification task, enough rows. Returns the training
    /// rows and the held-out rows used.
    pub fn check_data(
        &self,
        features: usize,
        task: Task,
        rows: usize,
        has_test: bool,
    ) -> Result<(usize, usize), ConfigError> {
        let classes = match task {
            Task::Multiclass { classes } => classes,
            Task::Binary => 2,
            Task::Regression => return Err(invalid(
                "data",
                self.data.display(),
                "is a regression dataset; pdADMM here trains a classifier (softmax cross-entropy)",
            )),
        };
        let (first, last) = (self.sizes[0], self.sizes[self.sizes.len() - 1]);
        if first != features || last != classes {
            return Err(invalid(
                "layers",
                &self.layers,
                format!(
                    "the network has {first} inputs and {last} outputs but {} has {features} features and {classes} classes; use --layers {features},...,{classes}",
                    self.data.display()
                ),
            ));
        }
        if self.holdout > 0 && has_test {
            return Err(invalid(
                "holdout",
                self.holdout,
                format!(
                    "{} has a test split; --holdout is for datasets without one",
                    self.data.display()
                ),
            ));
        }
        if self.holdout >= rows {
            return Err(invalid(
                "holdout",
                self.holdout,
                format!("the training split has only {rows} rows"),
            ));
        }
        let available = rows - self.holdout;
        let train = self.train_rows.unwrap_or(available);
        if train > available {
            return Err(invalid(
                "train-rows",
                train,
                format!(
                    "the training split has {available} rows{}",
                    if self.holdout > 0 {
                        " before the held-out ones"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok((train, self.holdout))
    }

    /// Layers L.
    pub fn n_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Layer ranks ⌈L / K⌉ (1 for the reference, which holds them all).
    pub fn layer_ranks(&self) -> usize {
        if self.reference {
            1
        } else {
            self.n_layers().div_ceil(self.layers_per_rank)
        }
    }

    /// The effective config as TOML (`--config` of it re-runs the job).
    pub fn to_toml(&self) -> String {
        super::linalg::settings_toml("admm", self)
    }

    /// Hash of the settings that shape the trajectory (not the iteration count): a checkpoint
    /// is resumed only under the same ones.
    pub fn trajectory_hash(&self) -> String {
        let key = format!(
            "data={}\nsizes={:?}\nrho={:?}\nnu={:?}\nlayers_per_rank={}\nreference={}\nstaleness={}\nbits={:?}\ntrain_rows={:?}\nholdout={}\nstragglers={}\nseed={}\n",
            self.data.display(),
            self.sizes,
            self.rho,
            self.nu,
            self.layers_per_rank,
            self.reference,
            self.max_staleness,
            self.quantize_bits,
            self.train_rows,
            self.holdout,
            self.job.straggler_model,
            self.job.seed
        );
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The world must have exactly one rank per group of `--layers-per-rank` layers, plus rank 0.
fn check_world(
    n_layers: usize,
    per: Option<usize>,
    ranks: usize,
    have: usize,
) -> Result<(), ConfigError> {
    if have == ranks {
        return Ok(());
    }
    let reason = match per {
        None if have < n_layers => format!(
            "the network has {n_layers} layers but the MPI world has {have} layer rank(s) (mpirun -np {}); run with -np {} (one rank per layer, plus rank 0), or pack layers with --layers-per-rank K (then -np 1 + ⌈{n_layers}/K⌉)",
            have + 1,
            n_layers + 1
        ),
        None => format!(
            "the network has {n_layers} layers but the MPI world has {have} layer ranks (mpirun -np {}); run with -np {}",
            have + 1,
            n_layers + 1
        ),
        Some(k) => format!(
            "{n_layers} layers at {k} per rank need {ranks} layer rank(s), but the MPI world has {have} (mpirun -np {}); run with -np {}",
            have + 1,
            ranks + 1
        ),
    };
    Err(ConfigError::Invalid {
        name: if per.is_some() {
            "layers-per-rank"
        } else {
            "layers"
        },
        value: per.map_or_else(|| n_layers.to_string() + " layers", |k| k.to_string()),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(layers: &str) -> AdmmArgs {
        AdmmArgs {
            data: Some("d.h5".into()),
            layers: Some(layers.into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_the_world_size() {
        let c = AdmmConfig::from_args(&args("4,3,2"), 3).unwrap();
        assert_eq!(
            (c.rho, c.nu, c.iterations, c.layers_per_rank),
            (1e-3, 1e-3, 100, 1)
        );
        assert_eq!(c.sizes, vec![4, 3, 2]);
        assert_eq!((c.n_layers(), c.layer_ranks()), (2, 2));
        // Fewer ranks than layers without --layers-per-rank names both fixes.
        let e = AdmmConfig::from_args(&args("4,3,3,2"), 3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("3 layers") && e.contains("-np 4") && e.contains("--layers-per-rank"),
            "{e}"
        );
        // Packed: 5 layers at 2 per rank need 3 layer ranks.
        let mut a = args("4,3,3,3,3,2");
        a.layers_per_rank = Some(2);
        assert_eq!(AdmmConfig::from_args(&a, 4).unwrap().layer_ranks(), 3);
        let e = AdmmConfig::from_args(&a, 3).unwrap_err().to_string();
        assert!(
            e.contains("need 3 layer rank(s)") && e.contains("-np 4"),
            "{e}"
        );
        // The reference ignores the world.
        let mut r = args("4,3,3,2");
        r.reference = true;
        assert_eq!(AdmmConfig::from_args(&r, 1).unwrap().layer_ranks(), 1);
        // --epochs is --iterations.
        let mut e = args("4,3,2");
        e.epochs = Some(7);
        assert_eq!(AdmmConfig::from_args(&e, 3).unwrap().iterations, 7);
    }

    #[test]
    fn bad_settings_name_their_flag() {
        let check = |mutate: &dyn Fn(&mut AdmmArgs), flag: &str| {
            let mut a = args("4,3,2");
            mutate(&mut a);
            let e = AdmmConfig::from_args(&a, 3).unwrap_err().to_string();
            assert!(e.contains(flag), "{flag}: {e}");
        };
        check(&|a| a.rho = Some(0.0), "--rho = 0");
        check(&|a| a.rho = Some(-1.0), "--rho = -1");
        check(&|a| a.nu = Some(f64::NAN), "--nu");
        check(&|a| a.layers = Some("4,2".into()), "--layers");
        check(&|a| a.layers = Some("4,x,2".into()), "--layers");
        check(&|a| a.layers = Some("4,0,2".into()), "--layers");
        check(&|a| a.quantize_bits = Some(4), "--quantize-bits");
        check(&|a| a.max_staleness = Some(1000), "--max-staleness");
        check(&|a| a.iterations = Some(0), "--iterations");
        check(&|a| a.layers_per_rank = Some(0), "--layers-per-rank");
        check(&|a| a.layers = None, "layers is required");
    }

    #[test]
    fn sizes_are_checked_against_the_data() {
        let c = AdmmConfig::from_args(&args("4,3,2"), 3).unwrap();
        assert_eq!(c.check_data(4, Task::Binary, 10, true).unwrap(), (10, 0));
        assert_eq!(
            c.check_data(4, Task::Multiclass { classes: 2 }, 10, false)
                .unwrap(),
            (10, 0)
        );
        let e = c
            .check_data(5, Task::Binary, 10, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("5 features") && e.contains("--layers 5,...,2"),
            "{e}"
        );
        let e = c
            .check_data(4, Task::Multiclass { classes: 3 }, 10, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 classes"), "{e}");
        assert!(c.check_data(4, Task::Regression, 10, true).is_err());
        let mut h = args("4,3,2");
        h.holdout = Some(3);
        h.train_rows = Some(5);
        let h = AdmmConfig::from_args(&h, 3).unwrap();
        assert_eq!(h.check_data(4, Task::Binary, 10, false).unwrap(), (5, 3));
        assert!(h.check_data(4, Task::Binary, 10, true).is_err());
        assert!(h.check_data(4, Task::Binary, 7, false).is_err());
    }

    #[test]
    fn the_hash_ignores_iterations_but_not_rho() {
        let c = AdmmConfig::from_args(&args("4,3,2"), 3).unwrap();
        let more = AdmmConfig {
            iterations: 500,
            ..c.clone()
        };
        let other = AdmmConfig {
            rho: 0.5,
            ..c.clone()
        };
        assert_eq!(c.trajectory_hash(), more.trajectory_hash());
        assert_ne!(c.trajectory_hash(), other.trajectory_hash());
    }
}
