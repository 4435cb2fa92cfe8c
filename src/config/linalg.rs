//! The checked configurations of the coded linear-algebra jobs `matvec` (MDS codes, Lee et al.)
//! and `matmul` (polynomial codes, MatDot). Each also builds its code: a code that cannot exist
//! for the world's N workers is a configuration error like any other.

use serde::{Deserialize, Serialize};

use super::{invalid, read_settings, ConfigError, JobArgs, JobConfig};
use crate::linalg::{Family, MdsCode, PolyCode, PolyFamily};

/// Arguments of `gradcode matvec`.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MatvecArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub job: JobArgs,
    /// HDF5 matrix A: a gradcode dataset (`/X`, dense or CSR), a file with one 2-D dataset, or
    /// FILE.h5:/path naming a 2-D dataset or a CSR group (data, indices, indptr, shape).
    #[arg(long, value_name = "A.h5[:/PATH]")]
    pub matrix: Option<String>,
    /// Code: replication, mds-systematic, mds-vandermonde, mds-chebyshev, mds-rotation,
    /// mds-circulant, mds-systematic-rotation.
    #[arg(long)]
    pub code: Option<String>,
    /// Any K workers decode (replication: A is cut into K blocks, worker i holds block i mod K).
    #[arg(short, long)]
    pub k: Option<usize>,
    /// Mat-vecs to run (a fresh seeded x each) [default: 10].
    #[arg(long)]
    pub iterations: Option<u64>,
}

/// The checked settings of a mat-vec job (identical on every rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MatvecConfig {
    pub matrix: String,
    pub code: String,
    pub k: usize,
    pub iterations: u64,
    #[serde(flatten)]
    pub job: JobConfig,
    #[serde(skip)]
    pub family: Option<Family>,
}

impl MatvecConfig {
    /// Check `args` for an MPI world of `world` ranks; also builds the code.
    pub fn from_args(
        args: &MatvecArgs,
        world: usize,
    ) -> Result<(MatvecConfig, MdsCode), ConfigError> {
        let file = match &args.job.config {
            Some(p) => read_settings::<MatvecArgs>(p)?,
            None => MatvecArgs::default(),
        };
        let n = workers_of(world, "matvec")?;
        let job = JobConfig::from_args(&args.job, &file.job, "results/matvec", Some(n))?;
        let matrix = args
            .matrix
            .clone()
            .or(file.matrix)
            .ok_or(ConfigError::Missing("matrix"))?;
        let code = args
            .code
            .clone()
            .or(file.code)
            .ok_or(ConfigError::Missing("code"))?;
        let k = args.k.or(file.k).ok_or(ConfigError::Missing("k"))?;
        let iterations = args.iterations.or(file.iterations).unwrap_or(10);
        let family: Family = code.parse().map_err(|_| {
            invalid(
                "code",
                &code,
                "expected one of replication, mds-systematic, mds-vandermonde, mds-chebyshev, mds-rotation, mds-circulant, mds-systematic-rotation",
            )
        })?;
        if k == 0 || k > n {
            return Err(invalid(
                "k",
                k,
                format!(
                    "need 1 ≤ K ≤ N, and the MPI world has N = {n} workers (mpirun -np {world})"
                ),
            ));
        }
        if iterations == 0 {
            return Err(invalid("iterations", 0, "need at least one iteration"));
        }
        let mds = MdsCode::new(family, n, k).map_err(|e| invalid("code", &code, e.to_string()))?;
        Ok((
            MatvecConfig {
                matrix,
                code,
                k,
                iterations,
                job,
                family: Some(family),
            },
            mds,
        ))
    }

    /// Workers N.
    pub fn workers(&self) -> usize {
        self.job.workers
    }

    /// The code's name as given on the command line.
    pub fn code_name(&self) -> String {
        match self.family {
            Some(Family::Replication) => "replication".into(),
            Some(f) => format!("mds-{}", f.name()),
            None => self.code.clone(),
        }
    }

    /// The effective config as TOML (`--config` of it re-runs the job).
    pub fn to_toml(&self) -> String {
        settings_toml("matvec", self)
    }
}

