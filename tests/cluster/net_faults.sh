#!/usr/bin/env bash
# Faults from the network on the namespace cluster (issue 23; RELIABILITY FI-2/FI-3/FI-4 across nodes):
# tests/cluster/cluster.sh makes NODES=3 nodes; every case is a 3 x 3 job of jobscripts/train.sbatch
# (cyclic-mds, s = 3: a whole node's 3 workers may be lost; every worker sleeps 30 ms an iteration;
# --max-wait-ms 20000 bounds the wait for silent workers; the fault comes once rank 0 has logged
# iteration 10), and each runs NET_TRIALS times in a row:
#
#   NET-1  node 3's link cut mid-run for good (ip link set eth0 down in its namespace): gradcode ends
#          by itself, exit 3, status degraded, every iteration decoded exactly (VALID), ranks 6 7 8
#          named silent; Slurm must not kill the job first (the job scripts run with --no-kill).
#   NET-2  node 3's link down for 2 s, then back: the run completes (exit 0, complete, VALID).
#   NET-3  node 3's slurmd killed mid-run and restarted 2 s later: the ranks live under slurmstepd,
#          the run completes (exit 0, complete, VALID).
#
# After each trial node 3 is put back (link up, stranded processes of the job killed by PID, node
# resumed in Slurm) so the next trial starts from a whole cluster.
# Output: `ok - ...` / `not ok - ...` lines, then one `RELIAB|case|trials|passed|worst s|0|note` line
# per case (the format of `make reliability`'s table), then `N passed, M failed`. The logs of every
# failed trial (slurmctld, slurmd, the job's log, run.h5 report) are kept under the printed temp dir.
# Exit: 0 all passed, 1 a failure, 77 skipped (reason printed: not root, no namespaces, no Slurm).
# Knobs: NET_TRIALS (5), NET_CASES ("1 2 3"), JOB_TIMEOUT seconds per wait (180), KEEP=1, NET_SBATCH_ARGS
# (below), and cluster.sh's SLURMD_TIMEOUT (60) and SLURMD_DEBUG.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export GRADCODE="${GRADCODE:-$ROOT/target/release/gradcode}"
JOB_TIMEOUT="${JOB_TIMEOUT:-180}"
TRIALS="${NET_TRIALS:-5}"
CASES="${NET_CASES:-1 2 3}"
CLUSTER="$ROOT/tests/cluster/cluster.sh"
# shellcheck source=tests/slurm/lib.sh
source "$ROOT/tests/slurm/lib.sh"
# shellcheck source=tests/cluster/lib.sh
source "$ROOT/tests/cluster/lib.sh"

[[ $EUID -eq 0 ]] || skip "needs root (network namespaces, slurmd, munged)"
[[ -x "$GRADCODE" ]] || skip "no gradcode binary at $GRADCODE (cargo build --release, or set GRADCODE)"
command -v h5dump >/dev/null 2>&1 || skip "h5dump missing (apt-get install hdf5-tools)"

test_tempdir gradcode-cluster-net
export CLUSTER_TEST_DIR="$T/cluster"
cluster_up
W="$T/work"
mkdir -p "$W/results/slurm" "$W/datasets"
cd "$W" || exit 1
export RESULTS_DIR="$W/results" DATA="$W/datasets/synth.h5" GRADCODE_ROOT="$ROOT"
unset RUN_DIR CONFIG CHECKPOINT_EVERY GRADCODE_NET_IF RANK0_NODE_EXCLUSIVE
unset OMPI_MCA_btl OMPI_MCA_btl_tcp_if_include OMPI_MCA_oob_tcp_if_include
"$GRADCODE" data synth --kind logistic --rows 2000 --features 20 --seed 1 --out "$DATA" >/dev/null ||
  { not_ok "gradcode data synth builds a dataset" && exit 0; }
N3="$GC_NS_PREFIX-n3"
ITER=200
FAULT_ENV=(CODE=cyclic-mds S=3 ITERATIONS=$ITER SEED=1 STRAGGLERS="fixed:1,2,3,4,5,6,7,8:30" EXTRA_ARGS="--max-wait-ms 20000")
# NET_SBATCH_ARGS: more sbatch options (e.g. --no-kill=off with GRADCODE_NO_KILL=0: Slurm's default)
# shellcheck disable=SC2086
submit() { (export "${FAULT_ENV[@]}" && sbatch --parsable --time=00:10:00 ${NET_SBATCH_ARGS:-} --nodes=3 --ntasks-per-node=3 "$ROOT/jobscripts/train.sbatch"); }

