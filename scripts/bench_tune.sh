#!/usr/bin/env bash
# Validation of `gradcode simulate` and `gradcode tune` (issue 22 §§1–2) on this machine, n = 8,
# logistic regression on a9a; writes results/bench/tune/README.md (the tables of docs/tuning.md).
#
#   scripts/bench_tune.sh                  # about 3 minutes on 2 cores (+ 4 per adapt round)
#   ITERATIONS=100 FIXED_ITERATIONS=40 scripts/bench_tune.sh
#
# 1. Simulated vs real: each exact code runs for real under exp:20; it is then simulated (a) by
#    replaying its own run and (b) by replaying only the uncoded profile, which is what `tune`
#    predicts from. p50 / p95 of the time per iteration, and the ratios simulated / real.
# 2. Tuned vs run: for a9a (logistic) and Fashion-MNIST (softmax; FASHION=0 skips it) and each
#    straggler regime (exp:20, fixed:1,2:300) an uncoded profile, `tune` on it, and the
#    candidates actually run; real time to the profile's final training loss.
# 3. gradcode plan: three jobs profiled by the exp:20 uncoded run on 9 ranks; the plan's mean and
#    max completion against an equal split and FIFO (simulated), with and without re-planning.
# 4. scripts/bench_adapt.sh (ADAPT=0 skips it): `train --adapt` against every fixed s on a job
#    whose straggler regime changes mid-run; results/bench/adapt/README.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${GRADCODE:-$ROOT/target/release/gradcode}"
OUT="${OUT:-$ROOT/results/bench/tune}"
ITERATIONS="${ITERATIONS:-100}"
FIXED_ITERATIONS="${FIXED_ITERATIONS:-40}"
FASHION_ITERATIONS="${FASHION_ITERATIONS:-60}"
FASHION_DIR="${FASHION_DIR:-/usr/share/datasets/fashion-mnist}"
SIM_ITERATIONS="${SIM_ITERATIONS:-1000}"
SHARED="${SHARED:-$ROOT/../shared/datasets}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
RUNS="$OUT/runs"
mkdir -p "$RUNS"
# shellcheck source=a9a_data.sh
source "$ROOT/scripts/a9a_data.sh"
DATA="$(a9a_data "$RUNS")"

train() { # name model iterations flags... (on $DATA)
  local name=$1 model=$2 iters=$3; shift 3
  mpirun --oversubscribe -np 9 "$BIN" -q train --data "$DATA" --model "$model" \
    --iterations "$iters" --out "$RUNS/$name" --force "$@" >/dev/null
}
csv() { "$BIN" report --csv "$@"; }
col() { # csv-file run column
  python3 - "$1" "$2" "$3" <<'PY'
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    if r["run"] == sys.argv[2]:
        print(r[sys.argv[3]]); break
PY
}
ms() { python3 -c "import sys; v=sys.argv[1]; print('-' if v in ('','nan') else '%.1f' % (float(v)*1e3))" "$1"; }
ratio() { python3 -c "import sys; a,b=sys.argv[1:]; print('-' if '' in (a,b) else '%.2f' % (float(a)/float(b)))" "$1" "$2"; }

