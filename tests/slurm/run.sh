#!/usr/bin/env bash
# Integration test of the job scripts on a real private single-node Slurm (tests/slurm/cluster.sh).
#
#   tests/slurm/run.sh                      # GRADCODE defaults to target/release/gradcode
#   GRADCODE=/path/to/gradcode tests/slurm/run.sh
#
# Submits train.sbatch and a 3-task sweep.sbatch, and the 3 scripts `gradcode plan` writes for
# three jobs profiled by that train run; checks every job COMPLETED and every run.h5 is
# complete and valid (`gradcode report --csv`: status complete, validation VALID, not partial, every
# planned iteration); then preempts a run with checkpoints (USR1 to the batch shell, as Slurm's
# --signal=B:USR1 does) PREEMPT_TIMES times, checks it is requeued, resumes and completes, that its
# /model/w_final equals an uninterrupted run with the same seed and that its rows are iterations
# 0..N-1 exactly once (CR-4, CR-7).
# Output: one `ok - ...` / `not ok - ...` line per check, then `N passed, M failed`.
# Exit: 0 all passed, 1 a failure, 77 skipped (not root, no Slurm, no binary, no h5dump).
#
# Knobs: WORKERS (4), ITERATIONS (20), PREEMPT_ITERATIONS (3000) and PREEMPT_DELAY_MS (5, injected
# on every worker every iteration: the preempted run lasts >= 15 s whatever the machine's speed, so
# each attempt outlasts the launcher's 5 s USR1 grace, GRADCODE_LAUNCH_GRACE; equal delays keep the
# FRC decode bit for bit), PREEMPT_TIMES (2), GRADCODE_LAUNCHER (srun),
# JOB_TIMEOUT seconds per wait (300), KEEP=1 keeps the temp dir, SLURM_TEST_DIR (default: in the temp dir).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export GRADCODE="${GRADCODE:-$ROOT/target/release/gradcode}"
WORKERS="${WORKERS:-4}"
ITERATIONS="${ITERATIONS:-20}"
PREEMPT_ITERATIONS="${PREEMPT_ITERATIONS:-3000}"
PREEMPT_DELAY_MS="${PREEMPT_DELAY_MS:-5}"
PREEMPT_TIMES="${PREEMPT_TIMES:-2}"
JOB_TIMEOUT="${JOB_TIMEOUT:-300}"
CLUSTER="$ROOT/tests/slurm/cluster.sh"

# shellcheck source=tests/slurm/lib.sh
source "$ROOT/tests/slurm/lib.sh"

[[ $EUID -eq 0 ]] || skip "needs root to run slurmd/munged"
[[ -x "$GRADCODE" ]] || skip "no gradcode binary at $GRADCODE (cargo build --release, or set GRADCODE)"
command -v h5dump >/dev/null 2>&1 || skip "h5dump missing (apt-get install hdf5-tools)"

test_tempdir gradcode-slurm-run
export SLURM_TEST_DIR="${SLURM_TEST_DIR:-$T/cluster}"

# --- cluster -------------------------------------------------------------------------------------
"$CLUSTER" up >"$T/cluster-up.log" 2>&1
rc=$?
if ((rc == 77)); then
  cat "$T/cluster-up.log"
  skip "cluster could not be set up (see above)"
fi
CLUSTER_UP=1
if ((rc != 0)); then
  cat "$T/cluster-up.log"
  not_ok "private Slurm comes up"
  exit 0
fi
ok "private Slurm comes up (node idle)"
# shellcheck source=/dev/null
source "$SLURM_TEST_DIR/env"

W="$T/work" # submit dir: logs go to $W/results/slurm, runs to $W/results
mkdir -p "$W/results/slurm" "$W/datasets"
cd "$W" || exit 1
export GRADCODE_ROOT="$ROOT" RESULTS_DIR="$W/results" DATA="$W/datasets/synth.h5"
unset RUN_DIR CONFIG EXTRA_ARGS CODE S SEED STRAGGLERS CHECKPOINT_EVERY

check "gradcode data synth builds a dataset" \
  "$GRADCODE" data synth --kind logistic --rows 2000 --features 20 --seed 1 --out "$DATA"

NTASKS=$((WORKERS + 1))
SB=(sbatch --parsable --ntasks="$NTASKS" --time=00:15:00)
# More ranks than CPUs on this node: let Slurm place them anyway.
((NTASKS > $(nproc))) && SB+=(--overcommit)

