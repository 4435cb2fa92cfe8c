#!/usr/bin/env python3
"""Load a gradcode run (results/NAME/run.h5) into pandas and print a short summary.

    python3 scripts/load_run.py results/fashion-mnist/run.h5

Needs h5py and pandas (Debian: python3-h5py python3-pandas; or `pip install h5py pandas`). The
file is opened with swmr=True, so the file of a run that is still going, or was killed, opens
too (its status is then "running").

Time per iteration p50/p95 use the rule of `gradcode report` (nearest rank over the finite
values of /metrics/wall_s, every row of the file: a resumed run's rows from before and after
the resume alike), so the two print the same numbers for the same file.
"""
import math
import sys

import h5py
import numpy as np
import pandas as pd

# Per-(iteration, worker) matrices of a results file.
WORKER_MATRICES = ("timing/arrival_s", "timing/compute_s", "stragglers/injected_s",
                   "timing/chunks", "timing/stale_age")


def percentile(values, p):
    """Nearest-rank percentile of the finite values: the sorted value at index
    round((n - 1) * p), halves rounded up, as `gradcode report` computes it. NaN if none."""
    v = np.asarray(values, dtype=float)
    v = np.sort(v[np.isfinite(v)])
    if v.size == 0:
        return float("nan")
    x = (v.size - 1) * p
    i = math.floor(x)
    if x - i >= 0.5:  # Rust's f64::round: half away from zero
        i += 1
    return float(v[min(i, v.size - 1)])


def complete_rows(f):
    """Rows present in every /metrics dataset and every per-worker matrix: a killed writer may
    have extended some datasets and not others (the rule of `gradcode report`)."""
    lengths = [f["metrics"][k].shape[0] for k in f["metrics"]]
    lengths += [f[k].shape[0] for k in WORKER_MATRICES if k in f]
    return min(lengths)


def load_run(path):
    """Return (metrics, arrival, info): one row per iteration of /metrics, the worker x iteration
    arrival matrix (seconds after the iteration started, NaN = missed; no columns for the serial
    reference, which has no workers), and the run's settings."""
    with h5py.File(path, "r", swmr=True) as f:
        m = f["metrics"]
        n = complete_rows(f)
        metrics = pd.DataFrame({k: m[k][:n] for k in m})
        metrics = metrics.astype({"iteration": "int64"}).set_index("iteration")
        info = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["config"].attrs.items()
                if k != "toml"}
        info["status"] = str(f.attrs.get("status", "?")).strip()
        v = f["validation"].attrs if "validation" in f else {}
        info["verdict"] = v.get("verdict", v.get("check", "-"))  # the reference path: REFERENCE
        a = f["timing/arrival_s"][:n]
        workers = a.shape[1]
        if bool(info.get("reference", False)):
            # One process: the file keeps a placeholder column, but there is no worker.
            info["code"], info["stragglers"], workers = "reference", 0, 0
        arrival = pd.DataFrame(a[:, :workers], index=metrics.index,
                               columns=[f"rank{r}" for r in range(1, workers + 1)])
    return metrics, arrival, info


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    metrics, arrival, info = load_run(argv[1])
    wall = metrics["wall_s"]
    losses = metrics["train_loss"].dropna()
    final = f"{losses.iloc[-1]:.6f}" if len(losses) else "-"
    print(f"{argv[1]}: code {info.get('code')} s={info.get('stragglers')} "
          f"stragglers {info.get('straggler-model')} status {info['status']} "
          f"verdict {info['verdict']}")
    print(f"iterations {len(metrics)}  time per iteration p50 {percentile(wall, 0.5) * 1e3:.3f} ms "
          f"p95 {percentile(wall, 0.95) * 1e3:.3f} ms  "
          f"final train loss {final}")
    if arrival.shape[1] == 0:
        print("no workers (serial reference run): no arrivals")
    else:
        print("fraction of iterations each worker was used (arrived in time):")
        print(arrival.notna().mean().round(3).to_string())
    print(metrics[["wall_s", "oracle_s", "train_loss", "test_accuracy"]].tail().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