EXACT=("uncoded|0" "cyclic-repetition|1" "cyclic-mds|1" "cyclic-mds|3" "frc|1" "frc|3")
REPORT="$OUT/README.md"
{
  echo "# simulate and tune on this machine (scripts/bench_tune.sh)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "## Simulated vs real time per iteration (a9a, logistic, n = 8, exp:20, $ITERATIONS iterations)"
  echo
  echo "| code | s | real p50 ms | real p95 ms | sim (own run) p50 / p95 ms | ratio p50 / p95 | sim (uncoded profile) p50 / p95 ms | ratio p50 / p95 |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$REPORT"
for e in "${EXACT[@]}"; do
  IFS='|' read -r code s <<<"$e"
  [[ -f "$RUNS/exp-$code-s$s/run.h5" ]] || train "exp-$code-s$s" logistic "$ITERATIONS" --code "$code" -s "$s" --straggler-model exp:20
done
for e in "${EXACT[@]}"; do
  IFS='|' read -r code s <<<"$e"
  name="exp-$code-s$s"
  "$BIN" -q simulate --replay "$RUNS/$name" --iterations "$SIM_ITERATIONS" \
    --out "$RUNS/sim-own-$name" --force >/dev/null
  "$BIN" -q simulate --replay "$RUNS/exp-uncoded-s0" --code "$code" -s "$s" \
    --iterations "$SIM_ITERATIONS" --out "$RUNS/sim-prof-$name" --force >/dev/null
  csv "$RUNS/$name" "$RUNS/sim-own-$name" "$RUNS/sim-prof-$name" >"$RUNS/$name.csv"
  f="$RUNS/$name.csv"
  r50=$(col "$f" "$name" p50_s); r95=$(col "$f" "$name" p95_s)
  o50=$(col "$f" "sim-own-$name" p50_s); o95=$(col "$f" "sim-own-$name" p95_s)
  p50=$(col "$f" "sim-prof-$name" p50_s); p95=$(col "$f" "sim-prof-$name" p95_s)
  echo "| $code | $s | $(ms "$r50") | $(ms "$r95") | $(ms "$o50") / $(ms "$o95") | $(ratio "$o50" "$r50") / $(ratio "$o95" "$r95") | $(ms "$p50") / $(ms "$p95") | $(ratio "$p50" "$r50") / $(ratio "$p95" "$r95") |" >>"$REPORT"
done

tune_regime() { # label straggler-model iterations [data glm dataset-name]
  local label=$1 model=$2 iters=$3
  local DATA=${4:-$DATA} glm=${5:-logistic} dataset=${6:-a9a}
  local prof="$label-uncoded-s0"
  [[ -f "$RUNS/$prof/run.h5" ]] || train "$prof" "$glm" "$iters" --code uncoded --straggler-model "$model"
  local target
  # The profile's final loss plus 1e-4: exact codes follow the same trajectory up to rounding
  # (≈ 1e-12), which must not decide whether they reach it.
  target=$(csv "$RUNS/$prof" | python3 -c "import csv,sys; print(float(next(csv.DictReader(sys.stdin))['final_train_loss']) + 1e-4)")
  "$BIN" tune --profile "$RUNS/$prof" --target-loss "$target" \
    --config-out "$RUNS/$label-tuned.toml" >"$RUNS/$label-tune.txt"
  mpirun --oversubscribe -np 9 "$BIN" -q train --config "$RUNS/$label-tuned.toml" \
    --iterations $((iters * 2)) --out "$RUNS/$label-tuned" --force >/dev/null
  local runs=("$RUNS/$label-tuned")
  for e in "${EXACT[@]}"; do
    IFS='|' read -r code s <<<"$e"
    local name="$label-$code-s$s"
    [[ -f "$RUNS/$name/run.h5" ]] || train "$name" "$glm" "$iters" --code "$code" -s "$s" --straggler-model "$model"
    runs+=("$RUNS/$name")
  done
  csv --target-loss "$target" "${runs[@]}" >"$RUNS/$label.csv"
  {
    echo
    echo "## Tuned vs run: $dataset ($glm), n = 8, $model (target: the profile's training loss after $iters iterations + 1e-4, $(printf '%.4f' "$target"))"
    echo
    echo "\`gradcode tune --profile $prof --target-loss $target\` ranked (top 5):"
    echo
    echo '```'
    head -7 "$RUNS/$label-tune.txt"
    echo '```'
    echo
    echo "| run | code | s | real p50 ms | real time to target s |"
    echo "|---|---|---|---|---|"
    python3 - "$RUNS/$label.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
best = min((float(r["time_to_target_s"]) for r in rows[1:] if r["time_to_target_s"]), default=float("nan"))
for r in rows:
    t = r["time_to_target_s"]
    tt = "%.2f" % float(t) if t else "not reached"
    print("| %s | %s | %s | %.1f | %s |" % (r["run"], r["code"], r["s"], float(r["p50_s"]) * 1e3, tt))
t = rows[0]["time_to_target_s"]
print()
print("Tuned over the best candidate run: %s" % ("%.2f" % (float(t) / best) if t else "not reached"))
PY
  } >>"$REPORT"
}
tune_regime exp exp:20 "$ITERATIONS"
tune_regime fixed fixed:1,2:300 "$FIXED_ITERATIONS"
if [[ "${FASHION:-1}" == 1 ]]; then
  FMNIST="$RUNS/fashion-mnist.h5"
  [[ -f "$FMNIST" ]] || "$BIN" -q data convert --format idx \
    --input "$FASHION_DIR/train-images-idx3-ubyte.gz" --labels "$FASHION_DIR/train-labels-idx1-ubyte.gz" \
    --test-input "$FASHION_DIR/t10k-images-idx3-ubyte.gz" --test-labels "$FASHION_DIR/t10k-labels-idx1-ubyte.gz" \
    --license MIT --out "$FMNIST" >/dev/null
  tune_regime fmnist-exp exp:20 "$FASHION_ITERATIONS" "$FMNIST" softmax Fashion-MNIST
  tune_regime fmnist-fixed fixed:1,2:300 "$((FASHION_ITERATIONS / 2))" "$FMNIST" softmax Fashion-MNIST
fi

# 3. gradcode plan: three jobs on the exp:20 profile, one node of 9 ranks (simulated schedules).
JOBS="$RUNS/plan-jobs.toml"
cat >"$JOBS" <<TOML
[[job]]
name = "a9a-short"
profile = "$RUNS/exp-uncoded-s0"
iterations = 50
[[job]]
name = "a9a-target"
profile = "$RUNS/exp-uncoded-s0"
target-loss = 0.345
[[job]]
name = "a9a-long"
profile = "$RUNS/exp-uncoded-s0"
iterations = 400
TOML
for re in 0 1; do
  "$BIN" -q plan "$JOBS" --nodes 1 --cores-per-node 9 --replan-every "$re" \
    --out "$RUNS/plan-re$re" >"$RUNS/plan-re$re.txt"
done
{
  echo
  echo "## gradcode plan: 3 jobs on 9 ranks, plan vs equal split vs FIFO (predicted, a9a exp:20 profile)"
  echo
  echo '```'
  cat "$RUNS/plan-re0.txt"
  echo
  echo "--replan-every 1:"
  sed -n '/^schedule/,/^FIFO/p' "$RUNS/plan-re1.txt"
  echo '```'
} >>"$REPORT"
echo >>"$REPORT"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$REPORT"
cat "$REPORT"
# 4. Online adaptation against every fixed s (its own README beside this one).
if [[ "${ADAPT:-1}" == 1 ]]; then
  GRADCODE="$BIN" OUT="$(dirname "$OUT")/adapt" bash "$ROOT/scripts/bench_adapt.sh"
fi
