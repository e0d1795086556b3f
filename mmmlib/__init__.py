"""mmmlib: deep and differentiable marketing-mix models.

The library behind the *mmm-thesis* companion book. Every number in the book is
computed by a function of this package; chapters only call it.

Layout, by what each part models (one subpackage per chapter's system; imports flow one way,
chapters -> systems -> foundations):

Foundations
    :mod:`mmmlib.data` (the dataset and the CSV loader), :mod:`mmmlib.transforms` (adstock,
    carryover, Hill), :mod:`mmmlib.inference` (NUTS, VI, diagnostics), :mod:`mmmlib.optimize`
    (budgets), :mod:`mmmlib.metrics`, :mod:`mmmlib.plots`, :mod:`mmmlib.runtime` (seeds, threads,
    profiles, device, the machine's description), :mod:`mmmlib.workers` (independent fits a process
    per core), :mod:`mmmlib.files` (writes that never leave a half-written file).
Systems
    :mod:`mmmlib.worlds` (Chapter 0), :mod:`mmmlib.bayes` (Chapters 1 and 7),
    :mod:`mmmlib.funnel` (2), :mod:`mmmlib.deepcausal` (3), :mod:`mmmlib.twins` (4),
    :mod:`mmmlib.tvc` (5), :mod:`mmmlib.scoreboard` (6), :mod:`mmmlib.lift` (8).
The command line
    :mod:`mmmlib.cli` (``python -m mmmlib fit``).
Book tooling
    :mod:`mmmlib.book` (results registry and runner; no model imports it).
"""

from __future__ import annotations

import warnings

# tqdm warns "IProgress not found" with an absolute path when ipywidgets is missing;
# it would land on stderr of every chapter (and fail the strict book build). Filter it
# before pyro (which imports tqdm.auto) is imported anywhere.
warnings.filterwarnings("ignore", message="IProgress not found")
# seaborn's boxplot triggers a matplotlib deprecation warning on stderr.
warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="seaborn")
warnings.filterwarnings("ignore", message=".*vert: bool will be deprecated.*")
# Pyro's JIT-compiled NUTS potential uses torch.jit.trace, which torch 2.13 marks deprecated.
warnings.filterwarnings("ignore", message=".*torch.jit.trace. is deprecated.*")

__version__ = "0.1.0"

__all__ = ["__version__"]