# --- helpers -------------------------------------------------------------------------------------
# shellcheck disable=SC2317  # called through check
rows_once() { # rows_once RUN.h5 N: /metrics/iteration is exactly 0, 1, ..., N-1
  h5dump -y -m %.0f -d /metrics/iteration "$1" 2>/dev/null | sed -n '/DATA {/,/}/p' | tr ', ' '\n\n' |
    grep -E '^[0-9]+$' | awk -v n="$2" '$1 != NR - 1 { bad = 1 } END { exit !(NR == n && !bad) }'
}
w_final() { # w_final RUN.h5 -> /model/w_final values, full precision, without the file name line
  h5dump -m '%.17g' -d /model/w_final "$1" 2>/dev/null | tail -n +2
}
# shellcheck disable=SC2317  # called through check
resumed_all() { # every restart of the preempted job ran with --resume
  local k
  for ((k = 1; k <= signalled; k++)); do
    grep -q -- --resume "$prd/provenance/attempt-$k/command.txt" 2>/dev/null || return 1
  done
}
job_log() { cat "$W/results/slurm/$1.out" 2>/dev/null; }

# --- one run and a sweep -------------------------------------------------------------------------
TRAIN=$(ITERATIONS="$ITERATIONS" "${SB[@]}" "$ROOT/jobscripts/train.sbatch")
SWEEP=$(ITERATIONS="$ITERATIONS" "${SB[@]}" --array=1-3 "$ROOT/jobscripts/sweep.sbatch")
# A launch that runs no gradcode (here GRADCODE=/bin/true: the launcher returns 0 and nothing is
# written) must not end COMPLETED.
NORUN=$(GRADCODE=/bin/true ITERATIONS="$ITERATIONS" "${SB[@]}" --dependency="afterany:$TRAIN" "$ROOT/jobscripts/train.sbatch")
note "train job $TRAIN, sweep array job $SWEEP, launch-without-gradcode job $NORUN"
if wait_gone "$TRAIN" "$SWEEP" "$NORUN"; then ok "train and sweep jobs finish within ${JOB_TIMEOUT}s"; else
  not_ok "train and sweep jobs finish within ${JOB_TIMEOUT}s"
  scancel "$TRAIN" "$SWEEP" "$NORUN" 2>/dev/null
fi
st=$(field "$NORUN" JobState)
check "a launch that wrote no run.h5 ends FAILED, exit 1 (state ${st:-unknown}, exit $(field "$NORUN" ExitCode))" \
  test "$st:$(field "$NORUN" ExitCode)" = FAILED:1:0
check "its log says the ranks did not run" grep -q "the ranks did not run" "$W/results/slurm/gradcode-train-$NORUN.out"

st=$(field "$TRAIN" JobState)
check "train job $TRAIN COMPLETED (state ${st:-unknown}, exit $(field "$TRAIN" ExitCode))" test "$st" = COMPLETED
rd="$W/results/gradcode-train-$TRAIN"
check "train run.h5 status complete ($rd)" test "$(status_of "$rd/run.h5")" = complete
check "train run.h5 valid: VALID, not partial, $ITERATIONS iterations (gradcode report)" valid_run "$rd/run.h5" "$ITERATIONS"
check "train log results/slurm/gradcode-train-$TRAIN.out written" test -s "$W/results/slurm/gradcode-train-$TRAIN.out"
p="$rd/provenance/attempt-0"
check "train provenance (git, scontrol, env, command)" \
  test -s "$p/git.txt" -a -s "$p/scontrol-job.txt" -a -s "$p/env.txt" -a -s "$p/command.txt" -a -s "$p/info.txt"
if [[ "${GRADCODE_LAUNCHER:-srun}" == srun ]]; then
  check "train launched by srun --mpi=pmix (the default inside Slurm)" grep -q -- '^srun --mpi=pmix' "$p/command.txt"
else
  check "train launched by $GRADCODE_LAUNCHER (GRADCODE_LAUNCHER)" grep -q -- "^$GRADCODE_LAUNCHER " "$p/command.txt"
fi

