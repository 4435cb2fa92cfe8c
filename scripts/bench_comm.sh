#!/usr/bin/env bash
# Less communication (issue 20, parts 1 and 3): on a wide sparse logistic problem shaped like
# Amazon Employee Access (241,915 one-hot-like columns with a Zipf column distribution, 44
# non-zeros per row, 26,208 training rows), 8 workers and s = 1, run the dense baseline
# (cyclic-mds), the communication-efficient code with m = 1, 2, 4, and every compressor with and
# without error feedback, and tabulate bytes and time per iteration, training loss, test
# accuracy and AUC at the same iteration count, and what compression changed in the gradient;
# then models the flat and the tree decode for 10^3-10^4 workers from the dense run's start-up
# link probe (scripts/tree_model.py). Then (part "tree", issue 20 §4) it measures the flat against
# the tree decode (`train --decode-tree 4`), and the tree decode with the leaders compressing
# (`--compress qsgd:16`), at 16 and 32 workers on a small dense problem: rank 0's result
# messages and bytes per iteration, time per iteration, final training loss.
#
#   scripts/bench_comm.sh            # writes results/bench/comm/{README.md,summary.csv,tree.md}
#   ITERATIONS=50 scripts/bench_comm.sh
#   PARTS=tree TREE_ITERATIONS=5 scripts/bench_comm.sh    # only the flat vs tree rows (tree.md)
#
# 1 + 8 ranks (oversubscribed on small machines), no injected stragglers: the iteration time is
# computation plus communication. The tree rows run 17 and 33 ranks: on a small machine they are
# heavily oversubscribed, and the tables say so.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${GRADCODE:-$ROOT/target/release/gradcode}"
OUT="${OUT:-$ROOT/results/bench/comm}"
ITERATIONS="${ITERATIONS:-100}"
PARTS="${PARTS:-codes tree}"
TREE_ITERATIONS="${TREE_ITERATIONS:-20}"
TREE_WORKERS="${TREE_WORKERS:-16 32}"
TREE_G="${TREE_G:-4}"
TREE_COMPRESS="${TREE_COMPRESS:-qsgd:16}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$OUT/runs"
wants() { [[ " $PARTS " == *" $1 "* ]]; }

# Mean of the finite values of dataset $2 in run file $1, after the first $3 rows (default 0).
mean() {
  h5dump -y -d "$2" "$1" | sed -n '/DATA {/,/}/p' | tr -s ' ,' '\n' | grep -vE '^(DATA|\{|\})?$' \
    | awk -v skip="${3:-0}" 'NR > skip && $1 ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ {s += $1; n++} END {if (n) printf "%.6g", s / n; else print "nan"}'
}

if wants codes; then
DATA="$OUT/runs/amazon-like.h5"
SYNTH=(data synth --kind logistic --rows 26208 --test-rows 6552 --features 241915
       --sparsity 0.000182 --zipf 1 --seed 1)
if [[ ! -f "$DATA" ]]; then
  "$BIN" -q "${SYNTH[@]}" --out "$DATA"
fi
COMMON=(--model logistic --lr 4 --iterations "$ITERATIONS" --seed 1 --deadline-ms 2000
        --eval-every 0 --check-gradient-every 20)

# name | flags
RUNS=(
  "cyclic-mds (dense)|--code cyclic-mds -s 1"
  "support messages|--code cyclic-mds -s 1 --messages support"
  "comm-efficient m=1|--code comm-efficient -s 1 --split 1"
  "comm-efficient m=2|--code comm-efficient -s 1 --split 2"
  "comm-efficient m=4|--code comm-efficient -s 1 --split 4"
  "qsgd:4|--code cyclic-mds -s 1 --compress qsgd:4"
  "qsgd:32|--code cyclic-mds -s 1 --compress qsgd:32"
  "qsgd:32 + EF|--code cyclic-mds -s 1 --compress qsgd:32 --error-feedback"
  "topk:0.01|--code cyclic-mds -s 1 --compress topk:0.01"
  "topk:0.01 + EF|--code cyclic-mds -s 1 --compress topk:0.01 --error-feedback"
  "sign|--code cyclic-mds -s 1 --compress sign"
  "sign + EF|--code cyclic-mds -s 1 --compress sign --error-feedback"
  "comm-efficient m=2 + topk:0.01 + EF|--code comm-efficient -s 1 --split 2 --compress topk:0.01 --error-feedback"
)

