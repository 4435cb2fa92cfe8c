#!/usr/bin/env bash
# Neural networks under gradient coding (issue 21): on Fashion-MNIST, 8 workers, cyclic MDS with
# s = 1 and seeded exp:40 delays, the MLP 784-256-128-10 and the CNN trained with SGD+momentum and
# Adam (both also with Adam and a cosine-decayed rate: `mlp-adam-cosine` over MLP_LONG_ITERATIONS,
# `cnn-adam-cosine`; and a wider CNN,
# 16 and 32 filters and 128 hidden units, the same way over CNN_WIDE_ITERATIONS,
# `cnn-wide-adam-cosine`), and `uncoded`
# beside the coded Adam run under the same seeded delays. For every run: the
# first iteration and wall time (`elapsed_s`) at which the test accuracy reaches the target (88 %
# for the MLP, 90 % for the CNN; evaluated every EVAL_EVERY iterations), the best test accuracy
# and the median iteration time; for K-FAC (`mlp-kfac`, `cnn-kfac`) also the share of rank 0's
# iteration time spent in K-FAC (Σ kfac_s / Σ wall_s: folding the decoded factors in,
# eigendecompositions and preconditioning), of which the eigendecompositions, and for every run the
# workers' median compute time (the factor accumulation is the K-FAC run's excess over the momentum
# run's of the same model) and rank 0's share in decoding (`decode_s`; a K-FAC run's messages carry
# the factor sums too). Before every run, `gradcode gemm` times the model's forward and backward
# GEMMs on a worker's rows (BATCH × (s + 1)) against OpenBLAS dgemm on the same shapes: the pass's
# fraction is a column, the per-layer tables of each model's last measurement a section. Also
# records the load average before and after.
#
#   scripts/bench_nn.sh                      # writes results/bench/nn/{README.md,summary.csv}
#   MLP_ITERATIONS=200 CNN_ITERATIONS=60 scripts/bench_nn.sh     # a short run
#   ONLY="mlp-momentum mlp-kfac" MLP_ITERATIONS=40 scripts/bench_nn.sh   # some runs only
#   ONLY=cnn-wide-adam-cosine EVAL_EVERY=100 scripts/bench_nn.sh       # the CNN at 90 %
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${GRADCODE:-$ROOT/target/release/gradcode}"
OUT="${OUT:-$ROOT/results/bench/nn}"
FASHION="${FASHION:-/usr/share/datasets/fashion-mnist}"
MLP_ITERATIONS="${MLP_ITERATIONS:-1200}"
CNN_ITERATIONS="${CNN_ITERATIONS:-1200}"
CNN_WIDE_ITERATIONS="${CNN_WIDE_ITERATIONS:-3000}"
MLP_LONG_ITERATIONS="${MLP_LONG_ITERATIONS:-2400}"
BATCH="${BATCH:-32}"
EVAL_EVERY="${EVAL_EVERY:-20}"
DELAYS="${DELAYS:-exp:40}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT/runs"
DATA="$OUT/runs/fashion-mnist.h5"
if [[ ! -f "$DATA" ]]; then
  "$BIN" -q data convert --format idx \
    --input "$FASHION/train-images-idx3-ubyte.gz" --labels "$FASHION/train-labels-idx1-ubyte.gz" \
    --test-input "$FASHION/t10k-images-idx3-ubyte.gz" --test-labels "$FASHION/t10k-labels-idx1-ubyte.gz" \
    --license MIT --out "$DATA"
fi

# The values of one /metrics column of a results file, one per line.
column() {
  h5dump -y -w 0 -d "/metrics/$2" "$1" | awk '/DATA \{/{on=1; next} /\}/{on=0} on' \
    | tr -s ' ,' '\n' | grep -E '^-?[0-9.]+(e[-+]?[0-9]+)?$|^-?nan$' || true
}

# The median of the numbers on stdin (empty without any).
median() {
  sort -g | awk '{ w[NR] = $1 } END { if (NR) print (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2 }'
}

# Σ of one /metrics column over Σ wall_s (empty when the column is all NaN).
share() {
  paste -d' ' <(column "$1" "$2") <(column "$1" wall_s) \
    | awk '$1 !~ /nan/ { s += $1; w += $2; n++ } END { if (n && w > 0) printf "%.3f", s / w }'
}

