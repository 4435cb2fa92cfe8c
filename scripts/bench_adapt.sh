#!/usr/bin/env bash
# Online adaptation against every fixed s (issue 22 §3): a job whose straggler regime changes
# mid-run, `train --adapt` (starting at s = 0) beside the same job at fixed s = 0, 1 and 2.
# Writes results/bench/adapt/README.md and the adaptive run's plot (adapt.png, the switches
# marked); part of `make bench-tune`.
#
#   scripts/bench_adapt.sh                      # about 4 minutes per round on 2 busy cores
#   ROUNDS=1 ITERATIONS=100 CHANGE_AT=70 scripts/bench_adapt.sh
#
# The job: dense synthetic logistic data (ROWS × FEATURES), 5 ranks (n = 4), cyclic-repetition,
# ITERATIONS iterations; rank 2 sleeps DELAY_MS per iteration from iteration CHANGE_AT on
# (`fixed:2:DELAY_MS@CHANGE_AT`). Before the change s = 0 is fastest (each worker computes one
# partition; s = 1 two, s = 2 three); after it s = 0 waits for the sleeper and s ≥ 1 does not.
# Every arm decodes exactly, so all have the same loss at every iteration: the time to the
# last iteration is the time to the final loss (the script checks the final losses agree).
# The arms run in a rotated order each round (the machine is shared: compare within a round).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${GRADCODE:-$ROOT/target/release/gradcode}"
OUT="${OUT:-$ROOT/results/bench/adapt}"
ROUNDS="${ROUNDS:-2}"
ROWS="${ROWS:-100000}"
FEATURES="${FEATURES:-200}"
ITERATIONS="${ITERATIONS:-200}"
CHANGE_AT="${CHANGE_AT:-140}"
DELAY_MS="${DELAY_MS:-300}"
ADAPT_EVERY="${ADAPT_EVERY:-5}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
RUNS="$OUT/runs"
mkdir -p "$RUNS"
DATA="$RUNS/synth-$ROWS-$FEATURES.h5"
[[ -f "$DATA" ]] || "$BIN" -q data synth --kind logistic --rows "$ROWS" --features "$FEATURES" \
  --test-rows 2000 --seed 1 --out "$DATA"

# The values of one /metrics column of a results file, one per line.
column() {
  h5dump -y -w 0 -d "/metrics/$2" "$1" | awk '/DATA \{/{on=1; next} /\}/{on=0} on' \
    | tr -s ' ,' '\n' | grep -E '^-?[0-9.]+(e[-+]?[0-9]+)?$|^-?nan$' || true
}

arm() { # name flags...
  local name=$1; shift
  timeout 1800 mpirun --oversubscribe --bind-to none -np 5 "$BIN" -q train --data "$DATA" \
    --code cyclic-repetition --lr 0.5 --iterations "$ITERATIONS" \
    --straggler-model "fixed:2:$DELAY_MS@$CHANGE_AT" --out "$RUNS/$name" --force "$@" \
    > "$RUNS/$name.log" 2>&1 || { echo "arm $name failed (see $RUNS/$name.log)" >&2; return 1; }
}

ARMS=(adapt s0 s1 s2)
flags_of() {
  case $1 in
    adapt) echo "-s 0 --adapt --adapt-every $ADAPT_EVERY --adapt-max-s 2" ;;
    s*) echo "-s ${1#s}" ;;
  esac
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "## Online adaptation against every fixed s"
  echo
  echo "\`make bench-tune\` (scripts/bench_adapt.sh): synthetic logistic $ROWS × $FEATURES, 5 ranks"
  echo "(n = 4), cyclic-repetition, $ITERATIONS iterations, \`--straggler-model fixed:2:$DELAY_MS@$CHANGE_AT\`"
  echo "(rank 2 sleeps $DELAY_MS ms per iteration from iteration $CHANGE_AT on); \`--adapt --adapt-every $ADAPT_EVERY"
  echo "--adapt-max-s 2\` starts at s = 0. Seconds to the last iteration (\`elapsed_s\`; every arm exact, so"
  echo "the same loss at every iteration: the time to the final loss). Arms in a rotated order per round."
  echo
  echo "| round | \`--adapt\` | s = 0 | s = 1 | s = 2 | best | switches of \`--adapt\` (after iteration) |"
  echo "|---|---|---|---|---|---|---|"
} > "$OUT/README.md.tmp"

for ((r = 1; r <= ROUNDS; r++)); do
  declare -A took=()
  for ((i = 0; i < ${#ARMS[@]}; i++)); do
    a=${ARMS[$(((i + r - 1) % ${#ARMS[@]}))]}
    # shellcheck disable=SC2046
    arm "r$r-$a" $(flags_of "$a")
    took[$a]=$(column "$RUNS/r$r-$a/run.h5" elapsed_s | tail -1)
  done
  losses=$(for a in "${ARMS[@]}"; do column "$RUNS/r$r-$a/run.h5" train_loss | tail -1; done \
    | awk '{ printf "%.10g\n", $1 }' | sort -u | wc -l)
  [[ "$losses" == 1 ]] || echo "round $r: the arms' final losses differ (not all exact?)" >&2
  switches=$(paste -d' ' <(column "$RUNS/r$r-adapt/run.h5" iteration) \
    <(column "$RUNS/r$r-adapt/run.h5" code_s) <(column "$RUNS/r$r-adapt/run.h5" adapt_next_s) \
    | awk '$3 !~ /nan/ { printf "%s%d→%d at %d", (n++ ? ", " : ""), $2, $3, $1 } END { if (!n) printf "none" }')
  best=$(for a in "${ARMS[@]}"; do echo "$a ${took[$a]}"; done | sort -g -k2 | head -1 | cut -d' ' -f1)
  printf '| %d | %.1f | %.1f | %.1f | %.1f | %s | %s |\n' "$r" "${took[adapt]}" "${took[s0]}" \
    "${took[s1]}" "${took[s2]}" "$best" "$switches" >> "$OUT/README.md.tmp"
  unset took
done
"$BIN" -q report "$RUNS/r1-adapt/run.h5" --plot "$OUT/adapt.png" > /dev/null
{
  echo
  echo "Load average (1, 5, 15 min) before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Plot of round 1's adaptive run (switches marked): adapt.png."
} >> "$OUT/README.md.tmp"
mv "$OUT/README.md.tmp" "$OUT/README.md"
cat "$OUT/README.md"
