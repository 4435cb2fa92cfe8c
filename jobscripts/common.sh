# shellcheck shell=bash
# jobscripts/common.sh: shared by train.sbatch, sweep.sbatch and workstation.sh. Source it; do not run it.
#
# Provides: strict mode, one BLAS/OpenMP thread per rank, project root (GRADCODE_ROOT), the run folder
# (RUN_DIR), provenance capture, the MPI launcher, USR1 forwarding and checkpoint/requeue handling.
#
# Environment it reads (all optional):
#   GRADCODE_ROOT     project root (default: the submit dir if it holds jobscripts/, else this file's ../)
#   GRADCODE          the binary (default: $GRADCODE_ROOT/target/release/gradcode)
#   RESULTS_DIR       parent of run folders (default: $GRADCODE_ROOT/results)
#   RUN_DIR           the run folder itself (default: $RESULTS_DIR/<job-name>-<job-id>,
#                     for array tasks <job-name>-<array-job-id>_<task-id>)
#   GRADCODE_LAUNCHER srun | mpirun (default: srun inside a Slurm allocation when it offers the MPI
#                     plugin we need, else mpirun)
#   GRADCODE_MPI      openmpi | mpich (default: from `mpirun --version`); picks srun --mpi=pmix | pmi2
#   GRADCODE_SRUN_MPI value for srun --mpi= (overrides the choice above)
#   GRADCODE_MPIRUN_ARGS  extra mpirun arguments (word-split), e.g. "--mca btl self,vader"
#   GRADCODE_REQUEUE  1 (default) requeue an interrupted Slurm job; 0 just exit 75
#   GRADCODE_LAUNCH_GRACE  seconds after the launch during which a USR1 is held back (default 5)
set -euo pipefail

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

gc_log() { printf '[gradcode-job %(%F %T)T] %s\n' -1 "$*" >&2; }
gc_die() {
  gc_log "ERROR: $*"
  exit 2
}

# --- project root --------------------------------------------------------------------------------
# Under sbatch the script runs from a spool copy, so BASH_SOURCE of the job script is useless; the
# submit directory (SLURM_SUBMIT_DIR) or GRADCODE_ROOT tells us where the project is.
if [[ -z "${GRADCODE_ROOT:-}" ]]; then
  if [[ -n "${SLURM_SUBMIT_DIR:-}" && -f "$SLURM_SUBMIT_DIR/jobscripts/common.sh" ]]; then
    GRADCODE_ROOT="$SLURM_SUBMIT_DIR"
  else
    GRADCODE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  fi
fi
export GRADCODE_ROOT
cd "$GRADCODE_ROOT" # relative DATA/CONFIG paths are relative to the project root
export GRADCODE="${GRADCODE:-$GRADCODE_ROOT/target/release/gradcode}"
RESULTS_DIR="${RESULTS_DIR:-$GRADCODE_ROOT/results}"

