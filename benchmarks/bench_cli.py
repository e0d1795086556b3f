"""Benchmark of ``python -m mmmlib fit``: a CSV to a written report, as a user runs it.

    python benchmarks/bench_cli.py [--out benchmarks/results/cli.json]

Runs the README's command on the shipped example (156 weeks, 4 channels) and on the Robyn demo
data of the appendix (208 weeks, 5 channels), each by SVI and by NUTS at the command's defaults,
each in a fresh process (import time included, as a user sees it), and records the wall time.

Targets (the thesis's own: a reader tries the model between two chapters): SVI in under a minute,
NUTS in under two, on 2 CPU cores. Recorded, not asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ["data/example_easy_world.csv", "--date", "date", "--target", "sales", "--controls", "control_0",
           "--media", "media_tv", "media_search", "media_social", "media_display",
           "--spend", "spend_tv", "spend_search", "spend_social", "spend_display"]
ROBYN = ["data/robyn_dt_simulated_weekly.csv", "--date", "DATE", "--target", "revenue",
         "--media", "tv_S", "ooh_S", "print_S", "facebook_I", "search_clicks_P",
         "--spend", "tv_S", "ooh_S", "print_S", "facebook_S", "search_S",
         "--controls", "competitor_sales_B", "newsletter"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/cli.json")
    args = ap.parse_args()
    from _record import record

    from mmmlib.runtime import setup

    hardware = setup(0).hardware
    env = {**os.environ, "MMM_THREADS": os.environ.get("MMM_THREADS", "2")}
    rows = []
    for name, data in (("example (156 weeks, 4 channels)", EXAMPLE), ("Robyn demo (208 weeks, 5 channels)", ROBYN)):
        for inference in ("svi", "nuts"):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-m", "mmmlib", "fit", *data, "--inference", inference, "--out", f"{tmp}/report"]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - t0
            row = {"data": name, "inference": inference, "seconds": round(seconds, 1), "exit_code": proc.returncode}
            if proc.returncode:
                row["stderr"] = proc.stderr[-2000:]
            print(row, flush=True)
            rows.append(row)
    limit = {"svi": 60.0, "nuts": 120.0}
    record(args.out, {
        "runs": rows,
        "targets": {f"{r['data']}, {r['inference']}: <= {limit[r['inference']]:.0f} s":
                    r["exit_code"] == 0 and r["seconds"] <= limit[r["inference"]] for r in rows},
    }, hardware)


if __name__ == "__main__":
    main()
