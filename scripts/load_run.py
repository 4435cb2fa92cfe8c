#!/usr/bin/env python3
"""Load a gradcode run (results/NAME/run.h5) into pandas and print a short summary.

    python3 scripts/load_run.py results/fashion-mnist/run.h5

Needs h5py and pandas (`pip install h5py pandas`). The file is opened with swmr=True, so the
file of a run that is still going, or was killed, opens too (its status is then "running").
"""
import sys

import h5py
import numpy as np
import pandas as pd


def load_run(path):
    """Return (metrics, arrival, info): one row per iteration of /metrics, the worker x iteration
    arrival matrix (seconds after the iteration started, NaN = missed), and the run's settings."""
    with h5py.File(path, "r", swmr=True) as f:
        m = f["metrics"]
        n = min(m[k].shape[0] for k in m)  # a killed writer may leave one column a row longer
        metrics = pd.DataFrame({k: m[k][:n] for k in m})
        metrics = metrics.astype({"iteration": "int64"}).set_index("iteration")
        a = f["timing/arrival_s"][:n]
        arrival = pd.DataFrame(a, index=metrics.index,
                               columns=[f"rank{r}" for r in range(1, a.shape[1] + 1)])
        info = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["config"].attrs.items()
                if k != "toml"}
        info["status"] = str(f.attrs.get("status", "?")).strip()
        v = f["validation"].attrs if "validation" in f else {}
        info["verdict"] = v.get("verdict", v.get("check", "-"))  # the reference path: REFERENCE
        if bool(info.get("reference", False)):
            info["code"], info["stragglers"] = "reference", 0
    return metrics, arrival, info


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    metrics, arrival, info = load_run(argv[1])
    wall = metrics["wall_s"]
    print(f"{argv[1]}: code {info.get('code')} s={info.get('stragglers')} "
          f"stragglers {info.get('straggler-model')} status {info['status']} "
          f"verdict {info['verdict']}")
    print(f"iterations {len(metrics)}  time per iteration p50 {wall.median() * 1e3:.3f} ms "
          f"p95 {wall.quantile(0.95) * 1e3:.3f} ms  "
          f"final train loss {metrics['train_loss'].dropna().iloc[-1]:.6f}")
    print("fraction of iterations each worker was used (arrived in time):")
    print(arrival.notna().mean().round(3).to_string())
    print(metrics[["wall_s", "oracle_s", "train_loss", "test_accuracy"]].tail().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
