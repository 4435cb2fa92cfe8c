# Sourced by the a9a benchmarks: a9a_data RUNS prints the a9a HDF5 file to use, datasets/a9a.h5
# when `make data` made it, else RUNS/a9a.h5, converted from $SHARED/a9a once. Needs BIN, ROOT
# and SHARED.
a9a_data() {
  local data="$ROOT/datasets/a9a.h5"
  if [[ ! -f "$data" ]]; then
    data="$1/a9a.h5"
    [[ -f "$data" ]] || "$BIN" -q data convert --format libsvm --input "$SHARED/a9a/a9a" \
      --test-input "$SHARED/a9a/a9a.t" --features 123 --out "$data" >&2
  fi
  echo "$data"
}