# wait_run_started JOBID: until node3 runs the job's 3 ranks and rank 0 has logged iteration 10 (the
# run loop is going: a fault during start-up hits Open MPI's start-up collectives, which have no fault
# tolerance, and is not what these cases test); 1 if that does not happen within JOB_TIMEOUT.
wait_run_started() {
  local end=$((SECONDS + JOB_TIMEOUT)) st
  until (($(gradcode_pids 3 | wc -l) >= 3)) && job_log "gradcode-train-$1" | grep -q 'it    10/'; do
    st=$(field "$1" JobState)
    ((SECONDS < end)) && [[ "$st" == RUNNING || "$st" == PENDING || "$st" == CONFIGURING ]] || return 1
    sleep 0.2
  done
}
node3_usable() { # idle, or mixed once no job is left on it (a stale allocation Slurm clears later)
  local st
  st=$("$CLUSTER" head sinfo -h -n node3 -o %T 2>/dev/null)
  [[ "$st" == idle ]] || { [[ "$st" == mixed ]] && [[ -z "$(squeue -h -w node3 -o %i 2>/dev/null)" ]]; }
}
# restore_node3 JOBID: the job cancelled, node3's link up, its stranded gradcode ranks killed (by PID,
# found through its namespace), node3 back in service. A node that lost its link or its slurmd keeps
# the ended job COMPLETING (its slurmd never confirms the end): after 5 s the node is set DOWN and
# resumed, as an administrator would, which ends that. Waits up to 60 s.
restore_node3() {
  local end=$((SECONDS + 60)) forced=$((SECONDS + 5)) p
  scancel "$1" 2>/dev/null
  ip -n "$N3" link set eth0 up 2>/dev/null
  until node3_usable || ((SECONDS > end)); do
    for p in $(gradcode_pids 3); do kill -KILL "$p" 2>/dev/null; done
    if ((SECONDS > forced)) || [[ "$("$CLUSTER" head sinfo -h -n node3 -o %T 2>/dev/null)" =~ down|drain|fail ]]; then
      scontrol update NodeName=node3 State=DOWN Reason="net_faults: trial over" >/dev/null 2>&1
      scontrol update NodeName=node3 State=RESUME >/dev/null 2>&1
      forced=$((end + 1)) # once: a resumed node is "idle*" until slurmctld hears from it again
    fi
    sleep 1
  done
  node3_usable || not_ok "node3 back in service after the trial ($("$CLUSTER" head sinfo -h -n node3 -o '%T %E'); jobs on it: $(squeue -h -w node3 -o '%i %T' | tr '\n' ' '))"
}
summary_silent() { # the ranks rank 0 named as never answering, from the job log: "[6, 7, 8]"
  job_log "gradcode-train-$1" | grep -oE 'workers \[[0-9, ]+\] never answered' | head -n 1 | grep -oE '\[[0-9, ]+\]'
}
exit_code_of() { cat "$W/results/gradcode-train-$1/provenance/attempt-0/exit_code" 2>/dev/null; }
# keep_logs CASE TRIAL JOBID: the evidence of a failed trial, under $T/failed/CASE-TRIAL
keep_logs() {
  local d="$T/failed/$1-$2" rd="$W/results/gradcode-train-$3"
  mkdir -p "$d"
  cp "$CLUSTER_TEST_DIR"/log/*.log "$d/" 2>/dev/null
  job_log "gradcode-train-$3" >"$d/job.out"
  scontrol -o show job "$3" >"$d/scontrol-job.txt" 2>&1
  cp -r "$rd/provenance" "$d/" 2>/dev/null
  "$GRADCODE" report "$rd/run.h5" >"$d/report.txt" 2>&1
  echo "status: $(status_of "$rd/run.h5")" >>"$d/report.txt"
  KEEP=1
  note "$1 trial $2 failed: logs in $d"
}

# Each case function runs one trial of JOBID's fault and sets PASS_T (1/0), TOOK (s), NOTE.
case_1() { # link cut for good
  local job=$1 t0 code rd="$W/results/gradcode-train-$1"
  ip -n "$N3" link set eth0 down
  t0=$SECONDS
  until [[ -s "$rd/provenance/attempt-0/exit_code" ]] || ((SECONDS - t0 > JOB_TIMEOUT)); do sleep 0.5; done
  TOOK=$((SECONDS - t0))
  code=$(exit_code_of "$job")
  check "NET-1 link cut: gradcode ends by itself within 60 s of the cut (took ${TOOK}s)" test "$TOOK" -le 60 || PASS_T=0
  check "NET-1 link cut: exit 3, degraded (exit ${code:-none})" test "${code:-}" = 3 || PASS_T=0
  check "NET-1 link cut: run.h5 status degraded ($(status_of "$rd/run.h5"))" test "$(status_of "$rd/run.h5")" = degraded || PASS_T=0
  check "NET-1 link cut: node3's ranks named silent ($(summary_silent "$job"))" test "$(summary_silent "$job")" = "[6, 7, 8]" || PASS_T=0
  check "NET-1 link cut: every iteration decoded exactly (verdict VALID)" \
    bash -c "'$GRADCODE' report --csv '$rd/run.h5' | grep -q ',VALID,degraded,'" || PASS_T=0
  NOTE="exact decode, ranks 6-8 named, status degraded, exit 3; job state $(field "$job" JobState)"
}
finish_completed() { # finish_completed CASE JOBID T0: the job must complete the run
  local rd="$W/results/gradcode-train-$2"
  wait_gone "$2" || scancel "$2"
  TOOK=$((SECONDS - $3))
  check "$1: job COMPLETED (state $(field "$2" JobState), exit $(exit_code_of "$2"))" test "$(field "$2" JobState)" = COMPLETED || PASS_T=0
  check "$1: run complete and VALID, $ITER iterations" valid_run "$rd/run.h5" "$ITER" || PASS_T=0
}
case_2() { # link down 2 s, then back
  local t0=$SECONDS
  ip -n "$N3" link set eth0 down
  sleep 2
  ip -n "$N3" link set eth0 up
  check "NET-2 link back: node3's ranks still ran when the link came back" test "$(gradcode_pids 3 | wc -l)" -ge 3 || PASS_T=0
  finish_completed "NET-2 link back" "$1" "$t0"
  NOTE="run completes, status complete, exit 0"
}
case_3() { # slurmd killed, restarted 2 s later
  local t0=$SECONDS
  kill -KILL "$(node_pid 3)"
  sleep 2
  check "NET-3 slurmd killed: node3's ranks still run 2 s later" test "$(gradcode_pids 3 | wc -l)" -ge 3 || PASS_T=0
  "$CLUSTER" slurmd 3 # as systemd would restart it: the new slurmd finds the running step again
  finish_completed "NET-3 slurmd killed" "$1" "$t0"
  NOTE="run completes (the step lives on under slurmstepd; slurmd restarted after 2 s)"
}
declare -A TITLE=([1]="NET-1 node link cut mid-run for good (ip link down), s=3"
  [2]="NET-2 node link down 2 s, then back, s=3" [3]="NET-3 slurmd of a node killed mid-run, restarted")

for c in $CASES; do
  passed=0 worst=0 note=""
  for ((trial = 1; trial <= TRIALS; trial++)); do
    PASS_T=1 TOOK=0 NOTE=""
    job=$(submit)
    if wait_run_started "$job"; then
      "case_$c" "$job"
    else
      not_ok "NET-$c trial $trial: the job's ranks never ran on node3 (state $(field "$job" JobState))"
      PASS_T=0
    fi
    ((PASS_T)) || keep_logs "NET-$c" "$trial" "$job"
    restore_node3 "$job"
    passed=$((passed + PASS_T))
    ((TOOK > worst)) && worst=$TOOK
    [[ -n "$NOTE" ]] && note=$NOTE
    note "NET-$c trial $trial: $( ((PASS_T)) && echo pass || echo FAIL) (${TOOK}s)"
  done
  echo "RELIAB|${TITLE[$c]}|$TRIALS|$passed|$worst|0|$note"
done
exit 0
