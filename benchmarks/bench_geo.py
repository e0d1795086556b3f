"""Benchmark of the Bayesian model on geo panels: fit time and peak memory, fit plus report.

    python benchmarks/bench_geo.py [--out benchmarks/results/geo.json]

Each case runs in a fresh process (so its peak resident memory is its own): simulate a panel
(Chapter 0's easy world with ``n_geos`` geos), fit :class:`~mmmlib.bayes.model.BayesianMMM`
with the cost prior by SVI at its defaults (3000 steps, 2000 guide draws), then compute what a
report reads: national ROI and shares, per-geo ROI and the contributions table.

Targets (the thesis's own, for a practitioner's laptop-class machine with 2 cores): 8 geos x 156
weeks x 4 channels fits in 30 s or less and the whole case peaks at 2 GB or less; 50 geos x 208
weeks fits and reports without running out of memory. Recorded, not asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

CASES = ({"n_geos": 8, "n_weeks": 156}, {"n_geos": 20, "n_weeks": 156}, {"n_geos": 50, "n_weeks": 208})


def _case(n_geos: int, n_weeks: int) -> dict:
    from mmmlib.bayes.model import BayesianMMM
    from mmmlib.runtime import peak_rss_mb, setup
    from mmmlib.worlds import easy_world

    setup(0)
    data = easy_world(seed=0, n_weeks=n_weeks, n_geos=n_geos).data
    t0 = time.perf_counter()
    mmm = BayesianMMM(media_prior="cost").fit(data, inference="svi", seed=0)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mmm.roi(), mmm.contribution_share(), mmm.roi(by_geo=True), mmm.contributions()
    report_s = time.perf_counter() - t0
    peak_mb = peak_rss_mb()
    return {"geos": n_geos, "weeks": n_weeks, "channels": len(data.channels), "draws": mmm.diagnostics().num_draws,
            "fit_s": round(fit_s, 1), "roi_and_contributions_s": round(report_s, 2), "peak_rss_mb": round(peak_mb)}


def _run(kwargs: dict, queue) -> None:
    queue.put(_case(**kwargs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/geo.json")
    args = ap.parse_args()
    from _record import record

    from mmmlib.runtime import setup

    hardware = setup(0).hardware
    ctx = mp.get_context("spawn")
    rows = []
    for kwargs in CASES:
        queue = ctx.Queue()
        proc = ctx.Process(target=_run, args=(kwargs, queue))
        proc.start()
        proc.join()
        row = queue.get() if proc.exitcode == 0 else {**kwargs, "error": f"exit code {proc.exitcode}"}
        print(row, flush=True)
        rows.append(row)
    small = rows[0]
    record(args.out, {
        "cases": rows,
        "targets": {
            "8 geos x 156 weeks: fit <= 30 s": small.get("fit_s", float("inf")) <= 30,
            "8 geos x 156 weeks: peak <= 2048 MB": small.get("peak_rss_mb", float("inf")) <= 2048,
            "50 geos x 208 weeks: fits and reports": "error" not in rows[-1],
        },
    }, hardware)


if __name__ == "__main__":
    main()
