#!/usr/bin/env bash
# Evidence for pdADMM (issue 19, docs/admm.md): test accuracy and wall time of `gradcode admm`
# over layer ranks on MNIST (the test split of ../shared/datasets/mnist, its last 2,000 rows held
# out) and Fashion-MNIST (datasets/fashion-mnist.h5, `make data`), a deeper 10-layer net packed
# with --layers-per-rank, the same network trained by backpropagation (`train --model mlp`,
# Adam, minibatches) on the same rows, time and bytes per iteration against layer count and
# width, one slow layer rank and random delays with and without --max-staleness, and quantized
# exchange.
#
#   scripts/bench_admm.sh                       # every part (about 1.5 h on a loaded 2-core node)
#   PARTS="scaling stragglers" scripts/bench_admm.sh
#   SKIP_DONE=1 scripts/bench_admm.sh            # only the runs without a complete result
#
# Writes results/bench/admm/runs/<name>/run.h5 (+ .log), commands.txt (the command of every run)
# and summary.md (one table row per run, read from the files). Every run is full-batch pdADMM
# with --rho 1e-3 (nu = rho), seed 1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${GRADCODE:-$ROOT/target/release/gradcode}"
OUT="${OUT:-$ROOT/results/bench/admm}"
SHARED="${SHARED:-$ROOT/../shared/datasets}"
PARTS="${PARTS:-scaling stragglers quantize mnist fashion backprop deep}"
# A python3 with h5py for the summary (`make test-deps` installs Debian's python3-h5py).
if [[ -z "${PYTHON:-}" ]]; then
  for p in python3 /usr/bin/python3; do
    if "$p" -c "import h5py" 2>/dev/null; then PYTHON=$p; break; fi
  done
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
MPI=(mpirun --oversubscribe --bind-to none)
mkdir -p "$OUT/runs"
MNIST="$ROOT/datasets/mnist-t10k.h5"
FASHION="$ROOT/datasets/fashion-mnist.h5"
if [[ ! -f "$MNIST" ]]; then
  "$BIN" -q data convert --format idx --input "$SHARED/mnist/t10k-images-idx3-ubyte.gz" \
    --labels "$SHARED/mnist/t10k-labels-idx1-ubyte.gz" --license "CC BY-SA 3.0" --out "$MNIST"
fi
# subset SRC DST N HOLDOUT: a dataset of SRC's first N training rows; its test split is SRC's,
# or with HOLDOUT > 0 the last HOLDOUT training rows (as `admm --train-rows N --holdout H`).
subset() {
  [[ -f "$2" ]] && return 0
  "$PYTHON" - "$@" <<'PY'
import sys, h5py
src, dst, n, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
    x, y = f["X"], f["y"]
    g["X"], g["y"] = x[:n], y[:n]
    if hold > 0:
        g["X_test"], g["y_test"] = x[x.shape[0] - hold:], y[y.shape[0] - hold:]
    else:
        g["X_test"], g["y_test"] = f["X_test"][:], f["y_test"][:]
    for k, v in f.attrs.items():
        g.attrs[k] = v
    g.attrs["n_rows"] = n
    g.attrs["nnz"] = g["X"].size  # dense: all stored values count
    g.attrs["source"] = f"the first {n} rows of {src.rsplit('/', 1)[-1]}" + (
        f", test split its last {hold} rows" if hold else "")
PY
}
COMMANDS="$OUT/commands.txt"
touch "$COMMANDS"

# run NAME NP ARGS...: one MPI job into runs/NAME (NP 0: the serial reference, no mpirun).
run() {
  local name=$1 np=$2
  shift 2
  local dir="$OUT/runs/$name" cmd
  if [[ $np == 0 ]]; then
    cmd=("$BIN" "$@" --out "$dir" --force)
  else
    cmd=("${MPI[@]}" -np "$np" "$BIN" "$@" --out "$dir" --force)
  fi
  if [[ -n "${SKIP_DONE:-}" ]] && grep -qsE "complete after|status complete" "$dir.log"; then
    echo "== $name: done before"
    return 0
  fi
  # One line per run: a run repeated replaces its line.
  grep -v "^$name: " "$COMMANDS" > "$COMMANDS.tmp" || true
  mv "$COMMANDS.tmp" "$COMMANDS"
  echo "$name: ${cmd[*]}" | sed "s|$ROOT/||g" >> "$COMMANDS"
  echo "== $name ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
  local t0=$SECONDS
  timeout 7200 "${cmd[@]}" > "$dir.log" 2>&1 || echo "   $name failed (exit $?; see $dir.log)"
  echo "   $((SECONDS - t0)) s (load $(cut -d' ' -f1-3 /proc/loadavg))"
}

has() { [[ " $PARTS " == *" $1 "* ]]; }
MLP=(admm --rho 1e-3 --seed 1)

if has scaling; then
  # Time and bytes per iteration: 2,000 rows, 10 iterations, against depth (width 256) and width
  # (3 layers); the serial reference of the 3-layer net for comparison.
  for depth in 2 3 4 6; do
    layers="784$(printf ',256%.0s' $(seq 1 $((depth - 1)))),10"
    run "scale-depth$depth" $((depth + 1)) "${MLP[@]}" --data "$MNIST" --layers "$layers" \
      --train-rows 2000 --holdout 2000 --iterations 10 --eval-every 0 --log-every 5
  done
  for width in 128 512 1024; do
    run "scale-width$width" 4 "${MLP[@]}" --data "$MNIST" --layers "784,$width,$width,10" \
      --train-rows 2000 --holdout 2000 --iterations 10 --eval-every 0 --log-every 5
  done
  run scale-depth3-reference 0 "${MLP[@]}" --reference --data "$MNIST" --layers 784,256,256,10 \
    --train-rows 2000 --holdout 2000 --iterations 10 --eval-every 0 --log-every 5