# The array's tasks, one line each: ArrayTaskId and JobState.
tasks="$(scontrol -o show job "$SWEEP" 2>/dev/null | grep -oE 'ArrayTaskId=[0-9]+|JobState=[A-Z_]+' | paste - - | sort)"
for i in 1 2 3; do
  st=$(echo "$tasks" | awk -v t="ArrayTaskId=$i" '$1 == t { sub("JobState=", "", $2); print $2 }')
  check "sweep task $i COMPLETED (state ${st:-unknown})" test "$st" = COMPLETED
  rd="$W/results/gradcode-sweep-${SWEEP}_$i"
  check "sweep task $i run.h5 status complete" test "$(status_of "$rd/run.h5")" = complete
  check "sweep task $i run.h5 valid: VALID, not partial, $ITERATIONS iterations" valid_run "$rd/run.h5" "$ITERATIONS"
  want="$(sed -n "1p;$((i + 1))p" "$ROOT/jobscripts/sweeps/example.tsv")"
  check "sweep task $i recorded its row in sweep_row.tsv" test "$(cat "$rd/sweep_row.tsv" 2>/dev/null)" = "$want"
  IFS=$'\t' read -r code s model seed < <(sed -n "$((i + 1))p" "$ROOT/jobscripts/sweeps/example.tsv")
  check "sweep task $i ran its row (--code $code -s $s --straggler-model $model --seed $seed)" \
    grep -q -- "--code $code -s $s .*--straggler-model $model --seed $seed" "$rd/provenance/attempt-0/command.txt"
done

# --- gradcode plan: three jobs in one allocation, each submitted from its written script ----------
# The train job above is the jobs' profiling run; the plan shares 6 ranks among 3 short jobs.
PLAN="$W/plan"
cat >"$W/jobs.toml" <<TOML
[[job]]
name = "plan-a"
profile = "$W/results/gradcode-train-$TRAIN/run.h5"
iterations = 6
[[job]]
name = "plan-b"
profile = "$W/results/gradcode-train-$TRAIN/run.h5"
iterations = 8
[[job]]
name = "plan-c"
profile = "$W/results/gradcode-train-$TRAIN/run.h5"
iterations = 10
TOML
plan_3() { "$GRADCODE" -q plan "$W/jobs.toml" --nodes 1 --cores-per-node 6 --out "$PLAN" >"$T/plan.txt"; }
check "gradcode plan writes a script per job for 3 jobs on 6 ranks" plan_3
# One after another (afterany): three srun steps launched at the same moment on this one-node
# test cluster have failed to start ("task launch failed"), which is not what this tests.
plan_jobs=()
dep=()
for j in plan-a plan-b plan-c; do
  id=$(sbatch --parsable --overcommit "${dep[@]}" "$PLAN/$j.sbatch" 2>/dev/null) && plan_jobs+=("$id:$j")
  dep=(--dependency="afterany:$id")
done
check "the 3 planned scripts are accepted by sbatch" test "${#plan_jobs[@]}" = 3
if wait_gone "${plan_jobs[@]%%:*}"; then ok "planned jobs finish within ${JOB_TIMEOUT}s"; else
  not_ok "planned jobs finish within ${JOB_TIMEOUT}s"
  scancel "${plan_jobs[@]%%:*}" 2>/dev/null
