#!/usr/bin/env bash
# The long reliability suite (RELIABILITY.md catalogue, the cases tests/reliability.rs covers):
# BI-1 at 2,000 mutants, CR-2 at 60 kill -9 trials, FI-1..FI-9 (test-only fault plan), CR-5..CR-7
# with more signal/kill trials, BI-4, BI-7, BI-8, SEC-1/2, and NET-1..3 (network faults across the
# namespace cluster: tests/cluster/net_faults.sh, skipped with the reason where it cannot run); prints the table
# case | trials | passed | worst time to exit | peak memory. Exit non-zero if any case failed.
# `make reliability` runs it; GRADCODE_BI1_TRIALS / GRADCODE_CR2_TRIALS override the counts.
set -uo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export GRADCODE_RELIABILITY_LONG=1
log=$(mktemp /tmp/gradcode-reliability.XXXXXX)
# The fault plan exists only in builds with the `fault-injection` feature (own target folder).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/faults}
cargo build --release --locked --features fault-injection --example ckpt_stress >/dev/null || exit 1
cargo test --release --locked --features fault-injection --test reliability -- --nocapture --test-threads=1 >"$log" 2>&1
rc=$?
# NET-1..3: network faults on the namespace cluster (tests/cluster/net_faults.sh, the release binary
# `make build` made, NET_TRIALS trials each); exit 77 = skipped where namespaces, root or Slurm are
# missing: the reason goes in the table, the suite does not fail for it.
net_log=$(mktemp /tmp/gradcode-reliability-net.XXXXXX)
GRADCODE="${GRADCODE:-$PWD/target/release/gradcode}" bash tests/cluster/net_faults.sh >"$net_log" 2>&1
net_rc=$?
if [ $net_rc -eq 77 ]; then
  echo "RELIAB|NET-1..3 network faults on the namespace cluster|0|0|0|0|skipped: $(sed -n 's/^# SKIP: //p' "$net_log" | head -n 1)" >>"$log"
else
  grep 'RELIAB|' "$net_log" >>"$log"
  grep -E '^not ok|^# kept' "$net_log" >>"$log"
  [ $net_rc -eq 0 ] || rc=$net_rc
fi
echo
echo "| case | trials | passed | worst time to exit (s) | peak memory (MiB) | notes |"
echo "|---|---:|---:|---:|---:|---|"
grep -o 'RELIAB|.*' "$log" | while IFS='|' read -r _ c n p w k note; do
  if [ "$k" = 0 ]; then mem="-"; else mem=$(awk "BEGIN{printf \"%.1f\", $k/1024}"); fi
  echo "| $c | $n | $p | $w | $mem | $note |"
done
echo
grep -E '^test result|^test .* FAILED|panicked|^not ok|^# kept' "$log" | sed 's/^/  /'
if [ $rc -ne 0 ]; then
  echo "reliability: FAILED (full logs: $log, network faults: $net_log)"
  exit $rc
fi
echo "reliability: every case passed (full logs: $log, network faults: $net_log)"
