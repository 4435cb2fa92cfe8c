#!/usr/bin/env bash
# Multi-node test of the job scripts on a private Slurm cluster in network namespaces (issue 23):
# tests/cluster/cluster.sh makes NODES=3 nodes (own hostname, own /dev/shm, eth0 on a private bridge,
# plus a side0 network that reaches nothing), slurmctld, one slurmd per node and munged.
#
#   tests/cluster/run.sh                    # GRADCODE defaults to target/release/gradcode
#   GRADCODE=/path/to/gradcode tests/cluster/run.sh
#
# Checks: `sbatch --nodes=3 --ntasks-per-node=3 jobscripts/train.sbatch` runs 9 ranks, 3 per node,
# launched by `srun --mpi=pmix`, and writes a complete, VALID run, with the default transport
# (GRADCODE_MPI_NET=auto: UCX over TCP) and with Open MPI's TCP BTL; with the default, `ss` in node 2's
# namespace shows every listener of the ranks on its eth0 address only; with the TCP BTL, `ss` in a node's
# namespace shows the ranks talking TCP to the other nodes over eth0 only (nothing on side0, nothing
# but loopback to the local Slurm step daemon otherwise), and each node's /dev/shm holds only its own
# ranks' Open MPI shared-memory segments; a job allowed only shared memory (OMPI_MCA_btl=self,vader)
# cannot connect across nodes and fails; RANK0_NODE_EXCLUSIVE=1 puts rank 0 alone on the first node;
# a missing dataset fails at once with exit 2 and names the command that makes it.
# Output: `ok - ...` / `not ok - ...` lines, then `N passed, M failed`.
# Exit: 0 all passed, 1 a failure, 77 skipped (reason printed: not root, no namespaces, no Slurm).
# Knobs: JOB_TIMEOUT seconds per wait (180), KEEP=1 keeps the temp dir.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export GRADCODE="${GRADCODE:-$ROOT/target/release/gradcode}"
JOB_TIMEOUT="${JOB_TIMEOUT:-180}"
CLUSTER="$ROOT/tests/cluster/cluster.sh"
# shellcheck source=tests/slurm/lib.sh
source "$ROOT/tests/slurm/lib.sh"
# shellcheck source=tests/cluster/lib.sh
source "$ROOT/tests/cluster/lib.sh" # cluster_up; sbatch/squeue/scontrol/scancel in the head namespace, ...

[[ $EUID -eq 0 ]] || skip "needs root (network namespaces, slurmd, munged)"
[[ -x "$GRADCODE" ]] || skip "no gradcode binary at $GRADCODE (cargo build --release, or set GRADCODE)"
command -v h5dump >/dev/null 2>&1 || skip "h5dump missing (apt-get install hdf5-tools)"
command -v ss >/dev/null 2>&1 || skip "ss missing (iproute2)"

test_tempdir gradcode-cluster-run
export CLUSTER_TEST_DIR="$T/cluster"

# --- cluster -------------------------------------------------------------------------------------
cluster_up
ok "private 3-node Slurm comes up (3 nodes idle)"
NET="$GC_NET"

W="$T/work" # the shared working folder: submit dir, logs in $W/results/slurm, runs in $W/results
mkdir -p "$W/results/slurm" "$W/datasets"
cd "$W" || exit 1
export RESULTS_DIR="$W/results" DATA="$W/datasets/synth.h5"
unset RUN_DIR CONFIG EXTRA_ARGS CODE S SEED STRAGGLERS CHECKPOINT_EVERY GRADCODE_NET_IF RANK0_NODE_EXCLUSIVE
unset OMPI_MCA_btl OMPI_MCA_btl_tcp_if_include OMPI_MCA_oob_tcp_if_include