fi
declare -A plan_iters=([plan-a]=6 [plan-b]=8 [plan-c]=10)
for e in "${plan_jobs[@]}"; do
  id=${e%%:*} j=${e#*:}
  st=$(field "$id" JobState)
  ntasks=$(grep -oE '^#SBATCH --ntasks=[0-9]+' "$PLAN/$j.sbatch" | cut -d= -f2)
  check "planned job $j ($id, $ntasks ranks) COMPLETED (state ${st:-unknown})" test "$st" = COMPLETED
  check "planned job $j run.h5 valid: VALID, not partial, ${plan_iters[$j]} iterations" \
    valid_run "$W/results/$j-$id/run.h5" "${plan_iters[$j]}"
  check "planned job $j ran its written config (--config $j.toml)" \
    grep -q -- "--config $PLAN/$j.toml" "$W/results/$j-$id/provenance/attempt-0/command.txt"
done

# --- preemption: USR1 -> checkpoint -> exit 75 -> requeue -> resume --------------------------------
export ITERATIONS="$PREEMPT_ITERATIONS" CHECKPOINT_EVERY=1 SEED=7 CODE=frc S=1
STRAGGLERS="fixed:$(seq -s, 1 "$WORKERS"):$PREEMPT_DELAY_MS"
export STRAGGLERS
REF=$("${SB[@]}" --job-name=preempt-ref "$ROOT/jobscripts/train.sbatch")
PRE=$("${SB[@]}" --job-name=preempt "$ROOT/jobscripts/train.sbatch")
unset ITERATIONS CHECKPOINT_EVERY STRAGGLERS SEED CODE S
note "preemption: uninterrupted job $REF, preempted job $PRE ($PREEMPT_TIMES signals)"
prd="$W/results/preempt-$PRE"
marker="$T/preempt-marker"
signalled=0
for ((k = 0; k < PREEMPT_TIMES; k++)); do
  # Wait for attempt k to run and to have written a checkpoint during this attempt (a mid-run signal).
  end=$((SECONDS + JOB_TIMEOUT))
  seen_running=0
  while ((SECONDS < end)); do
    st=$(field "$PRE" JobState)
    [[ "$st" == RUNNING && "$(field "$PRE" Restarts)" == "$k" ]] || {
      [[ "$st" == COMPLETED || "$st" == FAILED || "$st" == CANCELLED || "$st" == TIMEOUT ]] && break
      sleep 0.2
      continue
    }
    if ((!seen_running)); then
      touch "$marker"
      seen_running=1
    fi
    [[ -n "$(find "$prd/ckpt.h5" -newer "$marker" 2>/dev/null)" ]] && break
    sleep 0.1
  done
  if [[ "$st" != RUNNING ]]; then
    not_ok "preempt: attempt $k running with a fresh checkpoint before the signal (state ${st:-unknown}; raise PREEMPT_ITERATIONS if it finished)"
    break
  fi
  scancel --signal=USR1 --batch "$PRE"
  signalled=$((signalled + 1))
  # The job must go back to the queue (Restarts k+1) rather than finish or fail.
  end=$((SECONDS + JOB_TIMEOUT))
  while ((SECONDS < end)); do
    [[ "$(field "$PRE" Restarts)" == "$((k + 1))" ]] && break
    st=$(field "$PRE" JobState)
    [[ "$st" == COMPLETED || "$st" == FAILED || "$st" == CANCELLED ]] && break
    sleep 0.2
  done
  check "preempt: USR1 $((k + 1)) -> checkpoint, exit 75, requeued (Restarts=$(field "$PRE" Restarts))" \
    test "$(field "$PRE" Restarts)" = "$((k + 1))"
  check "preempt: attempt $k exited 75 with a checkpoint" \
    test "$(cat "$prd/provenance/attempt-$k/exit_code" 2>/dev/null)" = 75 -a -f "$prd/ckpt.h5"
done
if wait_gone "$PRE" "$REF"; then ok "preempted and reference jobs finish within ${JOB_TIMEOUT}s"; else
  not_ok "preempted and reference jobs finish within ${JOB_TIMEOUT}s"
  scancel "$PRE" "$REF" 2>/dev/null
fi
st=$(field "$REF" JobState)
check "reference job $REF COMPLETED (state ${st:-unknown})" test "$st" = COMPLETED
st=$(field "$PRE" JobState)
check "preempted job $PRE COMPLETED after $(field "$PRE" Restarts) requeue(s) (state ${st:-unknown})" \
  test "$st" = COMPLETED -a "$(field "$PRE" Restarts)" = "$signalled" -a "$signalled" -ge 1
check "preempt: each restart resumed from the checkpoint (--resume)" resumed_all
check "preempted run.h5 status complete" test "$(status_of "$prd/run.h5")" = complete
check "reference run.h5 status complete" test "$(status_of "$W/results/preempt-ref-$REF/run.h5")" = complete
check "preempted run.h5 valid: VALID, not partial, $PREEMPT_ITERATIONS iterations" \
  valid_run "$prd/run.h5" "$PREEMPT_ITERATIONS"
check "preempted run.h5 rows are iterations 0..$((PREEMPT_ITERATIONS - 1)), each once (nothing lost or repeated)" \
  rows_once "$prd/run.h5" "$PREEMPT_ITERATIONS"
a="$(w_final "$prd/run.h5")"
b="$(w_final "$W/results/preempt-ref-$REF/run.h5")"
check "preempted /model/w_final equals the uninterrupted run's (same seed and delays)" \
  test -n "$a" -a "$a" = "$b"
if [[ -z "$a" || "$a" != "$b" ]]; then
  note "preempted w_final: $(echo "$a" | sed -n '/DATA {/,$p' | tr -s ' \n' ' ' | cut -c1-200)"
  note "reference w_final: $(echo "$b" | sed -n '/DATA {/,$p' | tr -s ' \n' ' ' | cut -c1-200)"
fi
if ((FAIL)); then
  note "--- log of preempted job"
  job_log "preempt-$PRE" | sed 's/^/# /' | tail -n 40
fi
exit 0