# name | model flags | optimizer flags | code flags | target accuracy | iterations
RUNS=(
  "mlp-momentum|--model mlp --hidden 256,128|--optimizer momentum --momentum 0.9 --lr 0.05|--code cyclic-mds -s 1|0.88|$MLP_ITERATIONS"
  "mlp-kfac|--model mlp --hidden 256,128|--optimizer kfac --momentum 0.9 --lr 0.05 --kfac-inv-every 10|--code cyclic-mds -s 1|0.88|$MLP_ITERATIONS"
  "mlp-adam|--model mlp --hidden 256,128|--optimizer adam --lr 0.001|--code cyclic-mds -s 1|0.88|$MLP_ITERATIONS"
  "mlp-adam-uncoded|--model mlp --hidden 256,128|--optimizer adam --lr 0.001|--code uncoded -s 0|0.88|$MLP_ITERATIONS"
  "mlp-adam-cosine|--model mlp --hidden 256,128|--optimizer adam --lr 0.002 --warmup 50 --lr-schedule cosine:$MLP_LONG_ITERATIONS|--code cyclic-mds -s 1|0.88|$MLP_LONG_ITERATIONS"
  "cnn-momentum|--model cnn|--optimizer momentum --momentum 0.9 --lr 0.05|--code cyclic-mds -s 1|0.90|$CNN_ITERATIONS"
  "cnn-kfac|--model cnn|--optimizer kfac --momentum 0.9 --lr 0.05 --kfac-inv-every 10|--code cyclic-mds -s 1|0.90|$CNN_ITERATIONS"
  "cnn-adam|--model cnn|--optimizer adam --lr 0.001|--code cyclic-mds -s 1|0.90|$CNN_ITERATIONS"
  "cnn-adam-uncoded|--model cnn|--optimizer adam --lr 0.001|--code uncoded -s 0|0.90|$CNN_ITERATIONS"
  "cnn-adam-cosine|--model cnn|--optimizer adam --lr 0.002 --warmup 50 --lr-schedule cosine:$CNN_ITERATIONS|--code cyclic-mds -s 1|0.90|$CNN_ITERATIONS"
  "cnn-wide-adam-cosine|--model cnn --conv-filters 16,32 --hidden 128|--optimizer adam --lr 0.002 --warmup 50 --lr-schedule cosine:$CNN_WIDE_ITERATIONS|--code cyclic-mds -s 1|0.90|$CNN_WIDE_ITERATIONS"
)

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
rm -f "$OUT/runs/mlp.gemm.csv" "$OUT/runs/cnn.gemm.csv"
CSV="$OUT/summary.csv"
echo "run,iterations,target,iteration_at_target,seconds_at_target,best_test_accuracy,final_elapsed_s,median_iteration_ms,kfac_share,kfac_eig_share,median_compute_ms,decode_share,gemm_fraction,kfac_precond_share,factor_sums_ms" > "$CSV"
for r in "${RUNS[@]}"; do
  IFS='|' read -r name mflags oflags cflags target iters <<< "$r"
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
  run="$OUT/runs/$name"
  # The GEMMs of a worker's gradient (its s + 1 partitions' rows) against dgemm, now, at this load.
  s=$(sed -nE 's/.*-s ([0-9]+).*/\1/p' <<< "$cflags")
  model=$(sed -nE 's/.*--model ([a-z]+).*/\1/p' <<< "$mflags")
  # shellcheck disable=SC2086
  "$BIN" -q gemm --data "$DATA" $mflags --rows $((BATCH * (${s:-0} + 1))) --csv > "$run.gemm.csv" \
    || { echo "gemm for $name failed"; : > "$run.gemm.csv"; }
  cp "$run.gemm.csv" "$OUT/runs/$model.gemm.csv"
  gemm=$(awk -F, '$1 == "pass" { print $6 }' "$run.gemm.csv")
  factors=""
  if [[ "$oflags" == *kfac* ]]; then
    factors=$(awk -F, '$1 == "kfac_factors" { print $4 }' "$run.gemm.csv")
  fi
  # shellcheck disable=SC2086
  timeout 3600 mpirun --oversubscribe --bind-to none -np 9 "$BIN" -q train --data "$DATA" \
    $mflags $oflags $cflags --batch "$BATCH" --iterations "$iters" --seed 1 \
    --straggler-model "$DELAYS" --eval-every "$EVAL_EVERY" --out "$run" --force > "$run.log" 2>&1 \
    || { echo "run $name failed (see $run.log)"; continue; }
  paste -d' ' <(column "$run/run.h5" iteration) <(column "$run/run.h5" elapsed_s) \
    <(column "$run/run.h5" test_accuracy) <(column "$run/run.h5" wall_s) > "$run.cols"
  median_ms=$(cut -d' ' -f4 "$run.cols" | median | awk '{ printf "%.1f", $1 * 1e3 }')
  line=$(awk -v t="$target" -v n="$iters" -v med="$median_ms" '
    $3 !~ /nan/ && $3 + 0 > best { best = $3 + 0 }
    $3 !~ /nan/ && $3 + 0 >= t && hit == "" { hit = $1; at = $2 }
    { last = $2 }
    END { printf "%s,%s,%s,%s,%.4f,%.1f,%s", n, t, hit, (hit == "" ? "" : sprintf("%.1f", at)), best, last, med }' "$run.cols")
  compute_ms=$(h5dump -y -w 0 -d /timing/compute_s "$run/run.h5" | awk '/DATA \{/{on=1; next} /\}/{on=0} on' \
    | tr -s ' ,' '\n' | grep -E '^[0-9.]+(e[-+]?[0-9]+)?$' | median | awk '{ printf "%.1f", $1 * 1e3 }')
  line="$line,$(share "$run/run.h5" kfac_s),$(share "$run/run.h5" kfac_eig_s),$compute_ms"
  line="$line,$(share "$run/run.h5" decode_s),$gemm,$(share "$run/run.h5" kfac_precond_s),$factors"
  echo "$name,$line" >> "$CSV"
  echo "done $name: $line"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "# Neural networks on Fashion-MNIST under gradient coding"
  echo
  echo "Made by \`scripts/bench_nn.sh\` on $(hostname) ($(nproc) cores), $(date -u +%Y-%m-%d)."
  echo "8 workers (9 ranks oversubscribed), \`$DELAYS\` seeded delays (seed 1), minibatches of"
  echo "$BATCH rows per partition, test accuracy every $EVAL_EVERY iterations. Load average (1, 5,"
  echo "15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER."
  echo
  echo "| run | iterations | target | iteration at target | seconds at target | best test accuracy | elapsed (s) | median iteration (ms) | K-FAC share | of which eigh | median worker compute (ms) | decode share | GEMM / dgemm | of which preconditioning | factor sums (ms) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  tail -n +2 "$CSV" | awk -F, '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, ($4==""?"not reached":$4), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15}'
  echo
  echo "K-FAC share: Σ \`kfac_s\` / Σ \`wall_s\` at rank 0 (folding the decoded factors in, the"
  echo "eigendecompositions, preconditioning), of which eigh and of which preconditioning: Σ \`kfac_eig_s\`"
  echo "and Σ \`kfac_precond_s\` over Σ \`wall_s\` (the rest of the K-FAC share folds the factors in); decode share:"
  echo "Σ \`decode_s\` / Σ \`wall_s\`. GEMM / dgemm: \`gradcode gemm\` just before the run, a worker's rows"
  echo "($BATCH × (s + 1)): OpenBLAS dgemm's time on the pass's GEMM shapes over the whole forward and"
  echo "backward pass's time (median of 50; 1 = the pass runs at dgemm's speed). Factor sums: the same"
  echo "measurement's median time of a worker's K-FAC factor sums on those rows (added to its compute on"
  echo "a factor-update iteration; its share of the iteration is this over the median iteration)."
  for m in mlp cnn; do
    f="$OUT/runs/$m.gemm.csv"
    [[ -s "$f" ]] || continue
    echo
    echo "### GEMMs of the $m (\`gradcode gemm\`, last measured before its last run)"
    echo
    echo "| layer | GEMMs | Mflop | model (ms) | dgemm (ms) | dgemm / model |"
    echo "|---|---|---|---|---|---|"
    tail -n +2 "$f" | awk -F, '$1 != "kfac_factors" {printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}'
  done
} > "$OUT/README.md"
cat "$OUT/README.md"
