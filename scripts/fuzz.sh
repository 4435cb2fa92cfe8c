#!/usr/bin/env bash
# Run every cargo-fuzz target of fuzz/ for SECONDS each (default 5): `scripts/fuzz.sh [SECONDS]`.
# Seeds: the checked-in corpus fuzz/corpus/TARGET (read only); new inputs go to fuzz/work/TARGET,
# crashes to fuzz/artifacts/TARGET. cargo-fuzz needs nightly compiler features: on a stable
# toolchain they are unlocked with RUSTC_BOOTSTRAP=1. Installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-5}
TARGETS=${FUZZ_TARGETS:-"libsvm csv idx config header"}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# Address sanitizer: gradcode is safe Rust, but the linked C libraries are not.
cargo fuzz build --release ${FUZZ_SANITIZER:+-s "$FUZZ_SANITIZER"} >/dev/null
status=0
for t in $TARGETS; do
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  start=$(date +%s.%N)
  if cargo fuzz run --release ${FUZZ_SANITIZER:+-s "$FUZZ_SANITIZER"} "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
       -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
       -max_len=65536 -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 \
       >"fuzz/work/$t.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/work/$t.log" | grep -o '[0-9]*$' || echo '?')
    printf 'fuzz %-7s ok      %8s runs in %ss\n' "$t" "$runs" "$SECONDS_PER_TARGET"
  else
    status=1
    printf 'fuzz %-7s FAILED  (see fuzz/work/%s.log, fuzz/artifacts/%s/)\n' "$t" "$t" "$t"
    tail -20 "fuzz/work/$t.log"
  fi
  : "$start"
done
exit $status
