#!/usr/bin/env bash
# Scaling across nodes (issue 23): the same training run on the namespace cluster of
# tests/cluster/cluster.sh, once with all ranks on one node (shared memory) and once spread over NODES
# nodes (TCP), for a9a and Fashion-MNIST. Prints a markdown table: time per iteration (p50), rank 0's
# bytes per iteration (parameters posted / answers received), and the share of the iteration not
# spent computing, 1 - oracle/p50
# (the oracle is the slowest worker's compute alone: what is left is communication, decode and waiting).
# Between nodes, two transports: Open MPI's TCP BTL and its UCX PML over TCP (GRADCODE_MPI_NET).
# Needs root and network namespaces. Knobs: NODES (3), PER_NODE (3: ranks per node), ITERATIONS (30).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
G="${GRADCODE:-$ROOT/target/release/gradcode}"
NODES="${NODES:-3}" PER_NODE="${PER_NODE:-3}" ITERATIONS="${ITERATIONS:-30}"
NP=$((NODES * PER_NODE))
T="$(mktemp -d "${TMPDIR:-/tmp}/gradcode-bench-cluster.XXXXXX")"
chmod 755 "$T"
export CLUSTER_TEST_DIR="$T/cluster" NODES NODE_CPUS=$((NP > 8 ? NP : 8))
C="$ROOT/tests/cluster/cluster.sh"
trap '"$C" down >/dev/null 2>&1; rm -rf "$T"' EXIT
"$C" up >"$T/up.log" 2>&1 || { cat "$T/up.log"; exit 1; }
F="${FASHION:-/usr/share/datasets/fashion-mnist}"
S="${SHARED_DATA:-$ROOT/../shared/datasets}"
"$G" data convert --format libsvm --input "$S/a9a/a9a" --features 123 --license "CC BY 4.0" --out "$T/a9a.h5" >/dev/null
"$G" data convert --format idx --input "$F/train-images-idx3-ubyte.gz" --labels "$F/train-labels-idx1-ubyte.gz" \
  --license MIT --out "$T/fashion.h5" >/dev/null
# The two transports between nodes the job scripts choose from (GRADCODE_MPI_NET): Open MPI's TCP BTL,
# and its UCX PML over UCX's TCP transport on eth0 (the default where Open MPI has UCX).
declare -A NET_ENV=([shm]="" [tcp]="OMPI_MCA_pml=ob1"
  [ucx]="OMPI_MCA_pml=ucx OMPI_MCA_pml_ucx_tls=any OMPI_MCA_pml_ucx_devices=any OMPI_MCA_btl=self,vader OMPI_MCA_osc=ucx UCX_TLS=tcp,sm,self UCX_NET_DEVICES=eth0")
declare -A NET_NAME=([shm]="shared memory" [tcp]="TCP BTL" [ucx]="UCX over TCP")
h5col() { h5dump -y -m %.9g -d "$2" "$1" 2>/dev/null | sed -n '/DATA {/,/}/p' | tr ', ' '\n\n' | grep -E '^[0-9.eE+-]+$'; }
echo "| data | layout | ranks | p50 ms/iter | oracle p50 ms | rank 0 bytes/iter sent / received | share not computing |"
echo "|---|---|---:|---:|---:|---:|---:|"
for d in a9a fashion; do
  model=logistic
  [[ $d == fashion ]] && model=softmax
  for layout in "1 $NP shm" "$NODES $PER_NODE tcp" "$NODES $PER_NODE ucx"; do
    read -r n per net <<<"$layout"
    out="$T/$d-$n-$net"
    # shellcheck disable=SC2086  # NET_ENV holds several VAR=value words
    "$C" head env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 \
      OMPI_MCA_btl_tcp_if_include=eth0 ${NET_ENV[$net]} timeout 600 srun --overcommit --mpi=pmix -N "$n" --ntasks-per-node="$per" \
      "$G" train --data "$T/$d.h5" --model "$model" --code cyclic-mds -s 1 --lr 0.1 --iterations "$ITERATIONS" \
      --seed 1 --out "$out" --force -q >"$out.log" 2>&1 || { echo "| $d | $n node(s), ${NET_NAME[$net]} | $NP | failed: $(tail -n 1 "$out.log") | | | |"; continue; }
    row=$("$G" report --csv "$out/run.h5" | sed -E 's/"[^"]*"/q/g' | awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
      { printf "%.2f %.6f", $c["p50_s"] * 1000, $c["oracle_p50_s"] * 1000 }')
    read -r p50 oracle <<<"$row"
    sent=$(h5col "$out/run.h5" /metrics/bytes_sent | awk '{ s += $1; n++ } END { printf "%d", n ? s / n : 0 }')
    recv=$(h5col "$out/run.h5" /metrics/bytes_received | awk '{ s += $1; n++ } END { printf "%d", n ? s / n : 0 }')
    share=$(awk -v p="$p50" -v o="$oracle" 'BEGIN { printf "%.0f%%", (p > 0) ? 100 * (1 - o / p) : 0 }')
    echo "| $d | $n node(s) x $per, ${NET_NAME[$net]} | $NP | $p50 | $oracle | $sent / $recv | $share |"
  done
done
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, ITERATIONS=$ITERATIONS"
