#!/usr/bin/env bash
# Private multi-node Slurm on one machine, for testing gradcode across nodes (issue 23, GUIDE §6).
#
#   tests/cluster/cluster.sh up|down|status
#   tests/cluster/cluster.sh head CMD...     run CMD in the head namespace (sbatch, squeue, scontrol)
#   tests/cluster/cluster.sh node K CMD...   run CMD in node K's namespaces (network + UTS)
#
# Layout (everything made here, nothing outside it is touched):
#   * a "head" network namespace holding a Linux bridge with $NET.1 and slurmctld (hostname head);
#   * NODES "nodes" (default 3), each its own network namespace joined to the bridge by a veth pair
#     (its end is called eth0, address $NET.(10+K)) and its own UTS namespace (hostname nodeK), with
#     one slurmd; each node also has an interface side0 ($SIDE_NET.(10+K)) that reaches nothing,
#     a second network the job must stay off; no namespace has a route anywhere else;
#   * one munged in the root namespace (a Unix socket under $CLUSTER_TEST_DIR, which every namespace
#     sees: the file system is shared, as a cluster's shared home is), its own key;
#   * the shared working folder is the file system itself (any path, e.g. the test's temp dir).
# Open MPI in a job sees distinct host names and reaches other nodes only over TCP on eth0.
#
# State in $CLUSTER_TEST_DIR (default ${TMPDIR:-/tmp}/gradcode-cluster-test): slurm.conf, spool, logs,
# PID files, and net.env (namespace names). `down` stops only the PIDs recorded there and deletes only
# the namespaces named there. Knobs: NODES (3), NODE_CPUS (8: CPUs Slurm believes each node has, so
# up to 8 ranks per node fit; all nodes share this machine's cores), SLURMD_TIMEOUT (60: seconds before
# slurmctld declares a silent node DOWN), SLURMD_DEBUG (info), CLUSTER_NET (10.77.0: the /24 inside
# the namespaces). Exit 77 = skipped (not root, no `ip netns`, Slurm or munge missing).
set -euo pipefail

D="${CLUSTER_TEST_DIR:-${TMPDIR:-/tmp}/gradcode-cluster-test}"
CONF="$D/etc/slurm.conf"
NODES="${NODES:-3}"
NODE_CPUS="${NODE_CPUS:-8}"
NET="${CLUSTER_NET:-10.77.0}"
SIDE_NET="${CLUSTER_SIDE_NET:-10.78.0}"
SKIP=77
# shellcheck source=tests/slurm/daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/../slurm/daemons.sh"

# Namespace names: a prefix chosen at `up` and kept in net.env, so `down` removes exactly these.
load_net() {
  if [[ -f "$D/net.env" ]]; then
    # shellcheck source=/dev/null
    source "$D/net.env"
  fi
}
ns_head() { echo "${GC_NS_PREFIX:?no cluster state in $D}-head"; }
ns_node() { echo "${GC_NS_PREFIX:?no cluster state in $D}-n$1"; }

preflight() {
  [[ $EUID -eq 0 ]] || skip "must run as root (network namespaces, slurmd and munged need it)"
  command -v ip >/dev/null 2>&1 || skip "no ip command (iproute2)"
  command -v unshare >/dev/null 2>&1 || skip "no unshare (util-linux)"
  local b
  for b in slurmctld slurmd sbatch srun munged setpriv nsenter; do
    command -v "$b" >/dev/null 2>&1 || skip "$b missing (apt-get install slurm-wlm munge)"
  done
  # Can this machine (or container) make network namespaces at all?
  local probe="gcprobe$$"
  ip netns add "$probe" >/dev/null 2>&1 || skip "cannot create a network namespace (ip netns add failed)"
  if ! ip netns exec "$probe" ip link set lo up >/dev/null 2>&1; then
    ip netns del "$probe" >/dev/null 2>&1 || true
    skip "cannot enter a network namespace (ip netns exec failed)"
  fi
  if ! nsenter --net="/run/netns/$probe" unshare --uts --mount --propagation private \
    sh -c 'hostname gcprobe && mount -t tmpfs gcprobe /dev/shm' >/dev/null 2>&1; then
    ip netns del "$probe" >/dev/null 2>&1 || true
    skip "cannot make a node's UTS and mount namespaces (unshare --uts --mount, a private /dev/shm)"
  fi
  if ! ip -n "$probe" link add gcprobe0 type veth peer name gcprobe1 >/dev/null 2>&1; then
    ip netns del "$probe" >/dev/null 2>&1 || true
    skip "cannot make veth pairs (ip link add type veth failed)"
  fi
  ip netns del "$probe"
}

