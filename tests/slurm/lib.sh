# shellcheck shell=bash
# tests/slurm/lib.sh: helpers shared by the Slurm tests (tests/slurm/run.sh, tests/cluster/run.sh).
# Source it; it reads GRADCODE and JOB_TIMEOUT and calls squeue/scontrol/h5dump (a test may wrap
# squeue and scontrol in functions, e.g. to run them in another network namespace).

PASS=0
FAIL=0
ok() {
  echo "ok - $*"
  PASS=$((PASS + 1))
}
not_ok() {
  echo "not ok - $*"
  FAIL=$((FAIL + 1))
}
check() { # check DESCRIPTION COMMAND...: an ok/not ok line; returns 1 when the check failed
  local d=$1
  shift
  if "$@"; then ok "$d"; else
    not_ok "$d"
    return 1
  fi
}
note() { echo "# $*"; }
skip() {
  echo "# SKIP: $*"
  exit 77
}

field() { # field JOBID NAME -> value from `scontrol show job` (first record)
  scontrol -o show job "$1" 2>/dev/null | head -n 1 | grep -oE "(^| )$2=[^ ]*" | head -n 1 | cut -d= -f2-
}
wait_gone() { # wait_gone JOBID...: until none is pending/running; 1 on timeout
  local end=$((SECONDS + JOB_TIMEOUT))
  while [[ -n "$(squeue -h -j "$(
    IFS=,
    echo "$*"
  )" -o %i 2>/dev/null)" ]]; do
    ((SECONDS < end)) || return 1
    sleep 1
  done
}
status_of() { # status_of RUN.h5 -> the root attribute "status"
  h5dump -a /status "$1" 2>/dev/null | sed -n 's/.*(0): "\(.*\)".*/\1/p' | sed 's/\\000//g'
}
# shellcheck disable=SC2317  # called through check
valid_run() { # valid_run RUN.h5 ITERATIONS: complete, VALID, not partial, every planned iteration
  # (quoted CSV fields, such as a straggler spec with commas, are blanked first: awk splits on commas)
  "$GRADCODE" report --csv "$1" 2>/dev/null | sed -E 's/"[^"]*"/q/g' | awk -F, -v want="$2" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    NR == 2 { ok = $col["status"] == "complete" && $col["verdict"] == "VALID" && $col["partial"] == "false" &&
              $col["iterations"] == want && $col["iterations_planned"] == want }
    END { exit !(NR == 2 && ok) }'
}

# test_tempdir NAME: makes the test's temp dir T (755: munged, user munge, must reach the cluster
# state below it) and installs the EXIT trap: `"$CLUSTER" down` when CLUSTER_UP=1, the summary line
# `N passed, M failed`, T removed unless something failed or KEEP is set; exit 0, 1, or 77 (skipped).
test_tempdir() {
  T="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  chmod 755 "$T"
  CLUSTER_UP=0
  trap test_finish EXIT
  trap 'exit 130' INT TERM
}
# shellcheck disable=SC2317  # called by the EXIT trap
test_finish() {
  local rc=$?
  trap - EXIT INT TERM
  if ((CLUSTER_UP)); then "$CLUSTER" down >"$T/cluster-down.log" 2>&1 || echo "# cluster down failed: $T/cluster-down.log"; fi
  if ((rc == 77)); then
    rm -rf "$T"
    exit 77
  fi
  ((rc == 0)) || not_ok "test script aborted (exit $rc)"
  echo "$PASS passed, $FAIL failed"
  if ((FAIL == 0)) && [[ -z "${KEEP:-}" ]]; then rm -rf "$T"; else echo "# kept $T"; fi
  ((FAIL == 0)) || exit 1
  exit 0
}