/// Arguments of `gradcode matmul`.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MatmulArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub job: JobArgs,
    /// HDF5 matrix A (s × ca): a gradcode dataset (`/X`), a file with one 2-D dataset, or
    /// FILE.h5:/path.
    #[arg(long, value_name = "A.h5[:/PATH]")]
    pub a: Option<String>,
    /// HDF5 matrix B (s × cb), same rows as A; same forms as --a.
    #[arg(long, value_name = "B.h5[:/PATH]")]
    pub b: Option<String>,
    /// Code: poly-real, poly-chebyshev, poly-rotation (threshold mp) or matdot (2m − 1).
    #[arg(long)]
    pub code: Option<String>,
    /// A is cut into m column blocks (matdot: A and B into m row blocks).
    #[arg(short, long)]
    pub m: Option<usize>,
    /// B is cut into p column blocks (ignored by matdot) [default: 1].
    #[arg(short, long)]
    pub p: Option<usize>,
}

/// The checked settings of a matmul job (identical on every rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MatmulConfig {
    pub a: String,
    pub b: String,
    pub code: String,
    pub m: usize,
    pub p: usize,
    #[serde(flatten)]
    pub job: JobConfig,
    #[serde(skip)]
    pub family: Option<PolyFamily>,
}

impl MatmulConfig {
    /// Check `args` for an MPI world of `world` ranks; also builds the code.
    pub fn from_args(
        args: &MatmulArgs,
        world: usize,
    ) -> Result<(MatmulConfig, PolyCode), ConfigError> {
        let file = match &args.job.config {
            Some(p) => read_settings::<MatmulArgs>(p)?,
            None => MatmulArgs::default(),
        };
        let n = workers_of(world, "matmul")?;
        let job = JobConfig::from_args(&args.job, &file.job, "results/matmul", Some(n))?;
        let a = args.a.clone().or(file.a).ok_or(ConfigError::Missing("a"))?;
        let b = args.b.clone().or(file.b).ok_or(ConfigError::Missing("b"))?;
        let code = args
            .code
            .clone()
            .or(file.code)
            .ok_or(ConfigError::Missing("code"))?;
        let m = args.m.or(file.m).ok_or(ConfigError::Missing("m"))?;
        let p = args.p.or(file.p).unwrap_or(1);
        let family: PolyFamily = code.parse().map_err(|_| {
            invalid(
                "code",
                &code,
                "expected one of poly-real, poly-chebyshev, poly-rotation, matdot",
            )
        })?;
        if m == 0 || p == 0 {
            return Err(invalid("m", m, "need m ≥ 1 and p ≥ 1"));
        }
        let threshold = match family {
            PolyFamily::MatDot => 2 * m - 1,
            _ => m * p,
        };
        if threshold > n {
            return Err(invalid(
                "m",
                m,
                format!(
                    "{family} with m = {m}, p = {p} needs {threshold} workers to decode, and the MPI world has N = {n} (mpirun -np {world})"
                ),
            ));
        }
        let poly =
            PolyCode::new(family, n, m, p).map_err(|e| invalid("code", &code, e.to_string()))?;
        Ok((
            MatmulConfig {
                a,
                b,
                code,
                m,
                p,
                job,
                family: Some(family),
            },
            poly,
        ))
    }

    /// Workers N.
    pub fn workers(&self) -> usize {
        self.job.workers
    }

    /// The effective config as TOML (`--config` of it re-runs the job).
    pub fn to_toml(&self) -> String {
        settings_toml("matmul", self)
    }
}

pub(super) fn settings_toml(job: &str, cfg: &impl Serialize) -> String {
    let body = toml::to_string_pretty(cfg)
        .unwrap_or_else(|e| format!("# could not serialize config: {e}\n"));
    format!(
        "# gradcode {} effective config: `gradcode {job} --config THIS_FILE` re-runs it.\n{body}",
        crate::VERSION
    )
}

/// The worker count N of a 1 + N rank job, refusing a world of fewer than two ranks.
fn workers_of(world: usize, job: &'static str) -> Result<usize, ConfigError> {
    if world < 2 {
        return Err(ConfigError::WorldTooSmall {
            job,
            world,
            hint: "",
        });
    }
    Ok(world - 1)
}
