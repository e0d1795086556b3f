"""Benchmark of chapter 1's inference: gradient cost and NUTS/SVI wall time, written to JSON.

    python benchmarks/bench_bayes.py [--quick] [--out benchmarks/results/bayes.json]

Measures, on the easy world (156 weeks, 4 channels, seed 0):

- the cost of one log density + gradient: Pyro's JIT-compiled potential vs the NumPy density;
- NUTS, 2 chains x (1000 warm-up + 1000 draws), ROI prior (target acceptance 0.9, as in the
  chapter) and LightweightMMM's cost prior (0.85) (NumPy backend, chains in parallel
  processes, started from a short VI fit): wall time (the fit, VI start included, and each
  chain), leapfrog steps per sampling iteration, divergences, R-hat, ROI MAPE; each posterior
  also in other coordinates (the same posterior: does the sampler care?): the ROI prior in
  log-intercept coordinates (``roi``) besides its default ``level``, the cost prior in ``roi``
  and ``level`` coordinates besides LightweightMMM's ``native``;
- SVI (3000 steps, full-rank Gaussian), ROI and cost prior: wall time and ROI MAPE, with
  :func:`mmmlib.inference.vi.fit_advi` on the NumPy density and, for the ROI prior, Pyro's own SVI.

Targets of issue 3: NUTS <= 60 s, SVI <= 10 s on 2 CPU cores. The numbers are recorded, not
asserted; the chapter's speed section reports its own fits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from pyro.infer.mcmc.util import initialize_model

from mmmlib.bayes.evaluate import FitSpec, fit_and_score
from mmmlib.bayes.model import BayesianMMM
from mmmlib.book.results import versions
from mmmlib.files import atomic_write_text
from mmmlib.runtime import setup
from mmmlib.worlds import easy_world


def _per_call(fn, n: int) -> float:
    for _ in range(min(20, n)):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def gradient_cost(world, media_prior: str) -> dict[str, float]:
    mmm = BayesianMMM("hill_adstock", media_prior=media_prior)
    density = mmm.density(world.data)
    z = density.unconstrain(density.prior_median())
    numpy_s = _per_call(lambda: density(z), 2000)
    prep = mmm._prepare(world.data)
    init, potential_fn, _, _ = initialize_model(
        mmm._model, model_args=(prep.media, prep.controls, prep.seasonal, prep.t_index),
        model_kwargs={"target": prep.target}, jit_compile=True, skip_jit_warnings=True,
    )
    params = {k: v.detach().clone().requires_grad_() for k, v in init.items()}

    def pyro_grad():
        for v in params.values():
            v.grad = None
        potential_fn(params).backward()

    pyro_s = _per_call(pyro_grad, 300)
    return {"numpy_us": numpy_s * 1e6, "pyro_jit_us": pyro_s * 1e6, "speedup": pyro_s / numpy_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 + 300 draws (a smoke run)")
    parser.add_argument("--out", default="benchmarks/results/bayes.json")
    args = parser.parse_args()
    rt = setup(0)
    world = easy_world(0)
    n = 300 if args.quick else 1000
    report: dict = {"machine": rt.hardware, "versions": versions(), "draws": n, "gradient": {}, "fits": []}
    torch.set_num_threads(1)  # one gradient evaluation at a time, as inside a chain
    for prior in ("roi", "cost"):
        report["gradient"][prior] = gradient_cost(world, prior)
    setup(0)
    for spec in (
        FitSpec("nuts_roi", "hill_adstock", "roi", num_warmup=n, num_samples=n, target_accept_prob=0.9),
        FitSpec("nuts_roi_roi_coordinates", "hill_adstock", "roi", num_warmup=n, num_samples=n, target_accept_prob=0.9,
                coordinates="roi"),
        FitSpec("nuts_cost", "hill_adstock", "cost", num_warmup=n, num_samples=n),
        FitSpec("nuts_cost_roi_coordinates", "hill_adstock", "cost", num_warmup=n, num_samples=n, coordinates="roi"),
        FitSpec("nuts_cost_level_coordinates", "hill_adstock", "cost", num_warmup=n, num_samples=n,
                coordinates="level"),
        FitSpec("svi_roi", "hill_adstock", "roi", inference="svi", num_samples=n, svi_steps=3000),
        FitSpec("svi_cost", "hill_adstock", "cost", inference="svi", num_samples=n, svi_steps=3000),
        FitSpec("svi_roi_pyro", "hill_adstock", "roi", inference="svi", num_samples=n, svi_steps=3000, backend="pyro"),
    ):
        mmm, row = fit_and_score(spec, world, seed=0)
        row["coordinates"] = "pyro" if spec.backend == "pyro" else (
            spec.coordinates or ("level" if spec.media_prior == "roi" else "native"))
        if spec.inference == "nuts":
            res = mmm.nuts_
            row["leapfrogs_per_iteration"] = float(res.n_leapfrog.mean())
            row["tree_depth"] = float(res.tree_depth.mean())
            row["chain_seconds"] = [float(x) for x in res.seconds]  # warm-up and sampling, per chain
        report["fits"].append({k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()})
        print(json.dumps(report["fits"][-1]))
    print(json.dumps(report["gradient"]))
    atomic_write_text(Path(args.out), json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