# --- the installed copy: make install + Lmod ------------------------------------------------------
# Lmod is Debian's `lmod` package: installed here when missing (root, apt-get), as tests/slurm does
# for Slurm. Without it the jobs below run the build tree and the install checks say so.
LMOD_INIT=/usr/share/lmod/lmod/init/bash
if [[ ! -f "$LMOD_INIT" ]] && command -v apt-get >/dev/null 2>&1; then
  note "installing lmod (Debian package) for the module checks"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends lmod >"$T/apt-lmod.log" 2>&1 ||
    { apt-get update -qq >>"$T/apt-lmod.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends lmod >>"$T/apt-lmod.log" 2>&1; }
fi
PREFIX="$T/prefix"
install_copy() { make -s -C "$ROOT" install PREFIX="$PREFIX" BIN="$GRADCODE" >"$T/install.log" 2>&1; }
check "make install PREFIX=... installs binary, job scripts, docs and a modulefile" install_copy
if [[ -f "$LMOD_INIT" ]]; then
  set +u # Lmod's shell functions read unset variables
  # shellcheck source=/dev/null
  source "$LMOD_INIT"
  module use "$PREFIX/modulefiles"
  module load gradcode
  set -u
  check "module load gradcode puts the installed binary on PATH" test "$(command -v gradcode)" = "$PREFIX/bin/gradcode"
  check "... and points the job scripts at the installed copy" test "$GRADCODE_ROOT" = "$PREFIX/share/gradcode"
  JOBS="$GRADCODE_ROOT/jobscripts"
  check "installed gradcode runs (--version)" gradcode --version
else
  not_ok "Lmod is not available (no $LMOD_INIT; see $T/apt-lmod.log): the jobs run the build tree"
  JOBS="$ROOT/jobscripts"
  export GRADCODE_ROOT="$ROOT"
fi

check "gradcode data synth builds a dataset" \
  "$GRADCODE" data synth --kind logistic --rows 2000 --features 20 --seed 1 --out "$DATA"
SB=(sbatch --parsable --time=00:10:00)

# --- 3 nodes x 3 ranks, Open MPI's TCP BTL (GRADCODE_MPI_NET=tcp) -------------------------------
# Every worker sleeps 100 ms an iteration: the job runs >= 4 s, long enough to look at its sockets.
ITER=40
MAIN=$(GRADCODE_MPI_NET=tcp ITERATIONS=$ITER STRAGGLERS="fixed:1,2,3,4,5,6,7,8:100" "${SB[@]}" --nodes=3 --ntasks-per-node=3 \
  "$JOBS/train.sbatch")
note "3-node job $MAIN"

# snapshot_node2 TAG: waits until node 2 has its 3 ranks with TCP connections to rank 0 on node 1,
# then writes node 2's gradcode sockets ($T/ss-TAG.txt), its TCP listeners ($T/ss-listen-TAG.txt) and
# each node's /dev/shm listing ($T/shm-TAG-nodeK.txt).
snapshot_node2() {
  local end=$((SECONDS + JOB_TIMEOUT)) k
  : >"$T/ss-listen-$1.txt"
  while ((SECONDS < end)); do
    nsenter --net="/run/netns/$GC_NS_PREFIX-n2" ss -Htanp 2>/dev/null | grep gradcode >"$T/ss-$1.txt"
    if (($(gradcode_pids 2 | wc -l) == 3)) && grep -q "^ESTAB.* $NET\.11:" "$T/ss-$1.txt"; then
      sleep 0.5 # a rank listens before it connects; 0.5 s more for the slowest of the three
      nsenter --net="/run/netns/$GC_NS_PREFIX-n2" ss -Htlnp 2>/dev/null | grep gradcode >"$T/ss-listen-$1.txt"
      for k in 1 2 3; do nsenter -t "$(node_pid "$k")" -m ls /dev/shm >"$T/shm-$1-node$k.txt" 2>/dev/null; done
      return 0
    fi
    sleep 0.3
  done
}
snapshot_node2 tcp
wait_gone "$MAIN" || { not_ok "3-node job finishes within ${JOB_TIMEOUT}s" && scancel "$MAIN"; }
st=$(field "$MAIN" JobState)
check "3-node job $MAIN COMPLETED (state ${st:-unknown}, exit $(field "$MAIN" ExitCode))" test "$st" = COMPLETED
rd="$W/results/gradcode-train-$MAIN"
check "3-node run.h5 complete and VALID with $ITER iterations" valid_run "$rd/run.h5" "$ITER"
check "launched with srun --mpi=pmix" grep -q -- '^srun --mpi=pmix --ntasks=9 ' "$rd/provenance/attempt-0/command.txt"
check "the job ran the installed binary ($GRADCODE)" grep -qF -- " $GRADCODE train " "$rd/provenance/attempt-0/command.txt"
layout="$rd/provenance/attempt-0/layout.txt"
# shellcheck disable=SC2317  # called through check
three_by_three() { # 9 ranks; node1, node2, node3 three each
  [[ $(wc -l <"$layout") == 9 ]] &&
    [[ "$(awk '{print $2}' "$layout" | sort | uniq -c | awk '{print $2 "=" $1}' | tr '\n' ' ')" == "node1=3 node2=3 node3=3 " ]]
}
check "9 ranks on 3 hosts, 3 each (provenance layout.txt)" three_by_three
check "job log: Open MPI TCP restricted to eth0" grep -q 'TCP restricted to eth0' <(job_log "gradcode-train-$MAIN")
# Open MPI 4.1's TCP transport listens on the wildcard address (0.0.0.0 and [::]) whatever
# btl_tcp_if_include says; the include list decides which addresses it publishes and connects to.
note "node2 gradcode sockets: $(wc -l <"$T/ss-tcp.txt" 2>/dev/null || echo 0), TCP listeners: $(awk '{print $4}' "$T/ss-listen-tcp.txt" 2>/dev/null | tr '\n' ' ')"
# shellcheck disable=SC2317  # called through check
tcp_to_other_nodes() { # node2's ranks (workers) have established TCP connections to node1 (rank 0)
  grep -q "ESTAB.* $NET\.11:" "$T/ss-tcp.txt"
}
check "node2's ranks talk TCP to rank 0 on node1 ($NET.11)" tcp_to_other_nodes
# shellcheck disable=SC2317  # called through check
only_cluster_net() { # every established gradcode TCP socket: both ends on the cluster net, or loopback
  awk '$1 == "ESTAB" { print $4; print $5 }' "$T/ss-tcp.txt" | sed -E 's/:[0-9]+$//' |
    grep -vE "^($(echo "$NET" | sed 's/\./\\./g')\.[0-9]+|127\.0\.0\.1)$" | grep -q . && return 1
  return 0
}
check "node2: every gradcode TCP connection is on eth0 ($NET.0/24) or loopback to the step daemon" only_cluster_net
check "node2: no gradcode socket on side0 (${GC_SIDE_NET:-10.78.0}.0/24)" \
  bash -c "! grep -q ' ${GC_SIDE_NET:-10.78.0}\.' '$T/ss-tcp.txt'"
# shellcheck disable=SC2317  # called through check
own_shm_only() { # node K's /dev/shm: Open MPI segments of its own host only (vader_segment.<host>.*)
  local k
  for k in 1 2 3; do
    grep -q "^vader_segment\.node$k\." "$T/shm-tcp-node$k.txt" || return 1
    grep -q '^vader_segment\.' "$T/shm-tcp-node$k.txt" &&
      grep '^vader_segment\.' "$T/shm-tcp-node$k.txt" | grep -vq "^vader_segment\.node$k\." && return 1
  done
  return 0
}
check "each node's /dev/shm holds only its own ranks' shared-memory segments" own_shm_only

# --- the default transport (GRADCODE_MPI_NET=auto: UCX here): listens on the cluster interface only -
# Open MPI's UCX PML over UCX's TCP transport, restricted to eth0 (UCX_NET_DEVICES): UCX binds its
# listeners to the interface's own address, so no rank listens on the wildcard address or on side0.
UCXJ=$(ITERATIONS=$ITER STRAGGLERS="fixed:1,2,3,4,5,6,7,8:100" "${SB[@]}" --nodes=3 \
  --ntasks-per-node=3 "$JOBS/train.sbatch")
note "3-node job $UCXJ with the default transport"
snapshot_node2 ucx
wait_gone "$UCXJ" || { not_ok "UCX job finishes within ${JOB_TIMEOUT}s" && scancel "$UCXJ"; }
st=$(field "$UCXJ" JobState)
check "UCX job $UCXJ COMPLETED (state ${st:-unknown}, exit $(field "$UCXJ" ExitCode))" test "$st" = COMPLETED
check "UCX run.h5 complete and VALID with $ITER iterations" valid_run "$W/results/gradcode-train-$UCXJ/run.h5" "$ITER"
check "job log: the default picked Open MPI over UCX on eth0" grep -q 'Open MPI over UCX (tcp,sm,self), devices eth0' \
  <(job_log "gradcode-train-$UCXJ")
note "UCX node2 TCP listeners held by gradcode processes: $(awk '{print $4}' "$T/ss-listen-ucx.txt" | tr '\n' ' ')"
check "UCX: node2's ranks talk TCP to rank 0 on node1 ($NET.11)" grep -q "ESTAB.* $NET\.11:" "$T/ss-ucx.txt"
# A listener that slurmstepd holds too is the step daemon's own (Slurm's PMIx plugin), inherited by the
# tasks it forks (seen: one 0.0.0.0 port per node, in slurmstepd and every rank at the same fd): it is
# Slurm's socket, there with either transport, and not counted as the job's.
grep -v '"slurmstepd"' "$T/ss-listen-ucx.txt" >"$T/ss-own-ucx.txt"
note "UCX node2 listeners of the step daemon, inherited by the ranks: $(grep '"slurmstepd"' "$T/ss-listen-ucx.txt" | awk '{print $4}' | tr '\n' ' ')"
# shellcheck disable=SC2317  # called through check
listens_on_eth0_only() { # at least one listener per rank, and every one on node2's eth0 address
  local addrs
  addrs=$(awk '{print $4}' "$T/ss-own-ucx.txt" | sed -E 's/:[0-9]+$//')
  (($(wc -l <"$T/ss-own-ucx.txt") >= 3)) || return 1
  [[ -z "$(grep -vxF "$NET.12" <<<"$addrs")" ]]
}
check "UCX: node2's ranks listen on its eth0 address ($NET.12) only (no 0.0.0.0, [::] or side0)" listens_on_eth0_only

# --- shared memory cannot cross nodes ------------------------------------------------------------
SHM=$(OMPI_MCA_btl=self,vader ITERATIONS=5 "${SB[@]}" --nodes=3 --ntasks=3 --ntasks-per-node=1 "$JOBS/train.sbatch")
# --- rank 0 alone on the first node --------------------------------------------------------------
EXCL=$(RANK0_NODE_EXCLUSIVE=1 ITERATIONS=10 "${SB[@]}" --nodes=3 --ntasks-per-node=3 "$JOBS/train.sbatch")
# --- a new user's first submission without the dataset -------------------------------------------
NODATA=$(DATA="$W/datasets/missing.h5" "${SB[@]}" "$JOBS/train.sbatch")
note "shared-memory-only job $SHM, rank-0-exclusive job $EXCL, missing-data job $NODATA"
wait_gone "$SHM" "$EXCL" "$NODATA" || { not_ok "jobs finish within ${JOB_TIMEOUT}s" && scancel "$SHM" "$EXCL" "$NODATA"; }

st=$(field "$SHM" JobState)
check "OMPI_MCA_btl=self,vader across 3 nodes fails (state ${st:-unknown})" test "$st" = FAILED
check "... because the ranks on different nodes cannot reach each other" \
  grep -q 'unable to reach each other' <(job_log "gradcode-train-$SHM")

st=$(field "$EXCL" JobState)
check "RANK0_NODE_EXCLUSIVE=1 job COMPLETED (state ${st:-unknown})" test "$st" = COMPLETED
check "RANK0_NODE_EXCLUSIVE=1 run complete and VALID" valid_run "$W/results/gradcode-train-$EXCL/run.h5" 10
layout="$W/results/gradcode-train-$EXCL/provenance/attempt-0/layout.txt"
# shellcheck disable=SC2317  # called through check
rank0_alone() { # 7 ranks: rank 0 on node1, nobody else there
  [[ $(wc -l <"$layout") == 7 ]] && grep -q '^0: node1$' "$layout" && [[ $(grep -c ' node1$' "$layout") == 1 ]]
}
check "rank 0 alone on node1, 6 workers on node2 and node3" rank0_alone

st=$(field "$NODATA" JobState)
check "missing dataset: job fails with exit 2 (state ${st:-unknown}, exit $(field "$NODATA" ExitCode))" \
  test "$(field "$NODATA" ExitCode)" = 2:0
check "... and the log names the command that makes it" \
  grep -q 'gradcode data synth' <(job_log "gradcode-train-$NODATA")

# --- a real slow link against the injected model ----------------------------------------------------
# node3's outgoing link is slowed with tc: netem (delay 40 ms, jitter 10 ms) where the kernel has it,
# else a token-bucket rate cap (tbf 50 kbit/s, one packet of burst: the three workers' answers queue
# behind each other).
# Its workers (ranks 6-8) must come out as stragglers in the result file; then the same run (same code,
# seed, data) with the injected model fixed:6,7,8:D, D = the mean delay of the slowed workers' late
# answers in the result file (/late/delay_s), must name the same stragglers.
N3="$GC_NS_PREFIX-n3"
SLOW_ENV=(CODE=cyclic-mds S=3 ITERATIONS=40 SEED=1)
if tc -n "$N3" qdisc add dev eth0 root netem delay 40ms 10ms 2>"$T/tc.err"; then
  shaping="netem delay 40ms 10ms"
elif tc -n "$N3" qdisc add dev eth0 root tbf rate 50kbit burst 1600 latency 2s 2>>"$T/tc.err"; then
  shaping="tbf rate 50kbit burst 1600 (netem unavailable: $(head -n 1 "$T/tc.err"))"
else
  shaping=""
  not_ok "tc cannot shape node3's link: $(tr '\n' ' ' <"$T/tc.err")"
fi
stragglers_of() { # stragglers_of RUN.h5 -> worker ranks on time in < 50% of iterations, "6 7 8"
  "$GRADCODE" report --csv "$1" 2>/dev/null | sed -E 's/"[^"]*"/q/g' | awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    NR == 2 { n = split($col["on_time"], t, " "); it = $col["iterations"]
              for (r = 1; r <= n; r++) if (t[r] < it / 2) printf "%s%d", (k++ ? " " : ""), r }'
}
h5_column() { # h5_column FILE DATASET -> one value a line
  h5dump -y -m %.6g -d "$2" "$1" 2>/dev/null | sed -n '/DATA {/,/}/p' | tr ', ' '\n\n' | grep -E '^[0-9.eE+-]+$'
}
late_delay_ms() { # mean delay (ms, rounded, >= 1) of the late answers of ranks 6-8 (/late/rank, /late/delay_s)
  paste <(h5_column "$1" /late/rank) <(h5_column "$1" /late/delay_s) |
    awk '$1 >= 6 { s += $2; n++ } END { d = n ? 1000 * s / n : 1; printf "%d", (d < 1 ? 1 : d + 0.5) }'
}
arrival_p50() { # arrival_p50 JOBID -> "rank p50_ms" lines from the worker table in the job's log
  job_log "gradcode-train-$1" | awk 'NF == 10 && $1 ~ /^[0-9]+$/ && $8 == "ms" && $10 == "ms" { print $1, $7 }'
}
if [[ -n "$shaping" ]]; then
  note "node3 link: $shaping"
  SLOW=$(export "${SLOW_ENV[@]}" && "${SB[@]}" --nodes=3 --ntasks-per-node=3 "$JOBS/train.sbatch")
  wait_gone "$SLOW" || scancel "$SLOW"
  tc -n "$N3" qdisc del dev eth0 root 2>/dev/null
  slow_rd="$W/results/gradcode-train-$SLOW"
  check "slow link: run complete and VALID" valid_run "$slow_rd/run.h5" 40
  got=$(stragglers_of "$slow_rd/run.h5")
  check "slow link: node3's workers 6 7 8 are stragglers in the result file (stragglers: $got)" \
    grep -qE '(^| )6 7 8( |$)' <<<"$got"
  delay=$(late_delay_ms "$slow_rd/run.h5")
  INJ=$(export "${SLOW_ENV[@]}" STRAGGLERS="fixed:6,7,8:$delay" && "${SB[@]}" --nodes=3 --ntasks-per-node=3 "$JOBS/train.sbatch")
  wait_gone "$INJ" || scancel "$INJ"
  inj_rd="$W/results/gradcode-train-$INJ"
  check "injected fixed:6,7,8:$delay: run complete and VALID" valid_run "$inj_rd/run.h5" 40
  got=$(stragglers_of "$inj_rd/run.h5")
  check "injected fixed:6,7,8:$delay: the same workers are stragglers (stragglers: $got)" grep -qE '(^| )6 7 8( |$)' <<<"$got"
  note "STRAGGLER-COMPARE $shaping | mean delay of node3's late answers: $delay ms"
  "$GRADCODE" report "$slow_rd/run.h5" "$inj_rd/run.h5" | sed 's/^/# /'
  for j in "$SLOW" "$INJ"; do arrival_p50 "$j" | tr '\n' ' ' | sed "s/^/# arrival p50 (rank ms) job $j: /"; echo; done
fi

# The network faults (node link cut, link down and back, slurmd killed: NET-1..3) run in
# tests/cluster/net_faults.sh, several trials each, from `make reliability`.
exit 0
