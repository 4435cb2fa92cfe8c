# shellcheck shell=bash
# tests/cluster/lib.sh: helpers shared by the tests on the namespace cluster (tests/cluster/run.sh,
# tests/cluster/net_faults.sh). Source it after tests/slurm/lib.sh. The functions read CLUSTER
# (cluster.sh), CLUSTER_TEST_DIR, T (the test's temp dir), W (the shared working folder; job logs in
# $W/results/slurm) and GC_NS_PREFIX (from the cluster's net.env, which cluster_up sources).

# cluster_up: `cluster.sh up` (CLUSTER_UP=1, so the EXIT trap takes it down), then its net.env sourced.
# Skips (exit 77) when the cluster cannot be made here; a failed `up` is a `not ok` and ends the test.
cluster_up() {
  local rc
  CLUSTER_UP=1
  timeout 150 "$CLUSTER" up >"$T/cluster-up.log" 2>&1
  rc=$?
  if ((rc == 77)); then
    CLUSTER_UP=0
    cat "$T/cluster-up.log"
    skip "multi-node cluster could not be set up (see above)"
  fi
  if ((rc != 0)); then
    cat "$T/cluster-up.log"
    not_ok "private 3-node Slurm comes up"
    exit 0
  fi
  # shellcheck source=/dev/null
  source "$CLUSTER_TEST_DIR/net.env"
}

# Slurm commands talk to slurmctld in the head namespace.
sbatch() { "$CLUSTER" head sbatch "$@"; }
squeue() { "$CLUSTER" head squeue "$@"; }
scontrol() { "$CLUSTER" head scontrol "$@"; }
scancel() { "$CLUSTER" head scancel "$@"; }

job_log() { cat "$W/results/slurm/$1.out" 2>/dev/null; }
node_pid() { cat "$CLUSTER_TEST_DIR/run/slurmd-node$1.pid"; }
gradcode_pids() { # gradcode processes in node K's network namespace
  local p
  for p in $(ip netns pids "$GC_NS_PREFIX-n$1" 2>/dev/null); do
    [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == gradcode ]] && echo "$p"
  done
}
