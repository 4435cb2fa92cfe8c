# shellcheck shell=bash
# tests/slurm/daemons.sh: daemon helpers shared by tests/slurm/cluster.sh and tests/cluster/cluster.sh.
# Source it after setting D (the state dir: run/ for PID files, log/, munge/) and SKIP (77).

say() { printf 'cluster: %s\n' "$*" >&2; }
skip() { say "SKIP: $*"; exit "$SKIP"; }
die() { say "ERROR: $*"; exit 1; }

alive() { [[ -f "$D/run/$1.pid" ]] && kill -0 "$(cat "$D/run/$1.pid")" 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2
  shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.2
  done
  say "$what: ready"
}

start_munge() {
  local m="$D/munge"
  mkdir -p "$m"
  # munged runs as user munge: every directory above the state dir must let it through.
  setpriv --reuid=munge --regid=munge --init-groups test -x "$D" ||
    die "user munge cannot reach $D (a parent directory is private, e.g. mktemp -d is 0700: chmod 755 it)"
  chown munge:munge "$m"
  chmod 0755 "$m" # munged refuses group/world-writable dirs; clients need to reach the socket
  if [[ ! -s "$m/munge.key" ]]; then
    if command -v mungekey >/dev/null 2>&1; then
      mungekey --create --keyfile="$m/munge.key" >/dev/null 2>&1 || rm -f "$m/munge.key"
    fi
    [[ -s "$m/munge.key" ]] || dd if=/dev/urandom of="$m/munge.key" bs=1 count=1024 status=none
    chown munge:munge "$m/munge.key"
    chmod 0400 "$m/munge.key"
  fi
  # Own socket, key, pid, log and seed files: an existing munged on /run/munge is left alone.
  setpriv --reuid=munge --regid=munge --init-groups \
    munged -F --socket="$m/munge.socket" --key-file="$m/munge.key" --pid-file="$m/munged.pid" \
    --log-file="$m/munged.log" --seed-file="$m/munged.seed" \
    </dev/null >"$D/log/munged.out" 2>&1 &
  echo $! >"$D/run/munged.pid"
  wait_for 10 munged test -S "$m/munge.socket" || die "munged did not start (see $D/log/munged.out, $m/munged.log)"
}

stop_pid() { # stop_pid NAME: TERM, wait up to 15 s, then KILL; only the recorded PID
  local f="$D/run/$1.pid" pid i
  [[ -f "$f" ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 75; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$1 ($pid) ignored TERM, killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "$1 ($pid) stopped"
  fi
  rm -f "$f"
}
