#!/usr/bin/env bash
# Checks easybuild/gradcode-0.1.0.eb with EasyBuild: EasyBuild from PyPI into a throw-away
# virtualenv, Lmod (Debian's `lmod`) as its modules tool, a source archive of HEAD.
#   check.sh          extended dry run: prints the build and install commands EasyBuild would run
#                     and checks they are `cargo build` (linked by gcc) and `make install PREFIX=<installdir>`.
#   check.sh --full   the real `eb` build and install into a temporary prefix (compiles the crate:
#                     minutes), then `module load gradcode` from EasyBuild's module tree and a short
#                     `mpirun` training job of the installed binary, read back with `gradcode report`.
# Exit 0 ok, 1 failed, 77 skipped (no lmod, or EasyBuild not installable here).
set -uo pipefail
FULL=0
[[ "${1:-}" == --full ]] && FULL=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LMOD_INIT=/usr/share/lmod/lmod/init/bash
[[ -f "$LMOD_INIT" ]] || { echo "# SKIP: no Lmod ($LMOD_INIT; apt-get install lmod)"; exit 77; }
T="$(mktemp -d "${TMPDIR:-/tmp}/gradcode-eb.XXXXXX")"
trap 'rm -rf "$T"' EXIT
python3 -m venv "$T/venv" >/dev/null 2>&1 && timeout 600 "$T/venv/bin/pip" install -q easybuild >"$T/pip.log" 2>&1 ||
  { echo "# SKIP: cannot install EasyBuild from PyPI: $(tail -n 1 "$T/pip.log" 2>/dev/null)"; exit 77; }
mkdir -p "$T/src"
git -C "$ROOT" archive --prefix=gradcode-0.1.0/ -o "$T/src/gradcode-0.1.0.tar.gz" HEAD || exit 1
set +u
# shellcheck source=/dev/null
source "$LMOD_INIT"
set -u
export PATH="$T/venv/bin:$PATH" EASYBUILD_PREFIX="$T/eb"
extra=()
[[ $EUID -eq 0 ]] && extra+=(--allow-use-as-root-and-accept-consequences) # CI runs as root
# full_build: the real eb build and install, then the installed copy used through its module.
full_build() {
  local t0=$SECONDS rc inst="$T/eb/software/gradcode/0.1.0" run="$T/run"
  timeout 3600 eb "$ROOT/easybuild/gradcode-0.1.0.eb" --sourcepath="$T/src" --ignore-osdeps \
    "${extra[@]}" >"$T/eb.log" 2>&1
  rc=$?
  if ((rc != 0)); then
    tail -n 40 "$T/eb.log"
    echo "not ok - eb build and install (exit $rc)"
    return 1
  fi
  echo "ok - eb build and install in $((SECONDS - t0)) s (sanity check: gradcode --version)"
  set +u # Lmod's shell functions read unset variables
  module use "$T/eb/modules/all"
  module load gradcode/0.1.0 || { echo "not ok - module load gradcode/0.1.0"; return 1; }
  set -u
  if [[ "$(command -v gradcode)" != "$inst/bin/gradcode" || "${GRADCODE_ROOT:-}" != "$inst/share/gradcode" ]]; then
    echo "not ok - module load gradcode/0.1.0: gradcode is $(command -v gradcode), GRADCODE_ROOT=${GRADCODE_ROOT:-}"
    return 1
  fi
  echo "ok - module load gradcode/0.1.0: $(gradcode --version) from $inst/bin"
  mpi=(mpirun -np 3)
  [[ $EUID -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  mpirun --version 2>&1 | grep -q "Open MPI" && mpi+=(--oversubscribe)
  if gradcode data synth --kind logistic --rows 600 --features 8 --seed 1 --out "$T/synth.h5" >"$T/run.log" 2>&1 &&
    "${mpi[@]}" gradcode train --data "$T/synth.h5" --model logistic --code cyclic-mds -s 1 \
      --iterations 10 --out "$run" >>"$T/run.log" 2>&1 &&
    gradcode report "$run/run.h5" >>"$T/run.log" 2>&1; then
    echo "ok - the installed gradcode trains under mpirun (3 ranks) and reports its run"
    return 0
  fi
  tail -n 20 "$T/run.log"
  echo "not ok - the installed gradcode under mpirun"
  return 1
}
if ((FULL)); then
  full_build
  exit $?
fi
timeout 300 eb "$ROOT/easybuild/gradcode-0.1.0.eb" --sourcepath="$T/src" --extended-dry-run --ignore-osdeps \
  "${extra[@]}" >"$T/eb.log" 2>&1
rc=$?
grep -E 'running shell command ".*(cargo build|make install)' -A0 "$T/eb.log"
if ((rc == 0)) && grep -qE "running shell command \"RUSTFLAGS='-C linker=gcc' +cargo build --release --locked" "$T/eb.log" &&
  grep -q "running shell command \"make install PREFIX=$T/eb/software/gradcode/0.1.0 " "$T/eb.log" &&
  grep -q 'setenv("GRADCODE_ROOT"' "$T/eb.log"; then
  echo "ok - eb --extended-dry-run: cargo build (linked by gcc, for RPATH), make install into the install dir, module sets GRADCODE_ROOT"
  exit 0
fi
tail -n 30 "$T/eb.log"
echo "not ok - eb --extended-dry-run (exit $rc)"
exit 1