fi
if has stragglers; then
  # 4,000 rows, 784-256-256-10, 40 iterations: no injected delay; layer rank 2 sleeping 1.5 s
  # every iteration; every rank sleeping an exponential delay of mean 0.5 s; each with
  # --max-staleness 0, 2 and 8.
  for model in none fixed:2:1500 exp:500; do
    for k in 0 2 8; do
      run "strag-${model//[:,]/-}-k$k" 4 "${MLP[@]}" --data "$MNIST" --layers 784,256,256,10 \
        --train-rows 4000 --holdout 2000 --iterations 40 --eval-every 10 --log-every 10 \
        --straggler-model "$model" --max-staleness "$k"
    done
  done
fi
if has quantize; then
  # The same net as the stragglers' baseline, exchanging 16- and 8-bit values.
  for bits in 16 8; do
    run "quant-$bits" 4 "${MLP[@]}" --data "$MNIST" --layers 784,256,256,10 --train-rows 4000 \
      --holdout 2000 --iterations 40 --eval-every 10 --log-every 10 --quantize-bits "$bits"
  done
fi

if has mnist; then
  # MNIST test split: 8,000 training rows, the last 2,000 held out; 784-500-500-10.
  run mnist-500x2 4 "${MLP[@]}" --data "$MNIST" --layers 784,500,500,10 --train-rows 8000 \
    --holdout 2000 --iterations 150 --eval-every 10 --log-every 10
fi
if has fashion; then
  [[ -f "$FASHION" ]] || make -C "$ROOT" data
  # Fashion-MNIST: the first 10,000 training rows (memory and time on 2 cores), the whole test
  # split; 784-500-500-10.
  run fashion-500x2 4 "${MLP[@]}" --data "$FASHION" --layers 784,500,500,10 --train-rows 10000 \
    --iterations 150 --eval-every 10 --log-every 10
fi
if has backprop; then
  [[ -f "$FASHION" ]] || make -C "$ROOT" data
  # The same 784-500-500-10 network by backpropagation (`train --model mlp`): Adam, minibatches
  # of 3 x 128 rows over 3 workers (uncoded), the same 1 + 3 ranks, on the rows pdADMM trained
  # on (the subsets below: train has no --train-rows/--holdout), and on all of Fashion-MNIST.
  subset "$MNIST" "$ROOT/datasets/mnist-t10k-8k.h5" 8000 2000
  subset "$FASHION" "$ROOT/datasets/fashion-mnist-10k.h5" 10000 0
  BP=(train --model mlp --hidden 500,500 --code uncoded -s 0 --batch 128 --optimizer adam
    --lr 1e-3 --eval-every 26 --log-every 26 --seed 1)
  run mnist-backprop 4 "${BP[@]}" --data "$ROOT/datasets/mnist-t10k-8k.h5" --epochs 20
  run fashion-backprop 4 "${BP[@]}" --data "$ROOT/datasets/fashion-mnist-10k.h5" --epochs 20
  run fashion-backprop-all 4 "${BP[@]}" --data "$FASHION" --epochs 3
fi
if has deep; then
  # A 10-layer net, two layers per rank: 1 + 5 ranks.
  run mnist-deep10 6 "${MLP[@]}" --data "$MNIST" --layers 784,128,128,128,128,128,128,128,128,128,10 \
    --layers-per-rank 2 --train-rows 4000 --holdout 2000 --iterations 100 --eval-every 10 --log-every 10
fi
# One row per run, from its results file.
"$PYTHON" - "$OUT" > "$OUT/summary.md" <<'EOF'
import glob, os, sys
import h5py, numpy as np
out = sys.argv[1]
cmds = dict(l.split(": ", 1) for l in open(os.path.join(out, "commands.txt")).read().splitlines() if ": " in l)
print("| run | status | iterations | final train acc | final test acc | wall p50 (s/it) | total wall (s) | bytes between layer ranks per it | mean wait per rank (s/it) |")
print("|---|---|---|---|---|---|---|---|---|")
for name in cmds:
    p = os.path.join(out, "runs", name, "run.h5")
    if not os.path.exists(p):
        print(f"| {name} | missing | | | | | | | |")
        continue
    f = h5py.File(p, "r")
    m, s = f["metrics"], f["summary"].attrs
    wall = m["wall_s"][:]
    def last(name):
        v = m[name][:] if name in m else np.array([])
        v = v[np.isfinite(v)]
        return f"{v[-1]:.4f}" if len(v) else "-"
    nb = m["bytes_neighbour"][:] if "bytes_neighbour" in m else np.array([np.nan])
    wait = f["timing/wait_s"][:] if "timing/wait_s" in f and f["timing/wait_s"].shape[1] else None
    w = " ".join(f"{x:.2f}" for x in np.nanmean(wait, axis=0)) if wait is not None and len(wait) else "-"
    print(f"| {name} | {f.attrs['status']} | {len(wall)} | {last('train_accuracy')} | {last('test_accuracy')} | "
          f"{np.median(wall):.3f} | {m['elapsed_s'][-1]:.0f} | {np.nanmean(nb):.3e} | {w} |")
EOF
cat "$OUT/summary.md"
echo "commands: $COMMANDS"