CSV="$OUT/summary.csv"
echo "run,bytes_received_per_iter,bytes_sent_per_iter,p50_ms,p95_ms,final_train_loss,test_accuracy,test_auc,compress_rel_err,decode_weight_sq,flags" > "$CSV"
for r in "${RUNS[@]}"; do
  IFS='|' read -r name flags <<< "$r"
  dir="$OUT/runs/$(echo "$name" | tr -c 'a-zA-Z0-9=.\n' '_')"
  # shellcheck disable=SC2086
  timeout 600 mpirun --oversubscribe --bind-to none -np 9 "$BIN" -q train --data "$DATA" \
    "${COMMON[@]}" $flags --out "$dir" --force > "$dir.log" 2>&1 \
    || { echo "run $name failed (see $dir.log)"; continue; }
  fields=$("$BIN" report "$dir" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)["runs"][0]
f = lambda v, fmt: "" if v is None else fmt.format(v)
print(",".join([f(r["p50_s"] * 1e3, "{:.1f}"), f(r["p95_s"] * 1e3, "{:.1f}"), f(r.get("final_train_loss"), "{:.5f}"),
                f(r.get("final_test_accuracy"), "{:.4f}"), f(r.get("final_test_auc"), "{:.4f}")]))')
  f="$dir/run.h5"
  # Bytes: every iteration after the first (the first also gathers the check pieces).
  echo "$name,$(mean "$f" /metrics/bytes_received 1),$(mean "$f" /metrics/bytes_sent 1),$fields,$(mean "$f" /metrics/compress_rel_err),$(mean "$f" /metrics/decode_weight_sq),$flags" >> "$CSV"
  echo "done $name"
done

{
  echo "# Less communication on an Amazon-like sparse problem (8 workers, s = 1, $ITERATIONS iterations)"
  echo
  echo "Made by \`scripts/bench_comm.sh\` (\`make bench-comm\`) on $(hostname) ($(nproc) cores), $(date -u +%Y-%m-%d);"
  echo "load average when it started: $LOAD0."
  echo "Data: \`gradcode ${SYNTH[*]}\` (26,208 × 241,915 CSR, 44 non-zeros a row, Zipf columns;"
  echo "6,552 test rows). Every run: \`mpirun --oversubscribe --bind-to none -np 9 gradcode train --data DATA ${COMMON[*]} FLAGS\`,"
  echo "no injected stragglers. Bytes are per iteration at rank 0, means over iterations 1.. (the first"
  echo "also gathers the check pieces, which are not counted); \`compress_rel_err\` is the mean over the"
  echo "gradient checks of ‖ĝ − ĝ_uncompressed‖/‖ĝ_uncompressed‖, \`Σa²\` the mean of \`decode_weight_sq\`."
  echo
  echo "| run | bytes received / iter | bytes sent / iter | p50 ms | p95 ms | train loss | test acc | test AUC | compress rel err | Σa² |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  tail -n +2 "$CSV" | awk -F, '{printf "| %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}'
  echo
  echo "Flags of each run:"
  echo
  tail -n +2 "$CSV" | awk -F, '{printf "- %s: `%s`\n", $1, $11}'
} > "$OUT/README.md"

# The flat and the tree decode modelled for 10^3-10^4 workers (issue 20 §4) from the dense
# run's start-up link probe (/env/link_alpha_s, /env/link_beta_s_per_byte) and its message
# size (bytes received per iteration / 8 workers).
dense="$OUT/runs/$(echo "cyclic-mds (dense)" | tr -c 'a-zA-Z0-9=.\n' '_')/run.h5"
attr() { h5dump -a "/env/$2" "$1" 2>/dev/null | sed -n 's/^ *(0): //p'; }
alpha="$(attr "$dense" link_alpha_s || true)"
if [[ -n "$alpha" ]]; then
  beta="$(attr "$dense" link_beta_s_per_byte)"
  msg="$(awk -v b="$(mean "$dense" /metrics/bytes_received 1)" 'BEGIN {printf "%.0f", b / 8}')"
  {
    echo
    echo "## Flat vs tree decode for 10³–10⁴ workers (a model, not a measurement)"
    echo
    echo "\`scripts/tree_model.py $alpha $beta $msg\`: the dense run's link probe and message size;"
    echo "rank 0 receives n messages one at a time (flat), or leaders G − 1 each in parallel and then"
    echo "rank 0 n/G (tree); computation, stragglers and the parameters sent out are left out."
    echo
    python3 "$ROOT/scripts/tree_model.py" "$alpha" "$beta" "$msg"
  } >> "$OUT/README.md"
