# shellcheck shell=bash
# jobscripts/common.sh: shared by train.sbatch, sweep.sbatch and workstation.sh. Source it; do not run it.
#
# Provides: strict mode, one BLAS/OpenMP thread per rank, project root (GRADCODE_ROOT), the run folder
# (RUN_DIR), provenance capture, the MPI launcher, USR1 forwarding and checkpoint/requeue handling.
#
# Environment it reads (all optional):
#   GRADCODE_ROOT     project root (default: the submit dir if it holds jobscripts/, else this file's ../)
#   GRADCODE          the binary (default: $GRADCODE_ROOT/target/release/gradcode)
#   RESULTS_DIR       parent of run folders (default: $GRADCODE_ROOT/results; for an installed copy,
#                     which has a file INSTALLED in GRADCODE_ROOT: the submit dir's results/)
#   RUN_DIR           the run folder itself (default: $RESULTS_DIR/<job-name>-<job-id>,
#                     for array tasks <job-name>-<array-job-id>_<task-id>)
#   GRADCODE_LAUNCHER srun | mpirun (default: srun inside a Slurm allocation when it offers the MPI
#                     plugin we need, else mpirun)
#   GRADCODE_MPI      openmpi | mpich (default: from `mpirun --version`); picks srun --mpi=pmix | pmi2
#   GRADCODE_SRUN_MPI value for srun --mpi= (overrides the choice above)
#   GRADCODE_MPIRUN_ARGS  extra mpirun arguments (word-split), e.g. "--mca btl self,vader"
#   GRADCODE_REQUEUE  1 (default) requeue an interrupted Slurm job; 0 just exit 75
#   GRADCODE_LAUNCH_GRACE  seconds after the launch during which a USR1 is held back (default 5)
#   GRADCODE_NET_IF   interfaces (names or CIDR subnets, comma-separated) Open MPI may use for TCP
#                     (btl_tcp_if_include and oob_tcp_if_include); default on a multi-node job: the
#                     interface that routes to the submit host; `none`: leave Open MPI's own choice
#   GRADCODE_MPI_NET  auto (default) | tcp | ucx: Open MPI's transport between nodes on a multi-node job.
#                     ucx: the UCX PML over TCP on the GRADCODE_NET_IF interfaces only (the ranks listen
#                     only on those addresses); tcp: the ob1 PML and TCP BTL (they also listen on the
#                     wildcard address, Open MPI 4.1); auto: ucx when Open MPI has the UCX PML, the
#                     node no RDMA device (with one, Open MPI's own choice is kept), no node more tasks
#                     than CPUs, and the user set neither OMPI_MCA_pml nor OMPI_MCA_btl; else tcp
#   RANK0_NODE_EXCLUSIVE  1: rank 0 alone on the first node (its other slots stay idle)
#   GRADCODE_NO_KILL  1 (default): srun --no-kill, a failed node does not kill the job step: its ranks
#                     go silent and rank 0 finishes degraded (exit 3) or by its policy; 0: Slurm's
#                     default (the step is killed; with `sbatch --no-kill=off` the job is requeued)
#   HOSTFILE          mpirun without Slurm across machines: Open MPI hostfile ("host slots=N" lines)
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
# An installed copy (`make install`, `module load gradcode` sets GRADCODE_ROOT and GRADCODE) is
# read-only: relative DATA/CONFIG paths and results/ are then relative to the submit directory.
if [[ -f "$GRADCODE_ROOT/INSTALLED" ]]; then
  GC_WORKDIR="${SLURM_SUBMIT_DIR:-$PWD}"
else
  GC_WORKDIR="$GRADCODE_ROOT"
fi
cd "$GC_WORKDIR" # relative DATA/CONFIG paths are relative to the project root (or the submit dir)
export GRADCODE="${GRADCODE:-$GRADCODE_ROOT/target/release/gradcode}"
RESULTS_DIR="${RESULTS_DIR:-$GC_WORKDIR/results}"

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