make_net() {
  GC_NS_PREFIX="gc$$x$((RANDOM % 1000))"
  printf 'GC_NS_PREFIX=%q\nGC_NODES=%q\nGC_NET=%q\nGC_SIDE_NET=%q\n' "$GC_NS_PREFIX" "$NODES" "$NET" "$SIDE_NET" >"$D/net.env"
  local h k n
  h=$(ns_head)
  ip netns add "$h"
  ip -n "$h" link set lo up
  ip -n "$h" link add gcbr0 type bridge
  ip -n "$h" addr add "$NET.1/24" dev gcbr0
  ip -n "$h" link set gcbr0 up
  for ((k = 1; k <= NODES; k++)); do
    n=$(ns_node "$k")
    ip netns add "$n"
    ip -n "$n" link set lo up
    ip link add eth0 netns "$n" type veth peer name "veth$k" netns "$h"
    ip -n "$h" link set "veth$k" master gcbr0
    ip -n "$h" link set "veth$k" up
    ip -n "$n" addr add "$NET.$((10 + k))/24" dev eth0
    ip -n "$n" link set eth0 up
    # A second, node-local network (like a management or storage net) that does not reach the other
    # nodes: Open MPI must be kept off it (GRADCODE_NET_IF / btl_tcp_if_include).
    # (a veth pair with both ends in the node: the dummy driver may be missing in containers)
    ip -n "$n" link add side0 type veth peer name side0p
    ip -n "$n" link set side0p up
    ip -n "$n" addr add "$SIDE_NET.$((10 + k))/24" dev side0
    ip -n "$n" link set side0 up
  done
}

del_net() {
  local k
  [[ -n "${GC_NS_PREFIX:-}" ]] || return 0
  for ((k = 1; k <= ${GC_NODES:-$NODES}; k++)); do
    ip netns del "$(ns_node "$k")" 2>/dev/null || true
  done
  ip netns del "$(ns_head)" 2>/dev/null || true
}