# OpenMPI refuses to start as root without these (containers, CI, test clusters).
if [[ $EUID -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

gc_in_slurm() { [[ -n "${SLURM_JOB_ID:-}" ]]; }

# --- run folder ----------------------------------------------------------------------------------
# gc_run_dir DEFAULT_JOB_NAME: sets and creates RUN_DIR (kept across requeues: same job id).
gc_run_dir() {
  local name id
  if [[ -z "${RUN_DIR:-}" ]]; then
    name="${SLURM_JOB_NAME:-${1:-gradcode}}"
    if [[ -n "${SLURM_ARRAY_JOB_ID:-}" && -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
      id="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    elif gc_in_slurm; then
      id="$SLURM_JOB_ID"
    else
      id="local-$(date +%Y%m%d-%H%M%S)-$$"
    fi
    RUN_DIR="$RESULTS_DIR/$name-$id"
  fi
  mkdir -p "$RUN_DIR"
  RUN_DIR="$(cd "$RUN_DIR" && pwd)"
  export RUN_DIR
}

# --- provenance ----------------------------------------------------------------------------------
# gc_provenance: RUN_DIR/provenance/attempt-K/ (K = 0, 1, ... one per start, so requeues keep history).
gc_provenance() {
  local base="$RUN_DIR/provenance" k=0 p
  while [[ -e "$base/attempt-$k" ]]; do k=$((k + 1)); done
  p="$base/attempt-$k"
  mkdir -p "$p"
  GC_PROVENANCE="$p"
  {
    echo "date: $(date -u +%FT%TZ)"
    echo "hostname: $(hostname)"
    echo "user: $(id -un 2>/dev/null || echo "$EUID")"
    echo "root: $GRADCODE_ROOT"
    echo "binary: $GRADCODE"
    echo "attempt: $k"
    echo "slurm_restart_count: ${SLURM_RESTART_COUNT:-}"
  } >"$p/info.txt"
  if command -v git >/dev/null 2>&1 && git -C "$GRADCODE_ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    {
      echo "revision: $(git -C "$GRADCODE_ROOT" rev-parse HEAD 2>/dev/null || echo none)"
      echo "branch: $(git -C "$GRADCODE_ROOT" rev-parse --abbrev-ref HEAD 2>/dev/null || echo none)"
      if [[ -n "$(git -C "$GRADCODE_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
        echo "dirty: yes"
      else
        echo "dirty: no"
      fi
    } >"$p/git.txt"
    git -C "$GRADCODE_ROOT" diff HEAD >"$p/git.diff" 2>/dev/null || true
    [[ -s "$p/git.diff" ]] || rm -f "$p/git.diff"
  fi
  if gc_in_slurm && command -v scontrol >/dev/null 2>&1; then
    scontrol show job "$SLURM_JOB_ID" >"$p/scontrol-job.txt" 2>&1 || true
  fi
  if type module >/dev/null 2>&1; then
    (set +eu && module list) >"$p/modules.txt" 2>&1 || true
  fi
  env | LC_ALL=C sort |
    grep -E '^(SLURM_|SBATCH_|OMPI_|MPI|PMIX_|PMI_|HYDRA_|I_MPI_|UCX_|OMP_|OPENBLAS_|MKL_|GRADCODE|RUN_DIR=|RESULTS_DIR=|HOSTNAME=|[A-Z_]*PATH=)' \
      >"$p/env.txt" || true
  { timeout 20 "$GRADCODE" --version 2>&1 || true; } >"$p/gradcode-version.txt"
  { mpirun --version 2>&1 | head -n 2 || true; } >"$p/mpi-version.txt"
}

# --- launcher ------------------------------------------------------------------------------------
# Facts behind the default (checked on Debian 12, Slurm 22.05, Open MPI 4.1.4 by tests/slurm/run.sh):
#   * Open MPI under `srun --mpi=pmix` works (Slurm's pmix plugin serves PMIx to Open MPI's ext3x client).
#   * Open MPI under `srun --mpi=pmi2` or `--mpi=none` aborts in MPI_Init: Debian's Open MPI is built
#     without PMI-1/PMI-2 (s1/s2) support.
#   * `mpirun` inside the allocation also works (it reads the allocation from SLURM_* variables) and is
#     the fallback where srun lacks the pmix plugin (`srun --mpi=list`).
#   * MPICH (hydra) uses PMI-2: `srun --mpi=pmi2`, or its own mpiexec outside srun.
# srun is preferred inside Slurm: the ranks are a proper job step (accounting, cgroups, Slurm's own CPU
# binding, clean kill on timeout), and srun forwards USR1 to every task, as mpirun does.
gc_mpi_flavour() {
  if [[ -n "${GRADCODE_MPI:-}" ]]; then
    echo "$GRADCODE_MPI"
  elif mpirun --version 2>/dev/null | grep -qi 'open mpi'; then
    echo openmpi
  elif { mpirun --version 2>/dev/null || mpiexec --version 2>/dev/null; } | grep -qiE 'mpich|hydra|intel'; then
    echo mpich
  else
    echo openmpi
  fi
}

gc_cpus() { # CPUs we may use on this node
  # (GNU nproc obeys OMP_NUM_THREADS, which we set to 1 above)
  if [[ -n "${SLURM_CPUS_ON_NODE:-}" ]]; then echo "$SLURM_CPUS_ON_NODE"; else env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; fi
}

# gc_launcher NP: sets the array GC_LAUNCH to the command prefix that starts NP ranks.
gc_launcher() {
  local np=$1 kind="${GRADCODE_LAUNCHER:-}" flavour plugin
  flavour=$(gc_mpi_flavour)
  if [[ "$flavour" == openmpi ]]; then plugin=pmix; else plugin=pmi2; fi
  plugin="${GRADCODE_SRUN_MPI:-$plugin}"
  if [[ -z "$kind" ]]; then
    kind=mpirun
    if gc_in_slurm && command -v srun >/dev/null 2>&1; then
      if srun --mpi=list 2>&1 | grep -qE "^[[:space:]]*${plugin}([[:space:]]|$)"; then
        kind=srun
      else
        gc_log "srun has no --mpi=$plugin plugin (srun --mpi=list); falling back to mpirun"
      fi
    fi
  fi
  case "$kind" in
    srun)
      gc_in_slurm || gc_die "GRADCODE_LAUNCHER=srun needs a Slurm allocation"
      GC_LAUNCH=(srun "--mpi=$plugin" --ntasks="$np")
      ;;
    mpirun)
      if [[ "$flavour" == openmpi ]]; then
        GC_LAUNCH=(mpirun -np "$np")
        # More ranks than CPUs (a workstation, or sbatch --overcommit): Open MPI needs --oversubscribe
        # (which also makes idle ranks yield), and binding several ranks to one core would serialise them.
        if ! gc_in_slurm || ((np > $(gc_cpus))); then
          GC_LAUNCH+=(--oversubscribe --bind-to none)
        fi
      else
        GC_LAUNCH=(mpiexec -n "$np")
      fi
      if [[ -n "${GRADCODE_MPIRUN_ARGS:-}" ]]; then
        local -a extra
        read -r -a extra <<<"$GRADCODE_MPIRUN_ARGS"
        GC_LAUNCH+=("${extra[@]}")
      fi
      ;;
    *) gc_die "GRADCODE_LAUNCHER must be srun or mpirun, not '$kind'" ;;
  esac
}

# --- training arguments from the environment -----------------------------------------------------
# gc_train_args: sets the array GC_ARGS from the variables that are set (and non-empty); flags given
# here override the TOML file in CONFIG. RUN_DIR is always passed as --out.
gc_train_args() {
  GC_ARGS=()
  [[ -n "${CONFIG:-}" ]] && { [[ -f "$CONFIG" ]] || gc_die "CONFIG=$CONFIG not found"; GC_ARGS+=(--config "$CONFIG"); }
  [[ -n "${DATA:-}" ]] && GC_ARGS+=(--data "$DATA")
  [[ -n "${MODEL:-}" ]] && GC_ARGS+=(--model "$MODEL")
  [[ -n "${CODE:-}" ]] && GC_ARGS+=(--code "$CODE")
  [[ -n "${S:-}" ]] && GC_ARGS+=(-s "$S")
  [[ -n "${DEADLINE_MS:-}" ]] && GC_ARGS+=(--deadline-ms "$DEADLINE_MS")
  [[ -n "${ITERATIONS:-}" ]] && GC_ARGS+=(--iterations "$ITERATIONS")
  [[ -n "${LR:-}" ]] && GC_ARGS+=(--lr "$LR")
  [[ -n "${STRAGGLERS:-}" ]] && GC_ARGS+=(--straggler-model "$STRAGGLERS")
  [[ -n "${SEED:-}" ]] && GC_ARGS+=(--seed "$SEED")
  [[ -n "${CHECKPOINT_EVERY:-}" ]] && GC_ARGS+=(--checkpoint-every "$CHECKPOINT_EVERY")
  GC_ARGS+=(--out "$RUN_DIR")
  if [[ -n "${EXTRA_ARGS:-}" ]]; then
    local -a extra
    read -r -a extra <<<"$EXTRA_ARGS"
    GC_ARGS+=("${extra[@]}")
  fi
  # A checkpoint at start means this is a restart (requeue, or a rerun with the same RUN_DIR).
  if [[ -f "$RUN_DIR/ckpt.h5" ]]; then
    gc_log "found $RUN_DIR/ckpt.h5: resuming"
    GC_ARGS+=(--resume)
  elif [[ -e "$RUN_DIR/run.h5" && "${SLURM_RESTART_COUNT:-0}" -gt 0 ]]; then
    gc_log "requeued without a checkpoint: starting over (--force)"
    GC_ARGS+=(--force)
  fi
  return 0
}

# --- running with USR1 forwarding ----------------------------------------------------------------
GC_CHILD=""
GC_USR1=0
GC_LAUNCHED_AT=0
gc_on_usr1() {
  GC_USR1=$((GC_USR1 + 1))
  if [[ -n "$GC_CHILD" ]] && kill -0 "$GC_CHILD" 2>/dev/null; then
    # Right after the launch the ranks may not have installed their USR1 handler yet (the default
    # action would kill them): hold the signal until GRADCODE_LAUNCH_GRACE seconds have passed.
    local left=$((GC_LAUNCHED_AT + ${GRADCODE_LAUNCH_GRACE:-5} - SECONDS))
    ((left > 0)) && sleep "$left"
    gc_log "USR1: forwarding to launcher (pid $GC_CHILD): checkpoint at the next iteration, then exit 75"
    kill -USR1 "$GC_CHILD" 2>/dev/null || true
  else
    gc_log "USR1 before the launcher started: will forward it once it runs"
  fi
}
trap gc_on_usr1 USR1

# gc_run NP: starts GC_LAUNCH + gradcode train + GC_ARGS in the background, waits for it (also across
# trapped signals) and sets GC_RC to its exit code.
gc_run() {
  local np=$1 seen
  gc_launcher "$np"
  [[ -x "$GRADCODE" ]] || gc_die "GRADCODE=$GRADCODE is not executable (build with: cargo build --release)"
  gc_log "run folder: $RUN_DIR"
  gc_log "launch: ${GC_LAUNCH[*]} $GRADCODE train ${GC_ARGS[*]}"
  if [[ -n "${GC_PROVENANCE:-}" ]]; then
    printf '%q ' "${GC_LAUNCH[@]}" "$GRADCODE" train "${GC_ARGS[@]}" >"$GC_PROVENANCE/command.txt"
    echo >>"$GC_PROVENANCE/command.txt"
  fi
  GC_LAUNCHED_AT=$SECONDS
  if gc_in_slurm; then
    "${GC_LAUNCH[@]}" "$GRADCODE" train "${GC_ARGS[@]}" &
  else
    # Outside Slurm, Ctrl-C and TERM become USR1 for the ranks (checkpoint, exit 75, as the ranks
    # do on SIGINT/SIGTERM themselves): the launcher runs in its own session, so a terminal's
    # Ctrl-C reaches this script only. (Open MPI's mpirun, hit by SIGINT or SIGTERM itself,
    # aborts the job and returns 1 whatever the ranks returned.) Under Slurm, Slurm's own
    # signalling (--signal=B:USR1) is the way.
    trap gc_on_usr1 INT TERM
    setsid "${GC_LAUNCH[@]}" "$GRADCODE" train "${GC_ARGS[@]}" &
  fi
  GC_CHILD=$!
  if ((GC_USR1 > 0)); then # the signal came before the ranks existed: pass it on (after the grace)
    gc_on_usr1
  fi
  while true; do
    seen=$GC_USR1
    GC_RC=0
    wait "$GC_CHILD" || GC_RC=$?
    # wait returns >128 when a trapped signal interrupted it; the child still runs: wait again.
    if ((GC_USR1 != seen && GC_RC > 128)); then continue; fi
    break
  done
  GC_CHILD=""
  gc_log "gradcode exited with code $GC_RC"
  [[ -n "${GC_PROVENANCE:-}" ]] && echo "$GC_RC" >"$GC_PROVENANCE/exit_code"
  return 0
}

# gc_requeue_allowed: the job was submitted requeueable (--requeue / JobRequeue=1).
gc_requeue_allowed() {
  [[ "${GRADCODE_REQUEUE:-1}" == 1 ]] || return 1
  gc_in_slurm || return 1
  scontrol show job "$SLURM_JOB_ID" 2>/dev/null | grep -qw 'Requeue=1'
}

# gc_finish: exits with GC_RC; 75 (interrupted, checkpoint written) becomes `scontrol requeue`.
gc_finish() {
  case "$GC_RC" in
    0) gc_log "complete: $RUN_DIR/run.h5" ;;
    3) gc_log "finished degraded (a worker was silent): $RUN_DIR/run.h5" ;;
    75)
      if [[ ! -f "$RUN_DIR/ckpt.h5" ]]; then
        gc_log "interrupted but no checkpoint in $RUN_DIR; not requeueing"
      elif gc_requeue_allowed; then
        gc_log "interrupted with a checkpoint: scontrol requeue $SLURM_JOB_ID (restart resumes)"
        if scontrol requeue "$SLURM_JOB_ID"; then
          # Slurm now ends this batch script and queues the job again with the same id.
          exit 0
        fi
        gc_log "scontrol requeue failed; resubmit with RUN_DIR=$RUN_DIR to resume"
      elif gc_in_slurm; then
        gc_log "interrupted; job not requeueable: resubmit with RUN_DIR=$RUN_DIR to resume"
      else
        gc_log "interrupted; run again with RUN_DIR=$RUN_DIR to resume from the checkpoint"
      fi
      ;;
    1) gc_log "runtime failure (exit 1); see the log above and $RUN_DIR" ;;
    2) gc_log "bad input or configuration (exit 2)" ;;
    *) gc_log "gradcode failed with exit code $GC_RC" ;;
  esac
  exit "$GC_RC"
}
