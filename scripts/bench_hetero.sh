#!/usr/bin/env bash
# Heterogeneous workers (issue 22 §2b): time per iteration of the heterogeneity-aware code
# (`--code hetero --worker-speeds`) against the speed-oblivious cyclic code when two of the n = 8
# workers are 2× slower (`--straggler-model slow:1,2:2`), a9a, s = 1, for logistic regression
# (compute is a small part of an iteration) and an MLP (compute dominates). Runs alternate
# A/B/A/B… so that the machine's load drifts over both arms alike; writes
# results/bench/hetero/README.md (the tables of docs/tuning.md).
#
#   scripts/bench_hetero.sh                    # about 2 minutes on 2 cores
#   ROUNDS=5 LOGISTIC_ITERATIONS=100 MLP_ITERATIONS=20 scripts/bench_hetero.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${GRADCODE:-$ROOT/target/release/gradcode}"
OUT="${OUT:-$ROOT/results/bench/hetero}"
ROUNDS="${ROUNDS:-3}"
LOGISTIC_ITERATIONS="${LOGISTIC_ITERATIONS:-60}"
MLP_ITERATIONS="${MLP_ITERATIONS:-12}"
MODEL="${MODEL:-slow:1,2:2}"
# Ranks 1 and 2 (workers 0 and 1) at half speed: what a `tune` fit of such a profile gives.
SPEEDS="${SPEEDS:-0.5,0.5,1,1,1,1,1,1}"
SHARED="${SHARED:-$ROOT/../shared/datasets}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
RUNS="$OUT/runs"
mkdir -p "$RUNS"
# shellcheck source=a9a_data.sh
source "$ROOT/scripts/a9a_data.sh"
DATA="$(a9a_data "$RUNS")"

train() { # name iterations flags...
  local name=$1 iters=$2; shift 2
  mpirun --oversubscribe -np 9 "$BIN" -q train --data "$DATA" --iterations "$iters" \
    --straggler-model "$MODEL" -s 1 --out "$RUNS/$name" --force "$@" >/dev/null
}

# One A/B comparison: label, iterations, then the model flags.
compare() {
  local label=$1 iters=$2; shift 2
  local load_before runs=()
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  for r in $(seq 1 "$ROUNDS"); do
    train "$label-A$r-cyclic" "$iters" "$@" --code cyclic-repetition
    train "$label-B$r-hetero" "$iters" "$@" --code hetero --worker-speeds "$SPEEDS"
    runs+=("$RUNS/$label-A$r-cyclic/run.h5" "$RUNS/$label-B$r-hetero/run.h5")
  done
  "$BIN" report --csv "${runs[@]}" >"$RUNS/$label.csv"
  {
    echo
    echo "## \`$*\`, $iters iterations per run"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), load before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    python3 - "$RUNS/$label.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| run | code | p50 ms | p95 ms | final train loss |")
print("|---|---|---|---|---|")
arms = {}
for r in rows:
    p50, p95 = float(r["p50_s"]) * 1e3, float(r["p95_s"]) * 1e3
    arms.setdefault(r["code"], []).append(p50)
    print("| %s | %s | %.1f | %.1f | %.6f |" % (r["run"], r["code"], p50, p95, float(r["final_train_loss"])))
print()
a, b = arms.get("cyclic-repetition", []), arms.get("hetero", [])
if a and b:
    ma, mb = statistics.median(a), statistics.median(b)
    print("Median over rounds of the p50: cyclic-repetition %.1f ms, hetero %.1f ms; hetero / cyclic = %.2f."
          % (ma, mb, mb / ma))
PY
  } >>"$REPORT"
}

REPORT="$OUT/README.md"
{
  echo "# Heterogeneity-aware code vs cyclic under two 2× slower workers (scripts/bench_hetero.sh)"
  echo
  echo "$(nproc) cores. a9a, n = 8, s = 1, \`--straggler-model $MODEL\`; $ROUNDS rounds alternated"
  echo "A (\`--code cyclic-repetition\`) / B (\`--code hetero --worker-speeds $SPEEDS\`):"
  "$BIN" -q codes show --code hetero -n 8 -s 1 --worker-speeds "$SPEEDS" | sed -n 2p
} >"$REPORT"
compare logistic "$LOGISTIC_ITERATIONS" --model logistic
compare mlp "$MLP_ITERATIONS" --model mlp --hidden 128
cat "$REPORT"