write_conf() {
  local k nodes=""
  : >"$D/etc/plugstack.conf"
  echo "PMIxCliTmpDirBase=$D/nodetmp" >"$D/etc/mpi.conf"
  for ((k = 1; k <= NODES; k++)); do nodes+="${nodes:+,}node$k"; done
  {
    cat <<CONF
# Generated by tests/cluster/cluster.sh: private multi-node test cluster in network namespaces.
ClusterName=gradcodemulti
SlurmctldHost=head($NET.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/slurmd-%n
SlurmctldPidFile=$D/run/slurmctld.daemon.pid
SlurmdPidFile=$D/run/slurmd-%n.daemon.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
PlugStackConfig=$D/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
TmpFS=$D/nodetmp
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=${SLURMD_TIMEOUT:-60}
MessageTimeout=5
InactiveLimit=0
MinJobAge=600
KillWait=5
SlurmdDebug=${SLURMD_DEBUG:-info}
CONF
    # SlurmdTimeout (60 s): when slurmctld declares a silent node DOWN. The job scripts run with
    # --no-kill, so that no longer ends a job (tests/cluster/net_faults.sh passes with 20 too); without
    # --no-kill Slurm kills the step then, racing gradcode's bounded shutdown (max(--max-wait-ms, 10 s)).
    # SLURMD_DEBUG (info): SlurmdDebug, e.g. debug2 for Slurm's PMIx plugin's traffic.
    for ((k = 1; k <= NODES; k++)); do
      echo "NodeName=node$k NodeAddr=$NET.$((10 + k)) CPUs=$NODE_CPUS State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=$nodes Default=YES MaxTime=INFINITE State=UP"
  } >"$CONF"
  printf 'export SLURM_CONF=%q\n' "$CONF" >"$D/env"
}

# in_node K CMD...: CMD in node K's network namespace and a fresh UTS namespace named nodeK.
# (nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup file system slurmd needs.)
# Each node also gets its own mount namespace with a private /dev/shm (as separate machines have) and
# its own node-local temp dir at $D/nodetmp (Slurm's PMIx plugin keeps per-step files there; on a
# shared /tmp the nodes' step directories would collide).
node_cmd() { # node_cmd K: sets the array NODE_CMD, the prefix that runs a command as node K
  local k=$1
  mkdir -p "$D/node$k/tmp" "$D/nodetmp"
  NODE_CMD=(nsenter --net="/run/netns/$(ns_node "$k")" unshare --uts --mount --propagation private sh -c '
    hostname "$0" && mount --bind "$1" "$2" && mount -t tmpfs -o size=1g,mode=1777 shm /dev/shm && shift 2 && exec "$@"'
    "node$k" "$D/node$k/tmp" "$D/nodetmp")
}
in_node() {
  node_cmd "$1"
  shift
  "${NODE_CMD[@]}" "$@"
}
in_head() { nsenter --net="/run/netns/$(ns_head)" env SLURM_CONF="$CONF" "$@"; }

start_slurmd() { # start_slurmd K
  mkdir -p "$D/spool/slurmd-node$1"
  node_cmd "$1"
  "${NODE_CMD[@]}" slurmd -D -N "node$1" -f "$CONF" </dev/null >"$D/log/slurmd-node$1.out" 2>&1 &
  echo $! >"$D/run/slurmd-node$1.pid"
}

nodes_idle() {
  local n
  n=$(in_head sinfo -h -N -o %T 2>/dev/null | grep -c '^idle$')
  [[ "$n" == "$NODES" ]]
}

cmd_up() {
  preflight
  mkdir -p "$D"/{etc,state,spool,log,run}
  load_net
  if alive slurmctld || alive munged; then
    say "already up in $D (run down first)"
    return 0
  fi
  make_net
  write_conf
  start_munge
  nsenter --net="/run/netns/$(ns_head)" unshare --uts sh -c 'hostname head && exec "$@"' sh \
    slurmctld -D -i -f "$CONF" </dev/null >"$D/log/slurmctld.out" 2>&1 &
  echo $! >"$D/run/slurmctld.pid"
  local k
  for ((k = 1; k <= NODES; k++)); do start_slurmd "$k"; done
  if ! wait_for 90 "$NODES nodes idle" nodes_idle; then
    say "nodes did not become idle; logs follow"
    in_head sinfo -N >&2 || true
    tail -n 15 "$D"/log/*.log "$D"/log/*.out >&2 || true
    cmd_down
    exit 1
  fi
  say "up: $NODES nodes on $NET.0/24 (namespaces $GC_NS_PREFIX-*), SLURM_CONF=$CONF"
}

# Job step processes left in a node's namespace (a cut link can strand them): killed by PID, found
# through the namespace (ip netns pids), so nothing outside the cluster is touched.
kill_ns_pids() {
  local ns=$1 p
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
}

cmd_down() {
  load_net
  if [[ -n "${GC_NS_PREFIX:-}" ]] && alive slurmctld; then
    in_head scancel --quiet --full 2>/dev/null || true
    local end=$((SECONDS + 15))
    while [[ -n "$(in_head squeue -h -t R,CG -o %i 2>/dev/null)" ]] && ((SECONDS < end)); do sleep 0.5; done
  fi
  local f n k
  for f in "$D"/run/slurmd-node*.pid; do
    [[ -e "$f" ]] || continue
    n=$(basename "$f" .pid)
    stop_pid "$n"
  done
  stop_pid slurmctld
  stop_pid munged
  if [[ -n "${GC_NS_PREFIX:-}" ]]; then
    for ((k = 1; k <= ${GC_NODES:-$NODES}; k++)); do kill_ns_pids "$(ns_node "$k")"; done
    kill_ns_pids "$(ns_head)"
  fi
  del_net
  rm -f "$D/net.env"
  say "down ($D kept; remove it when done)"
}

cmd_status() {
  load_net
  local n rc=0
  for n in munged slurmctld; do
    if alive "$n"; then echo "$n: running (pid $(cat "$D/run/$n.pid"))"; else
      echo "$n: not running"
      rc=1
    fi
  done
  ((rc == 0)) && { in_head sinfo -N || rc=1; }
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  head)
    shift
    load_net
    in_head "$@"
    ;;
  node)
    shift
    load_net
    k=$1
    shift
    in_node "$k" "$@"
    ;;
  slurmd)
    load_net
    start_slurmd "$2"
    ;;
  *)
    echo "usage: $0 up|down|status|head CMD...|node K CMD...|slurmd K   (state in \$CLUSTER_TEST_DIR, default $D)" >&2
    exit 2
    ;;
esac
