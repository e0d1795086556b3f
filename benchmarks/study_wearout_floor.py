"""How far is Chapter 5's particle smoother from the posterior under the wear-out world's true dynamics?

    python benchmarks/study_wearout_floor.py [--quick] [--particles 16000 64000 256000] [--top-seeds 0]

The chapter runs the Rao-Blackwellised particle smoother (:class:`~mmmlib.tvc.particle.ParticleTVC`)
with 500 particles on its 300 wear-out test series, and a ladder up to 4,000 particles on the first
20 of them. Its genealogy smoother converges to the true-dynamics posterior as the particle count
grows, but slowly (path degeneracy), so the chapter's ladder bounds the floor only from below. This
study climbs further on the same 20 series (same worlds, same seeds as the chapter's full profile):

- the chapter's own top rung, with the chapter's settings (its score must equal the chapter's:
  the check that the study ran on the same series with the same code);
- each larger particle count twice, with independent seeds (the largest once: it costs as much as
  all the others together): the difference between two runs is the Monte Carlo error of that
  rung, and the ladder has converged when the score stops rising from one rung to the next by
  more than that error;
- scored on 19 draws per series (as every method in the chapter) and on 199 draws (the posterior
  mean with less sampling noise);
- the oracle that knows every launch and jump, the ceiling above the floor.

The chapter reads the recorded file (``benchmarks/results/wearout_floor_<profile>.json``) and shows it
next to its own methods on the same series. Runs take about 0.3 ms per particle and series on one core;
the file records the wall and CPU time of each run (one thread each), the machine and the commit.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from mmmlib.runtime import peak_rss_mb, setup
from mmmlib.tvc import experiment as ex
from mmmlib.tvc.particle import ParticleTVC
from mmmlib.tvc.world import TVCWorld


def _run(pf: ParticleTVC, world: TVCWorld, first: int) -> dict:
    """One particle-smoother run: its scores on all its draws and on the first ``first`` draws."""
    t0, c0 = time.perf_counter(), time.process_time()
    samples = pf.sample(world.media, world.controls, world.sales)
    out = {"particles": pf.n_particles, "seed": pf.seed, "draws": pf.n_draws, "chunk": pf.chunk,
           "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "scores": {}}
    for k in sorted({first, pf.n_draws}):
        est = ex.estimate_from_samples(ex.first_draws(samples, k), world)
        s = ex.score_paths(est, world)
        out["scores"][str(k)] = {"corr": s["corr"], "coverage90": s["coverage90"], "rel_error": s["rel_error"]}
    out["mean"] = samples.beta.mean(1).tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the quick profile's worlds and a small ladder (a smoke run)")
    ap.add_argument("--particles", type=int, nargs="+", default=None,
                    help="particle counts above the chapter's top rung (default 16000 64000 256000; quick 1600 6400)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="independent runs per particle count")
    ap.add_argument("--top-seeds", type=int, nargs="+", default=None,
                    help="runs at the largest count (default: the first of --seeds; that count costs as much as "
                         "all the others together)")
    ap.add_argument("--draws", type=int, default=199, help="posterior draws per series of the larger rungs")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", default=None, help="default benchmarks/results/wearout_floor_<profile>.json")
    args = ap.parse_args()
    runtime = setup(0, threads=1)
    profile = "quick" if args.quick else "full"
    counts = args.particles or ([1600, 6400] if args.quick else [16000, 64000, 256000])
    top_seeds = args.top_seeds or args.seeds[:1]
    settings = ex.DiffusionSettings.for_profile(profile)
    seed = 0  # the chapter's seed
    train, _, test, paths = ex.make_wearout_worlds(settings, seed)
    rows = slice(0, settings.ladder_series)
    sub = test.subset(rows)
    base = ParticleTVC.calibrate(train, settings.wearout, n_draws=settings.check_draws, seed=seed)
    top = max(settings.particle_ladder)
    jobs = [replace(base, n_particles=top)]  # exactly the chapter's top rung
    jobs += [replace(base, n_particles=p, seed=s, n_draws=args.draws, chunk=1)
             for p in sorted(counts, reverse=True)
             for s in (top_seeds if p == max(counts) else args.seeds)]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.processes) as pool:
        runs = list(pool.map(_run, jobs, [sub] * len(jobs), [settings.check_draws] * len(jobs)))
    oracle = ex.score_paths(ex.oracle_estimate(train, sub, replace(paths, fresh=paths.fresh[rows]), settings.wearout, args.draws), sub)
    means = {(r["particles"], r["seed"]): np.asarray(r.pop("mean")) for r in runs}
    agreement = {}
    for p in counts:
        pair = [means[p, s] for s in args.seeds if (p, s) in means][:2]
        if len(pair) == 2:
            r = ex.path_correlation(pair[0], pair[1])
            agreement[str(p)] = {"median_corr_between_runs": float(np.nanmedian(r)),
                                 "median_rel_diff": float(np.median(np.abs(pair[0] - pair[1]) / sub.beta))}
    doc = {
        "study": "particle ladder of the true-dynamics smoother on Chapter 5's wear-out test series",
        "profile": profile,
        "chapter_seed": seed,
        "series": sub.n,
        "chapter_particles": settings.particles,
        "chapter_top_rung": top,
        "runs": runs,
        "agreement": agreement,
        "oracle": {"corr": oracle["corr"], "coverage90": oracle["coverage90"], "rel_error": oracle["rel_error"]},
        "wall_s": time.perf_counter() - start,
        "processes": args.processes,
        "peak_rss_mb": peak_rss_mb(),
    }
    out = Path(args.out or f"benchmarks/results/wearout_floor_{profile}.json")
    from _record import record

    record(out, doc, runtime.hardware)
    print(json.dumps({k: v for k, v in doc.items() if k != "runs"}, indent=2))
    for r in runs:
        print(r["particles"], r["seed"], r["draws"], round(r["seconds"], 1), r["scores"])
    print(f"written to {out}")


if __name__ == "__main__":
    main()
