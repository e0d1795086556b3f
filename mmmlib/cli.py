"""``python -m mmmlib fit``: fit a Bayesian MMM to a CSV and write a report.

Example, on the CSV shipped in ``data/``::

    python -m mmmlib fit data/example_easy_world.csv --date date \\
        --media media_tv media_search media_social media_display \\
        --spend spend_tv spend_search spend_social spend_display \\
        --target sales --controls control_0 --inference svi --out report/

The file is validated first (every error names the file, column and row); the report folder is
written only when the fit succeeded (see :func:`mmmlib.bayes.report.write_report`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _names(values: Sequence[str] | None) -> list[str]:
    """Column lists as given: space-separated, comma-separated or both."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


def _channel_names(media: Sequence[str]) -> list[str]:
    """Channel names: the media columns without a prefix they all share up to an underscore
    (``media_tv``, ``media_search`` -> ``tv``, ``search``)."""
    prefix = media[0].rsplit("_", 1)[0] + "_" if "_" in media[0] else ""
    while prefix and not all(m.startswith(prefix) and len(m) > len(prefix) for m in media):
        prefix = prefix[:-1].rsplit("_", 1)[0] + "_" if "_" in prefix[:-1] else ""
    names = [m[len(prefix):] for m in media]
    return names if len(set(names)) == len(names) else list(media)


def _roi_prior(text: str) -> str | tuple[float, float]:
    """``data`` or ``MU,SIGMA``."""
    if text == "data":
        return text
    try:
        mu, sigma = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'data' or MU,SIGMA (e.g. 0.2,0.9), got {text!r}") from None
    if not sigma > 0:
        raise argparse.ArgumentTypeError(f"SIGMA must be positive, got {sigma}")
    return mu, sigma


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmmlib", description="Marketing-mix models from the mmm-thesis book.")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit a Bayesian MMM to a CSV and write a report",
                       description=__doc__.split("\n\n")[0])
    f.add_argument("csv", type=Path, help="the data: one row per period (and geo)")
    f.add_argument("--date", required=True, help="date column")
    f.add_argument("--media", nargs="+", required=True, help="media columns (impressions, GRPs or spend)")
    f.add_argument("--spend", nargs="+", required=True, help="spend columns, one per media column, same order")
    f.add_argument("--target", required=True, help="target column (sales, revenue or conversions)")
    f.add_argument("--controls", nargs="+", default=[], help="control columns")
    f.add_argument("--geo", default=None, help="geo column of a panel")
    f.add_argument("--channels", nargs="+", default=None,
                   help="channel names (default: the media columns without their common prefix)")
    f.add_argument("--model", default="hill_adstock", choices=("hill_adstock", "adstock", "carryover"))
    f.add_argument("--prior", default="roi", choices=("roi", "cost"),
                   help="roi: log-normal prior on each channel's ROI (national data); cost: LightweightMMM's")
    f.add_argument("--roi-prior", default="data", type=_roi_prior, metavar="data|MU,SIGMA",
                   help="with --prior roi: 'data' (default) centres the LogNormal ROI prior on the data's own units "
                        "(its median is the ROI that gives media 30%% of the target); MU,SIGMA sets it")
    f.add_argument("--cost-prior-multiplier", type=float, default=0.15,
                   help="with --prior cost: the half-normal scale of each media coefficient is this times the channel's "
                        "cost over the mean channel's (0.15, as LightweightMMM's README scales its costs)")
    f.add_argument("--revenue-per-kpi", type=float, default=1.0,
                   help="revenue per unit of target when the target is not revenue (ROI is then in revenue per spend)")
    f.add_argument("--lift-tests", type=Path, default=None, metavar="TESTS.csv",
                   help="experiments to calibrate with: channel,start,end,spend_change,lift,se[,post_periods,geos]")
    f.add_argument("--inference", default="nuts", choices=("nuts", "svi"))
    f.add_argument("--warmup", type=int, default=1000, help="NUTS warm-up per chain")
    f.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain (SVI: draws per chain of the guide)")
    f.add_argument("--chains", type=int, default=2)
    f.add_argument("--svi-steps", type=int, default=3000)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=Path, required=True, help="report folder (must not exist, or be empty)")
    f.add_argument("--force", action="store_true", help="replace an existing report folder")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input, 1 for a failed fit)."""
    args = _parser().parse_args(argv)
    from mmmlib.bayes.model import BayesianMMM
    from mmmlib.bayes.report import prior_warnings, write_report
    from mmmlib.data import load_csv
    from mmmlib.runtime import setup

    try:
        if args.out.exists() and (not args.out.is_dir() or (any(args.out.iterdir()) and not args.force)):
            raise ValueError(f"{args.out} exists and is not an empty folder; choose another --out or pass --force")
        for name in ("warmup", "draws", "chains", "svi_steps"):
            if getattr(args, name) < (0 if name == "warmup" else 1):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
        media = _names(args.media)
        channels = _names(args.channels) if args.channels else _channel_names(media)
        data = load_csv(args.csv, date=args.date, media=media, spend=_names(args.spend),
                        target=args.target, controls=_names(args.controls), geo=args.geo, channels=channels)
        if args.geo and args.prior == "roi":
            raise ValueError("--prior roi is implemented for national data only; use --prior cost for a geo panel")
        lift_tests = None
        if args.lift_tests is not None:
            from mmmlib.bayes.lift import lift_arrays, load_lift_tests

            lift_tests = load_lift_tests(args.lift_tests, data.dates)
            lift_arrays(lift_tests, data.channels, data.n_times, data.geos)  # channels and geos exist
        mmm = BayesianMMM(model=args.model, media_prior=args.prior, roi_prior=args.roi_prior,
                          revenue_per_kpi=args.revenue_per_kpi, cost_prior_multiplier=args.cost_prior_multiplier)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    setup(seed=args.seed)
    print(f"fitting {args.model} ({args.prior} prior, {args.inference}) to {data.n_times} periods and "
          f"{len(data.channels)} channels of {args.csv.name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        mmm.fit(
            data, inference=args.inference, num_warmup=args.warmup, num_samples=args.draws, chains=args.chains,
            svi_steps=args.svi_steps, seed=args.seed, progress=sys.stderr.isatty(), lift_tests=lift_tests,
        )
        files = write_report(mmm, args.out, source=args.csv.name, force=args.force)
        for warning in prior_warnings(mmm):
            print(f"warning: {warning}", file=sys.stderr)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"fitted in {time.perf_counter() - t0:.0f} s; wrote {len(files)} files to {args.out} "
          f"(open {args.out / 'report.md'})", file=sys.stderr)
    return 0