# --- node layout and network ----------------------------------------------------------------------
# gc_expand_tasks "3(x2),2" -> "3 3 2": Slurm's compressed tasks-per-node list, one count per node.
gc_expand_tasks() {
  local part out=() n k
  IFS=, read -r -a part <<<"$1"
  for n in "${part[@]}"; do
    if [[ "$n" =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then
      for ((k = 0; k < BASH_REMATCH[2]; k++)); do out+=("${BASH_REMATCH[1]}"); done
    else
      out+=("$n")
    fi
  done
  echo "${out[*]}"
}

# gc_slurm_np: ranks of this job. `sbatch --nodes=3 --ntasks-per-node=3` keeps the script's --ntasks=5
# line in SLURM_NTASKS but allocates 3 per node: a per-node request wins (SLURM_TASKS_PER_NODE summed).
gc_slurm_np() {
  local total=0 n
  if [[ -n "${SLURM_NTASKS_PER_NODE:-}" && -n "${SLURM_TASKS_PER_NODE:-}" ]]; then
    for n in $(gc_expand_tasks "$SLURM_TASKS_PER_NODE"); do total=$((total + n)); done
    echo "$total"
  else
    echo "${SLURM_NTASKS:?SLURM_NTASKS unset: submit with --ntasks=WORKERS+1}"
  fi
}

# gc_layout NP: sets GC_NP, the rank count. With RANK0_NODE_EXCLUSIVE=1 on a multi-node allocation it
# writes RUN_DIR/hostfile (one line per rank: the first node once, then every other node as often as
# it has slots) and GC_NP is 1 + the other nodes' slots (the first node's other slots stay idle).
gc_layout() {
  local hosts counts i n
  GC_NP=$1
  if [[ "${RANK0_NODE_EXCLUSIVE:-0}" != 1 ]] || ! gc_in_slurm || ((${SLURM_JOB_NUM_NODES:-1} < 2)); then
    return 0
  fi
  mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
  read -r -a counts <<<"$(gc_expand_tasks "$SLURM_TASKS_PER_NODE")"
  ((${#hosts[@]} >= 2 && ${#counts[@]} == ${#hosts[@]})) || gc_die "RANK0_NODE_EXCLUSIVE: cannot read the node list"
  {
    echo "${hosts[0]}"
    for ((i = 1; i < ${#hosts[@]}; i++)); do
      for ((n = 0; n < counts[i]; n++)); do echo "${hosts[i]}"; done
    done
  } >"$RUN_DIR/hostfile"
  GC_RANK_HOSTFILE="$RUN_DIR/hostfile"
  GC_NP=$(wc -l <"$GC_RANK_HOSTFILE")
  gc_log "RANK0_NODE_EXCLUSIVE=1: rank 0 alone on ${hosts[0]}, $((GC_NP - 1)) workers on the other nodes"
}

# gc_record_layout: on a multi-node srun launch, the host of every rank into provenance/layout.txt
# ("RANK: HOST" lines, one short job step running hostname with the same layout).
gc_record_layout() {
  [[ "${GC_LAUNCH[0]}" == srun && ${SLURM_JOB_NUM_NODES:-1} -gt 1 && -n "${GC_PROVENANCE:-}" ]] || return 0
  timeout 60 "${GC_LAUNCH[@]}" --mpi=none --label hostname 2>/dev/null | sort -n >"$GC_PROVENANCE/layout.txt" || true
}

# gc_net: restrict Open MPI's TCP (MPI traffic and its out-of-band channel) to the cluster interface.
gc_net() {
  local ifs="${GRADCODE_NET_IF:-}" addr dev
  if [[ -z "$ifs" ]] && gc_in_slurm && ((${SLURM_JOB_NUM_NODES:-1} > 1)); then
    # The interface holding the address Slurm reaches this node at (NodeAddr) is the cluster network.
    addr=$(scontrol show node "${SLURMD_NODENAME:-$(hostname -s)}" 2>/dev/null | grep -oE 'NodeAddr=[^ ]+' | cut -d= -f2)
    [[ -n "$addr" && ! "$addr" =~ ^[0-9.]+$ ]] && addr=$(getent ahostsv4 "$addr" 2>/dev/null | awk 'NR == 1 {print $1}')
    if [[ -n "$addr" ]]; then
      dev=$(ip -o addr show to "$addr" 2>/dev/null | awk 'NR == 1 {print $2}')
      [[ -n "$dev" && "$dev" != lo ]] && ifs="$dev"
    fi
    [[ -n "$ifs" ]] || gc_log "network: cannot tell the cluster interface (NodeAddr '$addr'); set GRADCODE_NET_IF"
  fi
  local net="${GRADCODE_MPI_NET:-auto}"
  case "$net" in
    auto | tcp | ucx) ;;
    *) gc_die "GRADCODE_MPI_NET=$net: expected auto, tcp or ucx" ;;
  esac
  if [[ -z "$ifs" || "$ifs" == none ]]; then
    [[ "$net" == ucx ]] && gc_log "network: GRADCODE_MPI_NET=ucx not applied: no cluster interface (a single-node job, or GRADCODE_NET_IF=none)"
    return 0
  fi
  export OMPI_MCA_btl_tcp_if_include="${OMPI_MCA_btl_tcp_if_include:-$ifs}"
  export OMPI_MCA_oob_tcp_if_include="${OMPI_MCA_oob_tcp_if_include:-$ifs}"
  gc_log "network: Open MPI TCP restricted to $OMPI_MCA_btl_tcp_if_include (GRADCODE_NET_IF)"
  local asked="$net"
  [[ "$net" == auto ]] && net=$(gc_net_auto)
  if [[ "$net" == ucx ]]; then
    gc_net_ucx "$ifs"
  else
    gc_log "network: the MPI library's own transport choice (Open MPI: the TCP BTL on Ethernet) (GRADCODE_MPI_NET=$asked)"
  fi
  return 0
}

# gc_net_auto: ucx where it is the better choice for a TCP network, else tcp. ucx needs Open MPI with
# the UCX PML, no OMPI_MCA_pml or OMPI_MCA_btl set by the user, no RDMA device on this node (with one,
# Open MPI's own choice, UCX over InfiniBand/RoCE, is kept: UCX forced onto TCP would be slower), and
# no more tasks on a node than it has CPUs (UCX polls while it waits: measured on 9 ranks over 2
# cores, 2.4x slower than the TCP BTL; one rank per core, the same speed; docs/cluster.md).
gc_net_auto() {
  local rdma t tpn=0
  rdma=$(ls /sys/class/infiniband 2>/dev/null | head -1) || true
  for t in $(sed -E 's/\(x[0-9]+\)//g; s/,/ /g' <<<"${SLURM_TASKS_PER_NODE:-}"); do
    [[ "$t" =~ ^[0-9]+$ ]] && ((t > tpn)) && tpn=$t
  done
  if [[ -n "${OMPI_MCA_pml:-}${OMPI_MCA_btl:-}" ]]; then
    echo tcp
  elif [[ -n "$rdma" ]]; then
    echo tcp
  elif ((tpn > ${SLURM_CPUS_ON_NODE:-tpn})); then
    echo tcp
  elif [[ "$(gc_mpi_flavour)" == openmpi ]] && ompi_info 2>/dev/null | grep -q 'MCA pml: ucx'; then
    echo ucx
  else
    echo tcp
  fi
}

# gc_net_ucx IFS: GRADCODE_MPI_NET=ucx, Open MPI's UCX PML over TCP on the cluster interface only.
# UCX's TCP transport binds its listener to the interface's own address, where Open MPI 4.1's TCP BTL
# listens on the wildcard address whatever btl_tcp_if_include says: with UCX the ranks listen on no
# other interface. Shared memory (UCX sm) between ranks on a node; the TCP BTL is left out.
gc_net_ucx() {
  local item dev flavour items=() devs=()
  flavour=$(gc_mpi_flavour)
  [[ "$flavour" == openmpi ]] || gc_die "GRADCODE_MPI_NET=ucx needs Open MPI (this is $flavour)"
  if command -v ompi_info >/dev/null 2>&1 && ! ompi_info 2>/dev/null | grep -q 'MCA pml: ucx'; then
    gc_die "GRADCODE_MPI_NET=ucx: this Open MPI has no UCX PML (ompi_info shows no 'MCA pml: ucx'); use GRADCODE_MPI_NET=tcp"
  fi
  IFS=, read -ra items <<<"$1"
  for item in "${items[@]}"; do # UCX_NET_DEVICES takes device names: a subnet becomes its interface
    if [[ "$item" == */* ]]; then
      dev=$(ip -o -4 addr show to "$item" 2>/dev/null | awk 'NR == 1 {print $2}')
      [[ -n "$dev" ]] || gc_die "GRADCODE_MPI_NET=ucx: no interface on this node in $item (GRADCODE_NET_IF)"
      devs+=("$dev")
    else
      devs+=("$item")
    fi
  done
  export OMPI_MCA_pml="${OMPI_MCA_pml:-ucx}" OMPI_MCA_btl="${OMPI_MCA_btl:-self,vader}"
  export OMPI_MCA_osc="${OMPI_MCA_osc:-ucx}"
  export OMPI_MCA_pml_ucx_tls="${OMPI_MCA_pml_ucx_tls:-any}" OMPI_MCA_pml_ucx_devices="${OMPI_MCA_pml_ucx_devices:-any}"
  export UCX_TLS="${UCX_TLS:-tcp,sm,self}"
  UCX_NET_DEVICES="${UCX_NET_DEVICES:-$(IFS=,; echo "${devs[*]}")}"
  export UCX_NET_DEVICES
  gc_log "network: Open MPI over UCX ($UCX_TLS), devices $UCX_NET_DEVICES (GRADCODE_MPI_NET=${GRADCODE_MPI_NET:-auto})"
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
      # A node lost mid-run (link cut, node crash) is a set of silent workers to gradcode, which
      # decodes without them and ends by itself with its result written; without --no-kill Slurm
      # kills the step (and requeues the job) once it declares the node DOWN, racing rank 0.
      [[ "${GRADCODE_NO_KILL:-1}" == 1 ]] && GC_LAUNCH+=(--no-kill)
      if [[ -n "${GC_RANK_HOSTFILE:-}" ]]; then
        export SLURM_HOSTFILE="$GC_RANK_HOSTFILE"
        GC_LAUNCH+=(--distribution=arbitrary)
      fi
      ;;
    mpirun)
      if [[ "$flavour" == openmpi ]]; then
        GC_LAUNCH=(mpirun -np "$np")
        if [[ -n "${GC_RANK_HOSTFILE:-}" ]]; then
          GC_LAUNCH+=(--hostfile "$GC_RANK_HOSTFILE" --map-by slot)
        elif [[ -n "${HOSTFILE:-}" ]]; then
          [[ -f "$HOSTFILE" ]] || gc_die "HOSTFILE=$HOSTFILE not found"
          GC_LAUNCH+=(--hostfile "$HOSTFILE")
        fi
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
  if [[ -n "${DATA:-}" ]]; then
    [[ -f "$DATA" ]] || gc_die "DATA=$DATA: file not found (in $PWD). Make it first, e.g.
    $GRADCODE data synth --kind logistic --rows 2000 --features 20 --seed 1 --out $DATA
  or run \`make data\` and use DATA=datasets/fashion-mnist.h5 MODEL=softmax"
    GC_ARGS+=(--data "$DATA")
  fi
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
  gc_net
  gc_layout "$np"
  np=$GC_NP
  gc_launcher "$np"
  gc_record_layout
  [[ -x "$GRADCODE" ]] || gc_die "GRADCODE=$GRADCODE is not executable (build with: cargo build --release)"
  gc_log "run folder: $RUN_DIR"
  gc_log "launch: ${GC_LAUNCH[*]} $GRADCODE train ${GC_ARGS[*]}"
  if [[ -n "${GC_PROVENANCE:-}" ]]; then
    printf '%q ' "${GC_LAUNCH[@]}" "$GRADCODE" train "${GC_ARGS[@]}" >"$GC_PROVENANCE/command.txt"
    echo >>"$GC_PROVENANCE/command.txt"
  fi
  GC_LAUNCHED_AT=$SECONDS
  local launched_epoch
  launched_epoch=$(date +%s)
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
  gc_check_launch "$launched_epoch"
  [[ -n "${GC_PROVENANCE:-}" ]] && echo "$GC_RC" >"$GC_PROVENANCE/exit_code"
  return 0
}

# gc_check_launch EPOCH: a launcher that returned 0 without gradcode having written
# RUN_DIR/run.h5 since EPOCH (seconds, less 5) did not run the ranks (an srun that could not create its
# step, a GRADCODE that is not gradcode): GC_RC becomes 1, so the job does not end COMPLETED.
gc_check_launch() {
  local since=$1 written
  ((GC_RC == 0)) || return 0
  written=$(stat -c %Y "$RUN_DIR/run.h5" 2>/dev/null || echo 0)
  if ((written < since - 5)); then # 5 s of slack for a shared file system's clock
    gc_log "the launcher returned 0 but gradcode wrote no $RUN_DIR/run.h5 in this launch: the ranks did not run (see the launcher's messages above); exit 1"
    GC_RC=1
  fi
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
