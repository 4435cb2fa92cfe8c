#!/usr/bin/env bash
# Checks easybuild/gradcode-0.1.0.eb with EasyBuild's extended dry run: EasyBuild from PyPI into a
# throw-away virtualenv, Lmod (Debian's `lmod`) as its modules tool, a source archive of HEAD.
# Prints the build and install commands EasyBuild would run and checks they are `cargo build` and
# `make install PREFIX=<installdir>`. A full build: the same `eb` line without --extended-dry-run.
# Exit 0 ok, 1 failed, 77 skipped (no lmod, or EasyBuild not installable here).
set -uo pipefail
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
timeout 300 eb "$ROOT/easybuild/gradcode-0.1.0.eb" --sourcepath="$T/src" --extended-dry-run --ignore-osdeps \
  "${extra[@]}" >"$T/eb.log" 2>&1
rc=$?
grep -E 'running shell command "(cargo build|make install)' -A0 "$T/eb.log"
if ((rc == 0)) && grep -q 'running shell command "cargo build --release --locked' "$T/eb.log" &&
  grep -q "running shell command \"make install PREFIX=$T/eb/software/gradcode/0.1.0 " "$T/eb.log" &&
  grep -q 'setenv("GRADCODE_ROOT"' "$T/eb.log"; then
  echo "ok - eb --extended-dry-run: cargo build, make install into the install dir, module sets GRADCODE_ROOT"
  exit 0
fi
tail -n 30 "$T/eb.log"
echo "not ok - eb --extended-dry-run (exit $rc)"
exit 1