else
  echo "no link probe in $dense: the tree model is left out"
fi
fi

# Flat vs tree decode measured (issue 20 §4): n workers (n + 1 ranks), cyclic-repetition s = 1,
# flat and --decode-tree $TREE_G, on a small dense logistic problem (the docs' table).
if wants tree; then
  TDATA="$OUT/runs/d2k.h5"
  TSYNTH=(data synth --kind logistic --rows 3600 --features 2000 --test-rows 400 --seed 1)
  if [[ ! -f "$TDATA" ]]; then
    "$BIN" -q "${TSYNTH[@]}" --out "$TDATA"
  fi
  TLOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
  TCOMMON=(--code cyclic-repetition -s 1 --iterations "$TREE_ITERATIONS" --seed 1)
  rows=()
  for n in $TREE_WORKERS; do
    for decode in flat tree tree-compressed; do
      flags=()
      label="flat"
      if [[ $decode == tree ]]; then
        flags=(--decode-tree "$TREE_G")
        label="tree, G = $TREE_G"
      elif [[ $decode == tree-compressed ]]; then
        flags=(--decode-tree "$TREE_G" --compress "$TREE_COMPRESS")
        label="tree, G = $TREE_G, --compress $TREE_COMPRESS"
      fi
      dir="$OUT/runs/tree-$n-$decode"
      timeout 900 mpirun --oversubscribe --bind-to none -np $((n + 1)) "$BIN" -q train --data "$TDATA" \
        "${TCOMMON[@]}" "${flags[@]}" --out "$dir" --force > "$dir.log" 2>&1 \
        || { echo "run $n $decode failed (see $dir.log)"; continue; }
      fields=$("$BIN" report "$dir" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)["runs"][0]
f = lambda v, fmt: "" if v is None else fmt.format(v)
print(" | ".join([f(r["p50_s"] * 1e3, "{:.1f}"), f(r["p95_s"] * 1e3, "{:.1f}"), f(r.get("final_train_loss"), "{:.6f}")]))')
      f="$dir/run.h5"
      msgs="$(awk -v m="$(mean "$f" /metrics/messages_received)" 'BEGIN {printf "%.1f", m}')"
      kb="$(awk -v b="$(mean "$f" /metrics/bytes_received)" 'BEGIN {printf "%.1f", b / 1e3}')"
      rows+=("| $n | $label | $msgs | $kb | $fields |")
      echo "done tree rows: $n workers, $label"
    done
  done
  {
    echo
    echo "## Flat vs tree decode measured at ${TREE_WORKERS// / and } workers"
    echo
    echo "Made by \`scripts/bench_comm.sh\` (\`make bench-comm\`, \`PARTS=tree\` for these rows only) on"
    echo "$(hostname), $(date -u +%Y-%m-%d): n + 1 ranks **oversubscribed on $(nproc) cores**, one run each;"
    echo "load average when the rows started: $TLOAD. Data: \`gradcode ${TSYNTH[*]}\`."
    echo "Every run: \`mpirun --oversubscribe --bind-to none -np N+1 gradcode train --data DATA ${TCOMMON[*]}\`"
    echo "(and \`--decode-tree $TREE_G\`, then also \`--compress $TREE_COMPRESS\`: the leaders compress), no injected stragglers. Messages and kB are rank 0's result messages"
    echo "and bytes received per iteration (means of \`/metrics/messages_received\` and \`/metrics/bytes_received\`)."
    echo
    echo "| workers n | decode | rank-0 messages / iter | rank-0 kB / iter | p50 ms | p95 ms | final train loss |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
  } > "$OUT/tree.md"
  if wants codes; then
    cat "$OUT/tree.md" >> "$OUT/README.md"
  fi
fi
if wants codes; then
  cat "$OUT/README.md"
else
  cat "$OUT/tree.md"
fi
