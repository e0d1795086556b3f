"""Benchmark of chapter 5's diffusion model: training step, DDIM/DDPM sampling and the Kalman smoother.

    python benchmarks/bench_diffusion.py [--quick] [--out benchmarks/results/diffusion.json]

Measures, at the chapter's full-profile sizes (104 weeks, 5 channels, 3 controls, the full
:class:`~mmmlib.tvc.diffusion.DiffusionConfig`):

- one training step (batch of 64 series, all loss terms, backward, AdamW), median of repeats;
- DDIM with 50 steps drawing 100 paths of one series, with and without the sales projection
  (issue 7's target: <= 10 s on 2 CPU cores), median of 3;
- DDPM over all diffusion steps, seconds per path;
- the Kalman smoother, seconds per series;
- the peak resident memory of the process.

Speed does not depend on the weights, so the model is trained for one short epoch only. The
numbers are recorded, not asserted; the chapter reports its own timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from mmmlib.book.results import versions
from mmmlib.files import atomic_write_text
from mmmlib.runtime import peak_rss_mb, setup
from mmmlib.tvc.diffusion import TVCDiffusion
from mmmlib.tvc.experiment import DiffusionSettings, make_worlds
from mmmlib.tvc.statespace import KalmanTVC


def _median_seconds(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="quick-profile sizes (for a smoke run)")
    ap.add_argument("--out", default="benchmarks/results/diffusion.json")
    args = ap.parse_args()
    runtime = setup(0)
    profile = "quick" if args.quick else "full"
    sizes = DiffusionSettings.for_profile(profile)
    s = replace(sizes, n_train=640, n_valid=64, n_test=8, fit=replace(sizes.fit, epochs=1))
    train, _, test = make_worlds(s, 0)
    model = TVCDiffusion(s.fit).fit(train, seed=0)
    per_step = model.fit_seconds / (s.n_train // s.fit.batch_size)

    one = (test.media[:1], test.controls[:1], test.sales[:1])
    ddim = {proj: _median_seconds(lambda p=proj: model.sample(*one, n_samples=100, steps=50, project=p), 3)
            for proj in (True, False)}
    ddpm = _median_seconds(lambda: model.sample(*one, n_samples=8, method="ddpm"), 1) / 8
    kal = KalmanTVC.calibrate(train)
    smooth = _median_seconds(lambda: kal.smooth(test.media, test.controls, test.sales), 3) / test.n
    doc = {
        "benchmark": "chapter 5 diffusion: training step, sampling, Kalman smoother",
        "profile": profile,
        "weeks": s.world.n_weeks,
        "config": {"d_model": s.fit.d_model, "layers": [s.fit.campaign_layers, s.fit.channel_layers],
                   "steps": s.fit.steps, "batch_size": s.fit.batch_size},
        "train_step_s": per_step,
        "training_estimate_s": per_step * (sizes.n_train // sizes.fit.batch_size) * sizes.fit.epochs,
        "ddim50_100paths_s": ddim[True],
        "ddim50_100paths_no_projection_s": ddim[False],
        "ddpm_per_path_s": ddpm,
        "kalman_per_series_s": smooth,
        "peak_rss_mb": peak_rss_mb(),
        "targets": {"ddim50_100paths_s": "<= 10", "training_estimate_s": "<= 900 at the full profile"},
        "hardware": runtime.hardware,
        "versions": versions(),
        "torch_threads": torch.get_num_threads(),
    }
    path = atomic_write_text(Path(args.out), json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k not in ("hardware", "versions")}, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
